import Foundation
import TusHTTP1
import TusLoop
import TusProtocol
import TusRedis
import TusRedisStore
import TusTestSupport
import XCTest

/// Two `RedisLocker`s on one real redis-server play two instances of a cluster.
class RedisLockerTests: XCTestCase {
    var driver: LoopDriver!
    var redis: RedisServerProcess!
    var client: RedisClient!
    var keys = RedisKeys(prefix: "locks:")

    override func setUpWithError() throws {
        redis = try RedisServerProcess()
        driver = try LoopDriver()
        client = RedisClient(configuration: RedisConfiguration(host: "127.0.0.1", port: redis.port))
    }

    override func tearDownWithError() throws {
        let client = client!
        let _: Void = driver.run { done in client.shutdown(on: self.driver.loop) { done(()) } }
        XCTAssertEqual(driver.shutDown(), 0)
        redis?.stop()
        redis = nil  // its deinit removes its directory; XCTest keeps test case objects alive
    }

    /// The server that holds the keys of upload `id`.
    func port(of id: String) -> Int { redis.port }

    func makeLocker(lease: UInt64 = 10_000) -> RedisLocker {
        let locker = RedisLocker(client: client, keys: keys, leaseMilliseconds: lease)
        let subscribed: Result<Void, RedisError> = driver.run { done in locker.start(on: self.driver.executor, completion: done) }
        XCTAssertNoThrow(try subscribed.get())
        return locker
    }

    func testReleaseRequestCrossesInstancesAndTheWaiterGetsTheLock() throws {
        let instanceA = makeLocker()
        let instanceB = makeLocker()
        let executor = driver.executor
        let started = Date()
        let events: [String] = driver.run { done in
            var events: [String] = []
            instanceA.lock(id: "u1", executor: executor, timeoutMilliseconds: 3000, onReleaseRequested: {}) { first in
                guard case .success(let held) = first else { return done(["A failed: \(first)"]) }
                events.append("A holds")
                var heldByA: (any UploadLock)? = held
                instanceB.lock(id: "u1", executor: executor, timeoutMilliseconds: 3000, onReleaseRequested: {}) { second in
                    events.append(second.isSuccess ? "B holds" : "B failed")
                    done(events)
                }
                _ = executor.schedule(afterMilliseconds: 200) {
                    events.append("A releases")
                    heldByA?.release()
                    heldByA = nil
                }
            }
        }
        XCTAssertEqual(events, ["A holds", "A releases", "B holds"])
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5, "woken by pub/sub, not by the lease")
    }

    func testHolderHearsReleaseRequestsFromAnotherInstance() throws {
        let instanceA = makeLocker()
        let instanceB = makeLocker()
        let executor = driver.executor
        let outcome: String = driver.run { done in
            instanceA.lock(id: "u2", executor: executor, timeoutMilliseconds: 3000, onReleaseRequested: {}) { _ in }
            var holder: (any UploadLock)?
            instanceA.lock(id: "u3", executor: executor, timeoutMilliseconds: 3000, onReleaseRequested: {
                holder?.release()  // what UploadAppend does: stop, persist, release
            }) { result in
                holder = try? result.get()
                instanceB.lock(id: "u3", executor: executor, timeoutMilliseconds: 3000, onReleaseRequested: {}) { second in
                    done(second.isSuccess ? "B took over" : "B: \(second)")
                }
            }
        }
        XCTAssertEqual(outcome, "B took over")
    }

    func testTryLockAndTimeoutWhileHeld() throws {
        let locker = makeLocker()
        XCTAssertTrue(RedisServerProcess.command("SET locks:{busy}:lock someone-else PX 60000\r\n", port: port(of: "busy"))?.hasPrefix("+OK") == true)
        let executor = driver.executor
        let tried: Result<(any UploadLock)?, UploadLockError> = driver.run { done in
            locker.tryLock(id: "busy", executor: executor, onReleaseRequested: {}, completion: done)
        }
        XCTAssertNil(try tried.get())
        let started = Date()
        let waited: String = driver.run { done in
            locker.lock(id: "busy", executor: executor, timeoutMilliseconds: 300, onReleaseRequested: {}) { result in
                if case .failure(.timedOut) = result { done("timed out") } else { done("\(result)") }
            }
        }
        XCTAssertEqual(waited, "timed out")
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5)
    }

    func testDeadHoldersLeaseLapsesAndTheWaiterProceeds() throws {
        let locker = makeLocker()
        // A holder that died: its lease is never renewed and nobody publishes its release.
        XCTAssertTrue(RedisServerProcess.command("SET locks:{dead}:lock crashed PX 600\r\n", port: port(of: "dead"))?.hasPrefix("+OK") == true)
        let executor = driver.executor
        let started = Date()
        let result: Bool = driver.run { done in
            locker.lock(id: "dead", executor: executor, timeoutMilliseconds: 3000, onReleaseRequested: {}) { result in
                done(result.isSuccess)
            }
        }
        XCTAssertTrue(result)
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertGreaterThan(elapsed, 0.4, "not before the lease lapsed")
        XCTAssertLessThan(elapsed, 2.0)
    }

    func testHeldLeaseIsRenewed() throws {
        let locker = makeLocker(lease: 600)
        let executor = driver.executor
        let lock: (any UploadLock)? = driver.run { done in
            locker.lock(id: "long", executor: executor, timeoutMilliseconds: 1000, onReleaseRequested: {}) { done(try? $0.get()) }
        }
        XCTAssertNotNil(lock)
        Thread.sleep(forTimeInterval: 1.5)  // well past the lease: only renewals keep it
        XCTAssertTrue(RedisServerProcess.command("EXISTS locks:{long}:lock\r\n", port: port(of: "long"))?.hasPrefix(":1") == true)
        let _: Void = driver.run { done in
            lock?.release()
            done(())
        }
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertTrue(RedisServerProcess.command("EXISTS locks:{long}:lock\r\n", port: port(of: "long"))?.hasPrefix(":0") == true, "released")
    }

    func testRedisDownIsUnavailableNotLocked() throws {
        let locker = makeLocker()
        try XCTSkipIf(redis == nil, "one Redis paused: the single-server case")
        redis.pause()
        defer { redis.resume() }
        let executor = driver.executor
        let result: String = driver.run { done in
            locker.lock(id: "z", executor: executor, timeoutMilliseconds: 10_000, onReleaseRequested: {}) { result in
                if case .failure(.unavailable) = result { done("unavailable") } else { done("\(result)") }
            }
        }
        XCTAssertEqual(result, "unavailable")
    }
}

extension Result {
    var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }
}

/// The same lockers on a 3-master Redis Cluster: release requests and releases cross instances by sharded
/// pub/sub (`SSUBSCRIBE`/`SPUBLISH` on the lock shards' channels, spread over the masters).
final class RedisClusterLockerTests: RedisLockerTests {
    var cluster: RedisClusterSetup?

    override func setUpWithError() throws {
        do {
            cluster = try RedisClusterSetup()
        } catch RedisServerProcess.StartError.notInstalled {
            throw XCTSkip("redis-server or redis-cli is not installed")
        }
        driver = try LoopDriver()
        client = RedisClient(configuration: try RedisConfiguration(url: cluster!.url))
        keys = RedisKeys(prefix: "locks:", shardCount: RedisKeys.clusterShardCount)
    }

    override func tearDownWithError() throws {
        try super.tearDownWithError()
        cluster?.stop()
        cluster = nil
    }

    override func testReleaseRequestCrossesInstancesAndTheWaiterGetsTheLock() throws {
        try super.testReleaseRequestCrossesInstancesAndTheWaiterGetsTheLock()
    }
    override func testHolderHearsReleaseRequestsFromAnotherInstance() throws {
        try super.testHolderHearsReleaseRequestsFromAnotherInstance()
    }
    override func testTryLockAndTimeoutWhileHeld() throws { try super.testTryLockAndTimeoutWhileHeld() }
    override func testDeadHoldersLeaseLapsesAndTheWaiterProceeds() throws {
        try super.testDeadHoldersLeaseLapsesAndTheWaiterProceeds()
    }
    override func testHeldLeaseIsRenewed() throws { try super.testHeldLeaseIsRenewed() }

    override func port(of id: String) -> Int {
        cluster?.owner(ofSlot: ClusterSlots.slot(of: id))?.port ?? 0
    }
}
