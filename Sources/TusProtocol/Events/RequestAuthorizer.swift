public import TusCore
public import TusHTTP1

/// What an authorizer learned about the caller.
public struct AccessGrant: Sendable, Equatable {
    /// The caller's identity (a token's `sub`). It becomes the owner of uploads the caller creates; uploads
    /// with an owner answer only to that owner (404 to anyone else, so ids cannot be probed).
    public var subject: String?
    /// A cap on `Upload-Length` for this caller (a token's `max_size`), below the server's own maximum.
    public var maxUploadLength: Int64?

    public init(subject: String? = nil, maxUploadLength: Int64? = nil) {
        self.subject = subject
        self.maxUploadLength = maxUploadLength
    }
}

public enum AuthorizationResult: Sendable, Equatable {
    case granted(AccessGrant)
    /// Answered 401 with this `WWW-Authenticate` value (RFC 6750: `Bearer` plus an optional error).
    case denied(challenge: String)
}

/// Asked once per request, before routing, for every method except `OPTIONS` (CORS preflights carry no
/// credentials). Runs on the request's loop; `completion` must run exactly once, on that loop. A verifier
/// that needs I/O (key fetch, introspection) may take its time: only this request waits.
public protocol RequestAuthorizer: AnyObject, Sendable {
    func authorize(
        _ head: RequestHead, on executor: any LoopExecutor, completion: @escaping (AuthorizationResult) -> Void)
}
