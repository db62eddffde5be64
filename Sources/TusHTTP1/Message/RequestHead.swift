/// A parsed request line plus header block.
///
/// `bodyFraming` is decided by the parser from Content-Length / Transfer-Encoding (and already validated
/// against smuggling); handlers never re-derive it.
public struct RequestHead: Sendable {
    public var method: HTTPMethod
    /// The request target exactly as sent (origin-form path plus optional query).
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    public var bodyFraming: BodyFraming
    /// Whether the connection stays open after this exchange (HTTP/1.1 default, `Connection: close`, 1.0 rules).
    public var keepAlive: Bool
    /// `Expect: 100-continue` was sent.
    public var expectsContinue: Bool

    public init(
        method: HTTPMethod, target: String, version: HTTPVersion = .http1_1, headers: HTTPHeaders = [:],
        bodyFraming: BodyFraming = .none, keepAlive: Bool = true, expectsContinue: Bool = false
    ) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.bodyFraming = bodyFraming
        self.keepAlive = keepAlive
        self.expectsContinue = expectsContinue
    }

    /// The target without its query string.
    public var path: Substring {
        if let q = target.firstIndex(of: "?") { return target[..<q] }
        return target[...]
    }
}

public enum BodyFraming: Sendable, Equatable {
    /// No body (no Content-Length, no Transfer-Encoding, or Content-Length: 0).
    case none
    case contentLength(Int64)
    case chunked

    /// The number of body bytes if known before reading it.
    public var knownLength: Int64? {
        switch self {
        case .none: 0
        case .contentLength(let n): n
        case .chunked: nil
        }
    }
    public var hasBody: Bool { self != .none }
}
