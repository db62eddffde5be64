import TusCrypto
import TusHTTP1

/// Streams one request body (PATCH, or a creation-with-upload POST) into the store.
///
/// Order of events, all on the request's loop:
/// 1. each fragment updates the checksum digest, then goes to `UploadWriter.write`; its `done` is called when
///    that write completes, which is what paces the client (the connection limits outstanding fragments);
/// 2. input stops for one reason (`Stop`): body end, abort, overflow past the length, a takeover request from
///    another request for this upload, or a failed write; early stops are answered at once with
///    `closeConnection`, which makes the connection stop reading;
/// 3. once no write is outstanding: roll back (checksum mismatch, or any stop of a checksummed request, whose
///    bytes cannot be verified) or commit (everything else: the spec asks to keep as much as possible);
/// 4. release the lock, then respond. Success is sent only after the commit, so acknowledged bytes are
///    never lost.
///
/// Overflow of a chunked body: the bytes up to the upload's length are written and kept (unless the
/// request is checksummed), and the request is answered 413.
final class UploadAppend: HTTPBodySink {
    enum Purpose {
        case patch
        case creation(location: String)
    }

    private enum Stop {
        case ended
        case aborted(BodyAbortReason)
        case overflow
        case takenOver
        case writeFailed(StoreError)
    }

    private let handler: TusHandler
    private let request: TusRequest
    private let writer: any UploadWriter
    private let lock: any UploadLock
    private let holder: LockHolder
    /// Bytes this request may append, or nil for no limit (deferred length, no max size).
    private let limit: Int64?
    private let checksum: UploadChecksum?
    private let digest: StreamingDigest?
    private let purpose: Purpose

    private var received: Int64 = 0
    private var outstandingWrites = 0
    private var stop: Stop?
    private var isFinishing = false
    private var hasResponded = false

    init(
        handler: TusHandler, request: TusRequest, writer: any UploadWriter, lock: any UploadLock, holder: LockHolder,
        limit: Int64?, checksum: UploadChecksum?, purpose: Purpose
    ) {
        self.handler = handler
        self.request = request
        self.writer = writer
        self.lock = lock
        self.holder = holder
        self.limit = limit
        self.checksum = checksum
        self.digest = checksum.map { StreamingDigest($0.algorithm) }
        self.purpose = purpose
    }

    func start() {
        holder.onReleaseRequested = { [self] in stopEarly(.takenOver) }
        if holder.isReleaseRequested { return stopEarly(.takenOver) }
        request.exchange.readBody(into: self)
    }

    // MARK: HTTPBodySink

    func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
        guard stop == nil else { return done() }
        var fragment = fragment
        var overflowed = false
        if let limit, Int64(fragment.count) > limit - received {
            let allowed = Int(max(0, limit - received))
            fragment = BodyFragment(chunk: fragment.chunk, range: fragment.range.lowerBound..<(fragment.range.lowerBound + allowed))
            overflowed = true
        }
        if fragment.count > 0 {
            digest?.update(fragment.bytes)
            received += Int64(fragment.count)
            outstandingWrites += 1
            writer.write(fragment) { [self] result in
                outstandingWrites -= 1
                if case .failure(let error) = result { stopEarly(.writeFailed(error)) }
                done()
                finishIfIdle()
            }
        } else {
            done()
        }
        if overflowed { stopEarly(.overflow) }
    }

    func bodyEnd(trailers: HTTPHeaders) {
        guard stop == nil else { return }
        stop = .ended
        finishIfIdle()
    }

    func bodyAborted(_ reason: BodyAbortReason) {
        guard stop == nil else { return }
        stop = .aborted(reason)
        finishIfIdle()
    }

    // MARK: Finishing

    private func stopEarly(_ reason: Stop) {
        guard stop == nil else { return }
        stop = reason
        switch reason {
        case .overflow: respondError(.uploadSizeExceeded)
        case .takenOver: respondError(.uploadInterrupted)
        case .writeFailed(let error): respondError(TusHandler.mapStoreError(error) == .notFound ? .gone : .storeFailure)
        case .ended, .aborted: break
        }
        finishIfIdle()
    }

    private func finishIfIdle() {
        guard let stop, outstandingWrites == 0, !isFinishing else { return }
        isFinishing = true
        holder.onReleaseRequested = nil  // releasing soon anyway
        var outcome: TusError?
        var discard = checksum != nil
        switch stop {
        case .ended:
            if let checksum, let digest {
                let matches = digest.finalize() == checksum.expected
                discard = !matches
                outcome = matches ? nil : .checksumMismatch
            }
        case .aborted(let reason):
            outcome = switch reason {
            case .clientClosed: .connectionLost
            case .timeout: .readTimeout
            case .shutdown: .serverShuttingDown
            case .malformed: .malformedBody
            }
        case .overflow, .takenOver, .writeFailed:
            break  // already answered
        }
        if discard {
            writer.rollback { [self] result in complete(result, outcome) }
        } else {
            writer.commit(expiresAt: handler.nextExpiry()) { [self] result in complete(result, outcome) }
        }
    }

    private func complete(_ result: Result<UploadInfo, StoreError>, _ outcome: TusError?) {
        lock.release()
        switch result {
        case .failure: respondError(.storeFailure)
        case .success(let info):
            if let outcome { return respondError(outcome) }
            var headers: HTTPHeaders = ["Upload-Offset": String(info.offset)]
            handler.addExpiry(info, to: &headers)
            switch purpose {
            case .patch:
                respond(HTTPResponse(status: .noContent, headers: headers))
            case .creation(let location):
                headers.add("Location", location)
                respond(HTTPResponse(status: .created, headers: headers))
            }
        }
    }

    private func respondError(_ error: TusError) {
        guard !hasResponded else { return }
        hasResponded = true
        var headers: HTTPHeaders = [:]
        // tusd sends Location even when the creation's body failed: the upload exists and can be resumed.
        if case .creation(let location) = purpose { headers.add("Location", location) }
        handler.fail(request, error, headers: headers, closeConnection: true)
    }

    private func respond(_ response: HTTPResponse) {
        guard !hasResponded else { return }
        hasResponded = true
        handler.send(request, response)
    }
}
