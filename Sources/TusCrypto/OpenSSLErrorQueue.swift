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

    /// Drops stale entries before an operation whose failure we want to report precisely.
    static func clear() {
        ERR_clear_error()
    }
}
