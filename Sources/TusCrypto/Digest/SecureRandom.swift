internal import COpenSSL

/// Unpredictable bytes from OpenSSL's CSPRNG (`RAND_bytes`), so upload IDs cannot be guessed.
public enum SecureRandom {
    /// `RAND_bytes`. A failure means the system RNG is unusable; handing out predictable IDs would be worse
    /// than stopping, so it is a `preconditionFailure`.
    public static func bytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0 && count <= Int(Int32.max), "SecureRandom.bytes: bad count \(count)")
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 {
                guard RAND_bytes(buffer.baseAddress, Int32(count)) == 1 else {
                    preconditionFailure("RAND_bytes failed: \(OpenSSLErrorQueue.drain())")
                }
            }
            initialized = count
        }
    }

    /// 128 random bits as 32 lowercase hex chars: URL-safe upload IDs.
    public static func uploadID() -> String {
        Hex.encode(bytes(16))
    }
}
