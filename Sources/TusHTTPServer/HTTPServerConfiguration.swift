public import TusHTTP1

/// Everything the HTTP engine needs to know; the executable fills it from flags.
public struct HTTPServerConfiguration: Sendable {
    public var host: String = "0.0.0.0"
    /// 0 lets the kernel pick; `HTTPServer.port` tells which.
    public var port: Int = 8080
    /// One event loop per thread, all accepting on the same port through SO_REUSEPORT.
    public var loops: Int = 1
    /// Connections beyond this are answered 503 and closed at once.
    public var maxConnections: Int = 10_000
    /// Time allowed for a complete request head once its first byte arrived (slowloris guard). On HTTP/2 it
    /// bounds the connection preface and the SETTINGS exchange (GOAWAY SETTINGS_TIMEOUT beyond).
    public var headTimeoutMilliseconds: UInt64 = 30_000
    /// How long a keep-alive connection may sit idle between requests.
    public var idleTimeoutMilliseconds: UInt64 = 60_000
    /// A body that makes no progress for this long is aborted and the connection closed; the handler is
    /// told (`.timeout`) so it can keep what it stored.
    public var bodyTimeoutMilliseconds: UInt64 = 60_000
    /// A body must average at least this many bytes per second over each `bodyRateWindowMilliseconds` while the
    /// server reads it, or it is cut like a timeout (the handler hears `.timeout` and keeps what it stored); 0
    /// turns the check off. `bodyTimeoutMilliseconds` alone lets a client that sends one byte a second hold a
    /// connection, a descriptor and an upload lock forever.
    ///
    /// Why 128: the slowest links still in use (GPRS, about 2.5-5 KB/s upstream) shared by Uppy's 20 parallel
    /// uploads leave roughly 130-250 bytes/s per upload; Kestrel's default minimum is 240 bytes/s and Apache
    /// mod_reqtimeout's 500. 128 stays below all of them, yet makes holding a connection cost 128 times what the
    /// 1 byte/s trickle did.
    public var minBodyBytesPerSecond: Int = 128
    /// The averaging window of `minBodyBytesPerSecond`. tus-server makes it the body timeout, so that a stall
    /// the body timeout forgives (a tunnel, a cell handover) is not cut by the rate check, provided the client
    /// then catches up within the window.
    public var bodyRateWindowMilliseconds: UInt64 = 60_000
    /// Grace period for in-flight requests after SIGTERM/SIGINT.
    public var shutdownTimeoutMilliseconds: UInt64 = 10_000
    public var parserLimits = HTTPParserLimits()
    /// Size of the chunks body bytes are read into. Each chunk goes to the file writer without a copy.
    public var readChunkSize: Int = 256 * 1024
    /// Body chunk size of an HTTP/1.1 connection over TLS, and the size its decrypted bytes are coalesced into
    /// before they go to the writer (half of it at a time): each hand-off to the threadpool writer costs wake-ups
    /// and context switches, and a TLS read yields only what the socket had (~140 KiB at full speed here), so
    /// per-read writes cost ~3.5 hand-offs per MiB where nginx, writing its 1 MiB buffer, needs one
    /// (bench/results/2026-12-07-tls-h1). Capped by `bodyMemoryPerLoop` like `readChunkSize`.
    public var secureReadChunkSize: Int = 1024 * 1024
    /// Memory a loop aims to spend on body chunks across all its uploads; with many concurrent uploads each
    /// gets smaller chunks (never below 16 KiB), so RSS stays bounded by connections × a small floor rather
    /// than connections × `readChunkSize` × `maxOutstandingFragments`.
    public var bodyMemoryPerLoop: Int = 48 * 1024 * 1024
    /// Body fragments a connection may have in flight to the handler before it stops reading the socket.
    /// With `readChunkSize` this bounds the memory one upload can pin.
    public var maxOutstandingFragments: Int = 4
    /// Large cleartext Content-Length bodies go socket → pipe → file with splice(2) when the sink offers a file
    /// (`HTTPDirectBodySink`), sparing the copy into user memory (`SocketFileSplicer`). Off: always fragments.
    public var spliceBodies = true
    /// Below this many body bytes left after what was buffered with the head, the pipes' setup is not worth it.
    public var spliceMinimumBytes: Int64 = 1 << 20
    /// HTTP/2 (ALPN "h2" over TLS, or h2c with prior knowledge): windows and limits. The request head limit
    /// (`parserLimits.maxHeadBytes`) is also HTTP/2's header list limit (SETTINGS_MAX_HEADER_LIST_SIZE, 431 beyond).
    public var http2 = HTTP2Configuration()

    public init() {}

    /// Descriptors the process can need with `maxConnections` open: a socket per connection plus the upload
    /// file a PATCH or GET holds open, and a fixed share for each loop (listener, epoll, wakeup, reserve) and for
    /// the process (stdio, threadpool, the upload directory). Below this, accepts fail with EMFILE under load.
    public var descriptorsNeeded: Int { Self.descriptorsNeeded(maxConnections: maxConnections, loops: loops) }

    static func descriptorsNeeded(maxConnections: Int, loops: Int) -> Int {
        2 * maxConnections + 8 * max(1, loops) + 64
    }

    /// The default connection limit: `preferred`, or fewer when `openFileLimit` descriptors cannot serve that
    /// many (the inverse of `descriptorsNeeded`), so that a default start never runs out of descriptors.
    /// At least 1: a limit too small even for that is left for the start-up warning to report.
    public static func maxConnections(fitting openFileLimit: Int, loops: Int, preferred: Int = 10_000) -> Int {
        let fixed = descriptorsNeeded(maxConnections: 0, loops: loops)
        return max(1, min(preferred, (openFileLimit - fixed) / 2))
    }
}

public enum ServerLogLevel: Int, Sendable, Comparable {
    case trace, debug, info, notice, warning, error
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// The engine logs through this so that it does not depend on a logging library; the executable bridges it.
public typealias ServerLogSink = @Sendable (ServerLogLevel, String) -> Void
