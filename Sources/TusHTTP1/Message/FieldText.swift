/// Small text rules of header values, shared by the server's protocol layer, the client and the tests, so that
/// each is written once.
extension StringProtocol {
    /// Without leading and trailing optional whitespace (RFC 9110 §5.6.3 OWS: spaces and tabs).
    public func trimmingOWS() -> Substring {
        trimming { $0 == " " || $0 == "\t" }
    }

    /// Without the leading and trailing characters for which `isTrimmed` is true.
    public func trimming(while isTrimmed: (Character) -> Bool) -> Substring {
        var text = Substring(self)
        while let first = text.first, isTrimmed(first) { text.removeFirst() }
        while let last = text.last, isTrimmed(last) { text.removeLast() }
        return text
    }
}

/// Strict non-negative decimal integers (`Content-Length`, `Upload-Offset`, `Upload-Length`): digits only, so a
/// sign, spaces, an exponent, an empty value and anything above `Int64.max` are rejected rather than leniently
/// parsed (`Int64("+5")` would accept a sign).
public enum DecimalInteger {
    public static func parse(_ digits: some Sequence<UInt8>) -> Int64? {
        var result: Int64 = 0
        var sawDigit = false
        for byte in digits {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            let (multiplied, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (added, overflow2) = multiplied.addingReportingOverflow(Int64(byte - 0x30))
            if overflow1 || overflow2 { return nil }
            result = added
            sawDigit = true
        }
        return sawDigit ? result : nil
    }
}
