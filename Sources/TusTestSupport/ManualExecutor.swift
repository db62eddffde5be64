public import TusCore
import TusHTTP1
import Synchronization

/// A `LoopExecutor` driven by the test: `execute` queues work until `runPending()`, and `schedule` uses
/// virtual time that only `advance(byMilliseconds:)` moves. This makes cross-loop hand-offs (lock release
/// requests, grants) and timeouts deterministic. Single-threaded use; the mutex only satisfies `Sendable`.
private struct UncheckedCompletion: @unchecked Sendable {
    let completion: () -> Void
    init(_ completion: @escaping () -> Void) { self.completion = completion }
}

public final class ManualExecutor: LoopExecutor, @unchecked Sendable {
    private final class Timer: Cancellable {
        let deadline: UInt64
        let sequence: Int
        var work: (() -> Void)?
        init(deadline: UInt64, sequence: Int, work: @escaping () -> Void) {
            self.deadline = deadline
            self.sequence = sequence
            self.work = work
        }
        func cancel() { work = nil }
    }

    private let queue = Mutex<[@Sendable () -> Void]>([])
    private var timers: [Timer] = []
    private var sequence = 0
    public private(set) var nowMilliseconds: UInt64 = 0

    public init() {}

    public func execute(_ work: @escaping @Sendable () -> Void) {
        queue.withLock { $0.append(work) }
    }

    public func schedule(afterMilliseconds milliseconds: UInt64, _ work: @escaping () -> Void) -> any Cancellable {
        sequence += 1
        let timer = Timer(deadline: nowMilliseconds + milliseconds, sequence: sequence, work: work)
        timers.append(timer)
        return timer
    }

    public var inLoop: Bool { true }

    /// Runs `work` at once (there is no other thread) and queues `completion`, so tests see the same
    /// asynchrony as on a real loop: nothing completes until `runPending()`.
    public func offload(_ work: @escaping @Sendable () -> Void, completion: @escaping () -> Void) {
        work()
        let box = UncheckedCompletion(completion)
        execute { box.completion() }
    }

    /// Timers scheduled and neither fired nor cancelled.
    public var activeTimerCount: Int { timers.filter { $0.work != nil }.count }

    /// Runs queued work, including work queued while running, until the queue is empty.
    public func runPending() {
        while true {
            let batch = queue.withLock { queue -> [@Sendable () -> Void] in
                defer { queue.removeAll() }
                return queue
            }
            if batch.isEmpty { return }
            for work in batch { work() }
        }
    }

    /// Moves virtual time forward, firing due timers in deadline order (running queued work between them).
    public func advance(byMilliseconds milliseconds: UInt64) {
        runPending()
        let target = nowMilliseconds + milliseconds
        while let next = timers.filter({ $0.work != nil && $0.deadline <= target })
            .min(by: { ($0.deadline, $0.sequence) < ($1.deadline, $1.sequence) })
        {
            nowMilliseconds = next.deadline
            let work = next.work
            next.work = nil
            work?()
            runPending()
        }
        timers.removeAll { $0.work == nil }
        nowMilliseconds = target
    }
}
