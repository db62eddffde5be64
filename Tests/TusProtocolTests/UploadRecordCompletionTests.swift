import Foundation
import TusProtocol
import TusTestSupport
import XCTest

/// `awaitsCompletion` in the `<id>.info` record: written only while set, absent (false) in every older record, and
/// it keeps an upload at offset == length from counting as complete.
final class UploadRecordCompletionTests: XCTestCase {
    func testTheFlagRoundTripsAndOnlyAppearsWhileSet() throws {
        var info = UploadInfo(id: "abc", length: 5, offset: 5, createdAt: 1, awaitsCompletion: true)
        XCTAssertFalse(info.isComplete, "at its length but not said complete")
        let held = UploadRecord(info).encodedJSON
        XCTAssertTrue(String(decoding: held, as: UTF8.self).contains(#","awaitsCompletion":true}"#))
        let decoded = try JSONDecoder().decode(UploadRecord.self, from: Data(held)).info
        XCTAssertEqual(decoded, info)

        info.awaitsCompletion = false
        XCTAssertTrue(info.isComplete)
        let plain = UploadRecord(info).encodedJSON
        XCTAssertFalse(String(decoding: plain, as: UTF8.self).contains("awaitsCompletion"))
        XCTAssertEqual(try JSONDecoder().decode(UploadRecord.self, from: Data(plain)).info, info)
    }

    func testARecordWrittenBeforeTheFlagReadsAsNotAwaiting() throws {
        let old =
            #"{"id":"a","length":3,"offset":3,"metadata":null,"createdAt":1,"expiresAt":null,"#
            + #""pendingDiscardFrom":null}"#
        let info = try JSONDecoder().decode(UploadRecord.self, from: Data(old.utf8)).info
        XCTAssertFalse(info.awaitsCompletion)
        XCTAssertTrue(info.isComplete)
        let viaInfo = try JSONDecoder().decode(UploadInfo.self, from: Data(old.utf8))
        XCTAssertFalse(viaInfo.awaitsCompletion)
    }

    /// The memory store ends the wait on a completing `declareLength` of the same length, and refuses another length
    /// (or a plain declaration) as before.
    func testDeclaringTheSameLengthAgainEndsTheWait() throws {
        let store = MemoryUploadStore()
        let executor = ManualExecutor()
        var created: Result<UploadInfo, StoreError>?
        store.create(UploadInfo(id: "x", length: 0, createdAt: 1, awaitsCompletion: true), on: executor) {
            created = $0
        }
        XCTAssertEqual(try XCTUnwrap(created).get().isComplete, false)
        var other: Result<UploadInfo, StoreError>?
        store.declareLength(id: "x", length: 1, completing: true, on: executor) { other = $0 }
        XCTAssertEqual(other, .failure(.lengthAlreadySet))
        var plain: Result<UploadInfo, StoreError>?
        store.declareLength(id: "x", length: 0, on: executor) { plain = $0 }
        XCTAssertEqual(plain, .failure(.lengthAlreadySet))
        var same: Result<UploadInfo, StoreError>?
        store.declareLength(id: "x", length: 0, completing: true, on: executor) { same = $0 }
        let ended = try XCTUnwrap(same).get()
        XCTAssertFalse(ended.awaitsCompletion)
        XCTAssertTrue(ended.isComplete)
        var again: Result<UploadInfo, StoreError>?
        store.declareLength(id: "x", length: 0, completing: true, on: executor) { again = $0 }
        XCTAssertEqual(again, .failure(.lengthAlreadySet), "once complete, a length is never declared again")
    }
}
