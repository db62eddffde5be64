/// Unpredictable bytes from the kernel's CSPRNG, so upload IDs cannot be guessed.
///
/// The standard library's `SystemRandomNumberGenerator` reads `getrandom(2)` on Linux, as Go's `crypto/rand` does for
/// tusd. Not OpenSSL's `RAND_bytes`: its first call on each thread builds OpenSSL's DRBGs and fetches their ciphers,
/// which loads the default provider's algorithm tables, about 250 KiB of private memory that a server with no TLS and
/// no checksums would otherwise pay for on its first upload (issue 19). A failing `getrandom` traps in the standard
/// library, as `RAND_bytes` failing did here: handing out predictable IDs would be worse than stopping.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0, "SecureRandom.bytes: bad count \(count)")
        var generator = SystemRandomNumberGenerator()
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var filled = 0
            while filled < count {
                // One getrandom(2) per 8 bytes: an upload ID costs two system calls, a request ID one.
                let word = generator.next()
                let take = min(8, count - filled)
                withUnsafeBytes(of: word) { bytes in
                    for index in 0..<take { buffer[filled + index] = bytes[index] }
                }
                filled += take
            }
            initialized = count
        }
    }

    /// 128 random bits as 32 lowercase hex chars: URL-safe upload IDs.
    public static func uploadID() -> String {
        Hex.encode(bytes(16))
    }
}
