public import TusCrypto
public import TusHTTP1

extension UploadService {
    /// What an append asks for, parsed by the adapter from its request.
    public struct AppendRequest {
        /// Where the body starts; must be the upload's offset.
        public var offset: Int64
        /// The upload's length, declared by this append (a deferred length; once set it never changes).
        public var declaredLength: Int64?
        /// The body's length when the framing says it in advance, so an oversized body is refused unread.
        public var knownBodyLength: Int64?
        public var checksum: AppendChecksum
        /// The body is the rest of the upload (the draft's `Upload-Complete: ?1`): when it ends as framed, the upload
        /// is complete at the offset it reached, declaring the length then if it is still deferred, and a length
        /// already known that the body did not reach is `lengthMismatch`.
        public var completesAtBodyEnd: Bool
        /// `declaredLength` may repeat the length already set (the draft's `Upload-Length` on every request); a
        /// different one is `lengthMismatch`. Without it any second declaration is `lengthAlreadySet` (tus).
        public var mayRepeatLength: Bool
        /// A complete upload takes no append at all, not even an empty one (`alreadyComplete`).
        public var refusesCompleteUpload: Bool
        /// Told the committed offset as the body streams in, at most once per progress interval (the draft's
        /// progress 104s), on the caller's loop.
        public var progress: ((Int64) -> Void)?
        /// Run once the upload is complete through this request, before pre-finish: an error fails the request
        /// (`.failed`) and the upload is not finished (the draft's `Repr-Digest` over several requests).
        public var beforeFinish: BeforeFinish?

        public init(
            offset: Int64, declaredLength: Int64? = nil, knownBodyLength: Int64? = nil,
            checksum: AppendChecksum = .none, completesAtBodyEnd: Bool = false, mayRepeatLength: Bool = false, refusesCompleteUpload: Bool = false,
            progress: ((Int64) -> Void)? = nil
        ) {
            self.offset = offset
            self.declaredLength = declaredLength
            self.knownBodyLength = knownBodyLength
            self.checksum = checksum
            self.completesAtBodyEnd = completesAtBodyEnd
            self.mayRepeatLength = mayRepeatLength
            self.refusesCompleteUpload = refusesCompleteUpload
            self.progress = progress
        }
    }

    /// See `AppendRequest.beforeFinish`; `completion` on the caller's loop.
    public typealias BeforeFinish =
        (_ upload: UploadInfo, _ completion: @escaping (UploadServiceError?) -> Void) -> Void

    /// What to verify an append's body against: a digest known before it, or one that comes after it, whose
    /// algorithm is known only then, so the body is hashed with each candidate and `verify` (the adapter's parser)
    /// judges the digests against the trailer section.
    public enum AppendChecksum {
        case none
        case digest(UploadChecksum)
        case afterBody(
            algorithms: [DigestAlgorithm],
            verify: (_ trailers: HTTPHeaders, _ digests: [DigestAlgorithm: [UInt8]]) -> UploadServiceError?)
    }

    /// How an append ended. The adapter needs the phase: a refusal happened before any byte was read (the body, if
    /// any, is still unread), a failure while or after it was read (some of it may be kept).
    public enum AppendOutcome {
        case appended(Appended)
        case refused(UploadServiceError)
        case failed(UploadServiceError)
    }

    /// Appends `body` at `request.offset`. Everything the stored state can tell is checked before a byte is read
    /// (gone, owner, pre-access, a final, the offset, the declared length, the known body length against what
    /// may still be appended); then the upload's lock is taken, asking a previous holder to let go (the
    /// holder of a dead connection must not block the client's resume), the state re-read under it, and the body
    /// streamed by the append engine (`UploadAppend`).
    public func append(
        to id: String, _ request: AppendRequest, for caller: UploadCaller, body: any UploadBodySource,
        completion: @escaping (AppendOutcome) -> Void
    ) {
        let holder = LockHolder()
        access(id, for: caller) { [self] accessed in
            guard case .success(let info) = accessed else {
                if case .failure(let error) = accessed { completion(.refused(error)) }
                return
            }
            // A final's bytes are its partials'; nothing may append to it.
            if info.isFinal { return completion(.refused(.finalNotWritable)) }
            if request.refusesCompleteUpload, info.isComplete {
                return completion(.refused(.alreadyComplete(length: info.offset)))
            }
            lock(id, for: caller, onReleaseRequested: { holder.requestRelease() }) { [self] locked in
                let lock: any UploadLock
                switch locked {
                case .failure(let error): return completion(.refused(error))
                case .success(let acquired): lock = acquired
                }
                // Re-read under the lock: the previous holder may have moved the offset.
                access(id, for: caller, release: lock) { [self] accessed in
                    switch accessed {
                    case .failure(let error): completion(.refused(error))
                    case .success(let info):
                        appendLocked(info, request, caller: caller, body: body, lock: lock, holder: holder, completion)
                    }
                }
            }
        }
    }

    private func appendLocked(
        _ info: UploadInfo, _ request: AppendRequest, caller: UploadCaller, body: any UploadBodySource,
        lock: any UploadLock, holder: LockHolder, _ completion: @escaping (AppendOutcome) -> Void
    ) {
        let id = info.id
        let offset = request.offset
        func refuse(_ error: UploadServiceError) {
            lock.release()
            completion(.refused(error))
        }
        if holder.isReleaseRequested { return refuse(lock.isLeaseLost ? .lockLost : .interrupted) }
        if request.refusesCompleteUpload, info.isComplete { return refuse(.alreadyComplete(length: info.offset)) }
        guard offset == info.offset else { return refuse(.offsetMismatch) }
        var length = info.length
        var request = request
        if request.mayRepeatLength, let declaredLength = request.declaredLength, let known = info.length {
            guard declaredLength == known else { return refuse(.lengthMismatch) }
            request.declaredLength = nil
        }
        if let declaredLength = request.declaredLength {
            // "Once set the length MUST NOT be changed", not even to the same value (tusd does the same).
            guard info.isLengthDeferred else { return refuse(.lengthAlreadySet) }
            guard declaredLength >= info.offset else { return refuse(.lengthBelowOffset) }
            if let refusal = refusal(ofLength: declaredLength, for: caller) { return refuse(refusal) }
            length = declaredLength
        }
        let limit = byteLimit(length: length, offset: offset)
        if let known = request.knownBodyLength, let limit, known > limit { return refuse(.exceedsLength) }
        var discardable = true
        if case .none = request.checksum { discardable = false }
        var declared = info
        declared.length = length
        let openWriter = { [self] in
            store.openWriter(id: id, startingAt: offset, discardable: discardable, lock: lock, on: caller.executor) {
                [self] result in
                switch result {
                case .failure(let error): refuse(UploadServiceError(error))
                case .success(let writer):
                    UploadAppend(
                        service: self, caller: caller, body: body, writer: writer, lock: lock, holder: holder,
                        limit: limit, checksum: request.checksum, purpose: .append, upload: declared,
                        startedComplete: info.isComplete, completesAtBodyEnd: request.completesAtBodyEnd,
                        progress: request.progress, beforeFinish: request.beforeFinish,
                        completion: Self.outcome(completion)
                    ).start()
                }
            }
        }
        guard let declaredLength = request.declaredLength else { return openWriter() }
        store.declareLength(id: id, length: declaredLength, on: caller.executor) { result in
            switch result {
            case .failure(let error): refuse(UploadServiceError(error))
            case .success: openWriter()
            }
        }
    }

    /// Streams the body of a creation into `upload`, which `create` made a moment ago (so nobody else can hold its
    /// lock, and its offset is 0). The adapter has announced the upload (a tus 201 comes after, a draft's 104 before).
    /// `completesAtBodyEnd` and `progress` as for `AppendRequest`.
    public func appendCreationBody(
        to upload: UploadInfo, checksum: AppendChecksum, for caller: UploadCaller, body: any UploadBodySource,
        completesAtBodyEnd: Bool = false, progress: ((Int64) -> Void)? = nil, beforeFinish: BeforeFinish? = nil,
        completion: @escaping (AppendOutcome) -> Void
    ) {
        let id = upload.id
        let holder = LockHolder()
        let executor = caller.executor
        locker.tryLock(id: id, executor: executor, onReleaseRequested: { holder.requestRelease() }) { [self] locked in
            guard case .success(let acquired) = locked, let lock = acquired else {
                let error: UploadServiceError =
                    if case .failure(let lockError) = locked { UploadServiceError(lockError) } else { .storageFailure }
                return completion(.refused(error))
            }
            var discardable = true
            if case .none = checksum { discardable = false }
            store.openWriter(id: id, startingAt: 0, discardable: discardable, lock: lock, on: executor) {
                [self] result in
                switch result {
                case .failure(let error):
                    lock.release()
                    completion(.refused(UploadServiceError(error)))
                case .success(let writer):
                    UploadAppend(
                        service: self, caller: caller, body: body, writer: writer, lock: lock, holder: holder,
                        limit: byteLimit(length: upload.length, offset: 0), checksum: checksum, purpose: .creation,
                        upload: upload, completesAtBodyEnd: completesAtBodyEnd, progress: progress,
                        beforeFinish: beforeFinish, completion: Self.outcome(completion)
                    ).start()
                }
            }
        }
    }

    private static func outcome(
        _ completion: @escaping (AppendOutcome) -> Void
    ) -> (Result<Appended, UploadServiceError>) -> Void {
        { result in
            switch result {
            case .success(let appended): completion(.appended(appended))
            case .failure(let error): completion(.failed(error))
            }
        }
    }

    /// The server's maximum, lowered by the caller's own cap (a token's `max_size`).
    public func maxUploadLength(for caller: UploadCaller) -> Int64? {
        maxUploadLength(callerCap: caller.maxUploadLength)
    }

    /// As `maxUploadLength(for:)`, from the caller's cap alone (no `UploadCaller` to build per answer).
    public func maxUploadLength(callerCap: Int64?) -> Int64? {
        switch (configuration.maxSize, callerCap) {
        case (let server?, let caller?): min(server, caller)
        case (let server, nil): server
        case (nil, let caller): caller
        }
    }

    /// How many bytes an append starting at `offset` may add: up to the length, or, while the length is
    /// deferred, up to the maximum size.
    public func byteLimit(length: Int64?, offset: Int64) -> Int64? {
        if let length { return length - offset }
        if let maxSize = configuration.maxSize { return maxSize - offset }
        return nil
    }
}
