@testable import TusHTTPServer
import XCTest

/// Lines about hostile peers stay few under a flood (issue 21 §1: a flood of hostile connections filled an undrained
/// stderr pipe after ~490 lines and blocked the server), and the count of what was left out is not lost.
final class AbuseLogLimiterTests: XCTestCase {
    func testOneLinePerKindPerIntervalAndTheNextCarriesTheCount() {
        var limiter = AbuseLogLimiter(intervalMilliseconds: 1_000)
        XCTAssertEqual(limiter.admit(.http2LimitReached, now: 10_000), .log(suppressed: 0))
        // A flood of 10 000 hostile connections within the same second: none of them is written.
        for step in 0..<10_000 {
            XCTAssertEqual(limiter.admit(.http2LimitReached, now: 10_000 + UInt64(step) / 10), .skip)
        }
        // Another kind has its own budget.
        XCTAssertEqual(limiter.admit(.bodyStalled, now: 10_500), .log(suppressed: 0))
        XCTAssertEqual(limiter.admit(.bodyTooSlow, now: 10_500), .log(suppressed: 0))
        XCTAssertEqual(limiter.admit(.bodyStalled, now: 10_600), .skip)
        // A second later the next line goes out and says how many were left out.
        XCTAssertEqual(limiter.admit(.http2LimitReached, now: 11_000), .log(suppressed: 10_000))
        XCTAssertEqual(limiter.admit(.http2LimitReached, now: 11_999), .skip)
        XCTAssertEqual(limiter.admit(.http2LimitReached, now: 12_000), .log(suppressed: 1))
        XCTAssertEqual(limiter.admit(.http2LimitReached, now: 13_000), .log(suppressed: 0))
    }

    /// A flood that stopped still shows its size: once the interval passed with no line to carry the count, the
    /// sweep writes it on its own, once.
    func testCountsOfAFloodThatStoppedComeOutOnTheirOwn() {
        var limiter = AbuseLogLimiter(intervalMilliseconds: 1_000)
        XCTAssertEqual(limiter.admit(.bodyStalled, now: 0), .log(suppressed: 0))
        XCTAssertEqual(limiter.admit(.bodyStalled, now: 100), .skip)
        XCTAssertEqual(limiter.admit(.bodyStalled, now: 200), .skip)
        XCTAssertEqual(limiter.admit(.bodyTooSlow, now: 300), .log(suppressed: 0))
        XCTAssertTrue(limiter.overdueCounts(now: 999).isEmpty, "not before the interval passed")
        let overdue = limiter.overdueCounts(now: 1_000)
        XCTAssertEqual(overdue.map(\.kind), [.bodyStalled], "only kinds with lines left out")
        XCTAssertEqual(overdue.map(\.suppressed), [2])
        XCTAssertTrue(limiter.overdueCounts(now: 1_100).isEmpty, "reported once")
        XCTAssertEqual(limiter.admit(.bodyStalled, now: 1_500), .skip, "the count line used this second's budget")
        XCTAssertEqual(limiter.admit(.bodyStalled, now: 2_000), .log(suppressed: 1))
    }
}
