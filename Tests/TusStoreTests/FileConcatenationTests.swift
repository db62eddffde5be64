import Foundation
import TusHTTP1
import TusLoop
import TusProtocol
import XCTest

@testable import TusStore

/// Finals on the file store: hard links, not copies; reads across part boundaries; partial removal after
/// assembly; idempotent re-assembly after an interrupted one; removal of the final's links; a restart.
final class FileConcatenationTests: FileStoreTestCase {

    // MARK: tests

    func upload(_ store: FileUploadStore, _ id: String, _ bytes: [UInt8]) throws -> UploadInfo {
        let info = UploadInfo(
            id: id, length: Int64(bytes.count), createdAt: 1, concat: "partial", isPartial: true)
        _ = try create(store, info).unwrap()
        let writer = try openWriter(store, id, at: 0, discardable: false)
        _ = try write(writer, bytes).unwrap()
        return try commit(writer).unwrap()
    }

    func complete(_ store: FileUploadStore, _ final: UploadInfo, _ partials: [UploadInfo]) -> Result<UploadInfo, StoreError> {
        driver.run { done in store.completeConcatenation(final, partials: partials, on: self.driver.executor, completion: done) }
    }

    func inode(_ name: String) throws -> UInt64 {
        let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/" + name)
        return (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
    }

    func testAssemblyLinksReadsAcrossPartsAndOutlivesThePartials() throws {
        let store = try FileUploadStore(directory: directory, fsync: .commit)
        let a = try upload(store, "a", patternBytes(count: 7, seed: 1))
        let b = try upload(store, "b", patternBytes(count: 3, seed: 2))
        let final = try create(
            store, UploadInfo(id: "f", length: 17, createdAt: 1, concat: "final;/files/a /files/b /files/a", partialIDs: ["a", "b", "a"])
        ).unwrap()
        let completed = try complete(store, final, [a, b, a]).unwrap()
        XCTAssertTrue(completed.isComplete)
        XCTAssertEqual(try inode("f.part-0"), try inode("a"), "a link, not a copy")
        XCTAssertEqual(try inode("f.part-1"), try inode("b"))
        let expected = patternBytes(count: 7, seed: 1) + patternBytes(count: 3, seed: 2) + patternBytes(count: 7, seed: 1)
        for piece in [1, 4, 7, 100] {
            XCTAssertEqual(try readAll(store, "f", pieceSize: piece), expected, "piece size \(piece)")
        }
        XCTAssertEqual(try readAll(store, "a"), patternBytes(count: 7, seed: 1), "plain uploads read as before")

        _ = try driver.run { done in store.remove(id: "a", reason: .terminated, on: self.driver.executor, completion: done) }.unwrap()
        XCTAssertEqual(try readAll(store, "f"), expected, "the final keeps a removed partial's bytes")

        XCTAssertEqual(complete(store, completed, [a, b, a]), .success(completed), "complete again: nothing to do")
        let reopened = try FileUploadStore(directory: directory, fsync: .commit)
        XCTAssertEqual(reopened.lookup("f"), .found(completed), "recovery keeps a complete final complete")
        _ = try driver.run { done in reopened.remove(id: "f", reason: .terminated, on: self.driver.executor, completion: done) }.unwrap()
        let left = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("f") }
        XCTAssertEqual(left, [], "the final's record, file and part links are gone")
        XCTAssertEqual(try readAll(reopened, "b"), patternBytes(count: 3, seed: 2), "partial b is untouched")
    }

    /// A crash between the links and the record: the final is not complete, and assembling again finishes it.
    func testInterruptedAssemblyIsCompletable() throws {
        let store = try FileUploadStore(directory: directory, fsync: .commit)
        let a = try upload(store, "a", [1, 2])
        let b = try upload(store, "b", [3])
        let final = try create(store, UploadInfo(id: "f", length: 3, createdAt: 1, concat: "final;/files/a /files/b", partialIDs: ["a", "b"])).unwrap()
        XCTAssertEqual(link(directory + "/a", directory + "/f.part-0"), 0, "the first link of an assembly that crashed")
        let reopened = try FileUploadStore(directory: directory, fsync: .commit)
        XCTAssertEqual(reopened.lookup("f"), .found(final), "not complete after the restart")
        XCTAssertTrue(try complete(reopened, final, [a, b]).unwrap().isComplete)
        XCTAssertEqual(try readAll(reopened, "f"), [1, 2, 3])
    }

    func testAssemblyFailsCleanlyWhenAPartialIsGone() throws {
        let store = try FileUploadStore(directory: directory, fsync: .none)
        let a = try upload(store, "a", [1])
        let final = try create(store, UploadInfo(id: "f", length: 1, createdAt: 1, concat: "final;/files/a", partialIDs: ["a"])).unwrap()
        _ = try driver.run { done in store.remove(id: "a", reason: .expired, on: self.driver.executor, completion: done) }.unwrap()
        XCTAssertEqual(complete(store, final, [a]).failure, .gone)
        XCTAssertEqual(store.lookup("f"), .found(final), "still not complete, never wrong bytes")
    }

    /// Records written before concatenation existed (seven keys) still load as plain uploads.
    func testOldRecordsStillLoad() throws {
        let json = #"{"id":"old","length":4,"offset":2,"metadata":null,"createdAt":5,"expiresAt":null,"pendingDiscardFrom":null}"#
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/old.info", contents: Data(json.utf8)))
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/old", contents: Data([1, 2])))
        let store = try FileUploadStore(directory: directory, fsync: .none)
        XCTAssertEqual(store.lookup("old"), .found(UploadInfo(id: "old", length: 4, offset: 2, createdAt: 5)))
        XCTAssertEqual(UploadRecord(UploadInfo(id: "old", length: 4, offset: 2, createdAt: 5)).encodedJSON.count, json.utf8.count + 1, "plain records keep their seven keys")
    }
}
