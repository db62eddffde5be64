internal import COpenSSL
import Glibc
import Synchronization

/// Hashes a request body while it streams in, so a checksum never costs a second read of the data.
/// Wraps one `EVP_MD_CTX` (`EVP_DigestInit_ex` / `EVP_DigestUpdate` / `EVP_DigestFinal_ex`), freed in `deinit`.
/// Not thread-safe: one connection feeds it.
public final class StreamingDigest {
    public let algorithm: DigestAlgorithm
    private let context: OpaquePointer
    private var isFinalized = false

    public init(_ algorithm: DigestAlgorithm) {
        self.algorithm = algorithm
        guard let context = EVP_MD_CTX_new() else { preconditionFailure("EVP_MD_CTX_new: out of memory") }
        // Failure here means OpenSSL itself is broken (the methods are built in), which is a bug, not input.
        guard EVP_DigestInit_ex(context, algorithm.evpMethod, nil) == 1 else {
            EVP_MD_CTX_free(context)
            preconditionFailure("EVP_DigestInit_ex failed for \(algorithm.rawValue)")
        }
        self.context = context
    }

    deinit {
        EVP_MD_CTX_free(context)
    }

    /// Calls `EVP_DigestUpdate` on the caller's bytes in place: no copy.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        precondition(!isFinalized, "StreamingDigest.update after finalize")
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        guard EVP_DigestUpdate(context, base, bytes.count) == 1 else {
            preconditionFailure("EVP_DigestUpdate failed")
        }
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Why reading a file range back for `update(readingFrom:)` stopped.
    public enum FileReadError: Error, Equatable, Sendable {
        /// The file ended before the range did (truncated meanwhile).
        case endOfFile
        /// pread(2) failed with this errno.
        case failed(errorNumber: Int32)
    }

    /// Hashes `count` bytes of an open, readable file from `offset`, read with pread(2): bytes that were spliced into
    /// the file (never in user memory) are hashed from the page cache. Blocks, so call it off the loop thread.
    /// pread rather than mmap: a mapping of a file that another process truncates (an instance that took the upload
    /// over after a lost lease) faults with SIGBUS, which would kill the server; a read just comes back short. The
    /// buffer fits the CPU's L2 cache, so the extra copy is small beside the hash, and comes from a pool: one per
    /// thread reading at the same time (the threadpool's size), not one per upload.
    public func update(readingFrom descriptor: Int32, offset: Int64, count: Int64) throws(FileReadError) {
        let buffer = ReadBufferPool.shared.take()
        defer { ReadBufferPool.shared.give(buffer) }
        try update(readingFrom: descriptor, offset: offset, count: count, through: buffer.bytes)
    }

    func update(
        readingFrom descriptor: Int32, offset: Int64, count: Int64, through buffer: UnsafeMutableRawBufferPointer
    ) throws(FileReadError) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { preconditionFailure("empty read buffer") }
        var position = offset
        let end = offset + count
        while position < end {
            let read = pread(descriptor, base, Int(min(Int64(buffer.count), end - position)), off_t(position))
            if read < 0 {
                if errno == EINTR { continue }
                throw .failed(errorNumber: errno)
            }
            if read == 0 { throw .endOfFile }
            update(UnsafeRawBufferPointer(start: base, count: read))
            position += Int64(read)
        }
    }

    /// `EVP_DigestFinal_ex`. Callable once: the context is spent afterwards.
    public func finalize() -> [UInt8] {
        precondition(!isFinalized, "StreamingDigest.finalize called twice")
        isFinalized = true
        var length: UInt32 = 0
        let digest = [UInt8](unsafeUninitializedCapacity: Int(EVP_MAX_MD_SIZE)) { buffer, initialized in
            guard EVP_DigestFinal_ex(context, buffer.baseAddress, &length) == 1 else {
                preconditionFailure("EVP_DigestFinal_ex failed")
            }
            initialized = Int(length)
        }
        return digest
    }

    /// One-shot convenience for small inputs and tests.
    public static func digest(_ algorithm: DigestAlgorithm, of bytes: [UInt8]) -> [UInt8] {
        let digest = StreamingDigest(algorithm)
        digest.update(bytes)
        return digest.finalize()
    }
}

/// Read-back buffers for `StreamingDigest.update(readingFrom:)`, kept for reuse: at most as many as threads ever read
/// at once. Reused rather than allocated per call: 256 KiB is above glibc's mmap threshold, so each fresh one would
/// cost an mmap, page faults and an munmap.
private final class ReadBufferPool: Sendable {
    final class Buffer: @unchecked Sendable {
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 64)
        deinit { bytes.deallocate() }
    }

    static let shared = ReadBufferPool()
    private let free = Mutex<[Buffer]>([])

    func take() -> Buffer { free.withLock { $0.popLast() } ?? Buffer() }
    func give(_ buffer: Buffer) { free.withLock { $0.append(buffer) } }
}
