/// Memory a connection reads into.
///
/// A class, reference-counted, because a body fragment has to outlive the read that filled it: the bytes go
/// to the file writer without a copy, and the chunk is freed when the last holder (connection or writer)
/// lets go.
public final class ByteChunk: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let capacity: Int
    /// Takes the memory back when the chunk dies, instead of `free`; nil for chunks that own plain heap memory.
    private let recycler: (any ByteChunkRecycler)?

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        recycler = nil
    }

    /// A chunk over memory `recycler` lent out (`base` of `capacity` bytes, 16-byte aligned); it gets the memory
    /// back in `deinit`, on whichever thread drops the last reference.
    public init(lentMemory base: UnsafeMutableRawPointer, capacity: Int, recycler: any ByteChunkRecycler) {
        precondition(capacity > 0)
        self.base = base
        self.capacity = capacity
        self.recycler = recycler
    }

    /// A chunk holding a copy of `bytes` (tests, small bodies).
    public convenience init<C: Collection>(copying bytes: C) where C.Element == UInt8 {
        self.init(capacity: max(1, bytes.count))
        _ = UnsafeMutableRawBufferPointer(start: base, count: capacity).initializeMemory(as: UInt8.self, from: bytes)
    }

    deinit {
        if let recycler {
            recycler.recycle(base, capacity: capacity)
        } else {
            base.deallocate()
        }
    }

    public func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= capacity)
        return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }
}

/// Owner of memory that `ByteChunk(lentMemory:capacity:recycler:)` chunks borrow: a pool that keeps body buffers
/// whose pages are already mapped, so a long upload does not pay page faults, zeroing and unmapping for every
/// chunk (glibc returns freed 256 KiB blocks to the kernel). Called from any thread.
public protocol ByteChunkRecycler: AnyObject, Sendable {
    func recycle(_ base: UnsafeMutableRawPointer, capacity: Int)
}

/// Part of a request or response body: a range of a chunk. Holding the fragment keeps the chunk alive.
public struct BodyFragment: @unchecked Sendable {
    public let chunk: ByteChunk
    public let range: Range<Int>

    public init(chunk: ByteChunk, range: Range<Int>) {
        self.chunk = chunk
        self.range = range
    }

    public init(copying bytes: [UInt8]) {
        self.init(chunk: ByteChunk(copying: bytes), range: 0..<bytes.count)
    }

    public var count: Int { range.count }
    public var bytes: UnsafeRawBufferPointer { chunk.bytes(range) }
    public var array: [UInt8] { Array(bytes) }
}
