public import TusHTTP1

extension TusHandler {
    /// `UploadService.decide`, answered in tus's words: a rejection is `rejection` as changed by the hook's
    /// response, a hook that cannot be asked 503. `lock` is released on either.
    func gate(
        _ point: DecisionPoint, _ request: TusRequest, upload: UploadInfo, rejection: TusError,
        release lock: (any UploadLock)? = nil, _ proceed: @escaping (EventVerdict) -> Void
    ) {
        service.decide(point, for: request.caller, upload: upload, release: lock) { [self] decided in
            switch decided {
            case .success(let verdict): proceed(verdict)
            case .failure(.rejected(_, let response)): fail(request, rejection, override: response)
            case .failure(let error): fail(request, because: error)
            }
        }
    }

    /// `UploadService.finish`: pre-finish, then post-finish only if pre-finish accepted.
    func finish(_ request: TusRequest, upload: UploadInfo, completion: @escaping (EventVerdict) -> Void) {
        service.finish(request.caller, upload: upload, completion: completion)
    }

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
        finish(request, upload: upload) { [self] verdict in
            if let refusal = Self.refusal(ofFinish: verdict) {
                return fail(request, refusal, override: verdict.isRejected ? verdict.response : nil)
            }
            var response = response
            response.apply(verdict.response)
            send(request, response)
        }
    }

    func measureLockWait(since started: UInt64, _ request: TusRequest) {
        service.measureLockWait(since: started, on: request.exchange.executor)
    }

    static func monotonicNanoseconds() -> UInt64 { UploadService.monotonicNanoseconds() }

    func notify(_ notification: UploadNotification, _ request: TusRequest, upload: UploadInfo) {
        service.notify(notification, request.caller, upload: upload)
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
