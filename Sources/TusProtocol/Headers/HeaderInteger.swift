/// Strict non-negative decimal integers for `Upload-Offset` / `Upload-Length` (spec: "MUST be a non-negative
/// integer"): digits only, so `+5`, ` 5`, `-1`, `1e3`, and values over `Int64.max` are rejected rather than
/// leniently parsed (`Int64("+5")` would accept a sign).
enum HeaderInteger {
    static func parse(_ value: String) -> Int64? {
        var result: Int64 = 0
        var sawDigit = false
        for byte in value.utf8 {
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
