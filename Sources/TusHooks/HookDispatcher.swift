public import TusCore
import TusHTTP1
public import TusProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What the operator enabled.
public struct HookConfiguration: Sendable {
    /// tusd's `--hooks-enabled-events` default; `pre-finish`, `pre-terminate` and `pre-access` are opt-in.
    public static let defaultEvents: Set<String> = ["pre-create", "post-create", "post-receive", "post-terminate", "post-finish"]
    public static let allEvents: Set<String> = Set(
        DecisionPoint.allCases.map(\.rawValue) + UploadNotification.allCases.map(\.rawValue) + ["post-receive"])

    public var enabledEvents: Set<String> = HookConfiguration.defaultEvents
    /// Request headers copied onto hook requests (`--hooks-http-forward-headers`).
    public var forwardHeaders: [String] = []
    /// How long a pre-access verdict is reused for the same upload and credential; 0 = ask every time.
    public var accessCacheMilliseconds: UInt64 = 0
    /// Notifications waiting for delivery, over all uploads; beyond this new ones are dropped (and logged), so
    /// a receiver that is down cannot grow memory without bound.
    public var maxQueuedNotifications = 10_000
    /// `Storage` in payloads, from the upload id (the file store's paths).
    public var storage: @Sendable (_ id: String) -> [String: String]? = { _ in nil }

    public init() {}
}

/// Turns upload events into tusd-compatible hook calls.
///
/// Decisions (`pre-*`) are one call each, awaited by their request only. Notifications (`post-*`) are
/// delivered in order per upload (post-create before post-receive before post-finish or post-terminate), one
/// at a time per upload, each retried by the transport; a failure is logged and the next one goes on. While
/// a post-receive waits behind a slow delivery, a newer one replaces it (progress only needs the latest).
public final class HookDispatcher: UploadEventHandler, @unchecked Sendable {
    public let configuration: HookConfiguration
    let transport: any HookTransport
    let log: @Sendable (String) -> Void
    /// Counts each finished call (metrics): its type and whether it failed.
    let completed: @Sendable (_ type: String, _ failed: Bool, _ executor: any LoopExecutor) -> Void
    private let queues = Mutex<Queues>(Queues())
    private let accessCache = Mutex<[String: (verdict: EventVerdict, expires: UInt64)]>([:])

    private struct Queues {
        var byUpload: [String: UploadQueue] = [:]
        var queued = 0
    }

    private struct UploadQueue {
        var pending: [Delivery] = []
    }

    private struct Delivery: @unchecked Sendable {
        let type: String
        let uploadID: String
        let requestID: String
        let payload: [UInt8]
        let subject: HookSubject
        let headers: HTTPHeaders
        let executor: any LoopExecutor
        /// post-receive: what to do with a `StopUpload` answer.
        let stop: UploadStopSwitch?
    }

    public init(
        configuration: HookConfiguration, transport: any HookTransport, log: @escaping @Sendable (String) -> Void,
        completed: @escaping @Sendable (_ type: String, _ failed: Bool, _ executor: any LoopExecutor) -> Void = { _, _, _ in }
    ) {
        self.configuration = configuration
        self.transport = transport
        self.log = log
        self.completed = completed
    }

    private func isEnabled(_ type: String) -> Bool {
        configuration.enabledEvents.contains(type) && transport.handles(type)
    }

    public var wantsAccessDecisions: Bool { isEnabled(DecisionPoint.preAccess.rawValue) }
    public func wantsDecision(_ point: DecisionPoint) -> Bool { isEnabled(point.rawValue) }

    private func payload(_ type: String, _ event: UploadEvent) -> [UInt8] {
        let storage = event.upload.id.isEmpty ? nil : configuration.storage(event.upload.id)
        return HookRequestBody(type: type, event: event, storage: storage).encoded()
    }

    private func subject(_ event: UploadEvent) -> HookSubject {
        HookSubject(id: event.upload.id, size: event.upload.length ?? 0, offset: event.upload.offset)
    }

    private func forwarded(_ event: UploadEvent) -> HTTPHeaders {
        var headers = HTTPHeaders()
        for name in configuration.forwardHeaders {
            for value in event.request.headers.values(for: name) { headers.add(name, value) }
        }
        return headers
    }

    // MARK: Decisions

    public func decide(
        _ point: DecisionPoint, _ event: UploadEvent, on executor: any LoopExecutor,
        completion: @escaping (EventVerdict) -> Void
    ) {
        let cacheKey = point == .preAccess && configuration.accessCacheMilliseconds > 0 ? accessKey(event) : nil
        if let cacheKey, let cached = cachedAccess(cacheKey) { return completion(cached) }
        let type = point.rawValue
        transport.invoke(
            type, payload: payload(type, event), subject: subject(event), forwardedHeaders: forwarded(event),
            retrySafe: true, on: executor
        ) { [self] result in
            switch result {
            case .failure(let failure):
                completed(type, true, executor)
                log("hook \(type) failed: \(failure) upload=\(event.upload.id) request_id=\(event.request.requestID)")
                completion(.unavailable)
            case .success(let body):
                guard let response = try? HookResponseBody.decode(body) else {
                    completed(type, true, executor)
                    log("hook \(type) answered something that is not a hook response; request_id=\(event.request.requestID)")
                    return completion(.unavailable)
                }
                completed(type, false, executor)
                let verdict = response.verdict(for: point)
                if let cacheKey { remember(cacheKey, verdict) }
                completion(verdict)
            }
        }
    }

    /// Per upload (or creation) and credential: the same caller asking about the same upload gets the same
    /// answer for a few seconds.
    private func accessKey(_ event: UploadEvent) -> String {
        let credential = event.request.headers["Authorization"] ?? event.request.headers["Cookie"] ?? ""
        let target = event.upload.id.isEmpty ? "<create>" : event.upload.id
        return "\(target)\u{0}\(event.request.method.rawValue)\u{0}\(credential)"
    }

    private func cachedAccess(_ key: String) -> EventVerdict? {
        let now = MonotonicClock.milliseconds
        return accessCache.withLock { cache in
            guard let entry = cache[key], entry.expires > now else { return nil }
            return entry.verdict
        }
    }

    private func remember(_ key: String, _ verdict: EventVerdict) {
        let expires = MonotonicClock.milliseconds + configuration.accessCacheMilliseconds
        accessCache.withLock { cache in
            // Bounded: past 10,000 callers × uploads, start over rather than grow.
            if cache.count >= 10_000 { cache.removeAll(keepingCapacity: true) }
            cache[key] = (verdict, expires)
        }
    }

    // MARK: Notifications

    public func notify(_ notification: UploadNotification, _ event: UploadEvent, on executor: any LoopExecutor) {
        guard isEnabled(notification.rawValue) else { return }
        enqueue(delivery(notification.rawValue, event, executor, stop: nil))
    }

    public func progressed(_ event: UploadEvent, stop: UploadStopSwitch, on executor: any LoopExecutor) {
        guard isEnabled("post-receive") else { return }
        enqueue(delivery("post-receive", event, executor, stop: stop))
    }

    private func delivery(_ type: String, _ event: UploadEvent, _ executor: any LoopExecutor, stop: UploadStopSwitch?)
        -> Delivery
    {
        Delivery(
            type: type, uploadID: event.upload.id, requestID: event.request.requestID, payload: payload(type, event),
            subject: subject(event), headers: forwarded(event), executor: executor, stop: stop)
    }

    private func enqueue(_ delivery: Delivery) {
        enum Action { case start, wait, drop }
        let action: Action = queues.withLock { queues in
            if var queue = queues.byUpload[delivery.uploadID] {
                // Progress only needs the newest value: replace a post-receive still waiting at the end.
                if delivery.type == "post-receive", queue.pending.count > 1, queue.pending.last?.type == "post-receive" {
                    queue.pending[queue.pending.count - 1] = delivery
                    queues.byUpload[delivery.uploadID] = queue
                    return .wait
                }
                guard queues.queued < configuration.maxQueuedNotifications else { return .drop }
                queue.pending.append(delivery)
                queues.byUpload[delivery.uploadID] = queue
                queues.queued += 1
                return .wait
            }
            guard queues.queued < configuration.maxQueuedNotifications else { return .drop }
            queues.byUpload[delivery.uploadID] = UploadQueue(pending: [delivery])
            queues.queued += 1
            return .start
        }
        switch action {
        case .start: deliver(delivery)
        case .wait: break
        case .drop:
            completed(delivery.type, true, delivery.executor)
            log("hook \(delivery.type) dropped: too many notifications queued; upload=\(delivery.uploadID) request_id=\(delivery.requestID)")
        }
    }

    /// On `delivery.executor`'s loop.
    private func deliver(_ delivery: Delivery) {
        transport.invoke(
            delivery.type, payload: delivery.payload, subject: delivery.subject, forwardedHeaders: delivery.headers,
            retrySafe: true, on: delivery.executor
        ) { [self] result in
            switch result {
            case .failure(let failure):
                completed(delivery.type, true, delivery.executor)
                log("hook \(delivery.type) failed after retries: \(failure) upload=\(delivery.uploadID) request_id=\(delivery.requestID)")
            case .success(let body):
                completed(delivery.type, false, delivery.executor)
                if let stop = delivery.stop, let response = try? HookResponseBody.decode(body), response.stopUpload == true {
                    stop.stop(response: response.responseOverride)
                }
            }
            let next: Delivery? = queues.withLock { queues in
                guard var queue = queues.byUpload[delivery.uploadID] else { return nil }
                queue.pending.removeFirst()
                queues.queued -= 1
                if queue.pending.isEmpty {
                    queues.byUpload[delivery.uploadID] = nil
                    return nil
                }
                queues.byUpload[delivery.uploadID] = queue
                return queue.pending[0]
            }
            // The next one may belong to another loop (a later request on another connection).
            if let next { next.executor.execute { [self] in deliver(next) } }
        }
    }
}
