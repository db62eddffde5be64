/// An event loop as the layers above the loop see it: the HTTP handler contract, the protocol's upload engine
/// and every store take one, and none of them needs libuv to do so (tests drive them with a `ManualExecutor`).
/// A layer that issues libuv requests reaches the loop behind an executor through `TusLoop`'s typed
/// `LoopExecutor.eventLoop`, never by asking what the executor is.
public protocol LoopExecutor: AnyObject, Sendable {
    /// Runs `work` on this loop. Safe from any thread.
    func execute(_ work: @escaping @Sendable () -> Void)
    /// Runs `work` on this loop after `milliseconds`. Loop thread only.
    func schedule(afterMilliseconds milliseconds: UInt64, _ work: @escaping () -> Void) -> any Cancellable
    /// Whether the caller is on this loop's thread.
    var inLoop: Bool { get }
    /// Runs CPU-heavy `work` off the loop (a worker thread), then `completion` back on this loop. Loop
    /// thread only. `work` must not touch loop-confined state that the loop may use meanwhile.
    func offload(_ work: @escaping @Sendable () -> Void, completion: @escaping () -> Void)
}

public protocol Cancellable: AnyObject {
    func cancel()
}
