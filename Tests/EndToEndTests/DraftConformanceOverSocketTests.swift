import Foundation
import TusHTTPServer
import TusProtocol
import TusStore
import TusTestSupport
import XCTest

/// The draft conformance table through a real socket to an in-process `HTTPServer`: the 104s are read off the wire.
final class DraftConformanceOverSocketTests: XCTestCase {
    private func withServer(store: any UploadStore, _ body: (Int) throws -> Void) throws {
        let handler = TusHandler(configuration: TusConfiguration(maxSize: ConformanceSettings.maxSize), store: store)
        try withLoopbackServer(handler: handler) { try body($0.port) }
    }

    func testEveryRowOverASocketWithTheMemoryStore() throws {
        try withServer(store: MemoryUploadStore()) { port in
            let failures = DraftConformanceRunner(transport: SocketDraftConformanceTransport(port: port)).run()
            XCTAssertEqual(failures, [], failures.joined(separator: "\n"))
        }
    }

    func testEveryRowOverASocketWithTheFileStore() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "draft-conformance-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try FileUploadStore(directory: directory.path, fsync: .none)
        try withServer(store: store) { port in
            let failures = DraftConformanceRunner(transport: SocketDraftConformanceTransport(port: port)).run()
            XCTAssertEqual(failures, [], failures.joined(separator: "\n"))
        }
    }
}
