import TusCrypto
public import TusCore
import TusHTTP1
public import TusLoop
import TusTransport
#if canImport(Glibc)
import Glibc
#endif

/// Per-loop server state: the listener, the live connections and the timeout sweep. Confined to its loop.
///
/// Timeouts use one sweep timer per loop instead of one timer per connection: an idle connection then
/// costs no libuv handle beyond its socket, which is what keeps 10,000 idle connections cheap.
final class LoopContext {
    let index: Int
    let loop: EventLoop
    let executor: LoopExecutorAdapter
    private let listener: TCPListener
    /// Strong on purpose: loops must not outlive the server's configuration; `HTTPServer.wait()` breaks the cycle.
    let server: HTTPServer
    private var connections: [ObjectIdentifier: HTTPConnection] = [:]
    /// Connections that switched to HTTP/2 (ALPN "h2", or the h2c preface); `HTTP2Connection` owns the socket.
    private var http2Connections: [ObjectIdentifier: HTTP2Connection] = [:]
    private var sweepTimer: TusLoop.Timer?
    private var shutdownTimer: TusLoop.Timer?
    /// Connections holding 1xx heads until the end of this turn of the loop (`HTTPConnection.heldInformational`),
    /// and the zero-delay timer that writes them before the loop polls again. A timer, not `execute`: that would
    /// cost an eventfd write per 104, the very syscall the hold saves.
    private var heldInformational: [HTTPConnection] = []
    private var informationalTimer: TusLoop.Timer?
    private(set) var isShuttingDown = false
    private var cachedDate: (second: Int, value: String) = (-1, "")
    private var abuseLog = AbuseLogLimiter()

    /// The `Date` header value (RFC 9110 §6.6.1: an origin server with a clock must send it), formatted at
    /// most once per second per loop.
    var dateHeaderValue: String {
        let now = time(nil)
        if now != cachedDate.second { cachedDate = (now, HTTPDate.format(unixSeconds: Int64(now))) }
        return cachedDate.value
    }

    /// `connection` holds 1xx heads: written at the end of this loop turn unless its final response takes them first.
    func flushAtEndOfTurn(_ connection: HTTPConnection) {
        heldInformational.append(connection)
        guard heldInformational.count == 1 else { return }
        let timer = informationalTimer ?? TusLoop.Timer(loop: loop)
        informationalTimer = timer
        timer.start(afterMilliseconds: 0) { [unowned self] in
            let held = heldInformational
            heldInformational = []
            for connection in held { connection.flushHeldInformational() }
        }
    }

    /// Connections of this loop currently streaming a request body.
    var activeBodies = 0
    /// Where TLS connections of this loop receive ciphertext; each read is fully consumed before the next.
    /// As big as a plaintext body chunk: the plaintext of one read becomes one fragment when the writer is idle,
    /// so a 64 KiB buffer cost four threadpool writes (and their wake-ups) where a cleartext upload needs one.
    let ciphertextBuffer = CiphertextBuffer(byteCount: 256 * 1024)

    /// Body chunks of this loop's connections, reused while uploads stream (see `ByteChunkPool`).
    let chunkPool: ByteChunkPool

    init(index: Int, loop: EventLoop, listener: TCPListener, server: HTTPServer) {
        self.index = index
        self.loop = loop
        self.listener = listener
        self.server = server
        self.executor = LoopExecutorAdapter(loop)
        // A third of the budget (16 MiB): TLS bodies hold chunks of up to 1 MiB, and at /8 the swings in how many are
        // lent at once at 32 TLS uploads were freed and faulted in again (15-20 minor faults per MiB; 9-17 at /3).
        self.chunkPool = ByteChunkPool(maxFreeBytes: server.configuration.bodyMemoryPerLoop / 3)
    }

    /// Capacity of the next body chunk. One upload gets `readChunkSize` (big writes, few syscalls); many
    /// concurrent uploads share `bodyMemoryPerLoop`, so that the memory a loop pins for bodies stays near that
    /// budget however many clients upload at once, down to a floor below which syscalls would dominate.
    var bodyChunkSize: Int { bodyChunkSize(secure: false) }

    /// An HTTP/1.1 TLS body's chunks may be bigger (`secureReadChunkSize`), within the same budget and rounded
    /// down to a power of two so that the pool keeps few sizes; the connection keeps the size its body started with
    /// (`HTTPConnection.secureBodyChunkSize`), so that uploads ending around it do not switch it to a size the
    /// pool holds none of.
    func bodyChunkSize(secure: Bool) -> Int {
        let configuration = server.configuration
        let perConnection = configuration.bodyMemoryPerLoop / max(1, activeBodies)
        let perChunk = perConnection / (configuration.maxOutstandingFragments + 1)
        let plain = min(configuration.readChunkSize, max(16 * 1024, perChunk))
        guard secure, configuration.secureReadChunkSize > plain, perChunk > plain else { return plain }
        var size = plain
        while size * 2 <= min(perChunk, configuration.secureReadChunkSize) { size *= 2 }
        return size
    }

    /// Capacity of each of a spliced body's two pipes, from the same budget: pipe pages are kernel memory that no
    /// RSS figure shows, but memory all the same, and a slow disk fills them. A power of two (the kernel rounds a
    /// pipe up to one) between the 64 KiB below which splicing does not pay and the splicer's preferred 1 MiB.
    var splicePipeCapacity: Int {
        Self.splicePipeCapacity(bodyMemoryPerLoop: server.configuration.bodyMemoryPerLoop, activeBodies: activeBodies)
    }

    /// Pipes a spliced body's threadpool job drains in a row. A few bodies keep a job going (no loop round trip
    /// between pipes); past libuv's default pool of 4 threads every body's pipes take turns instead, one drain per
    /// job, or uploads finish unevenly and the last ones run alone (256 x 8 MiB was 0.78x with 16 in a row).
    var spliceDrainsPerJob: Int { Self.spliceDrainsPerJob(activeBodies: activeBodies) }

    static func spliceDrainsPerJob(activeBodies: Int) -> Int {
        activeBodies <= 4 ? SocketFileSplicer.preferredDrainsPerJob : 1
    }

    static func splicePipeCapacity(bodyMemoryPerLoop: Int, activeBodies: Int) -> Int {
        let perPipe = bodyMemoryPerLoop / max(1, activeBodies) / 2
        var capacity = SocketFileSplicer.minimumPipeCapacity
        while capacity * 2 <= min(perPipe, SocketFileSplicer.preferredPipeCapacity) { capacity *= 2 }
        return capacity
    }

    func startAccepting() {
        do {
            try listener.listen(onPause: { [unowned self] in self.logAcceptPause($0) }) { [unowned self] stream in
                self.accept(stream)
            }
        } catch {
            server.logIf(.error, "loop \(index): listen failed: \(error)")
            return
        }
        let timer = TusLoop.Timer(loop: loop)
        timer.start(afterMilliseconds: 500, repeatMilliseconds: 500) { [unowned self] in self.sweepDeadlines() }
        sweepTimer = timer
    }

    /// One line when an episode starts and one when it ends: a server at its descriptor limit may fail
    /// thousands of accepts a second, and a log line per failure would bury everything else.
    private func logAcceptPause(_ pause: AcceptPause) {
        switch pause {
        case .began(let error):
            server.logIf(
                .error,
                "loop \(index): cannot accept connections: \(error); pausing accepts until a descriptor is free "
                    + "(waiting clients are reset). Raise the open file limit or lower the connection limit.")
        case .ended(let milliseconds, let dropped):
            server.logIf(
                .warning,
                "loop \(index): accepting again after \(milliseconds) ms; \(dropped) connection(s) were reset")
        }
    }

    private func accept(_ stream: TCPStream) {
        let limit = server.configuration.maxConnections
        let count = server.connectionCount.add(1, ordering: .relaxed).newValue
        let tlsContext = server.currentTLSContext
        if count > limit || isShuttingDown {
            server.connectionCount.subtract(1, ordering: .relaxed)
            if tlsContext != nil {
                stream.close()  // a plaintext 503 would only confuse a TLS client
                return
            }
            let text = isShuttingDown ? "server shutting down" : "too many connections"
            let bytes = ResponseEncoder.encode(
                HTTPResponse(status: .serviceUnavailable, text: text), version: .http1_1, keepAlive: false)
            stream.write(bytes) { _ in stream.close() }
            return
        }
        stream.setNoDelay(true)
        let secure = SecureStream(tcp: stream, tls: tlsContext, ciphertext: ciphertextBuffer)
        let connection = HTTPConnection(stream: secure, context: self)
        connections[ObjectIdentifier(connection)] = connection
        connection.start()
    }

    /// The dispatch point between HTTP/1.1 and HTTP/2: `connection` negotiated h2 and hands over its stream
    /// (TLS session included) and the plaintext it already read. It counts as the same open connection.
    func switchToHTTP2(_ connection: HTTPConnection, stream: SecureStream, initialBytes: UnsafeRawBufferPointer) {
        guard connections.removeValue(forKey: ObjectIdentifier(connection)) != nil else { return }
        let http2 = HTTP2Connection(stream: stream, context: self)
        http2Connections[ObjectIdentifier(http2)] = http2
        http2.start(initialBytes: initialBytes)
        if isShuttingDown { http2.shutdownGracefully() }
    }

    func http2ConnectionDidClose(_ connection: HTTP2Connection) {
        guard http2Connections.removeValue(forKey: ObjectIdentifier(connection)) != nil else { return }
        connectionClosed()
    }

    func connectionDidClose(_ connection: HTTPConnection) {
        guard connections.removeValue(forKey: ObjectIdentifier(connection)) != nil else { return }
        connectionClosed()
    }

    private func connectionClosed() {
        server.connectionCount.subtract(1, ordering: .relaxed)
        if isShuttingDown && connections.isEmpty && http2Connections.isEmpty {
            finishShutdown()
        } else {
            // A descriptor came free: if accepting paused for want of one, use it now rather than after the back-off.
            listener.resumeAccepting()
        }
    }

    /// A line about a hostile or broken peer (info), within `AbuseLogLimiter`'s budget of one per kind per second.
    func logAbuse(_ kind: AbuseLogKind, _ message: @autoclosure () -> String) {
        guard ServerLogLevel.info >= server.minimumLogLevel else { return }
        switch abuseLog.admit(kind, now: loop.nowMilliseconds) {
        case .skip:
            return
        case .log(let suppressed):
            let note = suppressed > 0 ? " (\(suppressed) more \(kind) line(s) left out before this one)" : ""
            server.log(.info, message() + note)
        }
    }

    private func sweepDeadlines() {
        let now = loop.nowMilliseconds
        for (kind, suppressed) in abuseLog.overdueCounts(now: now) {
            server.logIf(.info, "\(suppressed) more \(kind) line(s) left out (at most one a second is logged)")
        }
        chunkPool.trimIfIdle()
        for connection in connections.values { connection.checkDeadline(now: now) }
        for connection in http2Connections.values { connection.checkDeadline(now: now) }
    }

    func beginShutdown() {
        guard !isShuttingDown else { return }
        isShuttingDown = true
        listener.close()
        for connection in connections.values { connection.shutdownGracefully() }
        for connection in http2Connections.values { connection.shutdownGracefully() }
        if connections.isEmpty && http2Connections.isEmpty {
            finishShutdown()
            return
        }
        let timer = TusLoop.Timer(loop: loop)
        timer.start(afterMilliseconds: server.configuration.shutdownTimeoutMilliseconds) { [unowned self] in
            for connection in self.connections.values { connection.abort(reason: .shutdown) }
            for connection in self.http2Connections.values { connection.abort(reason: .shutdown) }
        }
        shutdownTimer = timer
    }

    private func finishShutdown() {
        executor.shutDown()
        sweepTimer?.close()
        sweepTimer = nil
        shutdownTimer?.close()
        shutdownTimer = nil
        guard let loopWillStop = server.loopWillStop else { return loop.stop() }
        loopWillStop(executor) { [loop] in loop.stop() }
    }
}

/// The loop as the layers above see it (`TusHTTP1.LoopExecutor`).
///
/// It keeps track of the timers it hands out, so that shutdown can close the application's timers (the
/// expiry sweep, lock timeouts) too: libuv's loop only ends when no handle is left.
public final class LoopExecutorAdapter: LoopExecutor, @unchecked Sendable {
    private let loop: EventLoop
    /// Loop-thread only.
    private var liveTimers: [ObjectIdentifier: TimerCancellable] = [:]
    private var isShutDown = false

    public init(_ loop: EventLoop) {
        self.loop = loop
        loop.bind(self)
    }

    public func execute(_ work: @escaping @Sendable () -> Void) { loop.execute(work) }

    public func schedule(afterMilliseconds milliseconds: UInt64, _ work: @escaping () -> Void) -> any Cancellable {
        guard !isShutDown else { return TimerCancellable(nil, adapter: nil) }
        let timer = TusLoop.Timer(loop: loop)
        let token = TimerCancellable(timer, adapter: self)
        liveTimers[ObjectIdentifier(token)] = token
        timer.start(afterMilliseconds: milliseconds) {
            token.finish()
            work()
        }
        return token
    }

    public var inLoop: Bool { loop.inLoop }

    public func offload(_ work: @escaping @Sendable () -> Void, completion: @escaping () -> Void) {
        loop.offload(work, completion: completion)
    }

    fileprivate func forget(_ token: TimerCancellable) { liveTimers[ObjectIdentifier(token)] = nil }

    /// Closes every pending timer; later `schedule` calls do nothing.
    public func shutDown() {
        isShutDown = true
        for token in Array(liveTimers.values) { token.cancel() }
    }
}

private final class TimerCancellable: Cancellable {
    private var timer: TusLoop.Timer?
    private weak var adapter: LoopExecutorAdapter?

    init(_ timer: TusLoop.Timer?, adapter: LoopExecutorAdapter?) {
        self.timer = timer
        self.adapter = adapter
    }

    func finish() {
        timer?.close()
        timer = nil
        adapter?.forget(self)
    }

    func cancel() {
        timer?.stop()
        finish()
    }
}
