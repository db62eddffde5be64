/// IMF-fixdate (RFC 9110 §5.6.7), e.g. `Wed, 25 Jun 2014 16:00:00 GMT`, for `Date` and `Upload-Expires`. Written out
/// rather than through Foundation's DateFormatter, whose output depends on locale settings unless every
/// option is pinned, and which is slow to create.
public enum HTTPDate {
    private static let names: [UInt8] = Array("SunMonTueWedThuFriSatJanFebMarAprMayJunJulAugSepOctNovDec".utf8)

    /// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), 29 bytes written into the string's own storage: every
    /// response with `Upload-Expires` formats one, and interpolating the parts cost a dozen small strings each.
    public static func format(unixSeconds: Int64) -> String {
        let days = unixSeconds >= 0 ? unixSeconds / 86_400 : (unixSeconds - 86_399) / 86_400
        let secondsOfDay = unixSeconds - days * 86_400
        let (year, month, day) = civil(fromDays: days)
        let weekday = Int(((days % 7) + 11) % 7)  // 1970-01-01 was a Thursday (index 4)
        // Years outside 0...9999 have no four-digit form; they are written with as many digits as they take.
        guard (0...9999).contains(year) else {
            return Self.format(year: year, month: month, day: day, weekday: weekday, secondsOfDay: secondsOfDay)
        }
        return String(unsafeUninitializedCapacity: 29) { text in
            var at = 0
            func name(_ index: Int) {
                for offset in 0..<3 { text[at + offset] = names[3 * index + offset] }
                at += 3
            }
            func digits(_ value: Int64, _ count: Int) {
                var value = value
                for offset in stride(from: count - 1, through: 0, by: -1) {
                    text[at + offset] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
                at += count
            }
            func byte(_ character: Unicode.Scalar) {
                text[at] = UInt8(ascii: character)
                at += 1
            }
            name(weekday)
            byte(",")
            byte(" ")
            digits(day, 2)
            byte(" ")
            name(7 + Int(month) - 1)
            byte(" ")
            digits(year, 4)
            byte(" ")
            digits(secondsOfDay / 3600, 2)
            byte(":")
            digits(secondsOfDay / 60 % 60, 2)
            byte(":")
            digits(secondsOfDay % 60, 2)
            for character in " GMT".unicodeScalars { byte(character) }
            return at
        }
    }

    private static func format(year: Int64, month: Int64, day: Int64, weekday: Int, secondsOfDay: Int64) -> String {
        func name(_ index: Int) -> String { String(decoding: names[3 * index..<3 * index + 3], as: UTF8.self) }
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(name(weekday)), \(two(day)) \(name(7 + Int(month) - 1)) \(year) "
            + "\(two(secondsOfDay / 3600)):\(two(secondsOfDay / 60 % 60)):\(two(secondsOfDay % 60)) GMT"
    }

    /// Howard Hinnant's `civil_from_days`.
    private static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
