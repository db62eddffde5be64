import TusCrypto
import TusHTTP1

extension TusHandler {
    /// creation, creation-defer-length and creation-with-upload. Everything is validated before the upload
    /// exists and before the body is read (with `Expect: 100-continue` the client has not sent it yet).
    ///
    /// A body with a Content-Type other than `application/offset+octet-stream` is not read at all (tusd:
    /// some HTTP clients force a default Content-Type on every POST); the connection drains or closes.
    func handlePost(_ request: TusRequest) {
        let headers = request.head.headers
        // Concatenation is not implemented; creating a plain upload the client believes is partial would
        // corrupt its final upload later.
        if headers["Upload-Concat"] != nil { return fail(request, .extensionNotSupported) }
        var length: Int64?
        switch (headers["Upload-Length"], headers["Upload-Defer-Length"]) {
        case (.some, .some): return fail(request, .ambiguousUploadLength)
        case (nil, nil): return fail(request, .invalidUploadLength)
        case (let text?, nil):
            guard let parsed = DecimalInteger.parse(text.utf8) else { return fail(request, .invalidUploadLength) }
            length = parsed
        case (nil, let text?):
            guard text == "1" else { return fail(request, .invalidDeferLength) }
        }
        let hasBody = request.head.bodyFraming.hasBody
        if let length, let maxSize = configuration.maxSize, length > maxSize {
            return fail(request, .maxSizeExceeded, closeConnection: hasBody)
        }
        var metadata: String?
        if let raw = headers["Upload-Metadata"] {
            guard UploadMetadata.parse(raw) != nil else { return fail(request, .invalidMetadata) }
            metadata = UploadMetadata.isBlank(raw[...]) ? nil : raw
        }
        let hasUploadBody = hasBody && Self.isOffsetStream(headers["Content-Type"])
        var checksum: UploadChecksum?
        if hasUploadBody {
            switch parseChecksum(request) {
            case .failure(let error): return fail(request, error)
            case .success(let parsed): checksum = parsed
            }
            if let known = request.head.bodyFraming.knownLength, let limit = byteLimit(length: length, offset: 0),
                known > limit
            {
                return fail(request, .uploadSizeExceeded, closeConnection: true)
            }
        }

        // Only new uploads are turned away: those in progress may still use the reserve to finish.
        if let required = configuration.minFreeSpace, let space = configuration.freeSpace?(),
            !required.isMet(by: space)
        {
            return fail(request, .insufficientStorage, closeConnection: hasBody)
        }

        let id = SecureRandom.uploadID()
        let info = UploadInfo(
            id: id, length: length, metadata: metadata, createdAt: now(), expiresAt: length == 0 ? nil : nextExpiry())
        let location = UploadLocation.make(
            id: id, head: request.head, isSecure: request.exchange.isSecure, configuration: configuration)
        store.create(info, on: request.exchange.executor) { [self] result in
            switch result {
            case .failure(let error): fail(request, error == .alreadyExists ? .storeFailure : Self.mapStoreError(error))
            case .success(let created):
                guard hasUploadBody else {
                    var headers: HTTPHeaders = ["Location": location]
                    addExpiry(created, to: &headers)
                    return send(request, HTTPResponse(status: .created, headers: headers))
                }
                appendCreationBody(request, id: id, length: length, checksum: checksum, location: location)
            }
        }
    }

    private func appendCreationBody(
        _ request: TusRequest, id: String, length: Int64?, checksum: UploadChecksum?, location: String
    ) {
        let holder = LockHolder()
        let executor = request.exchange.executor
        // The id was minted a moment ago, so nobody else can hold it.
        locker.tryLock(id: id, executor: executor, onReleaseRequested: { holder.requestRelease() }) { [self] locked in
            guard case .success(let acquired) = locked, let lock = acquired else {
                let error: TusError = if case .failure(let lockError) = locked { Self.mapLockError(lockError) } else { .storeFailure }
                return fail(request, error, headers: ["Location": location])
            }
            store.openWriter(id: id, startingAt: 0, discardable: checksum != nil, lock: lock, on: executor) {
                [self] result in
                switch result {
                case .failure(let error):
                    lock.release()
                    fail(request, Self.mapStoreError(error), headers: ["Location": location])
                case .success(let writer):
                    UploadAppend(
                        handler: self, request: request, writer: writer, lock: lock, holder: holder,
                        limit: byteLimit(length: length, offset: 0), checksum: checksum,
                        purpose: .creation(location: location)
                    ).start()
                }
            }
        }
    }
}
