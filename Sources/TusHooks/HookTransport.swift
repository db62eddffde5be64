public import TusCore
public import TusHTTP1

public struct HookFailure: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The upload a call is about, for transports that hand it over outside the JSON as well: tusd's file hooks set
/// `TUS_ID`, `TUS_SIZE` (0 while the length is deferred) and `TUS_OFFSET` (`pkg/hooks/file`), and scripts written
/// for tusd read them instead of parsing stdin.
public struct HookSubject: Sendable, Equatable {
    public var id: String
    public var size: Int64
    public var offset: Int64

    public init(id: String, size: Int64, offset: Int64) {
        self.id = id
        self.size = size
        self.offset = offset
    }
}

/// How a hook is called: an HTTP POST (`HTTPHookTransport`) or an executable (`ExecHookTransport`).
///
/// `invoke` is called on `executor`'s loop and completes exactly once on that loop; it must never block it.
public protocol HookTransport: AnyObject, Sendable {
    /// Whether a hook of this type exists at all (an executable hook directory may have only some).
    func handles(_ type: String) -> Bool

    /// Delivers `payload` (the JSON request, about `subject`) and hands back the raw response body.
    /// `forwardedHeaders` are request headers the operator asked to pass on. `retrySafe`: the call may be repeated
    /// after a failure (post-* hooks, whose receivers must tolerate duplicates anyway).
    func invoke(
        _ type: String, payload: [UInt8], subject: HookSubject, forwardedHeaders: HTTPHeaders, retrySafe: Bool,
        on executor: any LoopExecutor, completion: @escaping (Result<[UInt8], HookFailure>) -> Void)
}
