/// A size as people write it on a command line or in a config file: the one parser behind every size flag
/// (`--min-free-space`, tus-cli's `--chunk-size`, tus-bench's sizes), so that `64K`, `64KiB` and `64kb` mean the
/// same thing everywhere.
///
/// Digits, optionally followed by K, M, G or T (any case; powers of 1024), optionally followed by `iB` or `B`.
/// Spaces around are ignored. No sign, no fraction. Callers check ranges (`0` parses).
public struct ByteCount: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var bytes: Int64

    public init(_ bytes: Int64) { self.bytes = bytes }

    public init(parsing text: String) throws(QuantityParseError) {
        var rest = Substring(text.trimmingSpaces)
        let error = QuantityParseError(text: text, expected: "a size like 1048576, 64K, 5M or 8MiB")
        if rest.lowercased().hasSuffix("ib") {
            rest = rest.dropLast(2)
            guard let last = rest.last, Self.scales[Character(last.lowercased())] != nil else { throw error }
        } else if rest.last == "b" || rest.last == "B" {
            rest = rest.dropLast()
        }
        var scale: Int64 = 1
        if let last = rest.last, let unit = Self.scales[Character(last.lowercased())] {
            scale = unit
            rest = rest.dropLast()
        }
        guard let count = decimalDigits(rest) else { throw error }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: scale)
        guard !overflow else { throw QuantityParseError(text: text, expected: "a size below 8 EiB") }
        self.bytes = bytes
    }

    private static let scales: [Character: Int64] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40]

    public static func < (lhs: ByteCount, rhs: ByteCount) -> Bool { lhs.bytes < rhs.bytes }

    public var description: String { String(bytes) }
}

extension Duration {
    /// A duration as the flags take it (tusd takes Go durations): `500ms`, `1s`, `2.5s`, or bare seconds (`30`,
    /// `0.5`). Spaces around are ignored; negative values are refused.
    public init(parsing text: String) throws(QuantityParseError) {
        let trimmed = text.trimmingSpaces
        let error = QuantityParseError(text: text, expected: "a duration like 1s, 2.5s or 500ms")
        var number = Substring(trimmed)
        var millisecondsPerUnit = 1000.0
        if number.hasSuffix("ms") {
            number = number.dropLast(2)
            millisecondsPerUnit = 1
        } else if number.hasSuffix("s") {
            number = number.dropLast()
        }
        // `Double` alone would also take "nan", "inf", hex and exponents.
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
            let value = Double(number), value.isFinite
        else { throw error }
        let milliseconds = value * millisecondsPerUnit
        guard milliseconds < Double(UInt64.max / 2) else { throw error }
        self = .milliseconds(UInt64(milliseconds.rounded(.down)))
    }

    /// Whole milliseconds (what timers take), rounded down; 0 for a negative duration.
    public var wholeMilliseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) * 1000 + UInt64(attoseconds / 1_000_000_000_000_000)
    }
}

/// A size or duration that did not parse; `description` is meant for the user (a flag's error message).
public struct QuantityParseError: Error, Equatable, CustomStringConvertible {
    public var text: String
    public var expected: String

    public var description: String { "'\(text)' is not \(expected)" }
}

private func decimalDigits(_ text: Substring) -> Int64? {
    guard !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
    return Int64(text)
}

extension String {
    fileprivate var trimmingSpaces: Substring {
        var text = Substring(self)
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return text
    }
}
