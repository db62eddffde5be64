import TusCrypto
import TusHTTP1

/// concatenation and concatenation-unfinished: the tus side (`Upload-Concat`); the engine is in
/// `UploadService+Concatenation.swift`.
extension TusHandler {
    /// `POST` with `Upload-Concat: final;...`. Everything is checked before the record exists: the header's
    /// URLs, that each names a live partial upload of this server, the lengths against `--max-size`.
    func handleFinalCreation(_ request: TusRequest, concat: String, urls: [Substring]) {
        let headers = request.head.headers
        let hasBody = request.head.bodyFraming.hasBody
        if headers["Upload-Length"] != nil || headers["Upload-Defer-Length"] != nil {
            return fail(request, .finalWithLength, closeConnection: hasBody)
        }
        // creation-with-upload on a final would append to something that is never written (tusd: 403).
        if hasBody { return fail(request, .modifyFinal, closeConnection: true) }
        var metadata: String?
        if let raw = headers["Upload-Metadata"] {
            guard UploadMetadata.parse(raw) != nil else { return fail(request, .invalidMetadata) }
            metadata = UploadMetadata.isBlank(raw[...]) ? nil : raw
        }
        var partialIDs: [String] = []
        for url in urls {
            guard let id = partialID(fromURL: url) else { return fail(request, .invalidConcat) }
            partialIDs.append(id)
        }
        let executor = request.exchange.executor
        service.lookUpPartials(partialIDs, owner: request.grant?.subject, on: executor) { [self] looked in
            let partials: [UploadInfo]
            switch looked {
            case .failure(let error): return fail(request, because: error)
            case .success(let found): partials = found
            }
            let lengths = partials.compactMap(\.length)
            let length = lengths.count == partials.count ? lengths.reduce(0, +) : nil
            if let length, let maxSize = configuration.maxSize, length > maxSize {
                return fail(request, .maxSizeExceeded)
            }
            let info = UploadInfo(
                id: SecureRandom.uploadID(), length: length, metadata: metadata, createdAt: now(),
                expiresAt: nextExpiry(), owner: request.grant?.subject, concat: concat, partialIDs: partialIDs)
            let location = UploadLocation.make(
                id: info.id, head: request.head, isSecure: request.exchange.isSecure, configuration: configuration)
            store.create(info, on: executor) { [self] created in
                switch created {
                case .failure(let error):
                    fail(request, error == .alreadyExists ? .storeFailure : Self.mapStoreError(error))
                case .success(let created):
                    notify(.created, request, upload: created)
                    // Assembled before 201 when it can be, so the client's next HEAD finds it complete. The partials
                    // are looked up again now that the final is visible: one whose last PATCH ended in between found
                    // no final to complete. A failure here leaves it to the next look.
                    service.resolveFinal(created, on: executor) { [self] resolved in
                        var headers: HTTPHeaders = ["Location": location]
                        switch resolved {
                        case .success(.complete(let complete)):
                            // tusd: pre-finish, then post-finish, for a final assembled at its creation.
                            let response = HTTPResponse(status: .created, headers: headers)
                            return sendFinished(request, upload: complete, response)
                        case .success(.unfinished(_, let expiresAt)): addExpiry(expiresAt, to: &headers)
                        case .failure: addExpiry(created, to: &headers)
                        }
                        send(request, HTTPResponse(status: .created, headers: headers))
                    }
                }
            }
        }
    }

    /// `/files/<id>`, `http://host/files/<id>` or `https://...`: an upload URL under this server's base path. The
    /// host is not compared: behind a proxy or under several names the server cannot know every name it has.
    func partialID(fromURL url: Substring) -> String? {
        var path = url
        if let schemeEnd = url.firstRange(of: "://") {
            let scheme = url[..<schemeEnd.lowerBound].lowercased()
            guard scheme == "http" || scheme == "https" else { return nil }
            let rest = url[schemeEnd.upperBound...]
            guard let slash = rest.firstIndex(of: "/") else { return nil }
            path = rest[slash...]
        }
        guard path.hasPrefix("/"), case .upload(let id) = route(path) else { return nil }
        return id
    }
}
