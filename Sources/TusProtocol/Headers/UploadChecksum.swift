public import TusCrypto

/// `Upload-Checksum: <algorithm> <base64 digest>`, parsed and length-checked before the body is read, so a
/// bad header costs no upload bandwidth.
public struct UploadChecksum: Equatable, Sendable {
    public let algorithm: DigestAlgorithm
    public let expected: [UInt8]

    public init(algorithm: DigestAlgorithm, expected: [UInt8]) {
        self.algorithm = algorithm
        self.expected = expected
    }

    static func parse(_ header: String, enabled: [DigestAlgorithm]) -> Result<UploadChecksum, TusError> {
        let parts = header.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .failure(.invalidChecksumHeader) }
        guard let algorithm = DigestAlgorithm(rawValue: String(parts[0])), enabled.contains(algorithm) else {
            return .failure(.unsupportedChecksumAlgorithm)
        }
        guard let digest = Base64.decode(parts[1]), digest.count == algorithm.digestLength else {
            return .failure(.invalidChecksumHeader)
        }
        return .success(UploadChecksum(algorithm: algorithm, expected: digest))
    }
}
