public import TusClient
import TusCrypto
public import TusCore
public import TusHTTP1
import TusLoop

/// `--hooks-http URL`: every hook is a JSON POST to one endpoint over keep-alive connections from the calling
/// loop (`HTTPClientPoolGroup`), so a hook costs no thread and no new TCP handshake. A non-2xx answer is a
/// failure (tusd: "unexpected response code from hook endpoint"); failures of retry-safe calls and 5xx
/// answers are retried `retries` times with `backoff` between attempts (tusd `--hooks-http-retry`,
/// `--hooks-http-backoff`).
public final class HTTPHookTransport: HookTransport {
    public let endpoint: TusURL
    let pools: HTTPClientPoolGroup

    public init(endpoint: TusURL, retries: Int, backoffMilliseconds: UInt64, timeoutMilliseconds: UInt64) throws {
        self.endpoint = endpoint
        var configuration = HTTPClientPoolConfiguration(
            host: endpoint.host, port: endpoint.port,
            tls: endpoint.isTLS ? try TLSContext.client(caFile: nil, insecure: false) : nil)
        configuration.retry = RetryPolicy(retries: retries, backoff: .constant(backoffMilliseconds))
        configuration.requestTimeoutMilliseconds = timeoutMilliseconds
        configuration.connectTimeoutMilliseconds = min(timeoutMilliseconds, 5000)
        pools = HTTPClientPoolGroup(configuration: configuration)
    }

    public func handles(_ type: String) -> Bool { true }

    /// `subject` is in the JSON already; tusd's HTTP hooks send nothing else.
    public func invoke(
        _ type: String, payload: [UInt8], subject: HookSubject, forwardedHeaders: HTTPHeaders, retrySafe: Bool,
        on executor: any LoopExecutor, completion: @escaping (Result<[UInt8], HookFailure>) -> Void
    ) {
        guard let loop = executor.boundEventLoop else {
            return completion(.failure(HookFailure("HTTP hooks need a libuv loop")))
        }
        var head = HTTPClientRequestHead(method: .POST, path: endpoint.path)
        for field in forwardedHeaders { head.headers.add(field.name, field.value) }
        head.headers.set("Content-Type", "application/json")
        let endpoint = endpoint
        pools.pool(on: loop).send(head, body: payload, retrySafe: retrySafe) { result in
            switch result {
            case .failure(let error): completion(.failure(HookFailure("\(endpoint): \(error)")))
            case .success(let response) where !(200..<300).contains(response.statusCode):
                let text = String(decoding: response.body.prefix(200), as: UTF8.self)
                completion(.failure(HookFailure("unexpected response code from hook endpoint (\(response.statusCode)): \(text)")))
            case .success(let response): completion(.success(response.body))
            }
        }
    }

    /// Closes the calling loop's connections (at shutdown, on that loop).
    public func close(on executor: any LoopExecutor) {
        if let loop = executor.boundEventLoop { pools.close(on: loop) }
    }
}
