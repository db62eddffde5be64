public enum BodyEvent: Sendable, Equatable {
    /// Body bytes at this range of the buffer passed to `next(_:)`.
    case data(Range<Int>)
    /// The body is complete; chunked trailer fields, if any.
    case end(trailers: HTTPHeaders)
    /// Every byte given was consumed; call again with new bytes.
    case needMoreData
    case failure(HTTPParseError)
}

/// Frames one request body (Content-Length or chunked), zero copy: data events are ranges of the caller's
/// buffer, so body bytes go to storage straight from the read buffer.
///
/// Chunked framing is decoded by a byte-at-a-time state machine, so chunk-size lines split across reads need no
/// buffering at all; only trailer fields are buffered (bounded by `maxTrailerBytes`) because they become
/// strings. The caller therefore never has to keep unconsumed bytes, except after `.end`, when the rest of the
/// buffer belongs to the next pipelined request. Errors are sticky.
public struct BodyDecoder: Sendable {
    private enum State: Sendable {
        case contentLength(remaining: Int64)
        case chunkSize(size: Int64, digits: Int)
        /// BWS between the size and `;` or CRLF.
        case chunkSizeWhitespace(size: Int64)
        /// Extensions are skipped: nothing in this server gives them meaning.
        case chunkExtension(size: Int64)
        case chunkSizeLF(size: Int64)
        case chunkData(remaining: Int64)
        case chunkDataCR
        case chunkDataLF
        case trailers
        case done
        case failed(HTTPParseError)
    }

    private let limits: HTTPParserLimits
    private let isChunked: Bool
    private var state: State
    private var chunkLineBytes = 0
    private var trailerBytes: [UInt8] = []
    private var trailerLineStart = 0
    private var trailers = HTTPHeaders()

    public init(framing: BodyFraming, limits: HTTPParserLimits = .init()) {
        self.limits = limits
        switch framing {
        case .none:
            isChunked = false
            state = .done
        case .contentLength(let n):
            precondition(n >= 0, "negative Content-Length")
            isChunked = false
            state = n == 0 ? .done : .contentLength(remaining: n)
        case .chunked:
            isChunked = true
            state = .chunkSize(size: 0, digits: 0)
        }
    }

    public var isComplete: Bool {
        if case .done = state { return true }
        return false
    }

    /// Bytes of body still expected for Content-Length framing (nil for chunked).
    public var remainingContentLength: Int64? {
        if isChunked { return nil }
        if case .contentLength(let remaining) = state { return remaining }
        return 0
    }

    /// `count` Content-Length body bytes were taken from the socket by someone else (splice): the framing moves on
    /// as if they had been passed to `next`.
    public mutating func skipContentBytes(_ count: Int64) {
        guard case .contentLength(let remaining) = state else {
            preconditionFailure("direct body bytes outside Content-Length framing")
        }
        precondition(count <= remaining, "more direct body bytes than the Content-Length")
        state = remaining == count ? .done : .contentLength(remaining: remaining - count)
    }

    public mutating func next(_ buffer: UnsafeRawBufferPointer) -> (event: BodyEvent, consumed: Int) {
        var i = 0
        let count = buffer.count
        while true {
            switch state {
            case .done:
                return (.end(trailers: trailers), i)
            case .failed(let error):
                return (.failure(error), i)
            case .contentLength(let remaining):
                guard i < count else { return (.needMoreData, i) }
                let take = Int(min(remaining, Int64(count - i)))
                state = remaining == Int64(take) ? .done : .contentLength(remaining: remaining - Int64(take))
                return (.data(i..<(i + take)), i + take)
            case .chunkData(let remaining):
                guard i < count else { return (.needMoreData, i) }
                let take = Int(min(remaining, Int64(count - i)))
                state = remaining == Int64(take) ? .chunkDataCR : .chunkData(remaining: remaining - Int64(take))
                return (.data(i..<(i + take)), i + take)
            case .trailers:
                guard i < count else { return (.needMoreData, i) }
                i = consumeTrailers(buffer, from: i)
            case .chunkSize, .chunkSizeWhitespace, .chunkExtension, .chunkSizeLF, .chunkDataCR, .chunkDataLF:
                guard i < count else { return (.needMoreData, i) }
                step(buffer[i])
                i += 1
            }
        }
    }

    /// Advances the chunk framing by one byte.
    private mutating func step(_ b: UInt8) {
        switch state {
        case .chunkSize(let size, let digits):
            if let digit = HTTPSyntax.hexValue(b) {
                // 15 hex digits is 2^60: larger sizes are absurd and would overflow Int64 arithmetic.
                guard digits < 15 else { return fail(.badRequest("chunk size too large")) }
                state = .chunkSize(size: size * 16 + digit, digits: digits + 1)
            } else if digits == 0 {
                return fail(.badRequest("invalid chunk size"))
            } else if b == 0x3B {
                state = .chunkExtension(size: size)
            } else if HTTPSyntax.isWhitespace(b) {
                state = .chunkSizeWhitespace(size: size)
            } else if b == HTTPSyntax.cr {
                state = .chunkSizeLF(size: size)
            } else {
                return fail(.badRequest("invalid chunk size"))
            }
            countChunkLineByte()
        case .chunkSizeWhitespace(let size):
            if b == 0x3B {
                state = .chunkExtension(size: size)
            } else if b == HTTPSyntax.cr {
                state = .chunkSizeLF(size: size)
            } else if !HTTPSyntax.isWhitespace(b) {
                return fail(.badRequest("invalid chunk size line"))
            }
            countChunkLineByte()
        case .chunkExtension(let size):
            if b == HTTPSyntax.cr {
                state = .chunkSizeLF(size: size)
            } else if !HTTPSyntax.isFieldValueByte(b) {
                return fail(.badRequest("invalid character in chunk extension"))
            }
            countChunkLineByte()
        case .chunkSizeLF(let size):
            guard b == HTTPSyntax.lf else { return fail(.badRequest("chunk size line not terminated by CRLF")) }
            chunkLineBytes = 0
            state = size == 0 ? .trailers : .chunkData(remaining: size)
        case .chunkDataCR:
            guard b == HTTPSyntax.cr else { return fail(.badRequest("missing CRLF after chunk data")) }
            state = .chunkDataLF
        case .chunkDataLF:
            guard b == HTTPSyntax.lf else { return fail(.badRequest("missing CRLF after chunk data")) }
            state = .chunkSize(size: 0, digits: 0)
        default:
            preconditionFailure("step called outside the chunk framing states")
        }
    }

    private mutating func countChunkLineByte() {
        if case .failed = state { return }
        chunkLineBytes += 1
        if chunkLineBytes > limits.maxChunkLineBytes { fail(.badRequest("chunk size line too long")) }
    }

    private mutating func fail(_ error: HTTPParseError) {
        state = .failed(error)
    }

    /// Buffers trailer bytes up to and including the next LF (or the end of `buffer`) and parses each complete
    /// line. Returns the index after the last byte taken.
    private mutating func consumeTrailers(_ buffer: UnsafeRawBufferPointer, from start: Int) -> Int {
        var end = start
        while end < buffer.count, buffer[end] != HTTPSyntax.lf { end += 1 }
        let foundLF = end < buffer.count
        if foundLF { end += 1 }
        // Take at most one byte past the limit: enough to know it is exceeded, without holding more.
        let room = limits.maxTrailerBytes - trailerBytes.count + 1
        let taken = min(end - start, room)
        trailerBytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[start..<(start + taken)]))
        if trailerBytes.count > limits.maxTrailerBytes {
            fail(.tooLarge("chunked trailer section larger than \(limits.maxTrailerBytes) bytes"))
            return start + taken
        }
        if foundLF { parseTrailerLine() }
        return end
    }

    private mutating func parseTrailerLine() {
        let lfIndex = trailerBytes.count - 1
        let lineStart = trailerLineStart
        trailerLineStart = trailerBytes.count
        guard lfIndex > lineStart, trailerBytes[lfIndex - 1] == HTTPSyntax.cr else {
            return fail(.badRequest("trailer line not terminated by CRLF"))
        }
        let line = lineStart..<(lfIndex - 1)
        if line.isEmpty {
            trailerBytes = []
            state = .done
            return
        }
        guard trailers.count < limits.maxHeaderCount else {
            return fail(.tooLarge("more than \(limits.maxHeaderCount) trailer fields"))
        }
        let result = trailerBytes.withUnsafeBytes { bytes -> Result<(String, String), HTTPParseError> in
            HTTPSyntax.parseFieldLine(bytes, line).map {
                (HTTPSyntax.string(bytes, $0.name), HTTPSyntax.string(bytes, $0.value))
            }
        }
        switch result {
        case .success(let (name, value)): trailers.add(name, value)
        case .failure(let error): fail(error)
        }
    }
}
