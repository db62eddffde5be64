import TusCrypto
import TusHTTP1

/// Streams one request body (PATCH, or a creation-with-upload POST) into the store.
///
/// Order of events, all on the request's loop:
/// 1. each fragment goes to `UploadWriter.write` and, for a checksummed request, to the digest, which runs on
///    a worker thread (`LoopExecutor.offload`) so that hashing neither stalls the loop's other connections nor
///    caps one upload at the speed of one core doing both; fragments are hashed in order, one batch at a time.
///    A fragment's `done` is called when its write (and its hashing) completed, which is what paces the client
///    (the connection limits outstanding fragments);
/// 2. input stops for one reason (`Stop`): body end, abort, overflow past the length, a takeover request from
///    another request for this upload, a failed write, or a post-receive hook's `StopUpload`; early stops are
///    answered at once with `closeConnection`, which makes the connection stop reading, except a hook's stop,
///    which only stops the body (`stopBody`): tusd answers it after terminating the upload;
/// 3. once no write is outstanding: roll back (checksum mismatch, or any stop of a checksummed request, whose
///    bytes cannot be verified) or commit (everything else: the spec asks to keep as much as possible);
/// 4. release the lock, then respond. Success is sent only after the commit, so acknowledged bytes are
///    never lost. The request that completed the upload asks pre-finish before its answer and notifies post-finish
///    only if pre-finish accepted (tusd `emitFinishEvents`). A hook's stop terminates the upload first (tusd
///    `writeChunk`: `terminateUpload`, which fires post-terminate and asks no pre-terminate), then answers 400
///    `ERR_UPLOAD_STOPPED` as the hook's `HTTPResponse` changed it.
///
/// Direct bodies (`HTTPDirectBodySink`, spliced by the connection into the file): offered when the writer supports
/// it, and only while no write is outstanding. Direct bytes count like completed writes (offset, progress events,
/// checkpoints); the direct phase counts as one outstanding write until `endDirectBody`, so nothing commits while
/// the threadpool may still write into the file. A checksummed request takes them too if the target is readable:
/// each range is hashed once it is in the file, read back from the page cache on a worker thread (issue 19). The
/// body then never passes through user memory on its way in, and hashing overlaps receiving. Fragments and file
/// ranges share one queue, so the digest sees the bytes in body order whichever way they came. The rollback is
/// the same as for written fragments: nothing of the request is in the offset before the digest matched.
///
/// Overflow of a chunked body: the bytes up to the upload's length are written and kept (unless the
/// request is checksummed), and the request is answered 413.
final class UploadAppend: HTTPDirectBodySink {
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
        /// A post-receive hook asked to stop (tusd `StopUpload`).
        case stopped(ResponseOverride)
    }

    private let handler: TusHandler
    private let request: TusRequest
    private let writer: any UploadWriter
    private let lock: any UploadLock
    private let holder: LockHolder
    /// Bytes this request may append, or nil for no limit (deferred length, no max size).
    private let limit: Int64?
    private let checksum: UploadChecksum?
    /// The header's algorithm, or every algorithm a checksum trailer may name (`trailerAlgorithms`); nil for an
    /// unchecked request.
    private let digest: DigestBox?
    /// Chunked trailer fields, kept from `bodyEnd` for the checksum-trailer verdict.
    private var trailers = HTTPHeaders()
    private let purpose: Purpose
    /// The upload as it stood when this request took it (the length already declared).
    private let upload: UploadInfo
    /// Offset after the last completed write, for progress events.
    private var writtenOffset: Int64
    private var lastProgressNanoseconds = TusHandler.monotonicNanoseconds()
    private var lastReportedOffset: Int64

    private var received: Int64 = 0
    private var outstandingWrites = 0
    /// Bytes waiting to be hashed, in body order.
    private var digestQueue: [DigestInput] = []
    private var isDigesting = false
    /// A spliced range could not be read back for hashing: the request cannot be verified.
    private var digestReadFailure: StreamingDigest.FileReadError?
    private var stop: Stop?
    /// A write that failed after the body had ended (the last writes complete after `bodyEnd`): the request
    /// must not be answered 204 as if its bytes were stored.
    private var writeFailedAfterEnd: StoreError?
    private var isFinishing = false
    private var hasResponded = false

    init(
        handler: TusHandler, request: TusRequest, writer: any UploadWriter, lock: any UploadLock, holder: LockHolder,
        limit: Int64?, checksum: UploadChecksum?, trailerAlgorithms: [DigestAlgorithm] = [], purpose: Purpose,
        upload: UploadInfo
    ) {
        self.upload = upload
        self.writtenOffset = upload.offset
        self.lastReportedOffset = upload.offset
        self.handler = handler
        self.request = request
        self.writer = writer
        self.lock = lock
        self.holder = holder
        self.limit = limit
        self.checksum = checksum
        let algorithms = checksum.map { [$0.algorithm] } ?? trailerAlgorithms
        self.digest = algorithms.isEmpty ? nil : DigestBox(algorithms)
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
            received += Int64(fragment.count)
            outstandingWrites += 1
            // With a digest, `done` waits for both the write and the hashing: the bytes are in use until then.
            var pending = digest == nil ? 1 : 2
            let finishedOne = {
                pending -= 1
                if pending == 0 { done() }
            }
            if digest != nil {
                digestQueue.append(.fragment(fragment, hashed: finishedOne))
                hashQueuedInput()
            }
            let count = fragment.count
            writer.write(fragment) { [self] result in
                outstandingWrites -= 1
                switch result {
                case .failure(let error): stopEarly(.writeFailed(error))
                case .success(let offset):
                    writtenOffset = offset
                    handler.events.measure(.bodyBytes(count), on: request.exchange.executor)
                    reportProgressIfDue()
                }
                finishedOne()
                finishIfIdle()
            }
        } else {
            done()
        }
        if overflowed { stopEarly(.overflow) }
    }

    func bodyEnd(trailers: HTTPHeaders) {
        guard stop == nil else { return }
        self.trailers = trailers
        stop = .ended
        finishIfIdle()
    }

    func bodyAborted(_ reason: BodyAbortReason) {
        guard stop == nil else { return }
        stop = .aborted(reason)
        finishIfIdle()
    }

    /// Hashes everything queued so far in one job on a worker thread; the next batch starts when it is back. A
    /// batch takes whatever arrived meanwhile, so a fast body costs few jobs (and few loop wake-ups).
    private func hashQueuedInput() {
        guard let digest, !isDigesting, !digestQueue.isEmpty else { return }
        let batch = digestQueue
        digestQueue = []
        isDigesting = true
        let work = DigestBatch(batch.map(\.work))
        request.exchange.executor.offload({
            digest.update(work)
        }, completion: { [self] in
            isDigesting = false
            if let failure = work.readFailure, digestReadFailure == nil { digestReadFailure = failure }
            for case .fragment(_, let hashed) in batch { hashed() }
            hashQueuedInput()
            finishIfIdle()
        })
    }

    // MARK: HTTPDirectBodySink

    private var directWriter: (any DirectUploadWriter)?

    /// Where the next spliced byte lands in the file, for reading it back to hash (checksummed requests).
    private var directTarget: DirectBodyTarget?

    func beginDirectBody(minimumCount: Int64) -> DirectBodyTarget? {
        guard stop == nil, outstandingWrites == 0, directWriter == nil,
            let writer = writer as? any DirectUploadWriter, var target = writer.beginDirectWrite()
        else { return nil }
        if let limit { target.maxCount = min(target.maxCount, limit - received) }
        guard target.maxCount >= minimumCount, digest == nil || target.isReadable else {
            writer.endDirectWrite(error: nil)
            return nil
        }
        directWriter = writer
        directTarget = target
        outstandingWrites += 1
        return target
    }

    func bodyWrittenDirectly(count: Int) {
        guard let directWriter, count > 0 else { return }
        received += Int64(count)
        if digest != nil, let target = directTarget {
            digestQueue.append(.fileRange(descriptor: target.descriptor, offset: target.offset, count: Int64(count)))
            directTarget?.offset += Int64(count)
            hashQueuedInput()
        }
        switch directWriter.directlyWritten(count: count) {
        case .failure(let error):
            stopEarly(.writeFailed(error))
        case .success(let offset):
            writtenOffset = offset
            handler.events.measure(.bodyBytes(count), on: request.exchange.executor)
            reportProgressIfDue()
        }
    }

    func endDirectBody(writeErrorNumber: Int32?) {
        guard let directWriter else { return }
        self.directWriter = nil
        directTarget = nil
        let failure = writeErrorNumber.map { Self.storeError(writeErrorNumber: $0) }
        directWriter.endDirectWrite(error: failure)
        outstandingWrites -= 1
        if let failure { stopEarly(.writeFailed(failure)) }
        finishIfIdle()
    }

    /// ENOSPC and EDQUOT are the client-visible "disk full" (507), as for a failed pwritev.
    private static func storeError(writeErrorNumber: Int32) -> StoreError {
        writeErrorNumber == 28 || writeErrorNumber == 122
            ? .insufficientStorage : .io("splice into the upload file failed: errno \(writeErrorNumber)")
    }

    // MARK: Finishing

    private func stopEarly(_ reason: Stop) {
        guard stop == nil else {
            if case .writeFailed(let error) = reason, case .ended = stop, writeFailedAfterEnd == nil {
                writeFailedAfterEnd = error
            }
            return
        }
        stop = reason
        switch reason {
        case .overflow: respondError(.uploadSizeExceeded)
        case .takenOver: respondError(.uploadInterrupted)
        case .writeFailed(let error): respondError(Self.answer(toWriteFailure: error))
        case .stopped: request.exchange.stopBody()
        case .ended, .aborted: break
        }
        finishIfIdle()
    }

    /// 507 for a full disk or quota (clients retry 5xx), 503 for an unreachable store (object storage down), 410 for
    /// an upload removed meanwhile, 500 otherwise.
    private static func answer(toWriteFailure error: StoreError) -> TusError {
        switch TusHandler.mapStoreError(error) {
        case .notFound: .gone
        case .insufficientStorage: .insufficientStorage
        case .storeUnavailable: .storeUnavailable
        default: .storeFailure
        }
    }

    private func finishIfIdle() {
        guard let stop, outstandingWrites == 0, !isDigesting, digestQueue.isEmpty, !isFinishing else { return }
        isFinishing = true
        holder.onReleaseRequested = nil  // releasing soon anyway
        var outcome: TusError?
        var discard = digest != nil
        switch stop {
        case .ended:
            if let writeFailedAfterEnd {
                outcome = Self.answer(toWriteFailure: writeFailedAfterEnd)
            } else if digestReadFailure != nil {
                // The bytes cannot be verified (the file shrank, or EIO): rolled back like a mismatch.
                outcome = .storeFailure
            } else if let checksum, let digest {
                let matches = digest.finalize()[checksum.algorithm] == checksum.expected
                discard = !matches
                outcome = matches ? nil : .checksumMismatch
            } else if let digest {
                outcome = UploadChecksum.verifyTrailer(trailers, digests: digest.finalize())
                discard = outcome != nil
            }
        case .aborted(let reason):
            outcome = switch reason {
            case .clientClosed: .connectionLost
            case .timeout: .readTimeout
            case .shutdown: .serverShuttingDown
            case .malformed: .malformedBody
            }
        case .overflow, .takenOver, .writeFailed, .stopped:
            break  // already answered
        }
        if discard {
            writer.rollback { [self] result in complete(result, outcome) }
        } else {
            writer.commit(expiresAt: handler.nextExpiry()) { [self] result in complete(result, outcome) }
        }
    }

    private func complete(_ result: Result<UploadInfo, StoreError>, _ outcome: TusError?) {
        if case .stopped(let override) = stop { return terminateStopped(result, override) }
        lock.release()
        switch result {
        case .failure(let error):
            // An unreachable shared state is worth a 503 (retry soon), a full disk a 507; anything else is a 500.
            // A lease lost meanwhile (`.conflict`: it lapsed while Redis was unreachable, or a failover lost it)
            // left the bytes unrecorded: the client retries from the offset HEAD reports, as after any 503.
            switch error {
            case .unavailable, .conflict: respondError(.storeUnavailable)
            case .insufficientStorage: respondError(.insufficientStorage)
            default: respondError(.storeFailure)
            }
        case .success(let info):
            // What was committed is progress whatever the answer (tusd sends a last post-receive too).
            if info.offset != lastReportedOffset { reportProgress(info) }
            // Only the request that moved the upload to its end finishes it: post-finish once per upload.
            let finishesUpload: Bool
            if case .creation = purpose { finishesUpload = info.isComplete } else {
                finishesUpload = info.isComplete && upload.offset < (info.length ?? 0)
            }
            if let outcome {
                // tusd finishes a complete upload even when the request failed after its last byte; the answer is
                // the failure whatever pre-finish says.
                guard finishesUpload else { return respondError(outcome) }
                return handler.finish(request, upload: info) { [self] _ in respondError(outcome) }
            }
            var headers: HTTPHeaders = ["Upload-Offset": String(info.offset)]
            handler.addExpiry(info, to: &headers)
            var response: HTTPResponse
            switch purpose {
            case .patch:
                response = HTTPResponse(status: .noContent, headers: headers)
                if info.isPartial && info.isComplete {
                    // concatenation-unfinished: this PATCH may have been the last one some final waited for. On the
                    // next turn of the loop, so that this request's answer goes out first.
                    let executor = request.exchange.executor
                    executor.execute { [handler] in handler.service.completeFinals(referencing: info, on: executor) }
                }
            case .creation(let location):
                headers.add("Location", location)
                response = HTTPResponse(status: .created, headers: headers)
            }
            guard finishesUpload else { return respond(response) }
            // The bytes are stored and the upload is complete whatever pre-finish says; it shapes the answer, and
            // only its yes is followed by post-finish.
            handler.finish(request, upload: info) { [self] verdict in
                if let refusal = TusHandler.refusal(ofFinish: verdict) {
                    return respondError(refusal, override: verdict.isRejected ? verdict.response : nil)
                }
                response.apply(verdict.response)
                respond(response)
            }
        }
    }

    /// A post-receive hook's `StopUpload`, once nothing is in flight and the bytes are committed: as tusd, terminate
    /// (post-terminate, no pre-terminate) and only then answer, so the client's next look finds the upload gone.
    private func terminateStopped(_ committed: Result<UploadInfo, StoreError>, _ override: ResponseOverride) {
        if case .success(let info) = committed, info.offset != lastReportedOffset { reportProgress(info) }
        guard handler.store.capabilities.contains(.termination) else {
            lock.release()
            return respondError(.uploadStopped, override: override)
        }
        handler.store.remove(id: upload.id, reason: .terminated, on: request.exchange.executor) { [self] removed in
            // tusd only logs a failed removal: the answer is the stop either way (the upload then stays as committed).
            // The event carries the upload as this request found it, as tusd's does.
            if case .success = removed { handler.notify(.terminated, request, upload: upload) }
            lock.release()
            respondError(.uploadStopped, override: override)
        }
    }

    // MARK: Progress

    private func reportProgressIfDue() {
        // A checksummed request's bytes (header or trailer checksum) may still be rolled back: its progress is
        // reported once, at commit.
        guard digest == nil else { return }
        let now = TusHandler.monotonicNanoseconds()
        guard now &- lastProgressNanoseconds >= handler.configuration.progressIntervalMilliseconds * 1_000_000 else {
            return
        }
        lastProgressNanoseconds = now
        var info = upload
        info.offset = writtenOffset
        reportProgress(info)
    }

    private func reportProgress(_ info: UploadInfo) {
        lastReportedOffset = info.offset
        let stop = UploadStopSwitch(executor: request.exchange.executor) { [weak self] override in
            self?.stopEarly(.stopped(override))
        }
        handler.events.progressed(
            UploadEvent(upload: info, request: request.eventRequest), stop: stop, on: request.exchange.executor)
    }

    private func respondError(_ error: TusError, override: ResponseOverride? = nil) {
        guard !hasResponded else { return }
        hasResponded = true
        var headers: HTTPHeaders = [:]
        // tusd sends Location even when the creation's body failed: the upload exists and can be resumed.
        if case .creation(let location) = purpose { headers.add("Location", location) }
        handler.fail(request, error, headers: headers, closeConnection: true, override: override)
    }

    private func respond(_ response: HTTPResponse) {
        guard !hasResponded else { return }
        hasResponded = true
        handler.send(request, response)
    }
}

/// Bytes of the body to hash: a fragment still in memory, or a range already spliced into the upload's file.
private enum DigestInput {
    case fragment(BodyFragment, hashed: () -> Void)
    case fileRange(descriptor: Int32, offset: Int64, count: Int64)

    var work: DigestBatch.Input {
        switch self {
        case .fragment(let fragment, _): .bytes(fragment)
        case .fileRange(let descriptor, let offset, let count): .fileRange(descriptor, offset, count)
        }
    }
}

/// One hashing job's input, handed to a worker thread, and what went wrong reading a file range back (read on the
/// loop after the job's completion). The fragments' chunks stay alive until then: their `done` waits for it.
private final class DigestBatch: @unchecked Sendable {
    enum Input {
        case bytes(BodyFragment)
        case fileRange(Int32, Int64, Int64)
    }

    let inputs: [Input]
    var readFailure: StreamingDigest.FileReadError?
    init(_ inputs: [Input]) { self.inputs = inputs }
}

/// The digests cross to a worker thread and back. Only one hashing job runs at a time per request, and the
/// loop touches them only when no job is running (`isDigesting`), so access never overlaps.
private final class DigestBox: @unchecked Sendable {
    let digests: [(algorithm: DigestAlgorithm, digest: StreamingDigest)]

    init(_ algorithms: [DigestAlgorithm]) { digests = algorithms.map { ($0, StreamingDigest($0)) } }

    func update(_ bytes: UnsafeRawBufferPointer) { for entry in digests { entry.digest.update(bytes) } }

    /// Hashes a batch in order; a range that cannot be read back ends the batch (the request will be rolled back).
    func update(_ batch: DigestBatch) {
        for input in batch.inputs {
            switch input {
            case .bytes(let fragment):
                update(fragment.bytes)
            case .fileRange(let descriptor, let offset, let count):
                // Several candidate algorithms (a checksum trailer may name any; such bodies are chunked and not
                // spliced today): each reads the range itself.
                do throws(StreamingDigest.FileReadError) {
                    for entry in digests {
                        try entry.digest.update(readingFrom: descriptor, offset: offset, count: count)
                    }
                } catch {
                    batch.readFailure = error
                    return
                }
            }
        }
    }
    func finalize() -> [DigestAlgorithm: [UInt8]] {
        Dictionary(uniqueKeysWithValues: digests.map { ($0.algorithm, $0.digest.finalize()) })
    }
}
