import TusProtocol
import TusTestSupport
import XCTest

/// The draft conformance table (TusTestSupport/DraftConformanceCases.swift), every interop version, against the
/// handler and the in-memory store; EndToEndTests runs the same rows through a real socket.
final class DraftConformanceTableTests: XCTestCase {
    func testEveryRowOfEveryInteropVersionAgainstTheMemoryStore() {
        for version in DraftConformanceCases.versions {
            let handler = TusHandler(
                configuration: TusConfiguration(maxSize: ConformanceSettings.maxSize), store: MemoryUploadStore())
            let transport = HandlerDraftConformanceTransport(client: TusTestClient(handler: handler))
            let failures = DraftConformanceRunner(transport: transport).run(
                DraftConformanceCases.cases(version: version))
            XCTAssertEqual(failures, [], "interop version \(version):\n" + failures.joined(separator: "\n"))
        }
    }

    func testTheVersionTableServesThreeToNine() {
        XCTAssertEqual(DraftInteropVersion.supportedNumbers, Array(3...9))
    }
}
