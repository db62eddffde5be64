internal import COpenSSL

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
