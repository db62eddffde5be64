/// Bounds that keep a broken or hostile server from making the client allocate without limit.
public struct RESPDecoderLimits: Sendable, Equatable {
    /// Longest bulk string accepted (Redis's own `proto-max-bulk-len` defaults to 512 MiB; the upload state we
    /// keep is tiny, so a reply this large means something is wrong).
    public var maxBulkLength: Int
    public var maxArrayCount: Int
    /// Arrays inside arrays; scripts can return nested tables, not deep ones.
    public var maxDepth: Int
    /// Longest `+`, `-` or `:` line (and length header); without it an endless line grows the buffer forever.
    public var maxLineLength: Int

    public init(
        maxBulkLength: Int = 64 << 20, maxArrayCount: Int = 1 << 20, maxDepth: Int = 32, maxLineLength: Int = 64 << 10
    ) {
        self.maxBulkLength = maxBulkLength
        self.maxArrayCount = maxArrayCount
        self.maxDepth = maxDepth
        self.maxLineLength = maxLineLength
    }
}

public enum RESPDecodeError: Error, Equatable, Hashable, Sendable {
    /// The first byte of a value is none of `+ - : $ *`.
    case invalidType(UInt8)
    /// A length or integer that is not `-?[0-9]+` or does not fit 64 bits.
    case invalidInteger
    /// A negative length other than -1.
    case invalidLength(Int64)
    case bulkTooLong(Int64)
    case arrayTooLong(Int64)
    case nestedTooDeep
    case lineTooLong
    /// A bulk string not followed by CRLF, or a CR inside a line not followed by LF.
    case missingCRLF
}

public enum RESPDecodeResult: Equatable, Sendable {
    case needMoreData
    case value(RESPValue)
    case failure(RESPDecodeError)
}

/// Incremental RESP2 decoder: `append` bytes as they arrive, then call `next()` until it says `.needMoreData`.
///
/// The decoder keeps the bytes it has not yet turned into values, so the caller may reuse its read buffer at
/// once. An incomplete value is parsed again from its start when more bytes arrive, but not before the buffer
/// holds at least as many bytes as the last attempt proved necessary: a large bulk string arriving in many reads
/// costs one header parse per read, not a rescan of its payload. Errors are sticky: once `next()` failed the
/// stream is out of sync and the connection must be dropped.
public struct RESPDecoder {
    public let limits: RESPDecoderLimits
    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var neededCount = 0
    private var stickyError: RESPDecodeError?

    public init(limits: RESPDecoderLimits = RESPDecoderLimits()) {
        self.limits = limits
    }

    /// Bytes received and not yet returned as values.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    /// Forgets buffered bytes and a sticky error (a new connection starts clean).
    public mutating func reset() {
        buffer.removeAll(keepingCapacity: true)
        readIndex = 0
        neededCount = 0
        stickyError = nil
    }

    public mutating func next() -> RESPDecodeResult {
        if let stickyError { return .failure(stickyError) }
        guard buffer.count > readIndex, buffer.count >= neededCount else { return .needMoreData }
        let start = readIndex
        let limits = limits
        let outcome: ParseOutcome = buffer.withUnsafeBufferPointer { bytes in
            var parser = Parser(bytes: bytes, limits: limits, index: start)
            do throws(RESPDecodeError) {
                if let value = try parser.parseValue(depth: 0) {
                    return .value(value, end: parser.index)
                }
                return .incomplete(needed: parser.needed)
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .value(let value, let end):
            readIndex = end
            neededCount = 0
            return .value(value)
        case .incomplete(let needed):
            neededCount = max(needed, buffer.count + 1)
            return .needMoreData
        case .failure(let error):
            stickyError = error
            return .failure(error)
        }
    }

    /// Drops consumed bytes before new ones arrive: all of them when everything was consumed (the usual case),
    /// otherwise only once the consumed prefix is large enough to be worth the move.
    private mutating func compact() {
        guard readIndex > 0 else { return }
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            neededCount = 0
            readIndex = 0
        } else if readIndex >= 64 << 10 || readIndex * 2 >= buffer.count {
            buffer.removeFirst(readIndex)
            neededCount = max(0, neededCount - readIndex)
            readIndex = 0
        }
    }

    private enum ParseOutcome {
        case value(RESPValue, end: Int)
        case incomplete(needed: Int)
        case failure(RESPDecodeError)
    }
}

/// One parse attempt over the buffered bytes; `nil` from a parse function means "incomplete", with `needed` the
/// buffer size that attempt would at least need.
private struct Parser {
    let bytes: UnsafeBufferPointer<UInt8>
    let limits: RESPDecoderLimits
    var index: Int
    var needed = 0

    init(bytes: UnsafeBufferPointer<UInt8>, limits: RESPDecoderLimits, index: Int) {
        self.bytes = bytes
        self.limits = limits
        self.index = index
    }

    mutating func parseValue(depth: Int) throws(RESPDecodeError) -> RESPValue? {
        guard index < bytes.count else {
            needed = index + 1
            return nil
        }
        let type = bytes[index]
        let lineStart = index + 1
        switch type {
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let lineEnd = try findLineEnd(from: lineStart) else { return nil }
            let text = String(decoding: bytes[lineStart..<lineEnd], as: UTF8.self)
            index = lineEnd + 2
            return type == UInt8(ascii: "+") ? .simpleString(text) : .error(text)
        case UInt8(ascii: ":"):
            guard let value = try parseIntegerLine(from: lineStart) else { return nil }
            return .integer(value)
        case UInt8(ascii: "$"):
            guard let length = try parseIntegerLine(from: lineStart) else { return nil }
            if length == -1 { return .null }
            guard length >= 0 else { throw .invalidLength(length) }
            guard length <= limits.maxBulkLength else { throw .bulkTooLong(length) }
            let payloadStart = index
            let payloadEnd = payloadStart + Int(length)
            guard payloadEnd + 2 <= bytes.count else {
                needed = payloadEnd + 2
                return nil
            }
            guard bytes[payloadEnd] == 13, bytes[payloadEnd + 1] == 10 else { throw .missingCRLF }
            index = payloadEnd + 2
            return .bulkString(Array(bytes[payloadStart..<payloadEnd]))
        case UInt8(ascii: "*"):
            guard let count = try parseIntegerLine(from: lineStart) else { return nil }
            if count == -1 { return .null }
            guard count >= 0 else { throw .invalidLength(count) }
            guard count <= limits.maxArrayCount else { throw .arrayTooLong(count) }
            guard depth < limits.maxDepth else { throw .nestedTooDeep }
            var elements: [RESPValue] = []
            // The count comes from the peer: reserve for what the bytes at hand could hold, not for the claim.
            elements.reserveCapacity(min(Int(count), (bytes.count - index) / 3 + 1))
            for _ in 0..<count {
                guard let element = try parseValue(depth: depth + 1) else { return nil }
                elements.append(element)
            }
            return .array(elements)
        default:
            throw .invalidType(type)
        }
    }

    /// The index of the CR that ends the line starting at `start`, nil if the line is not complete yet.
    private mutating func findLineEnd(from start: Int) throws(RESPDecodeError) -> Int? {
        var position = start
        let limit = min(bytes.count, start + limits.maxLineLength + 1)
        while position < limit {
            if bytes[position] == 13 {
                guard position + 1 < bytes.count else {
                    needed = position + 2
                    return nil
                }
                guard bytes[position + 1] == 10 else { throw .missingCRLF }
                return position
            }
            position += 1
        }
        guard bytes.count - start <= limits.maxLineLength else { throw .lineTooLong }
        needed = bytes.count + 1
        return nil
    }

    /// `-?[0-9]+\r\n`, strictly (Redis itself accepts nothing else in a length).
    private mutating func parseIntegerLine(from start: Int) throws(RESPDecodeError) -> Int64? {
        guard let lineEnd = try findLineEnd(from: start) else { return nil }
        var position = start
        let isNegative = position < lineEnd && bytes[position] == UInt8(ascii: "-")
        if isNegative { position += 1 }
        guard position < lineEnd else { throw .invalidInteger }
        var magnitude: UInt64 = 0
        while position < lineEnd {
            let digit = bytes[position] &- UInt8(ascii: "0")
            guard digit < 10 else { throw .invalidInteger }
            let (times10, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(digit))
            guard !overflow1, !overflow2 else { throw .invalidInteger }
            magnitude = sum
            position += 1
        }
        let value: Int64
        if isNegative {
            guard magnitude <= UInt64(Int64.max) + 1 else { throw .invalidInteger }
            value = magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        } else {
            guard magnitude <= UInt64(Int64.max) else { throw .invalidInteger }
            value = Int64(magnitude)
        }
        index = lineEnd + 2
        return value
    }
}
