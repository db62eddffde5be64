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
        let hexDigits = Array("0123456789abcdef".utf8)
        let random = bytes(16)
        var text = [UInt8]()
        text.reserveCapacity(32)
        for byte in random {
            text.append(hexDigits[Int(byte >> 4)])
            text.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
