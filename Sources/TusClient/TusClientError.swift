/// Everything the client reports, grouped by the exit code tus-cli turns it into.
public enum TusClientError: Error, CustomStringConvertible {
    /// Bad arguments or URL. Exit 1.
    case usage(String)
    /// Could not reach the server, or the connection broke. Exit 2.
    case network(HTTPClientError)
    /// The server answered, but not like a tus server (no Tus-Resumable/Tus-Version). Exit 3.
    case notTusServer(String)
    /// The server refused the request. Exit 3.
    case server(status: Int, message: String)
    /// The server's answer breaks the protocol (missing Location, bad Upload-Offset...). Exit 3.
    case protocolViolation(String)
    /// The local file changed since the upload began. Exit 4.
    case fileChanged(String)
    /// Reading or writing a local file failed. Exit 4.
    case localIO(String)

    public var exitCode: Int32 {
        switch self {
        case .usage: return 1
        case .network: return 2
        case .notTusServer, .server, .protocolViolation: return 3
        case .fileChanged, .localIO: return 4
        }
    }

    public var description: String {
        switch self {
        case .usage(let message): return message
        case .network(let error): return "network error: \(error)"
        case .notTusServer(let message): return "not a tus server: \(message)"
        case .server(let status, let message):
            return message.isEmpty ? "server answered \(status)" : "server answered \(status): \(message)"
        case .protocolViolation(let message): return "protocol error: \(message)"
        case .fileChanged(let message): return "file changed: \(message)"
        case .localIO(let message): return message
        }
    }

    /// Network trouble, 5xx, 409 (offset conflict) and 423 (locked by a dying request): worth a HEAD and retry.
    public var isRetryable: Bool {
        switch self {
        case .network(let error): return error.isTransient
        case .server(let status, _): return status >= 500 || status == 409 || status == 423
        default: return false
        }
    }
}
