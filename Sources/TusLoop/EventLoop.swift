internal import CLibuv
import Glibc
import Synchronization
public import TusCore

/// Created once per process; holds the loop `run()` is running on each thread.
private let currentLoopKey: pthread_key_t = {
    var key = pthread_key_t()
    let status = pthread_key_create(&key, nil)
    precondition(status == 0, "pthread_key_create failed")
    return key
}()

/// One libuv loop (`uv_loop_t`) plus the `uv_async_t` that lets other threads hand it work.
///
/// The loop object is shared across threads only through `execute(_:)` and `stop()`; everything else belongs to
/// the loop thread (see the ownership rules in TusLoop.swift), which is why it is `@unchecked Sendable`.
public final class EventLoop: @unchecked Sendable {
    let loop: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    /// A pthread mutex rather than Synchronization.Mutex: the latter's raw futexes are invisible to TSan, which
    /// then reports false races in every program using `execute`.
    private let pendingLock: UnsafeMutablePointer<pthread_mutex_t>
    private var pending = PendingWork()  // guarded by pendingLock
    private let runState = Atomic<Int>(RunState.notStarted)
    private var thread: pthread_t?

    // Loop thread only.
    private var spareJobs: [@Sendable () -> Void] = []
    private var isWakeupUnreferenced = false
    /// uv_write_t requests are recycled so steady-state writes allocate nothing here.
    var writeRequestPool: [WriteRequest] = []

    /// Handles `run()` had to close itself because their owners left them open; tests expect 0.
    public private(set) var handlesClosedAtShutdown = 0

    private struct PendingWork {
        var jobs: [@Sendable () -> Void] = []
        var isWakeupSignalled = false
        var isStopRequested = false
        var isWakeupClosed = false
    }

    private enum RunState {
        static let notStarted = 0
        static let running = 1
        static let finished = 2
    }

    /// `uv_loop_init` on a heap `uv_loop_t`, plus `uv_async_init` for `execute(_:)`.
    public init() throws {
        let loop = UnsafeMutablePointer<uv_loop_t>.allocate(capacity: 1)
        let status = uv_loop_init(loop)
        guard status == 0 else {
            loop.deallocate()
            throw UVError(code: status)
        }
        let wakeup = UnsafeMutablePointer<uv_async_t>.allocate(capacity: 1)
        let asyncStatus = uv_async_init(loop, wakeup, wakeupCallback)
        guard asyncStatus == 0 else {
            uv_loop_close(loop)
            loop.deallocate()
            wakeup.deallocate()
            throw UVError(code: asyncStatus)
        }
        self.loop = loop
        self.wakeup = wakeup
        pendingLock = .allocate(capacity: 1)
        pthread_mutex_init(pendingLock, nil)
        // Unretained: the loop object outlives both; handles retain the EventLoop, run() keeps it alive.
        let opaqueSelf = Unmanaged.passUnretained(self).toOpaque()
        loop.pointee.data = opaqueSelf
        wakeup.pointee.data = opaqueSelf
    }

    deinit {
        // Handles retain their loop, so none can be open here; a loop that never ran still owns its async.
        if runState.load(ordering: .acquiring) == RunState.notStarted {
            shutDown()
        }
        loop.deallocate()
        wakeup.deallocate()
        pthread_mutex_destroy(pendingLock)
        pendingLock.deallocate()
    }

    private func withPendingLock<Result>(_ body: (inout PendingWork) -> Result) -> Result {
        pthread_mutex_lock(pendingLock)
        defer { pthread_mutex_unlock(pendingLock) }
        return body(&pending)
    }

    /// Recovers the Swift loop from a `uv_loop_t` in C callbacks.
    @inline(__always)
    static func from(_ loop: UnsafeMutablePointer<uv_loop_t>) -> EventLoop {
        Unmanaged<EventLoop>.fromOpaque(loop.pointee.data).takeUnretainedValue()
    }

    /// The loop running on the calling thread (a pthread key), nil off-loop.
    public static var current: EventLoop? {
        guard let pointer = pthread_getspecific(currentLoopKey) else { return nil }
        return Unmanaged<EventLoop>.fromOpaque(pointer).takeUnretainedValue()
    }

    public var inLoop: Bool {
        pthread_getspecific(currentLoopKey) == Unmanaged.passUnretained(self).toOpaque()
    }

    /// Before `run()` the creating thread may set handles up (and inspect the loop after it); while it runs only
    /// the loop thread may touch them.
    @inline(__always)
    func assertOnLoopThread(_ function: StaticString = #function) {
        assert(
            inLoop || runState.load(ordering: .relaxed) != RunState.running,
            "TusLoop: \(function) called off the loop thread")
    }

    /// Runs the loop on the calling thread until `stop()` was called and no handle or request is active; then
    /// closes what is still open (inactive handles, counted in `handlesClosedAtShutdown`) and the loop itself.
    public func run() {
        let (exchanged, _) = runState.compareExchange(
            expected: RunState.notStarted, desired: RunState.running, ordering: .acquiringAndReleasing)
        precondition(exchanged, "EventLoop.run() called twice")
        let previous = pthread_getspecific(currentLoopKey)
        pthread_setspecific(currentLoopKey, Unmanaged.passUnretained(self).toOpaque())
        uv_run(loop, UV_RUN_DEFAULT)
        shutDown()
        pthread_setspecific(currentLoopKey, previous)
        runState.store(RunState.finished, ordering: .releasing)
    }

    private func shutDown() {
        let lateJobs = withPendingLock { state in
            state.isWakeupClosed = true
            let jobs = state.jobs
            state.jobs = []
            return jobs
        }
        for job in lateJobs { job() }
        var attempts = 0
        repeat {
            closeLeftoverHandles()
            uv_run(loop, UV_RUN_DEFAULT)
            attempts += 1
            precondition(attempts < 100, "EventLoop: handles keep reopening during shutdown")
        } while uv_loop_close(loop) == UV_EBUSY.rawValue
    }

    private func closeLeftoverHandles() {
        var handles: [UnsafeMutablePointer<uv_handle_t>] = []
        withUnsafeMutablePointer(to: &handles) { uv_walk(loop, collectHandle, $0) }
        let wakeupHandle = CLibuv_async_as_handle(wakeup)
        for handle in handles where uv_is_closing(handle) == 0 {
            if handle == wakeupHandle {
                uv_close(handle, nil)  // its memory is freed in deinit
            } else if let data = handle.pointee.data,
                let owner = Unmanaged<AnyObject>.fromOpaque(data).takeUnretainedValue() as? any LoopOwnedHandle
            {
                handlesClosedAtShutdown += 1
                owner.closeForLoopShutdown()
            } else {
                handlesClosedAtShutdown += 1
                uv_close(handle, nil)
            }
        }
    }

    /// Starts a pthread (default stack size) that runs `run()`; `name` is cut to the 15 bytes Linux keeps.
    public func runOnNewThread(name: String) {
        precondition(thread == nil, "EventLoop.runOnNewThread called twice")
        let start = Unmanaged.passRetained(ThreadStart(loop: self, name: name)).toOpaque()
        var newThread = pthread_t()
        let status = pthread_create(
            &newThread, nil,
            { argument in
                let start = Unmanaged<ThreadStart>.fromOpaque(argument!).takeRetainedValue()
                CLibuv_set_current_thread_name(start.name)  // the kernel keeps the first 15 bytes
                start.loop.run()
                return nil
            }, start)
        precondition(status == 0, "pthread_create failed: \(status)")
        thread = newThread
    }

    /// Waits for the thread started by `runOnNewThread(name:)` to end.
    public func join() {
        guard let thread else { return }
        pthread_join(thread, nil)
        self.thread = nil
    }

    /// Thread-safe. Runs `work` on the loop thread soon, in submission order. Wakeups are coalesced: one
    /// `uv_async_send` per batch. Work submitted after the loop finished is dropped.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        withPendingLock { state in
            guard !state.isWakeupClosed else { return }
            state.jobs.append(work)
            if !state.isWakeupSignalled {
                state.isWakeupSignalled = true
                uv_async_send(wakeup)  // under the lock so it never races with the close of `wakeup`
            }
        }
    }

    /// Thread-safe. From now on the internal async no longer keeps the loop alive: `run()` returns as soon as
    /// no handle or request is active (callers close their own handles first, or in response).
    public func stop() {
        withPendingLock { state in
            state.isStopRequested = true
            if !state.isWakeupClosed && !state.isWakeupSignalled {
                state.isWakeupSignalled = true
                uv_async_send(wakeup)
            }
        }
    }

    fileprivate func runPendingWork() {
        let spare = spareJobs
        spareJobs = []
        let (jobs, isStopRequested) = withPendingLock { state in
            let jobs = state.jobs
            state.jobs = spare
            state.isWakeupSignalled = false
            return (jobs, state.isStopRequested)
        }
        for job in jobs { job() }
        var emptied = jobs
        emptied.removeAll(keepingCapacity: true)
        spareJobs = emptied
        if isStopRequested && !isWakeupUnreferenced {
            isWakeupUnreferenced = true
            uv_unref(CLibuv_async_as_handle(wakeup))
        }
    }

    /// Loop thread. One-shot timer that closes itself after firing (or when stopped).
    @discardableResult
    public func schedule(afterMilliseconds delay: UInt64, _ work: @escaping () -> Void) -> Timer {
        let timer = Timer(loop: self)
        timer.closesAfterFiring = true
        timer.start(afterMilliseconds: delay, work)
        return timer
    }

    /// `uv_now`: the loop's cached clock, updated once per iteration.
    public var nowMilliseconds: UInt64 {
        uv_now(loop)
    }

    /// Handles still registered with the loop (closing ones included, the internal async excluded); 0 once
    /// `run()` has finished.
    public var liveHandleCount: Int {
        assertOnLoopThread()
        guard runState.load(ordering: .acquiring) != RunState.finished else { return 0 }
        var handles: [UnsafeMutablePointer<uv_handle_t>] = []
        withUnsafeMutablePointer(to: &handles) { uv_walk(loop, collectHandle, $0) }
        let wakeupHandle = CLibuv_async_as_handle(wakeup)
        return handles.count { $0 != wakeupHandle }
    }

    // MARK: write request pool

    func dequeueWriteRequest() -> WriteRequest {
        writeRequestPool.popLast() ?? WriteRequest()
    }

    func recycle(_ request: WriteRequest) {
        request.completion = nil
        request.owner = nil
        if writeRequestPool.count < 256 {
            writeRequestPool.append(request)
        }
    }
}

private final class ThreadStart {
    let loop: EventLoop
    let name: String

    init(loop: EventLoop, name: String) {
        self.loop = loop
        self.name = name
    }
}

private func wakeupCallback(_ handle: UnsafeMutablePointer<uv_async_t>?) {
    Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue().runPendingWork()
}

private func collectHandle(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ context: UnsafeMutableRawPointer?) {
    context!.assumingMemoryBound(to: [UnsafeMutablePointer<uv_handle_t>].self).pointee.append(handle!)
}

/// Held weakly: the executor keeps its loop alive, this map must not (an executor's entry lingers until the next
/// `bind` after the executor is gone, and would otherwise keep a stopped loop's memory that long).
private struct WeakEventLoop {
    weak var loop: EventLoop?
}

extension EventLoop {
    /// The loop behind each executor that runs its work on one (`bind(_:)`).
    fileprivate static let executors = LoopLocal<WeakEventLoop>()

    /// Makes this loop `executor.eventLoop`: called by an executor that runs its work here, once.
    public func bind(_ executor: any LoopExecutor) {
        Self.executors.set(WeakEventLoop(loop: self), on: executor)
    }
}

extension LoopExecutor {
    /// The loop a store or client issues its libuv requests on, named by the executor the caller passed: typed,
    /// without asking what the executor is or which loop the current thread happens to run. Nil for an executor
    /// that runs no libuv loop (a test's `ManualExecutor`).
    public var boundEventLoop: EventLoop? { EventLoop.executors[self]?.loop }

    /// `boundEventLoop` for the layers that cannot work without libuv (file, S3 and Redis stores): wiring one of
    /// them to an executor without a loop is a bug.
    public var eventLoop: EventLoop {
        guard let loop = boundEventLoop else {
            preconditionFailure("\(type(of: self)) runs no libuv loop; this store needs one (bind it with EventLoop.bind)")
        }
        return loop
    }
}
