import Foundation
import Synchronization
import TusHTTP1
import TusHTTPServer
import TusLoop
import TusProtocol
import TusRedis
import TusRedisStore
import TusStore
import TusTestSupport
import XCTest

/// The `UploadStateStore` contract, run against every implementation: the in-memory twin (this class), the file
/// store and Redis (a real redis-server per test). A case that passes on the twin and fails on Redis is a Redis bug.
/// Subclasses restate the inherited cases: Linux XCTest discovers only methods a class declares itself.
class StateStoreContract: XCTestCase {
    var driver: LoopDriver!
    var directory = ""
    var redis: RedisServerProcess?
    var client: RedisClient?

    /// Overridden per implementation.
    func makeStore() throws -> any UploadStateStore { MemoryStateStore() }

    override func setUpWithError() throws {
        driver = try LoopDriver()
        directory = NSTemporaryDirectory() + "tus-contract-" + UUID().uuidString
    }

    override func tearDownWithError() throws {
        if let client { driver.run { done in client.shutdown(on: self.driver.loop) { done(()) } } as Void }
        XCTAssertEqual(driver.shutDown(), 0, "handles left for the loop to close")
        redis?.stop()
        redis = nil  // its deinit removes its directory; XCTest keeps test case objects alive
        try? FileManager.default.removeItem(atPath: directory)
    }

    func info(_ id: String, length: Int64? = 100, expiresAt: Int64? = nil, metadata: String? = nil) -> UploadInfo {
        UploadInfo(id: id, length: length, metadata: metadata, createdAt: 1_700_000_000, expiresAt: expiresAt)
    }

    func testCreateLookupAndDuplicate() throws {
        let store = try makeStore()
        let created = info("a1", metadata: "filename aGk=,flag")
        XCTAssertEqual(driver.run { done in store.create(created, on: self.driver.executor, completion: done) }, .success(created))
        XCTAssertEqual(driver.run { done in store.lookup("a1", on: self.driver.executor, completion: done) }, .success(.found(created)))
        XCTAssertEqual(driver.run { done in store.lookup("nope", on: self.driver.executor, completion: done) }, .success(.notFound))
        XCTAssertEqual(driver.run { done in store.create(created, on: self.driver.executor, completion: done) }, .failure(.alreadyExists))
    }

    func testDeclareLengthOnce() throws {
        let store = try makeStore()
        _ = driver.run { done in store.create(self.info("d", length: nil), on: self.driver.executor, completion: done) }
        let declared = driver.run { done in store.declareLength(id: "d", length: 42, on: self.driver.executor, completion: done) }
        XCTAssertEqual(try declared.get().length, 42)
        XCTAssertEqual(driver.run { done in store.declareLength(id: "d", length: 43, on: self.driver.executor, completion: done) }, .failure(.lengthAlreadySet))
        XCTAssertEqual(driver.run { done in store.declareLength(id: "x", length: 1, on: self.driver.executor, completion: done) }, .failure(.notFound))
    }

    func testWriteLifecycleMovesOffsetAndExpiry() throws {
        let store = try makeStore()
        let lock = StaticLock(token: "t1")
        try prepareLock(id: "w", token: lock.token)
        _ = driver.run { done in store.create(self.info("w", expiresAt: 5), on: self.driver.executor, completion: done) }
        XCTAssertEqual(driver.run { done in store.beginWrite(id: "w", at: 7, discardable: false, lock: lock, on: self.driver.executor, completion: done) }.failure, .conflict)
        XCTAssertEqual(try driver.run { done in store.beginWrite(id: "w", at: 0, discardable: false, lock: lock, on: self.driver.executor, completion: done) }.get().offset, 0)
        XCTAssertNil(driver.run { done in store.recordProgress(id: "w", offset: 30, lock: lock, on: self.driver.executor, completion: done) })
        XCTAssertEqual(try driver.run { done in store.lookup("w", on: self.driver.executor, completion: done) }.get().info?.offset, 30)
        let finished = try driver.run { done in store.finishWrite(id: "w", offset: 40, expiry: .set(99), lock: lock, on: self.driver.executor, completion: done) }.get()
        XCTAssertEqual(finished.offset, 40)
        XCTAssertEqual(finished.expiresAt, 99)
        let rolledBack = try driver.run { done in store.finishWrite(id: "w", offset: 40, expiry: .keep, lock: lock, on: self.driver.executor, completion: done) }.get()
        XCTAssertEqual(rolledBack.expiresAt, 99, "keep leaves the expiry alone")
        let complete = try driver.run { done in store.finishWrite(id: "w", offset: 100, expiry: .set(120), lock: lock, on: self.driver.executor, completion: done) }.get()
        XCTAssertTrue(complete.isComplete)
        XCTAssertNil(complete.expiresAt, "a complete upload never expires")
        XCTAssertEqual(try driver.run { done in store.lookup("w", on: self.driver.executor, completion: done) }.get(), .found(complete))
    }

    func testExpiryListingAndRemoval() throws {
        let store = try makeStore()
        _ = driver.run { done in store.create(self.info("old", expiresAt: 10), on: self.driver.executor, completion: done) }
        _ = driver.run { done in store.create(self.info("new", expiresAt: 1000), on: self.driver.executor, completion: done) }
        _ = driver.run { done in store.create(self.info("never"), on: self.driver.executor, completion: done) }
        XCTAssertEqual(driver.run { done in store.listExpired(now: 500, on: self.driver.executor, completion: done) }, .success(["old"]))
        XCTAssertNoThrow(try driver.run { done in store.remove(id: "old", reason: .expired, on: self.driver.executor, completion: done) }.get())
        XCTAssertEqual(driver.run { done in store.lookup("old", on: self.driver.executor, completion: done) }, .success(.gone))
        XCTAssertEqual(driver.run { done in store.remove(id: "old", reason: .terminated, on: self.driver.executor, completion: done) }.failure, .gone)
        XCTAssertEqual(driver.run { done in store.remove(id: "ghost", reason: .terminated, on: self.driver.executor, completion: done) }.failure, .notFound)
        XCTAssertEqual(driver.run { done in store.create(self.info("old"), on: self.driver.executor, completion: done) }, .failure(.alreadyExists), "a gone id is not reused")
        XCTAssertEqual(driver.run { done in store.listExpired(now: 5000, on: self.driver.executor, completion: done) }, .success(["new"]))
    }

    /// The concatenation fields round-trip exactly (raw header, partial flag, partial ids in order with repeats),
    /// and `completeFinal` completes only finals.
    func testConcatenationFieldsRoundTripAndCompleteFinal() throws {
        let store = try makeStore()
        let partial = UploadInfo(
            id: "p1", length: 5, metadata: "filename cGFydA==", createdAt: 1_700_000_000, expiresAt: 50, concat: "partial",
            isPartial: true)
        let final = UploadInfo(
            id: "f1", length: nil, createdAt: 1_700_000_001, concat: "final; /files/p1  http://h/files/p2 /files/p1",
            partialIDs: ["p1", "p2", "p1"])
        for info in [partial, final] {
            XCTAssertEqual(driver.run { done in store.create(info, on: self.driver.executor, completion: done) }, .success(info))
            XCTAssertEqual(driver.run { done in store.lookup(info.id, on: self.driver.executor, completion: done) }, .success(.found(info)))
        }
        let completed = try driver.run { done in store.completeFinal(id: "f1", length: 15, on: self.driver.executor, completion: done) }.get()
        var expected = final
        expected.length = 15
        expected.offset = 15
        XCTAssertEqual(completed, expected)
        XCTAssertEqual(driver.run { done in store.lookup("f1", on: self.driver.executor, completion: done) }, .success(.found(expected)))
        XCTAssertEqual(driver.run { done in store.completeFinal(id: "f1", length: 15, on: self.driver.executor, completion: done) }, .success(expected), "idempotent")
        XCTAssertEqual(driver.run { done in store.completeFinal(id: "p1", length: 5, on: self.driver.executor, completion: done) }.failure, .conflict, "only finals")
        XCTAssertEqual(driver.run { done in store.completeFinal(id: "zz", length: 5, on: self.driver.executor, completion: done) }.failure, .notFound)
        let other = UploadInfo(id: "f2", length: nil, createdAt: 1, concat: "final;/files/p2", partialIDs: ["p2"])
        _ = driver.run { done in store.create(other, on: self.driver.executor, completion: done) }
        XCTAssertEqual(driver.run { done in store.finals(referencing: "p1", on: self.driver.executor, completion: done) }, .success(["f1"]), "once, though listed twice")
        XCTAssertEqual(driver.run { done in store.finals(referencing: "p2", on: self.driver.executor, completion: done) }, .success(["f1", "f2"]))
        XCTAssertEqual(driver.run { done in store.finals(referencing: "f1", on: self.driver.executor, completion: done) }, .success([]))
    }

    /// An unfinished final expires like any unfinished upload: listed while due, moved by `finishWrite` (the sweep
    /// moves it to its partials' expiry), and never listed again once `completeFinal` completed it.
    func testFinalExpiryIsListedMovedAndDroppedOnCompletion() throws {
        let store = try makeStore()
        let lock = StaticLock(token: "t3")
        try prepareLock(id: "f9", token: lock.token)
        let final = UploadInfo(
            id: "f9", length: 4, createdAt: 1_700_000_000, expiresAt: 10, concat: "final;/files/p9", partialIDs: ["p9"])
        XCTAssertEqual(driver.run { done in store.create(final, on: self.driver.executor, completion: done) }, .success(final))
        XCTAssertEqual(driver.run { done in store.listExpired(now: 500, on: self.driver.executor, completion: done) }, .success(["f9"]))
        let moved = try driver.run { done in store.finishWrite(id: "f9", offset: 0, expiry: .set(1000), lock: lock, on: self.driver.executor, completion: done) }.get()
        XCTAssertEqual(moved.expiresAt, 1000)
        XCTAssertEqual(moved.partialIDs, ["p9"])
        XCTAssertEqual(driver.run { done in store.listExpired(now: 500, on: self.driver.executor, completion: done) }, .success([]))
        XCTAssertEqual(driver.run { done in store.listExpired(now: 1000, on: self.driver.executor, completion: done) }, .success(["f9"]))
        let completed = try driver.run { done in store.completeFinal(id: "f9", length: 4, on: self.driver.executor, completion: done) }.get()
        XCTAssertNil(completed.expiresAt, "a complete final never expires")
        XCTAssertEqual(driver.run { done in store.listExpired(now: 5000, on: self.driver.executor, completion: done) }, .success([]))
        XCTAssertEqual(try driver.run { done in store.lookup("f9", on: self.driver.executor, completion: done) }.get().info?.expiresAt, nil)
    }

    /// The same state seen by a fresh store (a restart, another instance); nil when the store keeps nothing.
    func reopenStore() throws -> (any UploadStateStore)? { nil }

    /// The owner (a token's `sub`) is set at creation and survives writes, completion and a restart.
    func testOwnerIsKeptThroughWritesAndRestart() throws {
        let store = try makeStore()
        let lock = StaticLock(token: "t2")
        try prepareLock(id: "own", token: lock.token)
        var owned = info("own", metadata: "a Yg==")
        owned.owner = "alice@example.com \"quoted\""
        XCTAssertEqual(driver.run { done in store.create(owned, on: self.driver.executor, completion: done) }, .success(owned))
        _ = try driver.run { done in store.beginWrite(id: "own", at: 0, discardable: false, lock: lock, on: self.driver.executor, completion: done) }.get()
        let finished = try driver.run { done in store.finishWrite(id: "own", offset: 100, expiry: .set(nil), lock: lock, on: self.driver.executor, completion: done) }.get()
        XCTAssertEqual(finished.owner, owned.owner)
        XCTAssertEqual(try driver.run { done in store.lookup("own", on: self.driver.executor, completion: done) }.get().info?.owner, owned.owner)
        let anonymous = info("anon")
        _ = driver.run { done in store.create(anonymous, on: self.driver.executor, completion: done) }
        if let reopened = try reopenStore() {
            XCTAssertEqual(try driver.run { done in reopened.lookup("own", on: self.driver.executor, completion: done) }.get().info?.owner, owned.owner)
            XCTAssertNil(try driver.run { done in reopened.lookup("anon", on: self.driver.executor, completion: done) }.get().info?.owner)
        }
    }

    /// A draft upload's fields: kept through writes and a reopen; at its length it is not complete (and keeps its
    /// expiry) until a completing declaration of the same length, which clears `awaitsCompletion` and nothing else.
    func testDraftFieldsAreKeptAndTheSameLengthEndsAwaitingCompletion() throws {
        let store = try makeStore()
        let lock = StaticLock(token: "t4")
        try prepareLock(id: "dr", token: lock.token)
        var draft = info("dr", length: 10, expiresAt: 50)
        draft.awaitsCompletion = true
        draft.representationDigest = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        draft.wantedDigest = "sha-256"
        XCTAssertEqual(driver.run { done in store.create(draft, on: self.driver.executor, completion: done) }, .success(draft))
        XCTAssertEqual(driver.run { done in store.lookup("dr", on: self.driver.executor, completion: done) }, .success(.found(draft)))
        _ = try driver.run { done in store.beginWrite(id: "dr", at: 0, discardable: true, lock: lock, on: self.driver.executor, completion: done) }.get()
        let atLength = try driver.run { done in store.finishWrite(id: "dr", offset: 10, expiry: .set(60), lock: lock, on: self.driver.executor, completion: done) }.get()
        var expected = draft
        expected.offset = 10
        expected.expiresAt = 60
        XCTAssertEqual(atLength, expected)
        XCTAssertFalse(atLength.isComplete, "at its length, still waiting for the request that completes it")
        XCTAssertEqual(driver.run { done in store.listExpired(now: 100, on: self.driver.executor, completion: done) }, .success(["dr"]))
        XCTAssertEqual(driver.run { done in store.declareLength(id: "dr", length: 11, completing: true, on: self.driver.executor, completion: done) }.failure, .lengthAlreadySet)
        XCTAssertEqual(driver.run { done in store.declareLength(id: "dr", length: 10, on: self.driver.executor, completion: done) }.failure, .lengthAlreadySet, "only a completing declaration ends the wait")
        let ended = try driver.run { done in store.declareLength(id: "dr", length: 10, completing: true, on: self.driver.executor, completion: done) }.get()
        expected.awaitsCompletion = false
        XCTAssertEqual(ended, expected)
        XCTAssertTrue(ended.isComplete)
        XCTAssertEqual(driver.run { done in store.declareLength(id: "dr", length: 10, completing: true, on: self.driver.executor, completion: done) }.failure, .lengthAlreadySet, "once only")
        let committed = try driver.run { done in store.finishWrite(id: "dr", offset: 10, expiry: .set(70), lock: lock, on: self.driver.executor, completion: done) }.get()
        expected.expiresAt = nil
        XCTAssertEqual(committed, expected, "complete now: the expiry goes, the digests stay")
        XCTAssertEqual(driver.run { done in store.listExpired(now: 100, on: self.driver.executor, completion: done) }, .success([]))
        if let reopened = try reopenStore() {
            // Only the draft fields: the file store's recovery takes the offset from a data file this case has not.
            let seen = try XCTUnwrap(try driver.run { done in reopened.lookup("dr", on: self.driver.executor, completion: done) }.get().info)
            XCTAssertFalse(seen.awaitsCompletion)
            XCTAssertEqual(seen.representationDigest, draft.representationDigest)
            XCTAssertEqual(seen.wantedDigest, draft.wantedDigest)
        }
    }

    /// A draft upload created empty and deferred (`Upload-Length` unknown) keeps waiting once its length is
    /// declared, until a completing declaration; one whose length is still deferred ends with a single completing
    /// declaration (a chunked completing append); an empty one (`Upload-Length: 0`) ends with a completing 0.
    func testDraftDeclaredLengthKeepsAwaitingAndZeroLengthEnds() throws {
        let store = try makeStore()
        var deferred = info("dd", length: nil)
        deferred.awaitsCompletion = true
        _ = try driver.run { done in store.create(deferred, on: self.driver.executor, completion: done) }.get()
        let declared = try driver.run { done in store.declareLength(id: "dd", length: 0, on: self.driver.executor, completion: done) }.get()
        XCTAssertEqual(declared.length, 0)
        XCTAssertTrue(declared.awaitsCompletion, "a first declaration sets the length only")
        XCTAssertFalse(declared.isComplete)
        let ended = try driver.run { done in store.declareLength(id: "dd", length: 0, completing: true, on: self.driver.executor, completion: done) }.get()
        XCTAssertTrue(ended.isComplete)
        var chunked = info("dc", length: nil)
        chunked.awaitsCompletion = true
        _ = try driver.run { done in store.create(chunked, on: self.driver.executor, completion: done) }.get()
        XCTAssertEqual(driver.run { done in store.declareLength(id: "dc", length: 0, completing: true, on: self.driver.executor, completion: done) }.failure, nil)
        let once = try XCTUnwrap(try driver.run { done in store.lookup("dc", on: self.driver.executor, completion: done) }.get().info)
        XCTAssertEqual(once.length, 0)
        XCTAssertTrue(once.isComplete, "length set and the wait ended in one declaration")
        var empty = info("de", length: 0, expiresAt: 40)
        empty.awaitsCompletion = true
        _ = try driver.run { done in store.create(empty, on: self.driver.executor, completion: done) }.get()
        XCTAssertFalse(try driver.run { done in store.lookup("de", on: self.driver.executor, completion: done) }.get().info?.isComplete ?? true)
        let emptyEnded = try driver.run { done in store.declareLength(id: "de", length: 0, completing: true, on: self.driver.executor, completion: done) }.get()
        XCTAssertTrue(emptyEnded.isComplete)
        XCTAssertFalse(try driver.run { done in store.lookup("de", on: self.driver.executor, completion: done) }.get().info?.awaitsCompletion ?? true)
    }

    /// Redis checks lock tokens; the twins do not need to (their locks cannot lapse).
    func prepareLock(id: String, token: String) throws {}
}

final class FileStateStoreContractTests: StateStoreContract {
    override func makeStore() throws -> any UploadStateStore { try FileStateStore(directory: directory, fsync: .none) }
    override func reopenStore() throws -> (any UploadStateStore)? { try FileStateStore(directory: directory, fsync: .none) }
    override func testDraftFieldsAreKeptAndTheSameLengthEndsAwaitingCompletion() throws {
        try super.testDraftFieldsAreKeptAndTheSameLengthEndsAwaitingCompletion()
    }
    override func testDraftDeclaredLengthKeepsAwaitingAndZeroLengthEnds() throws {
        try super.testDraftDeclaredLengthKeepsAwaitingAndZeroLengthEnds()
    }
    override func testOwnerIsKeptThroughWritesAndRestart() throws { try super.testOwnerIsKeptThroughWritesAndRestart() }
    override func testCreateLookupAndDuplicate() throws { try super.testCreateLookupAndDuplicate() }
    override func testDeclareLengthOnce() throws { try super.testDeclareLengthOnce() }
    override func testWriteLifecycleMovesOffsetAndExpiry() throws { try super.testWriteLifecycleMovesOffsetAndExpiry() }
    override func testExpiryListingAndRemoval() throws { try super.testExpiryListingAndRemoval() }
    override func testFinalExpiryIsListedMovedAndDroppedOnCompletion() throws {
        try super.testFinalExpiryIsListedMovedAndDroppedOnCompletion()
    }
    override func testConcatenationFieldsRoundTripAndCompleteFinal() throws {
        try super.testConcatenationFieldsRoundTripAndCompleteFinal()
    }

    /// Recovery keeps the fields, and a complete final's offset although its own data file is empty.
    func testConcatenationFieldsSurviveARestart() throws {
        try testConcatenationFieldsRoundTripAndCompleteFinal()
        let reopened = try makeStore()
        guard case .success(.found(let final)) = driver.run({ done in reopened.lookup("f1", on: self.driver.executor, completion: done) }),
            case .success(.found(let partial)) = driver.run({ done in reopened.lookup("p1", on: self.driver.executor, completion: done) })
        else { return XCTFail("records lost") }
        XCTAssertEqual(final.partialIDs, ["p1", "p2", "p1"])
        XCTAssertEqual(final.offset, 15, "not reconciled against its empty data file")
        XCTAssertTrue(final.isComplete)
        XCTAssertEqual(final.concat, "final; /files/p1  http://h/files/p2 /files/p1")
        XCTAssertTrue(partial.isPartial)
        XCTAssertEqual(partial.concat, "partial")
    }
}

final class RedisStateStoreContractTests: StateStoreContract {
    override func makeStore() throws -> any UploadStateStore {
        let server = try RedisServerProcess()
        redis = server
        let client = RedisClient(configuration: RedisConfiguration(host: "127.0.0.1", port: server.port))
        self.client = client
        return RedisStateStore(client: client, keys: RedisKeys(prefix: "contract:"))
    }

    override func testConcatenationFieldsRoundTripAndCompleteFinal() throws {
        try super.testConcatenationFieldsRoundTripAndCompleteFinal()
    }
    override func reopenStore() throws -> (any UploadStateStore)? {
        RedisStateStore(client: client!, keys: RedisKeys(prefix: "contract:"))
    }
    override func testDraftFieldsAreKeptAndTheSameLengthEndsAwaitingCompletion() throws {
        try super.testDraftFieldsAreKeptAndTheSameLengthEndsAwaitingCompletion()
    }
    override func testDraftDeclaredLengthKeepsAwaitingAndZeroLengthEnds() throws {
        try super.testDraftDeclaredLengthKeepsAwaitingAndZeroLengthEnds()
    }
    override func testOwnerIsKeptThroughWritesAndRestart() throws { try super.testOwnerIsKeptThroughWritesAndRestart() }
    override func testFinalExpiryIsListedMovedAndDroppedOnCompletion() throws {
        try super.testFinalExpiryIsListedMovedAndDroppedOnCompletion()
    }

    override func prepareLock(id: String, token: String) throws {
        let reply = RedisServerProcess.command("SET contract:{\(id)}:lock \(token) PX 60000\r\n", port: redis!.port)
        XCTAssertEqual(reply, "+OK\r\n")
    }

    /// A writer whose lease lapsed (and maybe went to another instance) can never move the offset.
    func testOffsetMovesOnlyForTheLeaseHolder() throws {
        let store = try makeStore()
        _ = driver.run { done in store.create(self.info("held"), on: self.driver.executor, completion: done) }
        try prepareLock(id: "held", token: "owner")
        let stranger = StaticLock(token: "stranger")
        XCTAssertEqual(driver.run { done in store.recordProgress(id: "held", offset: 50, lock: stranger, on: self.driver.executor, completion: done) }, .conflict)
        XCTAssertEqual(driver.run { done in store.finishWrite(id: "held", offset: 50, expiry: .keep, lock: stranger, on: self.driver.executor, completion: done) }.failure, .conflict)
        XCTAssertEqual(try driver.run { done in store.lookup("held", on: self.driver.executor, completion: done) }.get().info?.offset, 0)
    }

    func testPausedRedisIsUnavailableNotWrong() throws {
        let store = try makeStore()
        _ = driver.run { done in store.create(self.info("p"), on: self.driver.executor, completion: done) }
        redis!.pause()
        let started = Date()
        let during = driver.run { done in store.lookup("p", on: self.driver.executor, completion: done) }
        redis!.resume()
        guard case .failure(.unavailable) = during else { return XCTFail("expected .unavailable, got \(during)") }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
    }
}

/// A lock for state-store cases that run without a locker.
final class StaticLock: UploadLock {
    let token: String
    init(token: String) { self.token = token }
    func release() {}
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

extension UploadLookup {
    var info: UploadInfo? {
        if case .found(let info) = self { return info }
        return nil
    }
}

/// The contract on a 3-master Redis Cluster, with the expiry index sharded over the masters.
final class RedisClusterStateStoreContractTests: StateStoreContract {
    var cluster: RedisClusterSetup?
    let keys = RedisKeys(prefix: "contract:", shardCount: RedisKeys.clusterShardCount)

    override func makeStore() throws -> any UploadStateStore {
        do {
            cluster = try RedisClusterSetup()
        } catch RedisServerProcess.StartError.notInstalled {
            throw XCTSkip("redis-server or redis-cli is not installed")
        }
        let client = RedisClient(configuration: try RedisConfiguration(url: cluster!.url))
        self.client = client
        return RedisStateStore(client: client, keys: keys)
    }

    override func tearDownWithError() throws {
        try super.tearDownWithError()
        cluster?.stop()
        cluster = nil
    }

    override func reopenStore() throws -> (any UploadStateStore)? { RedisStateStore(client: client!, keys: keys) }
    override func testDraftFieldsAreKeptAndTheSameLengthEndsAwaitingCompletion() throws {
        try super.testDraftFieldsAreKeptAndTheSameLengthEndsAwaitingCompletion()
    }
    override func testDraftDeclaredLengthKeepsAwaitingAndZeroLengthEnds() throws {
        try super.testDraftDeclaredLengthKeepsAwaitingAndZeroLengthEnds()
    }

    override func prepareLock(id: String, token: String) throws {
        let owner = try XCTUnwrap(cluster?.owner(ofSlot: ClusterSlots.slot(of: id)))
        let reply = RedisServerProcess.command("SET contract:{\(id)}:lock \(token) PX 60000\r\n", port: owner.port)
        XCTAssertEqual(reply, "+OK\r\n")
    }

    override func testCreateLookupAndDuplicate() throws { try super.testCreateLookupAndDuplicate() }
    override func testDeclareLengthOnce() throws { try super.testDeclareLengthOnce() }
    override func testWriteLifecycleMovesOffsetAndExpiry() throws { try super.testWriteLifecycleMovesOffsetAndExpiry() }
    override func testExpiryListingAndRemoval() throws { try super.testExpiryListingAndRemoval() }
    override func testConcatenationFieldsRoundTripAndCompleteFinal() throws {
        try super.testConcatenationFieldsRoundTripAndCompleteFinal()
    }
    override func testFinalExpiryIsListedMovedAndDroppedOnCompletion() throws {
        try super.testFinalExpiryIsListedMovedAndDroppedOnCompletion()
    }
    override func testOwnerIsKeptThroughWritesAndRestart() throws { try super.testOwnerIsKeptThroughWritesAndRestart() }

    /// No single slot holds the expiry index: 40 expiring uploads leave entries on every master, and all 40 are
    /// listed once they are due.
    func testExpiryIndexIsSpreadOverTheMasters() throws {
        let store = try makeStore()
        let ids = (0..<40).map { "spread\($0)" }
        for id in ids {
            let created = driver.run { done in
                store.create(self.info(id, expiresAt: 1_000), on: self.driver.executor, completion: done)
            }
            XCTAssertNoThrow(try created.get())
        }
        let listed = try driver.run { done in
            store.listExpired(now: 2_000, on: self.driver.executor, completion: done)
        }.get()
        XCTAssertEqual(Set(listed), Set(ids))
        var mastersHoldingEntries = Set<Int>()
        for shard in 0..<keys.shardCount {
            let name = "contract:{expiring-\(shard)}"
            let owner = try XCTUnwrap(cluster?.owner(ofSlot: ClusterSlots.slot(of: name)))
            if let reply = RedisServerProcess.command("ZCARD \(name)\r\n", port: owner.port), reply != ":0\r\n" {
                mastersHoldingEntries.insert(owner.port)
            }
        }
        XCTAssertEqual(mastersHoldingEntries.count, 3, "index shards on every master")
    }
}
