/// Serializes a response head (and small body) to bytes. The encoder, not the handler, owns the framing
/// headers: whatever Content-Length, Transfer-Encoding or Connection a handler set is dropped and rewritten from
/// the actual body, so no handler can produce a response that desynchronizes the connection.
public enum ResponseEncoder {
    /// What a client sending `Expect: 100-continue` waits for before it sends the body.
    public static let continueResponse: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    /// Status line + headers + framing headers + body.
    ///
    /// - `Content-Length` is `bodyLength ?? body.count`, omitted for 1xx, 204 and 304 (which never have a body).
    ///   With `omitBody` (HEAD) no body is written, and Content-Length only when `bodyLength` is given, because
    ///   `body.count` of a HEAD response says nothing about the resource.
    /// - `Connection: close` when `!keepAlive` or `response.closeConnection`; `Connection: keep-alive` for an
    ///   HTTP/1.0 client we keep open, since 1.0 closes by default.
    /// - The status line always says HTTP/1.1: a server sends its own highest version (RFC 9110 §6.2).
    /// - Header names that are not tokens are dropped and control bytes in values become spaces, so a value
    ///   echoed from a request (metadata, locations) can never split the response.
    public static func encode(
        _ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool, bodyLength: Int64? = nil,
        omitBody: Bool = false
    ) -> [UInt8] {
        let code = response.status.code
        let statusForbidsBody = (100..<200).contains(code) || code == 204 || code == 304
        let writesBody = !omitBody && !statusForbidsBody

        var out: [UInt8] = []
        out.reserveCapacity(128 + response.headers.count * 48 + (writesBody ? response.body.count : 0))
        out.append(contentsOf: "HTTP/1.1 ".utf8)
        appendDecimal(Int64(code), to: &out)
        out.append(HTTPSyntax.space)
        appendSanitizedValue(response.status.reason, to: &out)
        appendCRLF(&out)

        for (name, value) in response.headers {
            if name.equalsIgnoringASCIICase("content-length") || name.equalsIgnoringASCIICase("transfer-encoding")
                || name.equalsIgnoringASCIICase("connection")
            {
                continue
            }
            guard !name.isEmpty, name.utf8.allSatisfy(HTTPSyntax.isTokenByte) else { continue }
            out.append(contentsOf: name.utf8)
            out.append(HTTPSyntax.colon)
            out.append(HTTPSyntax.space)
            appendSanitizedValue(value, to: &out)
            appendCRLF(&out)
        }

        if !statusForbidsBody {
            let length: Int64? = omitBody ? bodyLength : (bodyLength ?? Int64(response.body.count))
            if let length {
                out.append(contentsOf: "Content-Length: ".utf8)
                appendDecimal(length, to: &out)
                appendCRLF(&out)
            }
        }
        if !keepAlive || response.closeConnection {
            out.append(contentsOf: "Connection: close\r\n".utf8)
        } else if version == .http1_0 {
            out.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        appendCRLF(&out)
        if writesBody { out.append(contentsOf: response.body) }
        return out
    }

    /// A 1xx head (RFC 9110 §15.2): status line and fields only. No framing or `Connection` field, since the
    /// connection's fate is the final response's to announce.
    public static func encodeInformational(_ response: HTTPResponse) -> [UInt8] {
        precondition(response.status.isInterim, "not an interim status: \(response.status)")
        var head = response
        head.body = []
        head.closeConnection = false
        return encode(head, version: .http1_1, keepAlive: true)
    }

    private static func appendCRLF(_ out: inout [UInt8]) {
        out.append(HTTPSyntax.cr)
        out.append(HTTPSyntax.lf)
    }

    private static func appendSanitizedValue(_ value: String, to out: inout [UInt8]) {
        // Nearly every value is clean: one bulk copy, then the rare control byte replaced in place.
        let start = out.count
        out.append(contentsOf: value.utf8)
        for index in start..<out.count where !HTTPSyntax.isFieldValueByte(out[index]) { out[index] = HTTPSyntax.space }
    }

    private static func appendDecimal(_ value: Int64, to out: inout [UInt8]) {
        out.append(contentsOf: String(value).utf8)
    }
}
