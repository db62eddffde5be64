import TusCrypto
import TusLoop

/// Redis Cluster for one loop (`redis+cluster://`): the slot map, one pipelined connection per master (and one
/// sharded subscriber connection per master that serves a subscribed channel), and the redirects.
///
/// The map comes from `CLUSTER SLOTS`, asked of a known node or a seed, before the first command and again after a
/// `MOVED`, a `CLUSTERDOWN` or a failed connection (a failover or a reshard); one refresh at a time, the commands
/// that need the map meanwhile wait for it, and refreshes that failures ask for come at most every 100 ms. After
/// each refresh the connections to nodes that are no longer masters are closed: a master killed and replaced by its
/// replica is not reconnected to for ever (while it is still in the map, its connection retries with the
/// connection's bounded backoff, 100 ms doubling to 2 s). A `MOVED` also fixes the slot at once, so the retried
/// command does not wait for the refresh. An `ASK` (the slot is migrating and the key already moved) sends that one
/// command, behind `ASKING`, to the importing node, pipelined on its connection. `TRYAGAIN` (a script whose keys
/// are split between the two nodes until the migration has moved them all: a lock taken at the importing node while
/// the record still sits at the old one) is retried every `tryAgainDelayMilliseconds` for up to one command
/// timeout, then fails as `.unavailable` (503, the client retries). Each command follows at most `maximumRedirects`
/// redirects: a map that keeps changing fails the command rather than looping.
///
/// Loop-only, like `RedisConnection`: the client's `LoopConnections` owns one.
final class ClusterRouter {
    static let maximumRedirects = 5
    static let tryAgainDelayMilliseconds: UInt64 = 25
    static let resubscribeDelayMilliseconds: UInt64 = 50
    /// Refreshes that failures ask for come at most this often: while a master is down every command for its
    /// slots fails, and each would otherwise send a `CLUSTER SLOTS` to the surviving nodes.
    static let failureRefreshIntervalMilliseconds: UInt64 = 100

    let loop: EventLoop
    private let seeds: [RedisEndpoint]
    private let configuration: RedisConfiguration
    private let tls: Result<TLSContext, TLSError>?
    private let outageLog: OutageLog
    /// Indexed by slot; empty until the first map arrived.
    private var owners: [RedisEndpoint?] = []
    private var commandConnections: [RedisEndpoint: RedisConnection] = [:]
    private var subscriberConnections: [RedisEndpoint: RedisConnection] = [:]
    private var isRefreshing = false
    /// When the last refresh ended, and whether a paced one (`refreshSoon`) is scheduled.
    private var lastRefreshEnded: UInt64 = 0
    private var isRefreshScheduled = false
    private var refreshWaiters: [(Bool) -> Void] = []
    private var isShutDown = false
    private var retryTimers: [TusLoop.Timer] = []

    init(
        loop: EventLoop, seeds: [RedisEndpoint], configuration: RedisConfiguration,
        tls: Result<TLSContext, TLSError>?, outageLog: OutageLog
    ) {
        self.loop = loop
        self.seeds = seeds
        self.configuration = configuration
        self.tls = tls
        self.outageLog = outageLog
    }

    // MARK: commands

    func send(_ arguments: [RedisArgument], _ completion: @escaping (Result<RESPValue, RedisError>) -> Void) {
        send(arguments, redirects: 0, asking: nil, since: loop.nowMilliseconds) { result, _ in completion(result) }
    }

    /// The socket that answered a command: where a `WAIT` must go to say whether that command's writes reached
    /// replicas (Redis counts per socket, and only the master that ran the command has them).
    struct Receipt {
        let connection: RedisConnection
        let generation: Int
    }

    /// `send`, and the receipt of the socket that gave the final answer (after any redirects); nil when none did.
    func sendForReceipt(
        _ arguments: [RedisArgument], _ completion: @escaping (Result<RESPValue, RedisError>, Receipt?) -> Void
    ) {
        send(arguments, redirects: 0, asking: nil, since: loop.nowMilliseconds, completion)
    }

    /// `WAIT count` behind the writes of `receipt`, shared with other callers waiting on the same socket; fails
    /// with `.connectionLost` when that socket was replaced since (the writes' fate on replicas is then unknown).
    func waitForReplicas(
        _ count: Int, after receipt: Receipt, _ completion: @escaping (Result<Int, RedisError>) -> Void
    ) {
        receipt.connection.waitForReplicas(
            count, timeoutMilliseconds: configuration.replicaTimeoutMilliseconds, writtenIn: receipt.generation,
            completion)
    }

    private func send(
        _ arguments: [RedisArgument], redirects: Int, asking: RedisEndpoint?, since started: UInt64,
        _ completion: @escaping (Result<RESPValue, RedisError>, Receipt?) -> Void
    ) {
        guard !isShutDown else { return completion(.failure(.shutDown), nil) }
        guard !owners.isEmpty else {
            return refresh { [self] loaded in
                guard loaded else { return completion(.failure(.unavailable), nil) }
                send(arguments, redirects: redirects, asking: asking, since: started, completion)
            }
        }
        let slot = ClusterSlots.slot(ofCommand: arguments)
        guard let endpoint = asking ?? slot.map({ owners[$0] }) ?? anyMaster() else {
            // A slot no master serves: the cluster is down for it (CLUSTERDOWN), as a single Redis would be.
            refreshSoon()
            return completion(.failure(.unavailable), nil)
        }
        let connection = commandConnection(endpoint)
        if asking != nil { connection.send(["ASKING"]) { _ in } }
        connection.send(arguments) { [self] result in
            switch result {
            case .failure(.server(let message)):
                if let redirect = ClusterSlots.redirect(message) {
                    guard redirects < Self.maximumRedirects else { return completion(result, nil) }
                    if redirect.isMoved {
                        if owners.count == ClusterSlots.count { owners[redirect.slot] = redirect.endpoint }
                        refresh { _ in }
                    }
                    return send(arguments, redirects: redirects + 1,
                                asking: redirect.isMoved ? nil : redirect.endpoint, since: started, completion)
                }
                if message.hasPrefix("TRYAGAIN") {
                    guard loop.nowMilliseconds < started + configuration.commandTimeoutMilliseconds else {
                        return completion(.failure(.unavailable), nil)
                    }
                    // From the start (the slot's owner may have changed meanwhile), with a fresh redirect count: the
                    // way there is one ASK each time, and the time budget is what bounds this.
                    return after(Self.tryAgainDelayMilliseconds) { [self] in
                        send(arguments, redirects: 0, asking: nil, since: started, completion)
                    }
                }
                if message.hasPrefix("CLUSTERDOWN") {
                    // A master is down and not replaced yet (every node says so while the cluster lacks a slot).
                    refreshSoon()
                    return completion(.failure(.unavailable), nil)
                }
                completion(result, Receipt(connection: connection, generation: connection.currentGeneration))
            case .failure(.unavailable), .failure(.connectionLost), .failure(.timedOut):
                // Maybe a failover: the promoted replica is only learnt from a fresh map.
                refreshSoon()
                completion(result, nil)
            default:
                completion(result, Receipt(connection: connection, generation: connection.currentGeneration))
            }
        }
    }

    private func anyMaster() -> RedisEndpoint? {
        owners.lazy.compactMap { $0 }.first
    }

    private func after(_ milliseconds: UInt64, _ body: @escaping () -> Void) {
        let timer = TusLoop.Timer(loop: loop)
        retryTimers.append(timer)
        timer.start(afterMilliseconds: milliseconds) { [self] in
            retryTimers.removeAll { $0 === timer }
            timer.close()
            body()
        }
    }

    private func commandConnection(_ endpoint: RedisEndpoint) -> RedisConnection {
        if let existing = commandConnections[endpoint] { return existing }
        let made = RedisConnection(
            loop: loop, role: .commands, configuration: configuration.fixed(at: endpoint), tls: tls,
            outageLog: outageLog, target: .server(endpoint))
        made.onDrop = { [self] in refreshSoon() }
        commandConnections[endpoint] = made
        return made
    }

    // MARK: slot map

    /// Asks the known masters, then the seeds, for `CLUSTER SLOTS` until one answers with a map; `completion`
    /// learns whether a map is loaded now. Calls made while a refresh runs share it.
    private func refresh(_ completion: @escaping (Bool) -> Void) {
        refreshWaiters.append(completion)
        guard !isRefreshing else { return }
        isRefreshing = true
        var candidates: [RedisEndpoint] = []
        for endpoint in Set(owners.compactMap { $0 }).sorted(by: { $0.description < $1.description }) + seeds
        where !candidates.contains(endpoint) {
            candidates.append(endpoint)
        }
        func ask(_ index: Int) {
            guard !isShutDown, index < candidates.count else { return finishRefresh() }
            let endpoint = candidates[index]
            commandConnection(endpoint).send(["CLUSTER", "SLOTS"]) { [self] reply in
                if case .success(let value) = reply,
                    let map = ClusterSlots.owners(fromClusterSlots: value, answeredBy: endpoint),
                    map.contains(where: { $0 != nil })
                {
                    owners = map
                    return finishRefresh()
                }
                ask(index + 1)
            }
        }
        ask(0)
    }

    /// A refresh after a failure: now if the last one ended long enough ago, otherwise once that interval is
    /// over (one scheduled at a time, and none while one runs).
    private func refreshSoon() {
        guard !isRefreshing, !isRefreshScheduled, !isShutDown else { return }
        let due = lastRefreshEnded + Self.failureRefreshIntervalMilliseconds
        let now = loop.nowMilliseconds
        guard now < due else { return refresh { _ in } }
        isRefreshScheduled = true
        after(due - now) { [self] in
            isRefreshScheduled = false
            refresh { _ in }
        }
    }

    private func finishRefresh() {
        isRefreshing = false
        lastRefreshEnded = loop.nowMilliseconds
        let waiters = refreshWaiters
        refreshWaiters = []
        if !owners.isEmpty && !channelHandlers.isEmpty { placeChannels() }
        if !owners.isEmpty { closeConnectionsToFormerMasters() }
        for waiter in waiters { waiter(!owners.isEmpty) }
    }

    /// Shuts the connections to nodes that serve no slot in the map now (a master that died and was replaced by
    /// its replica, a seed that is a replica, a node removed from the cluster): they would otherwise keep
    /// reconnecting to a dead node for as long as the process lives. Commands still waiting on them fail with
    /// `.shutDown` (503); a later map that names the node again opens a new connection.
    private func closeConnectionsToFormerMasters() {
        let masters = Set(owners.compactMap { $0 })
        for (endpoint, connection) in commandConnections where !masters.contains(endpoint) {
            commandConnections[endpoint] = nil
            connection.onDrop = nil
            connection.shutdown {}
        }
        for (endpoint, connection) in subscriberConnections where !masters.contains(endpoint) {
            subscriberConnections[endpoint] = nil
            connection.onChannelRevoked = nil
            connection.onDrop = nil
            connection.shutdown {}
        }
    }

    // MARK: sharded pub/sub

    /// `SSUBSCRIBE`s each channel at the master of its slot. After every refresh of the map (a `MOVED`, also one
    /// answering an `SPUBLISH`, or the `sunsubscribe` a node pushes when the slot leaves it) each channel whose
    /// slot changed owner is subscribed again at the new one. `completion` runs when every channel was
    /// confirmed, or with the first failure; channels not placed for lack of a map are placed by the next refresh.
    func subscribe(
        _ channels: [String], handler: @escaping (String, [UInt8]) -> Void,
        completion: ((Result<Void, RedisError>) -> Void)?
    ) {
        guard !isShutDown else {
            completion?(.failure(.shutDown))
            return
        }
        guard !owners.isEmpty else {
            return refresh { [self] loaded in
                if loaded { return subscribe(channels, handler: handler, completion: completion) }
                // Placed by a later refresh (`placeChannels`).
                for channel in channels { channelHandlers[channel, default: []].append(handler) }
                completion?(.failure(.unavailable))
            }
        }
        for channel in channels { channelHandlers[channel, default: []].append(handler) }
        var byOwner: [RedisEndpoint: [String]] = [:]
        for channel in channels {
            guard let owner = owners[ClusterSlots.slot(of: channel)] ?? anyMaster() else { continue }
            if let previous = channelOwners[channel], previous != owner {
                subscriberConnections[previous]?.forget(channel)
            }
            channelOwners[channel] = owner
            byOwner[owner, default: []].append(channel)
        }
        var remaining = byOwner.count
        var failure: RedisError?
        for (owner, group) in byOwner {
            subscriberConnection(owner).subscribe(group, handler: handler) { result in
                if case .failure(let error) = result { failure = failure ?? error }
                remaining -= 1
                if remaining == 0 { completion?(failure.map { .failure($0) } ?? .success(())) }
            }
        }
        if byOwner.isEmpty { completion?(.success(())) }
    }

    /// Every handler of every channel subscribed through this router, and the master each channel is at.
    private var channelHandlers: [String: [(String, [UInt8]) -> Void]] = [:]
    private var channelOwners: [String: RedisEndpoint] = [:]

    /// After a refresh: subscribes each channel whose slot is now served elsewhere (or nowhere yet) at its owner.
    private func placeChannels() {
        for (channel, handlers) in channelHandlers {
            guard let owner = owners[ClusterSlots.slot(of: channel)], channelOwners[channel] != owner else {
                continue
            }
            if let previous = channelOwners[channel] { subscriberConnections[previous]?.forget(channel) }
            channelOwners[channel] = owner
            let connection = subscriberConnection(owner)
            for handler in handlers { connection.subscribe([channel], handler: handler, completion: nil) }
        }
    }

    private func subscriberConnection(_ endpoint: RedisEndpoint) -> RedisConnection {
        if let existing = subscriberConnections[endpoint] { return existing }
        let made = RedisConnection(
            loop: loop, role: .subscriber, configuration: configuration.fixed(at: endpoint), tls: tls,
            outageLog: outageLog, target: .server(endpoint), isSharded: true)
        made.onDrop = { [self] in refreshSoon() }
        made.onChannelRevoked = { [self] channel, _ in
            // The map is stale for this slot; paced, so that a map lagging behind the push cannot make this spin.
            channelOwners[channel] = nil
            after(Self.resubscribeDelayMilliseconds) { [self] in refresh { _ in } }
        }
        subscriberConnections[endpoint] = made
        return made
    }

    // MARK: lifetime

    func shutdown(_ completion: @escaping () -> Void) {
        isShutDown = true
        channelHandlers = [:]
        for connection in subscriberConnections.values { connection.onChannelRevoked = nil }  // a cycle otherwise
        for connection in Array(commandConnections.values) + Array(subscriberConnections.values) {
            connection.onDrop = nil
        }
        for timer in retryTimers { timer.close() }
        retryTimers = []
        let connections = Array(commandConnections.values) + Array(subscriberConnections.values)
        var remaining = connections.count
        guard remaining > 0 else { return completion() }
        for connection in connections {
            connection.shutdown {
                remaining -= 1
                if remaining == 0 { completion() }
            }
        }
    }
}
