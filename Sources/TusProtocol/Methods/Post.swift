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
        // Built once: each build boxes the request for its `describe` closure.
        let caller = request.caller
        if let length, let refusal = service.refusal(ofLength: length, for: caller) {
            return fail(request, because: refusal, closeConnection: hasBody)
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

        if let refusal = service.refusalOfNewUploads() {
            return fail(request, because: refusal, closeConnection: hasBody)
        }

        let new = UploadService.NewUpload(length: length, metadata: metadata, concat: concat, isPartial: concat != nil)
        service.create(new, for: caller) { [self] result in
            let created: UploadService.Created
            switch result {
            case .failure(let error): return fail(request, because: error)
            case .success(let done): created = done
            }
            let upload = created.upload
            let location = UploadLocation.make(
                id: upload.id, head: request.head, isSecure: request.exchange.isSecure, configuration: configuration)
            guard hasUploadBody else {
                // Location and Upload-Expires, then Tus-Resumable, X-Content-Type-Options, X-Request-ID and Date
                // on the way out: room for them all at once.
                var headers = HTTPHeaders()
                headers.reserveCapacity(8)
                headers.add("Location", location)
                addExpiry(upload, to: &headers)
                // `consume`: handed on, not copied, so the layers on the way out change the headers in place.
                var response = HTTPResponse(status: .created, headers: consume headers)
                response.apply(created.response)
                // An empty upload is finished the moment it exists (tusd: pre-finish and post-finish at creation).
                guard upload.isComplete else { return send(request, consume response) }
                return sendFinished(request, upload: upload, response)
            }
            service.appendCreationBody(
                to: upload, checksum: appendChecksum(checksum, trailerAlgorithms: []), for: request.caller,
                body: ExchangeBody(exchange: request.exchange), completion: appended(request, location: location))
        }
    }
}
