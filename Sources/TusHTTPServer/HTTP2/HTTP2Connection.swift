internal import CNghttp2
import TusCore
import TusHTTP1
import TusLoop
import TusTransport

/// One HTTP/2 connection (RFC 9113): nghttp2 does framing, HPACK, stream states and flow control; this class
/// feeds it plaintext from our `SecureStream` (which does TLS when there is any), ships what it produces, and turns
/// each request stream into an `HTTPExchange` for the same handler HTTP/1.1 requests go to.
///
/// Effects are never taken inside nghttp2 callbacks: callbacks only record what happened (a stream's head is
/// complete, body bytes arrived, a stream closed) and `settle()` acts on it after `nghttp2_session_mem_recv`
/// returns. So a handler never runs re-entrantly inside nghttp2, and a stream that was opened and reset in the
/// same read (rapid reset) never reaches the handler at all.
///
/// Backpressure: nghttp2's automatic WINDOW_UPDATE is off (`NGHTTP2_OPT_NO_AUTO_WINDOW_UPDATE`). Body bytes are
/// consumed (`nghttp2_session_consume`) only when the sink calls a fragment's `done` (or when the body is dropped),
/// so a slow disk stops the client at the stream window, and the connection window bounds the body bytes one
/// connection holds however many streams are open.
final class HTTP2Connection: SecureStreamDelegate {
    let stream: SecureStream
    unowned let context: LoopContext
    private var configuration: HTTPServerConfiguration { context.server.configuration }
    private var session: OpaquePointer?

    private var streams: [Int32: HTTP2Stream] = [:]
    /// Streams whose request head completed during the last read, in arrival order.
    private var newStreams: [HTTP2Stream] = []
    /// Streams with something to act on (bytes, end, close, a response fetch).
    private var dirtyStreams: [HTTP2Stream] = []
    /// Body bytes to hand back to flow control (dropped, or for a stream we no longer know).
    private var pendingConsumption: [(Int32, Int)] = []
    /// Streams to reset once nghttp2 is not in a call (a complete response to an incomplete request).
    private var pendingResets: [(Int32, UInt32)] = []

    /// Admission, header-block limits, flood and reset budgets, the preface and idle deadlines.
    private var machine: HTTP2ConnectionStateMachine
    /// Set when a callback stopped nghttp2 (`NGHTTP2_ERR_CALLBACK_FAILURE`) to end the connection: the GOAWAY
    /// code and the reason to log, once `nghttp2_session_mem_recv` returned.
    private var pendingTermination: (code: HTTP2ErrorCode, reason: String)?
    /// The SETTINGS_MAX_CONCURRENT_STREAMS value to put on the wire in place of the one nghttp2 was given.
    private var advertisedMaxStreams: UInt32?

    private var depth = 0
    private var isInsideNghttp2 = false
    private var pendingOutputBytes = 0
    private var lastOutputProgress: UInt64 = 0
    private var closeDeadline: UInt64 = .max
    /// What a lingering close still reads and drops before it stops reading (see `closeGracefully`).
    private var lingeringBytesLeft = 1 << 20
    private var isShuttingDown = false
    private var isClosing = false
    private var isFinalClosed = false
    /// Where the stream puts plaintext that is not DATA payload going to a receive chunk (frame headers, other
    /// frames, everything on h2c); nghttp2 copies what it keeps, so it is reused for every record.
    private let inputBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 32 * 1024, alignment: 16)
    /// Frame boundaries of the plaintext fed to nghttp2 so far (what comes next: DATA payload or not).
    private var cursor = HTTP2FrameCursor()
    /// TLS: where DATA payloads are decrypted, back to back; streams hold slices of it (`receiveEnd` bytes are
    /// filled). Nil until a payload comes, and again once the connection has been idle for a sweep.
    private var receiveChunk: ByteChunk?
    private var receiveEnd = 0
    /// Earlier receive chunks that slices may still pin, to count them (see `takeReceiveSpace`). Weak: a chunk goes
    /// back to the loop's pool the moment its last slice is done, not when this connection next looks (with many
    /// connections, chunks held here until then starved the pool: 1.6x the page faults at 32 uploads).
    private var retiredChunks: [WeakChunk] = []
    private struct WeakChunk {
        weak var chunk: ByteChunk?
    }
    /// Whether the last buffer handed out was receive-chunk space (else `inputBuffer`).
    private var isReceivingIntoChunk = false
    /// How much of that space is DATA payload; what a read puts beyond it is the next frame's header (see
    /// `allocatePlaintextBuffer`), which the next payload overwrites.
    private var payloadRoomInChunk = 0
    private var receivedPayloadSinceSweep = false
    /// The stream the last DATA bytes went to (a lookup saved per piece of a frame); let go of with its stream.
    private var lastDataStream: HTTP2Stream?
    /// Plaintext bytes of the socket read in progress (a short one ends TLS coalescing, see `holdsForCoalescing`).
    private var plaintextThisRead = 0
    /// Pieces of plaintext that read delivered, added to the server's count once per read.
    private var piecesThisRead = 0
    /// Set while held TLS body bytes go to their sinks whatever their size (a short read, the deadline sweep).
    private var isHandingOverHeldBodies = false

    var isSecure: Bool { stream.isSecure }
    /// How fragments' done-closures, response fetches and exchanges reach this connection (not weakly, see
    /// `HTTP2ConnectionLink`).
    let link = HTTP2ConnectionLink()

    init(stream: SecureStream, context: LoopContext) {
        self.stream = stream
        self.context = context
        machine = HTTP2ConnectionStateMachine(
            limits: .init(context.server.configuration), now: context.loop.nowMilliseconds)
        link.connection = self
    }

    deinit {
        link.connection = nil
        if let session { nghttp2_session_del(session) }
        inputBuffer.deallocate()
    }

    // MARK: Start

    /// Takes over the socket from the HTTP/1.1 connection that negotiated (or sniffed) HTTP/2; `initialBytes`
    /// are plaintext bytes that connection already read (the preface, perhaps more).
    func start(initialBytes: UnsafeRawBufferPointer) {
        let settings = configuration.http2
        var callbacks: OpaquePointer?
        precondition(nghttp2_session_callbacks_new(&callbacks) == 0, "nghttp2_session_callbacks_new failed")
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, onBeginFrame)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameReceived)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, onFrameSent)

        var option: OpaquePointer?
        precondition(nghttp2_option_new(&option) == 0, "nghttp2_option_new failed")
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        // Our own bucket (`HTTP2ConnectionStateMachine`) answers ENHANCE_YOUR_CALM first; nghttp2's, twice as
        // wide, only backs it up (it would send INTERNAL_ERROR).
        nghttp2_option_set_stream_reset_rate_limit(option, settings.resetBurst * 2, settings.resetsPerSecond * 2)
        nghttp2_option_set_max_continuations(option, settings.maxContinuations)
        // At most 32 entries per SETTINGS frame received (a SETTINGS frame is otherwise unbounded work).
        nghttp2_option_set_max_settings(option, 32)
        // PING and SETTINGS acknowledgements queued unsent: nghttp2's own flood stop (1000 by default, with no
        // GOAWAY of its own) is raised so that the flood budget (`maxUnproductiveFrames`) acts first and answers
        // ENHANCE_YOUR_CALM; the queue stays bounded by that budget.
        nghttp2_option_set_max_outbound_ack(option, 4 * max(1000, settings.maxUnproductiveFrames))

        var raw: OpaquePointer?
        let status = nghttp2_session_server_new2(&raw, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        precondition(status == 0 && raw != nil, "nghttp2_session_server_new2 failed: \(status)")
        session = raw

        // nghttp2 ends the connection (PROTOCOL_ERROR) at the first stream past the limit it acknowledged; we
        // refuse that stream instead (RFC 9113 §5.1.2), so nghttp2 gets the limit plus headroom and the wire
        // carries the advertised limit (`flushOutput` puts it into the first SETTINGS frame).
        let internalMaxStreams = settings.maxConcurrentStreams + settings.refusalHeadroom
        advertisedMaxStreams = settings.maxConcurrentStreams
        var entries = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: internalMaxStreams),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                value: UInt32(settings.initialStreamWindow)),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: UInt32(settings.maxFrameSize)),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                value: UInt32(configuration.parserLimits.maxHeadBytes)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            // RFC 9218: no RFC 7540 dependency tree. nghttp2 then keeps no closed streams for it and schedules
            // with the cheaper extensible-priorities code; uploads do not need stream dependencies.
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES.rawValue), value: 1),
        ]
        _ = nghttp2_submit_settings(raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        // The connection window is not a setting: raise it with a WINDOW_UPDATE on stream 0.
        _ = nghttp2_session_set_local_window_size(
            raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindow)

        lastOutputProgress = context.loop.nowMilliseconds
        stream.delegate = self
        perform { if initialBytes.count > 0 { receive(initialBytes) } }
        if !isFinalClosed { stream.startReading() }
    }

    // MARK: Socket input

    /// On TLS the plaintext is steered (`HTTP2FrameCursor`): DATA payload bytes are decrypted into the receive
    /// chunk, right after the previous payload and never past the end of the current one, and everything else into
    /// `inputBuffer`, no further than where the next payload may begin. A stream whose frames follow each other
    /// thus gets one contiguous range per chunk, handed to its sink as is (HTTP/1.1 over TLS decrypts straight into
    /// the body chunk too). The frame header after a payload is decrypted with it, into the chunk just past it: it
    /// is parsed before the next payload lands there, so the next payload simply overwrites it. A frame that spans
    /// records thus costs two `SSL_read`s and two `nghttp2_session_mem_recv`s (payload end with the next header,
    /// then the rest of the record) instead of three, with the header read on its own. A plain (h2c) read would
    /// cost a system call per frame, so h2c reads whole buffers and copies payloads into the streams.
    func allocatePlaintextBuffer() -> UnsafeMutableRawBufferPointer {
        isReceivingIntoChunk = false
        guard stream.isSecure, !isClosing, session != nil else { return inputBuffer }
        let payload = cursor.dataBytesAhead
        guard payload > 0 else {
            let count = min(inputBuffer.count, cursor.controlBytesAhead)
            return UnsafeMutableRawBufferPointer(rebasing: inputBuffer[0..<count])
        }
        receivedPayloadSinceSweep = true
        guard let space = takeReceiveSpace() else { return inputBuffer }
        isReceivingIntoChunk = true
        payloadRoomInChunk = min(space.count, payload)
        return UnsafeMutableRawBufferPointer(
            start: space.baseAddress, count: min(space.count, payload + HTTP2FrameCursor.headerLength))
    }

    /// Free space at the end of the receive chunk, after moving on to another chunk if this one is full. Nil when
    /// the budget is spent: slices of earlier chunks still pinned by streams add up to the connection window (plus
    /// two chunks). A stream can pin a whole chunk with a few bytes among another stream's payloads, so without a
    /// budget a stalled stream could make a connection hold chunks far beyond its window; with it, payloads are
    /// copied (into the streams' own chunks, as on h2c) until slices are done, and the body memory of a connection
    /// stays below twice its window.
    private func takeReceiveSpace() -> UnsafeMutableRawBufferPointer? {
        if let chunk = receiveChunk, receiveEnd < chunk.capacity {
            return UnsafeMutableRawBufferPointer(start: chunk.base + receiveEnd, count: chunk.capacity - receiveEnd)
        }
        if receiveChunk != nil {
            if isKnownUniquelyReferenced(&receiveChunk) {
                // Every slice of it is done: start over at its beginning.
                receiveEnd = 0
                return UnsafeMutableRawBufferPointer(start: receiveChunk!.base, count: receiveChunk!.capacity)
            }
            retiredChunks.append(WeakChunk(chunk: receiveChunk))
            receiveChunk = nil
        }
        let capacity = context.bodyChunkSize(secure: true)
        retiredChunks.removeAll { $0.chunk == nil }
        let budget = Int(configuration.http2.connectionWindow) / capacity + 2
        guard retiredChunks.count + 1 <= budget else { return nil }
        let chunk = context.chunkPool.chunk(capacity: capacity)
        receiveChunk = chunk
        receiveEnd = 0
        return UnsafeMutableRawBufferPointer(start: chunk.base, count: chunk.capacity)
    }

    /// An idle connection keeps no receive chunk (a thousand idle connections must not hold 1 MiB each); one that
    /// slices still hold is only counted on.
    private func releaseReceiveChunksIfIdle() {
        defer { receivedPayloadSinceSweep = false }
        guard !receivedPayloadSinceSweep else { return }
        if receiveChunk != nil {
            if !isKnownUniquelyReferenced(&receiveChunk) { retiredChunks.append(WeakChunk(chunk: receiveChunk)) }
            receiveChunk = nil
            receiveEnd = 0
        }
        retiredChunks.removeAll { $0.chunk == nil }
    }

    /// Each record goes to nghttp2 at once (the buffer is reused for the next); acting on what it recorded
    /// waits for the end of the socket read (`didFinishRead`), as inside `perform`.
    func didReceivePlaintext(count: Int) {
        guard !isFinalClosed else { return }
        if isClosing {
            // Lingering (see `closeGracefully`): drop the bytes; the peer's end, or an error, ends it.
            lingeringBytesLeft -= count
            if lingeringBytesLeft <= 0 { stream.stopReading() }
            return
        }
        depth += 1
        plaintextThisRead += count
        piecesThisRead += 1
        if isReceivingIntoChunk, let chunk = receiveChunk {
            let start = receiveEnd
            // Only payload bytes are kept: header bytes read past them are free space again once parsed.
            receiveEnd += min(count, payloadRoomInChunk)
            receive(UnsafeRawBufferPointer(start: chunk.base + start, count: count))
        } else {
            receive(UnsafeRawBufferPointer(rebasing: inputBuffer[0..<count]))
        }
        depth -= 1
    }

    func didFinishRead(_ event: SecureStreamReadEvent) {
        guard !isFinalClosed else { return }
        if isClosing {
            // Lingering: only the peer's end (or a failure) matters now.
            if case .received = event { return }
            return finalClose()
        }
        let isShortRead = plaintextThisRead < HTTPConnection.secureShortRead
        plaintextThisRead = 0
        if piecesThisRead > 0 {
            context.server.http2PlaintextPieceCount.add(Int64(piecesThisRead), ordering: .relaxed)
            piecesThisRead = 0
        }
        switch event {
        case .received:
            if isShortRead && isSecure { handOverHeldBodies() } else { perform {} }
        case .closed, .failed:
            abort(reason: .clientClosed)
        case .tlsFailed(let error):
            context.server.logIf(.debug, "TLS: \(error)")
            abort(reason: .clientClosed)
        }
    }

    /// Plaintext into nghttp2; the callbacks below record what it found.
    private func receive(_ bytes: UnsafeRawBufferPointer) {
        guard let session, !isClosing, let base = bytes.baseAddress, bytes.count > 0 else { return }
        cursor.advance(over: bytes)
        isInsideNghttp2 = true
        let status = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        isInsideNghttp2 = false
        if let (code, reason) = pendingTermination {
            // One of our limits stopped nghttp2 mid-read: nothing after the offending frame or field was decoded.
            pendingTermination = nil
            context.logAbuse(.http2LimitReached, "HTTP/2: closing connection (\(code)): \(reason)")
            terminate(errorCode: code.rawValue)
        } else if status < 0 {
            // Protocol error, CONTINUATION flood...: nghttp2 queued a GOAWAY; send it and end. A flood of
            // acknowledgements it would owe (`NGHTTP2_ERR_FLOODED`) comes without one.
            let reason = String(cString: nghttp2_strerror(Int32(status)))
            context.logAbuse(.http2ProtocolError, "HTTP/2: closing connection: \(reason)")
            let isFlood = status == Int(NGHTTP2_ERR_FLOODED.rawValue)
            terminate(errorCode: isFlood ? HTTP2ErrorCode.enhanceYourCalm.rawValue : nil)
        }
    }

    // MARK: Callback recording (called by nghttp2 from inside mem_recv / mem_send; record only)

    /// Every frame header, before nghttp2 acts on the frame. Returns the nghttp2 callback result.
    fileprivate func frameBegan(_ header: HTTP2FrameHeader) -> Int32 {
        guard pendingTermination == nil else { return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue }
        switch machine.frameReceived(header, now: context.loop.nowMilliseconds) {
        case .proceed:
            return 0
        case .close(let code, let reason):
            pendingTermination = (code, reason)
            return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
        }
    }

    fileprivate func beginRequest(streamID: Int32) {
        switch machine.requestStreamOpened(streamID, now: context.loop.nowMilliseconds) {
        case .accept:
            streams[streamID] = HTTP2Stream(id: streamID)
        case .refuse:
            // No `HTTP2Stream`: its fields, frames and body bytes are dropped until the reset is out.
            context.server.logIf(.debug, "HTTP/2 stream \(streamID): refused (concurrent streams at the limit)")
            pendingResets.append((streamID, HTTP2ErrorCode.refusedStream.rawValue))
        }
    }

    fileprivate func beginTrailers(streamID: Int32) {
        machine.trailersBegan(streamID)
    }

    /// One decoded header field. Returns the nghttp2 callback result: 0, a temporal failure (this block is not
    /// decoded further and the stream is reset), or a failure that stops the connection's input at once.
    fileprivate func header(streamID: Int32, isTrailer: Bool, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)
        -> Int32
    {
        let isPseudo = name.first == UInt8(ascii: ":")
        switch machine.fieldReceived(streamID, bytes: name.count + value.count, isPseudo: isPseudo) {
        case .store:
            break
        case .discard:
            return 0
        case .stopBlock:
            context.logAbuse(
                .http2HeaderBlockTooLarge, "HTTP/2 stream \(streamID): header block over twice the limit; resetting")
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
        case .close(let code, let reason):
            pendingTermination = (code, reason)
            return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
        }
        guard let stream = streams[streamID] else { return 0 }
        let nameString = String(decoding: name, as: UTF8.self)
        let valueString = String(decoding: value, as: UTF8.self)
        if isTrailer {
            stream.trailers.add(nameString, valueString)
            return 0
        }
        switch nameString {
        case ":method": stream.method = valueString
        case ":path": stream.path = valueString
        case ":authority": stream.authority = valueString
        case ":scheme", ":protocol": break
        default: stream.headers.add(nameString, valueString)
        }
        return 0
    }

    fileprivate func frameReceived(type: UInt8, flags: UInt8, streamID: Int32, isRequestHeaders: Bool) {
        let endStream = flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch type {
        case UInt8(NGHTTP2_HEADERS.rawValue):
            guard let stream = streams[streamID] else { return }
            if isRequestHeaders { newStreams.append(stream) }
            if endStream { stream.lifecycle.remoteEnded() }
            markDirty(stream)
        case UInt8(NGHTTP2_DATA.rawValue):
            guard endStream, let stream = streams[streamID] else { return }
            stream.lifecycle.remoteEnded()
            markDirty(stream)
        case UInt8(NGHTTP2_SETTINGS.rawValue):
            machine.settingsReceived(isAcknowledgement: flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0)
        default:
            break
        }
    }

    fileprivate func dataReceived(streamID: Int32, bytes: UnsafeRawBufferPointer) {
        // A DATA frame comes in two or three pieces (TLS records and steered reads), mostly of the same stream.
        let known = lastDataStream?.id == streamID ? lastDataStream : streams[streamID]
        guard let stream = known, !stream.isClosed else {
            pendingConsumption.append((streamID, bytes.count))
            return
        }
        guard stream.lifecycle.keepsArrivingBytes else {
            pendingConsumption.append((streamID, bytes.count))
            return
        }
        if let chunk = receiveChunk, let base = bytes.baseAddress, base >= UnsafeRawPointer(chunk.base),
            base + bytes.count <= UnsafeRawPointer(chunk.base + receiveEnd)
        {
            let start = UnsafeRawPointer(chunk.base).distance(to: base)
            stream.appendSlice(of: chunk, range: start..<(start + bytes.count))
        } else {
            stream.append(bytes, maxChunk: configuration.readChunkSize, pool: context.chunkPool)
            context.server.copiedHTTP2BodyByteCount.add(Int64(bytes.count), ordering: .relaxed)
        }
        lastDataStream = stream
        // Told to the state machine once per read (`service`): the clock does not move within a read.
        stream.unreportedBodyBytes += bytes.count
        markDirty(stream)
    }

    fileprivate func streamClosed(streamID: Int32) {
        machine.streamClosed(streamID, now: context.loop.nowMilliseconds)
        guard let stream = streams[streamID] else { return }
        stream.lifecycle.closed()
        markDirty(stream)
    }

    fileprivate func frameSent(type: UInt8, flags: UInt8, streamID: Int32) {
        if type == UInt8(NGHTTP2_DATA.rawValue) { machine.dataFrameSent() }
        guard flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0,
            type == UInt8(NGHTTP2_HEADERS.rawValue) || type == UInt8(NGHTTP2_DATA.rawValue), let session
        else { return }
        // The response is complete but the request is not: ask the client to stop sending (RFC 9113 §8.1).
        if nghttp2_session_get_stream_remote_close(session, streamID) == 0 {
            pendingResets.append((streamID, NGHTTP2_NO_ERROR.rawValue))
        }
    }

    /// nghttp2 asks for response body bytes (inside mem_send). Copies what is there, or defers until `settle`
    /// fetched the next piece from the source.
    fileprivate func produceResponse(streamID: Int32, into buffer: UnsafeMutableRawBufferPointer, flags: inout UInt32)
        -> Int
    {
        let eof = NGHTTP2_DATA_FLAG_EOF.rawValue
        guard let stream = streams[streamID] else {
            flags |= eof
            return 0
        }
        switch stream.responseBody {
        case .none:
            flags |= eof
            return 0
        case .bytes(let bytes, let sent):
            let count = min(buffer.count, bytes.count - sent)
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + sent, byteCount: count) }
            if sent + count == bytes.count {
                flags |= eof
                stream.responseBody = .none
                machine.responseFinished(streamID)
            } else {
                stream.responseBody = .bytes(bytes, sent: sent + count)
            }
            return count
        case .source(let source, let remaining):
            guard let fragment = stream.responseFragment else {
                stream.lifecycle.responseBytesWanted()
                markDirty(stream)
                return Int(NGHTTP2_ERR_DEFERRED.rawValue)
            }
            let count = min(buffer.count, fragment.count - stream.responseOffset)
            buffer.baseAddress!.copyMemory(from: fragment.bytes.baseAddress! + stream.responseOffset, byteCount: count)
            stream.responseOffset += count
            if stream.responseOffset == fragment.count {
                stream.responseFragment = nil
                stream.responseOffset = 0
                // The response progresses by whole pieces (see `HTTP2ConnectionStateMachine.StreamRecord`).
                machine.responseProgressed(streamID, now: context.loop.nowMilliseconds)
            }
            let left = remaining - Int64(count)
            if left == 0 {
                flags |= eof
                stream.responseBody = .none
                machine.responseFinished(streamID)
                source.cancel()
            } else {
                stream.responseBody = .source(source, remaining: left)
            }
            return count
        }
    }

    private func markDirty(_ stream: HTTP2Stream) {
        if stream.lifecycle.enqueue() { dirtyStreams.append(stream) }
    }

    // MARK: Acting on what happened

    /// Runs `body`, then (at the outermost level) acts on everything it recorded and ships the output.
    private func perform(_ body: () -> Void) {
        depth += 1
        body()
        depth -= 1
        if depth == 0 { settle() }
    }

    private func settle() {
        depth += 1
        defer { depth -= 1 }
        var rounds = 0
        while !isFinalClosed, let session {
            rounds += 1
            var didWork = false
            if !pendingConsumption.isEmpty {
                let consumption = pendingConsumption
                pendingConsumption = []
                for (id, count) in consumption where count > 0 {
                    if streams[id]?.lifecycle.reopensStreamWindow == false {
                        // A stopped body's stream window stays shut; the connection's reopens (`streamStopBody`).
                        _ = nghttp2_session_consume_connection(session, count)
                    } else {
                        _ = nghttp2_session_consume(session, id, count)
                    }
                }
            }
            if !pendingResets.isEmpty {
                let resets = pendingResets
                pendingResets = []
                for (id, code) in resets { _ = nghttp2_submit_rst_stream(session, 0, id, code) }
            }
            if !newStreams.isEmpty {
                let fresh = newStreams
                newStreams = []
                for stream in fresh where !stream.isClosed && !isClosing { dispatch(stream) }
                didWork = true
            }
            if !dirtyStreams.isEmpty {
                let dirty = dirtyStreams
                dirtyStreams = []
                for stream in dirty {
                    stream.lifecycle.dequeued()
                    service(stream)
                }
                didWork = true
            }
            let wrote = flushOutput()
            if !(didWork || wrote) || rounds > 64 { break }
            if newStreams.isEmpty && dirtyStreams.isEmpty && pendingConsumption.isEmpty && pendingResets.isEmpty
                && !wrote
            {
                break
            }
        }
        if !isFinalClosed, !isClosing, let session, streams.isEmpty {
            if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
                // GOAWAY went out (ours on shutdown, or nghttp2's own: reset flood, protocol error) and no
                // stream is left.
                context.server.logIf(.debug, "HTTP/2: session ended; closing connection")
                closeGracefully()
            }
        }
    }

    /// A complete request head: answer it ourselves when it is unusable, otherwise give it to the handler.
    private func dispatch(_ stream: HTTP2Stream) {
        if machine.isHeadOversized(stream.id) {
            return respondDirectly(stream, .requestHeaderFieldsTooLarge, "request header fields too large")
        }
        guard let method = HTTPMethod(rawValue: stream.method) else {
            return respondDirectly(stream, .notImplemented, "method not implemented")
        }
        var headers = stream.headers
        if !headers.contains("Host"), let authority = stream.authority {
            headers = HTTPHeaders([(name: "host", value: authority)] + headers.fields)
        }
        let framing: BodyFraming
        let lengths = headers.values(for: "content-length")
        if let first = lengths.first {
            guard lengths.count == 1, let length = Int64(first), length >= 0 else {
                return respondDirectly(stream, .badRequest, "invalid content-length")
            }
            framing = length == 0 ? .none : .contentLength(length)
        } else {
            framing = stream.isRemoteEnded ? .none : .chunked
        }
        let expectsContinue = headers["expect"].map { $0.lowercased() == "100-continue" } ?? false
        let head = RequestHead(
            method: method, target: stream.path, version: HTTPVersion(major: 2, minor: 0), headers: headers,
            bodyFraming: framing, keepAlive: true, expectsContinue: expectsContinue)
        stream.head = head
        let exchange = HTTP2Exchange(head: head, connection: self, stream: stream)
        stream.exchange = exchange
        context.server.handler.handle(head, exchange: exchange)
    }

    private func respondDirectly(_ stream: HTTP2Stream, _ status: HTTPStatus, _ text: String) {
        // The real method when there is one: a HEAD request must get no body.
        let method = HTTPMethod(rawValue: stream.method) ?? .GET
        let head = RequestHead(method: method, target: stream.path, version: HTTPVersion(major: 2, minor: 0))
        stream.head = head
        context.server.logIf(.debug, "HTTP/2 stream \(stream.id): \(status.code) \(text)")
        streamRespond(stream, HTTPResponse(status: status, text: text), bodyLength: nil, source: nil)
    }

    /// Delivers buffered body bytes and the end, aborts a closed stream's body, starts response fetches.
    private func service(_ stream: HTTP2Stream) {
        if stream.unreportedBodyBytes > 0 {
            machine.bodyReceived(stream.id, byteCount: stream.unreportedBodyBytes, now: context.loop.nowMilliseconds)
            stream.unreportedBodyBytes = 0
        }
        if stream.isClosed {
            finishClosedStream(stream)
            return
        }
        deliverBody(stream)
        if stream.lifecycle.startFetch() { fetchResponseBody(stream) }
    }

    private func deliverBody(_ stream: HTTP2Stream) {
        while true {
            let sink: any HTTPBodySink
            switch stream.lifecycle.body {
            case .reading:
                guard let reading = stream.sink else { return }
                sink = reading
            case .finished, .stopped:
                let dropped = stream.dropBuffered()
                if dropped > 0 { pendingConsumption.append((stream.id, dropped)) }
                return
            case .waiting:
                return
            }
            let fragment: BodyFragment?
            if let queued = stream.takeQueued() {
                fragment = queued
            } else if stream.outstandingFragments == 0 || stream.isRemoteEnded {
                // Hand the partial chunk over at once when the sink is idle; otherwise let it fill (bigger writes).
                fragment = holdsForCoalescing(stream) ? nil : stream.takeCurrent()
            } else {
                fragment = nil
            }
            if let fragment {
                stream.outstandingFragments += 1
                let count = fragment.count
                sink.bodyFragment(fragment) { [link] in link.connection?.fragmentDone(stream, count: count) }
                continue
            }
            if stream.bufferedByteCount == 0 && stream.lifecycle.bufferDrained() {
                stream.sink = nil
                machine.bodyFinished(stream.id)
                let trailers = stream.trailers
                sink.bodyEnd(trailers: trailers)
            }
            return
        }
    }

    /// TLS, as HTTP/1.1 over TLS does: an idle sink gets a stream's bytes half a receive chunk at a time, not per
    /// socket read (a read yields ~50 KiB at full speed here, and each fragment costs the writer a threadpool
    /// hand-off). Bytes are held only while the client may still send that much (both its windows stay open for
    /// half a chunk): held bytes are not consumed, so a client with a smaller window would wait for them. They go
    /// out at the stream's end, after a short read (a trickle, a pause) and at the deadline sweep at the latest.
    private func holdsForCoalescing(_ stream: HTTP2Stream) -> Bool {
        guard isSecure, !isHandingOverHeldBodies, !stream.isRemoteEnded, let session, let chunk = receiveChunk
        else { return false }
        let threshold = chunk.capacity / 2
        guard stream.bufferedByteCount < threshold else { return false }
        let window = min(
            nghttp2_session_get_stream_local_window_size(session, stream.id),
            nghttp2_session_get_local_window_size(session))
        return Int(window) >= threshold
    }

    private func handOverHeldBodies() {
        isHandingOverHeldBodies = true
        defer { isHandingOverHeldBodies = false }
        perform {
            for stream in streams.values where stream.outstandingFragments == 0 && stream.bufferedByteCount > 0 {
                markDirty(stream)
            }
        }
    }

    private func fragmentDone(_ stream: HTTP2Stream, count: Int) {
        guard !isFinalClosed else { return }
        perform {
            stream.outstandingFragments -= 1
            // The window reopens only now: this is what slows a client down to the speed of the disk.
            pendingConsumption.append((stream.id, count))
            if !stream.isClosed { markDirty(stream) }
        }
    }

    private func finishClosedStream(_ stream: HTTP2Stream) {
        guard streams[stream.id] === stream else { return }
        streams[stream.id] = nil
        if lastDataStream === stream { lastDataStream = nil }
        // DATA that arrived intact before the reset still goes to a sink that is reading: a resumable upload keeps
        // every byte it can (the draft's C18; a reset in the same read as the last DATA frames lost them before).
        if stream.lifecycle.body == .reading, let sink = stream.sink {
            for fragment in stream.takeAll() {
                stream.outstandingFragments += 1
                let count = fragment.count
                sink.bodyFragment(fragment) { [link] in link.connection?.fragmentDone(stream, count: count) }
            }
        }
        let dropped = stream.dropBuffered()
        if dropped > 0 { pendingConsumption.append((stream.id, dropped)) }
        let sink = stream.lifecycle.bodyAborted() ? stream.sink : nil
        stream.sink = nil
        if case .source(let source, _) = stream.responseBody {
            stream.responseBody = .none
            source.cancel()
        }
        stream.responseFragment = nil
        sink?.bodyAborted(.clientClosed)
    }

    private func fetchResponseBody(_ stream: HTTP2Stream) {
        guard case .source(let source, let remaining) = stream.responseBody else {
            return stream.lifecycle.fetchCompleted()
        }
        let maxLength = Int(min(remaining, Int64(configuration.readChunkSize)))
        source.next(maxLength: maxLength) { [link] result in
            guard let self = link.connection, !self.isFinalClosed else { return }
            self.perform {
                stream.lifecycle.fetchCompleted()
                guard !stream.isClosed, case .source(_, let remaining) = stream.responseBody else { return }
                switch result {
                case .success(let fragment?) where fragment.count > 0 && Int64(fragment.count) <= remaining:
                    stream.responseFragment = fragment
                    stream.responseOffset = 0
                    if let session = self.session { _ = nghttp2_session_resume_data(session, stream.id) }
                default:
                    // Short or failed source: the stream cannot deliver the promised length.
                    self.context.server.logIf(.warning, "response body source ended early; resetting stream")
                    stream.responseBody = .none
                    source.cancel()
                    self.pendingResets.append((stream.id, NGHTTP2_INTERNAL_ERROR.rawValue))
                }
            }
        }
    }

    // MARK: Exchange entry points

    func streamReadBody(_ stream: HTTP2Stream, into sink: any HTTPBodySink) {
        guard !isFinalClosed, stream.lifecycle.readBodyRequested() == .start else {
            return sink.bodyAborted(.clientClosed)
        }
        perform {
            stream.sink = sink
            machine.bodyReadStarted(stream.id, now: context.loop.nowMilliseconds)
            if stream.head?.expectsContinue == true, stream.bufferedByteCount == 0, !stream.isRemoteEnded,
                let session
            {
                submitHeaders(session, stream.id, [(":status", "100")], body: nil)
            }
            markDirty(stream)
        }
    }

    /// The handler stops the body to clean up before it answers (a hook's StopUpload): the sink hears nothing
    /// more, and the stream gets no more window, so the client stops sending after at most one window while the
    /// other streams go on. The late response then resets the stream (NO_ERROR) if the request is still open
    /// (`frameSent`, RFC 9113 §8.1); HTTP/1.1 has to read and drop the rest, or close, instead. A response that
    /// never comes is given up after the body timeout (`checkDeadline`).
    func streamStopBody(_ stream: HTTP2Stream) {
        guard !isFinalClosed, stream.lifecycle.stopBodyRequested() == .stop else { return }
        perform {
            stream.sink = nil
            machine.bodyStopped(stream.id, now: context.loop.nowMilliseconds)
            markDirty(stream)
        }
    }

    func streamRespond(_ stream: HTTP2Stream, _ response: HTTPResponse, bodyLength: Int64?,
        source: (any HTTPBodySource)?
    ) {
        guard case .respond(let endsBody) = stream.lifecycle.responseRequested(), !isFinalClosed, let session,
            let head = stream.head
        else {
            source?.cancel()
            return
        }
        perform {
            machine.responseStarted(stream.id)
            // The handler answered before the body ended (413, lock takeover): stop feeding it, and let the
            // remaining bytes go (they are consumed as they arrive; the stream is reset once the answer is out).
            if endsBody {
                stream.sink = nil
                machine.bodyFinished(stream.id)
                markDirty(stream)
            }
            let code = response.status.code
            let statusForbidsBody = (100..<200).contains(code) || code == 204 || code == 304
            let omitBody = head.method == .HEAD
            var fields = headerFields(of: response)
            if !response.headers.contains("Date") { fields.append(("date", context.dateHeaderValue)) }
            var body: HTTP2Stream.ResponseBody = .none
            if !statusForbidsBody {
                let length: Int64? = omitBody ? bodyLength : (bodyLength ?? Int64(response.body.count))
                if let length { fields.append(("content-length", String(length))) }
                if !omitBody {
                    if let source, let bodyLength, bodyLength > 0 {
                        body = .source(source, remaining: bodyLength)
                    } else if bodyLength == nil, !response.body.isEmpty {
                        body = .bytes(response.body, sent: 0)
                    }
                }
            }
            if case .source = body {} else { source?.cancel() }
            stream.responseBody = body
            if case .none = body {
                machine.responseFinished(stream.id)
            } else {
                machine.responseProgressed(stream.id, now: context.loop.nowMilliseconds)
            }
            context.server.logIf(.debug, "\(head.method) \(head.target) -> \(code) (h2 stream \(stream.id))")
            if case .none = body {
                submitHeaders(session, stream.id, fields, body: nil)
            } else {
                var provider = nghttp2_data_provider(
                    source: nghttp2_data_source(ptr: nil), read_callback: readResponseBody)
                submitHeaders(session, stream.id, fields, body: &provider)
            }
        }
    }

    /// A HEADERS frame without END_STREAM (`submitHeaders` picks `nghttp2_submit_headers` for a 1xx). nghttp2 sends
    /// a stream's HEADERS in the order they were submitted, so the final response always comes after it.
    func streamSendInformational(_ stream: HTTP2Stream, _ response: HTTPResponse) {
        guard stream.lifecycle.acceptsInformational, !isFinalClosed, let session else { return }
        perform { submitHeaders(session, stream.id, headerFields(of: response), body: nil) }
    }

    /// `:status` and the response's fields, lower-cased, minus what HTTP/2 forbids.
    private func headerFields(of response: HTTPResponse) -> [(String, String)] {
        var fields: [(String, String)] = [(":status", String(response.status.code))]
        for (name, value) in response.headers {
            let lower = name.lowercased()
            // Connection-specific fields are not allowed in HTTP/2 (RFC 9113 §8.2.2).
            if lower == "content-length" || lower == "transfer-encoding" || lower == "connection"
                || lower == "keep-alive" || lower == "proxy-connection" || lower == "upgrade"
            {
                continue
            }
            guard !lower.isEmpty, lower.utf8.allSatisfy(isTokenByte) else { continue }
            fields.append((lower, sanitized(value)))
        }
        return fields
    }

    /// `nghttp2_submit_response` (or a 1xx HEADERS when `body` is nil and the status is informational).
    /// nghttp2 copies the name/value bytes, so they only have to live for the call.
    private func submitHeaders(
        _ session: OpaquePointer, _ streamID: Int32, _ fields: [(String, String)],
        body: UnsafeMutablePointer<nghttp2_data_provider>?
    ) {
        var storage: [UInt8] = []
        var spans: [(Int, Int, Int, Int)] = []
        for (name, value) in fields {
            let nameStart = storage.count
            storage.append(contentsOf: name.utf8)
            let valueStart = storage.count
            storage.append(contentsOf: value.utf8)
            spans.append((nameStart, valueStart - nameStart, valueStart, storage.count - valueStart))
        }
        storage.append(0)
        storage.withUnsafeMutableBufferPointer { bytes in
            let base = bytes.baseAddress!
            var nva = spans.map { span in
                nghttp2_nv(
                    name: base + span.0, value: base + span.2, namelen: span.1, valuelen: span.3,
                    flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            let isInformational = fields.first?.1.first == "1"
            let status: Int32
            if isInformational {
                status = nghttp2_submit_headers(session, 0, streamID, nil, &nva, nva.count, nil)
            } else {
                status = nghttp2_submit_response(session, streamID, &nva, nva.count, body)
            }
            if status != 0 {
                context.server.logIf(.debug, "HTTP/2 submit on stream \(streamID): \(String(cString: nghttp2_strerror(status)))")
            }
        }
    }

    // MARK: Output

    /// Moves frames from nghttp2 to the socket while the socket keeps up. Returns whether anything was written.
    @discardableResult
    private func flushOutput() -> Bool {
        guard let session, !isFinalClosed else { return false }
        var plain: [UInt8] = []
        var produced = 0
        let limit = configuration.http2.maxPendingOutputBytes
        isInsideNghttp2 = true
        while pendingOutputBytes + produced < limit {
            var data: UnsafePointer<UInt8>? = nil
            let count = nghttp2_session_mem_send(session, &data)
            if count < 0 {
                isInsideNghttp2 = false
                context.server.logIf(.info, "HTTP/2: \(String(cString: nghttp2_strerror(Int32(count))))")
                abort(reason: .clientClosed)
                return false
            }
            guard count > 0, let data else { break }
            // Frames are gathered first: one SSL_write (one TLS record per 16 KiB, not one per frame) and one
            // socket write per flush.
            plain.append(contentsOf: UnsafeRawBufferPointer(start: data, count: count))
            produced += count
        }
        isInsideNghttp2 = false
        guard produced > 0 else { return false }
        if let advertised = advertisedMaxStreams {
            advertisedMaxStreams = nil
            putAdvertisedMaxStreams(advertised, intoFirstSettingsFrame: &plain)
        }
        write(plain)
        return true
    }

    /// Our SETTINGS frame is the first frame nghttp2 produces (a server's connection preface), and
    /// MAX_CONCURRENT_STREAMS its first entry (`start`): its value becomes what clients are told.
    private func putAdvertisedMaxStreams(_ value: UInt32, intoFirstSettingsFrame output: inout [UInt8]) {
        let entryID = UInt16(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue)
        precondition(
            output.count >= 15 && output[3] == UInt8(NGHTTP2_SETTINGS.rawValue) && output[4] == 0
                && output[9] == UInt8(entryID >> 8) && output[10] == UInt8(entryID & 0xff),
            "the first frame out is not our SETTINGS with MAX_CONCURRENT_STREAMS first")
        for index in 0..<4 { output[11 + index] = UInt8(truncatingIfNeeded: value >> (24 - 8 * index)) }
    }

    private func write(_ output: [UInt8]) {
        guard !output.isEmpty, !stream.isClosed else { return }
        pendingOutputBytes += output.count
        let count = output.count
        stream.write(output) { [self] error in
            pendingOutputBytes -= count
            lastOutputProgress = context.loop.nowMilliseconds
            if error != nil {
                abort(reason: .clientClosed)
                return
            }
            if !isFinalClosed && !isClosing { perform {} }
        }
    }

    // MARK: Deadlines, shutdown, closing

    func checkDeadline(now: UInt64) {
        guard !isFinalClosed else { return }
        if isClosing {
            if now >= closeDeadline { finalClose() }
            return
        }
        releaseReceiveChunksIfIdle()
        if isSecure { handOverHeldBodies() }
        guard !isFinalClosed, !isClosing else { return }
        if case .terminate(let code, let reason) = machine.tick(now: now) {
            let line = "HTTP/2: closing connection (\(code)): \(reason)"
            if code == .noError {
                context.server.logIf(.debug, line)
            } else {
                context.logAbuse(.http2LimitReached, line)
            }
            return terminate(errorCode: code.rawValue)
        }
        if pendingOutputBytes > 0 && now &- lastOutputProgress >= configuration.bodyTimeoutMilliseconds {
            context.logAbuse(.responseStalled, "HTTP/2: response write timeout; closing connection")
            return abort(reason: .clientClosed)
        }
        perform {
            let expired = machine.expiredStreams(
                now: now, isHoldingBodyBack: { [streams] id in streams[id].map(isHoldingBodyBack) ?? false },
                peerLetsUsSend: peerLetsUsSend)
            for (id, timeout) in expired {
                guard let stream = streams[id], !stream.isClosed else { continue }
                switch timeout {
                case .bodyStalled:
                    context.logAbuse(.bodyStalled, "HTTP/2 stream \(id): body timeout; resetting stream")
                    abortStream(stream, reason: .timeout)
                case .bodyTooSlow:
                    context.logAbuse(
                        .bodyTooSlow,
                        "HTTP/2 stream \(id): body slower than \(configuration.minBodyBytesPerSecond) bytes/s "
                            + "over \(configuration.bodyRateWindowMilliseconds) ms; resetting stream")
                    abortStream(stream, reason: .timeout)
                case .responseStalled:
                    context.logAbuse(
                        .responseStalled, "HTTP/2 stream \(id): response write timeout; resetting stream")
                    abortStream(stream, reason: .clientClosed)
                case .unanswered:
                    // The handler's failure, not the peer's: INTERNAL_ERROR tells the client the request may not
                    // have been processed (RFC 9113 §8.7 promises nothing for it), so it may retry.
                    context.logAbuse(
                        .bodyStalled, "HTTP/2 stream \(id): body stopped and no answer within the body timeout; "
                            + "resetting stream")
                    abortStream(stream, reason: .timeout, code: .internalError)
                }
            }
        }
    }

    /// Whether the peer's flow-control windows (the stream's and the connection's) let us send on the stream now.
    private func peerLetsUsSend(_ id: Int32) -> Bool {
        guard let session else { return false }
        return nghttp2_session_get_stream_remote_window_size(session, id) > 0
            && nghttp2_session_get_remote_window_size(session) > 0
    }

    /// Bytes waiting for the sink (fragments outstanding, or buffered behind them) are the server holding the body
    /// back, as a stopped read is on HTTP/1.1: the minimum-rate window starts afresh.
    private func isHoldingBodyBack(_ stream: HTTP2Stream) -> Bool {
        stream.outstandingFragments > 0 || stream.bufferedByteCount > 0
    }

    /// Ends one stream (RST_STREAM `code`); its sink hears `reason`, the connection carries on.
    private func abortStream(_ stream: HTTP2Stream, reason: BodyAbortReason, code: HTTP2ErrorCode = .cancel) {
        if stream.lifecycle.bodyAborted(), let sink = stream.sink {
            stream.sink = nil
            sink.bodyAborted(reason)
        }
        machine.bodyFinished(stream.id)
        machine.responseFinished(stream.id)
        pendingResets.append((stream.id, code.rawValue))
        markDirty(stream)
    }

    /// Server shutdown: GOAWAY naming the last stream we took; those streams finish, new ones are refused, and
    /// the connection closes when the last one ended (or the shutdown timeout aborts it).
    func shutdownGracefully() {
        guard !isShuttingDown, !isFinalClosed, let session else { return }
        isShuttingDown = true
        perform {
            _ = nghttp2_submit_goaway(
                session, 0, nghttp2_session_get_last_proc_stream_id(session), NGHTTP2_NO_ERROR.rawValue, nil, 0)
        }
    }

    /// GOAWAY with `errorCode` (nil: nghttp2 already queued its own), then close once it is out.
    private func terminate(errorCode: UInt32?) {
        guard let session, !isClosing, !isFinalClosed else { return }
        if let errorCode { _ = nghttp2_session_terminate_session(session, errorCode) }
        flushOutput()
        for stream in Array(streams.values) {
            stream.lifecycle.closed()
            finishClosedStream(stream)
        }
        closeGracefully()
    }

    /// Ends the connection now; every body in progress is reported to its sink.
    func abort(reason: BodyAbortReason) {
        guard !isFinalClosed else { return }
        for stream in Array(streams.values) {
            if stream.lifecycle.bodyAborted(), let sink = stream.sink {
                stream.sink = nil
                sink.bodyAborted(reason)
            }
            stream.lifecycle.closed()
            finishClosedStream(stream)
        }
        finalClose()
    }

    private func closeGracefully() {
        guard !isClosing, !isFinalClosed else { return }
        isClosing = true
        // Lingering close (nginx's `lingering_close`): what the peer still sends is read and dropped, neither
        // decrypted nor parsed, until it closes, 2 s after our output is out, or 1 MiB later. Closing with its
        // bytes unread would reset the connection, and a reset makes the peer's kernel and TLS drop our GOAWAY
        // unread (a flood, a bomb). Until the output is out, the body timeout bounds the wait, as before.
        closeDeadline = context.loop.nowMilliseconds + configuration.bodyTimeoutMilliseconds
        // SecureStream.shutdown sends close_notify first on TLS.
        stream.shutdown { [self] error in
            if error != nil { return finalClose() }
            closeDeadline = min(closeDeadline, context.loop.nowMilliseconds + 2_000)
        }
    }

    private func finalClose() {
        guard !isFinalClosed else { return }
        isFinalClosed = true
        for stream in Array(streams.values) {
            stream.lifecycle.closed()
            finishClosedStream(stream)
        }
        streams = [:]
        lastDataStream = nil
        newStreams = []
        dirtyStreams = []
        stream.close { [self] in context.http2ConnectionDidClose(self) }
    }
}

/// A connection's stand-in for those that must not keep it alive: fragments' done-closures (a sink may finish
/// writing after the connection closed), response body fetches and exchanges. Not a weak reference: any weak
/// reference gives the connection a side table, and every retain and release of it then takes Swift's slow path,
/// several times per DATA frame (~3 % of the loop thread on a TLS upload). The connection clears it in `deinit`;
/// every reader runs on the connection's loop thread (the `HTTPExchange` contract), so none sees it dangling.
final class HTTP2ConnectionLink {
    unowned(unsafe) var connection: HTTP2Connection?
}

// MARK: nghttp2 callbacks (top-level, nonisolated; `user_data` is the unretained connection)

/// Runs `body` on the connection without a retain/release pair: nghttp2 calls back only from inside a call the
/// connection made, which keeps it alive.
private func withConnection<Result>(
    _ userData: UnsafeMutableRawPointer?, _ body: (HTTP2Connection) -> Result
) -> Result {
    Unmanaged<HTTP2Connection>.fromOpaque(userData!)._withUnsafeGuaranteedRef(body)
}

private func onBeginFrame(
    session: OpaquePointer?, header: UnsafePointer<nghttp2_frame_hd>?, userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let header else { return 0 }
    let frameHeader = HTTP2FrameHeader(
        type: header.pointee.type, flags: header.pointee.flags, length: header.pointee.length,
        streamID: header.pointee.stream_id)
    return withConnection(userData) { $0.frameBegan(frameHeader) }
}

private func onBeginHeaders(
    session: OpaquePointer?, frame: UnsafePointer<nghttp2_frame>?, userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    switch frame.pointee.headers.cat {
    case NGHTTP2_HCAT_REQUEST: withConnection(userData) { $0.beginRequest(streamID: frame.pointee.hd.stream_id) }
    case NGHTTP2_HCAT_HEADERS: withConnection(userData) { $0.beginTrailers(streamID: frame.pointee.hd.stream_id) }
    default: break
    }
    return 0
}

private func onHeader(
    session: OpaquePointer?, frame: UnsafePointer<nghttp2_frame>?, name: UnsafePointer<UInt8>?, nameLength: Int,
    value: UnsafePointer<UInt8>?, valueLength: Int, flags: UInt8, userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    let category = frame.pointee.headers.cat
    guard category == NGHTTP2_HCAT_REQUEST || category == NGHTTP2_HCAT_HEADERS else { return 0 }
    return withConnection(userData) {
        $0.header(
            streamID: frame.pointee.hd.stream_id, isTrailer: category == NGHTTP2_HCAT_HEADERS,
            name: UnsafeRawBufferPointer(start: name, count: nameLength),
            value: UnsafeRawBufferPointer(start: value, count: valueLength))
    }
}

private func onFrameReceived(
    session: OpaquePointer?, frame: UnsafePointer<nghttp2_frame>?, userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let frame else { return 0 }
    let type = frame.pointee.hd.type
    let isRequestHeaders =
        type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
    withConnection(userData) {
        $0.frameReceived(
            type: type, flags: frame.pointee.hd.flags, streamID: frame.pointee.hd.stream_id,
            isRequestHeaders: isRequestHeaders)
    }
    return 0
}

private func onDataChunk(
    session: OpaquePointer?, flags: UInt8, streamID: Int32, data: UnsafePointer<UInt8>?, length: Int,
    userData: UnsafeMutableRawPointer?
) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: length)
    withConnection(userData) { $0.dataReceived(streamID: streamID, bytes: bytes) }
    return 0
}

private func onStreamClose(
    session: OpaquePointer?, streamID: Int32, errorCode: UInt32, userData: UnsafeMutableRawPointer?
) -> Int32 {
    withConnection(userData) { $0.streamClosed(streamID: streamID) }
    return 0
}

private func onFrameSent(
    session: OpaquePointer?, frame: UnsafePointer<nghttp2_frame>?, userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let frame else { return 0 }
    withConnection(userData) {
        $0.frameSent(type: frame.pointee.hd.type, flags: frame.pointee.hd.flags, streamID: frame.pointee.hd.stream_id)
    }
    return 0
}

private func readResponseBody(
    session: OpaquePointer?, streamID: Int32, buffer: UnsafeMutablePointer<UInt8>?, length: Int,
    dataFlags: UnsafeMutablePointer<UInt32>?, source: UnsafeMutablePointer<nghttp2_data_source>?,
    userData: UnsafeMutableRawPointer?
) -> Int {
    var flags = dataFlags?.pointee ?? 0
    let into = UnsafeMutableRawBufferPointer(start: buffer, count: length)
    let result = withConnection(userData) { $0.produceResponse(streamID: streamID, into: into, flags: &flags) }
    dataFlags?.pointee = flags
    return result
}

/// RFC 9110 token characters (header names); anything else is dropped, as the HTTP/1.1 encoder does.
private func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
    case UInt8(ascii: "A")...UInt8(ascii: "Z"): true
    case UInt8(ascii: "-"), UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"),
        UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "."),
        UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
        true
    default: false
    }
}

/// Control bytes in a value become spaces, so an echoed value cannot smuggle anything into the header block.
private func sanitized(_ value: String) -> String {
    guard value.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) else { return value }
    return String(decoding: value.utf8.map { $0 < 0x20 || $0 == 0x7f ? 0x20 : $0 }, as: UTF8.self)
}
