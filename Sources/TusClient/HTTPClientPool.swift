public import TusCrypto
public import TusHTTP1
public import TusLoop
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Where a pool sends its requests and how hard it tries.
public struct HTTPClientPoolConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var tls: TLSContext?
    /// Keep-alive connections per loop; requests beyond wait in a queue.
    public var maxConnectionsPerLoop = 8
    /// Requests waiting for a connection, per loop; beyond this `send` fails at once (`.poolExhausted`), so a
    /// dead origin cannot pile up memory.
    public var maxQueuedPerLoop = 1024
    public var connectTimeoutMilliseconds: UInt64 = 2000
    /// An attempt fails when neither a read nor a write progressed for this long.
    public var requestTimeoutMilliseconds: UInt64 = 10_000
    /// Further attempts for retry-safe requests after a network failure or a 5xx answer.
    public var retries = 0
    /// Wait before each further attempt.
    public var backoffMilliseconds: UInt64 = 1000

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

    public var description: String {
        switch self {
        case .attempt(let error): "\(error)"
        case .poolExhausted: "too many queued requests"
        case .closed: "client pool closed"
        }
    }
}

/// Keep-alive HTTP/1.1 connections from one loop to one origin (hook receivers now, object stores later).
///
/// Loop-confined: create it, call it and close it on `loop`. Connections are reused (one request at a time
/// each, no pipelining), opened on demand up to `maxConnectionsPerLoop`, and queued requests are bounded.
///
/// Retries: a request marked `retrySafe` (idempotent, or a receiver that tolerates duplicates) is tried again
/// after a network failure or a 5xx answer, `retries` times with `backoffMilliseconds` between attempts; the
/// last attempt's outcome is reported. Any request is resent at once, once, when a reused keep-alive connection
/// turns out to have been closed by the server before a single response byte came back (the request never
/// reached the application there).
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
        attempt(head, body: body, retrySafe: retrySafe, remaining: retrySafe ? configuration.retries : 0, completion)
    }

    private func attempt(
        _ head: HTTPClientRequestHead, body: [UInt8], retrySafe: Bool, remaining: Int,
        _ completion: @escaping (Result<HTTPClientResponse, HTTPClientPoolError>) -> Void
    ) {
        let retryLater: (Result<HTTPClientResponse, HTTPClientPoolError>) -> Void = { [self] outcome in
            guard remaining > 0, !isClosed else { return completion(outcome) }
            loop.schedule(afterMilliseconds: configuration.backoffMilliseconds) { [self] in
                attempt(head, body: body, retrySafe: retrySafe, remaining: remaining - 1, completion)
            }
        }
        exchange(head, body: body, allowStaleRetry: true) { result in
            switch result {
            case .success(let response) where response.statusCode >= 500: retryLater(result)
            case .success: completion(result)
            case .failure(.attempt(let error)) where error.isTransient: retryLater(result)
            case .failure: completion(result)
            }
        }
    }

    /// One attempt on one connection (plus the stale keep-alive resend).
    private func exchange(
        _ head: HTTPClientRequestHead, body: [UInt8], allowStaleRetry: Bool,
        _ completion: @escaping (Result<HTTPClientResponse, HTTPClientPoolError>) -> Void
    ) {
        withConnection { [self] got, wasReused in
            let connection: HTTPClientConnection
            switch got {
            case .failure(let error): return completion(.failure(error))
            case .success(let ready): connection = ready
            }
            connection.idleTimeoutMilliseconds = configuration.requestTimeoutMilliseconds
            connection.send(head, body: body.isEmpty ? .none : .bytes(body)) { [self] result in
                switch result {
                case .success(let response):
                    release(connection)
                    completion(.success(response))
                case .failure(let error):
                    connection.close()
                    release(connection)
                    if wasReused, allowStaleRetry, case .closedBeforeResponse(receivedBytes: 0) = error {
                        return exchange(head, body: body, allowStaleRetry: false, completion)
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
                connectTimeoutMilliseconds: configuration.connectTimeoutMilliseconds
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
/// its loop. The loop's pool is found with one `pthread_getspecific`.
public final class HTTPClientPoolGroup: @unchecked Sendable {
    public let configuration: HTTPClientPoolConfiguration
    private var key = pthread_key_t()
    private let pools = Mutex<[PoolBox]>([])

    public init(configuration: HTTPClientPoolConfiguration) {
        self.configuration = configuration
        pthread_key_create(&key, nil)
    }

    deinit { pthread_key_delete(key) }

    /// The calling loop's pool (loop thread only).
    public func pool(on loop: EventLoop) -> HTTPClientPool {
        if let raw = pthread_getspecific(key) { return Unmanaged<HTTPClientPool>.fromOpaque(raw).takeUnretainedValue() }
        let pool = HTTPClientPool(loop: loop, configuration: configuration)
        pools.withLock { $0.append(PoolBox(pool)) }
        pthread_setspecific(key, Unmanaged.passUnretained(pool).toOpaque())
        return pool
    }

    /// Closes `loop`'s pool, if it has one (called on that loop as it shuts down).
    public func close(on loop: EventLoop) {
        let mine = pools.withLock { $0.filter { $0.pool.loop === loop } }
        for box in mine { box.pool.close() }
    }
}

private struct PoolBox: @unchecked Sendable {
    let pool: HTTPClientPool
    init(_ pool: HTTPClientPool) { self.pool = pool }
}
