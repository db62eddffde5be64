/// Why an upload operation did not happen, in the service's words. Each wire protocol maps these to its own
/// errors (tus: `TusHandler.tusError`), so the service never names a status code or a header.
public import TusHTTP1

public enum UploadServiceError: Error, Sendable {
    case notFound
    /// Terminated or expired.
    case gone
    /// The upload's lock was not let go in time.
    case locked
    /// The state store, data store or lock service cannot be reached now; retrying may help.
    case unavailable
    /// The store failed in a way a retry will not fix.
    case storageFailure
    case insufficientStorage
    case lengthAlreadySet
    /// A declared length below what is already stored.
    case lengthBelowOffset
    /// A final upload's bytes are its partials': nothing may be appended to it.
    case finalNotWritable
    /// More bytes than the upload's length.
    case exceedsLength
    /// The write did not start at the upload's offset (another writer moved it).
    case offsetMismatch
    /// The upload is complete (at `length`) and the request would append to it anyway.
    case alreadyComplete(length: Int64)
    /// The request's idea of the upload's length (declared again, or implied by where its completing body ended)
    /// is not the length recorded; what the body brought is kept.
    case lengthMismatch
    /// Larger than the server's maximum upload size.
    case tooLarge
    /// The operation needs an ability the store lacks or the operator withholds.
    case notOffered(UploadStoreCapabilities)
    /// A concatenation names an upload that does not exist (or belongs to someone else).
    case partialNotFound
    /// A concatenation names an upload that is not a partial.
    case notPartial
    /// A final's partial was terminated or expired before the final was assembled.
    case partialGone
    /// Another request for the upload asked this append to let go of it.
    case interrupted
    /// The append's lease on the upload's lock was found gone (`UploadLock.isLeaseLost`): a transient condition of
    /// the lock service, not another request; the client resumes from the offset a status reports.
    case lockLost
    /// The body's digest is not the one expected: its bytes were discarded.
    case checksumMismatch
    /// A digest was announced to come after the body and did not: its bytes were discarded.
    case checksumMissing
    /// The digest after the body is malformed: its bytes were discarded.
    case checksumMalformed
    /// The digest after the body names an algorithm this server does not offer: its bytes were discarded.
    case checksumAlgorithmUnsupported
    /// The body ended early (peer gone, timeout, shutdown, bad framing); what arrived is kept, unless checksummed.
    case bodyAborted(BodyAbortReason)
    /// A post-receive hook stopped the upload, which was then terminated; `response` is what it wants answered.
    case stopped(response: ResponseOverride)
    /// An event handler had to decide and could not be asked: the operation fails closed.
    case hookUnavailable
    /// An event handler said no at `point`; `response` is what it wants the answer to carry.
    case rejected(DecisionPoint, response: ResponseOverride)

    init(_ error: StoreError) {
        self =
            switch error {
            case .notFound: .notFound
            case .gone: .gone
            case .lengthAlreadySet: .lengthAlreadySet
            case .exceedsLength: .exceedsLength
            case .unavailable: .unavailable
            case .conflict: .offsetMismatch
            case .insufficientStorage: .insufficientStorage
            case .alreadyExists, .io: .storageFailure
            }
    }

    init(_ error: UploadLockError) {
        self =
            switch error {
            case .timedOut: .locked
            case .unavailable: .unavailable
            }
    }
}
