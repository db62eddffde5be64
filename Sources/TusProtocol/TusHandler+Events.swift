import TusHTTP1

#if canImport(Glibc)
    import Glibc
#endif

extension TusHandler {
    /// Asks `point` and goes on only if the answer is yes. A rejection is answered with `rejection` as changed by
    /// the hook's response; a hook that cannot be asked fails the request closed (503). `lock` is released on
    /// either. Costs nothing when no event handler wants the decision.
    func gate(
        _ point: DecisionPoint, _ request: TusRequest, upload: UploadInfo, rejection: TusError,
        release lock: (any UploadLock)? = nil, _ proceed: @escaping (EventVerdict) -> Void
    ) {
        let wanted = point == .preAccess ? events.wantsAccessDecisions : events.wantsDecision(point)
        guard wanted else { return proceed(.proceed) }
        let event = UploadEvent(upload: upload, request: request.eventRequest)
        events.decide(point, event, on: request.exchange.executor) { [self] verdict in
            if verdict.isUnavailable {
                lock?.release()
                return fail(request, .hookUnavailable)
            }
            if verdict.isRejected {
                lock?.release()
                return fail(request, rejection, override: verdict.response)
            }
            proceed(verdict)
        }
    }

    /// An upload reached its length: pre-finish, then post-finish only if pre-finish accepted (tusd
    /// `emitFinishEvents`: a pre-finish error returns before the post-finish notification). `completion` gets the
    /// verdict, on the request's loop.
    func finish(_ request: TusRequest, upload: UploadInfo, completion: @escaping (EventVerdict) -> Void) {
        let decided: (EventVerdict) -> Void = { [self] verdict in
            if Self.refusal(ofFinish: verdict) == nil { notify(.finished, request, upload: upload) }
            completion(verdict)
        }
        guard events.wantsDecision(.preFinish) else { return decided(.proceed) }
        let event = UploadEvent(upload: upload, request: request.eventRequest)
        events.decide(.preFinish, event, on: request.exchange.executor, completion: decided)
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
        let waited = Self.monotonicNanoseconds() &- started
        events.measure(.lockWait(nanoseconds: waited), on: request.exchange.executor)
    }

    static func monotonicNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    func notify(_ notification: UploadNotification, _ request: TusRequest, upload: UploadInfo) {
        events.notify(notification, UploadEvent(upload: upload, request: request.eventRequest), on: request.exchange.executor)
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
