import Glibc
import TusHTTP1
import TusHTTPServer
import TusTestSupport
import XCTest

/// The minimum body rate: a trickling body is cut like a timeout (the sink hears `.timeout` and has the bytes
/// that came), while a slow client above the rate finishes. Windows are 1 s here instead of the body timeout.
final class BodyRateTests: XCTestCase {
    private func rateLimited(_ bytesPerSecond: Int) -> (inout HTTPServerConfiguration) -> Void {
        { configuration in
            configuration.minBodyBytesPerSecond = bytesPerSecond
            configuration.bodyRateWindowMilliseconds = 1000
            configuration.bodyTimeoutMilliseconds = 10_000  // far away: only the rate can cut
        }
    }

    private func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    func testTricklingBodyIsCutAndKeepsItsBytes() throws {
        let handler = EchoHandler()
        try withServer(handler, configure: rateLimited(1000)) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("PATCH /u HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            let started = monotonicSeconds()
            // 10 bytes/s, far below 1000: one byte every 100 ms until the server gives up (or 5 s pass).
            for _ in 0..<50 where handler.stats.withLock({ $0.aborted.isEmpty }) {
                guard client.send("x") else { break }
                usleep(100_000)
            }
            let elapsed = monotonicSeconds() - started
            XCTAssertEqual(handler.stats.withLock { $0.aborted }, [.timeout], "the sink hears a timeout")
            XCTAssertLessThan(elapsed, 3.0, "cut after about one window (1 s) plus a sweep (0.5 s)")
            let kept = handler.stats.withLock { $0.bodyBytes }
            XCTAssertGreaterThan(kept, 0, "bytes that arrived before the cut reached the sink")
            XCTAssertLessThan(kept, 30)
            XCTAssertTrue(client.waitForClose(), "the connection is closed")
        }
    }

    func testSlowButSufficientBodyFinishes() throws {
        let handler = EchoHandler()
        try withServer(handler, configure: rateLimited(1000)) { server in
            let client = try RawHTTPClient(port: server.port)
            let piece = [UInt8](repeating: UInt8(ascii: "y"), count: 300)
            let pieces = 30  // about 3000 bytes/s for 3 s: three windows, each well above 1000 bytes
            client.send("PATCH /u HTTP/1.1\r\nHost: x\r\nContent-Length: \(piece.count * pieces)\r\n\r\n")
            for _ in 0..<pieces {
                XCTAssertTrue(client.send(piece))
                usleep(100_000)
            }
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 200)
            XCTAssertTrue(response.bodyText.contains("bytes=\(piece.count * pieces) "), response.bodyText)
            XCTAssertEqual(handler.stats.withLock { $0.aborted }, [])
        }
    }

    func testZeroRateTurnsTheCheckOff() throws {
        let handler = EchoHandler()
        try withServer(handler, configure: rateLimited(0)) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("PATCH /u HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
            for _ in 0..<20 {  // 10 bytes/s for 2 s: two windows
                XCTAssertTrue(client.send("z"))
                usleep(100_000)
            }
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(handler.stats.withLock { $0.aborted }, [])
        }
    }
}
