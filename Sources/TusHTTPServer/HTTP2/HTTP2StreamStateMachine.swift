/// One HTTP/2 stream's lifecycle as a value: where its request body stands, whether the peer ended the request,
/// whether we answered, whether nghttp2 closed the stream, and the connection's scheduling marks. `HTTP2Connection`
/// reports events and acts on the answers, as `HTTPConnection` does with `HTTPConnectionStateMachine`; the sink, the
/// buffered bytes and nghttp2 stay with the connection and `HTTP2Stream`. Tested without sockets
/// (`HTTP2StreamStateMachineTests`).
struct HTTP2StreamStateMachine {
    enum Body: Equatable {
        /// The handler has not asked for the body yet: bytes wait (bounded by the stream window).
        case waiting
        /// Bytes flow to the sink.
        case reading
        /// The sink heard its end (or abort), or the answer came first: bytes are dropped.
        case finished
        /// The handler stopped the body and answers later (`stopBody`): bytes are dropped and reopen the connection
        /// window only, so the client stops sending on this stream.
        case stopped
    }

    private(set) var body: Body = .waiting
    /// The peer sent END_STREAM: no more body bytes.
    private(set) var isRemoteEnded = false
    private(set) var isClosed = false
    private(set) var hasResponded = false
    /// In the connection's work list (so it is queued once).
    private(set) var isQueued = false
    /// nghttp2 asked for response bytes the stream does not have yet.
    private(set) var needsFetch = false
    /// A piece of the response is being fetched from its source.
    private(set) var isFetching = false

    // MARK: Peer and nghttp2

    mutating func remoteEnded() { isRemoteEnded = true }

    mutating func closed() { isClosed = true }

    /// Whether DATA that arrives is kept for the sink; otherwise it is dropped at once.
    var keepsArrivingBytes: Bool { body == .waiting || body == .reading }

    /// Whether bytes the stream lets go of reopen its own window as well as the connection's.
    var reopensStreamWindow: Bool { body != .stopped }

    // MARK: Handler

    enum ReadBodyAction: Equatable {
        case start
        /// Too late (closed, answered, already reading): the sink hears `bodyAborted(.clientClosed)`.
        case refuse
    }

    mutating func readBodyRequested() -> ReadBodyAction {
        guard body == .waiting, !isClosed, !hasResponded else { return .refuse }
        body = .reading
        return .start
    }

    enum StopBodyAction: Equatable {
        /// The body is stopped now: the sink hears nothing more, the body deadlines end.
        case stop
        case ignore
    }

    mutating func stopBodyRequested() -> StopBodyAction {
        guard !isClosed, !hasResponded, body == .waiting || body == .reading else { return .ignore }
        body = .stopped
        return .stop
    }

    enum ResponseAction: Equatable {
        /// A second answer, or the stream is gone: a streamed body's source is cancelled.
        case refuse
        /// `endsBody`: the answer came before the body's end (413, lock takeover); the sink is let go and the
        /// rest of the body is dropped.
        case respond(endsBody: Bool)
    }

    mutating func responseRequested() -> ResponseAction {
        guard !hasResponded else { return .refuse }
        hasResponded = true
        guard !isClosed else { return .refuse }
        switch body {
        case .waiting, .reading:
            body = .finished
            return .respond(endsBody: true)
        case .finished, .stopped:
            return .respond(endsBody: false)
        }
    }

    /// A 1xx may still go out.
    var acceptsInformational: Bool { !hasResponded && !isClosed }

    // MARK: Body delivery

    /// Every buffered byte was handed to the sink. True when the body ends here (the peer ended it): the sink
    /// hears `bodyEnd`.
    mutating func bufferDrained() -> Bool {
        guard body == .reading, isRemoteEnded else { return false }
        body = .finished
        return true
    }

    /// The body ends without its end (reset, timeout, the connection ends). True when a sink was reading: it hears
    /// `bodyAborted`.
    mutating func bodyAborted() -> Bool {
        let wasReading = body == .reading
        body = .finished
        return wasReading
    }

    // MARK: Scheduling

    /// True when the stream must be appended to the work list (it is not in it yet).
    mutating func enqueue() -> Bool {
        guard !isQueued else { return false }
        isQueued = true
        return true
    }

    mutating func dequeued() { isQueued = false }

    mutating func responseBytesWanted() { needsFetch = true }

    /// True when a fetch starts now (wanted, and none running).
    mutating func startFetch() -> Bool {
        guard needsFetch, !isFetching else { return false }
        needsFetch = false
        isFetching = true
        return true
    }

    mutating func fetchCompleted() { isFetching = false }
}
