public import TusCore
import TusHTTP1

extension TusHandler {
    /// What a request that finished an upload answers instead of its success when pre-finish did not accept: a hook
    /// that could not be asked is 503 (retry; the upload is complete, so the retry's HEAD says so), a rejection 400
    /// with the decision's response.
    static func refusal(ofFinish verdict: EventVerdict) -> TusError? {
        if verdict.isUnavailable { return .hookUnavailable }
        if verdict.isRejected { return .uploadRejected }
        return nil
    }

    /// `response` for a request that finished `upload`, after pre-finish (which may change it or fail it).
    func sendFinished(_ request: TusRequest, upload: UploadInfo, _ response: HTTPResponse) {
        service.finish(request.caller, upload: upload) { [self] verdict in
            if let refusal = Self.refusal(ofFinish: verdict) {
                return fail(request, refusal, override: verdict.isRejected ? verdict.response : nil)
            }
            var response = response
            response.apply(verdict.response)
            send(request, response)
        }
    }

    /// Removes unfinished uploads whose expiry has passed (`UploadService.sweepExpired`).
    public func sweepExpired(
        now sweepTime: Int64? = nil, executor: any LoopExecutor, completion: @escaping ([String]) -> Void = { _ in }
    ) {
        service.sweepExpired(now: sweepTime, executor: executor, completion: completion)
    }
}

extension HTTPResponse {
    /// A hook's changes: its status and body replace ours, its headers are added over ours.
    mutating func apply(_ override: ResponseOverride) {
        if let code = override.statusCode, (100...599).contains(code) { status = HTTPStatus(code: code) }
        if let body = override.body {
            self.body = Array(body.utf8)
            headers.remove("Content-Type")
            if !body.isEmpty { headers.add("Content-Type", "text/plain; charset=utf-8") }
        }
        for field in override.headers { headers.set(field.name, field.value) }
    }
}
