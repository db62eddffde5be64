import Glibc
import TusLoop
import TusTestSupport
import XCTest

final class OutboundConnectTests: XCTestCase {
    func testResolverFindsLocalhostOffTheLoopThread() throws {
        var results: [Result<[String], UVError>] = []
        try withLoop { loop, finish in
            loop.resolve(host: "localhost") { result in
                results.append(result)
                finish()
            }
            XCTAssertTrue(results.isEmpty, "the lookup runs on the threadpool, so the completion comes later")
        }
        XCTAssertEqual(results.count, 1)
        XCTAssertTrue((try? results.first?.get())?.contains("127.0.0.1") ?? false, "\(results)")
    }

    func testConnectByNameGoesThroughTheResolver() throws {
        var connected = 0
        try withLoop { loop, finish in
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            try listener.listen { $0.close() }
            TCPStream.connect(loop: loop, host: "localhost", port: listener.localPort, timeoutMilliseconds: 2000) {
                result in
                guard case .success(let stream) = result else { return XCTFail("\(result)") }
                connected += 1
                XCTAssertEqual(stream.remoteAddress, "127.0.0.1:\(listener.localPort)")
                stream.close { listener.close { finish() } }
            }
            XCTAssertEqual(connected, 0)
        }
        XCTAssertEqual(connected, 1)
    }

    /// A listener whose accept queue is full drops further SYNs, so a connect to it hangs: the deadline must close
    /// the half-open socket and report `.timedOut` once, leaving no handle behind.
    func testConnectTimeoutClosesTheSocketAndFailsOnce() throws {
        let listening = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listening) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                XCTAssertEqual(bind(listening, pointer, length), 0)
                XCTAssertEqual(getsockname(listening, pointer, &length), 0)
            }
        }
        XCTAssertEqual(listen(listening, 0), 0)
        let port = Int(UInt16(bigEndian: address.sin_port))
        // Fill the accept queue (backlog 0 admits one) with connections nobody accepts.
        var fillers: [Int32] = []
        defer { fillers.forEach { close($0) } }
        for _ in 0..<3 {
            let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            fillers.append(filler)
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = Glibc.connect(filler, $0, length) }
            }
        }
        usleep(50_000)

        var results: [Result<TCPStream, UVError>] = []
        var elapsed: UInt64 = 0
        try withLoop { loop, finish in
            let started = loop.nowMilliseconds
            TCPStream.connect(loop: loop, host: "127.0.0.1", port: port, timeoutMilliseconds: 200) { result in
                results.append(result)
                elapsed = loop.nowMilliseconds - started
                if case .success(let stream) = result { stream.close() }
                loop.schedule(afterMilliseconds: 300) { finish() }  // a late connect callback would show up here
            }
        }
        XCTAssertEqual(results.count, 1)
        guard case .failure(let error) = results.first else { return XCTFail("connected to a full backlog") }
        XCTAssertEqual(error, .timedOut)
        XCTAssertGreaterThanOrEqual(elapsed, 190)
        XCTAssertLessThan(elapsed, 1000)
    }

    func testRefusedConnectWithTimeoutFailsOnceWithoutWaitingForTheTimer() throws {
        var results: [Result<TCPStream, UVError>] = []
        try withLoop { loop, finish in
            let listener = try TCPListener(loop: loop, host: "127.0.0.1", port: 0, reusePort: false)
            let port = listener.localPort
            listener.close {
                TCPStream.connect(loop: loop, host: "localhost", port: port, timeoutMilliseconds: 60_000) { result in
                    results.append(result)
                    finish()
                }
            }
        }
        XCTAssertEqual(results.count, 1)
        guard case .failure(let error) = results.first else { return XCTFail("expected failure") }
        XCTAssertEqual(error, .connectionRefused)
        XCTAssertFalse(error.isResolverError)
    }
}
