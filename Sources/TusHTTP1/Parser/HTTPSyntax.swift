/// Byte-level grammar shared by the head parser and the chunked trailer parser (RFC 9110 §5, RFC 9112 §2-§7).
/// Everything works on offsets into the caller's bytes so nothing is copied until a field is accepted.
enum HTTPSyntax {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A
    static let comma: UInt8 = 0x2C

    /// RFC 9110 tchar. A switch, not a table: a global table costs a lazy-init check on every access.
    @inline(__always)
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: true
        default: false
        }
    }

    @inline(__always)
    static func isWhitespace(_ b: UInt8) -> Bool { b == space || b == tab }

    /// field-vchar / SP / HTAB / obs-text: every byte except the controls (HTAB excepted) and DEL. Rejecting CR,
    /// LF and NUL here is what stops header injection and smuggling through odd line ends.
    @inline(__always)
    static func isFieldValueByte(_ b: UInt8) -> Bool { b == tab || (b >= 0x20 && b != 0x7F) }

    /// Hex digit value, or nil.
    @inline(__always)
    static func hexValue(_ b: UInt8) -> Int64? {
        switch b {
        case 0x30...0x39: Int64(b - 0x30)
        case 0x41...0x46: Int64(b - 0x41 + 10)
        case 0x61...0x66: Int64(b - 0x61 + 10)
        default: nil
        }
    }

    struct FieldRange: Sendable {
        var name: Range<Int>
        var value: Range<Int>
    }

    /// Splits one field line (without its CRLF) into name and OWS-trimmed value.
    static func parseFieldLine(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) -> Result<
        FieldRange, HTTPParseError
    > {
        guard !line.isEmpty else { return .failure(.badRequest("empty header line")) }
        if isWhitespace(bytes[line.lowerBound]) {
            // RFC 9112 §5.2: obs-fold is obsolete and a classic smuggling vector; reject rather than unfold.
            return .failure(.badRequest("obsolete line folding in header section"))
        }
        var i = line.lowerBound
        while i < line.upperBound {
            let b = bytes[i]
            if b == colon { break }
            if !isTokenByte(b) {
                if isWhitespace(b) { return .failure(.badRequest("whitespace before colon in header field")) }
                return .failure(.badRequest("invalid character in header field name"))
            }
            i += 1
        }
        guard i < line.upperBound else { return .failure(.badRequest("header field without colon")) }
        guard i > line.lowerBound else { return .failure(.badRequest("empty header field name")) }
        let name = line.lowerBound..<i
        var valueStart = i + 1
        var valueEnd = line.upperBound
        while valueStart < valueEnd, isWhitespace(bytes[valueStart]) { valueStart += 1 }
        while valueEnd > valueStart, isWhitespace(bytes[valueEnd - 1]) { valueEnd -= 1 }
        var j = valueStart
        while j < valueEnd {
            guard isFieldValueByte(bytes[j]) else {
                return .failure(.badRequest("invalid character in header field value"))
            }
            j += 1
        }
        return .success(FieldRange(name: name, value: valueStart..<valueEnd))
    }

    /// Whether `range` of `bytes` equals `lowercased` ignoring ASCII case. `lowercased` must be lowercase ASCII.
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercased: StaticString)
        -> Bool
    {
        let count = lowercased.utf8CodeUnitCount
        guard range.count == count else { return false }
        let expected = lowercased.utf8Start
        for k in 0..<count {
            var b = bytes[range.lowerBound + k]
            if b >= 0x41 && b <= 0x5A { b |= 0x20 }
            if b != expected[k] { return false }
        }
        return true
    }

    /// Calls `body` with each comma-separated element of a list value, OWS-trimmed (possibly empty).
    /// Returns false as soon as `body` does.
    static func forEachListElement(
        _ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ body: (Range<Int>) -> Bool
    ) -> Bool {
        var start = range.lowerBound
        while true {
            var end = start
            while end < range.upperBound, bytes[end] != comma { end += 1 }
            var s = start
            var e = end
            while s < e, isWhitespace(bytes[s]) { s += 1 }
            while e > s, isWhitespace(bytes[e - 1]) { e -= 1 }
            if !body(s..<e) { return false }
            if end >= range.upperBound { return true }
            start = end + 1
        }
    }

    static func string(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }
}
