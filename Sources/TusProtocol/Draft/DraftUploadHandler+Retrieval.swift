import TusHTTP1

extension DraftUploadHandler {
    /// Fields that belong to uploads and appends: an offset retrieval or cancellation carrying one is malformed
    /// (rows R7, X4; dropped from -06, still refused here for every version, as NIOResumableUpload does).
    private static let uploadFields = ["Upload-Offset", "Upload-Complete", "Upload-Incomplete", "Upload-Length"]

    private func carriesUploadFields(_ request: DraftRequest) -> Bool {
        Self.uploadFields.contains { request.head.headers[$0] != nil }
    }

    /// Offset retrieval (rows R1-R11): `HEAD $U` (and `GET $U` from v9). It never waits for the upload's lock, so a
    /// client resuming after a dropped connection learns the offset while the dead append still holds it; the next
    /// PATCH asks that append to let go, and it commits only bytes before it stops (row R8).
    func handleOffsetRetrieval(_ request: DraftRequest, id: String) {
        if carriesUploadFields(request) {
            return fail(request, .badRequest, "offset retrieval carries no upload fields")
        }
        service.status(of: id, for: request.caller) { [self] status in
            switch status {
            case .failure(let error): fail(request, because: error)
            case .success(.upload(let info)): answerRetrieval(request, info: info)
            case .success(.unfinishedFinal(let info, let length, _)):
                // A tus final waiting for partials: nothing stored yet, and nothing a draft client may append.
                var waiting = info
                waiting.offset = 0
                waiting.length = length
                answerRetrieval(request, info: waiting)
            }
        }
    }

    private func answerRetrieval(_ request: DraftRequest, info: UploadInfo) {
        var headers: HTTPHeaders = ["Upload-Offset": String(info.offset), "Cache-Control": "no-store"]
        let (name, value) = completionHeader(request, isComplete: info.isComplete)
        headers.add(name, value)
        if request.version.hasUploadLength, let length = info.length { headers.add("Upload-Length", String(length)) }
        if let limit = uploadLimit(request, upload: info) { headers.add("Upload-Limit", limit) }
        // 204 is what v3 and v4 require and every later version allows.
        send(request, HTTPResponse(status: .noContent, headers: headers))
    }

    /// Cancellation (rows X1-X8): `DELETE $U` removes the upload through the service, which first asks a running
    /// append to let go (its connection is answered and closed).
    func handleCancellation(_ request: DraftRequest, id: String) {
        if carriesUploadFields(request) { return fail(request, .badRequest, "cancellation carries no upload fields") }
        service.cancel(id, for: request.caller) { [self] cancelled in
            switch cancelled {
            case .failure(let error): fail(request, because: error)
            case .success(let override):
                var response = HTTPResponse(status: .noContent)
                response.apply(override)
                send(request, response)
            }
        }
    }

    /// `OPTIONS` (rows L2-L4): the limits every upload here gets, and `Accept-Patch` where the version names it.
    func handleOptions(_ request: DraftRequest) {
        var headers: HTTPHeaders = ["Allow": "POST, PUT, PATCH, HEAD, DELETE, OPTIONS"]
        if let limit = uploadLimit(request, upload: nil) { headers.add("Upload-Limit", limit) }
        if request.version.sendsAcceptPatch { headers.add("Accept-Patch", DraftInteropVersion.partialUpload) }
        send(request, HTTPResponse(status: .noContent, headers: headers))
    }
}
