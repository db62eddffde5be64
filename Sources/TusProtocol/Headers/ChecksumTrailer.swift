import TusCrypto
import TusHTTP1

/// checksum-trailer: `Trailer: Upload-Checksum` announces that the digest comes after a chunked body, when the
/// client computed it while streaming. The algorithm is only known at the end, so the body is hashed with every
/// enabled algorithm as it arrives (the cost of trailers; the header form hashes once) and the request's bytes
/// are discardable exactly as with the header: mismatch → 460, malformed or unsupported → 400, no trailer at all
/// → 460; in each case the bytes are discarded.
extension TusHandler {
    /// The algorithms to hash with for a request that announces a checksum trailer; empty when it does not (or
    /// when it carries the `Upload-Checksum` header, which wins).
    func checksumTrailerAlgorithms(_ request: TusRequest) -> [DigestAlgorithm] {
        let headers = request.head.headers
        guard checksumEnabled, headers["Upload-Checksum"] == nil else { return [] }
        let announced = headers.values(for: "Trailer").contains { value in
            value.split(separator: ",").contains { name in
                String(name.trimmingOWS()).equalsIgnoringASCIICase("Upload-Checksum")
            }
        }
        return announced ? configuration.checksumAlgorithms : []
    }
}

extension UploadChecksum {
    /// The verdict on a body hashed with `digests` (one per candidate algorithm) against a trailer section.
    static func verifyTrailer(_ trailers: HTTPHeaders, digests: [DigestAlgorithm: [UInt8]]) -> TusError? {
        guard let value = trailers["Upload-Checksum"] else { return .missingChecksumTrailer }
        switch parse(value, enabled: Array(digests.keys)) {
        case .failure(let error): return error
        case .success(let checksum): return digests[checksum.algorithm] == checksum.expected ? nil : .checksumMismatch
        }
    }
}
