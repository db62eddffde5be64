public import TusCore
import TusCrypto
import TusLoop
public import TusProtocol
public import TusRedis
import Glibc
import Synchronization

/// Upload locks shared by every instance of a cluster: a lease in Redis (`SET lock token NX PX lease`), renewed
/// by its holder while it works, so a holder that dies (kill -9, a lost machine) frees the upload within one
/// lease without anybody's help.
///
/// Release requests cross instances by pub/sub: a request that finds the upload locked publishes the id and its own
/// start on the release-request channel; the instance holding it calls `onReleaseRequested` of a holder that began
/// earlier (the PATCH stops,
/// keeps its bytes, answers 400 and releases); the release script deletes the lease and publishes the id on
/// the released channel, where waiters on every instance hear it and try again at once. A waiter also tries
/// again when the lease it saw would lapse (at most a second later), which covers a dead holder and a message
/// lost while Redis was briefly unreachable. A waiter gives up after the caller's timeout (423).
///
/// Like `MemoryLocker`, the newest request wins, and only that way round: a lease's token starts with the time its
/// request began waiting (wall-clock microseconds, so comparable across instances up to their clock skew), `SET NX GET` tells a
/// waiter that failed whose lease is in the way, and the waiter asks that holder to let go only if it began
/// earlier. An older waiter (one whose client may have given up on it long ago) would otherwise interrupt a newer,
/// live PATCH with 400 when it re-tries after the lease it waited for went.
///
/// An acquire whose reply is lost (the connection dropped after Redis ran the `SET`) leaves a lease nobody holds.
/// Tokens name the instance that made them (`instanceID`), so the next acquire here that meets such a lease (ours,
/// neither held nor in flight) takes it over at once (`takeOverLock`) instead of waiting a lease for it; and the
/// lost acquire's token is released like a holder's (below), which frees it for every other instance too, once
/// Redis answers again.
///
/// A release that fails (Redis unreachable, a demoted master answering `READONLY`, `CLUSTERDOWN` mid-failover)
/// is sent again with `releaseBackoff` until it goes through or the lease would have lapsed anyway: the lease was
/// replicated, so left alone it would make the client's next request wait for it and get 423.
///
/// Threading: the lock table is shared by every loop behind one `Mutex`; callbacks run on their own loop
/// through `LoopExecutor.execute`. Subscriptions live on one loop (`start(on:)`).
public final class RedisLocker: UploadLocker {
    public let client: RedisClient
    public let keys: RedisKeys
    public let leaseMilliseconds: UInt64

    /// Closures that may only run on their executor's loop.
    private struct LoopBound<T>: @unchecked Sendable {
        let executor: any LoopExecutor
        let value: T
    }

    private final class Waiter: @unchecked Sendable {
        let id: String
        /// When the request began waiting (`startClock`); newer requests win.
        let startedAt = RedisLocker.startClock()
        let executor: any LoopExecutor
        let onReleaseRequested: () -> Void
        let completion: (Result<any UploadLock, UploadLockError>) -> Void
        /// Loop-only state of the waiter.
        var isFinished = false
        var isAttempting = false
        var timeout: (any Cancellable)?
        var retry: (any Cancellable)?

        init(
            id: String, executor: any LoopExecutor, onReleaseRequested: @escaping () -> Void,
            completion: @escaping (Result<any UploadLock, UploadLockError>) -> Void
        ) {
            self.id = id
            self.executor = executor
            self.onReleaseRequested = onReleaseRequested
            self.completion = completion
        }
    }

    private struct State {
        /// Locks held by this instance: id → token → how to ask the holder to let go.
        var holders: [String: [String: LoopBound<() -> Void>]] = [:]
        var waiters: [String: [Waiter]] = [:]
        /// Tokens whose `SET` (or takeover) was sent and whose reply is not handled yet: not orphans.
        var acquiring: Set<String> = []
        var isSubscribed = false
    }

    private let state = Mutex(State())

    /// The release retries waiting on one loop; touched on that loop only. `RedisClient.shutdown(on:)` cancels
    /// them (through `atShutdown`), so a retry never holds a stopping loop open.
    private final class PendingReleases: @unchecked Sendable {
        var timers: [Int: any Cancellable] = [:]
        var nextKey = 0
        var isShutDown = false

        func shutDown() {
            isShutDown = true
            for timer in timers.values { timer.cancel() }
            timers = [:]
        }
    }

    private let pendingReleases = LoopLocal<PendingReleases>()

    /// Short first waits (a connection being replaced is back within milliseconds), then about once a second
    /// through a failover; jittered so that the releases of many uploads hit by one outage do not come back
    /// in lockstep.
    public static let releaseBackoff = Backoff(initialMilliseconds: 50, maximumMilliseconds: 1000, jitter: true)

    /// Random per locker (one per instance): the second part of every token it makes (`ownsOrphan`).
    let instanceID = SecureRandom.uploadID()

    public init(client: RedisClient, keys: RedisKeys = RedisKeys(), leaseMilliseconds: UInt64 = 10_000) {
        self.client = client
        self.keys = keys
        self.leaseMilliseconds = leaseMilliseconds
    }

    /// Subscribes this instance to the release channels, on `executor`'s loop. Call once at start, before
    /// serving: a holder hears release requests only from then on. `completion` reports the confirmation
    /// (Redis may be down at start; the subscription is then made when it comes back).
    public func start(on executor: any LoopExecutor, completion: @escaping (Result<Void, RedisError>) -> Void = { _ in }) {
        let alreadySubscribed = state.withLock { state -> Bool in
            defer { state.isSubscribed = true }
            return state.isSubscribed
        }
        guard !alreadySubscribed else { return completion(.success(())) }
        let requests = Set((0..<keys.shardCount).map(keys.releaseRequestChannel(shard:)))
        let channels = (0..<keys.shardCount).flatMap {
            [keys.releaseRequestChannel(shard: $0), keys.releasedChannel(shard: $0)]
        }
        client.subscribe(channels: channels, on: executor.eventLoop, handler: { [weak self] channel, message in
            let text = String(decoding: message, as: UTF8.self)
            guard requests.contains(channel) else {
                self?.heard(channel: channel, id: text, isRequest: false)
                return
            }
            // "<id> <requester's start>"; a bare id (an instance of an earlier release) asks every holder.
            let parts = text.split(separator: " ", maxSplits: 1)
            self?.heard(
                channel: channel, id: parts.first.map(String.init) ?? text, isRequest: true,
                requesterStartedAt: parts.count == 2 ? UInt64(parts[1]) : nil)
        }, completion: completion)
    }

    public func lock(
        id: String, executor: any LoopExecutor, timeoutMilliseconds: UInt64,
        onReleaseRequested: @escaping () -> Void,
        completion: @escaping (Result<any UploadLock, UploadLockError>) -> Void
    ) {
        let waiter = Waiter(id: id, executor: executor, onReleaseRequested: onReleaseRequested, completion: completion)
        state.withLock { $0.waiters[id, default: []].append(waiter) }
        waiter.timeout = executor.schedule(afterMilliseconds: timeoutMilliseconds) { [weak self] in
            self?.finish(waiter, .failure(.timedOut))
        }
        attempt(waiter, askHolder: true)
    }

    public func tryLock(
        id: String, executor: any LoopExecutor, onReleaseRequested: @escaping () -> Void,
        completion: @escaping (Result<(any UploadLock)?, UploadLockError>) -> Void
    ) {
        acquire(
            id: id, startedAt: Self.startClock(), executor: executor, onReleaseRequested: onReleaseRequested
        ) { result, _ in
            completion(result.map { acquired in acquired.map { $0 } })
        }
    }

    // MARK: acquiring

    /// `SET NX GET PX`: the lease, or nil and the token of the lease in the way (nil if that is not known).
    private func acquire(
        id: String, startedAt: UInt64, executor: any LoopExecutor, onReleaseRequested: @escaping () -> Void,
        completion: @escaping (Result<Handle?, UploadLockError>, _ holder: String?) -> Void
    ) {
        let token = "\(startedAt).\(instanceID).\(SecureRandom.uploadID())"
        var sentAt = executor.eventLoop.nowMilliseconds
        let command: [RedisArgument] = [
            "SET", RedisArgument(keys.lock(id)), RedisArgument(token), "NX", "GET", "PX",
            RedisArgument(String(leaseMilliseconds)),
        ]
        state.withLock { _ = $0.acquiring.insert(token) }
        /// The reply to the `SET`, or (`orphan` set) to the takeover of that orphaned lease.
        func acquired(_ reply: Result<RESPValue, RedisError>, orphan: String?) {
            switch reply {
            case .failure(let error):
                state.withLock { _ = $0.acquiring.remove(token) }
                // Redis may have run the `SET` before the reply was lost: release it as soon as Redis answers.
                releaseLease(id: id, token: token, on: executor, mayLiveUntil: sentAt + leaseMilliseconds)
                completion(.failure(.unavailable(error.description)), nil)
            case .success(let value) where orphan == nil && value != .null:
                guard let holder = value.string, ownsOrphan(holder, of: id) else {
                    state.withLock { _ = $0.acquiring.remove(token) }
                    return completion(.success(nil), value.string)
                }
                // Our own lease that nobody here holds: an earlier acquire whose reply was lost. Ours to take.
                sentAt = executor.eventLoop.nowMilliseconds
                takeOver(id: id, orphan: holder, token: token, on: executor) { reply in
                    acquired(reply, orphan: holder)
                }
            case .success(let value) where orphan != nil && value.integer != 1:
                // The orphan went meanwhile: the lease there now, if any, is the one in the way (a newer request's
                // must not be asked to let go by this older one).
                state.withLock { _ = $0.acquiring.remove(token) }
                completion(.success(nil), value.string)
            case .success:
                let handle = Handle(locker: self, id: id, token: token, executor: executor, leaseSentAt: sentAt)
                state.withLock { state in
                    state.acquiring.remove(token)
                    state.holders[id, default: [:]][token] = LoopBound(executor: executor, value: onReleaseRequested)
                }
                handle.scheduleRenewal()
                completion(.success(handle), nil)
            }
        }
        client.send(command, on: executor.eventLoop) { reply in acquired(reply, orphan: nil) }
    }

    /// A token this locker made for `id` that no holder here has and no acquire here is waiting on.
    private func ownsOrphan(_ token: String, of id: String) -> Bool {
        let parts = token.split(separator: ".")
        guard parts.count == 3, parts[1] == instanceID else { return false }
        return state.withLock { state in state.holders[id]?[token] == nil && !state.acquiring.contains(token) }
    }

    private func takeOver(
        id: String, orphan: String, token: String, on executor: any LoopExecutor,
        completion: @escaping (Result<RESPValue, RedisError>) -> Void
    ) {
        client.evaluate(
            RedisScripts.takeOverLock, keys: [RedisArgument(keys.lock(id))],
            arguments: [RedisArgument(orphan), RedisArgument(token), RedisArgument(String(leaseMilliseconds))],
            on: executor.eventLoop, completion)
    }

    private func attempt(_ waiter: Waiter, askHolder: Bool) {
        guard !waiter.isFinished, !waiter.isAttempting else { return }
        waiter.isAttempting = true
        waiter.retry?.cancel()
        waiter.retry = nil
        acquire(
            id: waiter.id, startedAt: waiter.startedAt, executor: waiter.executor,
            onReleaseRequested: waiter.onReleaseRequested
        ) { [self] result, holder in
            waiter.isAttempting = false
            switch result {
            case .failure(let error):
                finish(waiter, .failure(error))
            case .success(let handle?):
                if waiter.isFinished {
                    handle.release()  // timed out meanwhile
                } else {
                    finish(waiter, .success(handle))
                }
            case .success(nil):
                guard !waiter.isFinished else { return }
                if askHolder, Self.startedAt(ofToken: holder).map({ $0 <= waiter.startedAt }) ?? true {
                    requestRelease(of: waiter.id, by: waiter.startedAt, on: waiter.executor)
                }
                retryWhenLeaseLapses(waiter)
            }
        }
    }

    /// Tries again when the current lease would end (at most a second from now): a dead holder never publishes.
    private func retryWhenLeaseLapses(_ waiter: Waiter) {
        client.send(["PTTL", RedisArgument(keys.lock(waiter.id))], on: waiter.executor.eventLoop) { [self] reply in
            guard !waiter.isFinished else { return }
            let remaining = (try? reply.get())?.integer ?? 100
            let delay = UInt64(max(1, min(1000, remaining)))
            waiter.retry = waiter.executor.schedule(afterMilliseconds: delay) { [weak self] in
                waiter.retry = nil
                self?.attempt(waiter, askHolder: true)
            }
        }
    }

    private func finish(_ waiter: Waiter, _ result: Result<any UploadLock, UploadLockError>) {
        guard !waiter.isFinished else { return }
        waiter.isFinished = true
        waiter.timeout?.cancel()
        waiter.retry?.cancel()
        waiter.timeout = nil
        waiter.retry = nil
        let newestWaiting = state.withLock { state -> UInt64? in
            state.waiters[waiter.id]?.removeAll { $0 === waiter }
            if state.waiters[waiter.id]?.isEmpty == true { state.waiters[waiter.id] = nil }
            return state.waiters[waiter.id]?.map(\.startedAt).max().flatMap { $0 > waiter.startedAt ? $0 : nil }
        }
        waiter.completion(result)
        // The newest request wins: a newer one still waiting here asks the new holder to let go as well.
        if case .success = result, let newestWaiting {
            requestRelease(of: waiter.id, by: newestWaiting, on: waiter.executor)
        }
    }

    /// The start written into a token by `acquire`; nil for a token of another form (older releases, tests).
    static func startedAt(ofToken token: String?) -> UInt64? {
        token?.split(separator: ".", maxSplits: 1).first.flatMap { UInt64($0) }
    }

    /// The last start handed out here: `startClock` never repeats one.
    private static let lastStart = Atomic<UInt64>(0)

    /// Wall-clock microseconds, strictly increasing within this process. Two requests of one instance never tie:
    /// in milliseconds a waiter that began in its holder's millisecond was never let in (the holder had not begun
    /// earlier), and waited the whole lease out. Across instances a tie needs the same microsecond, and is left to
    /// the lease.
    static func startClock() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let wall = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        var last = lastStart.load(ordering: .relaxed)
        while true {
            let next = max(wall, last + 1)
            let (exchanged, original) = lastStart.compareExchange(
                expected: last, desired: next, ordering: .relaxed)
            if exchanged { return next }
            last = original
        }
    }

    /// The message names the requester's start, so that only a holder that began earlier lets go: pub/sub may deliver
    /// it after the requester itself got the lock (the lease it asked about went meanwhile), and the requester must
    /// not interrupt itself, nor a holder newer than it.
    private func requestRelease(of id: String, by startedAt: UInt64, on executor: any LoopExecutor) {
        client.publish(
            keys.releaseRequestChannel(shard: keys.shard(of: id)), RedisArgument("\(id) \(startedAt)"),
            on: executor.eventLoop)
    }

    // MARK: messages

    /// On the subscription's loop. Each callback is sent to its own loop.
    private func heard(channel: String, id: String, isRequest: Bool, requesterStartedAt: UInt64? = nil) {
        if isRequest {
            let holders = state.withLock { state in
                (state.holders[id] ?? [:]).filter { token, _ in
                    // Strictly earlier: the requester's own lease carries its start. A tie needs two instances in
                    // one microsecond, and is left to the lease.
                    guard let requesterStartedAt, let holderStartedAt = Self.startedAt(ofToken: token) else {
                        return true
                    }
                    return holderStartedAt < requesterStartedAt
                }.map(\.value)
            }
            for holder in holders {
                let bound = holder
                holder.executor.execute { bound.value() }
            }
        } else {
            let waiters = state.withLock { $0.waiters[id] ?? [] }
            for waiter in waiters {
                let bound = LoopBound(executor: waiter.executor, value: waiter)
                waiter.executor.execute { [weak self] in self?.attempt(bound.value, askHolder: false) }
            }
        }
    }

    // MARK: holding

    fileprivate func forget(id: String, token: String) {
        state.withLock { state in
            state.holders[id]?[token] = nil
            if state.holders[id]?.isEmpty == true { state.holders[id] = nil }
        }
    }

    /// `mayLiveUntil`: the loop time after which the lease has lapsed whatever became of the release (the last
    /// `SET` or renewal sent, plus the lease); retrying is pointless from then on.
    fileprivate func releaseLease(id: String, token: String, on executor: any LoopExecutor, mayLiveUntil: UInt64) {
        forget(id: id, token: token)
        sendRelease(id: id, token: token, on: executor, mayLiveUntil: mayLiveUntil, failures: 0)
    }

    /// Repeating the release is safe: the script deletes the lease only while it still holds `token`.
    private func sendRelease(
        id: String, token: String, on executor: any LoopExecutor, mayLiveUntil: UInt64, failures: Int
    ) {
        let channel = keys.releasedChannel(shard: keys.shard(of: id))
        // On Redis Cluster a script may publish only to its keys' slot, which the channel is not in: the message
        // goes right behind the script instead (pipelined, no extra wait). Unconditionally: should the lease have
        // been lost meanwhile, waiters wake up for nothing and find it still taken.
        let isCluster = client.configuration.cluster != nil
        client.evaluate(
            RedisScripts.releaseLock, keys: [RedisArgument(keys.lock(id))],
            arguments: [RedisArgument(token), RedisArgument(isCluster ? "" : channel), RedisArgument(id)],
            on: executor.eventLoop
        ) { [self] reply in
            // `.shutDown` too: on Redis Cluster it also fails what waited on the connection to a master that was
            // replaced; `retryRelease` tells that from the client's shutdown of this loop.
            guard case .failure = reply else { return }
            retryRelease(id: id, token: token, on: executor, mayLiveUntil: mayLiveUntil, failures: failures + 1)
        }
        if isCluster { client.publish(channel, RedisArgument(id), on: executor.eventLoop) }
    }

    private func retryRelease(
        id: String, token: String, on executor: any LoopExecutor, mayLiveUntil: UInt64, failures: Int
    ) {
        let loop = executor.eventLoop
        let delay = Self.releaseBackoff.delay(afterFailures: failures)
        guard loop.nowMilliseconds + delay < mayLiveUntil else { return }
        let pending: PendingReleases
        if let existing = pendingReleases[loop] {
            pending = existing
        } else {
            pending = PendingReleases()
            pendingReleases.set(pending, on: loop)
            // After `shutdown(on:)` ran for this loop this calls `shutDown()` at once: no retry then.
            client.atShutdown(of: loop) { pending.shutDown() }
        }
        guard !pending.isShutDown else { return }
        let key = pending.nextKey
        pending.nextKey += 1
        pending.timers[key] = executor.schedule(afterMilliseconds: delay) { [weak self] in
            pending.timers[key] = nil
            self?.sendRelease(id: id, token: token, on: executor, mayLiveUntil: mayLiveUntil, failures: failures)
        }
    }

    /// Renews the lease; nil when it could not be confirmed.
    fileprivate func renew(
        id: String, token: String, on executor: any LoopExecutor, completion: @escaping (Bool?) -> Void
    ) {
        client.evaluate(
            RedisScripts.renewLock, keys: [RedisArgument(keys.lock(id))],
            arguments: [RedisArgument(token), RedisArgument(String(leaseMilliseconds))], on: executor.eventLoop
        ) { reply in
            switch reply {
            case .success(let value): completion(value.integer == 1)
            case .failure: completion(nil)
            }
        }
    }

    /// The lease is gone (lapsed while Redis was unreachable, and maybe taken over): the holder must stop; the
    /// state store already refuses its offset moves.
    fileprivate func leaseLost(id: String, token: String) {
        let holder = state.withLock { $0.holders[id]?[token] }
        if let holder { holder.value() }
    }

    private final class Handle: UploadLock, @unchecked Sendable {
        let locker: RedisLocker
        let id: String
        let token: String
        let executor: any LoopExecutor
        /// Loop-only.
        private var renewal: (any Cancellable)?
        /// Loop-only: when the last `SET` or renewal left (loop time). Sent is what counts: one that timed out may
        /// still have run.
        private var leaseSentAt: UInt64
        private let released = Atomic(false)
        private let leaseLost = Atomic(false)

        var isLeaseLost: Bool { leaseLost.load(ordering: .acquiring) }

        init(locker: RedisLocker, id: String, token: String, executor: any LoopExecutor, leaseSentAt: UInt64) {
            self.locker = locker
            self.id = id
            self.token = token
            self.executor = executor
            self.leaseSentAt = leaseSentAt
        }

        func scheduleRenewal() {
            renewal = executor.schedule(afterMilliseconds: max(1, locker.leaseMilliseconds / 3)) { [weak self] in
                guard let self, !self.released.load(ordering: .acquiring) else { return }
                self.leaseSentAt = self.executor.eventLoop.nowMilliseconds
                self.locker.renew(id: self.id, token: self.token, on: self.executor) { renewed in
                    guard !self.released.load(ordering: .acquiring) else { return }
                    if renewed == false {
                        self.leaseLost.store(true, ordering: .releasing)
                        return self.locker.leaseLost(id: self.id, token: self.token)
                    }
                    self.scheduleRenewal()
                }
            }
        }

        func release() {
            guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
            if executor.inLoop { finishRelease() } else { executor.execute { [self] in finishRelease() } }
        }

        private func finishRelease() {
            renewal?.cancel()
            renewal = nil
            locker.releaseLease(
                id: id, token: token, on: executor, mayLiveUntil: leaseSentAt + locker.leaseMilliseconds)
        }
    }
}
