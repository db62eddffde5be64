import TusCrypto
import TusHTTP1

extension DraftUploadHandler {
    /// Upload creation (rows C1-C22): everything a head can tell is checked before the upload exists; then the upload
    /// is created, announced by a 104 with `Location` before the first body byte is read (so a client cut off
    /// mid-body can resume, C4/C18), and the body streamed into it exactly like an append.
    func handleCreation(_ request: DraftRequest) {
        let head = request.head
        let framing = head.bodyFraming
        let completes: Bool
        switch requestCompletes(request, required: true) {
        case .failure(let error): return fail(request, .badRequest, error.message)
        case .success(let value): completes = value
        }
        // Row C3: an offset belongs to appends.
        if head.headers["Upload-Offset"] != nil {
            return fail(request, .badRequest, "a creation request carries no Upload-Offset")
        }
        var length: Int64?
        switch declaredLength(request) {
        case .failure(let error): return fail(request, .badRequest, error.message)
        case .success(let declared): length = declared
        }
        let checksum: UploadChecksum?
        switch contentDigest(request, carriesWholeRepresentation: completes) {
        case .failure(let error): return fail(request, .badRequest, error.message)
        case .success(let parsed): checksum = parsed
        }
        let representation: (expected: UploadChecksum?, wanted: DigestAlgorithm?)
        switch representationFields(request) {
        case .failure(let error): return fail(request, .badRequest, error.message)
        case .success(let fields): representation = fields
        }
        if completes, let known = framing.knownLength {
            // Rows C16/C17: the content is the whole representation, so its length is the upload's.
            if let length, length != known {
                return fail(
                    request, .badRequest, "Upload-Length and the content's length differ",
                    problem: .inconsistentUploadLength)
            }
            length = known
        } else if let length, let known = framing.knownLength, known > length {
            return fail(
                request, .badRequest, "more content than Upload-Length", problem: .inconsistentUploadLength)
        }
        // Row C19: refused before anything is read or created, so no 104.
        if let length, let refusal = service.refusal(ofLength: length, for: request.caller) {
            return fail(request, because: refusal, closeConnection: framing.hasBody)
        }
        if length == nil, let known = framing.knownLength,
            let refusal = service.refusal(ofLength: known, for: request.caller)
        {
            return fail(request, because: refusal, closeConnection: true)
        }
        if let refusal = service.refusalOfNewUploads() {
            return fail(request, because: refusal, closeConnection: framing.hasBody)
        }
        // Rows G1/G3: what a later request that completes the upload is checked against and answered with.
        let new = UploadService.NewUpload(
            length: length, metadata: Self.metadata(of: head), awaitsCompletion: !completes,
            representationDigest: completes
                ? nil : representation.expected.map { Self.encodedDigest($0.algorithm, $0.expected) },
            wantedDigest: completes ? nil : representation.wanted.map(Self.fieldName))
        service.create(new, for: request.caller) { [self] result in
            let created: UploadService.Created
            switch result {
            case .failure(let error): return fail(request, because: error, closeConnection: framing.hasBody)
            case .success(let done): created = done
            }
            let upload = created.upload
            let location = location(request, id: upload.id)
            var announcement: HTTPHeaders = ["Location": location]
            let limit = uploadLimit(request, upload: upload)
            if let limit { announcement.add("Upload-Limit", limit) }
            guard framing.hasBody || (completes && length == nil) else {
                sendInformational(request, announcement)
                // Answered in the same instant as the 104: the same limits, computed once.
                return answerCreation(
                    request, location: location, outcome: .appended(.init(upload: upload)),
                    finishes: upload.isComplete, override: created.response, limit: limit)
            }
            let digest: UploadService.AppendChecksum = checksum.map { .digest($0) } ?? .none
            let check = RepresentationCheck()
            let beforeFinish = representationCheck(
                request, expected: representation.expected, wanted: representation.wanted,
                checkedInStream: checksum != nil && head.headers["Content-Digest"] == nil, into: check)
            // The 104 goes out in the same turn of the loop as the body's first read: a client that hears it and
            // is cut off at once (an h2 RST_STREAM right behind its DATA) finds every byte that arrived stored.
            let body = AnnouncedBody(exchange: request.exchange) { [self] in
                sendInformational(request, announcement)
            }
            service.appendCreationBody(
                to: upload, checksum: digest, for: request.caller, body: body,
                completesAtBodyEnd: completes, progress: progressReporter(request), beforeFinish: beforeFinish
            ) { [self] outcome in
                if case .failed(.checksumMismatch) = outcome, check.mismatched {
                    return answerRepresentationMismatch(request, id: upload.id)
                }
                answerCreation(
                    request, location: location, outcome: outcome, finishes: false, override: created.response,
                    digest: check.answerDigest)
            }
        }
    }

    /// 201 with `Location` and the upload's state in the version's fields (rows C8-C15); an error keeps `Location`,
    /// since the upload exists and can be resumed. `finishes`: an upload complete at its creation (empty), whose
    /// finish events the answer waits for.
    private func answerCreation(
        _ request: DraftRequest, location: String, outcome: UploadService.AppendOutcome, finishes: Bool,
        override: ResponseOverride, digest: String? = nil, limit: String? = nil
    ) {
        switch outcome {
        case .refused(let error):
            fail(
                request, because: error, headers: ["Location": location],
                closeConnection: request.head.bodyFraming.hasBody)
        case .failed(let error):
            fail(request, because: error, headers: ["Location": location], closeConnection: true)
        case .appended(let appended):
            var response = uploadResponse(request, upload: appended.upload, location: location, limit: limit)
            if let digest { response.headers.set("Repr-Digest", digest) }
            response.apply(override)
            response.apply(appended.response)
            guard finishes else { return send(request, response) }
            service.finish(request.caller, upload: appended.upload) { [self] verdict in
                if verdict.isUnavailable { return fail(request, because: .hookUnavailable) }
                if verdict.isRejected {
                    return fail(request, because: .rejected(.preFinish, response: verdict.response))
                }
                response.apply(verdict.response)
                send(request, response)
            }
        }
    }

    /// The answer to a request that created or completed an upload, or appended to it (rows C8-C13, A3-A10):
    /// `201 Created` with `Location`, except a v7+ incomplete append (`204`).
    /// `limit`: this upload's `Upload-Limit` when the caller already has it; computed here otherwise.
    func uploadResponse(
        _ request: DraftRequest, upload: UploadInfo, location: String?, limit: String? = nil
    ) -> HTTPResponse {
        var headers: HTTPHeaders = ["Upload-Offset": String(upload.offset)]
        let (name, value) = completionHeader(request, isComplete: upload.isComplete)
        headers.add(name, value)
        if !upload.isComplete, let limit = limit ?? uploadLimit(request, upload: upload) {
            headers.add("Upload-Limit", limit)
        }
        var status = HTTPStatus.created
        if let location {
            headers.add("Location", location)
        } else if !upload.isComplete && request.version.completionFieldOnEveryAppendAnswer {
            status = .noContent
        }
        return HTTPResponse(status: status, headers: headers)
    }

    /// Representation metadata from creation (row C21), kept as tus metadata so both protocols and the download
    /// see it: `Content-Type` as `filetype`, a `Content-Disposition` filename as `filename`.
    static func metadata(of head: RequestHead) -> String? {
        var pairs: [(key: String, value: String)] = []
        if let type = head.headers["Content-Type"], !type.isEmpty,
            !type.lowercased().hasPrefix(DraftInteropVersion.partialUpload)
        {
            pairs.append((key: "filetype", value: type))
        }
        if let disposition = head.headers["Content-Disposition"], let filename = Self.filename(in: disposition) {
            pairs.append((key: "filename", value: filename))
        }
        return UploadMetadata.encode(pairs)
    }

    /// `filename=name` or `filename="name"` of a `Content-Disposition` value (RFC 6266), without `filename*`.
    static func filename(in disposition: String) -> String? {
        for parameter in disposition.split(separator: ";").dropFirst() {
            let parts = parameter.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0].trimmingOWS().lowercased() == "filename" else { continue }
            var value = parts[1].trimmingOWS()
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = value.dropFirst().dropLast() }
            return value.isEmpty ? nil : String(value)
        }
        return nil
    }
}

/// The creation's body, announced (the 104 with `Location`) just before it is read.
struct AnnouncedBody: UploadBodySource {
    let exchange: any HTTPExchange
    let announce: () -> Void

    func readBody(into sink: any HTTPBodySink) {
        announce()
        exchange.readBody(into: sink)
    }

    func stopBody() { exchange.stopBody() }
}
