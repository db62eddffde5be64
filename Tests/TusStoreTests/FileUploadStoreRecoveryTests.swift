import Foundation
import TusLoop
import TusProtocol
import XCTest

@testable import TusStore

/// "Crashes" built by hand: the files a killed process would have left, then a store opened on them.
final class FileUploadStoreRecoveryTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func put(_ name: String, _ bytes: [UInt8]) {
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/" + name, contents: Data(bytes)))
    }

    func put(_ name: String, json: String) {
        put(name, Array(json.utf8))
    }

    func putRecord(_ record: UploadRecord) {
        put(record.id + ".info", record.encodedJSON)
    }

    func fileBytes(_ name: String) -> [UInt8]? {
        FileManager.default.contents(atPath: directory + "/" + name).map { Array($0) }
    }

    func storedRecord(_ id: String) throws -> UploadRecord {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: directory + "/" + id + ".info"))
        return try JSONDecoder().decode(UploadRecord.self, from: data)
    }

    func record(
        _ id: String, length: Int64?, offset: Int64, pendingDiscardFrom: Int64? = nil
    ) -> UploadRecord {
        UploadRecord(
            UploadInfo(id: id, length: length, offset: offset, metadata: "k dg==", createdAt: 10, expiresAt: 20),
            pendingDiscardFrom: pendingDiscardFrom)
    }

    func testDataBeyondRecordOffsetIsKept() throws {
        putRecord(record("a", length: 100, offset: 10))
        put("a", patternBytes(count: 37))
        let store = try FileUploadStore(directory: directory)
        XCTAssertEqual(store.lookup("a").info?.offset, 37)
        XCTAssertEqual(fileBytes("a")?.count, 37)
        XCTAssertEqual(try storedRecord("a").offset, 10, "more data than the record says is normal: no rewrite")
    }

    /// All bytes present but the draft's completing request not made yet: not complete, so its expiry stays and
    /// the sweep still finds it, while a plain upload at its length loses its expiry as before.
    func testDraftUploadAwaitingCompletionKeepsItsExpiry() throws {
        var awaiting = UploadInfo(id: "w", length: 8, offset: 0, createdAt: 10, expiresAt: 20, awaitsCompletion: true)
        putRecord(UploadRecord(awaiting))
        put("w", patternBytes(count: 8))
        awaiting.awaitsCompletion = false
        awaiting.id = "p"
        putRecord(UploadRecord(awaiting))
        put("p", patternBytes(count: 8))
        let store = try FileUploadStore(directory: directory)
        let recovered = try XCTUnwrap(store.lookup("w").info)
        XCTAssertEqual(recovered.offset, 8)
        XCTAssertTrue(recovered.awaitsCompletion)
        XCTAssertEqual(recovered.expiresAt, 20, "still expires at its original time")
        XCTAssertNil(store.lookup("p").info?.expiresAt, "a complete upload never expires")
        XCTAssertEqual(store.listExpired(now: 19), [])
        XCTAssertEqual(store.listExpired(now: 20), ["w"])
    }

    func testPendingDiscardTruncatesBackToStart() throws {
        putRecord(record("b", length: 100, offset: 12, pendingDiscardFrom: 12))
        put("b", patternBytes(count: 60))
        let store = try FileUploadStore(directory: directory)
        XCTAssertEqual(store.lookup("b").info?.offset, 12)
        XCTAssertEqual(fileBytes("b"), patternBytes(count: 12))
        XCTAssertNil(try storedRecord("b").pendingDiscardFrom)
    }

    func testDataLongerThanLengthIsCut() throws {
        putRecord(record("c", length: 16, offset: 4))
        put("c", patternBytes(count: 25))
        let store = try FileUploadStore(directory: directory)
        XCTAssertEqual(store.lookup("c").info?.offset, 16)
        XCTAssertEqual(fileBytes("c"), patternBytes(count: 16))
    }

    func testDataShorterThanRecordLowersOffset() throws {
        putRecord(record("d", length: 100, offset: 50))
        put("d", patternBytes(count: 30))
        XCTAssertEqual(try FileUploadStore(directory: directory).lookup("d").info?.offset, 30)
    }

    func testMissingDataFileIsRecreatedAtZero() throws {
        putRecord(record("e", length: 100, offset: 50))
        let store = try FileUploadStore(directory: directory)
        XCTAssertEqual(store.lookup("e").info?.offset, 0)
        XCTAssertEqual(fileBytes("e"), [])
    }

    func testTornRecordsAreQuarantinedAndOthersLoad() throws {
        putRecord(record("good", length: 10, offset: 3))
        put("good", patternBytes(count: 3))
        put("torn.info", json: #"{"id":"torn","length":10,"off"#)
        put("torn", patternBytes(count: 3))
        put("empty.info", [])
        put("wrongid.info", record("other", length: 1, offset: 0).encodedJSON)
        put("negative.info", json: #"{"id":"negative","length":5,"offset":9,"createdAt":1}"#)
        let logs = LogRecorder()
        let store = try FileUploadStore(directory: directory, log: logs.sink)
        XCTAssertEqual(store.lookup("good").info?.offset, 3)
        for id in ["torn", "empty", "wrongid", "negative"] {
            XCTAssertEqual(store.lookup(id), .notFound, id)
            XCTAssertNotNil(fileBytes(id + ".info.corrupt"), id)
            XCTAssertNil(fileBytes(id + ".info"), id)
        }
        XCTAssertGreaterThanOrEqual(logs.all.count(where: { $0.contains("unreadable record") }), 4)
        // A second start neither reloads nor re-quarantines them.
        XCTAssertEqual(try FileUploadStore(directory: directory).lookup("torn"), .notFound)
    }

    func testLeftoverTemporaryRecordIsRemoved() throws {
        putRecord(record("f", length: 10, offset: 2))
        put("f", patternBytes(count: 2))
        put("f.info.tmp", json: #"{"id":"f","length":10,"offset":9"#)
        let store = try FileUploadStore(directory: directory)
        XCTAssertNil(fileBytes("f.info.tmp"))
        XCTAssertEqual(store.lookup("f").info?.offset, 2)
    }

    func testRecordFieldsRoundTripThroughRecovery() throws {
        let info = UploadInfo(
            id: "g_1-Z", length: nil, offset: 0, metadata: "name \"q\"\\ \u{1}é", createdAt: 1_700_000_000,
            expiresAt: nil)
        putRecord(UploadRecord(info))
        put("g_1-Z", [])
        XCTAssertEqual(try FileUploadStore(directory: directory).lookup("g_1-Z"), .found(info))
    }

    func testHandWrittenJSONMatchesTheDocumentedFormat() throws {
        let encoded = record("h", length: nil, offset: 3, pendingDiscardFrom: 1).encodedJSON
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(encoded)) as? [String: Any])
        XCTAssertEqual(
            Set(object.keys), ["id", "length", "offset", "metadata", "createdAt", "expiresAt", "pendingDiscardFrom"])
        XCTAssertTrue(object["length"] is NSNull)
        XCTAssertEqual(object["pendingDiscardFrom"] as? Int, 1)
        // Missing optional fields read as null, unknown ones are ignored.
        let minimal = #"{"id":"m","offset":0,"createdAt":1,"extra":true}"#
        let decoded = try JSONDecoder().decode(UploadRecord.self, from: Data(minimal.utf8))
        XCTAssertNil(decoded.length)
        XCTAssertNil(decoded.metadata)
    }

    func testDirectoryIsCreatedWhenMissing() throws {
        let nested = directory + "/a/b"
        let store = try FileUploadStore(directory: nested + "/")
        XCTAssertEqual(store.directory, nested)
        var isDirectory: ObjCBool = false
        XCTAssertTrue(FileManager.default.fileExists(atPath: nested, isDirectory: &isDirectory))
        XCTAssertTrue(isDirectory.boolValue)
    }

    func testGoneMemoryIsBounded() {
        var gone = RecentlyGoneIDs(capacity: 3)
        for id in ["a", "b", "c", "a", "d"] { gone.insert(id) }
        XCTAssertEqual(gone.count, 3)
        XCTAssertFalse(gone.contains("a"))
        XCTAssertTrue(gone.contains("b") && gone.contains("c") && gone.contains("d"))
        gone.insert("e")
        XCTAssertFalse(gone.contains("b"))
        XCTAssertTrue(gone.contains("e"))
    }
}

final class FileStoreErrorTests: XCTestCase {
    /// ENOSPC and EDQUOT (no libuv name in 1.44) become the typed case that clients see as 507.
    func testOutOfSpaceErrorsAreTyped() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let data = try FileDataStore(directory: directory)
        let state = try FileStateStore(directory: directory)
        XCTAssertEqual(data.ioError("write", .noSpaceLeft), .insufficientStorage)
        XCTAssertEqual(state.ioError("write", UVError(code: -122)), .insufficientStorage)
        XCTAssertEqual(data.ioError("write", .ioError), .io("write: \(UVError.ioError)"))
    }
}
