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
    /// this is also the most one stream buffers. 1 MiB: HTTP/1.1 keeps up to 4 outstanding fragments + the one
    /// being filled (≤ 1.25 MiB) in flight; with 1 MiB one h2 stream reached 0.9x the HTTP/1.1-over-TLS PATCH
    /// throughput on loopback with less server CPU (bench/results/2026-11-29-h2, same client for both). With curl
    /// as the client a 4 MiB window helped somewhat (256 MiB: 1.28 s vs 1.46 s median of 4; HTTP/1.1 0.87 s) at
    /// four times the memory a stalled stream may pin; `--http2-stream-window` sets it. 1 MiB covers 100 Mbit/s
    /// at 80 ms of round trip, where the 64 KiB default window would cap an upload near 6.5 Mbit/s.
    public var initialStreamWindow: Int32 = 1 << 20
    /// The connection-level receive window (raised from 64 KiB by a WINDOW_UPDATE on stream 0 at start). It
    /// bounds the unconsumed body bytes, hence the body memory, of one connection however many streams are
    /// open: 4 MiB lets four streams run at full window while a thousand open streams still cost ≤ 4 MiB of data.
    public var connectionWindow: Int32 = 4 << 20
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
