public import TusCrypto
public import TusCore
import TusHTTP1
public import TusLoop
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Which outcomes are worth another attempt, how many further attempts, and how long to wait before each.
public struct RetryPolicy: Sendable {
    /// Further attempts for retry-safe requests.
    public var retries: Int
    public var backoff: Backoff
    /// Whether an attempt's outcome may come out differently next time (a non-2xx answer arrives as `.success`).
    public var isRetryable: @Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Bool

    public init(
        retries: Int, backoff: Backoff,
        isRetryable: @escaping @Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Bool = RetryPolicy
            .networkOr5xx
    ) {
        self.retries = retries
        self.backoff = backoff
        self.isRetryable = isRetryable
    }

    /// Network trouble (`HTTPClientError.isTransient`) or a 5xx answer.
    public static let networkOr5xx: @Sendable (Result<HTTPClientResponse, HTTPClientError>) -> Bool = { outcome in
        switch outcome {
        case .success(let response): response.statusCode >= 500
        case .failure(let error): error.isTransient
        }
    }

    public static let none = RetryPolicy(retries: 0, backoff: .constant(0))
}

/// Adds authentication to each attempt of a request just before it is sent (so a retry is signed afresh, with
/// its own date). `payload` is the body when it is in memory, nil when it is streamed.
public protocol HTTPRequestSigner: Sendable {
    func sign(_ head: inout HTTPClientRequestHead, payload: [UInt8]?)
}

/// A request body that can be sent again: `.stream` makes a fresh producer per attempt (S3 part uploads re-read
/// their spill file), so a retry never needs the bytes in memory.
public enum ReplayableBody {
    case none
    case bytes([UInt8])
    case stream(length: Int64, makeProducer: () -> any HTTPBodyProducer)
}

/// One request through the pool, with what it needs to be retried.
public struct HTTPClientRequest {
    public var head: HTTPClientRequestHead
    public var body: ReplayableBody
    /// Idempotent, or sent to a receiver that tolerates duplicates: only these are retried (`RetryPolicy`).
    public var retrySafe: Bool
    /// How long an attempt may make no progress; nil: the pool's `requestTimeoutMilliseconds`.
    public var timeoutMilliseconds: UInt64?
    /// Takes a 2xx response's body as it arrives (calling `resume` when it may deliver more) instead of
    /// collecting it; once a byte was handed over, the request is not retried.
    public var streamBody: ((_ bytes: [UInt8], _ resume: @escaping () -> Void) -> Void)?

    public init(
        head: HTTPClientRequestHead, body: ReplayableBody = .none, retrySafe: Bool,
        timeoutMilliseconds: UInt64? = nil,
        streamBody: ((_ bytes: [UInt8], _ resume: @escaping () -> Void) -> Void)? = nil
    ) {
        self.head = head
        self.body = body
        self.retrySafe = retrySafe
        self.timeoutMilliseconds = timeoutMilliseconds
        self.streamBody = streamBody
    }
}

/// A request in flight; `cancel` abandons it: its connection is closed, no retry follows, and the completion gets
/// `.cancelled`. Loop-confined, like the pool.
public final class HTTPClientRequestHandle {
    fileprivate var connection: HTTPClientConnection?
    fileprivate var retryTimer: TusLoop.Timer?
    /// Completes the request as cancelled while it waits for its next attempt.
    fileprivate var cancelDuringBackoff: (() -> Void)?
    /// What a stand-in transport (a test's in-memory S3) does on `cancel`; it must then complete with `.cancelled`.
    public var onCancel: (() -> Void)?
    public private(set) var isCancelled = false

    public init() {}

    public func cancel() {
        guard !isCancelled else { return }
        isCancelled = true
        if let cancelDuringBackoff {
            self.cancelDuringBackoff = nil
            retryTimer?.stop()
            retryTimer = nil
            cancelDuringBackoff()
        }
        connection?.close()
        onCancel?()
    }
}

/// Where a pool sends its requests and how hard it tries.
public struct HTTPClientPoolConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var tls: TLSContext?
    /// The `Host` header value; nil: "host:port".
    public var authority: String?
    /// Keep-alive connections per loop; requests beyond wait in a queue.
    public var maxConnectionsPerLoop = 8
    /// Requests waiting for a connection, per loop; beyond this `send` fails at once (`.poolExhausted`), so a
    /// dead origin cannot pile up memory.
    public var maxQueuedPerLoop = 1024
    public var connectTimeoutMilliseconds: UInt64 = 2000
    /// An attempt fails when neither a read nor a write progressed for this long.
    public var requestTimeoutMilliseconds: UInt64 = 10_000
    public var retry = RetryPolicy.none
    /// Signs every attempt (SigV4 for S3); nil sends heads as given.
    public var signer: (any HTTPRequestSigner)?

    public init(host: String, port: Int, tls: TLSContext? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
    }
}

public enum HTTPClientPoolError: Error, CustomStringConvertible {
    case attempt(HTTPClientError)
    /// Too many requests already wait for a connection.
    case poolExhausted
    /// The pool was closed.
    case closed
    /// `HTTPClientRequestHandle.cancel` ran.
    case cancelled

    public var description: String {
        switch self {
        case .attempt(let error): "\(error)"
        case .poolExhausted: "too many queued requests"
        case .closed: "client pool closed"
        case .cancelled: "request cancelled"
        }
    }
}

/// Keep-alive HTTP/1.1 connections from one loop to one origin: the one outbound client of the server (hook
/// receivers and the S3 store).
///
/// Loop-confined: create it, call it and close it on `loop`. Connections are reused (one request at a time
/// each, no pipelining), opened on demand up to `maxConnectionsPerLoop`, and queued requests are bounded.
///
/// Retries: a request marked `retrySafe` is tried again when `retry.isRetryable` says its outcome may change,
/// `retry.retries` times, waiting `retry.backoff` before each; the last attempt's outcome is reported. Any request
/// is resent at once, once, when a reused keep-alive connection turns out to have been closed by the server
/// before a single response byte came back (the request never reached the application there).
public final class HTTPClientPool {
    public let loop: EventLoop
    public let configuration: HTTPClientPoolConfiguration
    private var idle: [HTTPClientConnection] = []
    private var openCount = 0
    private var waiting: [(Result<HTTPClientConnection, HTTPClientPoolError>) -> Void] = []
    private var isClosed = false

    public init(loop: EventLoop, configuration: HTTPClientPoolConfiguration) {
        self.loop = loop
        self.configuration = configuration
    }

    /// Connections open right now (idle or busy).
    public var openConnections: Int { openCount }

    public func send(
        _ head: HTTPClientRequestHead, body: [UInt8] = [], retrySafe: Bool,
        _ completion: @escaping (Result<HTTPClientResponse, HTTPClientPoolError>) -> Void
    ) {
        send(HTTPClientRequest(head: head, body: body.isEmpty ? .none : .bytes(body), retrySafe: retrySafe), completion)
    }

    /// Sends `request`; `completion` runs once, on `loop`, with the last attempt's response or failure.
    @discardableResult
    public func send(
        _ request: HTTPClientRequest, handle: HTTPClientRequestHandle = HTTPClientRequestHandle(),
        _ completion: @escaping (Result<HTTPClientResponse, HTTPClientPoolError>) -> Void
    ) -> HTTPClientRequestHandle {
        attempt(request, failures: 0, handle: handle, completion)
        return handle
    }

    private func attempt(
        _ request: HTTPClientRequest, failures: Int, handle: HTTPClientRequestHandle,
        _ completion: @escaping (Result<HTTPClientResponse, HTTPClientPoolError>) -> Void
    ) {
        guard !handle.isCancelled else { return completion(.failure(.cancelled)) }
        var streamed = false
        exchange(request, handle: handle, allowStaleRetry: true, streamed: { streamed = true }) { [self] result in
            if handle.isCancelled { return completion(.failure(.cancelled)) }
            let policy = configuration.retry
            guard request.retrySafe, failures < policy.retries, !isClosed, !streamed else { return completion(result) }
            let retryable =
                switch result {
                case .success(let response): policy.isRetryable(.success(response))
                case .failure(.attempt(let error)): policy.isRetryable(.failure(error))
                case .failure: false
                }
            guard retryable else { return completion(result) }
            handle.cancelDuringBackoff = { completion(.failure(.cancelled)) }
            handle.retryTimer = loop.schedule(afterMilliseconds: policy.backoff.delay(afterFailures: failures + 1)) {
                [self] in
                handle.retryTimer = nil
                handle.cancelDuringBackoff = nil
                attempt(request, failures: failures + 1, handle: handle, completion)
            }
        }
    }

    /// One attempt on one connection (plus the stale keep-alive resend).
    private func exchange(
        _ request: HTTPClientRequest, handle: HTTPClientRequestHandle, allowStaleRetry: Bool,
        streamed: @escaping () -> Void,
        _ completion: @escaping (Result<HTTPClientResponse, HTTPClientPoolError>) -> Void
    ) {
        withConnection { [self] got, wasReused in
            let connection: HTTPClientConnection
            switch got {
            case .failure(let error): return completion(.failure(error))
            case .success(let ready): connection = ready
            }
            guard !handle.isCancelled else {
                release(connection)
                return completion(.failure(.cancelled))
            }
            handle.connection = connection
            var head = request.head
            let body: HTTPClientRequestBody
            switch request.body {
            case .none:
                configuration.signer?.sign(&head, payload: [])
                body = .none
            case .bytes(let bytes):
                configuration.signer?.sign(&head, payload: bytes)
                body = .bytes(bytes)
            case .stream(let length, let makeProducer):
                configuration.signer?.sign(&head, payload: nil)
                body = .stream(length: length, makeProducer())
            }
            let handling: HTTPResponseBodyHandling
            if let consumer = request.streamBody {
                handling = .stream { _, bytes, resume in
                    streamed()
                    consumer(bytes, resume)
                }
            } else {
                handling = .collect
            }
            connection.idleTimeoutMilliseconds = request.timeoutMilliseconds ?? configuration.requestTimeoutMilliseconds
            connection.send(head, body: body, responseBody: handling) { [self] result in
                handle.connection = nil
                switch result {
                case .success(let response):
                    release(connection)
                    completion(.success(response))
                case .failure(let error):
                    connection.close()
                    release(connection)
                    if wasReused, allowStaleRetry, !handle.isCancelled,
                        case .closedBeforeResponse(receivedBytes: 0) = error
                    {
                        return exchange(
                            request, handle: handle, allowStaleRetry: false, streamed: streamed, completion)
                    }
                    completion(.failure(.attempt(error)))
                }
            }
        }
    }

    /// An idle connection, a new one, or a place in the queue; fails when the queue is full, the pool is
    /// closed, or connecting failed.
    private func withConnection(
        _ use: @escaping (Result<HTTPClientConnection, HTTPClientPoolError>, _ wasReused: Bool) -> Void
    ) {
        guard !isClosed else { return use(.failure(.closed), false) }
        while let connection = idle.popLast() {
            if connection.isReusable { return use(.success(connection), true) }
            openCount -= 1
        }
        if openCount < configuration.maxConnectionsPerLoop {
            openCount += 1
            HTTPClientConnection.connect(
                loop: loop, host: configuration.host, port: configuration.port, tls: configuration.tls,
                authority: configuration.authority, connectTimeoutMilliseconds: configuration.connectTimeoutMilliseconds
            ) { [self] result in
                switch result {
                case .success(let connection): use(.success(connection), false)
                case .failure(let error):
                    openCount -= 1
                    use(.failure(.attempt(error)), false)
                    serveWaiting()
                }
            }
            return
        }
        guard waiting.count < configuration.maxQueuedPerLoop else { return use(.failure(.poolExhausted), false) }
        waiting.append { result in use(result, true) }
    }

    private func release(_ connection: HTTPClientConnection) {
        if connection.isReusable && !isClosed {
            if !waiting.isEmpty { return waiting.removeFirst()(.success(connection)) }
            idle.append(connection)
            return
        }
        if !connection.isClosed { connection.close() }
        openCount -= 1
        serveWaiting()
    }

    /// A slot freed up: the first waiter opens a new connection.
    private func serveWaiting() {
        guard !waiting.isEmpty, openCount < configuration.maxConnectionsPerLoop else { return }
        let next = waiting.removeFirst()
        withConnection { result, _ in next(result) }
    }

    /// Closes idle connections and fails waiters; busy connections close when their exchange ends.
    public func close() {
        isClosed = true
        for connection in idle { connection.close() }
        openCount -= idle.count
        idle = []
        let waiters = waiting
        waiting = []
        for waiter in waiters { waiter(.failure(.closed)) }
    }
}

/// One pool per loop for one origin, found from whichever loop asks. Safe from any thread; each pool stays on
/// its loop. The loop's pool is a `LoopLocal` (no lock on the loop's own thread).
public final class HTTPClientPoolGroup: @unchecked Sendable {
    public let configuration: HTTPClientPoolConfiguration
    private let pools = LoopLocal<HTTPClientPool>()

    public init(configuration: HTTPClientPoolConfiguration) {
        self.configuration = configuration
    }

    /// The calling loop's pool (loop thread only).
    public func pool(on loop: EventLoop) -> HTTPClientPool {
        pools.value(on: loop) { HTTPClientPool(loop: loop, configuration: configuration) }
    }

    /// Closes `loop`'s pool, if it has one (called on that loop as it shuts down); a later request from that loop
    /// starts a new pool.
    public func close(on loop: EventLoop) {
        pools.removeValue(on: loop)?.close()
    }
}
