import Glibc

/// One value per loop, found through the loop's identity object (its `LoopExecutor`, or the `EventLoop`
/// itself): the one way a layer keeps something per loop (the libuv loop behind an executor, a loop's
/// connections), instead of each layer building a map of its own.
///
/// The identity object is held weakly and compared by identity, so a value is never found through a later
/// object that happens to reuse a dead one's address; values whose loop died are dropped at the next insert.
/// Lookups take a mutex: any thread may ask (a lock waiter on another loop, shutdown from the main thread).
public final class LoopLocal<Value>: @unchecked Sendable {
    private struct Entry {
        weak var loop: AnyObject?
        var value: Value
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Guarded by `mutex`.
    private var entries: [ObjectIdentifier: Entry] = [:]

    public init() {
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func locked<Result>(_ body: () throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// The value kept for `loop`, nil if none was set (or `loop` is not the object it was set for).
    public subscript(loop: AnyObject) -> Value? {
        locked {
            guard let entry = entries[ObjectIdentifier(loop)], entry.loop === loop else { return nil }
            return entry.value
        }
    }

    /// The value kept for `loop`, made by `make` (under the lock, once per loop) if there is none yet.
    public func value(on loop: AnyObject, orInsert make: () throws -> Value) rethrows -> Value {
        try locked {
            let key = ObjectIdentifier(loop)
            if let entry = entries[key], entry.loop === loop { return entry.value }
            dropDeadLoops()
            let value = try make()
            entries[key] = Entry(loop: loop, value: value)
            return value
        }
    }

    /// Keeps `value` for `loop`, replacing what was there; nil forgets it.
    public func set(_ value: Value?, on loop: AnyObject) {
        locked {
            dropDeadLoops()
            entries[ObjectIdentifier(loop)] = value.map { Entry(loop: loop, value: $0) }
        }
    }

    /// Forgets `loop`'s value and returns it.
    @discardableResult
    public func removeValue(on loop: AnyObject) -> Value? {
        locked {
            let key = ObjectIdentifier(loop)
            guard let entry = entries[key], entry.loop === loop else { return nil }
            entries[key] = nil
            return entry.value
        }
    }

    /// The values of every loop still alive (for work that spans loops: a failover, shutdown).
    public var values: [Value] {
        locked { entries.values.filter { $0.loop != nil }.map(\.value) }
    }

    private func dropDeadLoops() {
        entries = entries.filter { $0.value.loop != nil }
    }
}
