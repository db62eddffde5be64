import Dispatch
import Synchronization
public import TusHTTPServer
public import TusLoop

/// A real `EventLoop` on its own thread, driven step by step from the test thread: each `run` hands a closure
/// to the loop and blocks until it reports, so tests read top to bottom while every store call still happens
/// on a loop thread with real threadpool I/O.
public final class LoopDriver {
    public let loop: EventLoop
    /// The executor stores are given, as the server gives them its loops.
    public let executor: LoopExecutorAdapter

    public init() throws {
        loop = try EventLoop()
        executor = LoopExecutorAdapter(loop)
        loop.runOnNewThread(name: "store-tests")
    }

    /// Runs `body` on the loop thread and returns what it passes to its callback. The 60 s bound only catches a
    /// hang: under a sanitizer on a busy 2-core machine an honest step (megabytes of spill files) can take 10 s.
    public func run<T>(
        file: StaticString = #filePath, line: UInt = #line, _ body: @escaping (_ done: @escaping (T) -> Void) -> Void
    ) -> T {
        let outcome = Outcome<T>()
        let work = UncheckedBox(body)
        loop.execute {
            precondition(EventLoop.current != nil)
            work.value { value in outcome.deliver(value) }
        }
        guard let value = outcome.wait(seconds: 60) else {
            fatalError("loop step timed out (\(file):\(line))")
        }
        return value
    }

    /// Stops the loop, waits for its thread and checks nothing was left open.
    /// Returns how many handles the loop had to close itself (tests expect 0).
    ///
    /// A stopping loop runs until its last active handle goes, so a handle a test left running (a lock's lease
    /// renewal, a repeating timer) would keep it, and the test process, alive until CI's own limit: after 60 s
    /// the process stops here instead, naming the test.
    @discardableResult
    public func shutDown(file: StaticString = #filePath, line: UInt = #line) -> Int {
        let stopped = StopFlag()
        let place = "\(file):\(line)"
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(60)) {
            guard !stopped.isSet.load(ordering: .acquiring) else { return }
            fatalError("the loop did not stop within 60 s: a handle is still active (\(place))")
        }
        loop.stop()
        loop.join()
        stopped.isSet.store(true, ordering: .releasing)
        return loop.handlesClosedAtShutdown
    }
}

private final class StopFlag: Sendable {
    let isSet = Atomic<Bool>(false)
}

public struct UncheckedBox<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}

/// One value handed from the loop thread to the waiting test thread.
private final class Outcome<T>: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let slot = Mutex<UncheckedBox<T>?>(nil)

    func deliver(_ value: T) {
        slot.withLock { $0 = UncheckedBox(value) }
        semaphore.signal()
    }

    func wait(seconds: Int) -> T? {
        guard semaphore.wait(timeout: .now() + .seconds(seconds)) == .success else { return nil }
        return slot.withLock { $0?.value }
    }
}

