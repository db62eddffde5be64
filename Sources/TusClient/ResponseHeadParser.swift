public import TusHTTP1

/// Status line and header fields of one HTTP/1.1 response.
public struct HTTPResponseHead: Sendable {
    public var version: HTTPVersion
    public var status: HTTPStatus
    public var headers: HTTPHeaders

    public init(version: HTTPVersion = .http1_1, status: HTTPStatus, headers: HTTPHeaders) {
        self.version = version
        self.status = status
        self.headers = headers
    }

    /// A 1xx interim response: a head without a body, followed by more heads up to the final one (RFC 9110 §15.2).
    public var isInformational: Bool { (100..<200).contains(status.code) }

    /// RFC 9112 §9.3: HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 only with `keep-alive`.
    public var keepsAlive: Bool {
        let tokens = headers.values(for: "Connection").flatMap { $0.split(separator: ",") }.map {
            $0.trimmingOWS().lowercased()
        }
        if tokens.contains("close") { return false }
        return version.minor >= 1 || tokens.contains("keep-alive")
    }
}

/// Incremental response-head parser: bytes in, `needMoreData | head(consumed:) | failure` out.
///
/// Each call yields at most one head; an informational (1xx) head is followed by more heads, so the caller resets
/// the parser and feeds it the bytes after `consumed` until a final head comes (HTTPClientConnection does).
///
/// TusHTTP1 only parses requests (the server's side). A client sees a handful of small heads per upload, so
/// this one simply buffers until the blank line (bounded by `maxHeadBytes`) and then splits lines; speed here
/// does not matter, the body path (BodyDecoder) is the zero-copy one.
public struct ResponseHeadParser: Sendable {
    public enum Result: Sendable {
        case needMoreData
        /// The head ended `consumed` bytes into the buffer of this call; the rest is body (or the next response).
        case head(HTTPResponseHead, consumed: Int)
        case failure(String)
    }

    public let maxHeadBytes: Int
    private var buffer: [UInt8] = []
    private var failed: String?

    public init(maxHeadBytes: Int = 64 * 1024) {
        self.maxHeadBytes = maxHeadBytes
    }

    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> Result {
        if let failed { return .failure(failed) }
        let previousCount = buffer.count
        // Re-scan the last 3 old bytes: the terminator may straddle two reads.
        let scanStart = max(0, previousCount - 3)
        let room = maxHeadBytes - previousCount
        let take = min(bytes.count, room + 1)
        buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<take]))
        var end: Int? = nil
        var i = scanStart
        while i + 3 < buffer.count {
            if buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
                end = i + 4
                break
            }
            i += 1
        }
        guard let end else {
            if buffer.count > maxHeadBytes { return fail("response head larger than \(maxHeadBytes) bytes") }
            return .needMoreData
        }
        let headBytes = buffer[0..<(end - 4)]
        buffer = []
        switch Self.parseHead(Array(headBytes)) {
        case .success(let head): return .head(head, consumed: end - previousCount)
        case .failure(let message): return fail(message.text)
        }
    }

    private mutating func fail(_ message: String) -> Result {
        failed = message
        return .failure(message)
    }

    struct Message: Error { var text: String }

    static func parseHead(_ bytes: [UInt8]) -> Swift.Result<HTTPResponseHead, Message> {
        var lines = bytes.split(separator: 10, omittingEmptySubsequences: false).map { line -> ArraySlice<UInt8> in
            line.last == 13 ? line.dropLast() : line
        }
        guard !lines.isEmpty else { return .failure(Message(text: "empty response head")) }
        let statusLine = String(decoding: lines.removeFirst(), as: UTF8.self)
        // "HTTP/1.1 200 OK"; the reason phrase is optional and may contain spaces.
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[0].count == 8,
            let minor = Int(String(parts[0].dropFirst(7))),
            parts[1].count == 3, let code = Int(parts[1]), (100...999).contains(code)
        else { return .failure(Message(text: "malformed status line: \(statusLine.prefix(80))")) }
        var headers = HTTPHeaders()
        for line in lines {
            guard let colon = line.firstIndex(of: 58), colon > line.startIndex else {
                return .failure(Message(text: "malformed header line"))
            }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self)
            guard !name.contains(" "), !name.contains("\t") else {
                return .failure(Message(text: "whitespace in header name"))
            }
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingOWS()
            headers.add(name, String(value))
        }
        let reason = parts.count > 2 ? String(parts[2]) : nil
        return .success(
            HTTPResponseHead(
                version: HTTPVersion(major: 1, minor: minor), status: HTTPStatus(code: code, reason: reason),
                headers: headers))
    }
}
