import TusCore
import TusHTTP1
import TusLoop
import TusTransport

/// One client connection: socket → parser → handler, and responses back, one request at a time.
///
/// Read path: plaintext lands in the connection's own `ByteChunk` (handed to libuv from `allocatePlaintextBuffer`,
/// or decrypted into it by the `SecureStream`: this class never sees TLS).
/// Head bytes are parsed in place; body bytes are framed in place and passed on as `BodyFragment`s of that
/// same chunk, so an uploaded byte is copied once, by the kernel, into memory that the file writer then
/// writes from. A chunk is append-only: ranges already handed out are never overwritten, and a chunk is
/// freed when the last fragment referring to it is done.
///
/// Backpressure: while `maxOutstandingFragments` fragments wait for their `done`, reading stops; it
/// resumes when the count falls to half. Contiguous body bytes that arrive while the handler is busy are
/// coalesced into one larger fragment, so a slow disk gets fewer, bigger writes.
///
/// TLS bodies are coalesced even while the handler is idle, up to half a chunk (`secureReadChunkSize`): a
/// decrypted read is small and each fragment costs the writer a threadpool hand-off. Bytes held so go out when a
/// read was short (a trickle, a pause), at the body's end or abort, or at the next deadline sweep at the latest.
///
/// Direct bodies: a large cleartext Content-Length body whose sink offers a file (`HTTPDirectBodySink`) skips user
/// memory. Once the bytes buffered with the head went out as fragments and came back `done`, a `SocketFileSplicer`
/// moves the rest socket → pipe → file, and the sink hears counts (`bodyWrittenDirectly`) instead of fragments.
final class HTTPConnection: SecureStreamDelegate {
    let stream: SecureStream
    unowned let context: LoopContext
    private var configuration: HTTPServerConfiguration { context.server.configuration }

    /// Every decision (phase, reading, deadlines, keep-alive, backpressure counts) is the state machine's;
    /// this class performs the actions it returns.
    private var machine: HTTPConnectionStateMachine {
        didSet {
            // The loop sizes body chunks by how many bodies stream at once (`LoopContext.bodyChunkSize`).
            if machine.isReadingBody != oldValue.isReadingBody {
                context.activeBodies += machine.isReadingBody ? 1 : -1
            }
        }
    }
    private var headParser: RequestHeadParser
    private var bodyDecoder: BodyDecoder?
    /// Held strongly while the body flows; dropped when the body ends or is given up.
    private var bodySink: (any HTTPBodySink)?
    private var exchange: Exchange?
    var requestSequence: UInt64 { machine.requestSequence }
    /// The current request's id once the application named it (`X-Request-ID`), for log lines about it.
    var loggedRequestID = ""
    /// " request_id=…" for those lines: formatted only when one is written, not for every request.
    var requestLogTag: String { loggedRequestID.isEmpty ? "" : " request_id=\(loggedRequestID)" }

    /// The chunk being read into and the unconsumed bytes in it (`readStart..<readEnd`).
    private var chunk: ByteChunk?
    private var readStart = 0
    private var readEnd = 0
    /// Body bytes framed but not yet handed to the sink (coalescing), as a range of `chunk`.
    private var pendingBody: Range<Int>?
    private var bodyTrailers = HTTPHeaders()
    private var isProcessing = false
    /// Moves the current body socket → file while set (see the type's doc).
    private var splicer: SocketFileSplicer?
    /// This request's sink declined a direct body (or the splicer could not start): fragments until it ends.
    private var directBodyDeclined = false

    /// The chunk size of this TLS request's body, chosen when its first chunk is (`LoopContext.bodyChunkSize`).
    private var secureBodyChunkSize: Int?
    /// Plaintext bytes that arrived since the last `didFinishRead` (a read may yield none: a handshake record).
    private var unprocessedReadCount = 0
    /// Encoded 1xx heads not yet written: they ride with the next write (the final response, when it follows in
    /// the same turn: a draft creation's 104 and 201 then cost one socket write), or go out on their own at the
    /// end of the loop's turn, so none waits on anything but the loop.
    private var heldInformational: [UInt8] = []

    init(stream: SecureStream, context: LoopContext) {
        self.stream = stream
        self.context = context
        self.headParser = RequestHeadParser(limits: context.server.configuration.parserLimits)
        self.machine = HTTPConnectionStateMachine(limits: .init(context.server.configuration))
    }

    var isSecure: Bool { stream.isSecure }

    /// The clock every deadline is measured on (the loop's cached time).
    private var now: UInt64 { context.loop.nowMilliseconds }

    func start() {
        stream.delegate = self
        apply(machine.start(now: now, isTLS: stream.isSecure))
    }

    // MARK: Reading

    private func apply(_ action: HTTPConnectionStateMachine.ReadAction) {
        switch action {
        case .none: break
        case .startReading: stream.startReading()
        case .stopReading: stream.stopReading()
        }
    }

    func allocatePlaintextBuffer() -> UnsafeMutableRawBufferPointer {
        plaintextSpace()
    }

    /// Free space at the end of the current chunk, after making sure there is some.
    private func plaintextSpace() -> UnsafeMutableRawBufferPointer {
        let minimumFree = Self.minimumReadSpace
        if let chunk, chunk.capacity - readEnd >= minimumFree {
            return UnsafeMutableRawBufferPointer(start: chunk.base + readEnd, count: chunk.capacity - readEnd)
        }
        flushPendingBody()
        // A fresh chunk: big for bodies, small for heads so that idle and small-request connections stay light.
        // Heads get a small chunk (a longer head moves to a bigger one below, up to the head limit).
        var capacity = 16 * 1024
        if machine.isReadingBody && stream.isSecure {
            capacity = secureBodyChunkSize ?? context.bodyChunkSize(secure: true)
            secureBodyChunkSize = capacity
        } else if machine.isReadingBody {
            capacity = context.bodyChunkSize
        }
        let unconsumed = readEnd - readStart
        if unconsumed == 0, isKnownUniquelyReferenced(&chunk), let reusable = chunk, reusable.capacity >= capacity {
            // No fragment refers to it any more: start over at its beginning instead of allocating.
            readStart = 0
            readEnd = 0
            return UnsafeMutableRawBufferPointer(start: reusable.base, count: reusable.capacity)
        }
        let fresh =
            machine.isReadingBody && unconsumed + minimumFree <= capacity
            ? context.chunkPool.chunk(capacity: capacity) : ByteChunk(capacity: max(capacity, unconsumed + minimumFree))
        if unconsumed > 0, let old = chunk {
            // An incomplete head (bounded by the head limit), or body bytes not framed yet (a partial chunk-size
            // line; with TLS, what a read decrypted while the body could not be framed): bounded by one read.
            fresh.base.copyMemory(from: old.base + readStart, byteCount: unconsumed)
        }
        chunk = fresh
        readStart = 0
        readEnd = unconsumed
        return UnsafeMutableRawBufferPointer(start: fresh.base + readEnd, count: fresh.capacity - readEnd)
    }

    func didReceivePlaintext(count: Int) {
        readEnd += count
        unprocessedReadCount += count
        frameBodyIfChunkIsFull()
    }

    /// One read of ciphertext decrypts into more than one chunk. Body bytes of a full chunk are framed (and handed
    /// to the sink) before the next chunk is taken, so that it starts empty, from the pool, instead of as a fresh
    /// allocation holding a copy of everything decrypted since the read began.
    private func frameBodyIfChunkIsFull() {
        guard machine.isReadingBody, let chunk, chunk.capacity - readEnd < Self.minimumReadSpace, readEnd > readStart
        else { return }
        process()
    }

    func didFinishRead(_ event: SecureStreamReadEvent) {
        let newByteCount = unprocessedReadCount
        let hasNewBytes = newByteCount > 0
        unprocessedReadCount = 0
        switch event {
        case .received:
            if hasNewBytes {
                processNewBytes()
                // A short read: the sender trickles or paused, so what TLS coalescing holds goes out now.
                if newByteCount < Self.secureShortRead, machine.outstandingFragments == 0 { flushPendingBody() }
            } else {
                // A handshake that negotiated "h2" with no plaintext yet: HTTP/2 takes over now, so that its
                // preface and SETTINGS deadline (not our head timeout) decide how long a silent client may wait.
                _ = switchesToHTTP2()
            }
        case .closed:
            // A TLS close_notify may follow the last request in the same read: serve what came before it.
            if hasNewBytes { processNewBytes() }
            peerEnded()
        case .failed:
            // A reset read while a bodiless request is handled (reading stays on for it) must not free the
            // connection's slot before the handler answers: the response's write fails and closes it then.
            peerEnded()
        case .tlsFailed(let error):
            context.server.logIf(.debug, "TLS: \(error)")
            close()
        }
    }

    private func processNewBytes() {
        if switchesToHTTP2() { return }
        if readEnd > readStart { process() }
    }

    /// Every byte to the peer goes through here (and `send(fragment:)`); the stream encrypts when it is TLS.
    private func send(_ bytes: [UInt8], _ completion: @escaping (UVError?) -> Void) {
        guard !heldInformational.isEmpty else { return stream.write(bytes, completion: completion) }
        var joined = heldInformational
        heldInformational = []
        if !bytes.isEmpty { context.server.joinedInformationalCount.add(1, ordering: .relaxed) }
        joined.append(contentsOf: bytes)
        stream.write(joined, completion: completion)
    }

    private func send(_ fragment: BodyFragment, _ completion: @escaping (UVError?) -> Void) {
        flushHeldInformational()
        stream.write(fragment.bytes, owner: fragment.chunk, completion: completion)
    }

    func flushHeldInformational() {
        guard !heldInformational.isEmpty else { return }
        send([]) { [self] error in
            if error != nil { close() }
        }
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
            let step = machine.nextStep(
                hasBufferedBytes: readEnd > readStart && chunk != nil,
                bodyOwesEnd: bodyDecoder?.isComplete ?? false, prefersDirectBody: prefersDirectBody, now: now)
            switch step {
            case .awaitHead(let read):
                releaseEmptyChunk()
                apply(read)
                return
            case .wait(let read):
                apply(read)
                return
            case .parseHead:
                guard let chunk else { return }
                switch headParser.parse(UnsafeRawBufferPointer(chunk.bytes(readStart..<readEnd))) {
                case .needMoreData:
                    apply(machine.headIncomplete())
                    return
                case .failure(let error):
                    fail(with: error)
                    return
                case .head(let head, let consumed):
                    readStart += consumed
                    headParser.reset()
                    beginRequest(head)
                }
            case .startDirectBody(let read):
                apply(read)
                startDirectBody()
            case .decodeBody:
                let before = readStart
                let phaseBefore = machine.phase
                decodeBody()
                // No progress (waiting for the sink to catch up): stay until `fragmentDone` calls again.
                if readStart == before && machine.phase.isSameCase(as: phaseBefore) { return }
            }
        }
    }

    private func beginRequest(_ head: RequestHead) {
        let hasBody = head.bodyFraming.hasBody
        let (sequence, read) = machine.headReceived(keepAlive: head.keepAlive, hasBody: hasBody)
        bodyTrailers = HTTPHeaders()
        directBodyDeclined = false
        secureBodyChunkSize = nil
        bodyDecoder = hasBody ? BodyDecoder(framing: head.bodyFraming, limits: configuration.parserLimits) : nil
        loggedRequestID = ""
        let exchange = Exchange(head: head, connection: self, sequence: sequence)
        self.exchange = exchange
        apply(read)
        context.server.handler.handle(head, exchange: exchange)
    }

    /// Frames body bytes in place. Data goes to the sink (or is dropped when draining).
    private func decodeBody() {
        guard bodyDecoder != nil else { return }
        // A spliced body can end with no chunk at all; its end is framed from an empty window.
        let chunk = chunk ?? ByteChunk(capacity: 1)
        // The handler may have answered (and so ended the body) from inside a callback of this loop.
        while machine.mayFrameBody {
            guard bodyDecoder != nil else { return }
            // A Content-Length body is complete as soon as its last byte was framed; ask once more to get `.end`.
            guard readEnd > readStart || bodyDecoder!.isComplete else { return }
            let window = UnsafeRawBufferPointer(chunk.bytes(readStart..<readEnd))
            let (event, consumed) = bodyDecoder!.next(window)
            let base = readStart
            readStart += consumed
            switch event {
            case .data(let range):
                if machine.bodyDataFramed(count: range.count, now: now) {
                    appendPendingBody((base + range.lowerBound)..<(base + range.upperBound))
                }
            case .needMoreData:
                machine.bodyNeedsMoreData(now: now)
                return
            case .end(let trailers):
                machine.bodyEndFramed()
                bodyTrailers = trailers
                bodyFinished()
                return
            case .failure(let error):
                bodyDecoder = nil
                if machine.isReadingBody {
                    flushPendingBody()
                    let sink = bodySink
                    bodySink = nil
                    sink?.bodyAborted(.malformed)
                }
                switch machine.bodyFramingFailed() {
                case .closeAfterResponse: break
                case .close: close()
                case .failRequest: fail(with: error)
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
        let pendingCount = pendingBody?.count ?? 0
        if stream.isSecure {
            // See the type's doc: half a chunk at a time, whether the sink is idle or not.
            if pendingCount >= (chunk?.capacity ?? 0) / 2 { flushPendingBody() }
        } else if machine.outstandingFragments == 0 || pendingCount >= configuration.readChunkSize / 2 {
            // Hand bytes over at once when the sink is idle; otherwise let them grow into a bigger write.
            flushPendingBody()
        }
    }

    private func flushPendingBody() {
        guard let range = pendingBody, let chunk else { return }
        pendingBody = nil
        guard machine.isReadingBody, let sink = bodySink, !range.isEmpty else { return }
        apply(machine.fragmentSent())
        let sequence = machine.requestSequence
        sink.bodyFragment(BodyFragment(chunk: chunk, range: range)) { [self] in
            fragmentDone(sequence: sequence)
        }
    }

    private func fragmentDone(sequence: UInt64) {
        guard machine.fragmentDone(sequence: sequence) else { return }
        if pendingBody != nil { flushPendingBody() }
        if machine.hasRoomToResume { process() }
    }

    private func bodyFinished() {
        if machine.isReadingBody { flushPendingBody() }
        switch machine.bodyEnded() {
        case .deliverEnd(let read):
            apply(read)
            let sink = bodySink
            bodySink = nil
            sink?.bodyEnd(trailers: bodyTrailers)
        case .finishExchange:
            finishExchange()
        case .none:
            break
        }
    }

    // MARK: Direct (spliced) bodies

    /// Worth asking the sink for a file: cleartext, Content-Length, enough left, nothing buffered or coalescing.
    /// (`nextStep` adds: no fragment outstanding, so the spliced bytes land after every earlier byte.)
    private var prefersDirectBody: Bool {
        guard configuration.spliceBodies, !stream.isSecure, !directBodyDeclined, splicer == nil, machine.isReadingBody,
            pendingBody == nil, readEnd == readStart, bodySink is any HTTPDirectBodySink,
            let remaining = bodyDecoder?.remainingContentLength, remaining >= configuration.spliceMinimumBytes,
            stream.tcp.mayHandOverReading
        else { return false }
        return true
    }

    private func startDirectBody() {
        guard let sink = bodySink as? any HTTPDirectBodySink, let remaining = bodyDecoder?.remainingContentLength,
            let target = sink.beginDirectBody(minimumCount: configuration.spliceMinimumBytes)
        else {
            directBodyDeclined = true
            return
        }
        let sequence = machine.requestSequence
        do {
            splicer = try SocketFileSplicer(
                stream: stream.tcp, file: target.descriptor, offset: target.offset,
                count: min(remaining, target.maxCount),
                pipeCapacity: context.splicePipeCapacity, drainsPerJob: context.spliceDrainsPerJob
            ) { [weak self] event in
                HTTPConnection.directBodyEvent(event, sink: sink, connection: self, sequence: sequence)
            }
            machine.directBodyStarted(now: now)
        } catch {
            context.server.logIf(.info, "splice unavailable (\(error)); reading the body instead\(requestLogTag)")
            directBodyDeclined = true
            sink.endDirectBody(writeErrorNumber: nil)
        }
    }

    /// The sink hears every write and the end even when the connection is gone or has moved on (a drain on the
    /// threadpool cannot be called back, and the sink must not commit before it is over); the connection reacts only
    /// while the splicer is its current one.
    private static func directBodyEvent(
        _ event: SocketFileSplicer.Event, sink: any HTTPDirectBodySink, connection: HTTPConnection?, sequence: UInt64
    ) {
        let current = connection.flatMap { $0.splicer != nil && $0.machine.requestSequence == sequence ? $0 : nil }
        switch event {
        case .received(let count):
            current?.directBodyReceived(count)
        case .written(let count):
            sink.bodyWrittenDirectly(count: count)
        case .stalled(let stalled):
            current?.machine.directBodyStalled(stalled)
        case .ended(let outcome):
            if let current {
                current.splicer = nil
                current.machine.directBodyEnded()
            }
            var errorNumber: Int32?
            if case .writeFailed(let error) = outcome { errorNumber = -error.code }
            sink.endDirectBody(writeErrorNumber: errorNumber)
            current?.directBodyFinished(outcome)
        }
    }

    private func directBodyReceived(_ count: Int) {
        context.server.splicedBodyByteCount.add(Int64(count), ordering: .relaxed)
        bodyDecoder?.skipContentBytes(Int64(count))
        _ = machine.bodyDataFramed(count: count, now: now)
        // As for a framed end: a handler answering from now on sees a complete body (the connection may stay open).
        if bodyDecoder?.isComplete == true { machine.bodyEndFramed() }
    }

    private func directBodyFinished(_ outcome: SocketFileSplicer.Outcome) {
        switch outcome {
        case .complete:
            // The decoder owes `.end` (or more bytes, if the sink allowed fewer than the body has): carry on.
            process()
        case .peerClosed, .readFailed:
            peerClosed()
        case .writeFailed, .cancelled:
            // The sink answers a failed write itself; a cancel came from whoever stopped the body.
            break
        }
    }

    /// Stops the splicer (a response before the body's end, an abort, a close). The sink still hears `endDirectBody`
    /// once a drain in flight is over.
    private func stopDirectBody() {
        guard let splicer else { return }
        self.splicer = nil
        machine.directBodyEnded()
        splicer.cancel()
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
        guard let exchange else { return }
        switch machine.readBodyRequested(now: now) {
        case .ignore:
            return
        case .endAtOnce:
            sink.bodyEnd(trailers: HTTPHeaders())
        case .startBody:
            bodySink = sink
            if exchange.head.expectsContinue {
                send(ResponseEncoder.continueResponse) { _ in }
            }
            process()
        }
    }

    /// As a response before the body's end does (`.stopBodyFirst`), without the response: the body is read on and
    /// dropped (no sink), a splice stops so nothing more lands in the sink's file.
    func exchangeStopBody() {
        guard exchange != nil, machine.isReadingBody, bodySink != nil else { return }
        flushPendingBody()
        bodySink = nil
        stopDirectBody()
        process()
    }

    /// Held until the end of this turn of the loop (`heldInformational`): a final response written in the same
    /// turn carries it in front, in one write; otherwise a zero-delay timer writes it before the loop polls again,
    /// so a client waiting for the 104 (its `Location`) before sending the body is not kept waiting. libuv (and the TLS session) keep writes in order, so nothing overtakes it. Reading and the
    /// splicer are left alone: a splice only reads the socket and this only writes it, so a 1xx may go out mid-body.
    func exchangeSendInformational(_ response: HTTPResponse) {
        guard let exchange, machine.phase.isOpen, exchange.head.version != .http1_0 else { return }
        let isFirst = heldInformational.isEmpty
        heldInformational.append(contentsOf: ResponseEncoder.encodeInformational(response))
        if isFirst { context.flushAtEndOfTurn(self) }
    }

    func exchangeRespond(_ response: consuming HTTPResponse, bodyLength: Int64?, source: (any HTTPBodySource)?) {
        guard let exchange else {
            source?.cancel()
            return
        }
        switch machine.responseRequested() {
        case .refuse:
            source?.cancel()
            return
        case .stopBodyFirst:
            // The handler answers before the body ended (413, lock takeover): stop feeding it.
            flushPendingBody()
            bodySink = nil
            stopDirectBody()
        case .proceed:
            break
        }
        let head = exchange.head
        let (keepAlive, read) = machine.responseStarted(
            closeRequested: response.closeConnection, expectsContinue: head.expectsContinue,
            remainingBodyLength: bodyDecoder?.remainingContentLength, now: now)
        let omitBody = head.method == .HEAD
        if !response.headers.contains("Date") { response.headers.add("Date", context.dateHeaderValue) }
        var bytes = ResponseEncoder.encode(
            response, version: head.version, keepAlive: keepAlive, bodyLength: bodyLength, omitBody: omitBody)
        apply(read)
        let sequence = machine.requestSequence
        context.server.logIf(.debug) {
            let id = response.headers["X-Request-ID"].map { " request_id=\($0)" } ?? requestLogTag
            return "\(head.method) \(head.target) -> \(response.status.code)\(id)"
        }
        // A whole response the kernel takes at once ends the exchange now, without a write request, its callback on
        // the next turn and libuv's epoll re-registration after it (`TCPStream.writeAtOnce`). Only when ending it
        // now calls no handler: a complete request, kept alive, nothing pipelined behind it, no 1xx held.
        if source == nil, keepAlive, machine.isBodyComplete, readEnd == readStart, heldInformational.isEmpty,
            !stream.isSecure
        {
            let written = stream.tcp.writeAtOnce(bytes)
            if written == bytes.count { return responseSent() }
            bytes.removeFirst(written)
        }
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
        guard machine.phase.isOpen else {
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
                        machine.responseProgressed(now: now)
                        streamBody(from: source, remaining: remaining - Int64(fragment.count), sequence: sequence)
                    }
                }
            default:
                // Short or failed source: the framing promised more bytes, so the connection cannot continue.
                source.cancel()
                context.server.logIf(.warning, "response body source ended early; closing connection\(requestLogTag)")
                close()
            }
        }
    }

    /// The response is on the wire. Either drain the unwanted body, close, or go for the next request.
    private func responseSent() {
        switch machine.responseSent(now: now) {
        case .closeGracefully: closeGracefully()
        case .drainBody: process()
        case .finishExchange: finishExchange()
        }
    }

    private func finishExchange() {
        exchange = nil
        bodyDecoder = nil
        switch machine.exchangeFinished(now: now) {
        case .closeGracefully: closeGracefully()
        case .readNextRequest: process()
        }
    }

    // MARK: HTTP/2 dispatch

    /// Before the first request only: a TLS session that negotiated "h2" by ALPN, or (with h2c enabled) a plain
    /// connection that opens with the HTTP/2 preface, is handed to `HTTP2Connection` with what was read so far.
    /// Returns true when the connection was handed over (this object is then done and holds nothing).
    private func switchesToHTTP2() -> Bool {
        guard machine.requestSequence == 0, case .readingHead = machine.phase else { return false }
        if stream.isSecure {
            guard stream.isHandshakeComplete, stream.negotiatedALPN == "h2" else { return false }
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
        // The machine is done (no sweep or read decision touches this connection again); the socket is not
        // closed: it belongs to the HTTP/2 connection from here on.
        _ = machine.closeNow()
        context.switchToHTTP2(self, stream: stream, initialBytes: initial)
        chunk = nil
        return true
    }

    /// A chunk with less free space than this is full: reading a few bytes at a time costs more than a new chunk.
    static let minimumReadSpace = 4096

    /// A TLS read that decrypted to less than this ends coalescing: at full speed a read yields ~140 KiB.
    static let secureShortRead = 16 * 1024

    static let http2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    // MARK: Errors, timeouts, closing

    private func fail(with error: HTTPParseError) {
        context.server.logIf(.debug, "bad request: \(error)")
        let response = HTTPResponse(
            status: error.status, headers: ["Date": context.dateHeaderValue], text: error.message,
            closeConnection: true)
        let bytes = ResponseEncoder.encode(response, version: .http1_1, keepAlive: false)
        apply(machine.requestFailed())
        send(bytes) { [self] _ in closeGracefully() }
    }

    private func peerClosed() {
        abort(reason: .clientClosed)
    }

    /// The end of the peer's stream, or a read error (a reset): a half-close during a complete request still gets
    /// its response, and a reset one keeps the connection (counted against `maxConnections`, awaited at shutdown)
    /// until the handler answers, as when neither was read before the response.
    private func peerEnded() {
        switch machine.peerEnded() {
        case .closeAfterResponse(let read): apply(read)
        case .close: peerClosed()
        }
    }

    func checkDeadline(now: UInt64) {
        // TLS body bytes held for coalescing wait at most until this sweep (see the type's doc).
        if pendingBody != nil, machine.outstandingFragments == 0, !isProcessing { flushPendingBody() }
        switch machine.tick(now: now) {
        case .none:
            break
        case .bodyTooSlow:
            context.logAbuse(
                .bodyTooSlow,
                "body slower than \(configuration.minBodyBytesPerSecond) bytes/s over "
                    + "\(configuration.bodyRateWindowMilliseconds) ms; closing connection\(requestLogTag)")
            abort(reason: .timeout)
        case .forceClose:
            finalClose()
        case .responseWriteTimeout:
            context.logAbuse(.responseStalled, "response write timeout; closing connection\(requestLogTag)")
            close()
        case .bodyTimeout:
            context.logAbuse(.bodyStalled, "body timeout; closing connection\(requestLogTag)")
            abort(reason: .timeout)
        case .headTimeout:
            fail(with: HTTPParseError(status: .requestTimeout, message: "request head timeout"))
        case .idleTimeout:
            close()
        }
    }

    /// Server shutdown: idle connections go now, busy ones after their current exchange.
    func shutdownGracefully() {
        if machine.shutdownRequested() { close() }
    }

    /// Ends the connection now; a body in progress is reported to its sink as aborted, so that whoever holds
    /// resources for it (an upload lock, an open file) lets go on every path that ends a connection.
    func abort(reason: BodyAbortReason) {
        let sink: (any HTTPBodySink)? = machine.isReadingBody ? bodySink : nil
        flushPendingBody()
        bodySink = nil
        stopDirectBody()
        // The sink hears it before the socket goes, so whoever sees the close can rely on the sink knowing.
        sink?.bodyAborted(reason)
        finalClose()
    }

    private func closeGracefully() {
        guard machine.closeGracefully(now: now) else { return }
        // The stream sends close_notify first, so a TLS client can tell a complete response from a truncated one.
        stream.shutdown { [self] _ in finalClose() }
    }

    /// Closes now (idempotent); a body being read is reported to its sink as `.clientClosed`.
    func close() {
        abort(reason: .clientClosed)
    }

    private func finalClose() {
        stopDirectBody()
        guard machine.closeNow() else { return }
        pendingBody = nil
        heldInformational = []
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
    var remoteAddress: String? { connection.stream.remoteAddress }

    func tagForLogs(requestID: String) {
        guard connection.currentSequence == sequence else { return }
        connection.loggedRequestID = requestID
    }

    private var isCurrent: Bool { connection.currentSequence == sequence && !hasResponded }

    func readBody(into sink: any HTTPBodySink) {
        // A handler that asks for the body of a request whose connection is gone (it waited for a lock while
        // the client left or the server shut down) must still hear that the body will not come.
        guard isCurrent else { return sink.bodyAborted(.clientClosed) }
        connection.exchangeReadBody(into: sink)
    }

    func respond(_ response: consuming HTTPResponse) {
        guard isCurrent else { return }
        hasResponded = true
        connection.exchangeRespond(response, bodyLength: nil, source: nil)
    }

    func stopBody() {
        guard isCurrent else { return }
        connection.exchangeStopBody()
    }

    func sendInformational(_ response: HTTPResponse) {
        guard isCurrent, response.status.isInterim else { return }
        connection.exchangeSendInformational(response)
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
