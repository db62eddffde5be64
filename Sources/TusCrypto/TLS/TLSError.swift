/// A TLS failure with OpenSSL's explanation attached (the `ERR_error_string_n` text of its error queue, and the
/// certificate verification result when there is one), so logs say *why* a handshake or a load failed.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }

    /// Prefixes `what` to the drained OpenSSL error queue of this thread.
    static func fromErrorQueue(_ what: String) -> TLSError {
        TLSError("\(what): \(OpenSSLErrorQueue.drain())")
    }
}

/// What `TLSSession.readPlaintext(into:)` produced.
public enum TLSReadResult: Sendable {
    /// This many plaintext bytes were written at the start of the buffer.
    case bytes(Int)
    /// No plaintext yet: feed more network bytes (and send any pending encrypted output first).
    case wantMore
    /// The peer sent close_notify: no more plaintext will come.
    case closed
    /// Fatal: the session is unusable. Send the pending encrypted output (it may hold an alert), then close.
    case failed(TLSError)
}
