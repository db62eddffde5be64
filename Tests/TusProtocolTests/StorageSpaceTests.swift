import Synchronization
import TusHTTP1
@testable import TusProtocol
import TusTestSupport
import XCTest

/// `--min-free-space` and a full disk: new uploads get 507 while those in progress may finish.
final class StorageSpaceTests: TusTestCase {
    private let gibibyte: Int64 = 1 << 30
    /// What the fake `statvfs` reports: bytes available of a 100 GiB file system.
    private final class FakeDisk: Sendable {
        let available = Atomic<Int64>(50 << 30)
    }
    private let disk = FakeDisk()

    private func configureSpace(_ requirement: FreeSpaceRequirement) {
        var configuration = TusConfiguration()
        configuration.minFreeSpace = requirement
        let disk = disk
        configuration.freeSpace = { DiskSpace(available: disk.available.load(ordering: .relaxed), total: 100 << 30) }
        configure(configuration)
    }

    func testRequirementParsing() {
        let rows: [(String, FreeSpaceRequirement?)] = [
            ("0", .bytes(0)), ("1048576", .bytes(1_048_576)), ("500M", .bytes(500 << 20)), ("10g", .bytes(10 << 30)),
            ("2T", .bytes(2 << 40)), ("64K", .bytes(64 << 10)), ("5%", .percent(5)), ("0.5%", .percent(0.5)),
            ("100%", .percent(100)), ("101%", nil), ("-1", nil), ("-5%", nil), ("abc", nil), ("10X", nil), ("", nil),
            ("M", nil), ("99999999999T", nil), ("1.5G", nil),
        ]
        for (text, expected) in rows {
            XCTAssertEqual(FreeSpaceRequirement(parsing: text), expected, text)
        }
        let space = DiskSpace(available: 10 << 30, total: 100 << 30)
        XCTAssertTrue(FreeSpaceRequirement.bytes(10 << 30).isMet(by: space))
        XCTAssertFalse(FreeSpaceRequirement.bytes((10 << 30) + 1).isMet(by: space))
        XCTAssertTrue(FreeSpaceRequirement.percent(10).isMet(by: space))
        XCTAssertFalse(FreeSpaceRequirement.percent(10.5).isMet(by: space))
    }

    func testBelowTheMinimumNewUploadsGet507AndRunningOnesFinish() {
        configureSpace(.percent(5))
        let running = createUpload(length: 10)
        XCTAssertEqual(client.patch(running, offset: 0, body: Array("hello".utf8)).status, 204)

        disk.available.store(4 * gibibyte, ordering: .relaxed)  // 4% left
        let refused = client.send(.POST, "/files/", headers: ["Upload-Length": "10"])
        XCTAssertEqual(refused.status, 507)
        XCTAssertNil(refused.header("Location"))
        let text = String(decoding: refused.response?.body ?? [], as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("ERR_INSUFFICIENT_STORAGE"), text)
        let withBody = client.send(
            .POST, "/files/", headers: ["Upload-Length": "5", "Content-Type": "application/offset+octet-stream"],
            body: Array("hello".utf8))
        XCTAssertEqual(withBody.status, 507)
        XCTAssertFalse(withBody.didReadBody, "a refused creation body is not read")
        XCTAssertEqual(withBody.response?.closeConnection, true, "the unread body is not drained")

        let finishing = client.patch(running, offset: 5, body: Array("world".utf8))
        XCTAssertEqual(finishing.status, 204, "an upload in progress may finish")
        XCTAssertEqual(offset(running), 10)

        disk.available.store(6 * gibibyte, ordering: .relaxed)
        XCTAssertEqual(client.send(.POST, "/files/", headers: ["Upload-Length": "10"]).status, 201, "space is back")
    }

    func testInvalidRequestsStayClientErrorsWhenTheDiskIsLow() {
        configureSpace(.bytes(1 << 40))  // never met
        XCTAssertEqual(client.send(.POST, "/files/", headers: ["Upload-Length": "x"]).status, 400)
        XCTAssertEqual(client.send(.POST, "/files/", headers: ["Upload-Length": "10"]).status, 507)
    }

    func testUnknownFreeSpaceDoesNotBlockCreation() {
        var configuration = TusConfiguration()
        configuration.minFreeSpace = .bytes(1 << 40)
        configuration.freeSpace = { nil }
        configure(configuration)
        XCTAssertEqual(client.send(.POST, "/files/", headers: ["Upload-Length": "10"]).status, 201)
    }

    func testFullDiskErrorsOfTheStoreMapTo507() {
        let rows: [(StoreError, TusError)] = [
            (.insufficientStorage, .insufficientStorage),
            (.io("write /data/ab: EIO: i/o error"), .storeFailure),
            (.unavailable("redis"), .storeUnavailable),
            (.notFound, .notFound),
        ]
        for (error, expected) in rows { XCTAssertEqual(TusHandler.mapStoreError(error), expected, "\(error)") }
        XCTAssertEqual(TusError.insufficientStorage.status.code, 507)
    }
}
