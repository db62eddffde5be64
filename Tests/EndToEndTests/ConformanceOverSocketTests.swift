import Foundation
import TusHTTPServer
import TusProtocol
import TusStore
import TusTestSupport
import XCTest

/// The conformance table that TusProtocolTests runs against `FakeExchange`, here through a real socket to an
/// in-process `HTTPServer` on 127.0.0.1, with both stores.
final class ConformanceOverSocketTests: XCTestCase {
    private func withServer(store: any UploadStore, _ body: (Int) throws -> Void) throws {
        let handler = TusHandler(configuration: TusConfiguration(maxSize: ConformanceSettings.maxSize), store: store)
        try withLoopbackServer(handler: handler) { try body($0.port) }
    }

    func testEveryRowOverASocketWithTheMemoryStore() throws {
        try withServer(store: MemoryUploadStore()) { port in
            let failures = ConformanceRunner(transport: SocketConformanceTransport(port: port)).run()
            XCTAssertEqual(failures, [], failures.joined(separator: "\n"))
        }
    }

    func testEveryRowOverASocketWithTheFileStore() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tus-conformance-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try FileUploadStore(directory: directory.path, fsync: .none)
        try withServer(store: store) { port in
            let failures = ConformanceRunner(transport: SocketConformanceTransport(port: port)).run()
            XCTAssertEqual(failures, [], failures.joined(separator: "\n"))
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        XCTAssertTrue(leftovers.contains { $0.hasSuffix(".info") }, "uploads really went to disk")
    }
}
