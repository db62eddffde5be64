import TusCore
import TusLoop
import TusTestSupport
import XCTest

/// `executor.eventLoop`: how a store finds the loop of the executor its caller passed, typed, with no downcast.
final class ExecutorBindingTests: XCTestCase {
    func testEachExecutorNamesTheLoopItWasBoundTo() throws {
        let first = try EventLoop()
        let second = try EventLoop()
        let onFirst = ManualExecutor()
        let alsoOnFirst = ManualExecutor()
        let onSecond = ManualExecutor()
        first.bind(onFirst)
        first.bind(alsoOnFirst)
        second.bind(onSecond)
        XCTAssert(onFirst.eventLoop === first)
        XCTAssert(alsoOnFirst.eventLoop === first)
        XCTAssert(onSecond.eventLoop === second)
        XCTAssert(onSecond.boundEventLoop === second)
        XCTAssertNil(ManualExecutor().boundEventLoop, "an executor bound to no loop names none")
        for loop in [first, second] {
            loop.stop()
            loop.run()
            XCTAssertEqual(loop.liveHandleCount, 0)
        }
    }

    /// The binding does not keep a loop alive: the executor does (LoopExecutorAdapter holds its loop).
    func testTheBindingHoldsNoLoop() throws {
        let executor = ManualExecutor()
        weak var gone: EventLoop?
        do {
            let loop = try EventLoop()
            loop.bind(executor)
            XCTAssert(executor.boundEventLoop === loop)
            gone = loop
            loop.stop()
            loop.run()
        }
        XCTAssertNil(gone, "the loop was freed though its executor lives")
        XCTAssertNil(executor.boundEventLoop)
    }
}
