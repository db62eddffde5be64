public enum HeadParseResult: Sendable, Equatable {
    case needMoreData
    /// `consumed` counts the bytes of the head including the final CRLF CRLF (and any empty lines before the
    /// request line); what follows is body or the next pipelined request.
    case head(RequestHead, consumed: Int)
    case failure(HTTPParseError)
}

/// Parses a request line and header section, picohttpparser style: the caller keeps every byte received since
/// the head began and passes the whole, grown buffer on each call.
///
/// The parser remembers the line it is in and the fields it already accepted, so a client that dribbles bytes
/// costs O(n) in total, not O(n²). Lines are checked as soon as their LF arrives and the size limit as soon as
/// the buffer reaches it, so a hostile head fails on the first call where the failure is visible. Because checks
/// run in byte order, the result depends only on the bytes, never on how they were split across calls.
///
/// Errors are sticky until `reset()`. After `.head` the parser resets itself, ready for the next request, whose
/// bytes the caller passes starting at offset 0 of a new buffer.
public struct RequestHeadParser: Sendable {
    private struct RequestLine: Sendable {
        var method: HTTPMethod
        var target: Range<Int>
        var version: HTTPVersion
    }

    public let limits: HTTPParserLimits
    private var lineStart = 0
    private var scanIndex = 0
    /// Whether the method token of the request line has ended (a space was seen); before that every byte must
    /// be a tchar, which rejects TLS handshakes and binary junk on the first call instead of after 16 KiB.
    private var methodEnded = false
    private var requestLine: RequestLine?
    private var fields: [HTTPSyntax.FieldRange] = []
    private var failure: HTTPParseError?

    public init(limits: HTTPParserLimits = .init()) {
        self.limits = limits
    }

    public mutating func reset() {
        lineStart = 0
        scanIndex = 0
        methodEnded = false
        requestLine = nil
        fields.removeAll(keepingCapacity: true)
        failure = nil
    }

    public mutating func parse(_ buffer: UnsafeRawBufferPointer) -> HeadParseResult {
        if let failure { return .failure(failure) }
        precondition(buffer.count >= scanIndex, "RequestHeadParser: buffer shrank between calls")
        let scanEnd = min(buffer.count, limits.maxHeadBytes)
        while scanIndex < scanEnd {
            let b = buffer[scanIndex]
            if b != HTTPSyntax.lf {
                if requestLine == nil && !methodEnded {
                    if b == HTTPSyntax.space {
                        methodEnded = true
                    } else if !HTTPSyntax.isTokenByte(b) && !(b == HTTPSyntax.cr && scanIndex == lineStart) {
                        return fail(.badRequest("invalid character in request method"))
                    }
                }
                scanIndex += 1
                continue
            }
            let lfIndex = scanIndex
            scanIndex += 1
            // Bare LF is refused outright: accepting it where a proxy in front does not is how requests get smuggled.
            guard lfIndex > lineStart, buffer[lfIndex - 1] == HTTPSyntax.cr else {
                return fail(.badRequest("line not terminated by CRLF"))
            }
            let line = lineStart..<(lfIndex - 1)
            lineStart = scanIndex
            if requestLine == nil {
                // RFC 9112 §2.2: ignore empty lines before the request line (stray CRLF after a previous body).
                if line.isEmpty { continue }
                switch Self.parseRequestLine(buffer, line) {
                case .success(let parsed): requestLine = parsed
                case .failure(let error): return fail(error)
                }
            } else if line.isEmpty {
                return finishHead(buffer, consumed: scanIndex)
            } else {
                guard fields.count < limits.maxHeaderCount else {
                    return fail(.tooLarge("more than \(limits.maxHeaderCount) header fields"))
                }
                switch HTTPSyntax.parseFieldLine(buffer, line) {
                case .success(let field): fields.append(field)
                case .failure(let error): return fail(error)
                }
            }
        }
        if buffer.count >= limits.maxHeadBytes {
            return fail(.tooLarge("request head larger than \(limits.maxHeadBytes) bytes"))
        }
        return .needMoreData
    }

    private mutating func fail(_ error: HTTPParseError) -> HeadParseResult {
        failure = error
        return .failure(error)
    }

    private static func parseRequestLine(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>)
        -> Result<RequestLine, HTTPParseError>
    {
        let malformed = HTTPParseError.badRequest("malformed request line")
        var i = line.lowerBound
        while i < line.upperBound, bytes[i] != HTTPSyntax.space {
            guard HTTPSyntax.isTokenByte(bytes[i]) else { return .failure(malformed) }
            i += 1
        }
        guard i > line.lowerBound, i < line.upperBound else { return .failure(malformed) }
        let methodRange = line.lowerBound..<i
        let targetStart = i + 1
        var j = targetStart
        while j < line.upperBound, bytes[j] != HTTPSyntax.space {
            let b = bytes[j]
            guard b > 0x20 && b < 0x7F else { return .failure(.badRequest("invalid character in request target")) }
            j += 1
        }
        guard j > targetStart, j < line.upperBound else { return .failure(malformed) }
        let target = targetStart..<j

        // HTTP-version = "HTTP/" DIGIT "." DIGIT, exactly (RFC 9112 §2.3).
        let versionStart = j + 1
        guard line.upperBound - versionStart == 8,
            bytes[versionStart] == 0x48,  // "HTTP/" is case-sensitive
            bytes[versionStart + 1] == 0x54, bytes[versionStart + 2] == 0x54, bytes[versionStart + 3] == 0x50,
            bytes[versionStart + 4] == 0x2F, bytes[versionStart + 6] == 0x2E
        else { return .failure(.badRequest("malformed HTTP version")) }
        let majorByte = bytes[versionStart + 5]
        let minorByte = bytes[versionStart + 7]
        guard (0x30...0x39).contains(majorByte), (0x30...0x39).contains(minorByte) else {
            return .failure(.badRequest("malformed HTTP version"))
        }
        let version = HTTPVersion(major: Int(majorByte - 0x30), minor: Int(minorByte - 0x30))
        guard version == .http1_1 || version == .http1_0 else {
            return .failure(HTTPParseError(status: .httpVersionNotSupported, message: "unsupported \(version)"))
        }

        guard let method = Self.method(bytes, methodRange) else {
            return .failure(HTTPParseError(status: .notImplemented, message: "method not implemented"))
        }

        // origin-form, asterisk-form (OPTIONS only) or absolute-form kept as sent; authority-form is CONNECT's.
        let first = bytes[target.lowerBound]
        let isOriginForm = first == 0x2F
        let isAsterisk = target.count == 1 && first == 0x2A
        let isAbsolute =
            (target.count > 7
                && HTTPSyntax.equalsIgnoringCase(bytes, target.lowerBound..<(target.lowerBound + 7), "http://"))
            || (target.count > 8
                && HTTPSyntax.equalsIgnoringCase(bytes, target.lowerBound..<(target.lowerBound + 8), "https://"))
        guard isOriginForm || isAbsolute || (isAsterisk && method == .OPTIONS) else {
            return .failure(.badRequest("invalid request target"))
        }
        return .success(RequestLine(method: method, target: target, version: version))
    }

    /// Methods are case-sensitive (RFC 9110 §9.1), so bytes are compared exactly.
    private static func method(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> HTTPMethod? {
        let token = UnsafeRawBufferPointer(rebasing: bytes[range])
        for method in HTTPMethod.allCases {
            let name = method.rawValue.utf8
            if name.count == token.count && name.elementsEqual(token) { return method }
        }
        return nil
    }

    private enum KnownField {
        case host, contentLength, transferEncoding, connection, expect, other
    }

    private static func classify(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> KnownField {
        switch name.count {
        case 4 where HTTPSyntax.equalsIgnoringCase(bytes, name, "host"): .host
        case 6 where HTTPSyntax.equalsIgnoringCase(bytes, name, "expect"): .expect
        case 10 where HTTPSyntax.equalsIgnoringCase(bytes, name, "connection"): .connection
        case 14 where HTTPSyntax.equalsIgnoringCase(bytes, name, "content-length"): .contentLength
        case 17 where HTTPSyntax.equalsIgnoringCase(bytes, name, "transfer-encoding"): .transferEncoding
        default: .other
        }
    }

    /// Applies the message-level rules (RFC 9112 §6-§9) once the whole head is in, then builds the strings.
    private mutating func finishHead(_ bytes: UnsafeRawBufferPointer, consumed: Int) -> HeadParseResult {
        guard let requestLine else { preconditionFailure("head finished without a request line") }
        let version = requestLine.version
        var hostCount = 0
        var contentLength: Int64?
        var sawContentLength = false
        var sawTransferEncoding = false
        var codings: [Range<Int>] = []
        var connectionClose = false
        var connectionKeepAlive = false
        var expectsContinue = false

        for field in fields {
            switch Self.classify(bytes, field.name) {
            case .host:
                hostCount += 1
            case .contentLength:
                sawContentLength = true
                var valid = true
                let ok = HTTPSyntax.forEachListElement(bytes, field.value) { element in
                    guard let n = Self.parseContentLength(bytes, element) else {
                        valid = false
                        return false
                    }
                    if let previous = contentLength, previous != n { return false }
                    contentLength = n
                    return true
                }
                guard valid else { return fail(.badRequest("invalid Content-Length")) }
                guard ok else { return fail(.badRequest("conflicting Content-Length values")) }
            case .transferEncoding:
                sawTransferEncoding = true
                let ok = HTTPSyntax.forEachListElement(bytes, field.value) { element in
                    guard !element.isEmpty else { return false }
                    codings.append(element)
                    return true
                }
                guard ok else { return fail(.badRequest("invalid Transfer-Encoding")) }
            case .connection:
                _ = HTTPSyntax.forEachListElement(bytes, field.value) { option in
                    if HTTPSyntax.equalsIgnoringCase(bytes, option, "close") { connectionClose = true }
                    if HTTPSyntax.equalsIgnoringCase(bytes, option, "keep-alive") { connectionKeepAlive = true }
                    return true
                }
            case .expect:
                if HTTPSyntax.equalsIgnoringCase(bytes, field.value, "100-continue") { expectsContinue = true }
            case .other:
                break
            }
        }

        if version == .http1_1 && hostCount == 0 { return fail(.badRequest("missing Host header")) }
        if hostCount > 1 { return fail(.badRequest("multiple Host headers")) }

        let framing: BodyFraming
        if sawTransferEncoding {
            // RFC 9112 §6.3: both present means a smuggling attempt or a broken intermediary; never guess.
            if sawContentLength { return fail(.badRequest("both Transfer-Encoding and Content-Length")) }
            if version == .http1_0 { return fail(.badRequest("Transfer-Encoding in an HTTP/1.0 request")) }
            guard let last = codings.last, HTTPSyntax.equalsIgnoringCase(bytes, last, "chunked") else {
                return fail(.badRequest("request body is not chunked as its final transfer coding"))
            }
            for coding in codings.dropLast() where HTTPSyntax.equalsIgnoringCase(bytes, coding, "chunked") {
                return fail(.badRequest("chunked applied more than once"))
            }
            if codings.count > 1 {
                return fail(HTTPParseError(status: .notImplemented, message: "transfer coding not implemented"))
            }
            framing = .chunked
        } else if let contentLength, contentLength > 0 {
            framing = .contentLength(contentLength)
        } else {
            framing = .none
        }

        var headers: [HTTPHeaders.Element] = []
        headers.reserveCapacity(fields.count)
        for field in fields {
            headers.append((name: HTTPSyntax.string(bytes, field.name), value: HTTPSyntax.string(bytes, field.value)))
        }
        let keepAlive = version == .http1_1 ? !connectionClose : (connectionKeepAlive && !connectionClose)
        let head = RequestHead(
            method: requestLine.method, target: HTTPSyntax.string(bytes, requestLine.target), version: version,
            headers: HTTPHeaders(headers), bodyFraming: framing, keepAlive: keepAlive,
            expectsContinue: expectsContinue && version == .http1_1)
        reset()
        return .head(head, consumed: consumed)
    }

    /// 1-18 digits and nothing else: no sign, no exponent, no spaces (18 digits always fit in Int64).
    private static func parseContentLength(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int64? {
        guard range.count <= 18 else { return nil }
        return DecimalInteger.parse(UnsafeRawBufferPointer(rebasing: bytes[range]))
    }
}
