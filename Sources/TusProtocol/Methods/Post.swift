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
        let concat = headers["Upload-Concat"]
        if let concat {
            // Without the capability, a plain upload the client believes is partial would corrupt its final later.
            guard capabilities.contains(.concatenation) else { return fail(request, .extensionNotSupported) }
            switch UploadConcat.parse(concat) {
            case nil: return fail(request, .invalidConcat)
            case .final(let urls)?: return handleFinalCreation(request, concat: concat, urls: urls)
            case .partial?: break  // an upload like any other, marked partial
            }
        }
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
        if let length, let maxSize = maxUploadLength(request), length > maxSize {
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

        // The id stays empty until the decisions are made (tusd: pre-create sees no id).
        let proposed = UploadInfo(
            id: "", length: length, metadata: metadata, createdAt: now(), expiresAt: length == 0 ? nil : nextExpiry(),
            owner: request.grant?.subject, concat: concat, isPartial: concat != nil)
        gate(.preAccess, request, upload: proposed, rejection: .accessDenied) { [self] _ in
            gate(.preCreate, request, upload: proposed, rejection: .uploadRejected) { [self] verdict in
                var info = proposed
                info.id = SecureRandom.uploadID()
                if let changedID = verdict.changedID, !changedID.isEmpty {
                    guard UploadID.isValid(changedID) else { return fail(request, .storeFailure) }
                    info.id = changedID
                }
                if let changed = verdict.changedMetadata { info.metadata = UploadMetadata.encode(changed) }
                create(
                    request, info: info, hasUploadBody: hasUploadBody, checksum: checksum, override: verdict.response)
            }
        }
    }

    private func create(
        _ request: TusRequest, info: UploadInfo, hasUploadBody: Bool, checksum: UploadChecksum?,
        override: ResponseOverride
    ) {
        let id = info.id
        let location = UploadLocation.make(
            id: id, head: request.head, isSecure: request.exchange.isSecure, configuration: configuration)
        store.create(info, on: request.exchange.executor) { [self] result in
            switch result {
            case .failure(let error): fail(request, error == .alreadyExists ? .storeFailure : Self.mapStoreError(error))
            case .success(let created):
                notify(.created, request, upload: created)
                guard hasUploadBody else {
                    var headers: HTTPHeaders = ["Location": location]
                    addExpiry(created, to: &headers)
                    var response = HTTPResponse(status: .created, headers: headers)
                    response.apply(override)
                    // An empty upload is finished the moment it exists (tusd: pre-finish and post-finish at creation).
                    guard created.isComplete else { return send(request, response) }
                    return sendFinished(request, upload: created, response)
                }
                appendCreationBody(request, upload: created, checksum: checksum, location: location)
            }
        }
    }

    /// The server's maximum, lowered by the caller's own cap (a token's `max_size`).
    func maxUploadLength(_ request: TusRequest) -> Int64? {
        switch (configuration.maxSize, request.grant?.maxUploadLength) {
        case (let server?, let caller?): min(server, caller)
        case (let server, nil): server
        case (nil, let caller): caller
        }
    }

    private func appendCreationBody(
        _ request: TusRequest, upload: UploadInfo, checksum: UploadChecksum?, location: String
    ) {
        let id = upload.id
        let length = upload.length
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
                        purpose: .creation(location: location), upload: upload
                    ).start()
                }
            }
        }
    }
}
