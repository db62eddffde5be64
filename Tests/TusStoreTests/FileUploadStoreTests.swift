import Foundation
import TusCore
import TusHTTP1
import TusProtocol
import XCTest

@testable import TusLoop
@testable import TusStore

final class FileUploadStoreTests: FileStoreTestCase {

    // MARK: tests

    func testWrittenUploadSurvivesReopen() throws {
        for policy in FsyncPolicy.allCases {
            let id = "up-\(policy)"
            let store = try FileUploadStore(directory: directory, fsync: policy)
            let info = UploadInfo(
                id: id, length: 30, metadata: "filename bXkuYmlu,quote \"x\"", createdAt: 1_700_000_000,
                expiresAt: 1_700_086_400)
            XCTAssertEqual(try create(store, info).unwrap(), info)
            let writer = try openWriter(store, id, at: 0, discardable: false)
            XCTAssertEqual(try write(writer, patternBytes(count: 10)).unwrap(), 10)
            XCTAssertEqual(try write(writer, patternBytes(count: 10, seed: 10)).unwrap(), 20)
            XCTAssertEqual(try write(writer, patternBytes(count: 5, seed: 20)).unwrap(), 25)
            let committed = try commit(writer, expiresAt: 1_700_090_000).unwrap()
            XCTAssertEqual(committed.offset, 25)
            XCTAssertEqual(committed.expiresAt, 1_700_090_000)

            let reopened = try FileUploadStore(directory: directory, fsync: policy)
            var expected = info
            expected.offset = 25
            expected.expiresAt = 1_700_090_000
            XCTAssertEqual(reopened.lookup(id), .found(expected), "\(policy)")
            XCTAssertEqual(
                fileBytes(id),
                patternBytes(count: 10) + patternBytes(count: 10, seed: 10) + patternBytes(count: 5, seed: 20))
            XCTAssertNil(fileBytes(id + ".info.tmp"))
        }
    }

    /// A creation makes `<id>` and `<id>.info` and nothing else (no temporary record to rename), and a PATCH that
    /// only moves the offset leaves the record as created: a restart takes the offset from the data file, without
    /// rewriting the record or logging anything.
    func testCreationWritesFinalNamesAndPlainPatchWritesNoRecord() throws {
        for policy in FsyncPolicy.allCases {
            let id = "plain-\(policy)"
            let store = try FileUploadStore(directory: directory, fsync: policy)
            _ = try create(store, UploadInfo(id: id, length: 20, createdAt: 1)).unwrap()
            let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix(id) }
            XCTAssertEqual(names.sorted(), [id, id + ".info"])
            let created = try XCTUnwrap(fileBytes(id + ".info"))
            let writer = try openWriter(store, id, at: 0, discardable: false)
            _ = try write(writer, patternBytes(count: 12)).unwrap()
            XCTAssertEqual(try commit(writer).unwrap().offset, 12)
            XCTAssertEqual(store.lookup(id).info?.offset, 12)
            XCTAssertEqual(fileBytes(id + ".info"), created, "\(policy): no record write for an offset alone")

            let logs = LogRecorder()
            let restarted = try FileUploadStore(directory: directory, fsync: policy, log: logs.sink)
            XCTAssertEqual(restarted.lookup(id).info?.offset, 12)
            XCTAssertEqual(fileBytes(id + ".info"), created, "\(policy): recovery rewrites no record for its offset")
            XCTAssertEqual(logs.all, [])
        }
    }

    /// Under `--fsync none`, creations issued while the loop's job is on the threadpool share the next job: ten
    /// POSTs in one loop turn cost two crossings (the first goes at once), and each gets its own answer.
    func testConcurrentCreationsOnOneLoopShareThreadpoolJobs() throws {
        let store = try FileUploadStore(directory: directory, fsync: .none)
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/b7.info", contents: Data("x".utf8)))
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
        for index in 0..<10 where index != 7 {
            XCTAssertEqual(try answers.all["b\(index)"]?.unwrap().id, "b\(index)")
            XCTAssertEqual(fileBytes("b\(index)"), [])
            XCTAssertNotNil(fileBytes("b\(index).info"))
        }
        XCTAssertEqual(answers.all["b7"], .failure(.alreadyExists), "one failure is its creation's alone")
        XCTAssertNil(fileBytes("b7"))
        XCTAssertEqual(store.state.creationQueues.withLock { $0.values.map(\.batches) }, [2])
    }

    /// A creation is answered on its loop as soon as its files exist, not when its batch ends: while the job is held
    /// in a later creation of the same batch, an earlier one's answer already came (a batch answered at its end
    /// kept hundreds of uploads from sending their bodies until the last of them was made).
    func testBatchedCreationIsAnsweredBeforeTheBatchEnds() throws {
        let store = try FileUploadStore(directory: directory, fsync: .none)
        let hold = holdCreation(of: "s5")
        defer { BlockingFileSystem.injectFaults(nil) }
        final class Answers: @unchecked Sendable { var order: [String] = [] }
        let answers: Answers = driver.run { done in
            let answers = Answers()
            for index in 0..<8 {
                let id = "s\(index)"
                store.create(UploadInfo(id: id, length: 3, createdAt: 1), on: self.driver.executor) { result in
                    XCTAssertEqual(try? result.unwrap().id, id)
                    answers.order.append(id)
                    // s0 is a batch alone; s1...s7 the next one, where s2 is made before the held s5.
                    if id == "s2" { hold.release.signal() }
                    if answers.order.count == 8 { done(answers) }
                }
            }
        }
        let s2 = try XCTUnwrap(answers.order.firstIndex(of: "s2"))
        let s5 = try XCTUnwrap(answers.order.firstIndex(of: "s5"))
        XCTAssertLessThan(s2, s5, "\(answers.order)")
        XCTAssertFalse(hold.timedOut.withLock { $0 }, "s5's creation was released by s2's answer, not by the timeout")
        XCTAssertEqual(Set(answers.order).count, 8)
        for index in 0..<8 { XCTAssertNotNil(fileBytes("s\(index).info")) }
        XCTAssertEqual(store.state.creationQueues.withLock { $0.values.map(\.batches) }, [2])
    }

    /// Two loops' creations go through the store's one creation job (the kernel serialises creations in one
    /// directory, so a second job would only spin on its lock), and each is answered on the loop that asked.
    func testCreationsFromTwoLoopsShareOneJobAndAreAnsweredOnTheirLoops() throws {
        let store = try FileUploadStore(directory: directory, fsync: .none)
        let other = try LoopDriver()
        defer { XCTAssertEqual(other.shutDown(), 0) }
        let hold = holdCreation(of: "a0")
        defer { BlockingFileSystem.injectFaults(nil) }
        final class Answer: @unchecked Sendable {
            let came = DispatchSemaphore(value: 0)
            var result: Result<UploadInfo, StoreError>?
            var onItsLoop = false
        }
        let first = Answer()
        let loop = driver.loop
        driver.run { (done: @escaping (Void) -> Void) in
            store.create(UploadInfo(id: "a0", length: 3, createdAt: 1), on: self.driver.executor) { result in
                first.result = result
                first.onItsLoop = EventLoop.current === loop
                first.came.signal()
            }
            done(())
        }
        // a0's job is held in its mknod: b0, from the other loop, waits for that same job.
        let second: Answer = other.run { done in
            let answer = Answer()
            store.create(UploadInfo(id: "b0", length: 3, createdAt: 1), on: other.executor) { result in
                answer.result = result
                answer.onItsLoop = EventLoop.current === other.loop
                done(answer)
            }
            hold.release.signal()
        }
        XCTAssertEqual(first.came.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(try first.result?.unwrap().id, "a0")
        XCTAssertEqual(try second.result?.unwrap().id, "b0")
        XCTAssertTrue(first.onItsLoop)
        XCTAssertTrue(second.onItsLoop)
        XCTAssertFalse(hold.timedOut.withLock { $0 })
        XCTAssertEqual(store.state.creationJob.state.withLock { $0.jobs }, 1)
        XCTAssertNotNil(fileBytes("a0.info"))
        XCTAssertNotNil(fileBytes("b0.info"))
    }

    /// A loop whose batch waits in the creation job another loop submitted has no request of its own in flight: told
    /// to stop meanwhile, it must still run until its creations are answered (their uploads exist by then), as it
    /// did with a job of its own, not end and drop the answers (the upload never in the index, its id held).
    func testALoopStoppedWhileItsCreationWaitsForAnotherLoopsJobStillAnswersIt() throws {
        let store = try FileUploadStore(directory: directory, fsync: .none)
        let other = try LoopDriver()
        let hold = holdCreation(of: "a0")
        defer { BlockingFileSystem.injectFaults(nil) }
        let first = DispatchSemaphore(value: 0)
        driver.run { (done: @escaping (Void) -> Void) in
            store.create(UploadInfo(id: "a0", length: 3, createdAt: 1), on: self.driver.executor) { _ in
                first.signal()
            }
            done(())
        }
        final class Answer: @unchecked Sendable { var result: Result<UploadInfo, StoreError>? }
        let second = Answer()
        other.run { (done: @escaping (Void) -> Void) in
            store.create(UploadInfo(id: "b0", length: 3, createdAt: 1), on: other.executor) { second.result = $0 }
            done(())
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { hold.release.signal() }
        XCTAssertEqual(other.shutDown(), 0)
        XCTAssertEqual(try second.result?.unwrap().id, "b0", "answered before the loop ended")
        XCTAssertEqual(first.wait(timeout: .now() + 30), .success)
        XCTAssertFalse(hold.timedOut.withLock { $0 })
        XCTAssertEqual(store.lookup("b0").info?.id, "b0")
        XCTAssertEqual(store.state.creationJob.state.withLock { $0.jobs }, 1)
    }

    /// Files the index does not know (made behind the store's back after it loaded) are not the creation's to
    /// touch: it fails, leaves them as they were, and takes back what it made itself.
    func testCreateLeavesFilesItDidNotMakeAlone() throws {
        let store = try FileUploadStore(directory: directory)
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/rec.info", contents: Data("not ours".utf8)))
        XCTAssertEqual(create(store, UploadInfo(id: "rec", length: 5, createdAt: 1)), .failure(.alreadyExists))
        XCTAssertEqual(fileBytes("rec.info"), Array("not ours".utf8))
        XCTAssertNil(fileBytes("rec"), "the data file made for it is unlinked again")

        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/dat", contents: Data([1, 2, 3])))
        XCTAssertEqual(create(store, UploadInfo(id: "dat", length: 5, createdAt: 1)), .failure(.alreadyExists))
        XCTAssertEqual(fileBytes("dat"), [1, 2, 3])
        XCTAssertNil(fileBytes("dat.info"))
        XCTAssertEqual(store.lookup("dat"), .notFound)
    }

    /// The data file is made by mknod(2), not opened: a regular empty file with the mode open(2) gave it (0644 less
    /// the umask). A failing mknod fails the creation and leaves neither file nor record.
    func testDataFileIsAnEmptyRegularFileAndItsFailureLeavesNothing() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "made", length: 5, createdAt: 1)).unwrap()
        var status = stat()
        XCTAssertEqual(stat(directory + "/made", &status), 0)
        XCTAssertEqual(status.st_mode & S_IFMT, S_IFREG)
        let mask = umask(0)
        umask(mask)
        XCTAssertEqual(status.st_mode & 0o777, 0o644 & ~mask)
        XCTAssertEqual(status.st_size, 0)

        BlockingFileSystem.injectFaults { called, path in
            called == "mknod" && path.hasSuffix("/full") ? .noSpaceLeft : nil
        }
        defer { BlockingFileSystem.injectFaults(nil) }
        XCTAssertEqual(create(store, UploadInfo(id: "full", length: 5, createdAt: 1)), .failure(.insufficientStorage))
        BlockingFileSystem.injectFaults(nil)
        XCTAssertNil(fileBytes("full"))
        XCTAssertNil(fileBytes("full.info"))
        XCTAssertEqual(store.lookup("full"), .notFound)
        _ = try create(store, UploadInfo(id: "full", length: 5, createdAt: 1)).unwrap()
    }

    /// An upload completed by its first PATCH keeps the record written at its creation (expiry included), and a
    /// restart still finds it complete and without expiry.
    func testCompletingPatchWritesNoRecordAndRecoveryDropsTheExpiry() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "whole", length: 6, createdAt: 1, expiresAt: 50)).unwrap()
        let created = try XCTUnwrap(fileBytes("whole.info"))
        let writer = try openWriter(store, "whole", at: 0, discardable: false)
        _ = try write(writer, patternBytes(count: 6)).unwrap()
        let committed = try commit(writer, expiresAt: 90).unwrap()
        XCTAssertTrue(committed.isComplete)
        XCTAssertNil(committed.expiresAt)
        XCTAssertEqual(fileBytes("whole.info"), created)

        let restarted = try FileUploadStore(directory: directory)
        XCTAssertEqual(restarted.lookup("whole").info?.offset, 6)
        XCTAssertNil(restarted.lookup("whole").info?.expiresAt)
        XCTAssertEqual(restarted.listExpired(now: 1_000), [])
        XCTAssertEqual(fileBytes("whole.info"), created)
    }

    /// The record is rewritten when more than the offset changes: a new expiry, or a discardable write's mark.
    func testPatchRewritesRecordForExpiryAndDiscardMark() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "exp", length: 100, createdAt: 1, expiresAt: 50)).unwrap()
        let first = try openWriter(store, "exp", at: 0, discardable: false)
        _ = try write(first, patternBytes(count: 10)).unwrap()
        _ = try commit(first, expiresAt: 60).unwrap()
        XCTAssertEqual(try record("exp").expiresAt, 60)
        XCTAssertEqual(try record("exp").offset, 10)

        let second = try openWriter(store, "exp", at: 10, discardable: true)
        XCTAssertEqual(try record("exp").pendingDiscardFrom, 10)
        _ = try write(second, patternBytes(count: 5)).unwrap()
        _ = try commit(second, expiresAt: 60).unwrap()
        XCTAssertNil(try record("exp").pendingDiscardFrom)
        XCTAssertEqual(try record("exp").offset, 15)
    }

    func testCompletedUploadDropsExpiry() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "done", length: 4, createdAt: 1, expiresAt: 100)).unwrap()
        let writer = try openWriter(store, "done", at: 0, discardable: false)
        _ = try write(writer, [1, 2, 3, 4]).unwrap()
        let committed = try commit(writer, expiresAt: 200).unwrap()
        XCTAssertTrue(committed.isComplete)
        XCTAssertNil(committed.expiresAt)
        XCTAssertEqual(store.listExpired(now: 1_000), [])
    }

    func testCreateRejectsTakenAndGoneIDs() throws {
        let store = try FileUploadStore(directory: directory)
        let info = UploadInfo(id: "taken", length: 1, createdAt: 1)
        _ = try create(store, info).unwrap()
        XCTAssertEqual(create(store, info), .failure(.alreadyExists))
        let removed: Result<Void, StoreError> = driver.run { done in
            store.remove(id: "taken", reason: .terminated, on: self.driver.executor, completion: done)
        }
        XCTAssertNoThrow(try removed.unwrap())
        XCTAssertEqual(create(store, info), .failure(.alreadyExists))
    }

    func testNonDiscardableOffsetAdvancesAsEachWriteCompletes() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "live", length: nil, createdAt: 1)).unwrap()
        let writer = try openWriter(store, "live", at: 0, discardable: false)
        for step in 1...3 {
            XCTAssertEqual(try write(writer, patternBytes(count: 7, seed: step)).unwrap(), Int64(7 * step))
            guard case .found(let info) = store.lookup("live") else { return XCTFail("lost upload") }
            XCTAssertEqual(info.offset, Int64(7 * step))
        }
        XCTAssertEqual(try commit(writer).unwrap().offset, 21)
    }

    func testDiscardableOffsetStaysAtStartUntilCommit() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "chk", length: 100, createdAt: 1)).unwrap()
        let first = try openWriter(store, "chk", at: 0, discardable: false)
        _ = try write(first, patternBytes(count: 10)).unwrap()
        _ = try commit(first).unwrap()

        let writer = try openWriter(store, "chk", at: 10, discardable: true)
        XCTAssertEqual(try record("chk").pendingDiscardFrom, 10, "durable before the first byte")
        XCTAssertEqual(try write(writer, patternBytes(count: 20)).unwrap(), 30)
        XCTAssertEqual(try write(writer, patternBytes(count: 20)).unwrap(), 50)
        guard case .found(let during) = store.lookup("chk") else { return XCTFail("lost upload") }
        XCTAssertEqual(during.offset, 10)
        XCTAssertEqual(try commit(writer).unwrap().offset, 50)
        XCTAssertEqual(store.lookup("chk").info?.offset, 50)
        let persisted = try record("chk")
        XCTAssertEqual(persisted.offset, 50)
        XCTAssertNil(persisted.pendingDiscardFrom)
    }

    func testCrashDuringDiscardableWriteRecoversToStart() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "crash", length: 100, createdAt: 1)).unwrap()
        let writer = try openWriter(store, "crash", at: 0, discardable: true)
        _ = try write(writer, patternBytes(count: 40)).unwrap()
        // No commit: a new store on the same directory plays the restarted process.
        let logs = LogRecorder()
        let restarted = try FileUploadStore(directory: directory, log: logs.sink)
        XCTAssertEqual(restarted.lookup("crash").info?.offset, 0)
        XCTAssertEqual(fileBytes("crash"), [])
        XCTAssertNil(try record("crash").pendingDiscardFrom)
        XCTAssertFalse(logs.all.isEmpty)
        _ = driver.run { done in writer.rollback(completion: done) }  // closes the abandoned writer's file
    }

    func testRollbackTruncatesDataAndOffset() throws {
        for discardable in [true, false] {
            let id = "rb-\(discardable)"
            let store = try FileUploadStore(directory: directory)
            _ = try create(store, UploadInfo(id: id, length: 100, createdAt: 1)).unwrap()
            let first = try openWriter(store, id, at: 0, discardable: false)
            _ = try write(first, patternBytes(count: 8)).unwrap()
            _ = try commit(first).unwrap()

            let writer = try openWriter(store, id, at: 8, discardable: discardable)
            _ = try write(writer, patternBytes(count: 30, seed: 3)).unwrap()
            let rolledBack: Result<UploadInfo, StoreError> = driver.run { done in writer.rollback(completion: done) }
            XCTAssertEqual(try rolledBack.unwrap().offset, 8)
            XCTAssertEqual(store.lookup(id).info?.offset, 8)
            XCTAssertEqual(fileBytes(id), patternBytes(count: 8))
            // A discardable write's mark is cleared by a record write; a plain one never wrote the record.
            XCTAssertEqual(try record(id).offset, discardable ? 8 : 0)
            XCTAssertNil(try record(id).pendingDiscardFrom)
            XCTAssertEqual(try FileUploadStore(directory: directory).lookup(id).info?.offset, 8)
        }
    }

    func testWriteBeyondLengthIsRejected() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "short", length: 5, createdAt: 1)).unwrap()
        let writer = try openWriter(store, "short", at: 0, discardable: false)
        XCTAssertEqual(write(writer, patternBytes(count: 6)), .failure(.exceedsLength))
        XCTAssertEqual(try write(writer, patternBytes(count: 5)).unwrap(), 5)
        XCTAssertEqual(try commit(writer).unwrap().offset, 5)
    }

    /// Many writes issued without waiting: completions arrive in order with consecutive offsets, and the file
    /// holds the bytes in order.
    func testOutstandingWritesCompleteInOrder() throws {
        let store = try FileUploadStore(directory: directory, fsync: .none)
        _ = try create(store, UploadInfo(id: "burst", length: nil, createdAt: 1)).unwrap()
        let writer = try openWriter(store, "burst", at: 0, discardable: false)
        let pieces = (0..<50).map { patternBytes(count: 100 + $0, seed: $0) }
        let offsets: [Int64] = driver.run { done in
            var offsets: [Int64] = []
            for piece in pieces {
                writer.write(BodyFragment(copying: piece)) { result in
                    offsets.append((try? result.get()) ?? -1)
                    if offsets.count == pieces.count { done(offsets) }
                }
            }
        }
        var expected: [Int64] = []
        var end: Int64 = 0
        for piece in pieces {
            end += Int64(piece.count)
            expected.append(end)
        }
        XCTAssertEqual(offsets, expected)
        XCTAssertEqual(try commit(writer).unwrap().offset, end)
        XCTAssertEqual(fileBytes("burst"), pieces.flatMap { $0 })
    }

    func testDeferredLengthRoundTripsAndDeclareLengthPersists() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "later", length: nil, createdAt: 5)).unwrap()
        XCTAssertNil(try record("later").length)
        XCTAssertEqual(try FileUploadStore(directory: directory).lookup("later").info?.isLengthDeferred, true)

        let declared: Result<UploadInfo, StoreError> = driver.run { done in
            store.declareLength(id: "later", length: 42, on: self.driver.executor, completion: done)
        }
        XCTAssertEqual(try declared.unwrap().length, 42)
        XCTAssertEqual(store.lookup("later").info?.length, 42)
        XCTAssertEqual(try record("later").length, 42)
        XCTAssertEqual(try FileUploadStore(directory: directory).lookup("later").info?.length, 42)
        let again: Result<UploadInfo, StoreError> = driver.run { done in
            store.declareLength(id: "later", length: 43, on: self.driver.executor, completion: done)
        }
        XCTAssertEqual(again, .failure(.lengthAlreadySet))
    }

    func testRemoveDeletesFilesAndRemembersGone() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "bye", length: 3, createdAt: 1)).unwrap()
        let removed: Result<Void, StoreError> = driver.run { done in
            store.remove(id: "bye", reason: .expired, on: self.driver.executor, completion: done)
        }
        XCTAssertNoThrow(try removed.unwrap())
        XCTAssertEqual(store.lookup("bye"), .gone)
        XCTAssertNil(fileBytes("bye"))
        XCTAssertNil(fileBytes("bye.info"))
        XCTAssertEqual(store.lookup("never"), .notFound)
        let again: Result<Void, StoreError> = driver.run { done in
            store.remove(id: "bye", reason: .terminated, on: self.driver.executor, completion: done)
        }
        XCTAssertEqual(again.failure, .gone)
        XCTAssertEqual(try FileUploadStore(directory: directory).lookup("bye"), .notFound, "gone ids are not persisted")
    }

    func testReaderReadsBackBytes() throws {
        let store = try FileUploadStore(directory: directory)
        let bytes = patternBytes(count: 23, seed: 9)
        _ = try create(store, UploadInfo(id: "get", length: 23, createdAt: 1)).unwrap()
        let writer = try openWriter(store, "get", at: 0, discardable: false)
        _ = try write(writer, bytes).unwrap()
        _ = try commit(writer).unwrap()
        XCTAssertEqual(try readAll(store, "get"), bytes)
        let missing: Result<any UploadReader, StoreError> = driver.run { done in
            store.openReader(id: "nope", on: self.driver.executor, completion: done)
        }
        XCTAssertEqual(missing.failure, .notFound)
    }

    func testListExpiredComesFromMemory() throws {
        let store = try FileUploadStore(directory: directory)
        _ = try create(store, UploadInfo(id: "old", length: 10, createdAt: 1, expiresAt: 100)).unwrap()
        _ = try create(store, UploadInfo(id: "new", length: 10, createdAt: 1, expiresAt: 300)).unwrap()
        _ = try create(store, UploadInfo(id: "forever", length: 10, createdAt: 1)).unwrap()
        XCTAssertEqual(store.listExpired(now: 200), ["old"])
        XCTAssertEqual(store.listExpired(now: 300), ["new", "old"])
        XCTAssertEqual(store.capabilities, .all)
    }
}

extension UploadLookup {
    var info: UploadInfo? {
        if case .found(let info) = self { return info }
        return nil
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
