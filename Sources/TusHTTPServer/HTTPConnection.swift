import TusCrypto
import TusHTTP1
import TusLoop

/// One client connection: socket → parser → handler, and responses back, one request at a time.
///
/// Read path: bytes land in the connection's own `ByteChunk` (handed to libuv from `allocateReadBuffer`).
/// Head bytes are parsed in place; body bytes are framed in place and passed on as `BodyFragment`s of that
/// same chunk, so an uploaded byte is copied once, by the kernel, into memory that the file writer then
/// writes from. A chunk is append-only: ranges already handed out are never overwritten, and a chunk is
/// freed when the last fragment referring to it is done.
///
/// Backpressure: while `maxOutstandingFragments` fragments wait for their `done`, reading stops; it
/// resumes when the count falls to half. Contiguous body bytes that arrive while the handler is busy are
/// coalesced into one larger fragment, so a slow disk gets fewer, bigger writes.
final class HTTPConnection: TCPStreamDelegate {
    private enum Phase {
        /// Waiting for (more of) a request head. `since` is when the first byte of this head arrived.
        case readingHead(since: UInt64?)
        /// The handler has the head and has not asked for the body (or there is none) nor responded.
        case handling
        /// Body bytes flow to the sink.
        case readingBody
        /// The body ended or was given up; waiting for the handler's response.
        case awaitingResponse
        /// A response is being written (possibly streamed); the next request waits.
        case responding
        /// Reading and discarding the rest of a body the handler did not want.
        case draining
        case closed

        var isOpen: Bool { if case .closed = self { false } else { true } }

        func isSameCase(as other: Phase) -> Bool {
            switch (self, other) {
            case (.readingHead, .readingHead), (.handling, .handling), (.readingBody, .readingBody),
                (.awaitingResponse, .awaitingResponse), (.responding, .responding), (.draining, .draining),
                (.closed, .closed):
                true
            default:
                false
            }
        }
    }

    let stream: TCPStream
    unowned let context: LoopContext
    private var configuration: HTTPServerConfiguration { context.server.configuration }

    private var phase: Phase = .readingHead(since: nil) {
        didSet {
            // The loop sizes body chunks by how many bodies stream at once (`LoopContext.bodyChunkSize`).
            let wasBody: Bool = if case .readingBody = oldValue { true } else { false }
            let isBody: Bool = if case .readingBody = phase { true } else { false }
            if isBody != wasBody { context.activeBodies += isBody ? 1 : -1 }
        }
    }
    private var headParser: RequestHeadParser
    private var bodyDecoder: BodyDecoder?
    /// Held strongly while the body flows; `detachSink` drops it when the body ends or is given up.
    private var bodySink: (any HTTPBodySink)?
    private var exchange: Exchange?
    private(set) var requestSequence: UInt64 = 0

    /// The chunk being read into and the unconsumed bytes in it (`readStart..<readEnd`).
    private var chunk: ByteChunk?
    private var readStart = 0
    private var readEnd = 0
    /// Body bytes framed but not yet handed to the sink (coalescing), as a range of `chunk`.
    private var pendingBody: Range<Int>?
    private var outstandingFragments = 0
    private var bodyComplete = false
    private var bodyTrailers = HTTPHeaders()

    private var wantsRead = false
    private var isProcessing = false
    private var closeAfterResponse = false
    private var isShuttingDown = false
    private var deadline: UInt64 = .max
    /// Body bytes received since `start` (loop milliseconds): the current window of the minimum body rate.
    private var bodyRateWindow: (start: UInt64, bytes: Int) = (0, 0)

    /// Present on HTTPS connections. Everything above `didRead` and `send` sees plaintext only.
    private let tls: TLSSession?

    init(stream: TCPStream, context: LoopContext, tls: TLSSession? = nil) {
        self.stream = stream
        self.context = context
        self.tls = tls
        self.headParser = RequestHeadParser(limits: context.server.configuration.parserLimits)
    }

    var isSecure: Bool { tls != nil }

    func start() {
        stream.delegate = self
        // A TLS handshake must finish within the head timeout; a plain connection may idle like a kept-alive one.
        let wait = tls == nil ? configuration.idleTimeoutMilliseconds : configuration.headTimeoutMilliseconds
        deadline = context.loop.nowMilliseconds + wait
        setReading(true)
    }

    // MARK: Reading

    private func setReading(_ on: Bool) {
        guard on != wantsRead, phase.isOpen else { return }
        wantsRead = on
        if on { stream.startReading() } else { stream.stopReading() }
    }

    func allocateReadBuffer(suggestedSize: Int) -> UnsafeMutableRawBufferPointer {
        // Ciphertext is consumed completely inside `didRead`, so one buffer per loop serves every TLS connection.
        if tls != nil { return context.cipherInputBuffer }
        return plaintextSpace()
    }

    /// Free space at the end of the current chunk, after making sure there is some.
    private func plaintextSpace() -> UnsafeMutableRawBufferPointer {
        let minimumFree = 4096
        if let chunk, chunk.capacity - readEnd >= minimumFree {
            return UnsafeMutableRawBufferPointer(start: chunk.base + readEnd, count: chunk.capacity - readEnd)
        }
        flushPendingBody()
        // A fresh chunk: big for bodies, small for heads so that idle and small-request connections stay light.
        let isBody: Bool = if case .readingBody = phase { true } else { false }
        // Heads get a small chunk (a longer head moves to a bigger one below, up to the head limit).
        let capacity = isBody ? context.bodyChunkSize : 16 * 1024
        let unconsumed = readEnd - readStart
        if unconsumed == 0, isKnownUniquelyReferenced(&chunk), let reusable = chunk, reusable.capacity >= capacity {
            // No fragment refers to it any more: start over at its beginning instead of allocating.
            readStart = 0
            readEnd = 0
            return UnsafeMutableRawBufferPointer(start: reusable.base, count: reusable.capacity)
        }
        let fresh = ByteChunk(capacity: max(capacity, unconsumed + minimumFree))
        if unconsumed > 0, let old = chunk {
            // Only an incomplete head is ever carried over, so this copy is bounded by the head limit.
            fresh.base.copyMemory(from: old.base + readStart, byteCount: unconsumed)
        }
        chunk = fresh
        readStart = 0
        readEnd = unconsumed
        return UnsafeMutableRawBufferPointer(start: fresh.base + readEnd, count: fresh.capacity - readEnd)
    }

    func didRead(_ result: ReadResult) {
        switch result {
        case .bytes(let count):
            if let tls {
                decrypt(UnsafeRawBufferPointer(rebasing: context.cipherInputBuffer[0..<count]), with: tls)
            } else {
                readEnd += count
                if switchesToHTTP2() { return }
                process()
            }
        case .eof, .error:
            peerClosed()
        }
    }

    /// Feeds ciphertext to OpenSSL and appends the plaintext it yields to the chunk, exactly as a plain read
    /// would have; handshake records and alerts go straight back to the peer.
    private func decrypt(_ ciphertext: UnsafeRawBufferPointer, with tls: TLSSession) {
        tls.feedEncrypted(ciphertext)
        var peerFinished = false
        var failure: TLSError?
        reading: while true {
            let space = plaintextSpace()
            switch tls.readPlaintext(into: space) {
            case .bytes(let count):
                readEnd += count
            case .wantMore:
                break reading
            case .closed:
                peerFinished = true
                break reading
            case .failed(let error):
                failure = error
                break reading
            }
        }
        flushTLSOutput()
        if let failure {
            context.server.logIf(.debug, "TLS: \(failure)")
            close()
            return
        }
        if switchesToHTTP2() { return }
        if readEnd > readStart { process() }
        if peerFinished { peerClosed() }
    }

    private func flushTLSOutput(_ completion: ((UVError?) -> Void)? = nil) {
        guard let tls else { return }
        let output = tls.takeEncryptedOutput()
        if output.isEmpty {
            completion?(nil)
        } else if !stream.isClosed {
            stream.write(output) { completion?($0) }
        }
    }

    /// Every byte to the peer goes through here (and `send(fragment:)`), so TLS is applied in one place.
    private func send(_ bytes: [UInt8], _ completion: @escaping (UVError?) -> Void) {
        guard let tls else { return stream.write(bytes, completion: completion) }
        bytes.withUnsafeBytes { encrypt($0, with: tls, completion) }
    }

    private func send(_ fragment: BodyFragment, _ completion: @escaping (UVError?) -> Void) {
        guard let tls else { return stream.write([fragment.bytes], owner: fragment.chunk, completion: completion) }
        encrypt(fragment.bytes, with: tls, completion)
    }

    /// OpenSSL copies the plaintext into its records, so the caller's bytes need not outlive this call.
    private func encrypt(
        _ plaintext: UnsafeRawBufferPointer, with tls: TLSSession, _ completion: @escaping (UVError?) -> Void
    ) {
        do {
            try tls.writePlaintext(plaintext)
        } catch {
            return completion(.connectionReset)
        }
        flushTLSOutput(completion)
    }

    /// Runs the state machine over the buffered bytes until it needs more input or waits for the handler.
    ///
    /// Not reentrant on purpose: a handler may answer synchronously from inside a callback this loop made
    /// (read the body, respond, call `done`). Such nested calls only change state; the running loop
    /// re-reads the state on its next turn and carries on.
    private func process() {
        guard !isProcessing else { return }
        isProcessing = true
        defer { isProcessing = false }
        while true {
            switch phase {
            case .readingHead(let since):
                guard readEnd > readStart, let chunk else {
                    releaseEmptyChunk()
                    setReading(true)
                    return
                }
                if since == nil {
                    phase = .readingHead(since: context.loop.nowMilliseconds)
                    deadline = context.loop.nowMilliseconds + configuration.headTimeoutMilliseconds
                }
                let result = headParser.parse(UnsafeRawBufferPointer(chunk.bytes(readStart..<readEnd)))
                switch result {
                case .needMoreData:
                    setReading(true)
                    return
                case .failure(let error):
                    fail(with: error)
                    return
                case .head(let head, let consumed):
                    readStart += consumed
                    headParser.reset()
                    beginRequest(head)
                }
            case .readingBody, .draining:
                // A complete Content-Length body still owes its `.end` even with nothing left in the buffer.
                let owesEnd = bodyDecoder?.isComplete ?? false
                guard readEnd > readStart || owesEnd else {
                    if outstandingFragments < configuration.maxOutstandingFragments { setReading(true) }
                    return
                }
                let before = readStart
                let phaseBefore = phase
                decodeBody()
                // No progress (waiting for the sink to catch up): stay until `fragmentDone` calls again.
                if readStart == before && phase.isSameCase(as: phaseBefore) { return }
            case .handling, .awaitingResponse, .responding, .closed:
                // One request at a time: pipelined bytes wait in the buffer until the response is out.
                setReading(false)
                return
            }
        }
    }

    private func beginRequest(_ head: RequestHead) {
        requestSequence += 1
        phase = .handling
        bodyComplete = !head.bodyFraming.hasBody
        bodyTrailers = HTTPHeaders()
        bodyDecoder = head.bodyFraming.hasBody ? BodyDecoder(framing: head.bodyFraming, limits: configuration.parserLimits) : nil
        closeAfterResponse = !head.keepAlive || isShuttingDown
        deadline = .max
        let exchange = Exchange(head: head, connection: self, sequence: requestSequence)
        self.exchange = exchange
        setReading(false)
        context.server.handler.handle(head, exchange: exchange)
    }

    /// Frames body bytes in place. Data goes to the sink (or is dropped when draining).
    private func decodeBody() {
        guard let chunk, bodyDecoder != nil else { return }
        while true {
            // The handler may have answered (and so ended the body) from inside a callback of this loop.
            switch phase {
            case .readingBody:
                // Many tiny chunks make many fragments out of one read: stop framing, as the socket stopped,
                // until the sink catches up (`fragmentDone` resumes), so they cannot bypass backpressure.
                if outstandingFragments >= configuration.maxOutstandingFragments { return }
            case .draining:
                break
            default:
                return
            }
            guard bodyDecoder != nil else { return }
            // A Content-Length body is complete as soon as its last byte was framed; ask once more to get `.end`.
            guard readEnd > readStart || bodyDecoder!.isComplete else { return }
            let window = UnsafeRawBufferPointer(chunk.bytes(readStart..<readEnd))
            let (event, consumed) = bodyDecoder!.next(window)
            let base = readStart
            readStart += consumed
            switch event {
            case .data(let range):
                deadline = context.loop.nowMilliseconds + configuration.bodyTimeoutMilliseconds
                if case .readingBody = phase {
                    bodyRateWindow.bytes += range.count
                    appendPendingBody((base + range.lowerBound)..<(base + range.upperBound))
                }
            case .needMoreData:
                deadline = context.loop.nowMilliseconds + configuration.bodyTimeoutMilliseconds
                return
            case .end(let trailers):
                bodyComplete = true
                bodyTrailers = trailers
                bodyFinished()
                return
            case .failure(let error):
                bodyDecoder = nil
                if case .readingBody = phase {
                    flushPendingBody()
                    let sink = bodySink
                    detachSink()
                    sink?.bodyAborted(.malformed)
                }
                switch phase {
                case .responding, .awaitingResponse:
                    // The request already has (or will get) its one response; the connection ends after it.
                    closeAfterResponse = true
                case .draining:
                    close()
                default:
                    fail(with: error)
                }
                return
            }
        }
    }

    private func appendPendingBody(_ range: Range<Int>) {
        if let pending = pendingBody, pending.upperBound == range.lowerBound {
            pendingBody = pending.lowerBound..<range.upperBound
        } else {
            flushPendingBody()
            pendingBody = range
        }
        // Hand bytes over at once when the sink is idle; otherwise let them grow into a bigger write.
        if outstandingFragments == 0 || (pendingBody?.count ?? 0) >= configuration.readChunkSize / 2 {
            flushPendingBody()
        }
    }

    private func flushPendingBody() {
        guard let range = pendingBody, let chunk else { return }
        pendingBody = nil
        guard case .readingBody = phase, let sink = bodySink, !range.isEmpty else { return }
        outstandingFragments += 1
        if outstandingFragments >= configuration.maxOutstandingFragments { setReading(false) }
        let sequence = requestSequence
        sink.bodyFragment(BodyFragment(chunk: chunk, range: range)) { [self] in
            fragmentDone(sequence: sequence)
        }
    }

    private func fragmentDone(sequence: UInt64) {
        outstandingFragments -= 1
        guard sequence == requestSequence, case .readingBody = phase else { return }
        if pendingBody != nil { flushPendingBody() }
        if outstandingFragments <= configuration.maxOutstandingFragments / 2 { process() }
    }

    private func bodyFinished() {
        guard case .readingBody = phase else {
            // Draining finished: the response is already out (or going out); carry on with the next request.
            if case .draining = phase { finishExchange() }
            return
        }
        flushPendingBody()
        phase = .awaitingResponse
        deadline = .max
        setReading(false)
        let sink = bodySink
        let trailers = bodyTrailers
        detachSink()
        sink?.bodyEnd(trailers: trailers)
    }

    private func detachSink() {
        bodySink = nil
    }

    private func releaseEmptyChunk() {
        // An idle keep-alive connection holds no buffer at all.
        if readEnd == readStart, pendingBody == nil {
            chunk = nil
            readStart = 0
            readEnd = 0
        }
    }

    // MARK: Exchange entry points (called through `Exchange`, which filters out stale requests)

    func exchangeReadBody(into sink: any HTTPBodySink) {
        guard case .handling = phase else { return }
        guard let exchange else { return }
        if bodyComplete {
            phase = .awaitingResponse
            sink.bodyEnd(trailers: HTTPHeaders())
            return
        }
        bodySink = sink
        phase = .readingBody
        deadline = context.loop.nowMilliseconds + configuration.bodyTimeoutMilliseconds
        bodyRateWindow = (context.loop.nowMilliseconds, 0)
        if exchange.head.expectsContinue {
            send(ResponseEncoder.continueResponse) { _ in }
        }
        process()
    }

    func exchangeRespond(_ response: HTTPResponse, bodyLength: Int64?, source: (any HTTPBodySource)?) {
        guard let exchange else {
            source?.cancel()
            return
        }
        switch phase {
        case .closed, .responding, .draining:
            source?.cancel()
            return
        case .readingBody:
            // The handler answers before the body ended (413, lock takeover): stop feeding it.
            flushPendingBody()
            detachSink()
        case .handling, .awaitingResponse, .readingHead:
            break
        }
        let head = exchange.head
        if response.closeConnection { closeAfterResponse = true }
        if !bodyComplete {
            // Drain a small, already-framed remainder to keep the connection; otherwise close rather than
            // read a body nobody wants (the client learns fast, tusd#1371).
            let remaining = bodyDecoder?.remainingContentLength
            let smallRemainder = remaining.map { $0 <= 64 * 1024 } ?? false
            let continueWasSent: Bool = if case .readingBody = phase { true } else { !head.expectsContinue }
            if !(smallRemainder && continueWasSent && !closeAfterResponse) { closeAfterResponse = true }
        }
        let omitBody = head.method == .HEAD
        var response = response
        if !response.headers.contains("Date") { response.headers.add("Date", context.dateHeaderValue) }
        let bytes = ResponseEncoder.encode(
            response, version: head.version, keepAlive: !closeAfterResponse, bodyLength: bodyLength,
            omitBody: omitBody)
        phase = .responding
        setReading(false)
        // A peer that stops reading the response must not hold the connection (and its buffers) forever.
        deadline = context.loop.nowMilliseconds + configuration.bodyTimeoutMilliseconds
        let sequence = requestSequence
        context.server.logIf(.debug, "\(head.method) \(head.target) -> \(response.status.code)")
        send(bytes) { [self] error in
            if error != nil {
                source?.cancel()
                close()
                return
            }
            if let source, let bodyLength, !omitBody {
                streamBody(from: source, remaining: bodyLength, sequence: sequence)
            } else {
                source?.cancel()
                responseSent()
            }
        }
    }

    private func streamBody(from source: any HTTPBodySource, remaining: Int64, sequence: UInt64) {
        guard phase.isOpen else {
            source.cancel()
            return
        }
        guard remaining > 0 else {
            source.cancel()
            responseSent()
            return
        }
        source.next(maxLength: Int(min(remaining, Int64(configuration.readChunkSize)))) { [self] result in
            switch result {
            case .success(let fragment?) where fragment.count > 0 && Int64(fragment.count) <= remaining:
                send(fragment) { [self] error in
                    if error != nil {
                        source.cancel()
                        close()
                    } else {
                        deadline = context.loop.nowMilliseconds + configuration.bodyTimeoutMilliseconds
                        streamBody(from: source, remaining: remaining - Int64(fragment.count), sequence: sequence)
                    }
                }
            default:
                // Short or failed source: the framing promised more bytes, so the connection cannot continue.
                source.cancel()
                context.server.logIf(.warning, "response body source ended early; closing connection")
                close()
            }
        }
    }

    /// The response is on the wire. Either drain the unwanted body, close, or go for the next request.
    private func responseSent() {
        if closeAfterResponse {
            closeGracefully()
            return
        }
        if !bodyComplete {
            phase = .draining
            deadline = context.loop.nowMilliseconds + configuration.bodyTimeoutMilliseconds
            process()
            return
        }
        finishExchange()
    }

    private func finishExchange() {
        exchange = nil
        bodyDecoder = nil
        if closeAfterResponse || isShuttingDown {
            closeGracefully()
            return
        }
        phase = .readingHead(since: nil)
        deadline = context.loop.nowMilliseconds + configuration.idleTimeoutMilliseconds
        process()
    }

    // MARK: HTTP/2 dispatch

    /// Before the first request only: a TLS session that negotiated "h2" by ALPN, or (with h2c enabled) a plain
    /// connection that opens with the HTTP/2 preface, is handed to `HTTP2Connection` with what was read so far.
    /// Returns true when the connection was handed over (this object is then done and holds nothing).
    private func switchesToHTTP2() -> Bool {
        guard requestSequence == 0, case .readingHead = phase, !isFinalClosed else { return false }
        if let tls {
            guard tls.isHandshakeComplete, tls.negotiatedALPN == "h2" else { return false }
        } else {
            guard context.server.configuration.http2.cleartextPriorKnowledge, let chunk, readEnd > readStart else {
                return false
            }
            let preface = HTTPConnection.http2Preface
            let bytes = chunk.bytes(readStart..<min(readEnd, readStart + preface.count))
            guard bytes.elementsEqual(preface.prefix(bytes.count)) else { return false }
            // A prefix of the preface: wait for the rest rather than parse "PRI * HTTP/2.0" as HTTP/1.1.
            if bytes.count < preface.count { return true }
        }
        let initial = chunk.map { UnsafeRawBufferPointer($0.bytes(readStart..<readEnd)) } ?? UnsafeRawBufferPointer(start: nil, count: 0)
        isFinalClosed = true
        wantsRead = false
        phase = .closed
        context.switchToHTTP2(self, stream: stream, tls: tls, initialBytes: initial)
        chunk = nil
        return true
    }

    static let http2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    // MARK: Errors, timeouts, closing

    private func fail(with error: HTTPParseError) {
        context.server.logIf(.debug, "bad request: \(error)")
        closeAfterResponse = true
        let response = HTTPResponse(
            status: error.status, headers: ["Date": context.dateHeaderValue], text: error.message, closeConnection: true)
        let bytes = ResponseEncoder.encode(response, version: .http1_1, keepAlive: false)
        phase = .responding
        setReading(false)
        send(bytes) { [self] _ in closeGracefully() }
    }

    private func peerClosed() {
        abort(reason: .clientClosed)
    }

    func checkDeadline(now: UInt64) {
        if case .readingBody = phase, !isFinalClosed, isBodyTooSlow(now: now) {
            context.server.logIf(
                .info,
                "body slower than \(configuration.minBodyBytesPerSecond) bytes/s over "
                    + "\(configuration.bodyRateWindowMilliseconds) ms; closing connection")
            abort(reason: .timeout)
            deadline = .max
            return
        }
        guard now >= deadline, !isFinalClosed else { return }
        switch phase {
        case .closed:
            // A graceful close whose shutdown never completed (a peer that stopped reading our close_notify).
            finalClose()
        case .responding:
            context.server.logIf(.info, "response write timeout; closing connection")
            close()
        case .readingBody:
            context.server.logIf(.info, "body timeout; closing connection")
            abort(reason: .timeout)
        case .readingHead(let since) where since != nil:
            // A head that never completes: say so, then close (slowloris).
            fail(with: HTTPParseError(status: .requestTimeout, message: "request head timeout"))
        default:
            close()
        }
        deadline = .max
    }

    /// Checked by the sweep in tumbling windows: each window of a body being read must bring its share of bytes.
    /// A window in which the server itself stopped reading (backpressure from a slow disk) starts afresh: that
    /// wait is not the client's doing, and a client that trickles never fills the sink enough to cause one.
    private func isBodyTooSlow(now: UInt64) -> Bool {
        let rate = configuration.minBodyBytesPerSecond
        let window = configuration.bodyRateWindowMilliseconds
        guard rate > 0, window > 0 else { return false }
        guard wantsRead else {
            bodyRateWindow = (now, 0)
            return false
        }
        guard now &- bodyRateWindow.start >= window else { return false }
        if UInt64(bodyRateWindow.bytes) < UInt64(rate) * window / 1000 { return true }
        bodyRateWindow = (now, 0)
        return false
    }

    /// Server shutdown: idle connections go now, busy ones after their current exchange.
    func shutdownGracefully() {
        isShuttingDown = true
        closeAfterResponse = true
        if case .readingHead(let since) = phase, since == nil { close() }
    }

    /// Ends the connection now; a body in progress is reported to its sink as aborted, so that whoever holds
    /// resources for it (an upload lock, an open file) lets go on every path that ends a connection.
    func abort(reason: BodyAbortReason) {
        let sink: (any HTTPBodySink)? = if case .readingBody = phase { bodySink } else { nil }
        flushPendingBody()
        detachSink()
        // The sink hears it before the socket goes, so whoever sees the close can rely on the sink knowing.
        sink?.bodyAborted(reason)
        if phase.isOpen { phase = .closed }
        finalClose()
    }

    private func closeGracefully() {
        guard phase.isOpen else { return }
        phase = .closed
        // If the peer never lets the shutdown complete, the deadline sweep closes the socket anyway.
        deadline = context.loop.nowMilliseconds + configuration.bodyTimeoutMilliseconds
        // close_notify first, so a TLS client can tell a complete response from a truncated one.
        tls?.shutdown()
        flushTLSOutput()
        stream.shutdown { [self] _ in finalClose() }
    }

    /// Closes now (idempotent); a body being read is reported to its sink as `.clientClosed`.
    func close() {
        abort(reason: .clientClosed)
    }

    private var isFinalClosed = false

    private func finalClose() {
        guard !isFinalClosed else { return }
        isFinalClosed = true
        wantsRead = false
        pendingBody = nil
        exchange = nil
        stream.close { [self] in
            chunk = nil
            context.connectionDidClose(self)
        }
    }
}


/// The handler's view of one request. Calls from a handler that outlived its request (a late response
/// after a takeover, a timer) are ignored rather than corrupting the next exchange on the connection.
final class Exchange: HTTPExchange {
    let head: RequestHead
    private let connection: HTTPConnection
    private let sequence: UInt64
    private var hasResponded = false

    init(head: RequestHead, connection: HTTPConnection, sequence: UInt64) {
        self.head = head
        self.connection = connection
        self.sequence = sequence
    }

    var executor: any LoopExecutor { connection.context.executor }
    var isSecure: Bool { connection.isSecure }

    private var isCurrent: Bool { connection.currentSequence == sequence && !hasResponded }

    func readBody(into sink: any HTTPBodySink) {
        // A handler that asks for the body of a request whose connection is gone (it waited for a lock while
        // the client left or the server shut down) must still hear that the body will not come.
        guard isCurrent else { return sink.bodyAborted(.clientClosed) }
        connection.exchangeReadBody(into: sink)
    }

    func respond(_ response: HTTPResponse) {
        guard isCurrent else { return }
        hasResponded = true
        connection.exchangeRespond(response, bodyLength: nil, source: nil)
    }

    func respond(_ response: HTTPResponse, bodyLength: Int64, source: any HTTPBodySource) {
        guard isCurrent else {
            source.cancel()
            return
        }
        hasResponded = true
        connection.exchangeRespond(response, bodyLength: bodyLength, source: source)
    }
}

extension HTTPConnection {
    /// The sequence number of the exchange in progress, 0 when none is.
    var currentSequence: UInt64 { exchange == nil ? 0 : requestSequence }
}
