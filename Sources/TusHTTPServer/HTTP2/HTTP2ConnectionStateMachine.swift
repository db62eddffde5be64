/// An HTTP/2 error code (RFC 9113 §7), as sent in RST_STREAM and GOAWAY.
struct HTTP2ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    let rawValue: UInt32
    init(rawValue: UInt32) { self.rawValue = rawValue }

    static let noError = HTTP2ErrorCode(rawValue: 0x0)
    static let protocolError = HTTP2ErrorCode(rawValue: 0x1)
    static let internalError = HTTP2ErrorCode(rawValue: 0x2)
    static let settingsTimeout = HTTP2ErrorCode(rawValue: 0x4)
    static let refusedStream = HTTP2ErrorCode(rawValue: 0x7)
    static let cancel = HTTP2ErrorCode(rawValue: 0x8)
    static let enhanceYourCalm = HTTP2ErrorCode(rawValue: 0xb)

    var description: String {
        switch self {
        case .noError: "NO_ERROR"
        case .protocolError: "PROTOCOL_ERROR"
        case .internalError: "INTERNAL_ERROR"
        case .settingsTimeout: "SETTINGS_TIMEOUT"
        case .refusedStream: "REFUSED_STREAM"
        case .cancel: "CANCEL"
        case .enhanceYourCalm: "ENHANCE_YOUR_CALM"
        default: "0x\(String(rawValue, radix: 16))"
        }
    }
}

/// The nine-byte header every HTTP/2 frame starts with (RFC 9113 §4.1), as the peer sent it.
struct HTTP2FrameHeader: Equatable {
    enum Kind: UInt8 {
        case data = 0x0, headers = 0x1, priority = 0x2, rstStream = 0x3, settings = 0x4, pushPromise = 0x5
        case ping = 0x6, goAway = 0x7, windowUpdate = 0x8, continuation = 0x9
    }
    static let endStream: UInt8 = 0x1

    /// The frame type byte; unknown (extension) types are kept as they came.
    var type: UInt8
    var flags: UInt8 = 0
    /// Payload length (the nine header bytes not included).
    var length: Int
    var streamID: Int32 = 0

    var kind: Kind? { Kind(rawValue: type) }
    var endsStream: Bool { flags & Self.endStream != 0 }
}

/// The decisions of one HTTP/2 connection that nghttp2 leaves to us, as a value without I/O (STYLE §10.5, the
/// shape of `HTTPConnectionStateMachine`): how long the peer may take to open the connection, which request
/// streams are admitted, how much of a header block is decoded, when a peer is abusive enough to be cut off
/// (GOAWAY ENHANCE_YOUR_CALM), and when a stream's body or response has made no progress for too long.
/// nghttp2 keeps framing, HPACK, flow control and the RFC 9113 stream states; `HTTP2Stream` keeps the bytes.
/// `HTTP2Connection` reports each event from its nghttp2 callbacks and performs the verdict.
///
/// The clock is injected: every event that starts or checks a deadline, or refills the reset budget, takes `now`
/// (loop milliseconds), so each rule is tested with a manual clock and no socket (`HTTP2ConnectionStateMachineTests`).
struct HTTP2ConnectionStateMachine {
    /// The part of `HTTPServerConfiguration` the decisions depend on.
    struct Limits {
        var maxConcurrentStreams: Int
        /// The client's connection preface and SETTINGS, and its acknowledgement of ours, must arrive within the
        /// head timeout, as the first request head must on HTTP/1.1.
        var prefaceTimeout: UInt64
        var idleTimeout: UInt64
        var maxHeadBytes: Int
        var maxTrailerBytes: Int
        var maxHeaderCount: Int
        var maxOversizedHeaderBlocks: Int
        var resetBurst: UInt64
        var resetsPerSecond: UInt64
        var maxUnproductiveFrames: Int
        var unproductiveFramesPerProgress: Int
        var bodyTimeout: UInt64
        var minBodyBytesPerSecond: Int
        var bodyRateWindow: UInt64

        init(_ configuration: HTTPServerConfiguration) {
            let http2 = configuration.http2
            maxConcurrentStreams = Int(http2.maxConcurrentStreams)
            prefaceTimeout = configuration.headTimeoutMilliseconds
            idleTimeout = configuration.idleTimeoutMilliseconds
            maxHeadBytes = configuration.parserLimits.maxHeadBytes
            maxTrailerBytes = configuration.parserLimits.maxTrailerBytes
            maxHeaderCount = configuration.parserLimits.maxHeaderCount
            maxOversizedHeaderBlocks = http2.maxOversizedHeaderBlocks
            resetBurst = http2.resetBurst
            resetsPerSecond = http2.resetsPerSecond
            maxUnproductiveFrames = http2.maxUnproductiveFrames
            unproductiveFramesPerProgress = http2.unproductiveFramesPerProgress
            bodyTimeout = configuration.bodyTimeoutMilliseconds
            minBodyBytesPerSecond = configuration.minBodyBytesPerSecond
            bodyRateWindow = configuration.bodyRateWindowMilliseconds
        }
    }

    /// What to do with a frame whose header just arrived (before nghttp2 acts on its payload).
    enum FrameVerdict: Equatable {
        case proceed
        /// Stop reading this connection and end it with GOAWAY `code`.
        case close(HTTP2ErrorCode, reason: String)
    }

    /// Whether a new request stream may run.
    enum Admission: Equatable {
        case accept
        /// More streams than SETTINGS_MAX_CONCURRENT_STREAMS: RST_STREAM REFUSED_STREAM (RFC 9113 §5.1.2), so
        /// the client may retry it; the streams in flight carry on.
        case refuse
    }

    /// What to do with one decoded header field.
    enum FieldVerdict: Equatable {
        /// Keep it.
        case store
        /// The head is over the limit: decode on (HPACK and nghttp2's checks) without keeping anything; the
        /// stream is answered 431 when the block ends.
        case discard
        /// Stop decoding this block for the stream (nghttp2 then only keeps its HPACK table in step, which costs
        /// at most the block's wire bytes, and resets the stream).
        case stopBlock
        /// Stop decoding, and end the connection with GOAWAY `code`.
        case close(HTTP2ErrorCode, reason: String)
    }

    /// What a deadline check asks for.
    enum TickAction: Equatable {
        case none
        /// GOAWAY `code`, then close.
        case terminate(HTTP2ErrorCode, reason: String)
    }

    /// Why a stream is given up (the connection resets it; the others carry on).
    enum StreamTimeout: Equatable {
        /// No body bytes for `bodyTimeout` while the handler reads the body.
        case bodyStalled
        /// The body came slower than `minBodyBytesPerSecond` over a window (HTTP/1.1's rule, per stream).
        case bodyTooSlow
        /// A response body made no progress for `bodyTimeout` while the peer kept its windows shut.
        case responseStalled
        /// The handler stopped the body and gave no answer within `bodyTimeout`. The stream would otherwise hold a
        /// slot of `maxConcurrentStreams` for good: the peer may send nothing more on it and waits for the answer.
        case unanswered
    }

    /// A request stream as far as the limits care: its header block, and its progress deadlines.
    private struct StreamRecord {
        var bytes = 0
        var fields = 0
        var isTrailer = false
        var isOversized = false
        var isRefused = false
        /// The handler reads the body (from its `readBody` until the end, a response first, or an abort).
        var isReadingBody = false
        /// Body progress deadline (loop ms) while the body is read.
        var bodyDeadline: UInt64 = .max
        var bodyRate: BodyRateMeter
        /// Response progress deadline (loop ms) while a response body is being sent. It moves on only when a whole
        /// read piece has gone into DATA frames, as HTTP/1.1's moves on only when a piece was written: a client
        /// that never opens its window, or opens it a few bytes at a time, cannot hold the piece, the open file
        /// and the stream forever.
        var responseDeadline: UInt64 = .max
        /// When a handler that stopped the body must have answered (loop ms). HTTP/1.1 bounds a stopped read by the
        /// body timeout (its bytes are read and dropped, and a peer that sends none for that long is cut off); here
        /// the peer cannot send (the stream's window stays shut), so the same timeout runs from the stop.
        var answerDeadline: UInt64 = .max
    }

    let limits: Limits
    /// Request streams nghttp2 opened and has not closed, refused ones included until their reset is out.
    private var streams: [Int32: StreamRecord] = [:]
    private(set) var admittedStreamCount = 0
    private(set) var hasPeerSettings = false
    private(set) var isSettingsAcknowledged = false
    /// Loop milliseconds at which the connection preface or the SETTINGS exchange is given up.
    private(set) var prefaceDeadline: UInt64 = .max
    /// Loop milliseconds at which a connection without streams is closed.
    private(set) var idleDeadline: UInt64 = .max
    /// Header blocks over the limit so far (answered 431, or reset).
    private(set) var oversizedHeaderBlocks = 0
    /// Frames that moved nothing forward, and frames that did (see `frameReceived`).
    private(set) var unproductiveFrames = 0
    private(set) var productiveFrames = 0
    /// The rapid-reset token bucket (nghttp2's `stream_reset_rate_limit` rule, with our clock and our error code).
    private var resetTokens: UInt64
    private var resetRefilledAt: UInt64

    init(limits: Limits, now: UInt64) {
        self.limits = limits
        resetTokens = limits.resetBurst
        resetRefilledAt = now
        prefaceDeadline = now + limits.prefaceTimeout
        idleDeadline = now + limits.idleTimeout
    }

    // MARK: Frames

    /// Every frame header the peer sends, before nghttp2 processes the frame. Frames that make progress are a
    /// request head (a header block with fields), DATA with payload or END_STREAM, and DATA frames we send
    /// (`dataFrameSent`, which the peer answers with WINDOW_UPDATE). Everything else (empty DATA, empty HEADERS
    /// or CONTINUATION, PRIORITY, RST_STREAM, WINDOW_UPDATE, PING, SETTINGS, unknown types) costs us a frame's
    /// work for nothing: past `maxUnproductiveFrames` plus `unproductiveFramesPerProgress` per productive frame,
    /// the connection is a flood (CVE-2019-9518, CVE-2019-9512/9515/9516) and is closed.
    mutating func frameReceived(_ frame: HTTP2FrameHeader, now: UInt64) -> FrameVerdict {
        let isProductive: Bool
        switch frame.kind {
        case .data: isProductive = frame.length > 0 || frame.endsStream
        case .headers, .continuation: isProductive = frame.length > 0
        case .rstStream:
            if case .close(let code, let reason) = resetReceived(now: now) { return .close(code, reason: reason) }
            isProductive = false
        default: isProductive = false
        }
        if isProductive {
            productiveFrames += 1
            return .proceed
        }
        unproductiveFrames += 1
        let allowed = limits.maxUnproductiveFrames + productiveFrames * limits.unproductiveFramesPerProgress
        if unproductiveFrames > allowed {
            return .close(
                .enhanceYourCalm,
                reason: "\(unproductiveFrames) frames without progress against \(productiveFrames) with (flood)")
        }
        return .proceed
    }

    /// A DATA frame of ours went out: its WINDOW_UPDATE in return is not a flood.
    mutating func dataFrameSent() {
        productiveFrames += 1
    }

    private mutating func resetReceived(now: UInt64) -> FrameVerdict {
        if limits.resetsPerSecond > 0, now > resetRefilledAt {
            let earned = (now - resetRefilledAt) * limits.resetsPerSecond / 1000
            if earned > 0 {
                resetTokens = min(limits.resetBurst, resetTokens + earned)
                resetRefilledAt += earned * 1000 / limits.resetsPerSecond
            }
        }
        if resetTokens == 0 {
            return .close(.enhanceYourCalm, reason: "stream resets beyond \(limits.resetsPerSecond)/s (rapid reset)")
        }
        resetTokens -= 1
        return .proceed
    }

    /// The peer's SETTINGS (the end of its connection preface), or its acknowledgement of ours.
    mutating func settingsReceived(isAcknowledgement: Bool) {
        if isAcknowledgement { isSettingsAcknowledged = true } else { hasPeerSettings = true }
        if hasPeerSettings && isSettingsAcknowledged { prefaceDeadline = .max }
    }

    // MARK: Streams

    /// nghttp2 opened a request stream (its HEADERS began).
    mutating func requestStreamOpened(_ id: Int32, now: UInt64) -> Admission {
        idleDeadline = .max
        let bodyRate = BodyRateMeter(
            bytesPerSecond: limits.minBodyBytesPerSecond, windowMilliseconds: limits.bodyRateWindow)
        var block = StreamRecord(bodyRate: bodyRate)
        if admittedStreamCount >= limits.maxConcurrentStreams {
            block.isRefused = true
            streams[id] = block
            return .refuse
        }
        admittedStreamCount += 1
        streams[id] = block
        return .accept
    }

    /// A trailer section begins on an open stream: it is counted afresh against the trailer limit.
    mutating func trailersBegan(_ id: Int32) {
        guard var block = streams[id] else { return }
        block.bytes = 0
        block.fields = 0
        block.isTrailer = true
        streams[id] = block
    }

    /// nghttp2 closed a request stream (both ends done, or reset either way).
    mutating func streamClosed(_ id: Int32, now: UInt64) {
        guard let block = streams.removeValue(forKey: id) else { return }
        if !block.isRefused { admittedStreamCount -= 1 }
        if streams.isEmpty { idleDeadline = now + limits.idleTimeout }
    }

    func isRefused(_ id: Int32) -> Bool { streams[id]?.isRefused ?? false }

    /// Whether the stream's head went over the limits (it is answered 431).
    func isHeadOversized(_ id: Int32) -> Bool { streams[id].map { $0.isOversized && !$0.isTrailer } ?? false }

    // MARK: Header blocks

    /// One decoded field of a request head or trailer section (`bytes`: name + value, as RFC 9113 §6.5.2 counts
    /// them, before the 32 added per field). Pseudo-header fields count toward the bytes, not toward
    /// `maxHeaderCount` (HTTP/1.1's request line does not either). An HPACK bomb (a small block of references to
    /// one large table entry) decodes to far more than it weighs on the wire; nginx ends the connection at the
    /// first field past its limit.
    /// Here a head over the limit is still answered 431 (a big cookie is an honest mistake), decoding on only
    /// until twice the limit; beyond that the block is given up and the stream reset, and the connection ends at
    /// the `maxOversizedHeaderBlocks + 1`-th oversized block.
    mutating func fieldReceived(_ id: Int32, bytes: Int, isPseudo: Bool = false) -> FieldVerdict {
        guard var block = streams[id] else { return .discard }
        block.bytes += bytes + 32
        if !isPseudo { block.fields += 1 }
        let maxBytes = block.isTrailer ? limits.maxTrailerBytes : limits.maxHeadBytes
        let isOver = block.bytes > maxBytes || block.fields > limits.maxHeaderCount
        if isOver && !block.isOversized {
            block.isOversized = true
            oversizedHeaderBlocks += 1
            streams[id] = block
            if oversizedHeaderBlocks > limits.maxOversizedHeaderBlocks {
                return .close(
                    .enhanceYourCalm, reason: "\(oversizedHeaderBlocks) header blocks over the limit (HPACK bomb)")
            }
            // A trailer section has no answer to give: stop at once.
            return block.isTrailer ? .stopBlock : .discard
        }
        streams[id] = block
        guard block.isOversized else { return block.isRefused ? .discard : .store }
        if block.bytes > 2 * maxBytes || block.fields > 2 * limits.maxHeaderCount { return .stopBlock }
        return .discard
    }

    // MARK: Stream progress

    /// The handler asked for the body: its progress deadline and rate window start now.
    mutating func bodyReadStarted(_ id: Int32, now: UInt64) {
        guard var record = streams[id] else { return }
        record.isReadingBody = true
        record.bodyDeadline = now + limits.bodyTimeout
        record.bodyRate.start(now: now)
        streams[id] = record
    }

    /// Body bytes arrived on the stream; they count only while the body is read.
    mutating func bodyReceived(_ id: Int32, byteCount: Int, now: UInt64) {
        guard var record = streams[id], record.isReadingBody else { return }
        record.bodyDeadline = now + limits.bodyTimeout
        record.bodyRate.record(byteCount)
        streams[id] = record
    }

    /// The body ended, was given up (a response came first), or was aborted: no body deadline any more.
    mutating func bodyFinished(_ id: Int32) {
        guard var record = streams[id] else { return }
        record.isReadingBody = false
        record.bodyDeadline = .max
        streams[id] = record
    }

    /// The handler stopped the body (`HTTP2Stream.stopBody`): no body deadline any more, and its answer is due
    /// within the body timeout.
    mutating func bodyStopped(_ id: Int32, now: UInt64) {
        guard var record = streams[id] else { return }
        record.isReadingBody = false
        record.bodyDeadline = .max
        record.answerDeadline = now + limits.bodyTimeout
        streams[id] = record
    }

    /// The handler answered (the response head is submitted): nothing is owed any more.
    mutating func responseStarted(_ id: Int32) {
        streams[id]?.answerDeadline = .max
    }

    /// A response body started, or one of its pieces went out whole into DATA frames.
    mutating func responseProgressed(_ id: Int32, now: UInt64) {
        streams[id]?.responseDeadline = now + limits.bodyTimeout
    }

    /// The response body is out (or there is none, or it was abandoned).
    mutating func responseFinished(_ id: Int32) {
        streams[id]?.responseDeadline = .max
    }

    /// Streams whose body or response ran out of time at `now`; each is reported once. `isHoldingBodyBack(id)`:
    /// bytes of the stream wait for its sink (the server's doing, as a stopped read is on HTTP/1.1: the rate window
    /// starts afresh). `peerLetsUsSend(id)`: the peer's windows are open, so a stalled response is held up by our
    /// own output (streams sharing the socket, a read from disk) and its deadline moves instead.
    mutating func expiredStreams(
        now: UInt64, isHoldingBodyBack: (Int32) -> Bool, peerLetsUsSend: (Int32) -> Bool
    ) -> [(Int32, StreamTimeout)] {
        var expired: [(Int32, StreamTimeout)] = []
        for id in streams.keys.sorted() {
            guard var record = streams[id] else { continue }
            if record.isReadingBody && now >= record.bodyDeadline {
                expired.append((id, .bodyStalled))
            } else if record.isReadingBody
                && record.bodyRate.isTooSlow(now: now, isHoldingBodyBack: isHoldingBodyBack(id))
            {
                expired.append((id, .bodyTooSlow))
            } else if now >= record.answerDeadline {
                expired.append((id, .unanswered))
            } else if now >= record.responseDeadline {
                if peerLetsUsSend(id) {
                    record.responseDeadline = now + limits.bodyTimeout
                } else {
                    expired.append((id, .responseStalled))
                }
            } else {
                streams[id] = record
                continue
            }
            if expired.last?.0 == id {
                record.isReadingBody = false
                record.bodyDeadline = .max
                record.responseDeadline = .max
                record.answerDeadline = .max
            }
            streams[id] = record
        }
        return expired
    }

    // MARK: Deadlines

    /// The earliest deadline the connection has to check.
    var deadline: UInt64 { min(prefaceDeadline, streams.isEmpty ? idleDeadline : .max) }

    mutating func tick(now: UInt64) -> TickAction {
        if now >= prefaceDeadline {
            prefaceDeadline = .max
            let missing = hasPeerSettings ? "acknowledgement of our SETTINGS" : "connection preface and SETTINGS"
            return .terminate(.settingsTimeout, reason: "no \(missing) within the head timeout")
        }
        if streams.isEmpty && now >= idleDeadline {
            idleDeadline = .max
            return .terminate(.noError, reason: "idle")
        }
        return .none
    }
}
