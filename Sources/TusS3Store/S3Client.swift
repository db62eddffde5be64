public import TusClient
import TusCrypto
public import TusHTTP1
public import TusLoop

#if canImport(Glibc)
    import Glibc
#endif

/// A request body the client can send again on a retry: `.stream` makes a fresh producer per attempt (the part
/// uploads re-read their spill file), so retrying never needs the bytes in memory.
public enum S3RequestBody {
    case none
    case bytes([UInt8])
    case stream(length: Int64, makeProducer: () -> any HTTPBodyProducer)
}

public struct S3Request {
    public var method: HTTPMethod
    /// Object key; nil addresses the bucket.
    public var key: String?
    /// Raw (unencoded) query parameters.
    public var query: [(String, String)]
    /// Extra headers (signed along with host and x-amz-*).
    public var headers: [(String, String)]
    public var body: S3RequestBody
    /// How long the request may make no progress; nil: `--s3-timeout`. For requests whose answer comes only when
    /// S3 has done long work of its own (an `UploadPartCopy` sends nothing until the copy is done).
    public var timeoutMilliseconds: UInt64?

    public init(
        method: HTTPMethod, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
        body: S3RequestBody = .none, timeoutMilliseconds: UInt64? = nil
    ) {
        self.method = method
        self.key = key
        self.query = query
        self.headers = headers
        self.body = body
        self.timeoutMilliseconds = timeoutMilliseconds
    }
}

public enum S3Error: Error, CustomStringConvertible, Equatable {
    /// S3 answered with an error status (code and message from its XML body when there is one).
    case status(Int, code: String, message: String)
    /// No usable answer: connect failure, timeout, reset, malformed response.
    case transport(String)
    case cancelled

    public var description: String {
        switch self {
        case .status(let status, let code, let message): "S3 \(status) \(code) \(message)"
        case .transport(let message): "S3 unreachable: \(message)"
        case .cancelled: "S3 request cancelled"
        }
    }

    public var statusCode: Int? {
        if case .status(let status, _, _) = self { return status }
        return nil
    }

    /// Worth another attempt: the network, a 5xx, throttling.
    var isRetryable: Bool {
        switch self {
        case .transport: return true
        case .cancelled: return false
        case .status(let status, let code, _):
            return status >= 500 || status == 429 || code == "SlowDown" || code == "RequestTimeout"
                || code == "RequestTimeTooSkewed"
        }
    }

    /// How the store reports it: unreachable or overloaded S3 is `unavailable` (clients get 503 and retry).
    var storeError: StoreErrorKind {
        switch self {
        case .transport, .cancelled: return .unavailable
        case .status(let status, let code, _):
            if status == 404 { return .notFound }
            if status >= 500 || status == 429 || code == "SlowDown" { return .unavailable }
            return .io
        }
    }

    enum StoreErrorKind { case unavailable, notFound, io }
}

/// A 2xx answer.
public struct S3Response {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders, body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// The seam between the S3 stores and the network: send one request, get the answer (or stream its body).
/// `S3Client` is the real one; tests put an in-memory S3 here. Kept this narrow so that the client can later sit
/// on the shared `HTTPClientPool`.
public protocol S3Transport: AnyObject, Sendable {
    var configuration: S3Configuration { get }

    /// `completion` runs on `loop` once: a 2xx response (body collected unless `streamBody` takes it, calling
    /// `resume` when it may deliver more) or why there is none (non-2xx answers are `S3Error.status`).
    @discardableResult
    func send(
        _ request: S3Request, on loop: EventLoop,
        streamBody: ((_ bytes: [UInt8], _ resume: @escaping () -> Void) -> Void)?,
        completion: @escaping (Result<S3Response, S3Error>) -> Void
    ) -> S3RequestHandle
}

extension S3Transport {
    @discardableResult
    func send(
        _ request: S3Request, on loop: EventLoop, completion: @escaping (Result<S3Response, S3Error>) -> Void
    ) -> S3RequestHandle {
        send(request, on: loop, streamBody: nil, completion: completion)
    }
}

/// A request in flight; `cancel` abandons it (its connection is closed, no retry follows, and the completion
/// gets `.cancelled`).
public final class S3RequestHandle {
    fileprivate var connection: HTTPClientConnection?
    /// What a transport other than `S3Client` does on `cancel` (it must then complete with `.cancelled`).
    public var onCancel: (() -> Void)?

    public init() {}
    fileprivate var retryTimer: TusLoop.Timer?
    /// Completes the request as cancelled while it waits for its next attempt.
    fileprivate var cancelDuringBackoff: (() -> Void)?
    public fileprivate(set) var isCancelled = false

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

/// The S3 store's HTTP side: signs each request (SigV4, header form), sends it on a keep-alive connection of the
/// caller's loop, and retries with exponential backoff what may succeed the next time.
///
/// Narrow on purpose (`send` a request, get the response or stream its body) so that it can be moved onto the
/// shared `HTTPClientPool` (branch `ops`) when that lands: only `acquire`/`release` would change.
///
/// Threading: `send` is called on a loop thread, and everything of a connection stays on that loop. The only
/// shared state is the loop → idle connections map (a pthread mutex, as in `RedisClient`).
public final class S3Client: S3Transport {
    public let configuration: S3Configuration
    private let signer: SigV4Signer
    private let pools = ConnectionPools()
    private let tls: TLSContextBox?
    /// Idle keep-alive connections kept per loop.
    static let maxIdlePerLoop = 16

    public init(configuration: S3Configuration) throws {
        self.configuration = configuration
        signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region, service: "s3")
        tls = configuration.isTLS ? TLSContextBox(try TLSContext.client(caFile: nil, insecure: false)) : nil
    }

    /// Sends `request`; `completion` runs on `loop` once, with a 2xx response (its body collected unless
    /// `streamBody` takes it) or why there is none. Non-2xx answers become `S3Error.status`.
    @discardableResult
    public func send(
        _ request: S3Request, on loop: EventLoop,
        streamBody: ((_ bytes: [UInt8], _ resume: @escaping () -> Void) -> Void)?,
        completion: @escaping (Result<S3Response, S3Error>) -> Void
    ) -> S3RequestHandle {
        let handle = S3RequestHandle()
        attempt(request, number: 1, on: loop, handle: handle, streamBody: streamBody) { result in
            completion(result.map { S3Response(status: $0.statusCode, headers: $0.headers, body: $0.body) })
        }
        return handle
    }

    private func attempt(
        _ request: S3Request, number: Int, on loop: EventLoop, handle: S3RequestHandle,
        streamBody: ((_ bytes: [UInt8], _ resume: @escaping () -> Void) -> Void)?,
        completion: @escaping (Result<HTTPClientResponse, S3Error>) -> Void
    ) {
        guard !handle.isCancelled else { return completion(.failure(.cancelled)) }
        var receivedBody = false
        let finish: (Result<HTTPClientResponse, S3Error>, _ mayRetry: Bool) -> Void = { [self] result, mayRetry in
            handle.connection = nil
            if handle.isCancelled { return completion(.failure(.cancelled)) }
            guard case .failure(let error) = result, mayRetry, error.isRetryable, number < configuration.maxAttempts,
                !receivedBody
            else { return completion(result) }
            // 100 ms, 200 ms, 400 ms... (capped at 5 s) with up to 50% jitter, so that many writers hit by one
            // outage do not come back in lockstep.
            let base: UInt64 = min(5_000, 100 << UInt64(min(number - 1, 10)))
            let delay = base / 2 + UInt64.random(in: 0...(base / 2))
            handle.cancelDuringBackoff = { completion(.failure(.cancelled)) }
            handle.retryTimer = loop.schedule(afterMilliseconds: delay) { [self] in
                handle.retryTimer = nil
                handle.cancelDuringBackoff = nil
                attempt(
                    request, number: number + 1, on: loop, handle: handle, streamBody: streamBody,
                    completion: completion)
            }
        }
        acquire(on: loop) { [self] acquired in
            guard !handle.isCancelled else {
                if case .success(let (connection, _)) = acquired { release(connection) }
                return completion(.failure(.cancelled))
            }
            let connection: HTTPClientConnection
            let reused: Bool
            switch acquired {
            case .failure(let error): return finish(.failure(.transport(error.description)), true)
            case .success(let (got, wasReused)):
                connection = got
                reused = wasReused
            }
            handle.connection = connection
            let (head, body) = prepare(request)
            let handling: HTTPResponseBodyHandling
            if let streamBody {
                handling = .stream { _, bytes, resume in
                    receivedBody = true
                    streamBody(bytes, resume)
                }
            } else {
                handling = .collect
            }
            connection.idleTimeoutMilliseconds = request.timeoutMilliseconds ?? configuration.timeoutMilliseconds
            connection.send(head, body: body, responseBody: handling) { [self] result in
                switch result {
                case .failure(let error):
                    // A keep-alive connection the server closed meanwhile: try again at once, uncounted.
                    if reused, case .closedBeforeResponse(0) = error, !handle.isCancelled {
                        handle.connection = nil
                        return attempt(
                            request, number: number, on: loop, handle: handle, streamBody: streamBody,
                            completion: completion)
                    }
                    finish(.failure(.transport(error.description)), true)
                case .success(let response):
                    release(connection)
                    guard (200..<300).contains(response.statusCode) else {
                        let text = String(decoding: response.body, as: UTF8.self)
                        let parsed = S3Responses.error(from: text)
                        return finish(
                            .failure(
                                .status(
                                    response.statusCode, code: parsed?.code ?? "",
                                    message: parsed?.message ?? response.head.status.reason)), true)
                    }
                    finish(.success(response), false)
                }
            }
        }
    }

    /// The signed head and the body for one attempt.
    private func prepare(_ request: S3Request) -> (HTTPClientRequestHead, HTTPClientRequestBody) {
        let path = configuration.path(key: request.key)
        let query = SigV4Signer.canonicalQueryString(request.query)
        let amzDate = SigV4Signer.amzDate(unixSeconds: Int64(time(nil)))
        let payloadHash: String
        let body: HTTPClientRequestBody
        switch request.body {
        case .none:
            payloadHash = SigV4Signer.emptyPayloadHash
            body = .none
        case .bytes(let bytes):
            payloadHash = StreamingDigest.digest(.sha256, of: bytes).lowercaseHex
            body = .bytes(bytes)
        case .stream(let length, let makeProducer):
            payloadHash = SigV4Signer.unsignedPayload
            body = .stream(length: length, makeProducer())
        }
        var signed: [(String, String)] = [
            ("host", configuration.authority), ("x-amz-date", amzDate), ("x-amz-content-sha256", payloadHash),
        ]
        if let token = configuration.credentials.sessionToken { signed.append(("x-amz-security-token", token)) }
        signed += request.headers
        let authorization = signer.authorization(
            method: request.method.rawValue, canonicalPath: path, query: request.query, headers: signed,
            payloadHash: payloadHash, amzDate: amzDate)
        var headers = HTTPHeaders()
        for (name, value) in signed { headers.add(name == "host" ? "Host" : name, value) }
        headers.add("Authorization", authorization)
        if case .none = request.body, [.PUT, .POST].contains(request.method) { headers.add("Content-Length", "0") }
        let target = query.isEmpty ? path : path + "?" + query
        return (HTTPClientRequestHead(method: request.method, path: target, headers: headers), body)
    }

    // MARK: Connections (the part a shared pool would replace)

    private func acquire(
        on loop: EventLoop, _ completion: @escaping (Result<(HTTPClientConnection, Bool), HTTPClientError>) -> Void
    ) {
        let pool = pools.pool(of: loop)
        while let idle = pool.idle.popLast() {
            if idle.isReusable { return completion(.success((idle, true))) }
            idle.close()
        }
        HTTPClientConnection.connect(
            loop: loop, host: configuration.connectHost, port: configuration.port, tls: tls?.context,
            authority: configuration.authority, connectTimeoutMilliseconds: configuration.timeoutMilliseconds
        ) { result in
            completion(result.map { ($0, false) })
        }
    }

    private func release(_ connection: HTTPClientConnection) {
        guard connection.isReusable else { return connection.close() }
        let pool = pools.pool(of: connection.loop)
        if pool.idle.count < Self.maxIdlePerLoop {
            pool.idle.append(connection)
        } else {
            connection.close()
        }
    }

    /// Closes `loop`'s idle connections (the server's `loopWillStop`); requests still running end on their own.
    public func shutdown(on loop: EventLoop) {
        let pool = pools.pool(of: loop)
        for connection in pool.idle { connection.close() }
        pool.idle.removeAll()
    }
}

/// Idle connections of one loop; touched only on that loop.
private final class LoopPool {
    var idle: [HTTPClientConnection] = []
}

/// Loop → pool, the one map every loop thread reads (pthread mutex, as `RedisClient` does, so TSan sees it).
private final class ConnectionPools: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var map: [ObjectIdentifier: LoopPool] = [:]

    init() { pthread_mutex_init(lock, nil) }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    func pool(of loop: EventLoop) -> LoopPool {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        if let pool = map[ObjectIdentifier(loop)] { return pool }
        let pool = LoopPool()
        map[ObjectIdentifier(loop)] = pool
        return pool
    }
}

/// `TLSContext` is immutable after setup and shared by every loop's connections.
private final class TLSContextBox: @unchecked Sendable {
    let context: TLSContext
    init(_ context: TLSContext) { self.context = context }
}
