import Synchronization
import TusCore
import TusHTTP1

/// Body buffers of one loop, handed back and lent out again instead of freed and allocated.
///
/// Why: a body chunk (256 KiB while few uploads run) lives until its file write completes. Freed, glibc gives
/// blocks that size back to the kernel (mmap threshold, heap trimming), so the next chunk's first write into
/// each page faults, and the kernel zeroes and later unmaps it again: measured at ~14 % of a TLS upload's server
/// CPU. A chunk from here reuses pages that are already mapped. The last reference to a chunk may be dropped
/// on a threadpool thread (a digest job), hence the lock; it is taken twice per chunk, not per byte.
///
/// Bounded: at most `maxFreeBytes` wait here, and an idle loop's sweep frees them all (`trimIfIdle`), so
/// an idle server does not keep the memory of its last burst of uploads.
final class ByteChunkPool: ByteChunkRecycler {
    /// Addresses as integers: pointers are not `Sendable`, and the lock's state must be.
    private struct State {
        var free: [Int: [UInt]] = [:]
        var freeBytes = 0
        var lentSinceTrim = false
    }
    private let state = Mutex(State())
    let maxFreeBytes: Int

    init(maxFreeBytes: Int) {
        self.maxFreeBytes = maxFreeBytes
    }

    deinit {
        state.withLock { state in
            for address in state.free.values.joined() { UnsafeMutableRawPointer(bitPattern: address)?.deallocate() }
        }
    }

    /// A chunk of exactly `capacity` bytes, over recycled memory when some of that size is free.
    func chunk(capacity: Int) -> ByteChunk {
        let reused = state.withLock { state -> UInt? in
            state.lentSinceTrim = true
            guard let address = state.free[capacity]?.popLast() else { return nil }
            state.freeBytes -= capacity
            return address
        }
        let base =
            reused.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
            ?? UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        return ByteChunk(lentMemory: base, capacity: capacity, recycler: self)
    }

    func recycle(_ base: UnsafeMutableRawPointer, capacity: Int) {
        let address = UInt(bitPattern: base)
        let isKept = state.withLock { state -> Bool in
            guard state.freeBytes + capacity <= maxFreeBytes else { return false }
            state.free[capacity, default: []].append(address)
            state.freeBytes += capacity
            return true
        }
        if !isKept { base.deallocate() }
    }

    /// Frees every waiting buffer if nothing was lent since the previous call (the loop's sweep calls it).
    func trimIfIdle() {
        let released = state.withLock { state -> [UInt] in
            defer { state.lentSinceTrim = false }
            guard !state.lentSinceTrim, state.freeBytes > 0 else { return [] }
            let all = state.free.values.flatMap { $0 }
            state.free = [:]
            state.freeBytes = 0
            return all
        }
        for address in released { UnsafeMutableRawPointer(bitPattern: address)?.deallocate() }
    }

    var freeByteCount: Int { state.withLock { $0.freeBytes } }
}
