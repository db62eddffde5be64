import Glibc

/// The one reading of `CLOCK_MONOTONIC` (durations, deadlines, rates): never stepped by NTP or an operator, so an
/// interval measured with it is never negative. Loop code that only needs the time of the current iteration uses
/// `EventLoop.nowMilliseconds` (libuv's cached clock, no system call) instead.
public enum MonotonicClock {
    public static var nanoseconds: UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    public static var milliseconds: UInt64 { nanoseconds / 1_000_000 }

    public static var seconds: Double { Double(nanoseconds) / 1e9 }
}
