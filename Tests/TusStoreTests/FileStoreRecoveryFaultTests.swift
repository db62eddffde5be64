import Foundation
import TusProtocol
import XCTest

@testable import TusLoop
@testable import TusStore

/// Issue 21: every step of recovery, and the record writes after it, with ENOSPC and EIO injected
/// (`BlockingFileSystem.injectFaults`). An upload whose record can be read is served, with the offset its data
/// says; its next change repairs its files first, failing as the disk does (507 for ENOSPC) until it can.
///
/// Recovery rewrites a record only when it is news (issue 19): the data is shorter than the record's offset, or a
/// discard mark must be cleared. A data file longer than the record is the normal case (a plain PATCH writes no
/// record), so the scenarios that exercise a failing rewrite start from one of the two.
final class FileStoreRecoveryFaultTests: FileStoreTestCase {
    override func tearDownWithError() throws {
        BlockingFileSystem.injectFaults(nil)
        try super.tearDownWithError()
    }

    // MARK: helpers

    /// Runs `body` once per injected error, in a fresh directory for each.
    func forEachError(_ label: String = "", _ body: (UVError, String) throws -> Void) throws {
        for error in [UVError.noSpaceLeft, .ioError] {
            let path = directory + "/" + label + (error == .noSpaceLeft ? "enospc" : "eio")
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            try body(error, path)
            BlockingFileSystem.injectFaults(nil)
        }
    }

    func failing(_ operation: String, where matches: @escaping @Sendable (String) -> Bool, with error: UVError) {
        BlockingFileSystem.injectFaults { called, path in called == operation && matches(path) ? error : nil }
    }

    func failing(_ operation: String, suffix: String, with error: UVError) {
        failing(operation, where: { $0.hasSuffix(suffix) }, with: error)
    }

    func put(_ directory: String, _ name: String, _ bytes: [UInt8]) {
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/" + name, contents: Data(bytes)))
    }

    func bytes(_ directory: String, _ name: String) -> [UInt8]? {
        FileManager.default.contents(atPath: directory + "/" + name).map { Array($0) }
    }

    func onDisk(_ directory: String, _ id: String) throws -> UploadRecord {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: directory + "/" + id + ".info"))
        return try JSONDecoder().decode(UploadRecord.self, from: data)
    }

    func record(_ id: String, length: Int64?, offset: Int64, pendingDiscardFrom: Int64? = nil) -> UploadRecord {
        UploadRecord(
            UploadInfo(id: id, length: length, offset: offset, createdAt: 10), pendingDiscardFrom: pendingDiscardFrom)
    }

    func tryOpenWriter(
        _ store: FileUploadStore, _ id: String, at offset: Int64, discardable: Bool = false
    ) -> Result<any UploadWriter, StoreError> {
        driver.run { done in
            store.openWriter(
                id: id, startingAt: offset, discardable: discardable, lock: TestLock(), on: self.driver.executor,
                completion: done)
        }
    }

    /// ENOSPC is the typed case clients see as 507; EIO an I/O error (500).
    func assertFails<T>(
        _ result: Result<T, StoreError>, as injected: UVError, _ message: String = "",
        file: StaticString = #filePath, line: UInt = #line
    ) {
        switch result {
        case .success: XCTFail("succeeded despite \(injected) \(message)", file: file, line: line)
        case .failure(let error) where injected == .noSpaceLeft:
            XCTAssertEqual(error, .insufficientStorage, message, file: file, line: line)
        case .failure(let error):
            guard case .io = error else {
                return XCTFail("\(error) for \(injected) \(message)", file: file, line: line)
            }
        }
    }

    // MARK: the record's rewrite fails (the full disk of issue 21)

    /// Both reasons recovery rewrites a record: data shorter than the record's offset (bytes lost under a lax
    /// fsync policy), and a discard mark over bytes it cuts.
    func testRecordRewriteFailureServesTheUploadAndRepairsBeforeItsNextChange() throws {
        let scenarios: [(label: String, record: UploadRecord, data: Int, served: Int64)] = [
            ("short", record("a", length: 100, offset: 50), 37, 37),
            ("mark", record("a", length: 100, offset: 12, pendingDiscardFrom: 12), 60, 12),
        ]
        for (label, stored, dataCount, served) in scenarios {
            for operation in ["open", "write", "fdatasync", "rename"] {
                try forEachError(label + "-" + operation + "-") { error, directory in
                    put(directory, "a.info", stored.encodedJSON)
                    put(directory, "a", patternBytes(count: dataCount))
                    failing(operation, suffix: "/a.info.tmp", with: error)
                    let logs = LogRecorder()
                    let store = try FileUploadStore(directory: directory, log: logs.sink)
                    let step = "\(label) \(operation) \(error)"
                    XCTAssertEqual(store.lookup("a").info?.offset, served, "served as its files say: \(step)")
                    XCTAssertEqual(try onDisk(directory, "a"), stored, "the old record stays: \(step)")
                    XCTAssertTrue(
                        logs.all.contains { $0.contains("upload a served at offset \(served)") }, "\(logs.all)")
                    XCTAssertEqual(bytes(directory, "a")?.count, Int(served), "the data is cut all the same: \(step)")

                    assertFails(tryOpenWriter(store, "a", at: served), as: error, "while the fault lasts: \(step)")
                    XCTAssertEqual(store.lookup("a").info?.offset, served, "HEAD still answers the true offset")
                    XCTAssertEqual(
                        try FileUploadStore(directory: directory).lookup("a").info?.offset, served,
                        "a start meanwhile recovers the same offset: \(step)")
                    assertFails(tryOpenWriter(store, "a", at: served), as: error, "still failing: \(step)")

                    BlockingFileSystem.injectFaults(nil)
                    let writer = try openWriter(store, "a", at: served, discardable: false)
                    let repaired = try onDisk(directory, "a")
                    XCTAssertEqual(repaired.offset, served, "repaired before the write: \(step)")
                    XCTAssertNil(repaired.pendingDiscardFrom, step)
                    _ = try write(writer, patternBytes(count: 5, seed: 1)).unwrap()
                    XCTAssertEqual(try commit(writer).unwrap().offset, served + 5)
                    // A plain PATCH writes no record: the next start takes the offset from the data file.
                    XCTAssertEqual(try onDisk(directory, "a").offset, served, "no record for a plain PATCH: \(step)")
                    XCTAssertEqual(
                        bytes(directory, "a"), patternBytes(count: Int(served)) + patternBytes(count: 5, seed: 1))
                    XCTAssertEqual(try FileUploadStore(directory: directory).lookup("a").info?.offset, served + 5)
                }
            }
        }
    }

    /// The repair's last step is the directory fsync: until it succeeds, the repair is not done and is tried again.
    func testRepairIsNotDoneUntilTheDirectoryIsSynced() throws {
        try forEachError { error, directory in
            put(directory, "s.info", record("s", length: 100, offset: 20).encodedJSON)
            put(directory, "s", patternBytes(count: 8))
            failing("write", suffix: "/s.info.tmp", with: error)
            let store = try FileUploadStore(directory: directory)
            XCTAssertEqual(store.lookup("s").info?.offset, 8)
            failing("fsync", where: { $0 == directory }, with: error)
            assertFails(tryOpenWriter(store, "s", at: 8), as: error)
            XCTAssertEqual(try onDisk(directory, "s").offset, 8, "the record was rewritten, the fsync failed")
            XCTAssertNotNil(store.state.state.withLock { $0.repairs["s"] }, "so the repair is still pending")
            BlockingFileSystem.injectFaults(nil)
            let writer = try openWriter(store, "s", at: 8, discardable: false)
            XCTAssertEqual(try commit(writer).unwrap().offset, 8)
            XCTAssertEqual(try onDisk(directory, "s").offset, 8)
        }
    }

    /// declareLength is a change too: it repairs first, and writes the reconciled offset with the length.
    func testDeclaringTheLengthRepairsFirst() throws {
        try forEachError { error, directory in
            put(directory, "d.info", record("d", length: nil, offset: 20).encodedJSON)
            put(directory, "d", patternBytes(count: 9))
            failing("write", suffix: "/d.info.tmp", with: error)
            let store = try FileUploadStore(directory: directory)
            XCTAssertEqual(store.lookup("d").info?.offset, 9)
            XCTAssertEqual(store.state.state.withLock { $0.repairs["d"] }, .recover(try onDisk(directory, "d")))
            let declare = { (length: Int64) -> Result<UploadInfo, StoreError> in
                self.driver.run { done in
                    store.declareLength(id: "d", length: length, on: self.driver.executor, completion: done)
                }
            }
            assertFails(declare(20), as: error)
            XCTAssertNil(store.lookup("d").info?.length)
            BlockingFileSystem.injectFaults(nil)
            XCTAssertEqual(try declare(20).unwrap().offset, 9)
            let stored = try onDisk(directory, "d")
            XCTAssertEqual([stored.offset, stored.length], [9, 20])
        }
    }

    // MARK: a pending discard whose truncation fails

    func testFailedDiscardIsCutBeforeTheNextWrite() throws {
        for (operation, suffix) in [("open", "/b"), ("ftruncate", "/b"), ("fdatasync", "/b")] {
            try forEachError(operation + "-") { error, directory in
                put(directory, "b.info", record("b", length: 100, offset: 12, pendingDiscardFrom: 12).encodedJSON)
                put(directory, "b", patternBytes(count: 60))
                failing(operation, suffix: suffix, with: error)
                let store = try FileUploadStore(directory: directory)
                let step = "\(operation) \(error)"
                XCTAssertEqual(store.lookup("b").info?.offset, 12, "unverified bytes never count: \(step)")
                XCTAssertEqual(try onDisk(directory, "b").pendingDiscardFrom, 12, "the record still says so: \(step)")
                if operation != "fdatasync" { XCTAssertEqual(bytes(directory, "b")?.count, 60, step) }

                assertFails(tryOpenWriter(store, "b", at: 12), as: error, step)
                BlockingFileSystem.injectFaults(nil)
                let writer = try openWriter(store, "b", at: 12, discardable: false)
                XCTAssertEqual(bytes(directory, "b"), patternBytes(count: 12), "cut before the write: \(step)")
                XCTAssertNil(try onDisk(directory, "b").pendingDiscardFrom)
                _ = try write(writer, patternBytes(count: 3, seed: 7)).unwrap()
                XCTAssertEqual(try commit(writer).unwrap().offset, 15)
                // Without the cut, bytes 15..<60 would be stale tail that the next start counted as data.
                XCTAssertEqual(bytes(directory, "b"), patternBytes(count: 12) + patternBytes(count: 3, seed: 7))
                XCTAssertEqual(try FileUploadStore(directory: directory).lookup("b").info?.offset, 15, step)
            }
        }
    }

    // MARK: the data file cannot be measured, or is missing and cannot be made

    func testUnmeasurableDataServesTheCommittedOffsetUntilRepaired() throws {
        try forEachError { error, directory in
            put(directory, "c.info", record("c", length: 100, offset: 10).encodedJSON)
            put(directory, "c", patternBytes(count: 37))
            failing("stat", suffix: "/c", with: error)
            let store = try FileUploadStore(directory: directory)
            XCTAssertEqual(store.lookup("c").info?.offset, 10, "the committed offset, all that is known")
            assertFails(tryOpenWriter(store, "c", at: 10), as: error)

            BlockingFileSystem.injectFaults(nil)
            // The repair measures the data: the client learns the true offset (409, then HEAD) and resumes there.
            XCTAssertEqual(tryOpenWriter(store, "c", at: 10).map { _ in true }, .failure(.conflict))
            XCTAssertEqual(store.lookup("c").info?.offset, 37)
            XCTAssertEqual(try onDisk(directory, "c").offset, 37)
            let writer = try openWriter(store, "c", at: 37, discardable: false)
            XCTAssertEqual(try commit(writer).unwrap().offset, 37)
            XCTAssertEqual(bytes(directory, "c"), patternBytes(count: 37))
        }
    }

    /// The last PATCH of a complete upload writes no record, so an unmeasurable data file may hold a complete
    /// upload under a record with an expiry: it is not expired on that guess. The repair brings the expiry back
    /// for an upload its data shows incomplete.
    func testUnmeasurableDataIsNotExpiredUntilMeasured() throws {
        try forEachError { error, directory in
            let complete = UploadInfo(id: "k", length: 10, offset: 0, createdAt: 10, expiresAt: 50)
            let incomplete = UploadInfo(id: "i", length: 100, offset: 0, createdAt: 10, expiresAt: 50)
            put(directory, "k.info", UploadRecord(complete).encodedJSON)
            put(directory, "k", patternBytes(count: 10))
            put(directory, "i.info", UploadRecord(incomplete).encodedJSON)
            put(directory, "i", patternBytes(count: 37))
            failing("stat", where: { $0.hasSuffix("/k") || $0.hasSuffix("/i") }, with: error)
            let store = try FileUploadStore(directory: directory)
            XCTAssertEqual(store.lookup("k").info?.offset, 0, "the record's offset, all that is known")
            XCTAssertNil(store.lookup("k").info?.expiresAt)
            XCTAssertEqual(store.listExpired(now: 1_000), [], "neither may be complete for all anyone knows")

            BlockingFileSystem.injectFaults(nil)
            XCTAssertEqual(tryOpenWriter(store, "i", at: 0).map { _ in true }, .failure(.conflict))
            XCTAssertEqual(store.lookup("i").info?.offset, 37)
            XCTAssertEqual(store.listExpired(now: 1_000), ["i"], "measured incomplete: its expiry is back")
            let restarted = try FileUploadStore(directory: directory)
            XCTAssertEqual(restarted.lookup("k").info?.offset, 10)
            XCTAssertNil(restarted.lookup("k").info?.expiresAt)
            XCTAssertEqual(restarted.listExpired(now: 1_000), ["i"])
        }
    }

    func testMissingDataThatCannotBeRecreatedIsLeftForTheNextStart() throws {
        try forEachError { error, directory in
            put(directory, "e.info", record("e", length: 100, offset: 50).encodedJSON)
            failing("open", suffix: "/e", with: error)
            let logs = LogRecorder()
            XCTAssertEqual(try FileUploadStore(directory: directory, log: logs.sink).lookup("e"), .notFound)
            XCTAssertTrue(logs.all.contains { $0.contains("skipping upload e") }, "\(logs.all)")
            XCTAssertNotNil(bytes(directory, "e.info"), "the record is kept")

            BlockingFileSystem.injectFaults(nil)
            XCTAssertEqual(try FileUploadStore(directory: directory).lookup("e").info?.offset, 0)
            XCTAssertEqual(bytes(directory, "e"), [])
        }
    }

    // MARK: records that cannot be read, leftovers that cannot be removed

    func testUnreadableRecordIsNotQuarantined() throws {
        for operation in ["open", "read"] {
            try forEachError(operation + "-") { error, directory in
                put(directory, "r.info", record("r", length: 10, offset: 4).encodedJSON)
                put(directory, "r", patternBytes(count: 4))
                failing(operation, suffix: "/r.info", with: error)
                let logs = LogRecorder()
                XCTAssertEqual(try FileUploadStore(directory: directory, log: logs.sink).lookup("r"), .notFound)
                XCTAssertTrue(logs.all.contains { $0.contains("until a restart can read its record") }, "\(logs.all)")
                XCTAssertNotNil(bytes(directory, "r.info"), "an I/O error says nothing about the record")
                XCTAssertNil(bytes(directory, "r.info.corrupt"))

                BlockingFileSystem.injectFaults(nil)
                XCTAssertEqual(try FileUploadStore(directory: directory).lookup("r").info?.offset, 4)
            }
        }
    }

    func testQuarantineThatCannotRenameLeavesTheRecordForTheNextStart() throws {
        try forEachError { error, directory in
            put(directory, "torn.info", Array(#"{"id":"torn","len"#.utf8))
            put(directory, "ok.info", record("ok", length: 10, offset: 3).encodedJSON)
            put(directory, "ok", patternBytes(count: 3))
            failing("rename", suffix: "/torn.info", with: error)
            let logs = LogRecorder()
            let store = try FileUploadStore(directory: directory, log: logs.sink)
            XCTAssertEqual(store.lookup("torn"), .notFound)
            XCTAssertEqual(store.lookup("ok").info?.offset, 3, "the others load")
            XCTAssertTrue(logs.all.contains { $0.contains("rename failed") }, "\(logs.all)")
            XCTAssertNotNil(bytes(directory, "torn.info"))

            BlockingFileSystem.injectFaults(nil)
            _ = try FileUploadStore(directory: directory)
            XCTAssertNotNil(bytes(directory, "torn.info.corrupt"))
            XCTAssertNil(bytes(directory, "torn.info"))
        }
    }

    func testLeftoverTemporaryRecordThatCannotBeRemovedIsHarmless() throws {
        try forEachError { error, directory in
            put(directory, "f.info", record("f", length: 10, offset: 2).encodedJSON)
            put(directory, "f", patternBytes(count: 2))
            put(directory, "f.info.tmp", Array(#"{"id":"f","length":10,"offset":9"#.utf8))
            failing("unlink", suffix: "/f.info.tmp", with: error)
            let logs = LogRecorder()
            let store = try FileUploadStore(directory: directory, log: logs.sink)
            XCTAssertEqual(store.lookup("f").info?.offset, 2)
            XCTAssertTrue(logs.all.contains { $0.contains("cannot remove") }, "\(logs.all)")

            BlockingFileSystem.injectFaults(nil)
            // A discardable write rewrites the record (a plain one would write none): through the same temporary
            // name, which replaces the leftover.
            let writer = try openWriter(store, "f", at: 2, discardable: true)
            XCTAssertNil(bytes(directory, "f.info.tmp"), "the rename took the leftover's name")
            XCTAssertEqual(try onDisk(directory, "f").pendingDiscardFrom, 2)
            _ = try write(writer, [1]).unwrap()
            XCTAssertEqual(try commit(writer).unwrap().offset, 3)
            let stored = try onDisk(directory, "f")
            XCTAssertEqual(stored.offset, 3, "the commit clears the mark with the new offset")
            XCTAssertNil(stored.pendingDiscardFrom)
            XCTAssertNil(bytes(directory, "f.info.tmp"))
            XCTAssertEqual(try FileUploadStore(directory: directory).lookup("f").info?.offset, 3)
        }
    }

    // MARK: the directory fsync at the end of recovery

    func testFailedDirectorySyncDoesNotStopTheStart() throws {
        try forEachError { error, directory in
            // Data shorter than the record: recovery rewrites the record, which needs the directory fsync.
            put(directory, "g.info", record("g", length: 10, offset: 6).encodedJSON)
            put(directory, "g", patternBytes(count: 1))
            failing("fsync", where: { $0 == directory }, with: error)
            let logs = LogRecorder()
            let store = try FileUploadStore(directory: directory, log: logs.sink)
            XCTAssertEqual(store.lookup("g").info?.offset, 1)
            XCTAssertEqual(try onDisk(directory, "g").offset, 1)
            XCTAssertTrue(logs.all.contains { $0.contains("may not be durable") }, "\(logs.all)")
            XCTAssertNil(store.state.state.withLock { $0.repairs["g"] }, "not a repair: the next start redoes it")
        }
    }

    // MARK: a commit whose record write fails while serving

    /// A checksummed PATCH whose bytes verified but whose record write failed: memory keeps the old offset, and
    /// the bytes past it (and a record that may already say otherwise) are brought back in line before the next
    /// write, so they never become a stale tail under a later, shorter PATCH.
    func testFailedCommitRecordIsRepairedBeforeTheNextWrite() throws {
        for (operation, isDirectory) in [("write", false), ("fsync", true)] {
            try forEachError(operation + "-") { error, directory in
                let store = try FileUploadStore(directory: directory)
                _ = try create(store, UploadInfo(id: "u", length: 100, createdAt: 1)).unwrap()
                let first = try openWriter(store, "u", at: 0, discardable: false)
                _ = try write(first, patternBytes(count: 5)).unwrap()
                XCTAssertEqual(try commit(first).unwrap().offset, 5)

                let checksummed = try openWriter(store, "u", at: 5, discardable: true)
                _ = try write(checksummed, patternBytes(count: 40, seed: 9)).unwrap()
                failing(operation, where: { isDirectory ? $0 == directory : $0.hasSuffix("/u.info.tmp") }, with: error)
                assertFails(commit(checksummed), as: error, operation)
                XCTAssertEqual(store.lookup("u").info?.offset, 5, "memory never runs ahead of a failed record write")

                BlockingFileSystem.injectFaults(nil)
                let next = try openWriter(store, "u", at: 5, discardable: false)
                XCTAssertEqual(bytes(directory, "u"), patternBytes(count: 5), "cut back before the write: \(operation)")
                let repaired = try onDisk(directory, "u")
                XCTAssertEqual(repaired.offset, 5, "the repair wrote memory's offset: \(operation)")
                XCTAssertNil(repaired.pendingDiscardFrom, "and no discard mark: \(operation)")
                _ = try write(next, patternBytes(count: 2, seed: 3)).unwrap()
                XCTAssertEqual(try commit(next).unwrap().offset, 7)
                XCTAssertEqual(bytes(directory, "u"), patternBytes(count: 5) + patternBytes(count: 2, seed: 3))
                // The mark went with the repair, so this plain PATCH writes no record; the data says 7.
                XCTAssertEqual(try onDisk(directory, "u"), repaired, "no record for a plain PATCH: \(operation)")
                XCTAssertEqual(try FileUploadStore(directory: directory).lookup("u").info?.offset, 7)
            }
        }
    }
}
