import Glibc
import Synchronization

/// One value per loop, found through the loop's identity object (its `LoopExecutor`, or the `EventLoop`
/// itself): the one way a layer keeps something per loop (the libuv loop behind an executor, a loop's outbound
/// connection pool, its metrics), instead of each layer building a map or a thread slot of its own.
///
/// The identity object is held weakly and compared by identity, so a value is never found through a later
/// object that happens to reuse a dead one's address; values whose loop died are dropped at the next insert.
/// Any thread may ask (a lock waiter on another loop, a scrape, shutdown from the main thread) and pays one
/// mutex; a loop asking for its own value, as it does on every request, finds it in a thread slot without one.
public final class LoopLocal<Value>: @unchecked Sendable {
    private final class Entry {
        weak var loop: AnyObject?
        let value: Value
        /// Set under the mutex when the value is forgotten, so that a thread slot still pointing here misses.
        let isRemoved = Atomic<Bool>(false)

        init(loop: AnyObject, value: Value) {
            self.loop = loop
            self.value = value
        }
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Guarded by `mutex`.
    private var entries: [ObjectIdentifier: Entry] = [:]
    /// The entry this thread found last, retained by the slot (released when replaced or when the thread ends).
    private var slot = pthread_key_t()

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_key_create(&slot) { raw in
            if let raw { Unmanaged<AnyObject>.fromOpaque(raw).release() }
        }
    }

    deinit {
        if let raw = pthread_getspecific(slot) { Unmanaged<AnyObject>.fromOpaque(raw).release() }
        pthread_key_delete(slot)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func locked<Result>(_ body: () throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    private func cached(for loop: AnyObject) -> Entry? {
        guard let raw = pthread_getspecific(slot) else { return nil }
        let entry = Unmanaged<Entry>.fromOpaque(raw).takeUnretainedValue()
        guard entry.loop === loop, !entry.isRemoved.load(ordering: .acquiring) else { return nil }
        return entry
    }

    private func remember(_ entry: Entry) {
        let previous = pthread_getspecific(slot)
        pthread_setspecific(slot, Unmanaged.passRetained(entry as AnyObject).toOpaque())
        if let previous { Unmanaged<AnyObject>.fromOpaque(previous).release() }
    }

    /// Under the mutex.
    private func liveEntry(for loop: AnyObject) -> Entry? {
        guard let entry = entries[ObjectIdentifier(loop)], entry.loop === loop else { return nil }
        return entry
    }

    /// The value kept for `loop`, nil if none was set (or `loop` is not the object it was set for).
    public subscript(loop: AnyObject) -> Value? {
        if let entry = cached(for: loop) { return entry.value }
        return locked { liveEntry(for: loop)?.value }
    }

    /// The value kept for `loop`, made by `make` (under the lock, once per loop) if there is none yet.
    public func value(on loop: AnyObject, orInsert make: () throws -> Value) rethrows -> Value {
        if let entry = cached(for: loop) { return entry.value }
        let entry = try locked {
            if let entry = liveEntry(for: loop) { return entry }
            dropDeadLoops()
            let entry = Entry(loop: loop, value: try make())
            entries[ObjectIdentifier(loop)] = entry
            return entry
        }
        remember(entry)
        return entry.value
    }

    /// Keeps `value` for `loop`, replacing what was there; nil forgets it.
    public func set(_ value: Value?, on loop: AnyObject) {
        locked {
            dropDeadLoops()
            entries[ObjectIdentifier(loop)]?.isRemoved.store(true, ordering: .releasing)
            entries[ObjectIdentifier(loop)] = value.map { Entry(loop: loop, value: $0) }
        }
    }

    /// Forgets `loop`'s value and returns it.
    @discardableResult
    public func removeValue(on loop: AnyObject) -> Value? {
        locked {
            guard let entry = liveEntry(for: loop) else { return nil }
            entry.isRemoved.store(true, ordering: .releasing)
            entries[ObjectIdentifier(loop)] = nil
            return entry.value
        }
    }

    /// The values of every loop still alive (for work that spans loops: a scrape, a failover, shutdown).
    public var values: [Value] {
        locked { entries.values.filter { $0.loop != nil }.map(\.value) }
    }

    private func dropDeadLoops() {
        for (key, entry) in entries where entry.loop == nil {
            entry.isRemoved.store(true, ordering: .releasing)
            entries[key] = nil
        }
    }
}
