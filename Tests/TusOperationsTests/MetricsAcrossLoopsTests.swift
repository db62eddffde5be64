import TusHTTP1
import TusHTTPServer
import TusOperations
import TusProtocol
import TusTestSupport
import XCTest

/// The scrape over real loops: requests land on both loops of a 2-loop server (SO_REUSEPORT spreads
/// connections), each loop counts on its own, and /metrics asks every loop for its copy (run under TSan by
/// scripts/test.sh, which is the point: no counter is touched by two threads).
final class MetricsAcrossLoopsTests: XCTestCase {
    func testCountsFromEveryLoopAreAddedUp() throws {
        let metrics = MetricsRegistry()
        let tus = TusHandler(store: MemoryUploadStore(), events: metrics)
        var configuration = HTTPServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.loops = 2
        let server = HTTPServer(
            configuration: configuration, handler: OperationsHandler(next: tus, metrics: metrics))
        try server.start()
        defer {
            server.shutdown()
            server.wait()
        }
        let connections = 16
        for _ in 0..<connections {
            let client = try RawHTTPClient(port: server.port)
            XCTAssertTrue(client.send("HEAD /files/missing HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n"))
            XCTAssertEqual(try client.readResponse(forHead: true).status, 404)
        }
        // Every loop has answered by now; scrape a few times so the scrape itself lands on both loops.
        for _ in 0..<4 {
            let client = try RawHTTPClient(port: server.port)
            XCTAssertTrue(client.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
            let text = try client.readResponse().bodyText
            XCTAssertTrue(text.contains("tusd_requests_total{method=\"HEAD\"} \(connections)\n"), text)
            XCTAssertTrue(
                text.contains("tusd_errors_total{status=\"404\",code=\"ERR_UPLOAD_NOT_FOUND\"} \(connections)\n"), text)
        }
    }
}
