import Synchronization
import TusCrypto
import TusLoop
import TusTransport

/// Counts the connections (of every loop) that currently cannot reach Redis, so that an outage is logged once
/// when the first connection notices it and once when the last one recovers, however many commands fail
/// meanwhile and however many loops there are.
final class OutageLog: Sendable {
    private let endpoint: String
    private let log: @Sendable (String) -> Void
    private let connectionsDown = Atomic<Int>(0)

    init(endpoint: String, log: @escaping @Sendable (String) -> Void) {
        self.endpoint = endpoint
        self.log = log
    }

    func connectionWentDown(reason: String) {
        if connectionsDown.wrappingAdd(1, ordering: .relaxed).oldValue == 0 {
            log("redis \(endpoint) unreachable (\(reason)); commands fail until it is back")
        }
    }

    func connectionCameBack() {
        if connectionsDown.wrappingSubtract(1, ordering: .relaxed).newValue == 0 {
            log("redis \(endpoint) reachable again")
        }
    }

    /// A connection shut down while down: it no longer counts, and nothing came back.
    func connectionLeftWhileDown() {
        connectionsDown.wrappingSubtract(1, ordering: .relaxed)
    }
}

/// One pipelined connection to Redis, owned by one loop: every method runs on that loop's thread.
///
/// Commands are written as soon as they are sent (coalesced into one write while an earlier write is in flight)
/// and their completions wait in a FIFO, since Redis answers in order. One timer serves every command's deadline:
/// deadlines grow in FIFO order, so only the oldest unanswered command can be overdue; when it is, nothing
/// behind it can be trusted either, so the whole connection is dropped and replaced.
///
/// States: idle (never used) -> connecting -> connected -> (on any failure) backing off -> connecting ...; and
/// shut down, final. While backing off, commands fail at once with `.unavailable` (a down Redis must not make
/// requests wait); while connecting they are queued, each still bound by its own deadline.
///
/// The timers' callbacks hold the connection strongly, as TusLoop's handles do with their delegates: the cycle
/// ends when `shutdown` closes them (or the loop closes them at its end). A weak capture would also work, but
/// gives the object a side table, which makes every retain and release of it take the slow path.
///
/// A subscriber connection (`role == .subscriber`) sends only SUBSCRIBE and PING: messages are routed to the
/// channel handlers, every other reply to the FIFO. Its channels are subscribed again after every reconnect.
///
/// With Redis Sentinel (`target == .master`) every connect first asks the sentinels where the master is, and the
/// setup checks `ROLE`: a server that is not (or no longer) the master is dropped like an unreachable one, as is a
/// connection whose command is refused with `READONLY`/`MASTERDOWN`/`LOADING` (a demoted or still-loading server),
/// so commands fail with `.unavailable` or `.connectionLost` (answered 503) until the promoted master answers.
final class RedisConnection: SecureStreamDelegate {
    enum Role {
        case commands, subscriber
    }

    /// Where each (re)connect goes.
    enum Target {
        /// One fixed server.
        case server(RedisEndpoint)
        /// Whichever server the sentinels name as the master, checked with `ROLE`.
        case master(RedisSentinelConfiguration)
        /// Any of these sentinels, the next one after each failure (the `+switch-master` watch).
        case anySentinel([RedisEndpoint])
    }

    private enum State {
        case idle
        case connecting
        case connected(SecureStream)
        case backingOff
        case shutDown
    }

    private struct PendingReply {
        /// `UInt64.max` for a reply nobody waits for any more (its command timed out before it could be sent).
        var deadline: UInt64
        var completion: ((Result<RESPValue, RedisError>) -> Void)?
        /// An error reply to AUTH, SELECT or SUBSCRIBE means the connection is unusable.
        var isSetup = false
        /// The setup's `ROLE`: any answer but `master` means the connection is unusable.
        var expectsMaster = false
        /// The channel a (sharded) subscription confirms: on Redis Cluster a `MOVED` for it revokes that channel
        /// here instead of failing the connection.
        var channel: String?
    }

    let loop: EventLoop
    let role: Role
    private let target: Target
    private let configuration: RedisConfiguration
    /// `rediss://`: the client context, or why it could not be made (every connection then fails with it).
    private let tls: Result<TLSContext, TLSError>?
    private let outageLog: OutageLog
    private var state = State.idle
    /// Bumped whenever the connection is dropped or replaced; callbacks of an older socket compare and bail out.
    private var generation = 0
    private var pending = ReplyQueue<PendingReply>()
    private var output: [UInt8] = []
    private var isWriting = false
    private var decoder: RESPDecoder
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
    private var deadlineTimer: TusLoop.Timer?
    private var flushTimer: TusLoop.Timer?
    private var isFlushScheduled = false
    private var reconnectTimer: TusLoop.Timer?
    private var reconnectFailures = 0
    private var isDown = false
    private var hasRepliedSinceConnect = false
    private var lastReadAt: UInt64 = 0
    /// The server of the current connection or connection attempt (nil while asking the sentinels).
    private var endpoint: RedisEndpoint?
    /// The sentinel that answered last (`.master`) or is tried next (`.anySentinel`): asked first next time.
    private var sentinelIndex = 0

    // Subscriber role only.
    private var channels: [String] = []
    private var handlers: [String: [(String, [UInt8]) -> Void]] = [:]
    private var confirmedChannels: Set<String> = []
    private var subscribeWaiters: [(channels: [String], completion: (Result<Void, RedisError>) -> Void)] = []
    /// Callers of `waitForReplicas` for the next `WAIT` (with the generation their writes went out in), and
    /// whether one is outstanding.
    private var replicaWaiters: [(count: Int, generation: Int, completion: (Result<Int, RedisError>) -> Void)] = []
    private var isWaitingForReplicas = false

    /// Redis Cluster: `SSUBSCRIBE` (sharded pub/sub, served by the master of the channel's slot) instead of
    /// `SUBSCRIBE`, whose messages every node of a cluster would have to relay.
    let isSharded: Bool
    /// A sharded channel this node no longer serves (its slot moved: Redis pushes `sunsubscribe`, or answers the
    /// subscription with `MOVED`), with its handlers, so that the cluster router subscribes it at the new owner.
    var onChannelRevoked: ((String, [(String, [UInt8]) -> Void]) -> Void)?
    /// Called whenever the connection (or a connection attempt) fails: the cluster router then refreshes its slot
    /// map, since a node that stopped answering may have been replaced by its replica.
    var onDrop: (() -> Void)?

    /// `target` defaults to what `configuration` names: its sentinels' master, or its host and port.
    init(
        loop: EventLoop, role: Role, configuration: RedisConfiguration, tls: Result<TLSContext, TLSError>?,
        outageLog: OutageLog, target: Target? = nil, isSharded: Bool = false
    ) {
        self.isSharded = isSharded
        self.loop = loop
        self.role = role
        self.target =
            target ?? configuration.sentinel.map { .master($0) }
            ?? .server(RedisEndpoint(host: configuration.host, port: configuration.port))
        self.configuration = configuration
        self.tls = tls
        self.outageLog = outageLog
        decoder = RESPDecoder(limits: configuration.decoderLimits)
    }

    deinit {
        readBuffer.deallocate()
    }

    var isShutDown: Bool {
        if case .shutDown = state { true } else { false }
    }

    // MARK: Commands

    func send(_ arguments: [RedisArgument], _ completion: @escaping (Result<RESPValue, RedisError>) -> Void) {
        if case .idle = state { connect() }
        switch state {
        case .shutDown:
            completion(.failure(.shutDown))
        case .backingOff, .idle:
            completion(.failure(.unavailable))
        case .connecting, .connected:
            enqueue(arguments, PendingReply(deadline: deadline(), completion: completion))
        }
    }

    private func deadline() -> UInt64 {
        loop.nowMilliseconds + configuration.commandTimeoutMilliseconds
    }

    private func enqueue(_ arguments: [RedisArgument], _ reply: PendingReply) {
        RESPCommandEncoder.encode(arguments, into: &output)
        pending.append(reply)
        if role == .subscriber || !(deadlineTimer?.isActive ?? false) { armDeadlineTimer() }
        scheduleFlush()
    }

    /// Writes at the start of the next loop iteration rather than now: the commands a caller sends in one go (a
    /// batch, or the next ones from inside completions) then leave in one `write`, as redis-benchmark's `-P`
    /// does. A zero-delay timer costs a heap insert per batch and adds no waiting, since libuv does not block
    /// in poll while a timer is due.
    private func scheduleFlush() {
        guard case .connected = state, !isWriting, !isFlushScheduled else { return }
        isFlushScheduled = true
        if flushTimer == nil { flushTimer = TusLoop.Timer(loop: loop) }
        flushTimer!.start(afterMilliseconds: 0) { [self] in
            isFlushScheduled = false
            flush()
        }
    }

    /// Identifies the current socket (or connection attempt): a reply received now came over the socket this
    /// names, and `waitForReplicas(_:timeoutMilliseconds:writtenIn:_:)` can later check that it is still the one.
    var currentGeneration: Int { generation }

    /// `WAIT count timeout`: how many replicas acknowledged every write sent on this socket before the call. At
    /// most one `WAIT` is outstanding: callers that come meanwhile share the next one (it covers their writes too),
    /// so a stalled replica costs each caller one `timeoutMilliseconds`, not one per caller queued ahead of it.
    ///
    /// Redis counts per socket, so a `WAIT` proves nothing about writes that went out on an earlier one: a caller
    /// whose writes went out in `writtenIn` (default: now, for writes sent just before this call) fails with
    /// `.connectionLost` if the connection was replaced before its `WAIT` could be sent.
    func waitForReplicas(
        _ count: Int, timeoutMilliseconds: UInt64, writtenIn writeGeneration: Int? = nil,
        _ completion: @escaping (Result<Int, RedisError>) -> Void
    ) {
        replicaWaiters.append((count, writeGeneration ?? generation, completion))
        if !isWaitingForReplicas { sendWait(timeoutMilliseconds: timeoutMilliseconds) }
    }

    private func sendWait(timeoutMilliseconds: UInt64) {
        var waiters: [(count: Int, generation: Int, completion: (Result<Int, RedisError>) -> Void)] = []
        var stale: [(Result<Int, RedisError>) -> Void] = []
        for waiter in replicaWaiters {
            if waiter.generation == generation { waiters.append(waiter) } else { stale.append(waiter.completion) }
        }
        replicaWaiters = []
        for completion in stale { completion(.failure(.connectionLost)) }
        guard !waiters.isEmpty else { return }
        isWaitingForReplicas = true
        let count = waiters.map(\.count).max() ?? 0
        send(["WAIT", RedisArgument(count), RedisArgument(String(timeoutMilliseconds))]) { [self] reply in
            isWaitingForReplicas = false
            let acknowledged = reply.flatMap { value -> Result<Int, RedisError> in
                guard let replicas = value.integer else { return .failure(.server("unexpected WAIT reply: \(value)")) }
                return .success(Int(replicas))
            }
            for waiter in waiters { waiter.completion(acknowledged) }
            if !replicaWaiters.isEmpty && !isWaitingForReplicas { sendWait(timeoutMilliseconds: timeoutMilliseconds) }
        }
    }

    // MARK: Subscriptions

    func subscribe(
        _ newChannels: [String], handler: @escaping (String, [UInt8]) -> Void,
        completion: ((Result<Void, RedisError>) -> Void)?
    ) {
        precondition(role == .subscriber)
        if case .shutDown = state {
            completion?(.failure(.shutDown))
            return
        }
        var unsent: [String] = []
        for channel in newChannels {
            if handlers[channel] == nil {
                channels.append(channel)
                unsent.append(channel)
            }
            handlers[channel, default: []].append(handler)
        }
        if case .idle = state { connect() }  // the setup after connecting subscribes every channel
        if case .connected = state, !unsent.isEmpty {
            let setupEntry = PendingReply(deadline: deadline(), completion: nil, isSetup: true)
            encodeSubscription(unsent, into: &output)
            for channel in unsent { pending.append(subscriptionEntry(setupEntry, channel)) }
            armDeadlineTimer()
            flush()
        }
        guard let completion else { return }
        switch state {
        case .shutDown:
            completion(.failure(.shutDown))
        case .backingOff, .idle:
            completion(.failure(.unavailable))
        case .connecting, .connected:
            if newChannels.allSatisfy(confirmedChannels.contains) {
                completion(.success(()))
            } else {
                subscribeWaiters.append((newChannels, completion))
            }
        }
    }

    /// One `SUBSCRIBE` for all; `SSUBSCRIBE` one per channel, since it refuses channels of different slots
    /// (`CROSSSLOT`). Either way Redis confirms each channel with a reply of its own.
    private func encodeSubscription(_ channels: [String], into bytes: inout [UInt8]) {
        guard isSharded else {
            return RESPCommandEncoder.encode(["SUBSCRIBE"] + channels.map(RedisArgument.string), into: &bytes)
        }
        for channel in channels { RESPCommandEncoder.encode(["SSUBSCRIBE", RedisArgument(channel)], into: &bytes) }
    }

    private func subscriptionEntry(_ entry: PendingReply, _ channel: String) -> PendingReply {
        var copy = entry
        copy.channel = channel
        return copy
    }

    /// Forgets `channel` here and hands its handlers to `onChannelRevoked`.
    private func revoke(_ channel: String) {
        guard let channelHandlers = forget(channel) else { return }
        onChannelRevoked?(channel, channelHandlers)
    }

    /// Stops delivering `channel` and subscribing it after reconnects (without a `SUNSUBSCRIBE`: the cluster
    /// router calls this once the channel's slot left this node, which then has nothing more to send on it).
    @discardableResult
    func forget(_ channel: String) -> [(String, [UInt8]) -> Void]? {
        guard let channelHandlers = handlers.removeValue(forKey: channel) else { return nil }
        channels.removeAll { $0 == channel }
        confirmedChannels.remove(channel)
        return channelHandlers
    }

    private func didConfirmSubscription(_ channel: String) {
        confirmedChannels.insert(channel)
        guard !subscribeWaiters.isEmpty else { return }
        var ready: [(Result<Void, RedisError>) -> Void] = []
        subscribeWaiters.removeAll { waiter in
            guard waiter.channels.allSatisfy(confirmedChannels.contains) else { return false }
            ready.append(waiter.completion)
            return true
        }
        for completion in ready { completion(.success(())) }
    }

    // MARK: Connection lifecycle

    private func connect() {
        generation += 1
        let connectGeneration = generation
        state = .connecting
        endpoint = nil
        switch target {
        case .server(let server):
            open(server, connectGeneration)
        case .anySentinel(let sentinels):
            sentinelIndex %= sentinels.count
            open(sentinels[sentinelIndex], connectGeneration)
        case .master(let sentinel):
            SentinelQuery.locateMaster(
                sentinel, configuration: configuration, tls: tls, on: loop, startingAt: sentinelIndex
            ) { [self] result in
                guard connectGeneration == generation, case .connecting = state else { return }
                switch result {
                case .success(let located):
                    sentinelIndex = located.sentinelIndex
                    open(located.master, connectGeneration)
                case .failure(let reason):
                    drop(reason: reason.text, failing: .unavailable)
                }
            }
        }
    }

    private func open(_ server: RedisEndpoint, _ connectGeneration: Int) {
        endpoint = server
        TCPStream.connect(
            loop: loop, host: server.host, port: server.port,
            timeoutMilliseconds: configuration.connectTimeoutMilliseconds
        ) { [self] result in
            guard connectGeneration == generation, case .connecting = state else {
                if case .success(let stream) = result { stream.close() }
                return
            }
            switch (result, tls) {
            case (.failure(let error), _):
                drop(reason: "connect: \(error)", failing: .unavailable)
            case (.success(let tcp), .failure(let error)?):
                tcp.close()
                drop(reason: "TLS: \(error)", failing: .unavailable)
            case (.success(let tcp), .success(let context)?):
                didConnect(SecureStream(tcp: tcp, tls: context, serverName: server.host))
            case (.success(let tcp), nil):
                didConnect(SecureStream(tcp: tcp, tls: nil))
            }
        }
    }

    /// Sends the connection's setup (AUTH, SELECT, SUBSCRIBE) ahead of whatever was queued while connecting;
    /// Redis runs them in order, so the queued commands need not wait for the setup's replies. Over TLS the
    /// session keeps what is written before its handshake completed and sends it right after.
    private func didConnect(_ stream: SecureStream) {
        state = .connected(stream)
        stream.tcp.setNoDelay(true)
        stream.delegate = self
        decoder.reset()
        hasRepliedSinceConnect = false
        lastReadAt = loop.nowMilliseconds
        var setup: [UInt8] = []
        var setupReplies: [PendingReply] = []
        let setupEntry = PendingReply(deadline: deadline(), completion: nil, isSetup: true)
        if let password = configuration.password {
            let credentials = configuration.username.map { [RedisArgument($0)] } ?? []
            RESPCommandEncoder.encode(["AUTH"] + credentials + [RedisArgument(password)], into: &setup)
            setupReplies.append(setupEntry)
        }
        if case .master = target {
            RESPCommandEncoder.encode(["ROLE"], into: &setup)
            var roleEntry = setupEntry
            roleEntry.expectsMaster = true
            setupReplies.append(roleEntry)
        }
        if configuration.database != 0 && role == .commands {
            RESPCommandEncoder.encode(["SELECT", RedisArgument(configuration.database)], into: &setup)
            setupReplies.append(setupEntry)
        }
        if role == .subscriber && !channels.isEmpty {
            encodeSubscription(channels, into: &setup)
            setupReplies.append(contentsOf: channels.map { subscriptionEntry(setupEntry, $0) })
        }
        output = setup + output
        pending.prepend(setupReplies)
        if stream.isSecure {
            stream.startHandshake()
        } else {
            stream.startReading()
        }
        armDeadlineTimer()
        flush()
    }

    /// Ends the current connection (or connection attempt): every waiting command fails with `error`, the outage
    /// is logged if this starts one, and a reconnect is scheduled.
    private func drop(reason: String, failing error: RedisError) {
        switch state {
        case .connecting, .connected: break
        case .idle, .backingOff, .shutDown: return
        }
        if case .connected(let stream) = state { stream.close() }
        generation += 1
        state = .backingOff
        if case .anySentinel = target { sentinelIndex += 1 }
        if !isDown {
            isDown = true
            outageLog.connectionWentDown(reason: reason)
        }
        deadlineTimer?.stop()
        reconnectFailures += 1
        let delay = configuration.reconnectBackoff.delay(afterFailures: reconnectFailures)
        if reconnectTimer == nil { reconnectTimer = TusLoop.Timer(loop: loop) }
        reconnectTimer!.start(afterMilliseconds: delay) { [self] in
            guard case .backingOff = state else { return }
            connect()
        }
        failEverythingWaiting(with: error)
        onDrop?()
    }

    private func failEverythingWaiting(with error: RedisError) {
        output.removeAll()
        isWriting = false
        decoder.reset()
        confirmedChannels.removeAll()
        let replies = pending.removeAll()
        let waiters = subscribeWaiters
        subscribeWaiters = []
        for reply in replies { reply.completion?(.failure(error)) }
        for waiter in waiters { waiter.completion(.failure(error)) }
    }

    /// Closes the socket and timers; later commands fail with `.shutDown`. `completion` runs once the socket's
    /// close callback ran (at once if there is none).
    func shutdown(_ completion: @escaping () -> Void) {
        let previous = state
        generation += 1
        state = .shutDown
        deadlineTimer?.close()
        reconnectTimer?.close()
        flushTimer?.close()
        if isDown {
            isDown = false
            outageLog.connectionLeftWhileDown()
        }
        handlers = [:]
        failEverythingWaiting(with: .shutDown)
        if case .connected(let stream) = previous {
            stream.close(completion)
        } else {
            // A connect still in flight closes its socket when it completes (the generation no longer matches).
            completion()
        }
    }

    // MARK: I/O

    private func flush() {
        guard case .connected(let stream) = state, !isWriting, !output.isEmpty else { return }
        let bytes = output
        output = []
        output.reserveCapacity(bytes.count)
        isWriting = true
        let writeGeneration = generation
        stream.write(bytes) { [self] error in
            guard writeGeneration == generation else { return }
            isWriting = false
            if let error {
                drop(reason: "write: \(error)", failing: .connectionLost)
            } else {
                flush()
            }
        }
    }

    func allocatePlaintextBuffer() -> UnsafeMutableRawBufferPointer {
        readBuffer
    }

    func didReceivePlaintext(count: Int) {
        lastReadAt = loop.nowMilliseconds
        decoder.append(UnsafeRawBufferPointer(rebasing: readBuffer[..<count]))
    }

    func didFinishRead(_ event: SecureStreamReadEvent) {
        switch event {
        case .received:
            processReplies()
        case .closed:
            drop(reason: "closed by the server", failing: .connectionLost)
        case .failed(let error):
            drop(reason: "read: \(error)", failing: .connectionLost)
        case .tlsFailed(let error):
            // Most often the handshake (an untrusted certificate, a client certificate Redis wants): say why.
            drop(reason: "TLS: \(error)", failing: .connectionLost)
        }
    }

    private func processReplies() {
        let readGeneration = generation
        decoding: while readGeneration == generation {
            switch decoder.next() {
            case .needMoreData:
                break decoding
            case .failure(let error):
                drop(reason: "protocol error: \(error)", failing: .connectionLost)
            case .value(let value):
                handle(value)
            }
        }
        // The keep-alive PING is due one interval after the last read, not after the last deadline.
        if role == .subscriber && pending.isEmpty && readGeneration == generation { armDeadlineTimer() }
    }

    private func handle(_ value: RESPValue) {
        if role == .subscriber, case .array(let parts) = value, parts.count == 3,
            parts[0].string == (isSharded ? "smessage" : "message")
        {
            guard let channel = parts[1].string, let payload = parts[2].bytes else { return }
            for handler in handlers[channel] ?? [] { handler(channel, payload) }
            return
        }
        if isSharded, case .array(let parts) = value, parts.count == 3, parts[0].string == "sunsubscribe",
            let channel = parts[1].string
        {
            // Never asked for (this client sends no SUNSUBSCRIBE): the channel's slot left this node.
            revoke(channel)
            return
        }
        guard let reply = pending.popFirst() else {
            drop(reason: "reply without a command", failing: .connectionLost)
            return
        }
        if reply.isSetup, let channel = reply.channel, case .error(let message) = value, message.hasPrefix("MOVED ") {
            revoke(channel)
            return
        }
        if reply.isSetup, case .error(let message) = value {
            drop(reason: "setup refused: \(message)", failing: .unavailable)
            return
        }
        if reply.expectsMaster, value.array?.first?.string != "master" {
            let role = value.array?.first?.string ?? "\(value)"
            let server = endpoint?.description ?? "server"
            drop(reason: "\(server) is not the master (ROLE: \(role))", failing: .unavailable)
            return
        }
        if case .error(let message) = value, Self.meansNotTheMaster(message) {
            // Whatever else was sent here meets the same refusal: ask the sentinels (or reconnect) instead.
            reply.completion?(.failure(.connectionLost))
            drop(reason: "\(endpoint?.description ?? "server") refused a command: \(message)", failing: .connectionLost)
            return
        }
        if !hasRepliedSinceConnect {
            hasRepliedSinceConnect = true
            reconnectFailures = 0
            if isDown {
                isDown = false
                outageLog.connectionCameBack()
            }
        }
        if role == .subscriber, case .array(let parts) = value, parts.count == 3,
            parts[0].string == (isSharded ? "ssubscribe" : "subscribe"), let channel = parts[1].string
        {
            didConfirmSubscription(channel)
        }
        guard let completion = reply.completion else { return }
        if case .error(let message) = value {
            completion(.failure(.server(message)))
        } else {
            completion(.success(value))
        }
    }

    /// A server that cannot take writes (a replica, maybe a demoted master), or no commands yet (still loading its
    /// data after a restart, or a replica that lost its master). Scripts that write on a replica fail with
    /// `READONLY` too.
    static func meansNotTheMaster(_ message: String) -> Bool {
        message.hasPrefix("READONLY ") || message.hasPrefix("MASTERDOWN ") || message.hasPrefix("LOADING ")
            || (message.hasPrefix("ERR ") && message.contains("READONLY"))
    }

    /// The sentinels announced `master` (`+switch-master`): a connection to another server is replaced now rather
    /// than when it next fails; the new one asks the sentinels again (and checks `ROLE`). Commands waiting on the
    /// old one fail with `.connectionLost`.
    func followMaster(to master: RedisEndpoint) {
        guard case .master = target else { return }
        switch state {
        case .connected, .connecting:
            // Still asking the sentinels (nil) or already at the new master: the connection gets there anyway.
            guard let endpoint, endpoint != master else { return }
            drop(reason: "the sentinels switched the master to \(master)", failing: .connectionLost)
        case .backingOff:
            break
        case .idle, .shutDown:
            return
        }
        reconnectTimer?.stop()
        reconnectFailures = 0
        connect()
    }

    // MARK: Deadlines

    /// Points the timer at the oldest live deadline, or (subscriber, idle) at the next keep-alive PING.
    private func armDeadlineTimer() {
        let next: UInt64
        if let oldest = pending.first(where: { $0.deadline != .max })?.deadline {
            next = oldest
        } else if role == .subscriber, case .connected = state {
            next = lastReadAt + configuration.subscriberPingIntervalMilliseconds
        } else {
            deadlineTimer?.stop()
            return
        }
        if deadlineTimer == nil { deadlineTimer = TusLoop.Timer(loop: loop) }
        let now = loop.nowMilliseconds
        deadlineTimer!.start(afterMilliseconds: next > now ? next - now : 0) { [self] in deadlineTimerFired() }
    }

    private func deadlineTimerFired() {
        let now = loop.nowMilliseconds
        switch state {
        case .connected:
            if let oldest = pending.first(where: { $0.deadline != .max })?.deadline, oldest <= now {
                drop(reason: "no reply within \(configuration.commandTimeoutMilliseconds) ms", failing: .timedOut)
                return
            }
            if role == .subscriber && pending.isEmpty
                && now >= lastReadAt + configuration.subscriberPingIntervalMilliseconds
            {
                enqueue(["PING"], PendingReply(deadline: deadline(), completion: nil))
                return
            }
        case .connecting:
            // Not sent yet, so nothing can be lost by giving up on them; their bytes still go out after the
            // setup, and their replies are dropped.
            var expired: [(Result<RESPValue, RedisError>) -> Void] = []
            pending.updateEach { reply in
                guard reply.deadline <= now, let completion = reply.completion else { return }
                expired.append(completion)
                reply.completion = nil
                reply.deadline = .max
            }
            for completion in expired { completion(.failure(.timedOut)) }
            guard case .connecting = state else { return }
        case .idle, .backingOff, .shutDown:
            return
        }
        armDeadlineTimer()
    }
}

/// A FIFO over an array with a moving head: appends and pops in O(1) amortized, without the per-element
/// allocation of a linked list. A popped slot is emptied at once (its closure released then, not when the array
/// is next cleared).
struct ReplyQueue<Element> {
    private var elements: [Element?] = []
    private var head = 0

    var isEmpty: Bool { head == elements.count }
    var count: Int { elements.count - head }

    mutating func append(_ element: Element) {
        elements.append(element)
    }

    mutating func prepend(_ newElements: [Element]) {
        elements.insert(contentsOf: newElements.map { Optional($0) }, at: head)
    }

    mutating func popFirst() -> Element? {
        guard head < elements.count else { return nil }
        let element = elements[head].take()
        head += 1
        if head == elements.count {
            elements.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= elements.count {
            elements.removeFirst(head)
            head = 0
        }
        return element
    }

    func first(where predicate: (Element) -> Bool) -> Element? {
        for index in head..<elements.count {
            if let element = elements[index], predicate(element) { return element }
        }
        return nil
    }

    mutating func updateEach(_ body: (inout Element) -> Void) {
        for index in head..<elements.count where elements[index] != nil {
            body(&elements[index]!)
        }
    }

    mutating func removeAll() -> [Element] {
        let remaining = elements[head...].compactMap { $0 }
        elements.removeAll(keepingCapacity: true)
        head = 0
        return remaining
    }
}
