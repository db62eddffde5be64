import TusCrypto

/// `Upload-Metadata`: comma-separated `key[ base64value]` pairs.
///
/// Strict by choice (spec: a server MAY reject): empty keys, keys with whitespace or control bytes, duplicate
/// keys, values that are not strict base64, and extra tokens make the whole header invalid (400), so a client
/// bug is reported instead of silently losing metadata (tusd drops bad pairs). Accepted leniencies that real
/// clients need: an empty or blank header (tuspy, go-tus), bare keys and `key ` (aiotus), whitespace after
/// commas (old aiotus).
public struct UploadMetadata: Sendable, Equatable {
    /// Pairs in header order; values decoded.
    public let pairs: [(key: String, value: [UInt8])]

    public static func == (a: UploadMetadata, b: UploadMetadata) -> Bool {
        a.pairs.count == b.pairs.count && zip(a.pairs, b.pairs).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public subscript(key: String) -> [UInt8]? { pairs.first { $0.key == key }?.value }

    /// nil when invalid. A blank header parses to no pairs.
    public static func parse(_ header: String) -> UploadMetadata? {
        var pairs: [(key: String, value: [UInt8])] = []
        var seen: Set<String> = []
        if isBlank(header[...]) { return UploadMetadata(pairs: []) }
        for rawPair in header.split(separator: ",", omittingEmptySubsequences: false) {
            let pair = rawPair.trimmingOWS()
            let key: Substring
            let value: [UInt8]
            if let space = pair.firstIndex(of: " ") {
                key = pair[..<space]
                guard let decoded = Base64.decode(pair[pair.index(after: space)...]) else { return nil }
                value = decoded
            } else {
                key = pair
                value = []
            }
            guard !key.isEmpty, key.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F && $0 != UInt8(ascii: ",") }) else {
                return nil
            }
            let keyString = String(key)
            guard seen.insert(keyString).inserted else { return nil }
            pairs.append((keyString, value))
        }
        return UploadMetadata(pairs: pairs)
    }

    /// The header form of `pairs` (a hook's `ChangeFileInfo.MetaData`); nil when empty. Keys a header could
    /// not carry (empty, whitespace, comma) are dropped.
    public static func encode(_ pairs: [(key: String, value: String)]) -> String? {
        let encoded = pairs.compactMap { pair -> String? in
            guard !pair.key.isEmpty,
                pair.key.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F && $0 != UInt8(ascii: ",") })
            else { return nil }
            return pair.value.isEmpty ? pair.key : pair.key + " " + Base64.encode(Array(pair.value.utf8))
        }
        return encoded.isEmpty ? nil : encoded.joined(separator: ",")
    }

    static func isBlank(_ text: Substring) -> Bool {
        text.utf8.allSatisfy { $0 == 0x20 || $0 == 0x09 }
    }
}
