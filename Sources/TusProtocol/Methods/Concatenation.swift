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
        service.createFinal(of: partialIDs, metadata: metadata, concat: concat, for: request.caller) {
            [self] result in
            switch result {
            case .failure(let error): fail(request, because: error)
            case .success(let created):
                let location = UploadLocation.make(
                    id: created.upload.id, head: request.head, isSecure: request.exchange.isSecure,
                    configuration: configuration)
                var headers: HTTPHeaders = ["Location": location]
                guard created.isAssembledByCreation else {
                    addExpiry(created.expiresAt, to: &headers)
                    return send(request, HTTPResponse(status: .created, headers: headers))
                }
                // tusd: pre-finish, then post-finish, for a final assembled at its creation.
                sendFinished(request, upload: created.upload, HTTPResponse(status: .created, headers: headers))
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
