public import TusHTTP1
public import TusLoop
public import TusCrypto
import Dispatch
import Glibc

/// What the server said it supports (OPTIONS).
public struct ServerCapabilities: Sendable {
    public var versions: [String]
    public var extensions: [String]
    public var maxSize: Int64?
    public var checksumAlgorithms: [String]
}

/// HEAD of an upload.
public struct UploadStatus: Sendable {
    public var offset: Int64
    /// nil while the length is deferred.
    public var length: Int64?
    public var metadata: String?
}

/// A local file range to send as a request body.
public struct FileRange: Sendable {
    public var path: String
    public var offset: Int64
    public var length: Int64
    public init(path: String, offset: Int64, length: Int64) {
        self.path = path
        self.offset = offset
        self.length = length
    }
}

/// A synchronous tus client for tools and tests: each call runs on the client's own TusLoop thread (one
/// `HTTPClientConnection`, kept alive between calls to the same host) and blocks the caller until done.
/// Calls must not overlap (one at a time); progress callbacks run on the loop thread.
public final class TusClient: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// Sent with every request (e.g. Authorization).
        public var headers: HTTPHeaders = HTTPHeaders()
        /// Connect timeout and idle timeout per request (no byte moved for this long); 0 = none.
        public var timeoutSeconds: Double = 30
        public var caFile: String?
        public var insecure = false
        /// Receives "> request line/headers" and "< status/headers" lines (tus-cli -v).
        public var trace: (@Sendable (String) -> Void)?
        public init() {}
    }

    public let configuration: Configuration
    public let loop: EventLoop
    private var connection: HTTPClientConnection?
    private var connectionURLKey: String?
    private var tlsContext: TLSContext?

    public init(configuration: Configuration = Configuration()) throws(TusClientError) {
        self.configuration = configuration
        do {
            loop = try EventLoop()
        } catch {
            throw .localIO("cannot create event loop: \(error)")
        }
        loop.runOnNewThread(name: "tus-client")
    }

    deinit {
        shutdown()
    }

    private var isShutDown = false

    /// Closes the kept connection and ends the loop thread.
    public func shutdown() {
        guard !isShutDown else { return }
        isShutDown = true
        let box = UncheckedBox(self)
        let done = DispatchSemaphore(value: 0)
        loop.execute {
            box.value.connection?.close()
            box.value.connection = nil
            done.signal()
        }
        done.wait()
        loop.stop()
        loop.join()
    }

    // MARK: Raw requests

    public enum Body {
        case none
        case bytes([UInt8])
        case file(FileRange, checksum: DigestAlgorithm? = nil, onSent: (@Sendable (Int) -> Void)? = nil)
    }

    /// One request with keep-alive reuse. A reused connection the server closed meanwhile is retried once on a
    /// new connection (the request had not reached the server). `informational` hears each 1xx head on the loop
    /// thread as it arrives, so a caller learns a 104's upload URL even when the request then fails.
    public func perform(
        _ method: HTTPMethod, _ url: TusURL, headers: HTTPHeaders = HTTPHeaders(), body: Body = .none,
        responseBody: HTTPResponseBodyHandling = .collect,
        informational: (@Sendable (HTTPResponseHead) -> Void)? = nil
    ) throws(TusClientError) -> HTTPClientResponse {
        var head = HTTPClientRequestHead(method: method, path: url.path)
        for field in configuration.headers { head.headers.add(field.name, field.value) }
        for field in headers { head.headers.set(field.name, field.value) }
        if case .file(let range, let algorithm?, _) = body {
            let digest = try Self.digest(of: range, algorithm: algorithm)
            head.headers.set("Upload-Checksum", "\(algorithm.rawValue) \(Base64.encode(digest))")
        }
        let requestHead = head
        let result: Result<HTTPClientResponse, TusClientError> = runOnLoop { finish in
            self.attempt(
                requestHead, url: url, body: body, responseBody: responseBody, informational: informational,
                mayRetry: true, finish)
        }
        return try result.get()
    }

    private func runOnLoop<T>(_ work: @escaping (@escaping (T) -> Void) -> Void) -> T {
        let semaphore = DispatchSemaphore(value: 0)
        let slot = UncheckedBox<T?>(nil)
        let job = UncheckedBox(work)
        loop.execute {
            job.value { value in
                slot.value = value
                semaphore.signal()
            }
        }
        semaphore.wait()
        return slot.value!
    }

    private func attempt(
        _ head: HTTPClientRequestHead, url: TusURL, body: Body, responseBody: HTTPResponseBodyHandling,
        informational: (@Sendable (HTTPResponseHead) -> Void)?, mayRetry: Bool,
        _ finish: @escaping (Result<HTTPClientResponse, TusClientError>) -> Void
    ) {
        obtainConnection(for: url) { result in
            switch result {
            case .failure(let error):
                finish(.failure(error))
            case .success((let connection, let isReused)):
                self.prepareBody(body) { prepared in
                    switch prepared {
                    case .failure(let error):
                        return finish(.failure(error))
                    case .success(let (requestBody, file)):
                        self.traceRequest(head, connection: connection, body: requestBody)
                        let interim: (HTTPResponseHead) -> Void = { interimHead in
                            self.traceResponseHead(interimHead)
                            informational?(interimHead)
                        }
                        connection.send(
                            head, body: requestBody, responseBody: responseBody, informational: interim
                        ) { result in
                            file?.close()
                            switch result {
                            case .success(let response):
                                self.traceResponse(response)
                                finish(.success(response))
                            case .failure(.closedBeforeResponse(receivedBytes: 0)) where isReused && mayRetry,
                                .failure(.io) where isReused && mayRetry:
                                self.attempt(
                                    head, url: url, body: body, responseBody: responseBody,
                                    informational: informational, mayRetry: false, finish)
                            case .failure(.bodyProducer(let error)):
                                if let changed = error as? FileChangedError {
                                    finish(.failure(.fileChanged(changed.message)))
                                } else {
                                    finish(.failure(.localIO("reading the file failed: \(error)")))
                                }
                            case .failure(let error):
                                finish(.failure(.network(error)))
                            }
                        }
                    }
                }
            }
        }
    }

    private func prepareBody(
        _ body: Body, _ completion: @escaping (Result<(HTTPClientRequestBody, AsyncFile?), TusClientError>) -> Void
    ) {
        switch body {
        case .none: completion(.success((.none, nil)))
        case .bytes(let bytes): completion(.success((.bytes(bytes), nil)))
        case .file(let range, _, let onSent):
            AsyncFile.open(loop: loop, path: range.path, flags: .readOnly) { result in
                switch result {
                case .failure(let error):
                    completion(.failure(.localIO("cannot open \(range.path): \(error)")))
                case .success(let file):
                    let producer = FileBodyProducer(file: file, offset: range.offset, length: range.length)
                    if let onSent { producer.onRead = { onSent($0) } }
                    completion(.success((.stream(length: range.length, producer), file)))
                }
            }
        }
    }

    private func obtainConnection(
        for url: TusURL, _ completion: @escaping (Result<(HTTPClientConnection, Bool), TusClientError>) -> Void
    ) {
        let key = "\(url.isTLS) \(url.host) \(url.port)"
        if let connection, connectionURLKey == key, connection.isReusable {
            return completion(.success((connection, true)))
        }
        connection?.close()
        connection = nil
        var tls: TLSContext? = nil
        if url.isTLS {
            do {
                if tlsContext == nil {
                    tlsContext = try TLSContext.client(caFile: configuration.caFile, insecure: configuration.insecure)
                }
                tls = tlsContext
            } catch {
                return completion(.failure(.usage("TLS setup: \(error)")))
            }
        }
        let timeout = UInt64(max(0, configuration.timeoutSeconds) * 1000)
        HTTPClientConnection.connect(
            loop: loop, host: url.host, port: url.port, tls: tls, authority: url.authority,
            connectTimeoutMilliseconds: timeout
        ) { result in
            switch result {
            case .success(let connection):
                connection.idleTimeoutMilliseconds = timeout
                self.connection = connection
                self.connectionURLKey = key
                completion(.success((connection, false)))
            case .failure(.resolve(let host, let message)):
                completion(.failure(.network(.resolve(host: host, message: message))))
            case .failure(.tls(let error)):
                completion(.failure(.network(.tls(error))))
            case .failure(let error):
                completion(.failure(.network(error)))
            }
        }
    }

    private func traceRequest(_ head: HTTPClientRequestHead, connection: HTTPClientConnection, body: HTTPClientRequestBody) {
        guard let trace = configuration.trace else { return }
        trace("> \(head.method.rawValue) \(head.path) HTTP/1.1")
        if !head.headers.contains("Host") { trace("> Host: \(connection.authority)") }
        for field in head.headers { trace("> \(field.name): \(field.value)") }
        switch body {
        case .none: break
        case .bytes(let bytes): if !head.headers.contains("Content-Length") { trace("> Content-Length: \(bytes.count)") }
        case .stream(let length, _):
            if !head.headers.contains("Content-Length") { trace("> Content-Length: \(length)") }
        }
        trace(">")
    }

    private func traceResponse(_ response: HTTPClientResponse) {
        traceResponseHead(response.head)
    }

    private func traceResponseHead(_ head: HTTPResponseHead) {
        guard let trace = configuration.trace else { return }
        trace("< HTTP/\(head.version.major).\(head.version.minor) \(head.status)")
        for field in head.headers { trace("< \(field.name): \(field.value)") }
        trace("<")
    }

    /// Reads the range synchronously to hash it: the checksum goes in a header, so it is needed before the body.
    static func digest(of range: FileRange, algorithm: DigestAlgorithm) throws(TusClientError) -> [UInt8] {
        let digest = StreamingDigest(algorithm)
        let descriptor = open(range.path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .localIO("cannot open \(range.path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var position = range.offset
        let end = range.offset + range.length
        while position < end {
            let want = Int(min(Int64(buffer.count), end - position))
            let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, want, off_t(position)) }
            guard count > 0 else {
                throw count == 0
                    ? .fileChanged("\(range.path) is shorter than expected")
                    : .localIO("read \(range.path): \(String(cString: strerror(errno)))")
            }
            buffer.withUnsafeBytes { digest.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            position += Int64(count)
        }
        return digest.finalize()
    }
}

/// Moves loop-confined values through `EventLoop.execute`'s `@Sendable` closures; the loop serializes access.
final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
