/// Why a command produced no value. Only `.server` says anything about what Redis did; after `.timedOut` and
/// `.connectionLost` the command may or may not have run, even later: a paused Redis that resumes executes what
/// the abandoned socket had already delivered (the SIGSTOP test sees its INCRs land). Callers retry only what is
/// safe to repeat, and make lock operations conditional on the owner token (compare-and-delete in a script).
public enum RedisError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// No connection: the last attempt failed and the client is waiting before the next one. Nothing was sent.
    case unavailable
    /// No reply within `commandTimeoutMilliseconds`; the connection was dropped and is being replaced.
    case timedOut
    /// The connection closed, reset or sent bytes that are not RESP while the command waited for its reply.
    case connectionLost
    /// Redis answered with an error reply (`ERR ...`, `WRONGTYPE ...`, `NOSCRIPT ...`); the text as sent.
    case server(String)
    /// `RedisClient.shutdown(on:)` ran for this loop.
    case shutDown

    public var description: String {
        switch self {
        case .unavailable: "redis unavailable"
        case .timedOut: "redis command timed out"
        case .connectionLost: "redis connection lost"
        case .server(let message): "redis error: \(message)"
        case .shutDown: "redis client shut down"
        }
    }
}
