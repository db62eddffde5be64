/// The minimum body rate (`HTTPServerConfiguration.minBodyBytesPerSecond`) as one rule, so that an HTTP/1.1
/// connection (`HTTPConnectionStateMachine`) and an HTTP/2 stream (`HTTP2Connection`) cut a trickling body at the
/// same moment. A value type without I/O; the clock is passed in (loop milliseconds).
///
/// Tumbling windows: each window of `windowMilliseconds` while a body is being read must bring
/// `bytesPerSecond × window` bytes. A window in which the server held the body back (backpressure from a slow
/// disk: HTTP/1.1 stopped reading, or an HTTP/2 stream's bytes wait for the sink) starts afresh, because that wait
/// is not the client's doing, and a client that trickles never fills the sink enough to cause one.
struct BodyRateMeter {
    let bytesPerSecond: Int
    let windowMilliseconds: UInt64
    private var windowStart: UInt64 = 0
    private var bytesInWindow = 0

    init(bytesPerSecond: Int, windowMilliseconds: UInt64) {
        self.bytesPerSecond = bytesPerSecond
        self.windowMilliseconds = windowMilliseconds
    }

    init(_ configuration: HTTPServerConfiguration) {
        self.init(
            bytesPerSecond: configuration.minBodyBytesPerSecond,
            windowMilliseconds: configuration.bodyRateWindowMilliseconds)
    }

    /// A body starts being read: its first window opens now.
    mutating func start(now: UInt64) {
        windowStart = now
        bytesInWindow = 0
    }

    /// Body bytes arrived from the client.
    mutating func record(_ count: Int) {
        bytesInWindow += count
    }

    /// Whether the window that just closed brought too few bytes. Called from the loop's sweep; a window that is
    /// still open, or one with the server `isHoldingBodyBack`, is never a verdict.
    mutating func isTooSlow(now: UInt64, isHoldingBodyBack: Bool) -> Bool {
        guard bytesPerSecond > 0, windowMilliseconds > 0 else { return false }
        guard !isHoldingBodyBack else {
            start(now: now)
            return false
        }
        guard now &- windowStart >= windowMilliseconds else { return false }
        if UInt64(bytesInWindow) < UInt64(bytesPerSecond) * windowMilliseconds / 1000 { return true }
        start(now: now)
        return false
    }
}
