public import TusCore
import TusHTTP1

/// Exclusive access to one upload, held by one request at a time (a PATCH, a DELETE, a creation-with-upload).
public protocol UploadLock: AnyObject, Sendable {
    /// Unique per acquisition. A shared state store checks it before it moves an offset, so a holder whose
    /// lease lapsed (and whose upload another instance took over) can never move it.
    var token: String { get }
    /// Hands the upload to the next waiter, if any. Call once, from the loop that acquired the lock.
    func release()
    /// True once the holder's lease turned out to be gone (a shared locker's lease that lapsed while its service was
    /// unreachable, or was lost in a failover), read when the holder is told to let go: then it was no other
    /// request that asked, and the client should retry soon (503) rather than give the upload up (400).
    var isLeaseLost: Bool { get }
}

extension UploadLock {
    /// A lock held in this process (`MemoryLocker`, tests) has no lease to lose.
    public var isLeaseLost: Bool { false }
}

public enum UploadLockError: Error, Sendable, Equatable {
    /// The holder did not release within the timeout (its writes are stuck).
    case timedOut
    /// The lock service cannot be reached (a shared locker whose Redis is down): `503`, not `423`.
    case unavailable(String)
}

/// Serializes writers per upload across every loop, with release on request (tusd `Locker`:
/// `Lock(ctx, requestRelease)`).
///
/// A request that finds the upload locked asks the holder to give it up (a dead client's PATCH can
/// otherwise keep an upload for as long as the read timeout) and waits, bounded by a timeout.
public protocol UploadLocker: AnyObject, Sendable {
    /// Acquires the lock for `id`.
    ///
    /// - `executor`: the caller's loop. `completion` runs there (possibly synchronously, before `lock`
    ///   returns, when the lock is free), and the timeout timer is scheduled there, so call on that loop.
    /// - `onReleaseRequested`: called on `executor` (through `execute`) while this caller holds the lock and
    ///   another request wants it. The holder should stop, persist, and `release()` soon. It may be called
    ///   more than once.
    /// - Waiters are served in arrival order; if more are waiting, each new holder is asked to release too.
    func lock(
        id: String, executor: any LoopExecutor, timeoutMilliseconds: UInt64,
        onReleaseRequested: @escaping () -> Void,
        completion: @escaping (Result<any UploadLock, UploadLockError>) -> Void)

    /// Acquires the lock only if nobody holds it (the expiry sweep must not wait for, or disturb, writers).
    /// Completion gets nil when it is held; it runs on `executor`, possibly synchronously.
    func tryLock(
        id: String, executor: any LoopExecutor, onReleaseRequested: @escaping () -> Void,
        completion: @escaping (Result<(any UploadLock)?, UploadLockError>) -> Void)
}
