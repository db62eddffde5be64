internal import COpenSSL

/// The checksum algorithms a tus server may advertise in `Tus-Checksum-Algorithm`. Raw values are the
/// lowercase names tus clients send in `Upload-Checksum`.
public enum DigestAlgorithm: String, CaseIterable, Sendable {
    case sha1
    case md5
    case sha256
    case sha512

    /// Lets callers check a decoded `Upload-Checksum` value's length before hashing a whole body.
    public var digestLength: Int {
        switch self {
        case .sha1: return 20
        case .md5: return 16
        case .sha256: return 32
        case .sha512: return 64
        }
    }

    /// The implicitly fetched EVP method; OpenSSL keeps these as static tables, so nothing is freed.
    var evpMethod: OpaquePointer {
        let method: OpaquePointer?
        switch self {
        case .sha1: method = EVP_sha1()
        case .md5: method = EVP_md5()
        case .sha256: method = EVP_sha256()
        case .sha512: method = EVP_sha512()
        }
        guard let method else { preconditionFailure("OpenSSL has no \(rawValue) digest") }
        return method
    }
}
