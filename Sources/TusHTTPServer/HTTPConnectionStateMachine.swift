/// The decisions of one HTTP/1.1 connection: which phase it is in, when it reads, when it gives up, and what
/// follows a response. A value type without I/O (STYLE §10.5, the shape of swift-nio's and Hummingbird's
/// connection state machines): `HTTPConnection` reports each event, gets an action back and performs it.
///
/// The clock is injected: every event that starts or checks a deadline takes `now` (loop milliseconds), so the
/// timeouts and the minimum body rate are tested with a manual clock, no socket and no sleep
/// (`HTTPConnectionStateMachineTests`).
///
/// What stays in the connection is byte handling: the read chunk, the head parser, the body decoder, the
/// coalescing of body ranges into fragments, the sink, TLS and the socket.
struct HTTPConnectionStateMachine {
    /// The part of `HTTPServerConfiguration` the decisions depend on.
    struct Limits {
        var headTimeout: UInt64
        var idleTimeout: UInt64
        var bodyTimeout: UInt64
        var minBodyBytesPerSecond: Int
        var bodyRateWindow: UInt64
        var maxOutstandingFragments: Int

        init(_ configuration: HTTPServerConfiguration) {
            headTimeout = configuration.headTimeoutMilliseconds
            idleTimeout = configuration.idleTimeoutMilliseconds
            bodyTimeout = configuration.bodyTimeoutMilliseconds
            minBodyBytesPerSecond = configuration.minBodyBytesPerSecond
            bodyRateWindow = configuration.bodyRateWindowMilliseconds
            maxOutstandingFragments = configuration.maxOutstandingFragments
        }
    }

    enum Phase: Equatable {
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
        /// A graceful close (TLS close_notify, TCP shutdown) is under way; the deadline bounds it.
        case closing
        /// The socket is being (or has been) closed; nothing happens any more.
        case closed

        var isOpen: Bool { self != .closing && self != .closed }

        /// Same phase, ignoring when a head started.
        func isSameCase(as other: Phase) -> Bool {
            switch (self, other) {
            case (.readingHead, .readingHead): true
            default: self == other
            }
        }
    }

    /// What to do with the socket's reading.
    enum ReadAction: Equatable {
        case none
        case startReading
        case stopReading
    }

    let limits: Limits
    private(set) var phase: Phase = .readingHead(since: nil)
    /// Loop milliseconds at which the current wait is given up; `.max` when nothing is awaited from the peer.
    private(set) var deadline: UInt64 = .max
    /// Whether the socket is asked to read (the connection applies each change it is handed).
    private(set) var isReading = false
    /// Counts requests on this connection; a handler's late calls carry an older number.
    private(set) var requestSequence: UInt64 = 0
    /// Body fragments handed to the sink whose `done` has not come back.
    private(set) var outstandingFragments = 0
    /// The current request has no body left to read (none at all, or its end was framed).
    private(set) var isBodyComplete = true
    private(set) var closeAfterResponse = false
    private(set) var isShuttingDown = false
    /// The minimum body rate, the same rule an HTTP/2 stream follows.
    private var bodyRate: BodyRateMeter
    /// A splicer takes the body from the socket (the socket is not read for the connection meanwhile).
    private(set) var isBodyDirect = false
    /// The splicer is taking bytes (not waiting for the disk): counts as reading for the minimum body rate.
    private var isReceivingDirectly = false
    /// Whether a complete request leaves the socket reading (`headReceived`): cleartext only. On TLS the two
    /// `epoll_ctl` it saves are small beside the record work, and the secure stream's reads were left as they were.
    private var readsWhileHandling = false
    /// A complete request on a connection that stays open: the socket may go on reading.
    private var keepsReading: Bool { readsWhileHandling && isBodyComplete && !closeAfterResponse }

    init(limits: Limits) {
        self.limits = limits
        bodyRate = BodyRateMeter(
            bytesPerSecond: limits.minBodyBytesPerSecond, windowMilliseconds: limits.bodyRateWindow)
    }

    var isReadingBody: Bool { phase == .readingBody }

    private mutating func setReading(_ on: Bool) -> ReadAction {
        guard on != isReading, phase.isOpen else { return .none }
        isReading = on
        return on ? .startReading : .stopReading
    }

    // MARK: Connection start and the read loop

    /// The connection was accepted. A TLS handshake must finish within the head timeout; a plain connection
    /// may idle like a kept-alive one.
    mutating func start(now: UInt64, isTLS: Bool) -> ReadAction {
        readsWhileHandling = !isTLS
        deadline = now + (isTLS ? limits.headTimeout : limits.idleTimeout)
        return setReading(true)
    }

    /// One turn of the connection's processing loop.
    enum ProcessStep: Equatable {
        /// Parse the buffered head bytes.
        case parseHead
        /// Frame the buffered body bytes.
        case decodeBody
        /// Nothing buffered, no fragment outstanding, and the connection prefers a direct (spliced) body: start it.
        case startDirectBody(ReadAction)
        /// Nothing buffered while waiting for a head: an idle connection drops its buffer. Then stop.
        case awaitHead(ReadAction)
        /// Stop processing until an event (bytes, the handler, a fragment's `done`) comes.
        case wait(ReadAction)
    }

    /// What the processing loop does next, given what is buffered. `bodyOwesEnd`: a complete Content-Length
    /// body still owes its `.end` even with nothing left in the buffer.
    mutating func nextStep(
        hasBufferedBytes: Bool, bodyOwesEnd: Bool, prefersDirectBody: Bool = false, now: UInt64
    ) -> ProcessStep {
        switch phase {
        case .readingHead(let since):
            guard hasBufferedBytes else { return .awaitHead(setReading(true)) }
            if since == nil {
                phase = .readingHead(since: now)
                deadline = now + limits.headTimeout
            }
            return .parseHead
        case .readingBody, .draining:
            if isBodyDirect { return .wait(.none) }
            if phase == .readingBody, prefersDirectBody, !hasBufferedBytes, !bodyOwesEnd {
                // Earlier fragments must be in the file before spliced bytes land after them: wait for their `done`.
                return outstandingFragments == 0 ? .startDirectBody(setReading(false)) : .wait(setReading(false))
            }
            guard hasBufferedBytes || bodyOwesEnd else {
                return .wait(outstandingFragments < limits.maxOutstandingFragments ? setReading(true) : .none)
            }
            return .decodeBody
        case .handling, .awaitingResponse, .responding, .closing, .closed:
            // One request at a time: pipelined bytes wait in the buffer until the response is out. A request with
            // no body left to read keeps the socket reading until such bytes arrive (see `headReceived`).
            return .wait(hasBufferedBytes || !keepsReading ? setReading(false) : .none)
        }
    }

    /// The buffered bytes are not a complete head yet.
    mutating func headIncomplete() -> ReadAction {
        setReading(true)
    }

    /// A head was parsed; the handler gets it next. Returns the request's sequence number.
    ///
    /// Reading stops for a body (its bytes wait until the handler asks for them), before a close, and with TLS. A
    /// bodiless request on a kept-alive cleartext connection leaves the socket reading: a client that waits for each response sends
    /// nothing meanwhile, and pausing and resuming cost libuv two `epoll_ctl` per request (the resume's
    /// `EPOLL_CTL_ADD` fails with `EEXIST` and is retried as `MOD`). Pipelined bytes that do arrive stop reading
    /// then (`nextStep`), after one read; the peer's end of the stream meanwhile is `peerEnded`.
    mutating func headReceived(keepAlive: Bool, hasBody: Bool) -> (sequence: UInt64, read: ReadAction) {
        requestSequence += 1
        phase = .handling
        isBodyComplete = !hasBody
        closeAfterResponse = !keepAlive || isShuttingDown
        deadline = .max
        return (requestSequence, keepsReading ? .none : setReading(false))
    }

    enum PeerEndAction: Equatable {
        /// The request is complete and its response pending or under way: send it, then close.
        case closeAfterResponse(ReadAction)
        case close
    }

    /// The peer's end of the stream was read. While a request with its body complete awaits or sends its response
    /// (reading stays on for those, see `headReceived`), the peer may only have half-closed: it still gets the
    /// response, as it did when the end went unread until then. A reset (a read error) is taken the same way: the
    /// response's write fails and ends the connection once the handler answered, not before. Any other time the
    /// connection ends now.
    mutating func peerEnded() -> PeerEndAction {
        switch phase {
        case .handling, .awaitingResponse, .responding:
            guard isBodyComplete else { return .close }
            closeAfterResponse = true
            return .closeAfterResponse(setReading(false))
        default:
            return .close
        }
    }

    /// A malformed head (or a head that timed out): an error response goes out, then the connection closes.
    mutating func requestFailed() -> ReadAction {
        closeAfterResponse = true
        phase = .responding
        return setReading(false)
    }

    // MARK: Body

    enum ReadBodyAction: Equatable {
        /// Not the moment (the handler already answered, or asked twice).
        case ignore
        /// There is no body: the sink hears its end at once.
        case endAtOnce
        /// Body bytes go to the sink from now on (after a `100 Continue` if the client asked for one).
        case startBody
    }

    /// The handler asked for the body.
    mutating func readBodyRequested(now: UInt64) -> ReadBodyAction {
        guard phase == .handling else { return .ignore }
        if isBodyComplete {
            phase = .awaitingResponse
            return .endAtOnce
        }
        phase = .readingBody
        deadline = now + limits.bodyTimeout
        bodyRate.start(now: now)
        return .startBody
    }

    /// Whether the decoder may frame more body bytes now. While the sink is at its limit it may not: many tiny
    /// chunks make many fragments out of one read, and they must not bypass backpressure.
    var mayFrameBody: Bool {
        switch phase {
        case .readingBody: outstandingFragments < limits.maxOutstandingFragments
        case .draining: true
        default: false
        }
    }

    /// The decoder framed `count` body bytes. Returns whether they go to the sink (false while draining).
    mutating func bodyDataFramed(count: Int, now: UInt64) -> Bool {
        deadline = now + limits.bodyTimeout
        guard phase == .readingBody else { return false }
        bodyRate.record(count)
        return true
    }

    /// A splicer took over the body (see `nextStep`'s `.startDirectBody`). Its bytes are reported through
    /// `bodyDataFramed`, so the body timeout and the minimum rate see them as they see framed bytes.
    mutating func directBodyStarted(now: UInt64) {
        isBodyDirect = true
        isReceivingDirectly = true
        deadline = now + limits.bodyTimeout
    }

    /// The splicer waits for the disk (true) or reads again: a stall of the server's own making, as with
    /// fragment backpressure, restarts the rate window.
    mutating func directBodyStalled(_ stalled: Bool) {
        isReceivingDirectly = isBodyDirect && !stalled
    }

    /// The splicer finished or was stopped; the connection reads (or drains, or closes) as before.
    mutating func directBodyEnded() {
        isBodyDirect = false
        isReceivingDirectly = false
    }

    /// The decoder needs more bytes; what arrived counts as progress.
    mutating func bodyNeedsMoreData(now: UInt64) {
        deadline = now + limits.bodyTimeout
    }

    enum BodyEndAction: Equatable {
        /// Hand the sink its last fragment and its end; the response is awaited.
        case deliverEnd(ReadAction)
        /// A drained body ended: the response is already out (or going out); finish the exchange.
        case finishExchange
        case none
    }

    /// The decoder framed the end of the body. Reported before the last fragment is handed over, so that a
    /// handler answering from inside that call sees a complete body (and the connection may stay open).
    mutating func bodyEndFramed() {
        isBodyComplete = true
    }

    /// After the last fragment went to the sink: what the end of the body leads to.
    mutating func bodyEnded() -> BodyEndAction {
        isBodyComplete = true
        switch phase {
        case .readingBody:
            phase = .awaitingResponse
            deadline = .max
            return .deliverEnd(setReading(false))
        case .draining:
            return .finishExchange
        default:
            return .none
        }
    }

    enum BodyFailureAction: Equatable {
        /// The request already has (or will get) its one response; the connection ends after it.
        case closeAfterResponse
        /// Draining a body nobody wanted: just close.
        case close
        /// Answer the framing error, then close.
        case failRequest
    }

    /// The body's framing is broken. Called after the sink (if one was reading) heard `.malformed`, since its
    /// handler may have answered from inside that call.
    mutating func bodyFramingFailed() -> BodyFailureAction {
        switch phase {
        case .responding, .awaitingResponse:
            closeAfterResponse = true
            return .closeAfterResponse
        case .draining:
            return .close
        default:
            return .failRequest
        }
    }

    /// One more fragment went to the sink; at the limit reading stops.
    mutating func fragmentSent() -> ReadAction {
        outstandingFragments += 1
        return outstandingFragments >= limits.maxOutstandingFragments ? setReading(false) : .none
    }

    /// A fragment's `done` came back. Returns whether it belongs to the body being read now (then the
    /// connection hands over what it coalesced meanwhile and, if `hasRoomToResume`, processes again).
    mutating func fragmentDone(sequence: UInt64) -> Bool {
        outstandingFragments -= 1
        return sequence == requestSequence && phase == .readingBody
    }

    /// Reading resumes when the outstanding fragments fall to half the limit.
    var hasRoomToResume: Bool { outstandingFragments <= limits.maxOutstandingFragments / 2 }

    // MARK: Response

    enum ResponseStart: Equatable {
        /// No response now: one is already out, or the connection is going.
        case refuse
        /// Stop feeding the body to the sink first (the handler answers before the body ended).
        case stopBodyFirst
        case proceed
    }

    /// The handler answers. Either refuse, or say what to stop before `responseStarted`.
    func responseRequested() -> ResponseStart {
        switch phase {
        case .closing, .closed, .responding, .draining: .refuse
        case .readingBody: .stopBodyFirst
        case .handling, .awaitingResponse, .readingHead: .proceed
        }
    }

    /// The response head is about to be written. `remainingBodyLength`: what is left of a Content-Length body
    /// (nil for chunked). Returns whether the connection stays open after this response.
    mutating func responseStarted(
        closeRequested: Bool, expectsContinue: Bool, remainingBodyLength: Int64?, now: UInt64
    ) -> (keepAlive: Bool, read: ReadAction) {
        if closeRequested { closeAfterResponse = true }
        if !isBodyComplete {
            // Drain a small, already-framed remainder to keep the connection; otherwise close rather than
            // read a body nobody wants (the client learns fast, tusd#1371). A client still waiting for
            // `100 Continue` would never send it: close.
            let smallRemainder = remainingBodyLength.map { $0 <= 64 * 1024 } ?? false
            let continueWasSent = phase == .readingBody || !expectsContinue
            if !(smallRemainder && continueWasSent && !closeAfterResponse) { closeAfterResponse = true }
        }
        phase = .responding
        // As in `headReceived`: reading goes on only for a complete request on a connection that stays open.
        let read = keepsReading ? ReadAction.none : setReading(false)
        // A peer that stops reading the response must not hold the connection (and its buffers) forever.
        deadline = now + limits.bodyTimeout
        return (!closeAfterResponse, read)
    }

    /// A piece of a streamed response body was written: the write deadline starts again.
    mutating func responseProgressed(now: UInt64) {
        deadline = now + limits.bodyTimeout
    }

    enum AfterResponse: Equatable {
        case closeGracefully
        /// Read and discard the rest of the request body; its end finishes the exchange.
        case drainBody
        /// The exchange is over: clear it, then ask `exchangeFinished`.
        case finishExchange
    }

    /// The response is on the wire.
    mutating func responseSent(now: UInt64) -> AfterResponse {
        if closeAfterResponse { return .closeGracefully }
        if !isBodyComplete {
            phase = .draining
            deadline = now + limits.bodyTimeout
            return .drainBody
        }
        return .finishExchange
    }

    enum NextRequest: Equatable {
        case closeGracefully
        /// Wait for the next request (pipelined bytes may be buffered already).
        case readNextRequest
    }

    /// The exchange is over (its response is out and its body read or drained).
    mutating func exchangeFinished(now: UInt64) -> NextRequest {
        if closeAfterResponse || isShuttingDown { return .closeGracefully }
        phase = .readingHead(since: nil)
        deadline = now + limits.idleTimeout
        return .readNextRequest
    }

    // MARK: Deadlines, shutdown, closing

    enum TickAction: Equatable {
        case none
        /// The body fell below the minimum rate over a window: abort it (the sink hears `.timeout`).
        case bodyTooSlow
        /// No body progress within the body timeout: abort it (the sink hears `.timeout`).
        case bodyTimeout
        /// The peer stopped reading our response.
        case responseWriteTimeout
        /// A head that never completes: answer 408, then close (slowloris).
        case headTimeout
        /// Idle keep-alive, a TLS handshake that never finished, or a handler that never answered: close.
        case idleTimeout
        /// A graceful close whose shutdown never completed (a peer that stopped reading our close_notify).
        case forceClose
    }

    /// The loop's sweep (every 500 ms). After a timeout the deadline is cleared, so each fires once.
    mutating func tick(now: UInt64) -> TickAction {
        if phase == .closed { return .none }
        // Not reading means the server stopped (backpressure), not the client.
        // A splicer taking bytes reads for the body; one waiting for the disk holds it back, as a full sink does.
        let isHoldingBodyBack = !isReading && !isReceivingDirectly
        if phase == .readingBody, bodyRate.isTooSlow(now: now, isHoldingBodyBack: isHoldingBodyBack) {
            deadline = .max
            return .bodyTooSlow
        }
        guard now >= deadline else { return .none }
        deadline = .max
        switch phase {
        case .closing: return .forceClose
        case .responding: return .responseWriteTimeout
        case .readingBody: return .bodyTimeout
        case .readingHead(let since) where since != nil: return .headTimeout
        default: return .idleTimeout
        }
    }

    /// Server shutdown: idle connections go now (returns true), busy ones after their current exchange.
    mutating func shutdownRequested() -> Bool {
        isShuttingDown = true
        closeAfterResponse = true
        return phase == .readingHead(since: nil)
    }

    /// Starts a graceful close. Returns false when the connection is already closing or closed.
    mutating func closeGracefully(now: UInt64) -> Bool {
        guard phase.isOpen else { return false }
        phase = .closing
        // If the peer never lets the shutdown complete, the sweep closes the socket anyway.
        deadline = now + limits.bodyTimeout
        return true
    }

    /// The socket closes now. Returns false if it already did (closing is idempotent).
    mutating func closeNow() -> Bool {
        guard phase != .closed else { return false }
        phase = .closed
        isReading = false
        return true
    }
}
