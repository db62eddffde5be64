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
}
