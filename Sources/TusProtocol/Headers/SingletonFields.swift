public import TusHTTP1

/// Header fields that carry one value. Sent twice, they are ambiguous: one hop may honour the first and another
/// the last (`Upload-Length: 5` then `Upload-Length: 6` once created a 5-byte upload), so such a request is
/// refused rather than guessed at. Only repeated field lines count: none of these values is a list, and a
/// comma inside one line is that header's own syntax (Upload-Metadata) or simply invalid (Upload-Length).
public enum SingletonFields {
    public static let names = [
        "Upload-Length", "Upload-Offset", "Upload-Defer-Length", "Upload-Checksum", "Upload-Concat",
        "Upload-Metadata", "Tus-Resumable", "Content-Type", "X-HTTP-Method-Override",
    ]

    /// The first of `names` that appears on more than one field line, spelled as in `names`.
    /// Seen names as bits of one word: every request runs this, and an array of flags was an allocation each time.
    public static func firstRepeated(in headers: HTTPHeaders) -> String? {
        var seen: UInt64 = 0
        for field in headers {
            guard let index = names.firstIndex(where: { field.name.equalsIgnoringASCIICase($0) }) else { continue }
            let bit: UInt64 = 1 << UInt64(index)
            if seen & bit != 0 { return names[index] }
            seen |= bit
        }
        return nil
    }
}
