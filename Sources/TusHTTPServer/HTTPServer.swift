public import TusCrypto
public import TusCore
public import TusHTTP1
import TusLoop
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A multi-loop HTTP/1.1 server: `configuration.loops` event loops, each on its own thread with its own
/// listening socket on the same port (SO_REUSEPORT; the kernel spreads connections), each owning its
/// connections outright.
///
/// Synchronization boundary: loops share nothing but this object's immutable configuration, the handler
/// (which is `Sendable` and guards its own shared state) and `connectionCount` (an atomic). Everything a
/// connection touches belongs to its loop's thread.
public final class HTTPServer: Sendable {
    public let configuration: HTTPServerConfiguration
    let handler: any HTTPRequestHandler
    let log: ServerLogSink
    let minimumLogLevel: ServerLogLevel
    let connectionCount = Atomic<Int>(0)
    /// Body bytes moved socket → file by splice(2) (`SocketFileSplicer`), across all loops.
    let splicedBodyByteCount = Atomic<Int64>(0)
    /// How many body bytes took the splice path since start: a zero-copy upload shows here (tests assert it).
    public var splicedBodyBytes: Int64 { splicedBodyByteCount.load(ordering: .relaxed) }
    /// HTTP/2 DATA payload bytes copied into a stream's own chunk instead of handed on as a slice of the decrypted
    /// input (h2c, or `HTTP2Connection`'s slice budget spent): a TLS upload of one stream shows none (tests assert it).
    let copiedHTTP2BodyByteCount = Atomic<Int64>(0)
    public var copiedHTTP2BodyBytes: Int64 { copiedHTTP2BodyByteCount.load(ordering: .relaxed) }
    /// Plaintext pieces HTTP/2 connections fed to nghttp2 (one `SSL_read` each on TLS): per-frame costs scale with
    /// it (tests assert a frame header rides with the payload before it).
    let http2PlaintextPieceCount = Atomic<Int64>(0)
    public var http2PlaintextPieces: Int64 { http2PlaintextPieceCount.load(ordering: .relaxed) }
    /// HTTP/1.1 writes that carried held 1xx heads in front of the response (or `100 Continue`) written in the
    /// same loop turn, instead of a write of their own (tests and benchmarks check the saving).
    let joinedInformationalCount = Atomic<Int64>(0)
    public var joinedInformationalWrites: Int64 { joinedInformationalCount.load(ordering: .relaxed) }
    /// Runs on each loop after its connections and timers are closed, before the loop stops, so that the
    /// application can close what it opened on that loop (outbound connections); the loop stops when `done` runs.
    let loopWillStop: (@Sendable (_ executor: any LoopExecutor, _ done: @escaping () -> Void) -> Void)?
    private let state = Mutex<RunState>(RunState())
    /// The certificate new connections get; swapped whole on reload, so open connections keep theirs.
    private let tlsContext: Mutex<TLSContext?>

    private struct RunState: @unchecked Sendable {
        var contexts: [LoopContext] = []
        var port: Int = 0
        var openFileLimit: Int = 0
        var isShuttingDown = false
    }

    /// `tls` makes every listener HTTPS.
    public init(
        configuration: HTTPServerConfiguration, handler: any HTTPRequestHandler, tls: TLSContext? = nil,
        minimumLogLevel: ServerLogLevel = .info,
        loopWillStop: (@Sendable (_ executor: any LoopExecutor, _ done: @escaping () -> Void) -> Void)? = nil,
        log: @escaping ServerLogSink = { _, _ in }
    ) {
        self.tlsContext = Mutex(tls)
        self.loopWillStop = loopWillStop
        self.configuration = configuration
        self.handler = handler
        self.minimumLogLevel = minimumLogLevel
        self.log = log
    }

    var currentTLSContext: TLSContext? { tlsContext.withLock { $0 } }

    public var isSecure: Bool { currentTLSContext != nil }

    /// Hot reload: handshakes from now on use `context`; connections already open keep the old one.
    /// Does nothing on a plain-HTTP server (TLS cannot be switched on at run time).
    public func replaceTLSContext(_ context: TLSContext) {
        tlsContext.withLock { if $0 != nil { $0 = context } }
    }

    /// The bound port (the real one when 0 was asked), valid after `start()`.
    public var port: Int { state.withLock { $0.port } }

    /// RLIMIT_NOFILE as `start()` left it (raised to the hard limit when it could be); compare with
    /// `configuration.descriptorsNeeded`.
    public var openFileLimit: Int { state.withLock { $0.openFileLimit } }

    /// Executors of the running loops, so the application can schedule its own periodic work on them.
    public var executors: [any LoopExecutor] { state.withLock { $0.contexts.map(\.executor) } }

    /// Binds every loop's listener, then starts the loop threads. Throws if the address can't be bound.
    public func start() throws {
        // A peer that resets a connection mid-write must not kill the process.
        signal(SIGPIPE, SIG_IGN)
        let raised = raiseOpenFileLimit()
        logIf(.debug, "open file limit \(raised)")

        var contexts: [LoopContext] = []
        var port = configuration.port
        for index in 0..<max(1, configuration.loops) {
            let loop = try EventLoop()
            let listener = try TCPListener(
                loop: loop, host: configuration.host, port: port, reusePort: configuration.loops > 1)
            // Later listeners must join the port the first one got when 0 was asked.
            port = listener.localPort
            contexts.append(LoopContext(index: index, loop: loop, listener: listener, server: self))
        }
        state.withLock {
            $0.contexts = contexts
            $0.port = port
            $0.openFileLimit = raised
        }
        // Return only once every loop listens, so a caller that connects right after start() is not refused.
        let listening = DispatchSemaphore(value: 0)
        for context in contexts {
            let bound = LoopBound(context)
            context.loop.execute {
                bound.value.startAccepting()
                listening.signal()
            }
            context.loop.runOnNewThread(name: "tus-loop-\(context.index)")
        }
        for _ in contexts { listening.wait() }
    }

    /// Stops accepting, lets in-flight requests finish within the shutdown timeout, then aborts what is
    /// left (handlers hear `.shutdown`) and ends the loops. Safe from any thread, idempotent.
    public func shutdown() {
        let contexts: [LoopContext] = state.withLock {
            if $0.isShuttingDown { return [] }
            $0.isShuttingDown = true
            return $0.contexts
        }
        for context in contexts {
            let bound = LoopBound(context)
            context.loop.execute { bound.value.beginShutdown() }
        }
    }

    /// Blocks until every loop thread has ended (after `shutdown()`).
    public func wait() {
        let contexts = state.withLock { $0.contexts }
        for context in contexts { context.loop.join() }
        state.withLock { $0.contexts = [] }
    }

    func logIf(_ level: ServerLogLevel, _ message: @autoclosure () -> String) {
        if level >= minimumLogLevel { log(level, message()) }
    }

    func logIf(_ level: ServerLogLevel, _ message: () -> String) {
        if level >= minimumLogLevel { log(level, message()) }
    }

    /// Connections open right now, over all loops (the `tusd_connections_open` gauge).
    public var openConnections: Int { connectionCount.load(ordering: .relaxed) }
}

/// Moves a loop-confined reference across a thread hop whose far end is that same loop.
struct LoopBound<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
