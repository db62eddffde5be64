public import TusHTTP1

/// Every protocol error the handler answers, in one table (tusd `unrouted_handler.go` errors): status, a
/// stable machine code, and a short message for the text body.
public enum TusError: Error, Sendable, Equatable, CaseIterable {
    case unsupportedVersion
    case notFound
    case gone
    case methodNotAllowed
    case extensionNotSupported
    case invalidContentType
    case invalidOffset
    case mismatchedOffset
    case invalidUploadLength
    case ambiguousUploadLength
    case invalidDeferLength
    case lengthAlreadySet
    case lengthBelowOffset
    case maxSizeExceeded
    case uploadSizeExceeded
    case invalidMetadata
    /// A field that carries one value (`SingletonFields`) was sent on more than one line.
    case repeatedHeader
    case invalidChecksumHeader
    case unsupportedChecksumAlgorithm
    case checksumMismatch
    case uploadLocked
    /// Another request took the upload over (its client is probably gone). 400, not 5xx, so that two live
    /// clients sharing an upload do not keep retrying and taking it from each other.
    case uploadInterrupted
    /// The PATCH's lease on the upload's lock lapsed while the lock service (Redis) was unreachable: a transient
    /// server-side condition, so 503 with `Retry-After`; the client resumes from the offset HEAD reports.
    case uploadLockLost
    /// Read timeout and connection reset are 5xx on purpose: clients retry 5xx, not 4xx (tusd).
    case readTimeout
    case connectionLost
    case malformedBody
    case serverShuttingDown
    case storeFailure
    /// The shared upload state (Redis) cannot be reached: 503 with `Retry-After`, never a guess.
    case storeUnavailable
    /// The disk (or quota) is full, or free space is below `--min-free-space` for a new upload. 5xx, so that
    /// clients retry later, when space may have been freed.
    case insufficientStorage
    case rangeNotSatisfiable
    /// `Upload-Concat` is neither `partial` nor `final;` with at least one upload URL of this server.
    case invalidConcat
    /// A final upload's length is the sum of its partials'; the client must not send one (spec: MUST NOT).
    case finalWithLength
    /// PATCH to a final upload, or a final creation with a body.
    case modifyFinal
    /// A final lists an upload this server does not know.
    case partialNotFound
    /// A final lists an upload that was not created with `Upload-Concat: partial`.
    case notPartial
    /// A partial upload a final needs was terminated or expired before the final was assembled.
    case partialGone
    /// A checksum trailer was announced (`Trailer: Upload-Checksum`) but none arrived.
    case missingChecksumTrailer
    /// No bearer token, or one that failed verification (answered with `WWW-Authenticate`).
    case unauthorized
    /// The pre-access decision said no.
    case accessDenied
    /// The pre-create decision said no (tusd `ErrUploadRejectedByServer`).
    case uploadRejected
    /// The pre-terminate decision said no (tusd `ErrUploadTerminationRejected`).
    case terminationRejected
    /// A post-receive hook asked to stop the running PATCH (tusd `ErrUploadStoppedByServer`).
    case uploadStopped
    /// A gating hook could not be asked: fail closed, retry soon.
    case hookUnavailable

    /// Transient server-side conditions: answered with `Retry-After: 1` (tus and draft alike).
    public var asksToRetrySoon: Bool {
        self == .storeUnavailable || self == .hookUnavailable || self == .uploadLockLost
    }

    public var status: HTTPStatus {
        switch self {
        case .unsupportedVersion: .preconditionFailed
        case .notFound: .notFound
        case .gone: .gone
        case .methodNotAllowed: .methodNotAllowed
        case .extensionNotSupported: .notImplemented
        case .invalidContentType: .unsupportedMediaType
        case .invalidOffset, .invalidUploadLength, .ambiguousUploadLength, .invalidDeferLength, .lengthAlreadySet,
            .lengthBelowOffset, .invalidMetadata, .repeatedHeader, .invalidChecksumHeader,
            .unsupportedChecksumAlgorithm,
            .uploadInterrupted, .malformedBody:
            .badRequest
        case .mismatchedOffset: .conflict
        case .maxSizeExceeded, .uploadSizeExceeded: .payloadTooLarge
        case .checksumMismatch: .checksumMismatch
        case .uploadLocked: .locked
        case .readTimeout, .connectionLost, .storeFailure: .internalServerError
        case .serverShuttingDown, .storeUnavailable, .uploadLockLost: .serviceUnavailable
        case .insufficientStorage: .insufficientStorage
        case .rangeNotSatisfiable: .rangeNotSatisfiable
        case .invalidConcat, .finalWithLength, .partialNotFound, .notPartial: .badRequest
        case .modifyFinal: .forbidden
        case .partialGone: .gone
        case .missingChecksumTrailer: .checksumMismatch
        case .unauthorized: HTTPStatus(code: 401)
        case .accessDenied: .forbidden
        case .uploadRejected, .terminationRejected, .uploadStopped: .badRequest
        case .hookUnavailable: .serviceUnavailable
        }
    }

    public var code: String {
        switch self {
        case .unsupportedVersion: "ERR_UNSUPPORTED_VERSION"
        case .notFound: "ERR_UPLOAD_NOT_FOUND"
        case .gone: "ERR_UPLOAD_GONE"
        case .methodNotAllowed: "ERR_METHOD_NOT_ALLOWED"
        case .extensionNotSupported: "ERR_NOT_IMPLEMENTED"
        case .invalidContentType: "ERR_INVALID_CONTENT_TYPE"
        case .invalidOffset: "ERR_INVALID_OFFSET"
        case .mismatchedOffset: "ERR_MISMATCHED_OFFSET"
        case .invalidUploadLength: "ERR_INVALID_UPLOAD_LENGTH"
        case .ambiguousUploadLength: "ERR_AMBIGUOUS_UPLOAD_LENGTH"
        case .invalidDeferLength: "ERR_INVALID_UPLOAD_DEFER_LENGTH"
        case .lengthAlreadySet: "ERR_UPLOAD_LENGTH_ALREADY_SET"
        case .lengthBelowOffset: "ERR_UPLOAD_LENGTH_BELOW_OFFSET"
        case .maxSizeExceeded: "ERR_MAX_SIZE_EXCEEDED"
        case .uploadSizeExceeded: "ERR_UPLOAD_SIZE_EXCEEDED"
        case .invalidMetadata: "ERR_INVALID_METADATA"
        case .repeatedHeader: "ERR_REPEATED_HEADER"
        case .invalidChecksumHeader: "ERR_INVALID_CHECKSUM_HEADER"
        case .unsupportedChecksumAlgorithm: "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM"
        case .checksumMismatch: "ERR_CHECKSUM_MISMATCH"
        case .uploadLocked: "ERR_UPLOAD_LOCKED"
        case .uploadInterrupted: "ERR_UPLOAD_INTERRUPTED"
        case .uploadLockLost: "ERR_UPLOAD_LOCK_LOST"
        case .readTimeout: "ERR_READ_TIMEOUT"
        case .connectionLost: "ERR_CONNECTION_LOST"
        case .malformedBody: "ERR_MALFORMED_BODY"
        case .serverShuttingDown: "ERR_SERVER_SHUTDOWN"
        case .storeFailure: "ERR_INTERNAL_SERVER_ERROR"
        case .storeUnavailable: "ERR_STORE_UNAVAILABLE"
        case .insufficientStorage: "ERR_INSUFFICIENT_STORAGE"
        case .rangeNotSatisfiable: "ERR_RANGE_NOT_SATISFIABLE"
        case .invalidConcat: "ERR_INVALID_CONCAT"
        case .finalWithLength: "ERR_INVALID_CONCAT_LENGTH"
        case .modifyFinal: "ERR_MODIFY_FINAL"
        case .partialNotFound: "ERR_PARTIAL_NOT_FOUND"
        case .notPartial: "ERR_NOT_PARTIAL"
        case .partialGone: "ERR_PARTIAL_GONE"
        case .missingChecksumTrailer: "ERR_CHECKSUM_TRAILER_MISSING"
        case .unauthorized: "ERR_UNAUTHORIZED"
        case .accessDenied: "ERR_ACCESS_DENIED"
        case .uploadRejected: "ERR_UPLOAD_REJECTED"
        case .terminationRejected: "ERR_UPLOAD_TERMINATION_REJECTED"
        case .uploadStopped: "ERR_UPLOAD_STOPPED"
        case .hookUnavailable: "ERR_HOOK_UNAVAILABLE"
        }
    }

    public var message: String {
        switch self {
        case .unsupportedVersion: "unsupported version (Tus-Resumable must be 1.0.0)"
        case .notFound: "upload not found"
        case .gone: "upload terminated or expired"
        case .methodNotAllowed: "method not allowed on this resource"
        case .extensionNotSupported: "extension not supported by this server"
        case .invalidContentType: "Content-Type must be application/offset+octet-stream"
        case .invalidOffset: "missing or invalid Upload-Offset header"
        case .mismatchedOffset: "Upload-Offset does not match the upload's current offset"
        case .invalidUploadLength: "missing or invalid Upload-Length header"
        case .ambiguousUploadLength: "Upload-Length and Upload-Defer-Length must not both be set"
        case .invalidDeferLength: "Upload-Defer-Length must be 1"
        case .lengthAlreadySet: "the upload's length is already set and cannot change"
        case .lengthBelowOffset: "Upload-Length is below the upload's offset"
        case .maxSizeExceeded: "upload is larger than the maximum size"
        case .uploadSizeExceeded: "body would exceed the upload's length"
        case .invalidMetadata: "invalid Upload-Metadata header"
        case .repeatedHeader: "header must appear only once"
        case .invalidChecksumHeader: "invalid Upload-Checksum header"
        case .unsupportedChecksumAlgorithm: "unsupported checksum algorithm"
        case .checksumMismatch: "checksum mismatch; the request's bytes were discarded"
        case .uploadLocked: "upload is in use by another request"
        case .uploadInterrupted: "upload was taken over by another request for this upload"
        case .uploadLockLost:
            "the request's lock on the upload lapsed while the lock service was unreachable; resume from the offset "
                + "a HEAD reports"
        case .readTimeout: "timed out reading the request body"
        case .connectionLost: "connection lost while reading the request body"
        case .malformedBody: "malformed request body"
        case .serverShuttingDown: "server is shutting down"
        case .storeFailure: "storage failure"
        case .storeUnavailable: "upload state temporarily unavailable; retry later"
        case .insufficientStorage: "not enough storage space on the server; try again later"
        case .rangeNotSatisfiable: "requested range not satisfiable"
        case .invalidConcat: "invalid Upload-Concat header: use partial or final;<url> <url> ... of this server"
        case .finalWithLength: "a final upload must not carry Upload-Length or Upload-Defer-Length"
        case .modifyFinal: "a final upload cannot be modified"
        case .partialNotFound: "a listed partial upload does not exist"
        case .notPartial: "a listed upload was not created with Upload-Concat: partial"
        case .partialGone: "a partial upload of this final upload was terminated or expired"
        case .missingChecksumTrailer: "Upload-Checksum trailer announced but not sent; the request's bytes were discarded"
        case .unauthorized: "missing or invalid bearer token"
        case .accessDenied: "access denied"
        case .uploadRejected: "upload creation has been rejected by server"
        case .terminationRejected: "upload termination has been rejected by server"
        case .uploadStopped: "upload has been stopped by server"
        case .hookUnavailable: "a hook could not be reached; retry later"
        }
    }
}
