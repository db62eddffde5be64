public import TusCore
/// The contract between the connection (TusHTTPServer) and the application (TusProtocol).
///
/// Threading: every call in either direction happens on the loop thread that owns the connection, except
/// `LoopExecutor.execute`, which any thread may call to get back onto that loop. Handlers are shared by all
/// loops, hence `Sendable`; exchanges and sinks belong to one loop and are not.
///
/// Lifetime of one exchange: `handle(_:exchange:)` → optionally `readBody(into:)` → the sink gets
/// `bodyFragment`s, then exactly one of `bodyEnd` or `bodyAborted` → the handler calls `respond` exactly
/// once (a handler may also respond before or without reading the body). After `bodyAborted(.clientClosed)`
/// a response is still accepted and silently dropped.
public protocol HTTPRequestHandler: AnyObject, Sendable {
    func handle(_ head: RequestHead, exchange: any HTTPExchange)
}

/// The connection's side of one request/response exchange.
public protocol HTTPExchange: AnyObject {
    var head: RequestHead { get }
    /// The loop this exchange runs on: how work started elsewhere (another loop, a timer) gets back here.
    var executor: any LoopExecutor { get }
    /// True when the connection is TLS, so absolute URLs get `https`.
    var isSecure: Bool { get }

    /// Starts delivering the request body to `sink`. Sends `100 Continue` first when the client expects it,
    /// which is why a handler that rejects the head must not call this. With no body, the sink gets
    /// `bodyEnd` at once.
    func readBody(into sink: any HTTPBodySink)

    /// Sends the final response. If the body has not been read to its end, the connection stops delivering
    /// it; it then drains a small remainder to keep the connection alive, or closes the connection rather
    /// than read a large body nobody wants. `consuming`: each layer on the way out adds a field or two, and a
    /// response it owns is changed in place, not copied (with every header string retained again) at each.
    func respond(_ response: consuming HTTPResponse)

    /// Sends an informational (1xx) response ahead of the final one: a head without a body, any number of times
    /// (the resumable-upload draft's `104 Upload Resumption Supported` carries the upload's URL before the body
    /// is read). Each goes out after whatever this exchange sent before, so it can never land after the final
    /// response. Ignored after `respond`, for `101` (switching protocols is the connection's business, not a
    /// handler's) and any status outside 100...199, and for HTTP/1.0 clients, which cannot parse one
    /// (RFC 9110 §15.2: "A server MUST NOT send a 1xx response to an HTTP/1.0 client"). Framing fields are
    /// dropped, as in `respond`.
    func sendInformational(_ response: HTTPResponse)

    /// Sends a response whose body is streamed from `source` (downloads). `bodyLength` bytes must follow;
    /// the response to a HEAD request sends only the head.
    func respond(_ response: HTTPResponse, bodyLength: Int64, source: any HTTPBodySource)

    /// Stops delivering the body without answering yet, for a handler that must clean up before it answers (a
    /// hook stopped the upload, which is removed first). The sink hears nothing more but a direct body's
    /// `endDirectBody`; what still arrives is discarded, and the response should close the connection (HTTP/2
    /// grants the stream no more window and resets it after the response instead). A transport that cannot stop
    /// early keeps delivering, so the sink must ignore what comes after it asked.
    func stopBody()

    /// The peer as "host:port" (hook payloads, logs); nil when unknown.
    var remoteAddress: String? { get }

    /// The id the application gave this request (`X-Request-ID`), so that the connection's own log lines
    /// about it (timeouts, early ends) carry it too.
    func tagForLogs(requestID: String)
}

extension HTTPExchange {
    public func stopBody() {}
    public var remoteAddress: String? { nil }
    public func tagForLogs(requestID: String) {}
}

public protocol HTTPBodySink: AnyObject {
    /// Body bytes, in order. Call `done` (on the loop thread) once the bytes are no longer needed: the
    /// connection stops reading while too many fragments are outstanding, so a slow disk slows the client
    /// and memory stays bounded.
    func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void)
    /// The body ended as framed. `trailers` holds chunked trailer fields (empty otherwise).
    func bodyEnd(trailers: HTTPHeaders)
    /// The body will not complete. Fragments already delivered stay valid until their `done` is called.
    func bodyAborted(_ reason: BodyAbortReason)
}

/// A sink that can also take body bytes written straight into its file by the connection (splice(2), cleartext
/// Content-Length bodies only). Progress then comes as counts instead of fragments, in body order, and the sink
/// treats it exactly like fragments whose writes completed (offsets, progress, checkpoints, limits).
///
/// Protocol: `beginDirectBody` (nil: the sink cannot now, fragments go on as usual), then any number of
/// `bodyWrittenDirectly`, then exactly one `endDirectBody`, even when the body was stopped, aborted or answered
/// early meanwhile: until then a write may still be in flight, so the sink must not commit, truncate or close.
/// `bodyEnd`/`bodyAborted` may come before or after `endDirectBody`.
public protocol HTTPDirectBodySink: HTTPBodySink {
    /// Asked only when every fragment handed over has been `done`. Returns nil unless at least `minimumCount`
    /// bytes may be written directly.
    func beginDirectBody(minimumCount: Int64) -> DirectBodyTarget?
    /// The next `count` body bytes are in the file, contiguous after the previous ones.
    func bodyWrittenDirectly(count: Int)
    /// No direct write is in flight any more. `writeErrorNumber` (an errno) when writing the file failed.
    func endDirectBody(writeErrorNumber: Int32?)
}

public enum BodyAbortReason: Sendable, Equatable {
    /// The peer closed or reset the connection mid-body.
    case clientClosed
    /// No body bytes arrived within the body timeout.
    case timeout
    /// The server is shutting down and the grace period ended.
    case shutdown
    /// The chunked framing was malformed (the connection will be closed).
    case malformed
}

/// A response body produced on demand (downloads). The connection asks for the next piece only after the
/// previous one was written to the socket, so memory stays bounded.
public protocol HTTPBodySource: AnyObject {
    /// Deliver the next piece (at most `maxLength` bytes) through `completion`, on the loop thread:
    /// a fragment, nil at the end, or an error (the connection is then closed).
    func next(maxLength: Int, completion: @escaping (Result<BodyFragment?, any Error>) -> Void)
    /// The connection went away; release resources (close files).
    func cancel()
}
