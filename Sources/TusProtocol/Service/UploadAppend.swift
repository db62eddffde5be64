import TusCrypto
import TusCore
import TusHTTP1

/// The service's append engine: streams one body (an append, or the body of a creation) into the store and reports
/// one `Result<UploadService.Appended, UploadServiceError>`. It knows no header: the adapter that took the request
/// hands it the body (`UploadBodySource`, the exchange) and writes the result back in its own words.
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
///    which only stops the body (`stopBody`): tusd answers it after terminating the upload, and an overflow,
///    answered after the commit of the bytes it keeps;
/// 3. once no write is outstanding: roll back (checksum mismatch, or any stop of a checksummed request, whose
///    bytes cannot be verified) or commit (everything else: the spec asks to keep as much as possible);
/// 4. release the lock, then report. Success is reported only after the commit, so acknowledged bytes are
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
/// request is checksummed), and the request is answered 413 once they are committed.
final class UploadAppend: HTTPDirectBodySink {
    /// The body of a creation (it completes no final: nobody can name the upload yet) or a later append.
    enum Purpose {
        case append
        case creation
    }

    typealias Checksum = UploadService.AppendChecksum

    private enum Stop {
        case ended
        case aborted(BodyAbortReason)
        case overflow
        case takenOver
        case writeFailed(StoreError)
        /// A post-receive hook asked to stop (tusd `StopUpload`).
        case stopped(ResponseOverride)
    }

    private let service: UploadService
    private let caller: UploadCaller
    private let body: any UploadBodySource
    private let completion: (Result<UploadService.Appended, UploadServiceError>) -> Void
    private let writer: any UploadWriter
    private let lock: any UploadLock
    private let holder: LockHolder
    /// Bytes this request may append, or nil for no limit (deferred length, no max size).
    private let limit: Int64?
    private let checksum: Checksum
    /// The expected digest's algorithm, or every algorithm a trailer may name; nil for an unchecked request.
    private let digest: DigestBox?
    /// Chunked trailer fields, kept from `bodyEnd` for the checksum-trailer verdict.
    private var trailers = HTTPHeaders()
    private let purpose: Purpose
    /// The upload as it stood when this request took it (the length already declared).
    private let upload: UploadInfo
    /// `AppendRequest.completesAtBodyEnd`.
    private let completesAtBodyEnd: Bool
    /// The upload was complete before this request (and before any length it declares), so it finishes nothing.
    private let startedComplete: Bool
    /// `AppendRequest.progress`.
    private let progressObserver: ((Int64) -> Void)?
    /// Offset after the last completed write, for progress events.
    private var writtenOffset: Int64
    private var lastProgressNanoseconds = MonotonicClock.nanoseconds
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
    /// must not be reported as if its bytes were stored.
    private var writeFailedAfterEnd: StoreError?
    private var isFinishing = false
    private let beforeFinish: UploadService.BeforeFinish?
    private var hasReported = false

    init(
        service: UploadService, caller: UploadCaller, body: any UploadBodySource, writer: any UploadWriter,
        lock: any UploadLock, holder: LockHolder, limit: Int64?, checksum: Checksum, purpose: Purpose,
        upload: UploadInfo, startedComplete: Bool? = nil, completesAtBodyEnd: Bool = false,
        progress: ((Int64) -> Void)? = nil, beforeFinish: UploadService.BeforeFinish? = nil,
        completion: @escaping (Result<UploadService.Appended, UploadServiceError>) -> Void
    ) {
        self.beforeFinish = beforeFinish
        self.upload = upload
        self.startedComplete = startedComplete ?? upload.isComplete
        self.completesAtBodyEnd = completesAtBodyEnd
        self.progressObserver = progress
        self.writtenOffset = upload.offset
        self.lastReportedOffset = upload.offset
        self.service = service
        self.caller = caller
        self.body = body
        self.completion = completion
        self.writer = writer
        self.lock = lock
        self.holder = holder
        self.limit = limit
        self.checksum = checksum
        let algorithms: [DigestAlgorithm] =
            switch checksum {
            case .none: []
            case .digest(let expected): [expected.algorithm]
            case .afterBody(let candidates, _): candidates
            }
        self.digest = algorithms.isEmpty ? nil : DigestBox(algorithms)
        self.purpose = purpose
    }

    func start() {
        holder.onReleaseRequested = { [self] in stopEarly(.takenOver) }
        if holder.isReleaseRequested { return stopEarly(.takenOver) }
        body.readBody(into: self)
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
                    service.events.measure(.bodyBytes(count), on: caller.executor)
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
        caller.executor.offload({
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
            service.events.measure(.bodyBytes(count), on: caller.executor)
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
        // Answered once the bytes up to the length are committed (below), so that a status asked right after the
        // answer reports them; the rest of the body is discarded meanwhile.
        case .overflow: body.stopBody()
        // Told to let go because its lease went (`leaseLost`), not by another request: the client may retry soon.
        case .takenOver: fail(lock.isLeaseLost ? .lockLost : .interrupted)
        case .writeFailed(let error): fail(Self.answer(toWriteFailure: error))
        case .stopped: body.stopBody()
        case .ended, .aborted: break
        }
        finishIfIdle()
    }

    /// A full disk or quota (clients retry), an unreachable store (object storage down), an upload removed
    /// meanwhile (gone), or a failure a retry will not fix.
    private static func answer(toWriteFailure error: StoreError) -> UploadServiceError {
        switch UploadServiceError(error) {
        case .notFound: .gone
        case .insufficientStorage: .insufficientStorage
        case .unavailable: .unavailable
        default: .storageFailure
        }
    }

    private func finishIfIdle() {
        guard let stop, outstandingWrites == 0, !isDigesting, digestQueue.isEmpty, !isFinishing else { return }
        isFinishing = true
        holder.onReleaseRequested = nil  // releasing soon anyway
        var outcome: UploadServiceError?
        var discard = digest != nil
        switch stop {
        case .ended:
            if let writeFailedAfterEnd {
                outcome = Self.answer(toWriteFailure: writeFailedAfterEnd)
            } else if digestReadFailure != nil {
                // The bytes cannot be verified (the file shrank, or EIO): rolled back like a mismatch.
                outcome = .storageFailure
            } else if case .digest(let expected) = checksum, let digest {
                let matches = digest.finalize()[expected.algorithm] == expected.expected
                discard = !matches
                outcome = matches ? nil : .checksumMismatch
            } else if case .afterBody(_, let verify) = checksum, let digest {
                outcome = verify(trailers, digest.finalize())
                discard = outcome != nil
            }
        case .aborted(let reason):
            outcome = .bodyAborted(reason)
        case .overflow:
            outcome = .exceedsLength
        case .takenOver, .writeFailed, .stopped:
            break  // already answered
        }
        if discard {
            writer.rollback { [self] result in complete(result, outcome) }
            return
        }
        let commit = { [self] in
            writer.commit(expiresAt: service.nextExpiry()) { [self] result in complete(result, outcome) }
        }
        guard completesAtBodyEnd, case .ended = stop, outcome == nil else { return commit() }
        let reached = upload.offset + received
        if let length = upload.length {
            // The body said it was the rest of the upload and stopped short: its bytes are kept, the answer says so.
            if reached != length { outcome = .lengthMismatch }
            guard outcome == nil, upload.awaitsCompletion else { return commit() }
            // A draft upload held open at its length: this request is the one that says it is complete.
            return service.store.declareLength(
                id: upload.id, length: length, completing: true, on: caller.executor
            ) { ended in
                if case .failure(let error) = ended { outcome = UploadServiceError(error) }
                commit()
            }
        }
        // Declared before the commit, so the commit finds the upload complete (and clears its expiry) as if the length
        // had been known from the start. Completing: a draft upload created without a length, which awaits its
        // completing request, is ended by this one in the same change.
        service.store.declareLength(id: upload.id, length: reached, completing: true, on: caller.executor) {
            [self] declared in
            commitDeclared(declared, outcome: outcome)
        }
    }

    /// The commit after a body of unknown length ended the upload and its length was declared (`declared`).
    private func commitDeclared(_ declared: Result<UploadInfo, StoreError>, outcome: UploadServiceError?) {
        var outcome = outcome
        if case .failure(let error) = declared {
            outcome = UploadServiceError(error)
            // Nothing is known to be wrong with the bytes: kept, as for any failure after the body.
        }
        writer.commit(expiresAt: service.nextExpiry()) { [self, outcome] committed in
            guard case .success(let info) = committed, outcome == nil, info.isComplete else {
                return complete(committed, outcome)
            }
            finishDeclaredUpload(at: info.offset) { [self] finished in complete(finished, outcome) }
        }
    }

    /// This writer was opened while the length was deferred; a store may finish an upload's data only in a writer
    /// that knows the upload ends where it starts (S3 uploads its last part then, as after tus's empty PATCH that
    /// declares `Upload-Length`). One more writer, empty, under the same lock, gives it that chance.
    private func finishDeclaredUpload(
        at offset: Int64, completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        service.store.openWriter(
            id: upload.id, startingAt: offset, discardable: false, lock: lock, on: caller.executor
        ) { [service] opened in
            switch opened {
            case .failure(let error): completion(.failure(error))
            case .success(let finisher): finisher.commit(expiresAt: service.nextExpiry(), completion: completion)
            }
        }
    }

    private func complete(_ result: Result<UploadInfo, StoreError>, _ outcome: UploadServiceError?) {
        if case .stopped(let override) = stop { return terminateStopped(result, override) }
        lock.release()
        switch result {
        case .failure(let error):
            // An unreachable shared state is worth a retry soon, a full disk too; anything else is a failure.
            // A lease lost meanwhile (`.conflict`: it lapsed while Redis was unreachable, or a failover lost it)
            // left the bytes unrecorded: the client retries from the offset a status reports, as after any outage.
            switch error {
            case .unavailable, .conflict: fail(.unavailable)
            case .insufficientStorage: fail(.insufficientStorage)
            default: fail(.storageFailure)
            }
        case .success(let info):
            // What was committed is progress whatever the answer (tusd sends a last post-receive too).
            if info.offset != lastReportedOffset { reportProgress(info) }
            // Only the request that moved the upload to its end finishes it: post-finish once per upload.
            let finishesUpload: Bool
            if case .creation = purpose { finishesUpload = info.isComplete } else {
                // An empty body that completed a deferred upload (declaring its length) finishes it too.
                finishesUpload = info.isComplete && !startedComplete
            }
            if let outcome {
                // tusd finishes a complete upload even when the request failed after its last byte; the answer is
                // the failure whatever pre-finish says.
                guard finishesUpload else { return fail(outcome) }
                return service.finish(caller, upload: info) { [self] _ in fail(outcome) }
            }
            if case .append = purpose, info.isPartial && info.isComplete {
                // concatenation-unfinished: this append may have been the last one some final waited for.
                service.completeFinals(referencing: info, for: caller)
            }
            guard finishesUpload else { return report(.success(UploadService.Appended(upload: info))) }
            // The bytes are stored and the upload is complete whatever pre-finish says; it shapes the answer, and
            // only its yes is followed by post-finish.
            let finish = { [self] in
                service.finish(caller, upload: info) { [self] verdict in
                    if verdict.isUnavailable { return fail(.hookUnavailable) }
                    if verdict.isRejected { return fail(.rejected(.preFinish, response: verdict.response)) }
                    report(.success(UploadService.Appended(upload: info, response: verdict.response)))
                }
            }
            guard let beforeFinish else { return finish() }
            beforeFinish(info) { [self] refusal in
                if let refusal { return fail(refusal) }
                finish()
            }
        }
    }

    /// A post-receive hook's `StopUpload`, once nothing is in flight and the bytes are committed: as tusd, terminate
    /// (post-terminate, no pre-terminate) and only then answer, so the client's next look finds the upload gone.
    private func terminateStopped(_ committed: Result<UploadInfo, StoreError>, _ override: ResponseOverride) {
        if case .success(let info) = committed, info.offset != lastReportedOffset { reportProgress(info) }
        guard service.store.capabilities.contains(.termination) else {
            lock.release()
            return fail(.stopped(response: override))
        }
        service.store.remove(id: upload.id, reason: .terminated, on: caller.executor) { [self] removed in
            // tusd only logs a failed removal: the answer is the stop either way (the upload then stays as committed).
            // The event carries the upload as this request found it, as tusd's does.
            if case .success = removed { service.notify(.terminated, caller, upload: upload) }
            lock.release()
            fail(.stopped(response: override))
        }
    }

    // MARK: Progress

    private func reportProgressIfDue() {
        // A checksummed request's bytes (header or trailer checksum) may still be rolled back: its progress is
        // reported once, at commit.
        guard digest == nil else { return }
        let now = MonotonicClock.nanoseconds
        guard now &- lastProgressNanoseconds >= service.configuration.progressIntervalMilliseconds * 1_000_000 else {
            return
        }
        lastProgressNanoseconds = now
        var info = upload
        info.offset = writtenOffset
        // Only while the body streams: at the commit the final answer says the offset.
        if !hasReported { progressObserver?(writtenOffset) }
        reportProgress(info)
    }

    private func reportProgress(_ info: UploadInfo) {
        lastReportedOffset = info.offset
        let stop = UploadStopSwitch(executor: caller.executor) { [weak self] override in
            self?.stopEarly(.stopped(override))
        }
        service.events.progressed(UploadEvent(upload: info, request: caller.describe()), stop: stop, on: caller.executor)
    }

    private func fail(_ error: UploadServiceError) { report(.failure(error)) }

    /// Exactly once: an early stop reports at once (the adapter answers and stops reading), and what follows it
    /// (rollback or commit, lock release, finish events) reports nothing more.
    private func report(_ result: Result<UploadService.Appended, UploadServiceError>) {
        guard !hasReported else { return }
        hasReported = true
        completion(result)
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
