import TusCore
import TusLoop
import XCTest

/// An executor whose work never runs: only which loop it names matters here.
private final class NamingExecutor: LoopExecutor, @unchecked Sendable {
    private final class Nothing: Cancellable { func cancel() {} }
    func execute(_ work: @escaping @Sendable () -> Void) {}
    func schedule(afterMilliseconds milliseconds: UInt64, _ work: @escaping () -> Void) -> any Cancellable { Nothing() }
    var inLoop: Bool { false }
    func offload(_ work: @escaping @Sendable () -> Void, completion: @escaping () -> Void) {}
}

/// `executor.eventLoop`: how a store finds the loop of the executor its caller passed, typed, with no downcast.
final class ExecutorBindingTests: XCTestCase {
    func testEachExecutorNamesTheLoopItWasBoundTo() throws {
        let first = try EventLoop()
        let second = try EventLoop()
        let onFirst = NamingExecutor()
        let alsoOnFirst = NamingExecutor()
        let onSecond = NamingExecutor()
        first.bind(onFirst)
        first.bind(alsoOnFirst)
        second.bind(onSecond)
        XCTAssert(onFirst.eventLoop === first)
        XCTAssert(alsoOnFirst.eventLoop === first)
        XCTAssert(onSecond.eventLoop === second)
        XCTAssert(onSecond.boundEventLoop === second)
        XCTAssertNil(NamingExecutor().boundEventLoop, "an executor bound to no loop names none")
        for loop in [first, second] {
            loop.stop()
            loop.run()
            XCTAssertEqual(loop.liveHandleCount, 0)
        }
    }
}
