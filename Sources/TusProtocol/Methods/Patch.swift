import TusCrypto
import TusHTTP1

extension TusHandler {
    /// Validates everything the head can tell before taking the lock or reading a byte (415, 400 for
    /// offset/length/checksum, 404/410), then takes the upload's lock (asking a previous holder to let go),
    /// re-checks against the now-stable state (409, deferred length), and streams the body.
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
        let holder = LockHolder()
        withUpload(request, id: id) { [self] info in
            // A final's bytes are its partials'; nothing may append to it (spec: 403).
            if info.isFinal { return fail(request, .modifyFinal, closeConnection: request.head.bodyFraming.hasBody) }
            let waitStarted = Self.monotonicNanoseconds()
            locker.lock(
                id: id, executor: request.exchange.executor,
                timeoutMilliseconds: configuration.lockReleaseTimeoutMilliseconds,
                onReleaseRequested: { holder.requestRelease() }
            ) { [self] result in
                switch result {
                case .failure(let error): fail(request, Self.mapLockError(error))
                case .success(let lock):
                    measureLockWait(since: waitStarted, request)
                    // Re-read under the lock: the previous holder may have moved the offset.
                    withUpload(request, id: id, release: lock) { [self] info in
                        patchLocked(
                            request, info: info, offset: offset, declaredLength: declaredLength, checksum: checksum,
                            lock: lock, holder: holder)
                    }
                }
            }
        }
    }

    private func patchLocked(
        _ request: TusRequest, info: UploadInfo, offset: Int64, declaredLength: Int64?, checksum: UploadChecksum?,
        lock: any UploadLock, holder: LockHolder
    ) {
        let id = info.id
        let executor = request.exchange.executor
        func reject(_ error: TusError, closeConnection: Bool = false) {
            lock.release()
            fail(request, error, closeConnection: closeConnection)
        }
        if holder.isReleaseRequested { return reject(.uploadInterrupted) }
        guard offset == info.offset else { return reject(.mismatchedOffset) }
        var length = info.length
        if let declaredLength {
            // "Once set the length MUST NOT be changed", not even to the same value (tusd does the same).
            guard info.isLengthDeferred else { return reject(.lengthAlreadySet) }
            guard declaredLength >= info.offset else { return reject(.lengthBelowOffset) }
            if let maxSize = maxUploadLength(request), declaredLength > maxSize {
                return reject(.maxSizeExceeded, closeConnection: request.head.bodyFraming.hasBody)
            }
            length = declaredLength
        }
        let limit = byteLimit(length: length, offset: offset)
        if let known = request.head.bodyFraming.knownLength, let limit, known > limit {
            // Close instead of draining: the client learns at once, and nothing is read.
            return reject(.uploadSizeExceeded, closeConnection: true)
        }
        let trailerAlgorithms = checksumTrailerAlgorithms(request)
        let discardable = checksum != nil || !trailerAlgorithms.isEmpty
        var declared = info
        declared.length = length
        let openWriter = { [self] in
            store.openWriter(id: id, startingAt: offset, discardable: discardable, lock: lock, on: executor) { [self] result in
                switch result {
                case .failure(let error): reject(Self.mapStoreError(error))
                case .success(let writer):
                    UploadAppend(
                        service: service, caller: request.caller, body: ExchangeBody(exchange: request.exchange),
                        writer: writer, lock: lock, holder: holder, limit: limit,
                        checksum: appendChecksum(checksum, trailerAlgorithms: trailerAlgorithms), purpose: .append,
                        upload: declared, completion: appended(request, location: nil)
                    ).start()
                }
            }
        }
        guard let declaredLength else { return openWriter() }
        store.declareLength(id: id, length: declaredLength, on: executor) { result in
            switch result {
            case .failure(let error): reject(Self.mapStoreError(error))
            case .success: openWriter()
            }
        }
    }

    /// The answer to an append's body (PATCH, or the body of a creation with `location`): 204/201 with the new
    /// `Upload-Offset`, or the error, always closing the connection (the body may still be arriving). tusd sends
    /// `Location` even when the creation's body failed: the upload exists and can be resumed.
    func appended(
        _ request: TusRequest, location: String?
    ) -> (Result<UploadService.Appended, UploadServiceError>) -> Void {
        { [self] result in
            switch result {
            case .failure(let error):
                let headers: HTTPHeaders = location.map { ["Location": $0] } ?? [:]
                fail(request, because: error, headers: headers, closeConnection: true)
            case .success(let appended):
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
    func appendChecksum(_ checksum: UploadChecksum?, trailerAlgorithms: [DigestAlgorithm]) -> UploadAppend.Checksum {
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

    /// How many bytes a request starting at `offset` may append: up to the length, or, while the length is
    /// deferred, up to the maximum size.
    func byteLimit(length: Int64?, offset: Int64) -> Int64? {
        if let length { return length - offset }
        if let maxSize = configuration.maxSize { return maxSize - offset }
        return nil
    }

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
