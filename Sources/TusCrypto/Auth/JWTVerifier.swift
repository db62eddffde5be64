internal import COpenSSL
import FoundationEssentials

/// The claims a verified token carries that the server uses.
public struct JWTClaims: Sendable, Equatable {
    /// `sub`: who the caller is.
    public var subject: String?
    /// `exp`, `nbf`: unix seconds.
    public var expiresAt: Int64?
    public var notBefore: Int64?
    /// `max_size`: the largest upload this caller may create.
    public var maxSize: Int64?
}

public enum JWTError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not three base64url segments of JSON.
    case malformed
    /// `alg` is not the one algorithm the configured key allows (this is where `none` and HS/RS confusion end).
    case algorithmNotAllowed(String)
    case badSignature
    case expired
    case notYetValid
    /// A claim has the wrong type (`exp` as text, `max_size` negative).
    case invalidClaim(String)

    public var description: String {
        switch self {
        case .malformed: "malformed token"
        case .algorithmNotAllowed(let alg): "algorithm \(alg) not allowed"
        case .badSignature: "signature does not verify"
        case .expired: "token expired"
        case .notYetValid: "token not yet valid"
        case .invalidClaim(let name): "invalid claim \(name)"
        }
    }
}

/// Verifies compact JWS tokens (RFC 7515/7519) with exactly one key and therefore exactly one algorithm:
/// HS256 for a shared secret, RS256 for an RSA public key, ES256 for a P-256 public key (PEM).
///
/// The algorithm comes from the key, never from the token: a token's `alg` must equal it, so `alg: none` and
/// the classic confusion (an RS256 public key used as an HS256 secret) are refused before any signature work.
/// Immutable after `init`, hence `Sendable`; `EVP_DigestVerify*` gets a fresh context per call, so any
/// thread may verify concurrently.
public final class JWTVerifier: @unchecked Sendable {
    public enum Algorithm: String, Sendable {
        case hs256 = "HS256", rs256 = "RS256", es256 = "ES256"
    }

    public let algorithm: Algorithm
    /// Seconds of clock difference tolerated for `exp` and `nbf`.
    public let leewaySeconds: Int64
    private let secret: [UInt8]
    private let publicKey: OpaquePointer?

    /// A key file holding `-----BEGIN PUBLIC KEY-----` is an RSA or P-256 public key; anything else is an
    /// HS256 secret (its bytes, trailing newline removed), which must be at least 32 bytes (RFC 7518 3.2).
    public convenience init(keyFile path: String, leewaySeconds: Int64 = 30) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw JWTKeyError("cannot read \(path)")
        }
        try self.init(keyBytes: [UInt8](data), leewaySeconds: leewaySeconds)
    }

    public init(keyBytes: [UInt8], leewaySeconds: Int64 = 30) throws {
        self.leewaySeconds = leewaySeconds
        if String(decoding: keyBytes, as: UTF8.self).contains("-----BEGIN PUBLIC KEY-----") {
            OpenSSLErrorQueue.clear()
            let key: OpaquePointer? = keyBytes.withUnsafeBytes { raw in
                guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
                defer { BIO_free(bio) }
                return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
            }
            guard let key else { throw JWTKeyError("not a PEM public key: \(OpenSSLErrorQueue.drain())") }
            switch EVP_PKEY_get_base_id(key) {
            case EVP_PKEY_RSA:
                guard EVP_PKEY_get_bits(key) >= 2048 else {
                    EVP_PKEY_free(key)
                    throw JWTKeyError("RSA keys below 2048 bits are refused")
                }
                algorithm = .rs256
            case EVP_PKEY_EC:
                guard EVP_PKEY_get_bits(key) == 256 else {
                    EVP_PKEY_free(key)
                    throw JWTKeyError("ES256 needs a P-256 key")
                }
                algorithm = .es256
            default:
                EVP_PKEY_free(key)
                throw JWTKeyError("only RSA and P-256 public keys are supported")
            }
            publicKey = key
            secret = []
        } else {
            var bytes = keyBytes
            while let last = bytes.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { bytes.removeLast() }
            guard bytes.count >= 32 else { throw JWTKeyError("an HS256 secret needs at least 32 bytes") }
            algorithm = .hs256
            secret = bytes
            publicKey = nil
        }
    }

    deinit {
        if let publicKey { EVP_PKEY_free(publicKey) }
    }

    /// Checks structure, algorithm, signature, then `exp`/`nbf` against `now` (unix seconds).
    public func verify(_ token: String, now: Int64) -> Result<JWTClaims, JWTError> {
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Self.base64URLDecode(parts[0]),
            let payloadBytes = Self.base64URLDecode(parts[1]), let signature = Self.base64URLDecode(parts[2])
        else { return .failure(.malformed) }
        guard let header = try? JSONDecoder().decode(Header.self, from: Data(headerBytes)) else {
            return .failure(.malformed)
        }
        guard header.alg == algorithm.rawValue else { return .failure(.algorithmNotAllowed(header.alg)) }
        // The signature covers the segments exactly as sent.
        let signingInput = Array(token.utf8.prefix(parts[0].count + 1 + parts[1].count))
        guard verifySignature(signature, over: signingInput) else { return .failure(.badSignature) }

        let claims: Payload
        do {
            claims = try JSONDecoder().decode(Payload.self, from: Data(payloadBytes))
        } catch {
            return .failure(.invalidClaim("payload"))
        }
        if let exp = claims.exp, Double(now - leewaySeconds) >= exp { return .failure(.expired) }
        if let nbf = claims.nbf, Double(now + leewaySeconds) < nbf { return .failure(.notYetValid) }
        if let maxSize = claims.max_size, maxSize < 0 { return .failure(.invalidClaim("max_size")) }
        return .success(
            JWTClaims(
                subject: claims.sub, expiresAt: claims.exp.map { Int64($0) }, notBefore: claims.nbf.map { Int64($0) },
                maxSize: claims.max_size))
    }

    private struct Header: Decodable {
        let alg: String
    }

    private struct Payload: Decodable {
        let sub: String?
        let exp: Double?
        let nbf: Double?
        let max_size: Int64?
    }

    // MARK: Signatures

    private func verifySignature(_ signature: [UInt8], over input: [UInt8]) -> Bool {
        switch algorithm {
        case .hs256:
            var mac = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
            var length: UInt32 = 0
            let ok = secret.withUnsafeBytes { key in
                input.withUnsafeBytes { data in
                    HMAC(
                        EVP_sha256(), key.baseAddress, Int32(key.count), data.baseAddress?.assumingMemoryBound(to: UInt8.self),
                        data.count, &mac, &length) != nil
                }
            }
            guard ok, Int(length) == signature.count else { return false }
            // Constant time: a byte-by-byte early exit would leak how much of a forged MAC was right.
            return CRYPTO_memcmp(mac, signature, signature.count) == 0
        case .rs256:
            return digestVerify(signature, over: input)
        case .es256:
            // JWS carries r || s (32 bytes each); OpenSSL verifies DER.
            guard signature.count == 64, let der = Self.derECDSASignature(signature) else { return false }
            return digestVerify(der, over: input)
        }
    }

    private func digestVerify(_ signature: [UInt8], over input: [UInt8]) -> Bool {
        guard let publicKey, let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, publicKey) == 1 else {
            OpenSSLErrorQueue.clear()
            return false
        }
        let result = EVP_DigestVerify(context, signature, signature.count, input, input.count)
        if result != 1 { OpenSSLErrorQueue.clear() }
        return result == 1
    }

    private static func derECDSASignature(_ raw: [UInt8]) -> [UInt8]? {
        guard let sig = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(sig) }
        let r = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, 32, nil) }
        let s = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress! + 32, 32, nil) }
        guard let r, let s else {
            BN_free(r)
            BN_free(s)
            return nil
        }
        guard ECDSA_SIG_set0(sig, r, s) == 1 else {
            BN_free(r)
            BN_free(s)
            return nil
        }
        let length = i2d_ECDSA_SIG(sig, nil)
        guard length > 0 else { return nil }
        var der = [UInt8](repeating: 0, count: Int(length))
        let written = der.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            return i2d_ECDSA_SIG(sig, &cursor)
        }
        return written == length ? der : nil
    }

    // MARK: base64url

    /// Unpadded base64url (RFC 7515 §2); padding, the standard alphabet and whitespace are refused.
    static func base64URLDecode(_ segment: Substring.UTF8View.SubSequence) -> [UInt8]? {
        var standard: [UInt8] = []
        standard.reserveCapacity(segment.count + 3)
        for byte in segment {
            switch byte {
            case UInt8(ascii: "-"): standard.append(UInt8(ascii: "+"))
            case UInt8(ascii: "_"): standard.append(UInt8(ascii: "/"))
            case UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="): return nil
            default: standard.append(byte)
            }
        }
        switch standard.count % 4 {
        case 0: break
        case 2: standard += [UInt8(ascii: "="), UInt8(ascii: "=")]
        case 3: standard.append(UInt8(ascii: "="))
        default: return nil
        }
        return Base64.decode(String(decoding: standard, as: UTF8.self))
    }
}

public struct JWTKeyError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
