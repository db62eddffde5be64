import TusCore
import TusHTTP1
import TusProtocol
import TusTestSupport
import XCTest

/// A store whose writes complete only when the test says so (a stuck disk).
final class StallingStore: UploadStore, @unchecked Sendable {
    let inner = MemoryUploadStore()
    var stallWrites = true
    /// Commits wait in `stalled` too (the record update of a slow state store).
    var stallCommits = false
    var stalled: [() -> Void] = []
    /// Each `declareLength` asked for, by whether it was a completing one.
    var declarations: [Bool] = []
    var capabilities: UploadStoreCapabilities { inner.capabilities }
    func lookup(_ id: String, on executor: any LoopExecutor, completion: @escaping (Result<UploadLookup, StoreError>) -> Void) { inner.lookup(id, on: executor, completion: completion) }
    func create(_ info: UploadInfo, on executor: any LoopExecutor, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) { inner.create(info, on: executor, completion: completion) }
    func declareLength(id: String, length: Int64, completing: Bool, on executor: any LoopExecutor, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) { declarations.append(completing); inner.declareLength(id: id, length: length, completing: completing, on: executor, completion: completion) }
    func remove(id: String, reason: UploadRemovalReason, on executor: any LoopExecutor, completion: @escaping (Result<Void, StoreError>) -> Void) { inner.remove(id: id, reason: reason, on: executor, completion: completion) }
    func openReader(id: String, on executor: any LoopExecutor, completion: @escaping (Result<any UploadReader, StoreError>) -> Void) { inner.openReader(id: id, on: executor, completion: completion) }
    func listExpired(now: Int64, on executor: any LoopExecutor, completion: @escaping (Result<[String], StoreError>) -> Void) { inner.listExpired(now: now, on: executor, completion: completion) }
    func finals(referencing partialID: String, on executor: any LoopExecutor, completion: @escaping (Result<[String], StoreError>) -> Void) { inner.finals(referencing: partialID, on: executor, completion: completion) }
    func moveExpiry(of upload: UploadInfo, to expiresAt: Int64, lock: any UploadLock, on executor: any LoopExecutor, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) { inner.moveExpiry(of: upload, to: expiresAt, lock: lock, on: executor, completion: completion) }
    func completeConcatenation(_ final: UploadInfo, partials: [UploadInfo], on executor: any LoopExecutor, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) { inner.completeConcatenation(final, partials: partials, on: executor, completion: completion) }
    func openWriter(id: String, startingAt offset: Int64, discardable: Bool, lock: any UploadLock, on executor: any LoopExecutor, completion: @escaping (Result<any UploadWriter, StoreError>) -> Void) {
        inner.openWriter(id: id, startingAt: offset, discardable: discardable, lock: lock, on: executor) { result in
            completion(result.map { Writer(store: self, inner: $0) })
        }
    }

    final class Writer: UploadWriter {
        let store: StallingStore
        let inner: any UploadWriter
        init(store: StallingStore, inner: any UploadWriter) { self.store = store; self.inner = inner }
        func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void) {
            guard store.stallWrites else { return inner.write(fragment, completion: completion) }
            store.stalled.append { [inner] in inner.write(fragment, completion: completion) }
        }
        func commit(expiresAt: Int64?, completion: @escaping (Result<UploadInfo, StoreError>) -> Void) {
            guard store.stallCommits else { return inner.commit(expiresAt: expiresAt, completion: completion) }
            store.stalled.append { [inner] in inner.commit(expiresAt: expiresAt, completion: completion) }
        }
        func rollback(completion: @escaping (Result<UploadInfo, StoreError>) -> Void) { inner.rollback(completion: completion) }
    }
}

final class LockTests: TusTestCase {
    func testTakeoverReleasesAndStalePatchGets409() {
        let path = createUpload(length: 100)
        let first = client.start(.PATCH, path, headers: patchHeaders(offset: 0), framing: .contentLength(50))
        first.deliver(Array(repeating: 1, count: 10), fragmentSize: 4)
        // The client reconnects and retries with the offset it last knew.
        let stale = client.start(.PATCH, path, headers: patchHeaders(offset: 0), framing: .contentLength(50))
        client.executor.runPending()
        XCTAssertEqual(first.status, 400)
        XCTAssertTrue(first.response!.closeConnection)
        XCTAssertEqual(stale.status, 409, "the holder persisted its 10 bytes first")
        XCTAssertFalse(stale.didReadBody)
        let resumed = client.patch(path, offset: 10, body: [2, 2])
        XCTAssertEqual(resumed.status, 204)
        XCTAssertEqual(resumed.header("Upload-Offset"), "12")
        XCTAssertEqual(locker.heldIDs, [])
    }

    func testTakeoverWithCorrectOffsetProceeds() {
        let path = createUpload(length: 100)
        let first = client.start(.PATCH, path, headers: patchHeaders(offset: 0), framing: .contentLength(50))
        first.deliver(Array(repeating: 1, count: 10))
        XCTAssertEqual(offset(path), 10, "HEAD sees progress and never waits for the lock")
        let second = client.start(.PATCH, path, headers: patchHeaders(offset: 10), framing: .contentLength(5))
        client.executor.runPending()
        XCTAssertTrue(second.isReadingBody)
        XCTAssertFalse(first.deliver([9]), "the holder stopped reading")
        second.deliver([2, 2, 2, 2, 2])
        second.endBody()
        XCTAssertEqual(second.status, 204)
        XCTAssertEqual(second.header("Upload-Offset"), "15")
        XCTAssertEqual(store.storedBytes(String(path.dropFirst(7))), Array(repeating: 1, count: 10) + Array(repeating: 2, count: 5))
    }

    func testStuckHolderMeans423AfterTimeout() {
        let stalling = StallingStore()
        let clock = clock
        handler = TusHandler(
            configuration: TusConfiguration(lockReleaseTimeoutMilliseconds: 3000), store: stalling, locker: locker,
            now: { clock.now })
        client = TusTestClient(handler: handler)
        stalling.stallWrites = false
        let path = createUpload(length: 100)
        stalling.stallWrites = true
        let first = client.start(.PATCH, path, headers: patchHeaders(offset: 0), framing: .contentLength(50))
        first.deliver([1, 2, 3])
        XCTAssertEqual(stalling.stalled.count, 1)
        let second = client.start(.PATCH, path, headers: patchHeaders(offset: 0), framing: .contentLength(5))
        client.executor.runPending()
        XCTAssertEqual(first.status, 400, "asked to release; answered, but its write is stuck")
        XCTAssertFalse(second.hasResponded)
        client.executor.advance(byMilliseconds: 2999)
        XCTAssertFalse(second.hasResponded)
        client.executor.advance(byMilliseconds: 1)
        XCTAssertEqual(second.status, 423)
        XCTAssertFalse(second.didReadBody)
        // The disk recovers: the holder commits what it stored and releases.
        stalling.stallWrites = false
        stalling.stalled.removeFirst()()
        client.executor.runPending()
        XCTAssertEqual(locker.heldIDs, [])
        XCTAssertEqual(offset(path), 3)
        XCTAssertEqual(first.responses.count, 1)
    }

    func testLockerGrantsInOrderAndTimesOut() {
        let executor = ManualExecutor()
        var events: [String] = []
        var firstLock: (any UploadLock)?
        locker.lock(id: "a", executor: executor, timeoutMilliseconds: 100, onReleaseRequested: { events.append("release-1") }) {
            firstLock = try? $0.get()
        }
        XCTAssertNotNil(firstLock)
        var secondResult: Result<any UploadLock, UploadLockError>?
        locker.lock(id: "a", executor: executor, timeoutMilliseconds: 100, onReleaseRequested: { events.append("release-2") }) {
            secondResult = $0
        }
        executor.runPending()
        XCTAssertEqual(events, ["release-1"])
        XCTAssertNil(secondResult)
        XCTAssertNil(locker.tryLock(id: "a", executor: executor, onReleaseRequested: {}))
        firstLock!.release()
        executor.runPending()
        let second = try? secondResult?.get()
        XCTAssertNotNil(second)
        executor.advance(byMilliseconds: 1000)  // the cancelled timer must not fire
        XCTAssertNotNil(try? secondResult?.get())
        var third: Result<any UploadLock, UploadLockError>?
        locker.lock(id: "a", executor: executor, timeoutMilliseconds: 100, onReleaseRequested: {}) { third = $0 }
        executor.advance(byMilliseconds: 100)
        XCTAssertEqual(events, ["release-1", "release-2"])
        guard case .failure(.timedOut) = third else { return XCTFail("expected timeout") }
        second!.release()
        XCTAssertEqual(locker.heldIDs, [])
    }

    func testLockAcrossThreads() {
        // Two "loops" on real threads hammer the same id; the lock must never be held twice.
        let locker = MemoryLocker()
        let holders = ConcurrencyCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<200 {
                if let lock = locker.tryLock(id: "x", executor: ManualExecutor(), onReleaseRequested: {}) {
                    XCTAssertEqual(holders.enter(), 1)
                    holders.leave()
                    lock.release()
                }
            }
        }
        XCTAssertEqual(locker.heldIDs, [])
    }
}

/// A `MemoryLocker` whose holders can be told their lease is gone, as `RedisLocker` tells them when a renewal finds
/// the lease lapsed (Redis unreachable for longer than the lease, or a failover lost it).
final class LeaseLosingLocker: UploadLocker, @unchecked Sendable {
    final class Lock: UploadLock, @unchecked Sendable {
        let inner: any UploadLock
        var isLeaseLost = false
        init(_ inner: any UploadLock) { self.inner = inner }
        var token: String { inner.token }
        func release() { inner.release() }
    }

    let inner = MemoryLocker()
    var held: [(lock: Lock, onReleaseRequested: () -> Void)] = []

    func lock(
        id: String, executor: any LoopExecutor, timeoutMilliseconds: UInt64, onReleaseRequested: @escaping () -> Void,
        completion: @escaping (Result<any UploadLock, UploadLockError>) -> Void
    ) {
        inner.lock(
            id: id, executor: executor, timeoutMilliseconds: timeoutMilliseconds, onReleaseRequested: onReleaseRequested
        ) { [self] result in
            completion(result.map { inner in
                let lock = Lock(inner)
                held.append((lock, onReleaseRequested))
                return lock
            })
        }
    }

    func tryLock(
        id: String, executor: any LoopExecutor, onReleaseRequested: @escaping () -> Void,
        completion: @escaping (Result<(any UploadLock)?, UploadLockError>) -> Void
    ) {
        inner.tryLock(id: id, executor: executor, onReleaseRequested: onReleaseRequested, completion: completion)
    }

    /// What a renewal that found the lease gone does: mark it lost, then tell the holder to stop.
    func loseLeases() {
        for (lock, onReleaseRequested) in held {
            lock.isLeaseLost = true
            onReleaseRequested()
        }
    }
}

final class LeaseLostTests: TusTestCase {
    /// A PATCH whose lease went mid-body was not taken over by another request: 503 with `Retry-After` (the client
    /// resumes from HEAD soon), not tus's 400 for an upload another client took.
    func testPatchWhoseLeaseIsLostAnswers503() {
        let locker = LeaseLosingLocker()
        handler = TusHandler(configuration: TusConfiguration(), store: store, locker: locker, now: { [clock] in clock.now })
        client = TusTestClient(handler: handler)
        let path = createUpload(length: 100)
        let patch = client.start(.PATCH, path, headers: patchHeaders(offset: 0), framing: .contentLength(100))
        _ = patch.deliver([1, 2, 3])
        client.executor.runPending()
        XCTAssertFalse(patch.hasResponded)
        locker.loseLeases()
        client.executor.runPending()
        XCTAssertEqual(patch.status, 503)
        XCTAssertEqual(patch.header("Retry-After"), "1")
        let text = String(decoding: patch.response?.body ?? [], as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("ERR_UPLOAD_LOCK_LOST: "), text)
        XCTAssertEqual(offset(path), 3, "what arrived was kept (the memory store has no token check)")
    }
}

import Dispatch
import Synchronization

final class ConcurrencyCounter: Sendable {
    private let value = Atomic(0)
    func enter() -> Int { value.add(1, ordering: .sequentiallyConsistent).newValue }
    func leave() { value.subtract(1, ordering: .sequentiallyConsistent) }
}
