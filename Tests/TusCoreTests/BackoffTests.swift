import XCTest

@testable import TusCore

final class BackoffTests: XCTestCase {
    func testConstantWaitsTheSameEveryTime() {
        let backoff = Backoff.constant(250)
        XCTAssertEqual((1...6).map { backoff.delay(afterFailures: $0) }, [250, 250, 250, 250, 250, 250])
    }

    func testExponentialDoublesUpToTheCap() {
        let backoff = Backoff(initialMilliseconds: 500, maximumMilliseconds: 10_000)
        XCTAssertEqual((1...7).map { backoff.delay(afterFailures: $0) }, [500, 1000, 2000, 4000, 8000, 10_000, 10_000])
        XCTAssertEqual(backoff.delay(afterFailures: 10_000), 10_000, "no overflow after many failures")
    }

    /// TCPListener's accept pause: 50 ms doubling to 1 s (docs/ARCHITECTURE.md, Threads).
    func testAcceptPauseBounds() {
        let backoff = Backoff(initialMilliseconds: 50, maximumMilliseconds: 1_000)
        XCTAssertEqual((1...7).map { backoff.delay(afterFailures: $0) }, [50, 100, 200, 400, 800, 1000, 1000])
    }

    func testBoundsAreSane() {
        let inverted = Backoff(initialMilliseconds: 500, maximumMilliseconds: 100)
        XCTAssertEqual(inverted.maximumMilliseconds, 500, "the cap is never below the first wait")
        XCTAssertEqual(inverted.delay(afterFailures: 3), 500)
        let noGrowth = Backoff(initialMilliseconds: 10, maximumMilliseconds: 100, growth: 0)
        XCTAssertEqual(noGrowth.delay(afterFailures: 5), 10, "growth below 1 waits the same")
        let huge = Backoff(initialMilliseconds: UInt64.max / 3, maximumMilliseconds: UInt64.max, growth: 1000)
        XCTAssertEqual(huge.delay(afterFailures: 3), UInt64.max, "an overflowing step lands on the cap")
        XCTAssertEqual(Backoff(initialMilliseconds: 7, maximumMilliseconds: 70).delay(afterFailures: 0), 7)
    }

    func testJitterStaysInTheUpperHalf() {
        let backoff = Backoff(initialMilliseconds: 100, maximumMilliseconds: 5_000, jitter: true)
        var seen = Set<UInt64>()
        for _ in 0..<200 {
            let delay = backoff.delay(afterFailures: 3)
            XCTAssert((200...400).contains(delay), "\(delay)")
            seen.insert(delay)
        }
        XCTAssertGreaterThan(seen.count, 1, "jitter varies the wait")
        for _ in 0..<100 {
            XCTAssert((2_500...5_000).contains(backoff.delay(afterFailures: 50)), "jitter never passes the cap")
        }
        XCTAssertEqual(Backoff(initialMilliseconds: 1, maximumMilliseconds: 1, jitter: true).delay(afterFailures: 1), 1)
    }
}
