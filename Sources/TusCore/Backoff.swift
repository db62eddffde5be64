/// How long to wait before the next attempt, after `failures` failed ones: the one backoff rule of the outbound
/// client (pool retries, S3 requests, hooks), the tus uploader, `TCPListener`'s accept pause and `RedisConnection`'s
/// reconnects, so that "how we back off" is written once.
///
/// `initialMilliseconds × growth^(failures - 1)`, capped at `maximumMilliseconds`; with `jitter` the wait is drawn
/// from the upper half of that, so that many clients hit by one outage do not come back in lockstep.
public struct Backoff: Sendable, Equatable {
    public var initialMilliseconds: UInt64
    public var maximumMilliseconds: UInt64
    /// Factor per further failure; 1 waits the same every time.
    public var growth: UInt64
    public var jitter: Bool

    public init(initialMilliseconds: UInt64, maximumMilliseconds: UInt64, growth: UInt64 = 2, jitter: Bool = false) {
        self.initialMilliseconds = initialMilliseconds
        self.maximumMilliseconds = max(initialMilliseconds, maximumMilliseconds)
        self.growth = max(1, growth)
        self.jitter = jitter
    }

    /// The same wait before every attempt (tusd's `--hooks-http-backoff`).
    public static func constant(_ milliseconds: UInt64) -> Backoff {
        Backoff(initialMilliseconds: milliseconds, maximumMilliseconds: milliseconds, growth: 1)
    }

    /// The full wait (before jitter) after `failures` failed attempts (1 = after the first).
    public func nominalDelay(afterFailures failures: Int) -> UInt64 {
        var delay = initialMilliseconds
        var step = 1
        while step < failures, delay < maximumMilliseconds {
            let (grown, overflow) = delay.multipliedReportingOverflow(by: growth)
            delay = overflow ? maximumMilliseconds : grown
            step += 1
        }
        return min(delay, maximumMilliseconds)
    }

    /// The wait to schedule after `failures` failed attempts.
    public func delay(afterFailures failures: Int) -> UInt64 {
        let nominal = nominalDelay(afterFailures: failures)
        guard jitter, nominal > 1 else { return nominal }
        return nominal / 2 + UInt64.random(in: 0...(nominal - nominal / 2))
    }
}
