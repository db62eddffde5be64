import TusCrypto
import TusCore
import TusHTTP1

/// concatenation and concatenation-unfinished.
///
/// A final upload is a record listing its partials; its bytes are never copied. It is assembled
/// (`UploadStore.completeConcatenation`: on the file store, hard links to the partials' data, then the record says
/// `offset == length`) under the final's lock, so two instances never assemble one final at once, by whichever
/// comes first of: the PATCH that completes its last partial (on any instance: `completeFinals(referencing:)`, after
/// answering that PATCH), its creation if the partials are complete already, or a HEAD/GET that finds every partial
/// complete (which also covers a crash between the last PATCH and the assembly). Until then a final whose partial
/// was terminated or expired answers 410 (`partialGone`); an assembled final keeps its bytes whatever happens to the
/// partials later.
///
/// Whoever assembles a final finishes it, once: the lock serializes the assemblers and each re-reads the record under
/// it, so exactly one of them sees it unfinished and moves it to complete. That one sends pre-finish, then
/// post-finish on a yes, with the final as the upload and its own request (the HEAD, the GET, the creating POST,
/// or the PATCH that completed the last partial) as the request. At creation the answer waits for pre-finish,
/// as an append's does; a later assembly's answer does not (it is not the request that completed anything), so a
/// refusal there only withholds post-finish. The sweep's assembly (after a crash) sends none: it has no request.
///
/// An unfinished final expires like any unfinished upload, or a final whose partial is gone would stay forever. Its
/// record gets creation + `expirationSeconds`; what counts is the later of that and its partials' expiries
/// (`finalExpiry`), so a final lives while any partial it waits for is still being uploaded, without each PATCH of a
/// partial having to find and rewrite its finals (on the S3 state store that means reading every record). The sweep
/// moves a due final's record to that later expiry, removes it once a partial is gone, and assembles it if its
/// partials turn out complete. Assembly drops the expiry: a complete upload never expires.
extension UploadService {
    /// A final upload just created.
    public struct CreatedFinal {
        /// Assembled if its partials were all complete already, else as stored.
        public var upload: UploadInfo
        public var isAssembled: Bool
        /// Assembled by this creation, whose answer then owes the finish events (pre-finish, post-finish on a yes).
        /// False when an append on another instance assembled it in between: that one finished it.
        public var isAssembledByCreation: Bool
        /// When it goes if nothing completes it (nil = never): the later of its own expiry and its partials'.
        public var expiresAt: Int64?
    }

    /// A final upload of `partialIDs`, in order. Everything is checked before the record exists: each names a live
    /// partial upload the caller may see, the lengths' sum against the server's maximum. It is assembled before
    /// this returns when it can be, so the client's next status finds it complete; the partials are looked up
    /// again once the final is visible, since one whose last append ended in between found no final to complete.
    /// A failure there leaves it to the next look.
    public func createFinal(
        of partialIDs: [String], metadata: String?, concat: String, for caller: UploadCaller,
        completion: @escaping (Result<CreatedFinal, UploadServiceError>) -> Void
    ) {
        let executor = caller.executor
        lookUpPartials(partialIDs, owner: caller.principal, on: executor) { [self] looked in
            let partials: [UploadInfo]
            switch looked {
            case .failure(let error): return completion(.failure(error))
            case .success(let found): partials = found
            }
            let lengths = partials.compactMap(\.length)
            let length = lengths.count == partials.count ? lengths.reduce(0, +) : nil
            if let length, let maxSize = configuration.maxSize, length > maxSize {
                return completion(.failure(.tooLarge))
            }
            let info = UploadInfo(
                id: SecureRandom.uploadID(), length: length, metadata: metadata, createdAt: now(),
                expiresAt: nextExpiry(), owner: caller.principal, concat: concat, partialIDs: partialIDs)
            store.create(info, on: executor) { [self] created in
                switch created {
                case .failure(let error): completion(.failure(UploadServiceError(error)))
                case .success(let created):
                    notify(.created, caller, upload: created)
                    resolveFinal(created, for: caller, sendsFinishEvents: false) { resolved in
                        let final: CreatedFinal =
                            switch resolved {
                            case .success(.complete(let complete, let assembledHere)):
                                CreatedFinal(
                                    upload: complete, isAssembled: true, isAssembledByCreation: assembledHere,
                                    expiresAt: nil)
                            case .success(.unfinished(_, let expiresAt)):
                                CreatedFinal(
                                    upload: created, isAssembled: false, isAssembledByCreation: false,
                                    expiresAt: expiresAt)
                            case .failure:
                                CreatedFinal(
                                    upload: created, isAssembled: false, isAssembledByCreation: false,
                                    expiresAt: created.isComplete ? nil : created.expiresAt)
                            }
                        completion(.success(final))
                    }
                }
            }
        }
    }

    /// What a final upload is right now.
    enum FinalState {
        /// Assembled: `offset == length`. `assembledHere`: by this look, which finished it unless told not to.
        case complete(UploadInfo, assembledHere: Bool)
        /// Some partial is still being uploaded. `length` is the sum once every partial's length is known;
        /// `expiresAt` is `finalExpiry` (nil = never).
        case unfinished(length: Int64?, expiresAt: Int64?)
    }

    /// The records of `ids` in order (one lookup per distinct id), or the error that makes the list unusable.
    /// Another owner's partial is not found, as it is for HEAD: ids cannot be probed, nor others' bytes borrowed.
    func lookUpPartials(
        _ ids: [String], owner: String? = nil, on executor: any LoopExecutor,
        completion: @escaping (Result<[UploadInfo], UploadServiceError>) -> Void
    ) {
        var distinct: [String] = []
        for id in ids where !distinct.contains(id) { distinct.append(id) }
        var found: [String: UploadInfo] = [:]
        func next(_ index: Int) {
            guard index < distinct.count else { return completion(.success(ids.map { found[$0]! })) }
            liveLookup(distinct[index], on: executor) { result in
                switch result {
                case .failure(let error): completion(.failure(UploadServiceError(error)))
                case .success(.notFound): completion(.failure(.partialNotFound))
                case .success(.gone): completion(.failure(.partialGone))
                case .success(.found(let info)):
                    if let partialOwner = info.owner, partialOwner != owner {
                        return completion(.failure(.partialNotFound))
                    }
                    guard info.isPartial else { return completion(.failure(.notPartial)) }
                    found[info.id] = info
                    next(index + 1)
                }
            }
        }
        next(0)
    }

    /// The final as clients should see it now, assembling it if its partials are all complete. A look that assembles
    /// it sends its finish events (without waiting for them) unless `sendsFinishEvents` is false: the creation
    /// sends them itself, since its answer carries pre-finish's.
    func resolveFinal(
        _ final: UploadInfo, for caller: UploadCaller, sendsFinishEvents: Bool = true,
        completion: @escaping (Result<FinalState, UploadServiceError>) -> Void
    ) {
        if final.isComplete { return completion(.success(.complete(final, assembledHere: false))) }
        let executor = caller.executor
        lookUpPartials(final.partialIDs, owner: final.owner, on: executor) { [self] looked in
            let partials: [UploadInfo]
            switch looked {
            case .failure(.partialNotFound), .failure(.notPartial): return completion(.failure(.partialGone))
            case .failure(let error): return completion(.failure(error))
            case .success(let found): partials = found
            }
            let lengths = partials.compactMap(\.length)
            let length = lengths.count == partials.count ? lengths.reduce(0, +) : nil
            // Partials with deferred lengths can outgrow the limit only after the final was accepted.
            if let length, let maxSize = configuration.maxSize, length > maxSize {
                return completion(.failure(.tooLarge))
            }
            guard partials.allSatisfy(\.isComplete) else {
                let expiresAt = finalExpiry(final, partials: partials)
                return completion(.success(.unfinished(length: length, expiresAt: expiresAt)))
            }
            assemble(final, partials: partials, on: executor) { [self] result in
                if sendsFinishEvents, case .success((let assembled, true)) = result {
                    finish(caller, upload: assembled) { _ in }
                }
                completion(result.map { .complete($0.upload, assembledHere: $0.assembledHere) })
            }
        }
    }

    /// When an unfinished final whose partials are all live expires: the later of its own expiry and theirs (nil =
    /// never). Each PATCH slides only its partial's expiry, and the final must not go while that partial can still
    /// complete it; a complete partial has no expiry and does not hold the final up.
    func finalExpiry(_ final: UploadInfo, partials: [UploadInfo]) -> Int64? {
        guard let own = final.expiresAt else { return nil }
        return partials.lazy.filter { !$0.isComplete }.compactMap(\.expiresAt).reduce(own, max)
    }

    /// Under the final's lock (the file state store rewrites one record at a time per upload, and a cluster should
    /// link once), re-read, then assemble unless somebody already did; `assembledHere` tells which.
    private func assemble(
        _ final: UploadInfo, partials: [UploadInfo], on executor: any LoopExecutor,
        completion: @escaping (Result<(upload: UploadInfo, assembledHere: Bool), UploadServiceError>) -> Void
    ) {
        locker.lock(
            id: final.id, executor: executor, timeoutMilliseconds: configuration.lockReleaseTimeoutMilliseconds,
            onReleaseRequested: {}  // assembling is short; a DELETE of the final waits for it
        ) { [self] locked in
            let lock: any UploadLock
            switch locked {
            case .failure(let error): return completion(.failure(UploadServiceError(error)))
            case .success(let acquired): lock = acquired
            }
            store.lookup(final.id, on: executor) { [self] looked in
                let current: UploadInfo
                switch looked {
                case .failure(let error):
                    lock.release()
                    return completion(.failure(UploadServiceError(error)))
                case .success(.notFound), .success(.gone):
                    lock.release()
                    return completion(.failure(.gone))
                case .success(.found(let found)): current = found
                }
                if current.isComplete {
                    lock.release()
                    return completion(.success((current, false)))
                }
                store.completeConcatenation(current, partials: partials, on: executor) { result in
                    lock.release()
                    completion(
                        result.map { ($0, true) }.mapError { $0 == .gone ? .partialGone : UploadServiceError($0) })
                }
            }
        }
    }

    /// Called once a PATCH completed the partial `partial`: on the next turn of the loop, so that the PATCH's answer
    /// goes out first, assembles every final listing it whose other partials are complete too, and finishes those it
    /// assembled with that PATCH as their request. Failures are left to the next look at the final.
    func completeFinals(referencing partial: UploadInfo, for appender: UploadCaller) {
        // The request is described now, while it is still this request's; only Sendable parts cross the hop.
        let executor = appender.executor
        let principal = appender.principal
        let request = appender.describe()
        executor.execute { [self] in
            let caller = UploadCaller(
                executor: executor, principal: principal, method: request.method, uploadProtocol: request.uploadProtocol
            ) { request }
            completeFinals(referencing: partial, for: caller, on: executor)
        }
    }

    private func completeFinals(
        referencing partial: UploadInfo, for caller: UploadCaller, on executor: any LoopExecutor
    ) {
        store.finals(referencing: partial.id, on: executor) { [self] listed in
            guard case .success(let finalIDs) = listed else { return }
            for finalID in finalIDs {
                liveLookup(finalID, on: executor) { [self] looked in
                    guard case .success(.found(let final)) = looked, final.partialIDs.contains(partial.id),
                        !final.isComplete
                    else { return }
                    resolveFinal(final, for: caller) { _ in }
                }
            }
        }
    }
}
