@testable import TusHTTPServer
import XCTest

/// The minimum-rate rule on its own, with a manual clock: HTTP/1.1 connections (through
/// `HTTPConnectionStateMachine`, tested there too) and HTTP/2 streams both decide with it.
final class BodyRateMeterTests: XCTestCase {
    private func meter(_ bytesPerSecond: Int, startingAt now: UInt64 = 1_000) -> BodyRateMeter {
        var meter = BodyRateMeter(bytesPerSecond: bytesPerSecond, windowMilliseconds: 1_000)
        meter.start(now: now)
        return meter
    }

    /// No verdict before a window is full; then too few bytes is one.
    func testTooFewBytesInAFullWindowIsTooSlow() {
        var rate = meter(1_000)
        rate.record(999)
        XCTAssertFalse(rate.isTooSlow(now: 1_999, isHoldingBodyBack: false), "the window is still open")
        XCTAssertTrue(rate.isTooSlow(now: 2_000, isHoldingBodyBack: false))
    }

    /// Windows tumble: a full one starts the next, which must bring its own share.
    func testEachWindowMustBringItsShare() {
        var rate = meter(1_000)
        rate.record(5_000)
        XCTAssertFalse(rate.isTooSlow(now: 2_000, isHoldingBodyBack: false))
        rate.record(10)
        XCTAssertTrue(rate.isTooSlow(now: 3_000, isHoldingBodyBack: false), "a burst does not pay for later windows")
    }

    /// While the server holds the body back (a slow disk), the window starts afresh at each check.
    func testHoldingTheBodyBackRestartsTheWindow() {
        var rate = meter(1_000)
        XCTAssertFalse(rate.isTooSlow(now: 5_000, isHoldingBodyBack: true))
        XCTAssertFalse(rate.isTooSlow(now: 5_999, isHoldingBodyBack: false))
        XCTAssertTrue(rate.isTooSlow(now: 6_000, isHoldingBodyBack: false))
    }

    func testZeroRateNeverCuts() {
        var rate = meter(0)
        XCTAssertFalse(rate.isTooSlow(now: 100_000, isHoldingBodyBack: false))
    }
}

/// Spliced bodies share the loop's body memory budget: pipes shrink as uploads grow in number, to powers of two
/// between 64 KiB and 1 MiB.
final class SplicePipeBudgetTests: XCTestCase {
    func testPipeCapacityShrinksWithConcurrentBodiesWithinItsBounds() {
        let budget = 48 << 20
        XCTAssertEqual(LoopContext.splicePipeCapacity(bodyMemoryPerLoop: budget, activeBodies: 1), 1 << 20)
        XCTAssertEqual(LoopContext.splicePipeCapacity(bodyMemoryPerLoop: budget, activeBodies: 24), 1 << 20)
        XCTAssertEqual(LoopContext.splicePipeCapacity(bodyMemoryPerLoop: budget, activeBodies: 32), 512 << 10)
        XCTAssertEqual(LoopContext.splicePipeCapacity(bodyMemoryPerLoop: budget, activeBodies: 128), 128 << 10)
        XCTAssertEqual(LoopContext.splicePipeCapacity(bodyMemoryPerLoop: budget, activeBodies: 10_000), 64 << 10)
        for bodies in [1, 7, 32, 100, 128, 384] {
            let capacity = LoopContext.splicePipeCapacity(bodyMemoryPerLoop: budget, activeBodies: bodies)
            XCTAssertEqual(capacity & (capacity - 1), 0, "a power of two")
            if capacity > 64 << 10 { XCTAssertLessThanOrEqual(capacity * 2 * bodies, budget, "within the budget") }
        }
    }

    /// A few spliced bodies keep their threadpool job for several pipes in a row (no loop round trip between
    /// pipes); many take turns, one pipe per job, so that all uploads progress evenly (issue 19).
    func testDrainsPerJobFallToOneWithManyBodies() {
        XCTAssertGreaterThan(LoopContext.spliceDrainsPerJob(activeBodies: 1), 1)
        XCTAssertGreaterThan(LoopContext.spliceDrainsPerJob(activeBodies: 4), 1)
        XCTAssertEqual(LoopContext.spliceDrainsPerJob(activeBodies: 5), 1)
        XCTAssertEqual(LoopContext.spliceDrainsPerJob(activeBodies: 128), 1)
    }
}
