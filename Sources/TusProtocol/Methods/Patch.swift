import TusCrypto
import TusHTTP1

extension TusHandler {
    /// Parses what the head says (415, 400 for offset/length/checksum) and hands the append to the service, which
    /// checks the stored state (404/410, 409, deferred length), takes the lock and streams the body.
    func handlePatch(_ request: TusRequest, id: String) {
        let headers = request.head.headers
        guard Self.isOffsetStream(headers["Content-Type"]) else { return fail(request, .invalidContentType) }
        guard let offsetText = headers["Upload-Offset"], let offset = DecimalInteger.parse(offsetText.utf8) else {
            return fail(request, .invalidOffset)
        }
        var declaredLength: Int64?
        if let lengthText = headers["Upload-Length"] {
            guard let length = DecimalInteger.parse(lengthText.utf8) else { return fail(request, .invalidUploadLength) }
            declaredLength = length
        }
        let checksum: UploadChecksum?
        switch parseChecksum(request) {
        case .failure(let error): return fail(request, error)
        case .success(let parsed): checksum = parsed
        }
        let append = UploadService.AppendRequest(
            offset: offset, declaredLength: declaredLength, knownBodyLength: request.head.bodyFraming.knownLength,
            checksum: appendChecksum(checksum, trailerAlgorithms: checksumTrailerAlgorithms(request)))
        service.append(
            to: id, append, for: request.caller, body: ExchangeBody(exchange: request.exchange),
            completion: appended(request, location: nil))
    }

    /// The answer to an append (PATCH, or the body of a creation with `location`): 204/201 with the new
    /// `Upload-Offset`, or the error. An error once the body was being read closes the connection (the rest may
    /// still be arriving); a refusal before it only when the body is certainly unwanted. tusd sends `Location` even
    /// when the creation's body failed: the upload exists and can be resumed.
    func appended(_ request: TusRequest, location: String?) -> (UploadService.AppendOutcome) -> Void {
        { [self] outcome in
            let headers: HTTPHeaders = location.map { ["Location": $0] } ?? [:]
            switch outcome {
            case .refused(let error):
                let closeConnection: Bool =
                    switch error {
                    case .exceedsLength: true
                    case .tooLarge, .finalNotWritable: request.head.bodyFraming.hasBody
                    default: false
                    }
                fail(request, because: error, headers: headers, closeConnection: closeConnection)
            case .failed(let error):
                fail(request, because: error, headers: headers, closeConnection: true)
            case .appended(let appended):
                var headers: HTTPHeaders = ["Upload-Offset": String(appended.upload.offset)]
                addExpiry(appended.upload, to: &headers)
                var response = HTTPResponse(status: .noContent, headers: headers)
                if let location {
                    response.headers.add("Location", location)
                    response.status = .created
                }
                response.apply(appended.response)
                send(request, response)
            }
        }
    }

    /// What the append engine verifies the body against: the `Upload-Checksum` header, or a checksum trailer
    /// judged by tus's trailer rules.
    func appendChecksum(
        _ checksum: UploadChecksum?, trailerAlgorithms: [DigestAlgorithm]
    ) -> UploadService.AppendChecksum {
        if let checksum { return .digest(checksum) }
        guard !trailerAlgorithms.isEmpty else { return .none }
        return .afterBody(algorithms: trailerAlgorithms) { trailers, digests in
            UploadChecksum.verifyTrailer(trailers, digests: digests).map { error in
                switch error {
                case .missingChecksumTrailer: .checksumMissing
                case .unsupportedChecksumAlgorithm: .checksumAlgorithmUnsupported
                case .checksumMismatch: .checksumMismatch
                default: .checksumMalformed
                }
            }
        }
    }

    func byteLimit(length: Int64?, offset: Int64) -> Int64? { service.byteLimit(length: length, offset: offset) }

    func parseChecksum(_ request: TusRequest) -> Result<UploadChecksum?, TusError> {
        guard let header = request.head.headers["Upload-Checksum"] else { return .success(nil) }
        guard checksumEnabled else { return .failure(.unsupportedChecksumAlgorithm) }
        return UploadChecksum.parse(header, enabled: configuration.checksumAlgorithms).map { $0 }
    }

    /// `application/offset+octet-stream`, ignoring case and parameters.
    static func isOffsetStream(_ contentType: String?) -> Bool {
        guard let contentType else { return false }
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map { String($0.trimmingOWS()) } ?? ""
        return mediaType.equalsIgnoringASCIICase("application/offset+octet-stream")
    }
}

/// The exchange as the append engine's body source.
struct ExchangeBody: UploadBodySource {
    let exchange: any HTTPExchange
    func readBody(into sink: any HTTPBodySink) { exchange.readBody(into: sink) }
    func stopBody() { exchange.stopBody() }
}
