import TusCrypto
import TusHTTP1

extension DraftUploadHandler {
    /// Upload append (rows A1-A24): `PATCH $U` at `Upload-Offset`, streamed by the service like a tus PATCH; the
    /// request that says it completes the upload fixes its length where its body ends.
    func handleAppend(_ request: DraftRequest, id: String) {
        let head = request.head
        let version = request.version
        if let mediaType = version.appendMediaType {
            let given = head.headers["Content-Type"]?.split(separator: ";", maxSplits: 1).first?.trimmingOWS()
            guard let given, String(given).equalsIgnoringASCIICase(mediaType) else {
                return appendFailed(request, .unsupportedMediaType, "an append carries \(mediaType)")
            }
        }
        guard let offsetText = head.headers["Upload-Offset"], let offset = StructuredField.integer(offsetText[...])
        else {
            return appendFailed(request, .badRequest, "Upload-Offset must be a non-negative integer")
        }
        let completes: Bool
        switch requestCompletes(request, required: version.appendRequiresCompletionField) {
        case .failure(let error): return appendFailed(request, .badRequest, error.message)
        case .success(let value): completes = value
        }
        var length: Int64?
        switch declaredLength(request) {
        case .failure(let error): return appendFailed(request, .badRequest, error.message)
        case .success(let declared): length = declared
        }
        let checksum: UploadChecksum?
        switch contentDigest(request, carriesWholeRepresentation: completes && offset == 0) {
        case .failure(let error): return appendFailed(request, .badRequest, error.message)
        case .success(let parsed): checksum = parsed
        }
        let representation: (expected: UploadChecksum?, wanted: DigestAlgorithm?)
        switch representationFields(request) {
        case .failure(let error): return appendFailed(request, .badRequest, error.message)
        case .success(let fields): representation = fields
        }
        let check = RepresentationCheck()
        let beforeFinish = representationCheck(
            request, expected: representation.expected, wanted: representation.wanted,
            checkedInStream: checksum != nil && head.headers["Content-Digest"] == nil, into: check)
        let known = head.bodyFraming.knownLength
        if completes, let known {
            if let length, length != offset + known {
                return appendFailed(
                    request, .badRequest, "Upload-Length and the content's end differ",
                    problem: .inconsistentUploadLength)
            }
            length = offset + known
        }
        var append = UploadService.AppendRequest(
            offset: offset, declaredLength: length, knownBodyLength: known,
            checksum: checksum.map { .digest($0) } ?? .none, completesAtBodyEnd: completes, mayRepeatLength: true,
            refusesCompleteUpload: true, progress: progressReporter(request))
        append.beforeFinish = beforeFinish
        service.append(to: id, append, for: request.caller, body: ExchangeBody(exchange: request.exchange)) {
            [self] outcome in
            switch outcome {
            case .appended(let appended):
                let location = appended.upload.isComplete ? self.location(request, id: id) : nil
                var response = uploadResponse(request, upload: appended.upload, location: location)
                if let digest = check.answerDigest { response.headers.set("Repr-Digest", digest) }
                response.apply(appended.response)
                send(request, response)
            case .failed(.checksumMismatch) where check.mismatched:
                answerRepresentationMismatch(request, id: id)
            case .refused(.alreadyComplete(let length)):
                answerAppendToComplete(request, id: id, offset: offset, length: length, completes: completes)
            case .refused(.offsetMismatch):
                answerOffsetMismatch(request, id: id, provided: offset)
            case .refused(.exceedsLength) where version.invalidatesOnExcess,
                .failed(.exceedsLength) where version.invalidatesOnExcess:
                invalidate(request, id: id)
            case .refused(let error):
                fail(
                    request, because: error, headers: appendErrorHeaders(request),
                    closeConnection: head.bodyFraming.hasBody && Self.closesUnreadBody(error))
            case .failed(let error):
                fail(request, because: error, headers: appendErrorHeaders(request), closeConnection: true)
            }
        }
    }

    /// Row A16 (-08 on): content past the upload's length makes the upload invalid, so a client that lost track of
    /// its length cannot go on appending to it. It is cancelled (through the service: hooks and the lock as for a
    /// DELETE) before the 400 goes out, so the next request finds it gone.
    private func invalidate(_ request: DraftRequest, id: String) {
        service.cancel(id, for: request.caller) { [self] _ in
            // Whether or not the store could remove it, the answer is the length violation.
            fail(
                request, because: .exceedsLength, headers: appendErrorHeaders(request),
                closeConnection: request.head.bodyFraming.hasBody)
        }
    }

    /// A body refused unread is drained by the connection when small; these refusals say its bytes are unwanted
    /// whatever their size.
    private static func closesUnreadBody(_ error: UploadServiceError) -> Bool {
        switch error {
        case .exceedsLength, .tooLarge, .finalNotWritable, .lengthMismatch: true
        default: false
        }
    }

    /// v7+: every answer to a PATCH says the upload is not complete through it (rows A9-A11).
    private func appendErrorHeaders(_ request: DraftRequest) -> HTTPHeaders {
        guard request.version.completionFieldOnEveryAppendAnswer else { return [:] }
        let (name, value) = completionHeader(request, isComplete: false)
        return [name: value]
    }

    private func appendFailed(
        _ request: DraftRequest, _ status: HTTPStatus, _ detail: String, problem: DraftProblemType? = nil
    ) {
        fail(request, status, detail, problem: problem, headers: appendErrorHeaders(request))
    }

    /// Row A11: 409 with the offset the upload really has (read after the refusal), and the problem type's members.
    private func answerOffsetMismatch(_ request: DraftRequest, id: String, provided: Int64) {
        service.status(of: id, for: request.caller) { [self] status in
            var headers = appendErrorHeaders(request)
            var members = ["provided-offset": String(provided)]
            if case .success(.upload(let info)) = status {
                headers.set("Upload-Offset", String(info.offset))
                members["expected-offset"] = String(info.offset)
            }
            fail(
                request, .conflict, "Upload-Offset is not the upload's offset", problem: .mismatchingUploadOffset,
                headers: headers, members: members)
        }
    }

    /// Rows A12-A15: a PATCH to an upload that is already complete, as the version says.
    private func answerAppendToComplete(
        _ request: DraftRequest, id: String, offset: Int64, length: Int64, completes: Bool
    ) {
        let hasContent = request.head.bodyFraming.hasBody && request.head.bodyFraming.knownLength != 0
        var headers = appendErrorHeaders(request)
        switch request.version.completedAppend {
        case .badRequest:
            fail(request, .badRequest, "the upload is already complete", problem: .completedUpload, headers: headers)
        case .inconsistentOrGone:
            guard !hasContent else {
                return fail(
                    request, .badRequest, "the upload is already complete", problem: .inconsistentUploadLength,
                    headers: headers, closeConnection: true)
            }
            headers.set("Location", location(request, id: id))
            fail(request, .gone, "the upload is already complete", problem: .completedUpload, headers: headers)
        case .replayCompletion:
            if offset == length && completes && !hasContent {
                var complete = UploadInfo(id: id, length: length, createdAt: 0)
                complete.offset = length
                return send(request, uploadResponse(request, upload: complete, location: location(request, id: id)))
            }
            guard offset == length else { return answerOffsetMismatch(request, id: id, provided: offset) }
            fail(
                request, .badRequest, "the upload is already complete", problem: .inconsistentUploadLength,
                headers: headers, closeConnection: hasContent)
        }
    }
}
