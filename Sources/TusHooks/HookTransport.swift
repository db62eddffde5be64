public import TusHTTP1

public struct HookFailure: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How a hook is called: an HTTP POST (`HTTPHookTransport`) or an executable (`ExecHookTransport`).
///
/// `invoke` is called on `executor`'s loop and completes exactly once on that loop; it must never block it.
public protocol HookTransport: AnyObject, Sendable {
    /// Whether a hook of this type exists at all (an executable hook directory may have only some).
    func handles(_ type: String) -> Bool

    /// Delivers `payload` (the JSON request) and hands back the raw response body. `forwardedHeaders` are
    /// request headers the operator asked to pass on. `retrySafe`: the call may be repeated after a failure
    /// (post-* hooks, whose receivers must tolerate duplicates anyway).
    func invoke(
        _ type: String, payload: [UInt8], forwardedHeaders: HTTPHeaders, retrySafe: Bool, on executor: any LoopExecutor,
        completion: @escaping (Result<[UInt8], HookFailure>) -> Void)
}
