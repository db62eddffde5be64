import TusCrypto
import TusHTTP1

/// The few RFC 9651 structured-field forms the draft's fields use, parsed strictly: a value that is not exactly the
/// form is nil, and the adapter answers 400 (rows H1-H7).
enum StructuredField {
    /// A non-negative sf-integer: at most 15 digits (so at most 2^53-1-ish, row H7), no sign, no fraction. Leading
    /// zeros are valid ("05" is 5).
    static func integer(_ text: Substring) -> Int64? {
        let value = text.trimmingOWS()
        guard !value.isEmpty, value.utf8.count <= 15,
            value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return Int64(value)
    }

    /// An sf-boolean: `?1` or `?0`.
    static func boolean(_ text: Substring) -> Bool? {
        switch text.trimmingOWS() {
        case "?1": true
        case "?0": false
        default: nil
        }
    }

    /// The first member of an RFC 9530 digest dictionary (`sha-256=:base64:, sha-512=:...:`) with an algorithm
    /// this server hashes; nil when none is (unsupported algorithms are ignored, row G4). `.failure` when a
    /// supported member's value is not a byte sequence of the algorithm's length.
    static func digest(_ text: Substring) -> Result<UploadChecksum, DigestFieldError>? {
        for member in text.split(separator: ",") {
            let parts = member.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let algorithm: DigestAlgorithm
            switch parts[0].trimmingOWS().lowercased() {
            case "sha-256": algorithm = .sha256
            case "sha-512": algorithm = .sha512
            default: continue
            }
            let value = parts[1].trimmingOWS()
            guard value.count >= 2, value.hasPrefix(":"), value.hasSuffix(":"),
                let bytes = Base64.decode(value.dropFirst().dropLast()), bytes.count == algorithm.digestLength
            else { return .failure(DigestFieldError()) }
            return .success(UploadChecksum(algorithm: algorithm, expected: bytes))
        }
        return nil
    }

    struct DigestFieldError: Error {}
}
