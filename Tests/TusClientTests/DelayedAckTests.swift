import Foundation
import Glibc
import TusHTTP1
import TusLoop
import TusTestSupport
import XCTest

@testable import TusClient

/// A keep-alive server on 127.0.0.1 that writes each response's head and body with two writes, Nagle's algorithm
/// on (as Ceph RGW's beast does): its body leaves only once the client acknowledged the head.
final class SplitResponder: @unchecked Sendable {
    let port: Int
    private let listening: Int32
    private let thread: Thread

    init() {
        let (listening, port) = listeningLoopbackSocket()
        self.listening = listening
        self.port = port
        thread = Thread {
            let client = accept(listening, nil, nil)
            guard client >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 4096)
            var pending: [UInt8] = []
            let head = Array("HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n".utf8)
            let body = [UInt8](repeating: 66, count: 64)
            while true {
                let count = read(client, &buffer, buffer.count)
                guard count > 0 else { break }
                pending += buffer[0..<count]
                while let end = pending.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound {
                    pending.removeFirst(end)
                    _ = head.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                    _ = body.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                }
            }
            close(client)
        }
        thread.start()
    }

    func stop() {
        shutdown(listening, Int32(SHUT_RDWR))
        close(listening)
    }
}

/// The client acknowledges what it read at once while a response is pending (TCP_QUICKACK): with delayed ACKs
/// every such response took 40 ms more on a keep-alive connection (S3 GETs of records, ListParts...).
final class DelayedAckTests: XCTestCase {
    func testSmallResponsesWrittenInTwoPiecesDoNotWaitForADelayedAck() throws {
        let driver = try LoopDriver()
        defer { XCTAssertEqual(driver.shutDown(), 0, "the loop had to close handles itself") }
        let server = SplitResponder()
        defer { server.stop() }
        let requests = 24
        let outcome: Result<[UInt64], HTTPClientError> = driver.run { done in
            HTTPClientConnection.connect(loop: driver.loop, host: "127.0.0.1", port: server.port, tls: nil) { result in
                guard case .success(let connection) = result else {
                    if case .failure(let error) = result { done(.failure(error)) }
                    return
                }
                var durations: [UInt64] = []
                func next() {
                    guard durations.count < requests else {
                        connection.close()
                        return done(.success(durations))
                    }
                    let started = driver.loop.nowMilliseconds
                    connection.send(HTTPClientRequestHead(method: .GET, path: "/record"), body: .none) { response in
                        guard case .success(let answer) = response, answer.body.count == 64 else {
                            connection.close()
                            return done(.failure(.malformedResponse("\(response)")))
                        }
                        durations.append(driver.loop.nowMilliseconds - started)
                        next()
                    }
                }
                next()
            }
        }
        let durations = try outcome.get().sorted()
        // Delayed ACKs make nearly every exchange after the first few take 40 ms or more.
        XCTAssertLessThan(durations[requests / 2], 20, "median exchange in ms; all: \(durations)")
    }
}
