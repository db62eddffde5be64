import TusCrypto

/// `Content-Type` and `Content-Disposition` for downloads, from client-supplied metadata. Both are attacker
/// input, so only a short list of harmless types is served inline; everything else is an
/// `application/octet-stream` attachment (stored HTML or SVG must never render on this origin).
enum DownloadHeaders {
    static let inlineTypes: Set<String> = [
        "image/png", "image/jpeg", "image/gif", "image/webp", "video/mp4", "video/webm", "audio/mpeg", "audio/ogg",
        "application/pdf", "text/plain",
    ]

    static func contentType(filetype: String?) -> String {
        guard let filetype = filetype?.trimmingOWS().lowercased(), inlineTypes.contains(filetype) else {
            return "application/octet-stream"
        }
        return filetype
    }

    /// `inline` or `attachment`, plus `filename="..."` (ASCII, quotes/backslashes/controls replaced) and,
    /// when the name is not plain ASCII, `filename*=UTF-8''...` (RFC 6266 / RFC 5987).
    static func contentDisposition(filename: String?, isInline: Bool) -> String {
        var value = isInline ? "inline" : "attachment"
        guard let filename, !filename.isEmpty else { return value }
        var fallback = ""
        var needsExtended = false
        for scalar in filename.unicodeScalars {
            switch scalar.value {
            case 0x20...0x7E where scalar != "\"" && scalar != "\\":
                fallback.unicodeScalars.append(scalar)
            case 0x00...0x1F, 0x7F:
                needsExtended = true  // dropped from the fallback; percent-encoded in filename*
            default:
                fallback.append("_")
                needsExtended = true
            }
        }
        value += "; filename=\"\(fallback)\""
        if needsExtended || fallback != filename {
            value += "; filename*=UTF-8''" + percentEncode(filename)
        }
        return value
    }

    /// RFC 5987 `attr-char` kept, everything else `%XX` of its UTF-8 bytes.
    private static func percentEncode(_ text: String) -> String {
        var out = [UInt8]()
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"),
                UInt8(ascii: "&"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"),
                UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                Hex.append(byte, to: &out, uppercase: true)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
