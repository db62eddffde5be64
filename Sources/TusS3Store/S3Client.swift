public import TusClient
import TusCrypto
import TusCore
public import TusHTTP1
public import TusLoop

#if canImport(Glibc)
    import Glibc
#endif

/// A request body the client can send again on a retry (the part uploads re-read their spill file).
public typealias S3RequestBody = ReplayableBody

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
public typealias S3RequestHandle = HTTPClientRequestHandle

/// The S3 store's HTTP side: S3 requests on the server's one outbound client (`HTTPClientPoolGroup`, a pool of
/// keep-alive connections per loop), signed by `SigV4RequestSigner` per attempt, retried by `S3Client.retryPolicy`.
///
/// Threading: `send` is called on a loop thread, and everything of a request stays on that loop.
public final class S3Client: S3Transport {
    public let configuration: S3Configuration
    private let pools: HTTPClientPoolGroup

    public init(configuration: S3Configuration) throws {
        self.configuration = configuration
        var pool = HTTPClientPoolConfiguration(
            host: configuration.connectHost, port: configuration.port,
            tls: configuration.isTLS ? try TLSContext.client(caFile: nil, insecure: false) : nil)
        pool.authority = configuration.authority
        pool.signer = SigV4RequestSigner(
            credentials: configuration.credentials, region: configuration.region, service: "s3",
            authority: configuration.authority)
        pool.retry = Self.retryPolicy(attempts: configuration.maxAttempts)
        pool.connectTimeoutMilliseconds = configuration.timeoutMilliseconds
        pool.requestTimeoutMilliseconds = configuration.timeoutMilliseconds
        // Every upload keeps up to `concurrency` part requests busy; beyond this many on one loop, requests queue.
        pool.maxConnectionsPerLoop = max(64, 16 * configuration.concurrency)
        pools = HTTPClientPoolGroup(configuration: pool)
    }

    /// `attempts` in all for the network, 5xx and throttling (429, SlowDown, RequestTimeout, a skewed clock),
    /// 100 ms, 200 ms, 400 ms... (at most 5 s) apart, with jitter.
    static func retryPolicy(attempts: Int) -> RetryPolicy {
        RetryPolicy(
            retries: max(0, attempts - 1),
            backoff: Backoff(initialMilliseconds: 100, maximumMilliseconds: 5_000, jitter: true),
            isRetryable: { outcome in
                switch outcome {
                // Any failure before a complete answer: S3 requests are idempotent, bodies are replayable.
                case .failure: true
                case .success(let response): S3Client.error(of: response)?.isRetryable ?? false
                }
            })
    }

    /// The error a non-2xx answer stands for (code and message from its XML body when there is one).
    static func error(of response: HTTPClientResponse) -> S3Error? {
        guard !(200..<300).contains(response.statusCode) else { return nil }
        let parsed = S3Responses.error(from: String(decoding: response.body, as: UTF8.self))
        return .status(
            response.statusCode, code: parsed?.code ?? "", message: parsed?.message ?? response.head.status.reason)
    }

    /// Sends `request`; `completion` runs on `loop` once, with a 2xx response (its body collected unless
    /// `streamBody` takes it) or why there is none. Non-2xx answers become `S3Error.status`.
    @discardableResult
    public func send(
        _ request: S3Request, on loop: EventLoop,
        streamBody: ((_ bytes: [UInt8], _ resume: @escaping () -> Void) -> Void)?,
        completion: @escaping (Result<S3Response, S3Error>) -> Void
    ) -> S3RequestHandle {
        let path = configuration.path(key: request.key)
        let query = SigV4Signer.canonicalQueryString(request.query)
        var head = HTTPClientRequestHead(method: request.method, path: query.isEmpty ? path : path + "?" + query)
        for (name, value) in request.headers { head.headers.add(name, value) }
        let outgoing = HTTPClientRequest(
            head: head, body: request.body, retrySafe: true, timeoutMilliseconds: request.timeoutMilliseconds,
            streamBody: streamBody)
        return pools.pool(on: loop).send(outgoing) { result in
            switch result {
            case .success(let response):
                if let error = Self.error(of: response) { return completion(.failure(error)) }
                completion(
                    .success(S3Response(status: response.statusCode, headers: response.headers, body: response.body)))
            case .failure(.cancelled): completion(.failure(.cancelled))
            case .failure(let error): completion(.failure(.transport(error.description)))
            }
        }
    }

    /// Closes `loop`'s connections (the server's `loopWillStop`); requests still running end on their own.
    public func shutdown(on loop: EventLoop) {
        pools.close(on: loop)
    }
}
