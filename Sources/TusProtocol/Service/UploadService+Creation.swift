import TusCrypto

extension UploadService {
    /// What a client asks for when it creates an upload; validated by the adapter (lengths against the maximum,
    /// metadata well-formed) before anything exists.
    public struct NewUpload: Sendable {
        /// nil: deferred, declared by a later append.
        public var length: Int64?
        /// In the store's encoding (tus `Upload-Metadata`: `key base64,key base64`), kept exactly as given so it can
        /// be handed back byte for byte; `UploadMetadata.encode` makes it from key/value pairs.
        public var metadata: String?
        /// The tus `Upload-Concat` value of a partial, kept for its status; nil for a plain upload.
        public var concat: String?
        /// A partial of a later concatenation.
        public var isPartial: Bool
        /// `UploadInfo.awaitsCompletion`: a draft upload whose creation did not say it is complete.
        public var awaitsCompletion: Bool
        /// `UploadInfo.representationDigest` and `wantedDigest`.
        public var representationDigest: String?
        public var wantedDigest: String?

        public init(
            length: Int64?, metadata: String? = nil, concat: String? = nil, isPartial: Bool = false,
            awaitsCompletion: Bool = false, representationDigest: String? = nil, wantedDigest: String? = nil
        ) {
            self.representationDigest = representationDigest
            self.wantedDigest = wantedDigest
            self.length = length
            self.awaitsCompletion = awaitsCompletion
            self.metadata = metadata
            self.concat = concat
            self.isPartial = isPartial
        }
    }

    /// An upload that now exists, and what the pre-create decision wants the answer to carry.
    public struct Created {
        public var upload: UploadInfo
        public var response: ResponseOverride
    }

    /// Why an upload of `length` bytes may not be created or declared by `caller` (over the server's maximum or the
    /// caller's cap), if it may not. Checked by the adapter before it reads a body.
    public func refusal(ofLength length: Int64, for caller: UploadCaller) -> UploadServiceError? {
        if let maxSize = maxUploadLength(for: caller), length > maxSize { return .tooLarge }
        return nil
    }

    /// Why no upload may be created now, if none may: the free space is below the operator's reserve. Only new
    /// uploads are turned away: those in progress may still use the reserve to finish.
    public func refusalOfNewUploads() -> UploadServiceError? {
        guard let required = configuration.minFreeSpace, let space = configuration.freeSpace?() else { return nil }
        return required.isMet(by: space) ? nil : .insufficientStorage
    }

    /// Asks pre-access and pre-create (which may change the id and metadata), mints the id, stores the record and
    /// tells post-create. The upload exists, with its id, before any byte of a creation body is read: an adapter
    /// can announce where it lives (a 104 with `Location`) and then `append` the body to it. An empty upload is
    /// complete at once; the adapter finishes it (`finish`) as it answers.
    public func create(
        _ new: NewUpload, for caller: UploadCaller, completion: @escaping (Result<Created, UploadServiceError>) -> Void
    ) {
        // The id stays empty until the decisions are made (tusd: pre-create sees no id).
        let proposed = UploadInfo(
            id: "", length: new.length, metadata: new.metadata, createdAt: now(),
            expiresAt: new.length == 0 && !new.awaitsCompletion ? nil : nextExpiry(), owner: caller.principal,
            concat: new.concat, isPartial: new.isPartial, awaitsCompletion: new.awaitsCompletion,
            representationDigest: new.representationDigest, wantedDigest: new.wantedDigest)
        decide(.preAccess, for: caller, upload: proposed) { [self] accessed in
            if case .failure(let error) = accessed { return completion(.failure(error)) }
            decide(.preCreate, for: caller, upload: proposed) { [self] decided in
                let verdict: EventVerdict
                switch decided {
                case .failure(let error): return completion(.failure(error))
                case .success(let granted): verdict = granted
                }
                var info = proposed
                info.id = SecureRandom.uploadID()
                if let changedID = verdict.changedID, !changedID.isEmpty {
                    guard UploadID.isValid(changedID) else { return completion(.failure(.storageFailure)) }
                    info.id = changedID
                }
                if let changed = verdict.changedMetadata { info.metadata = UploadMetadata.encode(changed) }
                store.create(info, on: caller.executor) { [self] result in
                    switch result {
                    case .failure(let error): completion(.failure(UploadServiceError(error)))
                    case .success(let created):
                        notify(.created, caller, upload: created)
                        completion(.success(Created(upload: created, response: verdict.response)))
                    }
                }
            }
        }
    }
}
