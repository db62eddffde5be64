import Synchronization
import XCTest

@testable import TusCore

/// A `LoopExecutor` that runs nothing: only its identity matters here.
private final class IdleExecutor: LoopExecutor, @unchecked Sendable {
    private final class Never: Cancellable { func cancel() {} }
    func execute(_ work: @escaping @Sendable () -> Void) {}
    func schedule(afterMilliseconds milliseconds: UInt64, _ work: @escaping () -> Void) -> any Cancellable { Never() }
    var inLoop: Bool { true }
    func offload(_ work: @escaping @Sendable () -> Void, completion: @escaping () -> Void) {}
}

private final class Counter { var value = 0 }

final class LoopLocalTests: XCTestCase {
    func testOneValuePerLoop() {
        let local = LoopLocal<Counter>()
        let first = IdleExecutor()
        let second = IdleExecutor()
        var made = 0
        let a = local.value(on: first) { made += 1; return Counter() }
        let again = local.value(on: first) { made += 1; return Counter() }
        let b = local.value(on: second) { made += 1; return Counter() }
        XCTAssert(a === again, "the same loop finds the same value")
        XCTAssert(a !== b, "another loop has its own")
        XCTAssertEqual(made, 2)
        XCTAssert(local[first] === a)
        XCTAssertEqual(local.values.count, 2)
        XCTAssert(local.removeValue(on: first) === a)
        XCTAssertNil(local[first])
        XCTAssertNil(local.removeValue(on: first))
        local.set(Counter(), on: first)
        XCTAssertNotNil(local[first])
        local.set(nil, on: first)
        XCTAssertNil(local[first])
    }

    /// The thread slot that spares a loop the mutex never hands out a value that was forgotten or replaced.
    func testTheThreadSlotFollowsRemovalAndReplacement() {
        let local = LoopLocal<Counter>()
        let loop = IdleExecutor()
        let first = local.value(on: loop) { Counter() }
        XCTAssert(local.value(on: loop) { Counter() } === first, "found again (through the slot)")
        local.removeValue(on: loop)
        XCTAssertNil(local[loop], "removed, though this thread's slot still points at it")
        let second = local.value(on: loop) { Counter() }
        XCTAssert(second !== first, "a new value after removal")
        let third = Counter()
        local.set(third, on: loop)
        XCTAssert(local[loop] === third)
        XCTAssert(local.value(on: loop) { Counter() } === third, "set replaces what the slot remembered")
        let other = IdleExecutor()
        XCTAssert(local.value(on: other) { Counter() } !== third, "another loop on the same thread has its own")
        XCTAssert(local.value(on: loop) { Counter() } === third)
    }

    /// A value is never found through a later object at the address of a dead loop, and dead loops' values go.
    func testADeadLoopsValueIsNotInherited() {
        let local = LoopLocal<Int>()
        let survivor = IdleExecutor()
        local.set(1, on: survivor)
        for round in 0..<1000 {
            do {
                let loop = IdleExecutor()
                XCTAssertNil(local[loop], "round \(round): a fresh loop starts empty")
                local.set(round, on: loop)
            }
        }
        local.set(2, on: survivor)
        XCTAssertEqual(local.values, [2], "values of dead loops are dropped at the next insert")
    }

    func testManyThreads() {
        let local = LoopLocal<Int>()
        let loops = (0..<8).map { _ in IdleExecutor() }
        let made = Atomic<Int>(0)
        DispatchQueueLess.concurrentPerform(iterations: 800) { index in
            let value = local.value(on: loops[index % loops.count]) {
                made.add(1, ordering: .relaxed)
                return index % loops.count
            }
            XCTAssertEqual(value, index % loops.count)
        }
        XCTAssertEqual(made.load(ordering: .relaxed), loops.count, "each loop's value is made once")
    }
}


/// `concurrentPerform` without Foundation: one thread per iteration batch.
private enum DispatchQueueLess {
    static func concurrentPerform(iterations: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let threads = 4
        var handles: [pthread_t] = []
        final class Job: @unchecked Sendable {
            let body: @Sendable (Int) -> Void
            let range: Range<Int>
            init(_ body: @escaping @Sendable (Int) -> Void, _ range: Range<Int>) {
                self.body = body
                self.range = range
            }
        }
        for thread in 0..<threads {
            let job = Job(body, (thread * iterations / threads)..<((thread + 1) * iterations / threads))
            var handle = pthread_t()
            pthread_create(&handle, nil, { raw in
                let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
                for index in job.range { job.body(index) }
                return nil
            }, Unmanaged.passRetained(job).toOpaque())
            handles.append(handle)
        }
        for handle in handles { pthread_join(handle, nil) }
    }
}

final class MonotonicClockTests: XCTestCase {
    func testNeverGoesBackAndAgreesWithItself() {
        var previous = MonotonicClock.nanoseconds
        for _ in 0..<1000 {
            let now = MonotonicClock.nanoseconds
            XCTAssertGreaterThanOrEqual(now, previous)
            previous = now
        }
        let milliseconds = MonotonicClock.milliseconds
        XCTAssertLessThanOrEqual(milliseconds, MonotonicClock.nanoseconds / 1_000_000)
        usleep(20_000)
        XCTAssertGreaterThanOrEqual(MonotonicClock.milliseconds - milliseconds, 19)
        XCTAssertEqual(MonotonicClock.seconds, Double(MonotonicClock.nanoseconds) / 1e9, accuracy: 0.01)
    }
}
