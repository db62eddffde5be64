public import TusCore
import TusHTTP1
import Synchronization

/// The in-process `UploadLocker`.
///
/// Synchronization boundary: the lock table is shared by every loop thread and lives behind one `Mutex`.
/// Every decision (who holds, who waits, whether a waiter already timed out) is made under that mutex; every
/// callback (release requests, grants, timeouts) runs outside it, on the loop that owns the callback,
/// reached through `LoopExecutor.execute`. Callbacks are boxed as `@unchecked Sendable` because they cross
/// threads only to be invoked on their own loop.
public final class MemoryLocker: UploadLocker {
    /// A closure that may only be called on `executor`'s thread.
    private struct LoopBound<T>: @unchecked Sendable {
        let executor: any LoopExecutor
        let value: T
    }

    private final class Waiter: @unchecked Sendable {
        enum Status { case waiting, granted, timedOut }
        let token: UInt64
        let onReleaseRequested: LoopBound<() -> Void>
        let completion: LoopBound<(Result<any UploadLock, UploadLockError>) -> Void>
        /// Mutex-guarded.
        var status = Status.waiting
        /// Touched only on the waiter's loop.
        var timer: (any Cancellable)?

        init(
            token: UInt64, onReleaseRequested: LoopBound<() -> Void>,
            completion: LoopBound<(Result<any UploadLock, UploadLockError>) -> Void>
        ) {
            self.token = token
            self.onReleaseRequested = onReleaseRequested
            self.completion = completion
        }
    }

    private struct Entry {
        var holderToken: UInt64
        var holderReleaseRequest: LoopBound<() -> Void>
        var waiters: [Waiter] = []
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var nextToken: UInt64 = 1
    }

    private let state = Mutex(State())

    public init() {}

    /// Ids currently held (tests, diagnostics).
    public var heldIDs: [String] { state.withLock { Array($0.entries.keys).sorted() } }

    public func lock(
        id: String, executor: any LoopExecutor, timeoutMilliseconds: UInt64,
        onReleaseRequested: @escaping () -> Void,
        completion: @escaping (Result<any UploadLock, UploadLockError>) -> Void
    ) {
        let releaseBox = LoopBound(executor: executor, value: onReleaseRequested)
        enum Outcome { case acquired(UInt64), waiting(Waiter, LoopBound<() -> Void>) }
        let outcome: Outcome = state.withLock { state in
            let token = state.nextToken
            state.nextToken += 1
            guard var entry = state.entries[id] else {
                state.entries[id] = Entry(holderToken: token, holderReleaseRequest: releaseBox)
                return .acquired(token)
            }
            let waiter = Waiter(
                token: token, onReleaseRequested: releaseBox,
                completion: LoopBound(executor: executor, value: completion))
            entry.waiters.append(waiter)
            state.entries[id] = entry
            return .waiting(waiter, entry.holderReleaseRequest)
        }
        switch outcome {
        case .acquired(let token):
            completion(.success(Handle(locker: self, id: id, token: token)))
        case .waiting(let waiter, let holderRelease):
            waiter.timer = executor.schedule(afterMilliseconds: timeoutMilliseconds) { [weak self] in
                self?.timeOut(waiter, id: id)
            }
            Self.invoke(holderRelease)
        }
    }

    public func tryLock(
        id: String, executor: any LoopExecutor, onReleaseRequested: @escaping () -> Void,
        completion: @escaping (Result<(any UploadLock)?, UploadLockError>) -> Void
    ) {
        completion(.success(tryLock(id: id, executor: executor, onReleaseRequested: onReleaseRequested)))
    }

    /// In-process, so it can answer at once.
    public func tryLock(
        id: String, executor: any LoopExecutor, onReleaseRequested: @escaping () -> Void
    ) -> (any UploadLock)? {
        let token: UInt64? = state.withLock { state in
            guard state.entries[id] == nil else { return nil }
            let token = state.nextToken
            state.nextToken += 1
            state.entries[id] = Entry(
                holderToken: token, holderReleaseRequest: LoopBound(executor: executor, value: onReleaseRequested))
            return token
        }
        return token.map { Handle(locker: self, id: id, token: $0) }
    }

    private static func invoke(_ box: LoopBound<() -> Void>) {
        let boxed = box
        box.executor.execute { boxed.value() }
    }

    private func timeOut(_ waiter: Waiter, id: String) {
        let timedOut: Bool = state.withLock { state in
            guard waiter.status == .waiting, var entry = state.entries[id] else { return false }
            waiter.status = .timedOut
            entry.waiters.removeAll { $0 === waiter }
            state.entries[id] = entry
            return true
        }
        waiter.timer = nil
        if timedOut { waiter.completion.value(.failure(.timedOut)) }
    }

    fileprivate func release(id: String, token: UInt64) {
        let next: (Waiter, askRelease: Bool)? = state.withLock { state in
            guard var entry = state.entries[id], entry.holderToken == token else {
                preconditionFailure("releasing a lock that is not held: \(id)")
            }
            guard !entry.waiters.isEmpty else {
                state.entries[id] = nil
                return nil
            }
            let waiter = entry.waiters.removeFirst()
            waiter.status = .granted
            entry.holderToken = waiter.token
            entry.holderReleaseRequest = waiter.onReleaseRequested
            state.entries[id] = entry
            return (waiter, !entry.waiters.isEmpty)
        }
        guard let (waiter, askRelease) = next else { return }
        let handle = Handle(locker: self, id: id, token: waiter.token)
        waiter.completion.executor.execute {
            waiter.timer?.cancel()
            waiter.timer = nil
            waiter.completion.value(.success(handle))
        }
        if askRelease { Self.invoke(waiter.onReleaseRequested) }
    }

    private final class Handle: UploadLock {
        let locker: MemoryLocker
        let id: String
        let serial: UInt64
        var token: String { String(serial) }
        private let released = Atomic(false)

        init(locker: MemoryLocker, id: String, token: UInt64) {
            self.locker = locker
            self.id = id
            self.serial = token
        }

        func release() {
            guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
            locker.release(id: id, token: serial)
        }
    }
}
