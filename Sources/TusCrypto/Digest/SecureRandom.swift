#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Unpredictable bytes from the kernel's CSPRNG, so upload IDs cannot be guessed.
///
/// `arc4random_buf` is glibc's (2.36) and Darwin's wrapper of `getrandom(2)`, as Go's `crypto/rand` reads it for
/// tusd: one system call per request, whatever its size. Not OpenSSL's `RAND_bytes`: its first call on each thread
/// builds OpenSSL's DRBGs and fetches their ciphers, which loads the default provider's algorithm tables, about
/// 250 KiB of private memory that a server with no TLS and no checksums would otherwise pay for on its first upload
/// (issue 19). `arc4random_buf` cannot fail: it aborts where the kernel gives no randomness, and handing out
/// predictable IDs would be worse than stopping.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0, "SecureRandom.bytes: bad count \(count)")
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress, count > 0 { arc4random_buf(base, count) }
            initialized = count
        }
    }

    /// 128 random bits as 32 lowercase hex chars: URL-safe upload IDs.
    ///
    /// From the calling thread's `RandomPool`: one `getrandom(2)` per 32 ids instead of one per id (a system call
    /// per creation was 2-3 % of a POST's CPU, bench/results/2026-12-07-post).
    public static func uploadID() -> String {
        let pool = RandomPool.current
        return String(unsafeUninitializedCapacity: 32) { text in
            pool.take(16) { random in
                for index in 0..<16 {
                    text[2 * index] = Hex.digit(random[index] >> 4)
                    text[2 * index + 1] = Hex.digit(random[index] & 0x0F)
                }
            }
            return 32
        }
    }
}

/// One thread's reserve of kernel random bytes, refilled by one `arc4random_buf` when spent. Each byte is handed
/// out once and wiped as it is (a later reader of the process's memory finds no past id's bytes here); the rest
/// is as unpredictable as any getrandom output, since nothing but the kernel decides it. Per thread, so that no
/// lock is taken: the server's loops and workers live as long as the process.
final class RandomPool {
    private static let size = 512
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: RandomPool.size, alignment: 16)
    private var next = RandomPool.size

    deinit {
        memset(buffer.baseAddress!, 0, RandomPool.size)
        buffer.deallocate()
    }

    /// `count` (at most the pool's size) fresh bytes, valid only inside `body`.
    func take<Result>(_ count: Int, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        precondition(count > 0 && count <= RandomPool.size, "RandomPool.take: bad count \(count)")
        if RandomPool.size - next < count {
            arc4random_buf(buffer.baseAddress!, RandomPool.size)
            next = 0
        }
        let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[next..<next + count])
        next += count
        defer { memset(slice.baseAddress!, 0, count) }
        return body(UnsafeRawBufferPointer(slice))
    }

    static var current: RandomPool {
        if let raw = pthread_getspecific(key) { return Unmanaged<RandomPool>.fromOpaque(raw).takeUnretainedValue() }
        let pool = RandomPool()
        pthread_setspecific(key, Unmanaged.passRetained(pool).toOpaque())
        return pool
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { raw in
            if let raw { Unmanaged<RandomPool>.fromOpaque(raw).release() }
        }
        return key
    }()
}
