import Foundation
import TusHTTP1
import TusProtocol
import XCTest

@testable import TusLoop
@testable import TusStore

/// `--records log` (issue 19): a creation makes one file, its data, and appends its record to `records.<n>.log`.
/// Restarts, removals, torn appends, directories written by the `.info` layout (upgrade in place) and the way
/// back, and segment compaction.
final class FileRecordLogTests: FileStoreTestCase {
    func logStore(_ policy: FsyncPolicy = .none, log: LogRecorder? = nil) throws -> FileUploadStore {
        try FileUploadStore(directory: directory, fsync: policy, recordsInLog: true, log: (log ?? LogRecorder()).sink)
    }

    func names() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: directory).sorted() }

    func segments() throws -> [String] { try names().filter { $0.hasPrefix("records.") } }

    /// The entries of one segment, as JSON objects.
    func entries(_ segment: String) throws -> [[String: Any]] {
        let text = try XCTUnwrap(fileBytes(segment)).split(separator: UInt8(ascii: "\n"))
        return try text.map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0)) as? [String: Any]) }
    }

    func remove(_ store: FileUploadStore, _ id: String) -> Result<Void, StoreError> {
        driver.run { done in store.remove(id: id, reason: .terminated, on: self.driver.executor, completion: done) }
    }

    // MARK: creation and restart

    /// One file per upload; the record is in the log, and a restart serves it with the offset its data says.
    func testCreationMakesOnlyTheDataFileAndSurvivesRestart() throws {
        for policy in FsyncPolicy.allCases {
            try? FileManager.default.removeItem(atPath: directory)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let store = try logStore(policy)
            let info = UploadInfo(
                id: "one", length: 20, metadata: "filename bXkuYmlu", createdAt: 7, expiresAt: 99, owner: "alice")
            XCTAssertEqual(try create(store, info).unwrap(), info)
            XCTAssertEqual(try names(), ["one", "records.1.log"], "\(policy)")
            XCTAssertEqual(try entries("records.1.log").map { $0["id"] as? String }, ["one"])
            let writer = try openWriter(store, "one", at: 0, discardable: false)
            _ = try write(writer, patternBytes(count: 12)).unwrap()
            XCTAssertEqual(try commit(writer, expiresAt: 99).unwrap().offset, 12)

            let logs = LogRecorder()
            let restarted = try logStore(policy, log: logs)
            var expected = info
            expected.offset = 12
            XCTAssertEqual(restarted.lookup("one"), .found(expected), "\(policy)")
            XCTAssertEqual(logs.all, [], "\(policy)")
            XCTAssertEqual(try names(), ["one", "records.2.log"], "\(policy): compacted into one new segment")
        }
    }

    /// Upgrade in place: uploads written by the `.info` layout keep working next to logged ones, and every change
    /// after creation (a declared length here) still goes to `<id>.info`, which wins over the log at restart.
    func testInfoRecordsOfEarlierVersionsAndLaterChangesKeepWorking() throws {
        let old = try FileUploadStore(directory: directory, fsync: .commit)
        _ = try create(old, UploadInfo(id: "old", length: 10, createdAt: 1)).unwrap()
        let oldWriter = try openWriter(old, "old", at: 0, discardable: false)
        _ = try write(oldWriter, patternBytes(count: 4)).unwrap()
        _ = try commit(oldWriter).unwrap()
        XCTAssertEqual(try names(), ["old", "old.info"])

        let store = try logStore(.commit)
        XCTAssertEqual(store.lookup("old").info?.offset, 4)
        _ = try create(store, UploadInfo(id: "new", length: nil, createdAt: 2)).unwrap()
        let declared: Result<UploadInfo, StoreError> = driver.run { done in
            store.declareLength(id: "new", length: 8, on: self.driver.executor, completion: done)
        }
        XCTAssertEqual(try declared.unwrap().length, 8)
        XCTAssertEqual(try record("new").length, 8, "a change after creation writes <id>.info")
        XCTAssertEqual(store.state.state.withLock { $0.logged }, [:], "the log entry is no longer the record")
        let writer = try openWriter(store, "old", at: 4, discardable: false)
        _ = try write(writer, patternBytes(count: 6, seed: 4)).unwrap()
        XCTAssertEqual(try commit(writer).unwrap().offset, 10)

        let restarted = try logStore(.commit)
        XCTAssertEqual(restarted.lookup("old").info?.offset, 10)
        XCTAssertEqual(restarted.lookup("new").info?.length, 8)
        XCTAssertEqual(try segments(), [], "nothing live was left in the log")
    }

    /// Back to `--records files`: the logged records become `<id>.info` files and the log goes.
    func testFilesLayoutTakesOverTheLog() throws {
        let store = try logStore()
        _ = try create(store, UploadInfo(id: "a", length: 5, createdAt: 1)).unwrap()
        _ = try create(store, UploadInfo(id: "b", length: nil, createdAt: 2, expiresAt: 50)).unwrap()
        let files = try FileUploadStore(directory: directory, fsync: .commit)
        XCTAssertEqual(try names(), ["a", "a.info", "b", "b.info"])
        XCTAssertEqual(try record("b"), UploadRecord(UploadInfo(id: "b", length: nil, createdAt: 2, expiresAt: 50)))
        XCTAssertEqual(files.lookup("a").info?.length, 5)
        XCTAssertEqual(try FileUploadStore(directory: directory).lookup("b").info?.expiresAt, 50)
    }

    /// Under `--fsync none` the creations that queue on a loop while its job runs share the next job and one append;
    /// one whose data file cannot be made fails alone.
    func testBatchedCreationsShareOneAppend() throws {
        let store = try logStore()
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/b7", contents: Data([9])))
        final class Answers: @unchecked Sendable { var all: [String: Result<UploadInfo, StoreError>] = [:] }
        let answers: Answers = driver.run { done in
            let answers = Answers()
            for index in 0..<10 {
                let id = "b\(index)"
                store.create(UploadInfo(id: id, length: 3, createdAt: 1), on: self.driver.executor) { result in
                    answers.all[id] = result
                    if answers.all.count == 10 { done(answers) }
                }
            }
        }
        let made = (0..<10).filter { $0 != 7 }.map { "b\($0)" }
        for id in made { XCTAssertEqual(try answers.all[id]?.unwrap().id, id) }
        XCTAssertEqual(answers.all["b7"], .failure(.alreadyExists))
        XCTAssertEqual(fileBytes("b7"), [9], "not ours: left alone")
        XCTAssertEqual(store.state.creationQueues.withLock { $0.values.map(\.batches) }, [2])
        XCTAssertEqual(try entries("records.1.log").map { $0["id"] as? String }, made)
        XCTAssertEqual(store.state.recordLog?.liveEntries, [1: 9])
        let restarted = try logStore()
        for id in made { XCTAssertNotNil(restarted.lookup(id).info, id) }
        XCTAssertEqual(restarted.lookup("b7"), .notFound)
    }

    // MARK: removal

    /// A removal appends its entry: after a restart the upload stays removed, even when the crash came before its
    /// data file or `<id>.info` was unlinked.
    func testRemovalIsLoggedAndSurvivesACrashBeforeTheUnlinks() throws {
        let store = try logStore(.commit)
        _ = try create(store, UploadInfo(id: "gone", length: 5, createdAt: 1)).unwrap()
        _ = try create(store, UploadInfo(id: "kept", length: 5, createdAt: 1)).unwrap()
        XCTAssertNoThrow(try remove(store, "gone").unwrap())
        XCTAssertEqual(store.lookup("gone"), .gone)
        XCTAssertNil(fileBytes("gone"))
        XCTAssertEqual(try entries("records.1.log").last?["removed"] as? String, "gone")

        // The crash: the entry is there, the files are not unlinked yet.
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/gone", contents: Data([1])))
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/gone.info", contents: Data("{}".utf8)))
        let logs = LogRecorder()
        let restarted = try logStore(.commit, log: logs)
        XCTAssertEqual(restarted.lookup("gone"), .notFound)
        XCTAssertNotNil(restarted.lookup("kept").info)
        XCTAssertNil(fileBytes("gone.info"), "the removed upload's record is deleted")
        XCTAssertTrue(logs.all.contains { $0.contains("gone has no record; ignored") }, "\(logs.all)")
        XCTAssertEqual(try entries("records.2.log").map { $0["id"] as? String }, ["kept"])
    }

    /// Operators delete processed uploads outside the server: a logged upload whose data file is gone is gone.
    func testUploadWhoseDataFileWasDeletedOutsideIsDropped() throws {
        let store = try logStore()
        _ = try create(store, UploadInfo(id: "processed", length: 5, createdAt: 1)).unwrap()
        try FileManager.default.removeItem(atPath: directory + "/processed")
        let logs = LogRecorder()
        XCTAssertEqual(try logStore(log: logs).lookup("processed"), .notFound)
        XCTAssertEqual(logs.all, ["FileUploadStore: upload processed has a log record but no data file; dropped"])
        XCTAssertEqual(try segments(), [])
    }

    // MARK: torn and failed appends

    /// A crash mid-append leaves a torn line; the entries after it begin on a line of their own and are read.
    func testTornEntryIsSkippedAndLaterEntriesAreRead() throws {
        let torn = Array(#"{"id":"torn","length":5,"off"#.utf8)
        let whole = UploadRecord(UploadInfo(id: "whole", length: 5, createdAt: 3)).encodedJSON
        let segment = [UInt8(ascii: "\n")] + torn + [UInt8(ascii: "\n")] + whole
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/records.4.log", contents: Data(segment)))
        for id in ["torn", "whole"] {
            XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/" + id, contents: Data()))
        }
        let logs = LogRecorder()
        let store = try logStore(log: logs)
        XCTAssertEqual(store.lookup("whole").info?.createdAt, 3)
        XCTAssertEqual(store.lookup("torn"), .notFound)
        XCTAssertTrue(logs.all.contains { $0.hasSuffix("records.4.log: skipped 1 unreadable entries") }, "\(logs.all)")
        XCTAssertEqual(try segments(), ["records.5.log"])
        _ = try create(store, UploadInfo(id: "after", length: 5, createdAt: 4)).unwrap()
        XCTAssertEqual(try entries("records.5.log").map { $0["id"] as? String }, ["whole", "after"])
    }

    /// A full disk at the append (or at its fdatasync under `commit`): the creation fails with 507 and takes its
    /// data file back; the next one works, and a restart serves only that one.
    func testFailedAppendOrSyncFailsTheCreationAndLeavesNoUpload() throws {
        for (policy, operation) in [(FsyncPolicy.none, "write"), (.commit, "write"), (.commit, "fdatasync")] {
            try? FileManager.default.removeItem(atPath: directory)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let store = try logStore(policy)
            BlockingFileSystem.injectFaults { called, path in
                called == operation && path.hasSuffix(".log") ? .noSpaceLeft : nil
            }
            XCTAssertEqual(
                create(store, UploadInfo(id: "full", length: 5, createdAt: 1)), .failure(.insufficientStorage),
                "\(policy) \(operation)")
            BlockingFileSystem.injectFaults(nil)
            XCTAssertNil(fileBytes("full"), "\(policy) \(operation): its data file is unlinked again")
            XCTAssertEqual(store.lookup("full"), .notFound)
            _ = try create(store, UploadInfo(id: "fine", length: 5, createdAt: 1)).unwrap()
            let restarted = try logStore(policy)
            XCTAssertEqual(restarted.lookup("full"), .notFound, "\(policy) \(operation)")
            XCTAssertNotNil(restarted.lookup("fine").info, "\(policy) \(operation)")
        }
    }

    /// Under `commit` the data file's directory entry is made durable too: when the directory fsync fails, the
    /// creation fails and nothing of it is served, now or after a restart.
    func testFailedDirectorySyncFailsTheCreation() throws {
        let store = try logStore(.commit)
        let directory = directory
        BlockingFileSystem.injectFaults { called, path in called == "fsync" && path == directory ? .ioError : nil }
        defer { BlockingFileSystem.injectFaults(nil) }
        guard case .failure(.io) = create(store, UploadInfo(id: "unsynced", length: 5, createdAt: 1)) else {
            return XCTFail("the creation must fail")
        }
        BlockingFileSystem.injectFaults(nil)
        XCTAssertNil(fileBytes("unsynced"), "its data file is unlinked again")
        XCTAssertEqual(store.lookup("unsynced"), .notFound)
        XCTAssertEqual(store.state.recordLog?.liveEntries, [1: 0], "its entry is not counted live")
        XCTAssertEqual(try logStore(.commit).lookup("unsynced"), .notFound)
    }

    /// A removal whose entry cannot be written fails and leaves the upload as it was.
    func testFailedRemovalEntryKeepsTheUpload() throws {
        let store = try logStore(.commit)
        _ = try create(store, UploadInfo(id: "stays", length: 5, createdAt: 1)).unwrap()
        BlockingFileSystem.injectFaults { called, path in called == "write" && path.hasSuffix(".log") ? .ioError : nil }
        defer { BlockingFileSystem.injectFaults(nil) }
        guard case .failure(.io) = remove(store, "stays") else { return XCTFail("the removal must fail") }
        BlockingFileSystem.injectFaults(nil)
        XCTAssertNotNil(store.lookup("stays").info)
        XCTAssertNotNil(try logStore(.commit).lookup("stays").info)
    }

    // MARK: segments

    /// Appends move to a new segment past the limit; the oldest segments go once nothing in them is live, and never
    /// the current one.
    func testSegmentsRotateAndTheOldestGoWhenNothingInThemIsLive() throws {
        let log = RecordLog(directory: directory, current: 1, live: [:], segmentLimit: 100)
        let entry = UploadRecord(UploadInfo(id: "x", length: 1, createdAt: 1)).encodedJSON
        var segments: [Int] = []
        for _ in 0..<4 { segments.append(try log.append(entry, counted: true).get()) }
        XCTAssertEqual(segments, [1, 2, 3, 4], "each entry is over the limit on its own")
        XCTAssertEqual(try self.segments(), ["records.1.log", "records.2.log", "records.3.log", "records.4.log"])
        XCTAssertEqual(log.release(2), [], "segment 1 is still live, so 2 stays: its removals may cancel 1's records")
        XCTAssertEqual(log.release(1), [log.segmentPath(1), log.segmentPath(2)])
        XCTAssertEqual(log.release(4), [], "the current segment stays")
        XCTAssertEqual(log.liveEntries, [3: 1, 4: 0])
    }
}
