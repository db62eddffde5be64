public import TusCore
public import TusHTTP1

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The upload engine under every wire protocol: create, append, status, cancel, concatenate, download, as domain
/// operations with domain results and `UploadServiceError`. It owns what makes an upload an upload whatever the
/// wire says: the stores, the locks (and asking a holder to let go), expiry, owners, events (hooks, metrics).
/// It names no header and no status code; a protocol adapter (`TusHandler` for tus 1.0.0) parses a request into
/// one of these calls and writes the result back in its own words, so a second protocol forks nothing.
///
/// Threading: as `TusHandler`. Its own state is immutable; completions come back on the caller's loop.
public final class UploadService: Sendable {
    public let configuration: TusConfiguration
    public let store: any UploadStore
    public let locker: any UploadLocker
    /// Hooks and metrics: told about uploads, and asked before creation, finish, termination and access.
    public let events: any UploadEventHandler
    /// Asked about every request but preflights; nil lets everyone in. The adapter asks it, since the question is
    /// about a request; what it grants reaches the operations as `UploadCaller.principal`.
    public let authorizer: (any RequestAuthorizer)?
    /// Unix seconds; injected so expiry is testable.
    let now: @Sendable () -> Int64

    public init(
        configuration: TusConfiguration = TusConfiguration(), store: any UploadStore,
        locker: any UploadLocker = MemoryLocker(), events: any UploadEventHandler = NoUploadEvents(),
        authorizer: (any RequestAuthorizer)? = nil,
        now: @escaping @Sendable () -> Int64 = TusHandler.systemNow
    ) {
        self.configuration = configuration
        self.store = store
        self.locker = locker
        self.events = events
        self.authorizer = authorizer
        self.now = now
    }

    /// What this service offers: the store's capabilities less those the operator withholds. Every check of a
    /// capability goes through here, so a withheld one is answered exactly as one the store lacks.
    public var capabilities: UploadStoreCapabilities {
        store.capabilities.subtracting(configuration.withheldCapabilities)
    }

    /// An append that committed: the upload as it now stands, and what pre-finish wants the answer to carry (when
    /// this append completed the upload).
    public struct Appended {
        public var upload: UploadInfo
        public var response: ResponseOverride

        init(upload: UploadInfo, response: ResponseOverride = ResponseOverride()) {
            self.upload = upload
            self.response = response
        }
    }

    // MARK: Status

    /// What an upload is now, as a client resuming it needs to know.
    public enum Status {
        /// An upload, or a final that is assembled (possibly by this call): `info.offset` is what is stored.
        case upload(UploadInfo)
        /// A final some partial of which is still being uploaded: it has no offset yet. `length` is the sum once
        /// every partial's length is known; `expiresAt` is when it goes (`finalExpiry`; nil = never).
        case unfinishedFinal(UploadInfo, length: Int64?, expiresAt: Int64?)
    }

    /// Answers from the store's state and never waits for the upload's lock: a client resuming after a dropped
    /// connection must learn the offset even while the dead append still holds the upload. (An unfinished final
    /// is the exception: the first look after its last partial completed assembles it.)
    public func status(
        of id: String, for caller: UploadCaller, completion: @escaping (Result<Status, UploadServiceError>) -> Void
    ) {
        access(id, for: caller) { [self] accessed in
            guard case .success(let info) = accessed, info.isFinal, !info.isComplete else {
                return completion(accessed.map { .upload($0) })
            }
            resolveFinal(info, for: caller) { resolved in
                completion(
                    resolved.map { state in
                        switch state {
                        case .complete(let complete, _): .upload(complete)
                        case .unfinished(let length, let expiresAt):
                            .unfinishedFinal(info, length: length, expiresAt: expiresAt)
                        }
                    })
            }
        }
    }

    // MARK: Cancel

    /// Removes an upload's data and state (it answers `gone` afterwards). Takes the lock like an append, asking an
    /// in-flight append to let go (tusd behaviour since #320), so data is never removed under a writer. The result
    /// is what the pre-terminate decision wants the answer to carry.
    public func cancel(
        _ id: String, for caller: UploadCaller,
        completion: @escaping (Result<ResponseOverride, UploadServiceError>) -> Void
    ) {
        guard capabilities.contains(.termination) else { return completion(.failure(.notOffered(.termination))) }
        let executor = caller.executor
        access(id, for: caller) { [self] accessed in
            guard case .success = accessed else { return completion(accessed.map { _ in ResponseOverride() }) }
            // A removal is short; the next request waits for it.
            lock(id, for: caller, onReleaseRequested: {}) { [self] locked in
                let lock: any UploadLock
                switch locked {
                case .failure(let error): return completion(.failure(error))
                case .success(let acquired): lock = acquired
                }
                access(id, for: caller, release: lock) { [self] accessed in
                    guard case .success(let info) = accessed else { return completion(accessed.map { _ in .init() }) }
                    decide(.preTerminate, for: caller, upload: info, release: lock) { [self] decided in
                        guard case .success(let verdict) = decided else {
                            return completion(decided.map { _ in ResponseOverride() })
                        }
                        store.remove(id: id, reason: .terminated, on: executor) { [self] result in
                            lock.release()
                            switch result {
                            case .success:
                                notify(.terminated, caller, upload: info)
                                completion(.success(verdict.response))
                            case .failure(let error): completion(.failure(UploadServiceError(error)))
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: Shared steps

    /// Like `store.lookup`, with expiry applied: an unfinished upload past its `expiresAt` is gone even
    /// before the sweep removes it.
    func liveLookup(
        _ id: String, on executor: any LoopExecutor, completion: @escaping (Result<UploadLookup, StoreError>) -> Void
    ) {
        store.lookup(id, on: executor) { [self] result in
            if case .success(.found(let info)) = result, isExpired(info) { return completion(.success(.gone)) }
            completion(result)
        }
    }

    /// The lookup every operation on an upload starts with. An upload with an owner is not found by anyone else.
    /// The first lookup of a request (the one without a lock) also asks the pre-access decision. `lock` is released
    /// on failure.
    func access(
        _ id: String, for caller: UploadCaller, release lock: (any UploadLock)? = nil,
        completion: @escaping (Result<UploadInfo, UploadServiceError>) -> Void
    ) {
        liveLookup(id, on: caller.executor) { [self] result in
            switch result.flatMap(\.record) {
            case .success(let info):
                if let owner = info.owner, owner != caller.principal {
                    lock?.release()
                    return completion(.failure(.notFound))
                }
                guard lock == nil, events.wantsAccessDecisions else { return completion(.success(info)) }
                decide(.preAccess, for: caller, upload: info) { decided in completion(decided.map { _ in info }) }
            case .failure(let error):
                lock?.release()
                completion(.failure(UploadServiceError(error)))
            }
        }
    }

    /// The upload's lock, asking its holder to let go (`onReleaseRequested` is this caller's answer to the same
    /// question later). The wait is measured.
    func lock(
        _ id: String, for caller: UploadCaller, onReleaseRequested: @escaping () -> Void,
        completion: @escaping (Result<any UploadLock, UploadServiceError>) -> Void
    ) {
        let waitStarted = MonotonicClock.nanoseconds
        locker.lock(
            id: id, executor: caller.executor, timeoutMilliseconds: configuration.lockReleaseTimeoutMilliseconds,
            onReleaseRequested: onReleaseRequested
        ) { [self] result in
            switch result {
            case .success(let lock):
                measureLockWait(since: waitStarted, on: caller.executor)
                completion(.success(lock))
            case .failure(let error): completion(.failure(UploadServiceError(error)))
            }
        }
    }

    /// Asks `point` and goes on only if the answer is yes; otherwise `.rejected` (with the hook's response) or
    /// `.hookUnavailable` (fail closed), and `lock` is released. Costs nothing (and answers at once) when no event
    /// handler wants the decision.
    func decide(
        _ point: DecisionPoint, for caller: UploadCaller, upload: UploadInfo, release lock: (any UploadLock)? = nil,
        completion: @escaping (Result<EventVerdict, UploadServiceError>) -> Void
    ) {
        let wanted = point == .preAccess ? events.wantsAccessDecisions : events.wantsDecision(point)
        guard wanted else { return completion(.success(.proceed)) }
        let event = UploadEvent(upload: upload, request: caller.describe())
        events.decide(point, event, on: caller.executor) { verdict in
            if verdict.isUnavailable {
                lock?.release()
                return completion(.failure(.hookUnavailable))
            }
            if verdict.isRejected {
                lock?.release()
                return completion(.failure(.rejected(point, response: verdict.response)))
            }
            completion(.success(verdict))
        }
    }

    /// An upload reached its length: pre-finish, then post-finish only if pre-finish accepted (tusd
    /// `emitFinishEvents`: a pre-finish error returns before the post-finish notification). `completion` gets the
    /// verdict, on the caller's loop.
    func finish(_ caller: UploadCaller, upload: UploadInfo, completion: @escaping (EventVerdict) -> Void) {
        let decided: (EventVerdict) -> Void = { [self] verdict in
            if !verdict.isUnavailable && !verdict.isRejected { notify(.finished, caller, upload: upload) }
            completion(verdict)
        }
        guard events.wantsDecision(.preFinish) else { return decided(.proceed) }
        let event = UploadEvent(upload: upload, request: caller.describe())
        events.decide(.preFinish, event, on: caller.executor, completion: decided)
    }

    func notify(_ notification: UploadNotification, _ caller: UploadCaller, upload: UploadInfo) {
        let request =
            events.wantsRequestDetails
            ? caller.describe()
            : EventRequest(
                method: caller.method, uri: "", principal: caller.principal, uploadProtocol: caller.uploadProtocol)
        events.notify(notification, UploadEvent(upload: upload, request: request), on: caller.executor)
    }

    /// An unfinished final is left to the sweep: it lives as long as the partials it waits for (`finalExpiry`), which
    /// takes looking them up, and every request that could use it (status, download) looks them up anyway and
    /// answers `partialGone` once one is gone.
    func isExpired(_ info: UploadInfo) -> Bool {
        guard configuration.expirationSeconds > 0, !info.isComplete, !info.isFinal, let expiresAt = info.expiresAt
        else { return false }
        return expiresAt <= now()
    }

    /// The expiry a write made now gives an unfinished upload (sliding expiration).
    func nextExpiry() -> Int64? {
        configuration.expirationSeconds > 0 ? now() + configuration.expirationSeconds : nil
    }

    func measureLockWait(since started: UInt64, on executor: any LoopExecutor) {
        let waited = MonotonicClock.nanoseconds &- started
        events.measure(.lockWait(nanoseconds: waited), on: executor)
    }
}

/// Where an append's bytes come from: the exchange of the request that carries them.
public protocol UploadBodySource {
    /// Streams the body into `sink` (once).
    func readBody(into sink: any HTTPBodySink)
    /// Stops taking the body without failing the request (a hook stopped the upload).
    func stopBody()
}

/// Who is asking, as every operation needs it: the loop its completions come back on, the principal that owns what
/// it creates and may see only what it owns, and how events describe the request (built only when one is sent).
public struct UploadCaller {
    public let executor: any LoopExecutor
    /// What the authorizer granted (`sub` of a token); nil without authentication.
    public let principal: String?
    /// The caller's own cap on an upload's length (a token's `max_size`), below the server's.
    public let maxUploadLength: Int64?
    /// What a notification tells of its request when no handler wants it described (`wantsRequestDetails`).
    public let method: HTTPMethod
    public let uploadProtocol: UploadProtocol
    let describe: () -> EventRequest

    public init(
        executor: any LoopExecutor, principal: String? = nil, maxUploadLength: Int64? = nil, method: HTTPMethod,
        uploadProtocol: UploadProtocol, describe: @escaping () -> EventRequest
    ) {
        self.method = method
        self.uploadProtocol = uploadProtocol
        self.executor = executor
        self.principal = principal
        self.maxUploadLength = maxUploadLength
        self.describe = describe
    }
}
