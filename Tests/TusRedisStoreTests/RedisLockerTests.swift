import Foundation
import Synchronization
import TusHTTP1
import TusLoop
import TusProtocol
import TusRedis
import TusTestSupport
import XCTest

@testable import TusRedisStore

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
        let started = Date()
        var held: [any UploadLock] = []
        let outcome: String = driver.run { done in
            instanceA.lock(id: "u2", executor: executor, timeoutMilliseconds: 3000, onReleaseRequested: {}) {
                if let other = try? $0.get() { held.append(other) }
            }
            var holder: (any UploadLock)?
            instanceA.lock(id: "u3", executor: executor, timeoutMilliseconds: 3000, onReleaseRequested: {
                holder?.release()  // what UploadAppend does: stop, persist, release
                holder = nil
            }) { result in
                holder = try? result.get()
                // At once, most often in the holder's own millisecond: only the start's order tells them apart.
                instanceB.lock(id: "u3", executor: executor, timeoutMilliseconds: 3000, onReleaseRequested: {}) { second in
                    if let taken = try? second.get() { held.append(taken) }
                    if let holder { held.append(holder) }
                    done(second.isSuccess ? "B took over" : "B: \(second)")
                }
            }
        }
        XCTAssertEqual(outcome, "B took over")
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5, "let go at once, not timed out")
        // Released, so that the loop has no renewal left and stops at tearDown.
        let _: Void = driver.run { done in
            for lock in held { lock.release() }
            done(())
        }
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

    /// A renewal that finds the lease gone (it lapsed while Redis was unreachable, or a failover lost it) tells the
    /// holder to stop and says why: the lease is lost, which the PATCH answers 503, not a takeover's 400.
    func testRenewalThatFindsTheLeaseGoneMarksItLost() throws {
        let locker = makeLocker(lease: 600)
        let executor = driver.executor
        let toldToStop = Atomic(false)
        let lock: (any UploadLock)? = driver.run { done in
            locker.lock(id: "lapsed", executor: executor, timeoutMilliseconds: 1000, onReleaseRequested: {
                toldToStop.store(true, ordering: .relaxed)
            }) { done(try? $0.get()) }
        }
        let held = try XCTUnwrap(lock)
        XCTAssertFalse(held.isLeaseLost)
        XCTAssertEqual(RedisServerProcess.command("DEL locks:{lapsed}:lock\r\n", port: port(of: "lapsed")), ":1\r\n")
        let deadline = Date().addingTimeInterval(2)
        while !toldToStop.load(ordering: .relaxed) && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        XCTAssertTrue(toldToStop.load(ordering: .relaxed), "the renewal found the lease gone")
        XCTAssertTrue(held.isLeaseLost)
        let _: Void = driver.run { done in
            held.release()
            done(())
        }
    }

    /// What an acquire whose reply was lost leaves: Redis ran the `SET`, and nobody here holds its token. The next
    /// request for the upload on this instance recognises the lease as its own and takes it over at once, instead of
    /// waiting for it to lapse (a minute here); another instance leaves it alone.
    func testOwnLeaseLeftByALostReplyIsTakenOverAtOnce() throws {
        let locker = makeLocker(lease: 60_000)
        let other = makeLocker(lease: 60_000)
        let executor = driver.executor
        let probe: (any UploadLock)? = driver.run { done in
            locker.tryLock(id: "probe", executor: executor, onReleaseRequested: {}) { done((try? $0.get()) ?? nil) }
        }
        // "$<n>\r\n<started>.<instance>.<random>\r\n": the instance part is what makes a token this locker's.
        let reply = try XCTUnwrap(RedisServerProcess.command("GET locks:{probe}:lock\r\n", port: port(of: "probe")))
        let parts = try XCTUnwrap(reply.split(separator: "\r\n").dropFirst().first).split(separator: ".")
        XCTAssertEqual(parts.count, 3, reply)
        let _: Void = driver.run { done in
            probe?.release()
            done(())
        }
        let orphan = "1.\(parts[1]).lost"
        XCTAssertEqual(
            RedisServerProcess.command("SET locks:{lost}:lock \(orphan) PX 60000\r\n", port: port(of: "lost")), "+OK\r\n")

        let byOther: String = driver.run { done in
            other.lock(id: "lost", executor: executor, timeoutMilliseconds: 300, onReleaseRequested: {}) { result in
                if case .failure(.timedOut) = result { done("timed out") } else { done("\(result)") }
            }
        }
        XCTAssertEqual(byOther, "timed out", "not the other instance's lease")

        let started = Date()
        let taken: (any UploadLock)? = driver.run { done in
            locker.lock(id: "lost", executor: executor, timeoutMilliseconds: 3000, onReleaseRequested: {}) {
                done(try? $0.get())
            }
        }
        let mine = try XCTUnwrap(taken, "the orphaned lease was taken over")
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.0, "at once, not when the lease lapses")
        let now = RedisServerProcess.command("GET locks:{lost}:lock\r\n", port: port(of: "lost")) ?? ""
        XCTAssertTrue(now.contains(mine.token), now)
        let _: Void = driver.run { done in
            mine.release()
            done(())
        }
    }

    /// A takeover that finds its orphaned lease gone names the lease there now (nil: none), as `SET NX GET` does, so
    /// that the waiter asks that holder to let go only if it is not newer: with no name it asked whoever held it,
    /// and an older request interrupted a newer PATCH that took the lock in between.
    func testTakeOverOfALeaseNoLongerOrphanedNamesTheHolder() throws {
        let port = port(of: "moved")
        let key = RedisArgument(keys.lock("moved"))
        let client = client!
        func takeOver() throws -> RESPValue {
            let reply: Result<RESPValue, RedisError> = driver.run { done in
                client.evaluate(
                    RedisScripts.takeOverLock, keys: [key], arguments: ["1.mine.lost", "2.mine.new", "60000"],
                    on: self.driver.loop, done)
            }
            return try reply.get()
        }
        XCTAssertEqual(RedisServerProcess.command("SET locks:{moved}:lock 9.other.newer\r\n", port: port), "+OK\r\n")
        XCTAssertEqual(try takeOver().string, "9.other.newer", "taken by another request meanwhile")
        XCTAssertEqual(RedisServerProcess.command("DEL locks:{moved}:lock\r\n", port: port), ":1\r\n")
        XCTAssertEqual(try takeOver(), .null, "released meanwhile")
        XCTAssertEqual(RedisServerProcess.command("SET locks:{moved}:lock 1.mine.lost\r\n", port: port), "+OK\r\n")
        XCTAssertEqual(try takeOver().integer, 1, "still orphaned: taken over")
        XCTAssertEqual(
            RedisServerProcess.command("GET locks:{moved}:lock\r\n", port: port), "$10\r\n2.mine.new\r\n")
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

    /// Newest request wins, and only that way round: a request that has waited since before the current holder
    /// took the lock (its client may have given up on it long ago) does not make that newer holder let go, which
    /// would answer the newer, live PATCH 400.
    func testAnOlderWaiterDoesNotInterruptANewerHolder() throws {
        let instanceA = makeLocker()
        let instanceB = makeLocker()
        let executor = driver.executor
        let events = Events()
        // A lease nobody will release: the older request waits on it (re-trying about once a second).
        let aged = port(of: "aged")
        let set = RedisServerProcess.command("SET locks:{aged}:lock stale PX 60000\r\n", port: aged)
        XCTAssertTrue(set?.hasPrefix("+OK") == true)
        let _: Void = driver.run { done in
            instanceA.lock(id: "aged", executor: executor, timeoutMilliseconds: 2500, onReleaseRequested: {}) {
                events.add($0.isSuccess ? "older holds" : "older gave up")
            }
            done(())
        }
        Thread.sleep(forTimeInterval: 0.2)
        // The lease goes without a release message (it lapsed); a newer request takes the upload at once.
        XCTAssertTrue(RedisServerProcess.command("DEL locks:{aged}:lock\r\n", port: aged)?.hasPrefix(":1") == true)
        let newer: (any UploadLock)? = driver.run { done in
            instanceB.lock(id: "aged", executor: executor, timeoutMilliseconds: 1000, onReleaseRequested: {
                events.add("newer asked to let go")
            }) { done(try? $0.get()) }
        }
        XCTAssertNotNil(newer)
        Thread.sleep(forTimeInterval: 2.6)  // the older one re-tried, found the newer holder, and timed out
        XCTAssertEqual(events.all, ["older gave up"])
        let _: Void = driver.run { done in
            newer?.release()
            done(())
        }
    }

    /// A release request names its requester's start, and only a holder that began earlier lets go. Pub/sub may
    /// deliver a waiter's request after that waiter got the lock (the lease it asked about went meanwhile): it
    /// must not interrupt itself (seen in test_redis_cluster: a client's next PATCH on another instance answered
    /// 400 ERR_UPLOAD_INTERRUPTED). A request without a start (an instance of an earlier release) still asks.
    func testAReleaseRequestHeardByItsOwnRequesterDoesNotInterruptIt() throws {
        let locker = makeLocker()
        let executor = driver.executor
        let events = Events()
        let lock: (any UploadLock)? = driver.run { done in
            locker.lock(id: "late", executor: executor, timeoutMilliseconds: 1000, onReleaseRequested: {
                events.add("asked")
            }) { done(try? $0.get()) }
        }
        XCTAssertNotNil(lock)
        let reply = RedisServerProcess.command("GET locks:{late}:lock\r\n", port: port(of: "late")) ?? ""
        let token = reply.split(separator: "\r\n").dropFirst().first.map(String.init) ?? ""
        let start = try XCTUnwrap(RedisLocker.startedAt(ofToken: token), reply)
        let channel = keys.releaseRequestChannel(shard: keys.shard(of: "late"))
        // Sharded pub/sub on a cluster, at the master of the channel's own slot.
        let verb = self is RedisClusterLockerTests ? "SPUBLISH" : "PUBLISH"
        func publish(_ message: String) {
            let sent = RedisServerProcess.command(
                "\(verb) \(channel) \"\(message)\"\r\n", port: port(of: channel))
            XCTAssertTrue(sent?.hasPrefix(":") == true, sent ?? "no reply")
        }
        publish("late \(start)")
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(events.all, [], "its own request (same start) interrupted the holder")
        publish("late \(start + 1)")
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(events.all, ["asked"], "a newer request must be heard")
        publish("late")
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(events.all, ["asked", "asked"], "a request without a start asks every holder")
        let _: Void = driver.run { done in
            lock?.release()
            done(())
        }
    }

    // MARK: releases during a failover

    /// Takes `id`'s lock with `locker`, then makes the server a replica of nothing (port 1): it keeps its data and
    /// answers every write `READONLY`, as a demoted master does in a failover.
    func holdThenDemote(_ id: String, locker: RedisLocker) -> (any UploadLock)? {
        let executor = driver.executor
        let lock: (any UploadLock)? = driver.run { done in
            locker.lock(id: id, executor: executor, timeoutMilliseconds: 1000, onReleaseRequested: {}) {
                done(try? $0.get())
            }
        }
        XCTAssertNotNil(lock)
        let demoted = RedisServerProcess.command("REPLICAOF 127.0.0.1 1\r\n", port: redis.port)
        XCTAssertTrue(demoted?.hasPrefix("+OK") == true)
        return lock
    }

    func leaseExists(_ id: String) -> Bool {
        RedisServerProcess.command("EXISTS locks:{\(id)}:lock\r\n", port: port(of: id))?.hasPrefix(":1") == true
    }

    /// Scripts the server was asked to run, refused ones included.
    func scriptCalls() -> Int {
        let info = RedisServerProcess.command("INFO commandstats\r\n", port: redis.port) ?? ""
        var total = 0
        let scripts = info.split(whereSeparator: \.isNewline).filter {
            $0.hasPrefix("cmdstat_evalsha:") || $0.hasPrefix("cmdstat_eval:")
        }
        for line in scripts {
            for field in line.split(separator: ":")[1].split(separator: ",") {
                let pair = field.split(separator: "=")
                if ["calls", "rejected_calls"].contains(pair[0]) { total += Int(pair[1]) ?? 0 }
            }
        }
        return total
    }

    /// A release refused while the master is being replaced is sent again once there is a master, instead of
    /// leaving the (replicated) lease to make the client's next request wait for it and get 423.
    func testAReleaseRefusedDuringAFailoverIsRetried() throws {
        try XCTSkipIf(redis == nil, "REPLICAOF: the single-server case")
        let locker = makeLocker(lease: 20_000)
        let lock = holdThenDemote("ro", locker: locker)
        let _: Void = driver.run { done in
            lock?.release()
            done(())
        }
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertTrue(leaseExists("ro"), "the demoted server refused the release")
        XCTAssertTrue(RedisServerProcess.command("REPLICAOF NO ONE\r\n", port: redis.port)?.hasPrefix("+OK") == true)
        let promoted = Date()
        while leaseExists("ro"), Date().timeIntervalSince(promoted) < 3 { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertFalse(leaseExists("ro"), "released by a retry, long before the 20 s lease")
        XCTAssertLessThan(Date().timeIntervalSince(promoted), 1.5, "within about one retry interval")
    }

    /// Retries end when the lease would have lapsed anyway: nothing is sent for a lock that no longer exists.
    func testReleaseRetriesStopWhenTheLeaseWouldHaveLapsed() throws {
        try XCTSkipIf(redis == nil, "REPLICAOF: the single-server case")
        let locker = makeLocker(lease: 1000)
        let lock = holdThenDemote("lapsing", locker: locker)
        let before = scriptCalls()
        let _: Void = driver.run { done in
            lock?.release()
            done(())
        }
        Thread.sleep(forTimeInterval: 1.5)
        let retried = scriptCalls()
        XCTAssertGreaterThanOrEqual(retried - before, 3, "sent again (the first try is EVALSHA, NOSCRIPT, then EVAL)")
        Thread.sleep(forTimeInterval: 1.2)
        XCTAssertEqual(scriptCalls(), retried, "no retry after the lease's end")
    }

    /// A retry waiting on its timer when the client shuts the loop's Redis work down is cancelled with it, so the
    /// loop can end at once (a live timer would hold it open, uncounted by the teardown's leftover check).
    func testShutdownCancelsAWaitingReleaseRetry() throws {
        try XCTSkipIf(redis == nil, "REPLICAOF: the single-server case")
        let own = RedisClient(configuration: RedisConfiguration(host: "127.0.0.1", port: redis.port))
        let locker = RedisLocker(client: own, keys: keys, leaseMilliseconds: 30_000)
        let lock = holdThenDemote("closing", locker: locker)
        let _: Void = driver.run { done in
            lock?.release()
            done(())
        }
        Thread.sleep(forTimeInterval: 0.2)  // refused, and waiting to try again (50, 100, 200 ms...)
        let _: Void = driver.run { done in own.shutdown(on: self.driver.loop) { done(()) } }
        let loop = driver.loop
        let open: Int = driver.run { done in
            let reply = UncheckedBox(done)
            loop.execute { reply.value(loop.liveHandleCount) }  // next turn: closed handles are gone by then
        }
        XCTAssertEqual(open, 0, "the retry timer was closed with the connections")
    }
}

/// What happened, in order, from any loop.
final class Events: Sendable {
    private let list = Mutex<[String]>([])
    func add(_ event: String) { list.withLock { $0.append(event) } }
    var all: [String] { list.withLock { $0 } }
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
    override func testAnOlderWaiterDoesNotInterruptANewerHolder() throws {
        try super.testAnOlderWaiterDoesNotInterruptANewerHolder()
    }

    override func port(of id: String) -> Int {
        cluster?.owner(ofSlot: ClusterSlots.slot(of: id))?.port ?? 0
    }
}
