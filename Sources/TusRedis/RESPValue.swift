/// One RESP2 value (the Redis protocol up to Redis 6's default): what a server replies and, as an array of bulk
/// strings, what a client sends.
///
/// RESP2 has two nulls, the null bulk string (`$-1`, a missing key) and the null array (`*-1`, a timed-out
/// `BLPOP`); callers never need to tell them apart, so both decode to `.null`, which encodes as `$-1`.
public enum RESPValue: Equatable, Hashable, Sendable {
    case simpleString(String)
    /// An error reply such as `ERR unknown command` or `NOSCRIPT No matching script`; the first word is the code.
    case error(String)
    case integer(Int64)
    case bulkString([UInt8])
    case array([RESPValue])
    case null

    /// The text of a simple or bulk string (bulk bytes decoded as UTF-8, invalid sequences repaired).
    public var string: String? {
        switch self {
        case .simpleString(let text): text
        case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }

    /// The bytes of a bulk or simple string.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes): bytes
        case .simpleString(let text): Array(text.utf8)
        default: nil
        }
    }

    public var integer: Int64? {
        if case .integer(let value) = self { value } else { nil }
    }

    public var array: [RESPValue]? {
        if case .array(let elements) = self { elements } else { nil }
    }

    public var isNull: Bool { self == .null }

    /// The wire form of this value.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = []
        encode(into: &bytes)
        return bytes
    }

    public func encode(into bytes: inout [UInt8]) {
        switch self {
        case .simpleString(let text):
            bytes.append(UInt8(ascii: "+"))
            bytes.append(contentsOf: text.utf8)
            bytes.append(contentsOf: crlf)
        case .error(let text):
            bytes.append(UInt8(ascii: "-"))
            bytes.append(contentsOf: text.utf8)
            bytes.append(contentsOf: crlf)
        case .integer(let value):
            appendHeader(UInt8(ascii: ":"), value, to: &bytes)
        case .bulkString(let payload):
            appendHeader(UInt8(ascii: "$"), Int64(payload.count), to: &bytes)
            bytes.append(contentsOf: payload)
            bytes.append(contentsOf: crlf)
        case .array(let elements):
            appendHeader(UInt8(ascii: "*"), Int64(elements.count), to: &bytes)
            for element in elements { element.encode(into: &bytes) }
        case .null:
            bytes.append(contentsOf: "$-1\r\n".utf8)
        }
    }
}

/// One argument of a command: a binary-safe byte string. Literals and `String`s convert implicitly, so a command
/// reads `["SET", key, .bytes(payload)]`.
public struct RedisArgument: Equatable, Hashable, Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public init(_ text: String) {
        bytes = Array(text.utf8)
    }

    public init(_ value: Int) {
        bytes = Array(String(value).utf8)
    }

    public init(stringLiteral value: String) {
        self.init(value)
    }

    public init(integerLiteral value: Int) {
        self.init(value)
    }

    public static func bytes(_ bytes: [UInt8]) -> RedisArgument { RedisArgument(bytes) }
    public static func string(_ text: String) -> RedisArgument { RedisArgument(text) }
    public static func integer(_ value: Int) -> RedisArgument { RedisArgument(value) }
}

/// Encodes commands the way every Redis client does: an array of bulk strings (the inline form cannot carry
/// arbitrary bytes).
public enum RESPCommandEncoder {
    public static func encode(_ arguments: [RedisArgument], into bytes: inout [UInt8]) {
        appendHeader(UInt8(ascii: "*"), Int64(arguments.count), to: &bytes)
        for argument in arguments {
            appendHeader(UInt8(ascii: "$"), Int64(argument.bytes.count), to: &bytes)
            bytes.append(contentsOf: argument.bytes)
            bytes.append(contentsOf: crlf)
        }
    }

    public static func encode(_ arguments: [RedisArgument]) -> [UInt8] {
        var bytes: [UInt8] = []
        encode(arguments, into: &bytes)
        return bytes
    }
}

private let crlf: [UInt8] = [13, 10]

/// `<type><decimal>\r\n` without going through `String` (this runs once per argument of every command).
private func appendHeader(_ type: UInt8, _ value: Int64, to bytes: inout [UInt8]) {
    bytes.append(type)
    if value < 0 { bytes.append(UInt8(ascii: "-")) }
    var magnitude = value.magnitude
    var digits:
        (
            UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
            UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
        ) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var count = 0
    withUnsafeMutableBytes(of: &digits) { buffer in
        repeat {
            buffer[count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
            magnitude /= 10
            count += 1
        } while magnitude > 0
        for index in stride(from: count - 1, through: 0, by: -1) { bytes.append(buffer[index]) }
    }
    bytes.append(contentsOf: crlf)
}
