public import TusCrypto
public import TusCore
public import TusHTTP1
public import TusProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `--auth-jwt-key`: every request but preflights must carry `Authorization: Bearer <JWT>` signed with the
/// configured key. The token's `sub` owns the uploads it creates, `max_size` caps their length.
///
/// A client sends the same token with every request of an upload, so verified tokens are remembered: the
/// signature check (a few µs for HS256, ~100 µs for ES256 on the loop) runs once per token, and later requests
/// pay a dictionary lookup plus the `exp`/`nbf` comparison, which is redone every time. Only tokens that
/// verified are remembered, keyed by the whole token (signature included), so nothing unverified can match.
public final class BearerTokenAuthorizer: RequestAuthorizer {
    public let verifier: JWTVerifier
    /// Unix seconds; injected for tests.
    let now: @Sendable () -> Int64
    private let verified = Mutex<[String: JWTClaims]>([:])
    /// Beyond this many distinct live tokens the memory starts over (one verification each again).
    static let maxRememberedTokens = 10_000

    public init(verifier: JWTVerifier, now: @escaping @Sendable () -> Int64 = BearerTokenAuthorizer.systemNow) {
        self.verifier = verifier
        self.now = now
    }

    @Sendable public static func systemNow() -> Int64 { Int64(time(nil)) }

    public func authorize(
        _ head: RequestHead, on executor: any LoopExecutor, completion: @escaping (AuthorizationResult) -> Void
    ) {
        completion(decide(head.headers["Authorization"]))
    }

    /// RFC 6750 §3: no credentials → a bare challenge; bad credentials → `error="invalid_token"`. The reason
    /// stays out of the response (it would help whoever forges tokens); operators see it in the hook/log path.
    func decide(_ authorization: String?) -> AuthorizationResult {
        guard let authorization, let token = Self.bearerToken(authorization) else {
            return .denied(challenge: "Bearer realm=\"tus\"")
        }
        let now = now()
        if let claims = verified.withLock({ $0[token] }) {
            guard isCurrent(claims, now: now) else {
                _ = verified.withLock { $0.removeValue(forKey: token) }
                return .denied(challenge: "Bearer realm=\"tus\", error=\"invalid_token\"")
            }
            return .granted(AccessGrant(subject: claims.subject, maxUploadLength: claims.maxSize))
        }
        switch verifier.verify(token, now: now) {
        case .failure:
            return .denied(challenge: "Bearer realm=\"tus\", error=\"invalid_token\"")
        case .success(let claims):
            verified.withLock { remembered in
                if remembered.count >= Self.maxRememberedTokens { remembered.removeAll(keepingCapacity: true) }
                remembered[token] = claims
            }
            return .granted(AccessGrant(subject: claims.subject, maxUploadLength: claims.maxSize))
        }
    }

    /// The same time checks `JWTVerifier.verify` makes, for a remembered token.
    private func isCurrent(_ claims: JWTClaims, now: Int64) -> Bool {
        if let exp = claims.expiresAt, now - verifier.leewaySeconds >= exp { return false }
        if let nbf = claims.notBefore, now + verifier.leewaySeconds < nbf { return false }
        return true
    }

    /// The token after a case-insensitive `Bearer ` (RFC 6750 §2.1), or nil. Works on UTF-8 bytes: a token
    /// is a few hundred ASCII bytes on every request, and Character-level trimming of it showed up in
    /// profiles.
    static func bearerToken(_ header: String) -> String? {
        var bytes = header.utf8[...]
        while bytes.first == UInt8(ascii: " ") { bytes = bytes.dropFirst() }
        let scheme = Array("bearer ".utf8)
        guard bytes.count > scheme.count,
            zip(bytes.prefix(scheme.count), scheme).allSatisfy({ ($0 | 0x20) == $1 || ($0 == $1) })
        else { return nil }
        var token = bytes.dropFirst(scheme.count)
        while token.first == UInt8(ascii: " ") { token = token.dropFirst() }
        while token.last == UInt8(ascii: " ") { token = token.dropLast() }
        return token.isEmpty ? nil : String(decoding: token, as: UTF8.self)
    }
}
