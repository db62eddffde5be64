import Glibc
import TusCore
import TusHTTP1
import TusHTTPServer
import TusTestSupport
import XCTest

/// The minimum body rate over a real socket: a trickling body is cut like a timeout (the sink hears `.timeout` and
/// has the bytes that came). Windows are 1 s here instead of the body timeout. The rest of the rate rules (a slow
/// client above the rate finishes, 0 turns the check off, a window the server stopped reading in starts afresh)
/// are decisions of `HTTPConnectionStateMachine`, tested with a manual clock in its tests.
final class BodyRateTests: XCTestCase {
    private func rateLimited(_ bytesPerSecond: Int) -> (inout HTTPServerConfiguration) -> Void {
        { configuration in
            configuration.minBodyBytesPerSecond = bytesPerSecond
            configuration.bodyRateWindowMilliseconds = 1000
            configuration.bodyTimeoutMilliseconds = 10_000  // far away: only the rate can cut
        }
    }

    func testTricklingBodyIsCutAndKeepsItsBytes() throws {
        let handler = EchoHandler()
        try withServer(handler, configure: rateLimited(1000)) { server in
            let client = try RawHTTPClient(port: server.port)
            client.send("PATCH /u HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            let started = MonotonicClock.seconds
            // 10 bytes/s, far below 1000: one byte every 100 ms until the server gives up (or 5 s pass).
            for _ in 0..<50 where handler.stats.withLock({ $0.aborted.isEmpty }) {
                guard client.send("x") else { break }
                usleep(100_000)
            }
            let elapsed = MonotonicClock.seconds - started
            XCTAssertEqual(handler.stats.withLock { $0.aborted }, [.timeout], "the sink hears a timeout")
            XCTAssertLessThan(elapsed, 3.0, "cut after about one window (1 s) plus a sweep (0.5 s)")
            let kept = handler.stats.withLock { $0.bodyBytes }
            XCTAssertGreaterThan(kept, 0, "bytes that arrived before the cut reached the sink")
            XCTAssertLessThan(kept, 30)
            XCTAssertTrue(client.waitForClose(), "the connection is closed")
        }
    }
}
