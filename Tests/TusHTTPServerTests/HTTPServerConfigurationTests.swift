import TusHTTPServer
import XCTest

/// The default connection limit must fit the descriptors the process has: a default start on a machine whose
/// hard limit is 20,000 (this one) warned that 10,000 connections can need 20,080.
final class HTTPServerConfigurationTests: XCTestCase {
    func testDefaultConnectionLimitFitsTheOpenFileLimit() {
        let cases: [(limit: Int, loops: Int, expected: Int)] = [
            (20_000, 2, 9_960),  // the limit that made every default start warn
            (1_048_576, 64, 10_000),  // Debian's systemd hard limit: the preferred 10,000
            (1_024, 1, 476),  // an unraised soft limit of 1024
            (20_080, 2, 10_000),  // exactly enough
            (10, 4, 1),  // too few for anything: still positive, and the start-up warning reports it
        ]
        for (limit, loops, expected) in cases {
            let chosen = HTTPServerConfiguration.maxConnections(fitting: limit, loops: loops)
            XCTAssertEqual(chosen, expected, "limit \(limit), \(loops) loops")
            var configuration = HTTPServerConfiguration()
            configuration.loops = loops
            configuration.maxConnections = chosen
            if expected > 1 { XCTAssertLessThanOrEqual(configuration.descriptorsNeeded, limit, "limit \(limit)") }
        }
    }

    func testPreferredLimitIsNeverExceeded() {
        XCTAssertEqual(HTTPServerConfiguration.maxConnections(fitting: 1_000_000, loops: 1, preferred: 300), 300)
    }
}
