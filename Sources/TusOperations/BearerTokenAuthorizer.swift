public import TusCrypto
public import TusHTTP1
public import TusProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// `--auth-jwt-key`: every request but preflights must carry `Authorization: Bearer <JWT>` signed with the
/// configured key. The token's `sub` owns the uploads it creates, `max_size` caps their length.
///
/// Verification is a few microseconds (HMAC) to a few tens (RSA, ECDSA public-key operations), so it runs on
/// the loop: a worker-thread hop would cost more than it saves.
public final class BearerTokenAuthorizer: RequestAuthorizer {
    public let verifier: JWTVerifier
    /// Unix seconds; injected for tests.
    let now: @Sendable () -> Int64

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
        switch verifier.verify(token, now: now()) {
        case .failure:
            return .denied(challenge: "Bearer realm=\"tus\", error=\"invalid_token\"")
        case .success(let claims):
            return .granted(AccessGrant(subject: claims.subject, maxUploadLength: claims.maxSize))
        }
    }

    /// The token after a case-insensitive `Bearer ` (RFC 6750 §2.1), or nil.
    static func bearerToken(_ header: String) -> String? {
        let trimmed = header.drop { $0 == " " }
        guard trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " else { return nil }
        let token = trimmed.dropFirst(7).trimmingCharacters(in: " ")
        return token.isEmpty ? nil : token
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        var text = self
        while text.first == set { text.removeFirst() }
        while text.last == set { text.removeLast() }
        return String(text)
    }
}
