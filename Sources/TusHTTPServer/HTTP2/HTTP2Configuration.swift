/// HTTP/2 settings and limits (RFC 9113). TLS connections speak HTTP/2 when ALPN picked "h2" (the server's
/// `TLSContext` decides whether it offers it); plain connections only with `cleartextPriorKnowledge`.
public struct HTTP2Configuration: Sendable {
    /// Accept h2c with prior knowledge on plain connections (a connection that opens with the HTTP/2 preface),
    /// for use behind a proxy that speaks HTTP/2 to its backends. HTTP/1.1 on the same port keeps working.
    public var cleartextPriorKnowledge = false
    /// SETTINGS_MAX_CONCURRENT_STREAMS. A stream beyond it gets RST_STREAM REFUSED_STREAM (RFC 9113 §5.1.2: the
    /// client may retry it) and the streams in flight carry on. nghttp2 would end the whole connection with
    /// PROTOCOL_ERROR once the setting is acknowledged, so it is told a higher limit (see `refusalHeadroom`).
    public var maxConcurrentStreams: UInt32 = 100
    /// Streams nghttp2 accepts beyond `maxConcurrentStreams`, for us to refuse: the refused ones of one read
    /// (a 32 KiB read holds at most a few thousand HEADERS frames) stay open in nghttp2 until their RST_STREAM is
    /// out. A client past even this gets GOAWAY PROTOCOL_ERROR from nghttp2.
    public var refusalHeadroom: UInt32 = 4096
    /// SETTINGS_INITIAL_WINDOW_SIZE: how many body bytes a client may send on one stream before the server
    /// reopens the window. The window reopens only as the upload's fragments are written (their `done`), so
    /// this is also the most one stream buffers. 4 MiB: with 1 MiB one upload over h2 + TLS kept running dry
    /// (the client waits for a WINDOW_UPDATE, the loop sleeps and wakes per window: epoll_wait 7% of its profile
    /// against 1% over HTTP/1.1) and cost 10-25% more server CPU per GiB than with 4 MiB; 8 MiB was worse again
    /// (bench/results/2026-12-07-h2tls). HTTP/1.1 holds ≤ 1.25 MiB per upload: a stalled h2 stream may pin up
    /// to this much. `--http2-stream-window`.
    public var initialStreamWindow: Int32 = 4 << 20
    /// The connection-level receive window (raised from 64 KiB by a WINDOW_UPDATE on stream 0 at start). It
    /// bounds the unconsumed body bytes, hence the body memory, of one connection however many streams are
    /// open: 8 MiB lets two streams run at full window while a thousand open streams still cost ≤ 8 MiB of data.
    public var connectionWindow: Int32 = 8 << 20
    /// SETTINGS_MAX_FRAME_SIZE we accept: bigger DATA frames mean fewer frame headers and callbacks per byte.
    public var maxFrameSize: Int32 = 64 * 1024
    /// Rapid reset (CVE-2023-44487): a token bucket of stream resets received from the peer (nghttp2's
    /// `stream_reset_rate_limit` rule, kept by `HTTP2ConnectionStateMachine` with the loop clock); past it the
    /// connection is closed with GOAWAY ENHANCE_YOUR_CALM. Handlers never see a stream that was reset in the same
    /// read as its HEADERS (dispatch happens after the whole read was parsed).
    public var resetBurst: UInt64 = 100
    public var resetsPerSecond: UInt64 = 33
    /// HPACK bomb: header blocks over the limit (`parserLimits.maxHeadBytes` or `maxHeaderCount`) one connection
    /// may send; each is answered 431 (decoded no further than twice the limit) or reset, and the next one ends
    /// the connection with GOAWAY ENHANCE_YOUR_CALM without decoding it further.
    public var maxOversizedHeaderBlocks: Int = 3
    /// Floods of frames that carry no progress (CVE-2019-9518 empty frames, and PRIORITY, PING, SETTINGS,
    /// RST_STREAM, WINDOW_UPDATE churn): at most this many, plus `unproductiveFramesPerProgress` for each frame
    /// that moved something (a request head, DATA with payload or END_STREAM, a DATA frame we sent, which the
    /// peer answers with WINDOW_UPDATEs); beyond, GOAWAY ENHANCE_YOUR_CALM.
    public var maxUnproductiveFrames: Int = 1000
    public var unproductiveFramesPerProgress: Int = 2
    /// CONTINUATION flood (CVE-2024-28182): at most this many CONTINUATION frames after a HEADERS frame.
    public var maxContinuations: Int = 8
    /// Output bytes handed to the socket and not yet written before the connection stops producing frames:
    /// a client that does not read cannot make the server buffer responses without bound.
    public var maxPendingOutputBytes: Int = 1 << 20

    public init() {}
}
