import TusCrypto

/// `X-Request-ID`: the client's (or a proxy's) id when it is safe to put into logs and hook payloads,
/// otherwise a fresh one. Bounded and restricted to characters that need no escaping in a log line, a JSON
/// string or a header, so a client cannot forge log fields or split lines with it.
public enum RequestID {
    public static let headerName = "X-Request-ID"
    public static let maxLength = 128

    /// The client's id if it is 1...128 of `[A-Za-z0-9._:+/=-]`, else nil.
    public static func accept(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= maxLength else { return nil }
        let isSane = value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
                UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: "-"):
                true
            default: false
            }
        }
        return isSane ? value : nil
    }

    /// 128 random bits as 32 hex digits: unique across instances without coordination.
    public static func make() -> String { SecureRandom.uploadID() }
}
