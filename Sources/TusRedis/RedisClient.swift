public import TusLoop
import TusCore
import TusCrypto
import Synchronization

/// TusRedis: a RESP2 Redis client on TusLoop's event loops, for state and locks shared by a cluster of
/// tus-server instances.
///
/// Why our own client rather than hiredis (0.14 is what Debian ships): its async API has no per-command
/// timeout (a paused Redis would hang requests forever), resolves names with a blocking getaddrinfo on the loop
/// thread, and leaves reconnecting to every caller. Here one policy covers all of that (docs/ARCHITECTURE.md,
/// "Outbound connections and Redis").
///
/// Threading: one `RedisClient` per process, shared by every loop (`Sendable`). Each loop gets its own pipelined
/// connection, opened on the first command sent from that loop, and (on the first `subscribe`) one subscriber
/// connection. Every method must be called on the thread of the loop it names, and its completion runs on that
/// thread: at once (before the method returns) when the command cannot be sent (`.unavailable`, `.shutDown`),
/// later otherwise. Nothing of a connection is touched from another thread; the only shared state is the map
/// from loop to connections (a `LoopLocal`: a loop finds its own without a lock) and the outage counter behind
/// the log.
///
/// Lifetime: a loop's connections keep reconnecting until `shutdown(on:)` ran for that loop (dropping the last
/// reference to the client does not stop them); call it on every loop that used the client before the loop ends.
///
/// ```swift
/// let redis = RedisClient(configuration: try RedisConfiguration(url: "redis://:secret@10.0.0.5:6379/2"),
///                         log: { logger.warning("\($0)") })
/// // on a loop thread:
/// redis.send(["SET", "tus{\(id)}:offset", RedisArgument(offset)], on: loop) { result in ... }
/// redis.evaluate(acquireLock, keys: ["tus{\(id)}:lock"], arguments: [RedisArgument(owner)], on: loop) { ... }
/// redis.subscribe(channels: ["tus:released"], on: loop, handler: { channel, message in ... }) { subscribed in ... }
/// redis.shutdown(on: loop) { /* this loop's sockets and timers are closed */ }
/// ```
///
/// Redis Sentinel (`configuration.sentinel`): every connection asks the sentinels for the master when it
/// (re)connects and checks `ROLE`; the first loop that uses the client also subscribes to `+switch-master` on one
/// sentinel, and when the master changes every loop's connections are replaced at once, without waiting for them
/// to fail. Replication stays asynchronous: `waitForReplicas` is how a caller learns that its writes reached the
/// replicas one of which a failover would promote.
///
/// Redis Cluster (`configuration.cluster`): each loop keeps the slot map and one connection per master
/// (`ClusterRouter`); a command goes to the master of its first key's slot, following `MOVED` and `ASK`, so
/// the keys of one command or script must share a slot (a hash tag). Subscriptions are sharded
/// (`SSUBSCRIBE`, one subscriber connection per master that serves a channel); `publish` uses `SPUBLISH`.
/// `WAIT` counts one node's replicas for one socket only, so writes are confirmed per script there
/// (`evaluate(_:keys:arguments:on:confirmedBy:_:)`), at the master that ran it.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    private let outageLog: OutageLog
    private let log: @Sendable (String) -> Void
    private let connectionsByLoop = LoopLocal<LoopConnections>()
    /// Whether a loop has made its connections yet: the first one also starts the Sentinel watch, once per client.
    private let hasFirstLoop = Atomic(false)
    /// Made once for every connection (`rediss://`); a failure is kept and reported by each connection attempt.
    private let tls: Result<TLSContext, TLSError>?

    /// `log` receives one line when Redis becomes unreachable and one when it is back (for the whole process,
    /// not per command or per loop), and one per master switch announced by the sentinels; it is called on loop
    /// threads.
    public init(configuration: RedisConfiguration, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.configuration = configuration
        self.log = log
        outageLog = OutageLog(endpoint: configuration.endpointDescription, log: log)
        tls = configuration.tls.map { options in
            do {
                return .success(try options.makeContext())
            } catch {
                return .failure(error as? TLSError ?? TLSError("\(error)"))
            }
        }
    }

    /// Sends one command on `loop`'s connection. `completion` gets the reply, or `.server(text)` for an error
    /// reply, or why there is none (`RedisError`). Commands sent from one loop are executed in the order sent.
    /// Every command must be answered within `commandTimeoutMilliseconds`, so blocking commands (`BLPOP`, `WAIT`)
    /// must ask for less than that; a reply that takes longer costs the connection.
    public func send(
        _ arguments: [RedisArgument], on loop: EventLoop,
        _ completion: @escaping (Result<RESPValue, RedisError>) -> Void
    ) {
        connections(of: loop).send(arguments, completion)
    }

    /// `PUBLISH`, or on Redis Cluster `SPUBLISH` (to the master of the channel's slot): subscribers of
    /// `subscribe` hear it either way. `completion` gets the number of subscribers it reached (on that node).
    public func publish(
        _ channel: String, _ message: RedisArgument, on loop: EventLoop,
        _ completion: @escaping (Result<RESPValue, RedisError>) -> Void = { _ in }
    ) {
        let command: RedisArgument = configuration.cluster == nil ? "PUBLISH" : "SPUBLISH"
        connections(of: loop).send([command, RedisArgument(channel), message], completion)
    }

    /// Runs `script` by its SHA1 (`EVALSHA`); if Redis does not know it yet (`NOSCRIPT`), sends the source with
    /// `EVAL`, which also caches it. Keys and arguments are passed as `KEYS[i]` and `ARGV[i]`.
    public func evaluate(
        _ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument], on loop: EventLoop,
        _ completion: @escaping (Result<RESPValue, RedisError>) -> Void
    ) {
        let connections = connections(of: loop)
        let parameters = [RedisArgument(keys.count)] + keys + arguments
        connections.send(["EVALSHA", RedisArgument(script.sha1)] + parameters) { result in
            if case .failure(.server(let message)) = result, message.hasPrefix("NOSCRIPT") {
                connections.scriptResends += 1
                connections.send(["EVAL", RedisArgument(script.source)] + parameters, completion)
            } else {
                completion(result)
            }
        }
    }

    /// `evaluate`, then `WAIT count` on the socket that ran the script, once its reply is in: `confirmed` gets
    /// how many replicas have the script's writes (nil when the script failed). On Redis Cluster this is the way to
    /// confirm a write, since each master counts its own replicas for each of its sockets; the `WAIT` waits
    /// for the script's reply (one more round trip than the pipelined `waitForReplicas`) so that it goes to the
    /// master that really ran it, after any `MOVED`, `ASK` or `NOSCRIPT`. A socket replaced in between fails the
    /// confirmation with `.connectionLost`. Calls on one socket share one `WAIT` at a time.
    public func evaluate(
        _ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument], on loop: EventLoop,
        confirmedBy replicas: Int,
        _ completion: @escaping (Result<RESPValue, RedisError>, _ confirmed: Result<Int, RedisError>?) -> Void
    ) {
        let connections = connections(of: loop)
        guard let router = connections.router else {
            return evaluate(script, keys: keys, arguments: arguments, on: loop) { [self] result in
                guard case .success = result else { return completion(result, nil) }
                waitForReplicas(replicas, on: loop) { completion(result, $0) }
            }
        }
        let parameters = [RedisArgument(keys.count)] + keys + arguments
        let confirm: (Result<RESPValue, RedisError>, ClusterRouter.Receipt?) -> Void = { result, receipt in
            guard case .success = result, let receipt else { return completion(result, nil) }
            router.waitForReplicas(replicas, after: receipt) { completion(result, $0) }
        }
        router.sendForReceipt(["EVALSHA", RedisArgument(script.sha1)] + parameters) { result, receipt in
            if case .failure(.server(let message)) = result, message.hasPrefix("NOSCRIPT") {
                router.sendForReceipt(["EVAL", RedisArgument(script.source)] + parameters, confirm)
            } else {
                confirm(result, receipt)
            }
        }
    }

    /// How many scripts `loop` has sent again as `EVAL` after a `NOSCRIPT` (a server whose script cache is empty:
    /// restarted, or a replica just promoted). Such a resend leaves after any `WAIT` pipelined behind the
    /// `EVALSHA`, so that `WAIT` does not cover it: a caller that compares this count before and after its change
    /// knows it must wait once more.
    public func scriptResendCount(on loop: EventLoop) -> Int {
        connections(of: loop).scriptResends
    }

    /// `WAIT count timeout` on `loop`'s connection: the number of replicas that acknowledged every write sent from
    /// `loop` before this call (Redis counts per connection, and a loop's commands share one). At most one `WAIT`
    /// per loop is outstanding: calls made meanwhile share the next one, so a stalled replica costs each caller
    /// one `replicaTimeoutMilliseconds`, not one per caller queued ahead of it. While a `WAIT` blocks, Redis runs
    /// nothing else from this loop's connection: that is the price of acknowledging only what a failover keeps.
    /// Not on Redis Cluster (it fails with `.server`): there, `evaluate(_:keys:arguments:on:confirmedBy:_:)`.
    public func waitForReplicas(
        _ count: Int, on loop: EventLoop, _ completion: @escaping (Result<Int, RedisError>) -> Void
    ) {
        guard configuration.cluster == nil else {
            return completion(.failure(.server("WAIT is not supported on Redis Cluster by this client")))
        }
        connections(of: loop).waitForReplicas(count, timeoutMilliseconds: configuration.replicaTimeoutMilliseconds,
                                              completion)
    }

    /// Subscribes `loop`'s subscriber connection to `channels` (adding to what it already has); `handler` gets
    /// each message published on them, on `loop`'s thread. The subscription outlives reconnects (channels are
    /// subscribed again, messages published while disconnected are lost: Redis pub/sub does not store them).
    ///
    /// `completion`, if given, runs once Redis confirmed every channel of this call: only from then on is a
    /// message published anywhere guaranteed to arrive, so a waiter subscribes first and checks state second.
    /// It fails (`.unavailable`, `.timedOut`, `.connectionLost`) if the connection fails first; the channels stay
    /// registered and are subscribed again on the next connection, but messages published in between are lost,
    /// so a waiter also re-checks on a timer of its own.
    public func subscribe(
        channels: [String], on loop: EventLoop, handler: @escaping (_ channel: String, _ message: [UInt8]) -> Void,
        completion: ((Result<Void, RedisError>) -> Void)? = nil
    ) {
        let connections = connections(of: loop)
        if let router = connections.router {
            router.subscribe(channels, handler: handler, completion: completion)
        } else {
            connections.subscriber.subscribe(channels, handler: handler, completion: completion)
        }
    }

    /// Closes `loop`'s connections and timers, failing what waits with `.shutDown`; later calls for `loop` fail
    /// with `.shutDown`. `completion` runs on `loop` once the sockets are closed; the loop can then end.
    public func shutdown(on loop: EventLoop, _ completion: @escaping () -> Void) {
        let connections = connections(of: loop)
        connections.isShutDown = true
        let actions = connections.shutdownActions
        connections.shutdownActions = []
        for action in actions { action() }
        let opened = [connections.subscriberIfOpened, connections.sentinelWatch].compactMap { $0 }
        var remaining = 1 + opened.count + (connections.router == nil ? 0 : 1)
        let oneClosed = {
            remaining -= 1
            if remaining == 0 { completion() }
        }
        for connection in opened { connection.shutdown(oneClosed) }
        connections.router?.shutdown(oneClosed)
        connections.commands.shutdown(oneClosed)
    }

    /// Runs `action` on `loop` when `shutdown(on:)` runs for it (at once if it already has), so that timers a user
    /// of the client keeps on that loop for its Redis work (the locker's release retries) end with its sockets
    /// instead of holding the loop open after them.
    public func atShutdown(of loop: EventLoop, _ action: @escaping () -> Void) {
        let connections = connections(of: loop)
        if connections.isShutDown { return action() }
        connections.shutdownActions.append(action)
    }

    private func connections(of loop: EventLoop) -> LoopConnections {
        precondition(loop.inLoop, "RedisClient: called off the thread of the loop it names")
        return connectionsByLoop.value(on: loop) {
            let made = LoopConnections(loop: loop, configuration: configuration, tls: tls, outageLog: outageLog)
            let isFirst = !hasFirstLoop.exchange(true, ordering: .acquiringAndReleasing)
            if isFirst, let sentinel = configuration.sentinel { watchSentinels(sentinel, from: made) }
            return made
        }
    }

    /// Subscribes to `+switch-master` on one sentinel (the next one whenever that connection fails) from the
    /// first loop's connections. Sentinels publish the switch once the promotion is decided; every loop then
    /// replaces its connections at once instead of waiting for them to fail, which a demoted but living master
    /// would never make them do for reads.
    private func watchSentinels(_ sentinel: RedisSentinelConfiguration, from first: LoopConnections) {
        let watch = RedisConnection(
            loop: first.loop, role: .subscriber,
            configuration: configuration.fixed(at: sentinel.sentinels[0], isSentinel: true), tls: tls,
            outageLog: OutageLog(endpoint: "sentinels", log: { _ in }), target: .anySentinel(sentinel.sentinels))
        first.sentinelWatch = watch
        watch.subscribe(["+switch-master"], handler: { [connectionsByLoop, log] _, message in
            guard let master = SentinelQuery.switchedMaster(message, masterName: sentinel.masterName) else { return }
            log("redis sentinels switched master \(sentinel.masterName) to \(master); reconnecting")
            for connections in connectionsByLoop.values {
                connections.loop.execute { connections.followMaster(to: master) }
            }
        }, completion: nil)
    }
}

/// The connections of one loop; touched only on that loop's thread (the map hands it out there only), which is
/// why it may sit in the shared map. It keeps its loop alive, so its entry in the map never lapses.
private final class LoopConnections: @unchecked Sendable {
    /// The one connection of a single Redis or Sentinel set-up (never opened on Redis Cluster).
    let commands: RedisConnection
    /// Redis Cluster only.
    let router: ClusterRouter?
    let loop: EventLoop
    private let configuration: RedisConfiguration
    private let tls: Result<TLSContext, TLSError>?
    private let outageLog: OutageLog
    private(set) var subscriberIfOpened: RedisConnection?
    /// The `+switch-master` subscription, on the first loop only.
    var sentinelWatch: RedisConnection?
    var isShutDown = false
    /// `RedisClient.atShutdown(of:_:)`.
    var shutdownActions: [() -> Void] = []
    /// `RedisClient.scriptResendCount(on:)`.
    var scriptResends = 0

    init(loop: EventLoop, configuration: RedisConfiguration, tls: Result<TLSContext, TLSError>?, outageLog: OutageLog) {
        self.loop = loop
        self.configuration = configuration
        self.tls = tls
        self.outageLog = outageLog
        commands = RedisConnection(
            loop: loop, role: .commands, configuration: configuration, tls: tls, outageLog: outageLog)
        router = configuration.cluster.map {
            ClusterRouter(loop: loop, seeds: $0, configuration: configuration, tls: tls, outageLog: outageLog)
        }
    }

    func send(_ arguments: [RedisArgument], _ completion: @escaping (Result<RESPValue, RedisError>) -> Void) {
        if let router {
            router.send(arguments, completion)
        } else {
            commands.send(arguments, completion)
        }
    }

    var subscriber: RedisConnection {
        if let subscriberIfOpened { return subscriberIfOpened }
        let created = RedisConnection(
            loop: loop, role: .subscriber, configuration: configuration, tls: tls, outageLog: outageLog)
        if isShutDown { created.shutdown {} }
        subscriberIfOpened = created
        return created
    }

    func followMaster(to master: RedisEndpoint) {
        commands.followMaster(to: master)
        subscriberIfOpened?.followMaster(to: master)
    }

    func waitForReplicas(
        _ count: Int, timeoutMilliseconds: UInt64, _ completion: @escaping (Result<Int, RedisError>) -> Void
    ) {
        commands.waitForReplicas(count, timeoutMilliseconds: timeoutMilliseconds, completion)
    }
}
