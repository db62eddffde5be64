/// HTTPClientConnection: one HTTP/1.1 client connection on a TusLoop `EventLoop`, shared by tus-cli (through
/// `TusClient`) and tus-bench (directly).
///
/// Threading: every method and every callback runs on the loop thread (call `connect` from a job given to
/// `loop.execute {}` or before `loop.run()`). Completions are called exactly once.
///
/// Usage (bench):
/// ```swift
/// HTTPClientConnection.connect(loop: loop, host: "127.0.0.1", port: 1080, tls: nil) { result in
///     guard case .success(let connection) = result else { return }
///     var head = HTTPClientRequestHead(method: .POST, path: "/files/")
///     head.headers.add("Tus-Resumable", "1.0.0")
///     head.headers.add("Upload-Length", "1048576")
///     connection.send(head, body: .none) { result in          // Result<HTTPClientResponse, HTTPClientError>
///         let location = try? result.get().headers["Location"]
///         // PATCH with a streamed body: `producer` is asked for the next fragment only after the previous
///         // one was written to the socket (backpressure); answer nil once `length` bytes were delivered.
///         connection.send(patchHead, body: .stream(length: 1048576, producer)) { ... }
///     }
/// }
/// ```
/// - Keep-alive: after a completed response, `isReusable` tells whether the next `send` may use this connection
///   (server did not say `Connection: close`, the body was fully read and fully sent). One request at a time,
///   no pipelining: `send` while a request is outstanding is a programming error.
/// - Bodies: `.none`, `.bytes([UInt8])` or `.stream(length:, producer)` (a `HTTPBodyProducer`, or a
///   `FileBodyProducer` that streams a file range through `AsyncFile` with one reused buffer). `Content-Length`
///   and `Host` are added unless the head already has them; `.none` on POST/PATCH/PUT sends `Content-Length: 0`.
/// - Responses: `Content-Length`, chunked, or read-until-close bodies (none for HEAD, 1xx, 204, 304); interim
///   1xx responses go to `informational` when given (the resumable-upload draft's 104 carries the upload URL before
///   the body is sent, the one thing a client whose connection breaks mid-body needs) and are skipped otherwise.
///   The body is collected into `HTTPClientResponse.body` (bounded by `maxCollectedBodyBytes`), or streamed with
///   `responseBody: .stream { head, bytes, resume in ... }`: the connection stops reading until every `resume` was
///   called.
/// - A response that arrives while the request body is still being sent (e.g. 460 checksum or 409) completes the
///   exchange at once; the connection is then closed, since the rest of the body can no longer be framed.
/// - Timeouts: `idleTimeoutMilliseconds` (0 = none) fails the exchange with `.timedOut` when neither a read nor
///   a write completed for that long.
/// - TLS: pass `tls: try TLSContext.client(caFile:insecure:)`; the connect completion runs after the handshake.
/// - Host names other than IP literals are resolved by `TCPStream.connect` on libuv's threadpool (the loop never
///   blocks); bench resolves once up front with `HTTPClientConnection.resolve(host:)` and passes the literal, so
///   that the resolver stays out of its measurements.
public import TusCore
public import TusHTTP1
public import TusLoop
public import TusCrypto
public import TusTransport
import Glibc

/// The request line and header fields; `path` is the request target (path and query).
public struct HTTPClientRequestHead: Sendable {
    public var method: HTTPMethod
    public var path: String
    public var headers: HTTPHeaders

    public init(method: HTTPMethod, path: String, headers: HTTPHeaders = HTTPHeaders()) {
        self.method = method
        self.path = path
        self.headers = headers
    }
}

/// Supplies a streamed request body. Called on the loop thread; the next call comes only after the fragment
/// given before has been written (so one `ByteChunk` may be reused for every fragment).
public protocol HTTPBodyProducer: AnyObject {
    /// Deliver the next fragment, `nil` at the end, or an error to abort the request (the connection is closed).
    func nextFragment(_ deliver: @escaping (Result<BodyFragment?, any Error>) -> Void)
}

public enum HTTPClientRequestBody {
    case none
    case bytes([UInt8])
    /// Exactly `length` bytes from `producer`, sent with `Content-Length: length`.
    case stream(length: Int64, any HTTPBodyProducer)
}

public struct HTTPClientResponse: Sendable {
    public var head: HTTPResponseHead
    /// Empty when the body was streamed to a `.stream` handler.
    public var body: [UInt8]

    public var status: HTTPStatus { head.status }
    public var statusCode: Int { head.status.code }
    public var headers: HTTPHeaders { head.headers }
}

/// How the response body is consumed.
public enum HTTPResponseBodyHandling {
    case collect
    /// `bytes` is a copy the handler owns; call `resume` when it was processed (reading stops until then).
    /// Called only for 2xx responses (`head` tells which); other bodies are collected as usual (error texts).
    case stream((_ head: HTTPResponseHead, _ bytes: [UInt8], _ resume: @escaping () -> Void) -> Void)
}

public enum HTTPClientError: Error, CustomStringConvertible {
    case resolve(host: String, message: String)
    case connect(UVError)
    case io(UVError)
    case tls(TLSError)
    case malformedResponse(String)
    /// The server closed the connection before a complete response; `receivedBytes` says whether any part of
    /// a response came (a reused keep-alive connection the server closed meanwhile gives 0).
    case closedBeforeResponse(receivedBytes: Int)
    case timedOut
    case bodyProducer(any Error)
    case responseTooLarge(Int)

    public var description: String {
        switch self {
        case .resolve(let host, let message): return "cannot resolve host \(host): \(message)"
        case .connect(let error): return "cannot connect: \(error)"
        case .io(let error): return "connection error: \(error)"
        case .tls(let error): return "TLS: \(error)"
        case .malformedResponse(let message): return "malformed HTTP response: \(message)"
        case .closedBeforeResponse(let received):
            return received == 0
                ? "server closed the connection without a response"
                : "server closed the connection in the middle of a response"
        case .timedOut: return "timed out"
        case .bodyProducer(let error): return "reading request body failed: \(error)"
        case .responseTooLarge(let limit): return "response body larger than \(limit) bytes"
        }
    }

    /// Whether trying again (new connection) might succeed: network trouble, not a local or protocol bug.
    public var isTransient: Bool {
        switch self {
        case .connect, .io, .closedBeforeResponse, .timedOut: return true
        case .resolve, .tls, .malformedResponse, .bodyProducer, .responseTooLarge: return false
        }
    }
}

public final class HTTPClientConnection: SecureStreamDelegate {
    public let loop: EventLoop
    /// The `Host` header value ("host" or "host:port").
    public let authority: String
    public var idleTimeoutMilliseconds: UInt64 = 0
    public var maxCollectedBodyBytes = 16 * 1024 * 1024
    public private(set) var isClosed = false
    /// Bytes of request head and body handed to the socket, over the connection's life (for bench).
    public private(set) var bytesSent: Int64 = 0
    public private(set) var bytesReceived: Int64 = 0
    /// Of `bytesSent`, the body bytes sendfile(2) moved from a file (`FileRegionBodyProducer`), for bench and tests.
    public private(set) var bytesSentFromFiles: Int64 = 0

    /// Plain or TLS: this class sees plaintext only.
    private let stream: SecureStream
    /// Where the stream puts what it received (decrypted, for TLS).
    private let readBuffer: UnsafeMutableRawBufferPointer
    private var exchange: Exchange?
    private var connectCompletion: ((Result<HTTPClientConnection, HTTPClientError>) -> Void)?
    private var keepsAlive = true
    private var timer: TusLoop.Timer?
    private var lastProgress: UInt64 = 0
    private var pendingResumes = 0
    private var sendfileProbe: ByteChunk?

    /// Whether a new `send` may go on this connection now.
    public var isReusable: Bool { !isClosed && exchange == nil && keepsAlive }

    private init(loop: EventLoop, stream: SecureStream, authority: String) {
        self.loop = loop
        self.stream = stream
        self.authority = authority
        readBuffer = .allocate(byteCount: 64 * 1024, alignment: 16)
    }

    deinit {
        readBuffer.deallocate()
    }

    /// Blocking getaddrinfo for names that are not IP literals, for callers off any loop (bench resolves once before
    /// it starts its loops); returns a literal `TCPStream.connect` accepts. On a loop, pass the name to `connect`.
    public static func resolve(host: String) throws(HTTPClientError) -> String {
        if host == "localhost" || host.contains(":") || host.utf8.allSatisfy({ $0 == 46 || ($0 >= 48 && $0 <= 57) }) {
            return host
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>? = nil
        let status = getaddrinfo(host, nil, &hints, &result)
        guard status == 0, let first = result else {
            throw .resolve(host: host, message: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(result) }
        var entry: UnsafeMutablePointer<addrinfo>? = first
        var fallback: String? = nil
        while let current = entry {
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
            if current.pointee.ai_family == AF_INET {
                var address = current.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    $0.pointee.sin_addr
                }
                inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
                return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }  // prefer IPv4: test servers bind 0.0.0.0
            } else if current.pointee.ai_family == AF_INET6, fallback == nil {
                var address = current.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    $0.pointee.sin6_addr
                }
                inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
                fallback = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            }
            entry = current.pointee.ai_next
        }
        guard let fallback else { throw .resolve(host: host, message: "no address") }
        return fallback
    }

    /// Connects (and, with `tls`, completes the TLS handshake, checking the certificate against `serverName`,
    /// default `host`). `authority` defaults to "host:port".
    public static func connect(
        loop: EventLoop, host: String, port: Int, tls: TLSContext?, serverName: String? = nil,
        authority: String? = nil, connectTimeoutMilliseconds: UInt64 = 0,
        _ completion: @escaping (Result<HTTPClientConnection, HTTPClientError>) -> Void
    ) {
        _ = ignoreBrokenPipe
        let hostForHeader = host.contains(":") ? "[\(host)]" : host
        let authorityValue = authority ?? "\(hostForHeader):\(port)"
        var isDone = false
        var connectTimer: TusLoop.Timer? = nil
        if connectTimeoutMilliseconds > 0 {
            connectTimer = loop.schedule(afterMilliseconds: connectTimeoutMilliseconds) {
                guard !isDone else { return }
                isDone = true
                completion(.failure(.timedOut))
            }
        }
        // The stream's deadline closes a socket whose connect hangs; the timer above also covers the TLS handshake.
        TCPStream.connect(loop: loop, host: host, port: port, timeoutMilliseconds: connectTimeoutMilliseconds) {
            result in
            switch result {
            case .failure(let error):
                connectTimer?.stop()
                guard !isDone else { return }
                isDone = true
                if error == .timedOut {
                    completion(.failure(.timedOut))
                } else if error.isResolverError {
                    completion(.failure(.resolve(host: host, message: "\(error)")))
                } else {
                    completion(.failure(.connect(error)))
                }
            case .success(let stream):
                guard !isDone else { return stream.close() }
                stream.setNoDelay(true)
                let secure = SecureStream(tcp: stream, tls: tls, serverName: serverName ?? host)
                let connection = HTTPClientConnection(loop: loop, stream: secure, authority: authorityValue)
                secure.delegate = connection
                connection.idleTimeoutMilliseconds = connectTimeoutMilliseconds
                let finish: (Result<HTTPClientConnection, HTTPClientError>) -> Void = { result in
                    connectTimer?.stop()
                    guard !isDone else {
                        if case .success(let connection) = result { connection.close() }
                        return
                    }
                    isDone = true
                    completion(result)
                }
                if secure.isSecure {
                    connection.connectCompletion = finish
                    secure.startHandshake()
                } else {
                    finish(.success(connection))
                }
            }
        }
    }

    /// Closes the socket; an outstanding exchange fails with `.io(.cancelled)`.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        timer?.close()
        timer = nil
        stream.sendCloseNotify()
        stream.close()
        if let exchange {
            self.exchange = nil
            exchange.completion(.failure(.io(.cancelled)))
        }
        if let connectCompletion {
            self.connectCompletion = nil
            connectCompletion(.failure(.io(.cancelled)))
        }
    }

    // MARK: Sending

    private final class Exchange {
        let head: HTTPClientRequestHead
        let completion: (Result<HTTPClientResponse, HTTPClientError>) -> Void
        let bodyHandling: HTTPResponseBodyHandling
        let informational: ((HTTPResponseHead) -> Void)?
        var producer: (any HTTPBodyProducer)?
        var remainingBodyBytes: Int64 = 0
        var isRequestSent = false
        var headParser = ResponseHeadParser()
        var responseHead: HTTPResponseHead?
        var decoder: BodyDecoder?
        var readsUntilClose = false
        var body: [UInt8] = []
        var receivedBytes = 0
        var isStreamingBody = false

        init(
            head: HTTPClientRequestHead, bodyHandling: HTTPResponseBodyHandling,
            informational: ((HTTPResponseHead) -> Void)?,
            completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void
        ) {
            self.head = head
            self.bodyHandling = bodyHandling
            self.informational = informational
            self.completion = completion
        }
    }

    /// Sends one request and reports its response. See the file's doc comment for framing and backpressure.
    /// `informational` hears each 1xx head (but 101) in arrival order, before `completion`, also while the body is
    /// still being sent.
    public func send(
        _ head: HTTPClientRequestHead, body: HTTPClientRequestBody, responseBody: HTTPResponseBodyHandling = .collect,
        informational: ((HTTPResponseHead) -> Void)? = nil,
        _ completion: @escaping (Result<HTTPClientResponse, HTTPClientError>) -> Void
    ) {
        loop.assertOnLoopThreadForClient()
        precondition(exchange == nil, "HTTPClientConnection.send while a request is outstanding")
        guard !isClosed else { return completion(.failure(.io(.cancelled))) }
        let exchange = Exchange(
            head: head, bodyHandling: responseBody, informational: informational, completion: completion)
        self.exchange = exchange
        var headers = head.headers
        if !headers.contains("Host") { headers.add("Host", authority) }
        var bodyBytes: [UInt8] = []
        switch body {
        case .none:
            if [.POST, .PATCH, .PUT].contains(head.method), !headers.contains("Content-Length") {
                headers.add("Content-Length", "0")
            }
        case .bytes(let bytes):
            if !headers.contains("Content-Length") { headers.add("Content-Length", String(bytes.count)) }
            bodyBytes = bytes
        case .stream(let length, let producer):
            if !headers.contains("Content-Length") { headers.add("Content-Length", String(length)) }
            exchange.producer = producer
            exchange.remainingBodyBytes = length
        }
        var text = "\(head.method.rawValue) \(head.path) HTTP/1.1\r\n"
        for field in headers { text += "\(field.name): \(field.value)\r\n" }
        text += "\r\n"
        var bytes = Array(text.utf8)
        bytes.append(contentsOf: bodyBytes)
        touch()
        startTimerIfNeeded()
        if !stream.isReading { stream.startReading() }
        write(bytes) { [weak self] error in
            guard let self, self.exchange === exchange else { return }
            if let error { return self.writeFailed(error, exchange) }
            self.sendNextFragment(of: exchange)
        }
    }

    private func sendNextFragment(of exchange: Exchange) {
        guard let producer = exchange.producer, exchange.remainingBodyBytes > 0 else {
            exchange.producer = nil
            exchange.isRequestSent = true
            return
        }
        if let regions = producer as? any FileRegionBodyProducer, !stream.isSecure, stream.writeQueueSize == 0 {
            regions.nextFileRegion { [weak self] region in
                guard let self, self.exchange === exchange else { return }
                guard let region else { return self.sendFragment(from: producer, of: exchange) }
                self.sendFile(region, from: regions, of: exchange)
            }
            return
        }
        sendFragment(from: producer, of: exchange)
    }

    /// Sends what the socket takes of `region` now with sendfile(2), on the loop thread. It does not wait: the
    /// socket is non-blocking, and the bytes are in the page cache (a spill file written moments ago; tus-cli's
    /// file, unless it is not cached, see `FileBodyProducer`). When the socket is full, the next few KiB go through
    /// `uv_write` instead, since libuv tells a stream's user when the socket drained only by completing a write;
    /// sendfile resumes after it.
    private func sendFile(_ region: FileRegion, from producer: any FileRegionBodyProducer, of exchange: Exchange) {
        let socket = stream.tcp.descriptor
        let count = Int(min(Int64(region.count), exchange.remainingBodyBytes, Int64(Self.sendfileTurnBytes)))
        var offset = off_t(region.offset)
        var sent = 0
        var failure: Int32 = 0
        while sent < count {
            let moved = Glibc.sendfile(socket, region.descriptor, &offset, count - sent)
            if moved > 0 {
                sent += moved
            } else if moved == 0 {
                failure = -1
                break
            } else if errno != EINTR {
                if errno != EAGAIN { failure = errno }
                break
            }
        }
        if sent > 0 {
            producer.didSendFileRegionBytes(sent)
            exchange.remainingBodyBytes -= Int64(sent)
            bytesSent += Int64(sent)
            bytesSentFromFiles += Int64(sent)
            touch()
        }
        if failure == -1 { return fail(.bodyProducer(FileChangedError(message: "file ended early at byte \(offset)"))) }
        if failure != 0 { return writeFailed(UVError(code: -failure), exchange) }
        let left = Int(min(Int64(region.count - sent), exchange.remainingBodyBytes))
        guard left > 0 else { return sendNextFragment(of: exchange) }
        // A full socket, or this turn's share sent: a small uv_write of the following bytes waits for the socket
        // to drain and lets the loop serve others meanwhile.
        let probe = probeBuffer()
        let want = min(probe.capacity, left)
        let read = pread(region.descriptor, probe.base, want, offset)
        guard read > 0 else {
            if read == 0 { return fail(.bodyProducer(FileChangedError(message: "file ended early at byte \(offset)"))) }
            return fail(.bodyProducer(UVError(code: -errno)))
        }
        producer.didSendFileRegionBytes(read)
        exchange.remainingBodyBytes -= Int64(read)
        write(UnsafeRawBufferPointer(start: probe.base, count: read), owner: probe) { [weak self] error in
            guard let self, self.exchange === exchange else { return }
            if let error { return self.writeFailed(error, exchange) }
            self.sendNextFragment(of: exchange)
        }
    }

    /// What one `sendFile` sends at most before the loop gets a turn: a peer that drains as fast as sendfile fills
    /// (tus-cli's whole file to a local server) would otherwise keep the loop from its timers and other connections.
    static let sendfileTurnBytes = 4 << 20

    /// The buffer of `sendFile`'s waiting writes, made on first use (16 KiB: most bytes go by sendfile).
    private func probeBuffer() -> ByteChunk {
        if let sendfileProbe { return sendfileProbe }
        let chunk = ByteChunk(capacity: 16 * 1024)
        sendfileProbe = chunk
        return chunk
    }

    private func sendFragment(from producer: any HTTPBodyProducer, of exchange: Exchange) {
        producer.nextFragment { [weak self] result in
            guard let self, self.exchange === exchange else { return }
            switch result {
            case .failure(let error):
                self.fail(.bodyProducer(error))
            case .success(nil):
                self.fail(.bodyProducer(BodyLengthError(missing: exchange.remainingBodyBytes)))
            case .success(let fragment?):
                guard Int64(fragment.count) <= exchange.remainingBodyBytes else {
                    return self.fail(.bodyProducer(BodyLengthError(missing: exchange.remainingBodyBytes - Int64(fragment.count))))
                }
                exchange.remainingBodyBytes -= Int64(fragment.count)
                self.write(fragment.bytes, owner: fragment.chunk) { [weak self] error in
                    guard let self, self.exchange === exchange else { return }
                    if let error { return self.writeFailed(error, exchange) }
                    self.sendNextFragment(of: exchange)
                }
            }
        }
    }

    /// A server that rejects a request (409, 413, 460...) may answer and close before reading the whole body;
    /// our write then fails with EPIPE/ECONNRESET while its answer still waits in the socket. So stop sending
    /// and let the read side decide: the response if it comes, else EOF or the read error.
    private func writeFailed(_ error: UVError, _ exchange: Exchange) {
        exchange.producer = nil
        keepsAlive = false
        if !stream.isReading && pendingResumes == 0 { stream.startReading() }
        if error == .cancelled { fail(.io(error)) }
    }

    private struct BodyLengthError: Error, CustomStringConvertible {
        var missing: Int64
        var description: String {
            missing > 0 ? "body ended \(missing) bytes early" : "body longer than its Content-Length by \(-missing)"
        }
    }

    private func write(_ bytes: [UInt8], _ completion: @escaping (UVError?) -> Void) {
        bytesSent += Int64(bytes.count)
        stream.write(bytes) { [weak self] error in self?.wrote(error, completion) }
    }

    private func write(
        _ buffer: UnsafeRawBufferPointer, owner: AnyObject?, _ completion: @escaping (UVError?) -> Void
    ) {
        bytesSent += Int64(buffer.count)
        stream.write(buffer, owner: owner) { [weak self] error in self?.wrote(error, completion) }
    }

    private func wrote(_ error: UVError?, _ completion: (UVError?) -> Void) {
        touch()
        // A failed encryption is the session's fault, not the network's: say so.
        if error != nil, let failure = stream.tlsFailure { return fail(.tls(failure)) }
        completion(error)
    }

    // MARK: Timeouts

    private func touch() {
        lastProgress = loop.nowMilliseconds
    }

    private func startTimerIfNeeded() {
        guard idleTimeoutMilliseconds > 0, timer == nil, !isClosed else { return }
        let timer = TusLoop.Timer(loop: loop)
        self.timer = timer
        let period = max(10, idleTimeoutMilliseconds / 4)
        timer.start(afterMilliseconds: period, repeatMilliseconds: period) { [weak self] in
            guard let self else { return }
            let busy = self.exchange != nil || self.connectCompletion != nil
            if busy, self.pendingResumes == 0,
                self.loop.nowMilliseconds - self.lastProgress >= self.idleTimeoutMilliseconds
            {
                self.fail(.timedOut)
            }
        }
    }

    // MARK: Reading

    public func allocatePlaintextBuffer() -> UnsafeMutableRawBufferPointer {
        readBuffer
    }

    public func didReceivePlaintext(count: Int) {
        bytesReceived += Int64(count)
        process(UnsafeRawBufferPointer(rebasing: readBuffer[0..<count]))
    }

    public func secureStreamDidCompleteHandshake() {
        guard let connectCompletion else { return }
        self.connectCompletion = nil
        // Idle until the first `send` (which starts reading): bytes nobody asked for would close the connection.
        if exchange == nil { stream.stopReading() }
        connectCompletion(.success(self))
    }

    public func didFinishRead(_ event: SecureStreamReadEvent) {
        touch()
        switch event {
        case .received:
            if exchange != nil { acknowledgeNow() }
        case .closed:
            handleEndOfStream(error: nil)
        case .failed(let error):
            handleEndOfStream(error: error)
        case .tlsFailed(let error):
            if let connectCompletion {
                self.connectCompletion = nil
                close()
                connectCompletion(.failure(.tls(error)))
            } else {
                fail(.tls(error))
            }
        }
    }

    /// Sends the ACK of what was just read now, while a response is still awaited (TCP_QUICKACK). A server
    /// that writes a response's head and body separately with Nagle's algorithm on (Ceph RGW's beast) holds the
    /// body until the head is acknowledged, and Linux delays that ACK by up to 40 ms on a keep-alive connection:
    /// every S3 request with a response body (GET of a record, ListParts, CompleteMultipartUpload) took 40 ms
    /// more, a dozen times per upload (bench/results/2026-12-07-s3speed). The option lasts until the kernel sees
    /// request-response traffic again, so it is set after each read.
    private func acknowledgeNow() {
        var on: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        _ = setsockopt(stream.tcp.descriptor, Int32(IPPROTO_TCP), TCP_QUICKACK, &on, size)
    }

    private func handleEndOfStream(error: UVError?) {
        if let connectCompletion {
            self.connectCompletion = nil
            close()
            return connectCompletion(.failure(error.map { .io($0) } ?? .closedBeforeResponse(receivedBytes: 0)))
        }
        keepsAlive = false
        guard let exchange else { return close() }
        if exchange.readsUntilClose, error == nil {
            return finish(exchange)
        }
        fail(error.map { .io($0) } ?? .closedBeforeResponse(receivedBytes: exchange.receivedBytes))
    }

    private func process(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            guard let exchange, !isClosed else {
                // Bytes nobody asked for: the server is confused; don't reuse this connection.
                keepsAlive = false
                return close()
            }
            exchange.receivedBytes += bytes.count - offset
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            if exchange.responseHead == nil {
                switch exchange.headParser.parse(rest) {
                case .needMoreData:
                    return
                case .failure(let message):
                    return fail(.malformedResponse(message))
                case .head(let head, let consumed):
                    offset += consumed
                    exchange.receivedBytes -= rest.count - consumed
                    if head.isInformational {
                        exchange.headParser = ResponseHeadParser()
                        if head.status.code != 101 { exchange.informational?(head) }
                        // The callback may have closed the connection (a client giving up once it knows the URL).
                        guard self.exchange === exchange, !isClosed else { return }
                        continue
                    }
                    if let error = begin(head, for: exchange) { return fail(error) }
                    if exchange.decoder == nil && !exchange.readsUntilClose { return finish(exchange) }
                }
            } else if exchange.readsUntilClose {
                exchange.receivedBytes -= rest.count
                if let error = take(rest, for: exchange) { return fail(error) }
                return
            } else {
                let (event, consumed) = exchange.decoder!.next(rest)
                exchange.receivedBytes -= rest.count - consumed
                offset += consumed
                switch event {
                case .data(let range):
                    if let error = take(UnsafeRawBufferPointer(rebasing: rest[range]), for: exchange) {
                        return fail(error)
                    }
                    // The last body byte may end the buffer: the decoder would report `.end` only on a next call.
                    if exchange.decoder!.isComplete {
                        if offset < bytes.count { keepsAlive = false }
                        return finish(exchange)
                    }
                case .needMoreData:
                    return
                case .end:
                    if offset < bytes.count { keepsAlive = false }  // nothing pipelined: stray bytes
                    return finish(exchange)
                case .failure(let error):
                    return fail(.malformedResponse(error.message))
                }
            }
        }
    }

    /// Picks the body framing (RFC 9112 §6.3). Returns an error for framing we must not guess.
    private func begin(_ head: HTTPResponseHead, for exchange: Exchange) -> HTTPClientError? {
        exchange.responseHead = head
        if !head.keepsAlive { keepsAlive = false }
        if case .stream = exchange.bodyHandling, (200..<300).contains(head.status.code) {
            exchange.isStreamingBody = true
        }
        let code = head.status.code
        if exchange.head.method == .HEAD || code == 204 || code == 304 { return nil }
        if let encoding = head.headers["Transfer-Encoding"] {
            guard encoding.lowercased().trimmingOWS().hasSuffix("chunked") else {
                exchange.readsUntilClose = true
                keepsAlive = false
                return nil
            }
            exchange.decoder = BodyDecoder(framing: .chunked)
            return nil
        }
        let lengths = head.headers.values(for: "Content-Length")
        if let first = lengths.first {
            guard lengths.allSatisfy({ $0 == first }), let length = Int64(first), length >= 0 else {
                return .malformedResponse("invalid Content-Length")
            }
            if !exchange.isStreamingBody && length > Int64(maxCollectedBodyBytes) {
                return .responseTooLarge(maxCollectedBodyBytes)
            }
            if length > 0 { exchange.decoder = BodyDecoder(framing: .contentLength(length)) }
            return nil
        }
        exchange.readsUntilClose = true
        keepsAlive = false
        return nil
    }

    private func take(_ bytes: UnsafeRawBufferPointer, for exchange: Exchange) -> HTTPClientError? {
        guard !bytes.isEmpty else { return nil }
        if exchange.isStreamingBody, case .stream(let handler) = exchange.bodyHandling {
            pendingResumes += 1
            stream.stopReading()
            var resumed = false
            handler(exchange.responseHead!, Array(bytes)) { [weak self] in
                guard let self, !resumed else { return }
                resumed = true
                self.pendingResumes -= 1
                self.touch()
                if self.pendingResumes == 0, !self.isClosed, self.exchange != nil || self.keepsAlive {
                    self.stream.startReading()
                }
            }
            return nil
        }
        guard exchange.body.count + bytes.count <= maxCollectedBodyBytes else {
            return .responseTooLarge(maxCollectedBodyBytes)
        }
        exchange.body.append(contentsOf: bytes)
        return nil
    }

    private func finish(_ exchange: Exchange) {
        guard self.exchange === exchange, let head = exchange.responseHead else { return }
        self.exchange = nil
        if !exchange.isRequestSent {
            // The server answered before taking the whole body: the rest can't be framed on this connection.
            keepsAlive = false
            exchange.producer = nil
        }
        if !keepsAlive { close() }
        exchange.completion(.success(HTTPClientResponse(head: head, body: exchange.body)))
    }

    private func fail(_ error: HTTPClientError) {
        keepsAlive = false
        guard let exchange else { return close() }
        self.exchange = nil
        close()
        exchange.completion(.failure(error))
    }
}

/// A write to a socket the peer closed must come back as EPIPE, not kill the process (SIGPIPE's default).
private let ignoreBrokenPipe: Void = {
    signal(SIGPIPE, SIG_IGN)
}()

extension EventLoop {
    @inline(__always)
    func assertOnLoopThreadForClient() {
        assert(inLoop || EventLoop.current == nil, "TusClient: called off the loop thread")
    }
}
