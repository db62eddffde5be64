import TusClient
import TusCore
import TusLoop
import TusProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// One part of the multipart upload being written: its bytes land in a spill file, and its `UploadPart`
/// request streams them from there as they arrive (`TailFollowingProducer`). The part's `Content-Length` is
/// fixed when its request starts (`length`), so the request can only end once every byte has arrived; a PATCH
/// that ends earlier cancels it and writes what arrived to the incomplete-part object instead.
final class S3PartStream {
    enum State: Equatable {
        /// Not started yet (waiting for bytes or a free slot), or cancelled and startable again.
        case idle
        case uploading
        case done(etag: String)
        case failed
    }

    let number: Int
    /// Upload offset of the part's first byte.
    let start: Int64
    let length: Int64
    let path: String
    var file: AsyncFile?
    /// Bytes in the spill file (counted once their write completed).
    var spilled: Int64 = 0
    /// Bytes the incomplete-part object already holds (so a commit without new bytes need not rewrite it).
    var storedInTailObject: Int64 = 0
    var state = State.idle
    var handle: S3RequestHandle?
    /// A producer waiting for bytes beyond `spilled`.
    var parked: (() -> Void)?

    init(number: Int, start: Int64, length: Int64, path: String) {
        self.number = number
        self.start = start
        self.length = length
        self.path = path
    }

    var isFull: Bool { spilled == length }
    var isDone: Bool { if case .done = state { true } else { false } }
    var end: Int64 { start + spilled }

    func wakeProducer() {
        guard let parked else { return }
        self.parked = nil
        parked()
    }
}

/// Streams a part's spill file into its request, following the file as it grows: the bytes sent never go past
/// those whose write completed, and when it has caught up the producer waits for the next write.
///
/// Plain TCP: the connection sends the spilled bytes with sendfile(2) (`FileRegionBodyProducer`), straight from
/// the page cache the spill write just filled; no buffer, no read on the threadpool.
/// TLS: two 256 KiB buffers; while the connection writes one, the next read already fills the other, so the
/// socket never waits for a threadpool round trip between fragments (with one buffer, read and send took turns).
/// The memory of an upload is then (parts in flight) × 512 KiB plus the read chunks the connection holds while
/// the spill write of each runs.
final class TailFollowingProducer: FileRegionBodyProducer {
    private let part: S3PartStream
    /// The connection sends from the file itself: reading ahead into the buffers would only be wasted.
    private var sendsFromFile = false
    /// Next byte to read from the spill file (reads run ahead of delivery by at most one buffer).
    private var readPosition: Int64 = 0
    private let chunks = [ByteChunk(capacity: 256 * 1024), ByteChunk(capacity: 256 * 1024)]
    /// The buffer the next read fills; the other one is with the connection.
    private var nextChunk = 0
    /// A read in flight or done but not delivered yet, and who waits for it.
    private var ahead: (chunk: ByteChunk, result: Result<Int, any Error>?, waiter: DeliverFragment?)?
    private typealias DeliverFragment = (Result<BodyFragment?, any Error>) -> Void

    init(part: S3PartStream) {
        self.part = part
    }

    func nextFragment(_ deliver: @escaping (Result<BodyFragment?, any Error>) -> Void) {
        if let pending = ahead {
            guard let result = pending.result else {
                ahead?.waiter = deliver
                return
            }
            ahead = nil
            return hand(result, of: pending.chunk, to: deliver)
        }
        guard readPosition < part.length else { return deliver(.success(nil)) }
        guard part.file != nil else { return deliver(.failure(S3Error.cancelled)) }
        guard readPosition < part.spilled else {
            part.parked = { [weak self] in self?.nextFragment(deliver) }
            return
        }
        readAhead(waiter: deliver)
    }

    func nextFileRegion(_ ready: @escaping (FileRegion?) -> Void) {
        sendsFromFile = true
        guard ahead == nil, readPosition < part.length, let file = part.file else { return ready(nil) }
        guard readPosition < part.spilled else {
            part.parked = { [weak self] in self?.nextFileRegion(ready) }
            return
        }
        ready(FileRegion(descriptor: file.descriptor, offset: readPosition, count: Int(part.spilled - readPosition)))
    }

    func didSendFileRegionBytes(_ count: Int) {
        readPosition += Int64(count)
    }

    /// Starts reading what was spilled beyond `readPosition` into the free buffer.
    private func readAhead(waiter: DeliverFragment?) {
        guard let file = part.file else { return }
        let chunk = chunks[nextChunk]
        nextChunk = 1 - nextChunk
        let count = Int(min(Int64(chunk.capacity), part.spilled - readPosition))
        let buffer = UnsafeMutableRawBufferPointer(start: chunk.base, count: count)
        ahead = (chunk, nil, waiter)
        file.read(into: buffer, at: readPosition, owner: chunk) { [self] result in
            let outcome: Result<Int, any Error> = result.mapError { $0 as any Error }
            if case .success(let read) = outcome { readPosition += Int64(read) }
            guard let pending = ahead, pending.chunk === chunk else { return }
            guard let waiter = pending.waiter else {
                ahead?.result = outcome
                return
            }
            ahead = nil
            hand(outcome, of: chunk, to: waiter)
        }
    }

    /// Delivers a finished read and, since the other buffer is free again, starts the next one when its bytes
    /// are spilled already.
    private func hand(_ result: Result<Int, any Error>, of chunk: ByteChunk, to deliver: DeliverFragment) {
        switch result {
        case .failure(let error): return deliver(.failure(error))
        case .success(0): return deliver(.failure(S3Error.transport("spill file ended early")))
        case .success(let read):
            if !sendsFromFile, readPosition < part.length, readPosition < part.spilled { readAhead(waiter: nil) }
            deliver(.success(BodyFragment(chunk: chunk, range: 0..<read)))
        }
    }
}

/// One PATCH's appends to an S3 multipart upload (see `S3DataStore`). All on the loop that opened it.
///
/// Write path: fragment → spill file of its part (one write at a time, in order; a fragment crossing a part
/// boundary is split) → the part's request reads it from there. A write completes once its bytes are in the
/// spill file and the bytes spilled but not yet in S3 stay under `(concurrency + 1) × part size`; otherwise its
/// completion is held, which stops the connection reading (backpressure from S3 to the client).
///
/// Durability: `sync` (a checkpoint while bytes stream) reports the end of the parts S3 confirmed, contiguous
/// from the start, never more. `finish` (the commit) waits for the full parts, cancels the request of an
/// incomplete last part and writes its bytes to `P<id>.part.<n>`, then reports that end; when it is the upload's
/// length, it completes the multipart upload first.
final class S3PartWriter: TruncatableUploadDataWriter {
    private typealias WriteCompletion = (Result<Int64, StoreError>) -> Void
    private struct PendingWrite {
        var fragment: BodyFragment
        let completion: WriteCompletion
    }

    private let store: S3DataStore
    private let id: String
    private let uploadID: String
    private let start: Int64
    private let length: Int64?
    private let loop: EventLoop
    private let layout: S3PartLayout
    private let concurrency: Int
    private let maxLag: Int64

    private var parts: [S3PartStream] = []
    private var acceptedEnd: Int64
    private var spilledEnd: Int64
    private var queue: [PendingWrite] = []
    private var isSpilling = false
    /// Spilled writes whose completion waits for S3 to catch up.
    private var held: [(end: Int64, completion: WriteCompletion)] = []
    /// Checkpoints waiting for the full parts they cover.
    private var syncWaiters: [(target: Int64, completion: (Result<Int64, StoreError>) -> Void)] = []
    private var failure: StoreError?
    private var finishing: ((Result<Int64, StoreError>) -> Void)?
    private var isClosed = false
    /// Rolled back or closed: no request starts any more.
    private var isStopped = false
    /// Names this writer's spill files.
    private let writerToken = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    /// Spill files of parts S3 confirmed, kept open for the next parts: overwriting a file's blocks and cached
    /// pages costs the kernel less than creating a file, allocating its blocks and dropping them all again at
    /// unlink, once per part (a tenth of the server's CPU, bench/results/2026-12-07-s3speed). A part reads only
    /// the bytes it wrote, so what an earlier part left behind them does not matter. At most `concurrency + 1`.
    /// The price: a file kept for more than the kernel's dirty expiry (30 s) may be written back to the disk once
    /// in a while, where a file unlinked within the second never was.
    private var reusableSpillFiles: [(file: AsyncFile, path: String)] = []

    init(store: S3DataStore, id: String, uploadID: String, start: Int64, length: Int64?, loop: EventLoop) {
        self.store = store
        self.id = id
        self.uploadID = uploadID
        self.start = start
        self.length = length
        self.loop = loop
        layout = store.layout
        concurrency = store.client.configuration.concurrency
        maxLag = Int64(concurrency + 1) * layout.partSize
        acceptedEnd = start
        spilledEnd = start
    }

    /// Prepares the part containing `start`: when the start is inside a part, the bytes before it come from the
    /// incomplete-part object into the part's spill file (streamed, one read chunk at a time).
    func open(_ completion: @escaping (StoreError?) -> Void) {
        let tail = layout.tail(at: start)
        guard tail > 0 else { return completion(nil) }
        let number = layout.partNumber(at: start)
        makePart(number) { [self] made in
            guard case .success(let part) = made else {
                if case .failure(let error) = made { completion(error) }
                return
            }
            let key = store.keys.tail(id, part: number)
            var position: Int64 = 0
            var writeError: StoreError?
            let request = S3Request(method: .GET, key: key, headers: [("range", "bytes=0-\(tail - 1)")])
            store.client.send(
                request, on: loop,
                streamBody: { bytes, resume in
                    guard writeError == nil, let file = part.file else { return resume() }
                    let owner = ByteChunk(copying: bytes)
                    let at = position
                    position += Int64(bytes.count)
                    file.write([UnsafeRawBufferPointer(start: owner.base, count: bytes.count)], at: at, owner: owner) {
                        result in
                        if case .failure(let error) = result { writeError = .io("spill write: \(error)") }
                        resume()
                    }
                }
            ) { [self] result in
                switch result {
                case .failure(let error):
                    completion(store.storeError(error, "GET \(key) (incomplete part)"))
                case .success:
                    // The body is complete only after the last spill write resumed the stream.
                    if let writeError { return completion(writeError) }
                    guard position >= tail else {
                        return completion(.io("\(key) holds \(position) bytes, the upload's offset needs \(tail)"))
                    }
                    part.spilled = tail
                    part.storedInTailObject = tail
                    completion(nil)
                    startParts()
                }
            }
        }
    }

    private func makePart(_ number: Int, _ completion: @escaping (Result<S3PartStream, StoreError>) -> Void) {
        let start = layout.start(ofPart: number)
        let partLength = layout.length(ofPart: number, uploadLength: length)
        if let reused = reusableSpillFiles.popLast() {
            let part = S3PartStream(number: number, start: start, length: partLength, path: reused.path)
            part.file = reused.file
            parts.append(part)
            return completion(.success(part))
        }
        let part = S3PartStream(
            number: number, start: start, length: partLength,
            path: store.spillPath(id, part: number, writer: writerToken))
        parts.append(part)
        AsyncFile.open(loop: loop, path: part.path, flags: [.readWrite, .create, .truncate], mode: 0o600) { opened in
            switch opened {
            case .failure(let error): completion(.failure(.io("open spill file \(part.path): \(error)")))
            case .success(let file):
                part.file = file
                completion(.success(part))
            }
        }
    }

    // MARK: Writing

    func write(_ fragment: BodyFragment, completion: @escaping (Result<Int64, StoreError>) -> Void) {
        precondition(!isClosed, "write after close")
        if let failure { return completion(.failure(failure)) }
        let end = acceptedEnd + Int64(fragment.count)
        if let length, end > length { return completion(.failure(.exceedsLength)) }
        acceptedEnd = end
        queue.append(PendingWrite(fragment: fragment, completion: completion))
        spillNext()
    }

    private func spillNext() {
        guard !isSpilling, !queue.isEmpty else { return }
        if let failure { return failQueued(failure) }
        let number = layout.partNumber(at: spilledEnd)
        if let part = parts.last, part.number == number, part.file != nil {
            spillQueued(into: part)
        } else {
            isSpilling = true
            makePart(number) { [self] made in
                isSpilling = false
                switch made {
                case .failure(let error): fail(error)
                case .success: spillNext()
                }
            }
        }
    }

    /// Writes every queued fragment that fits into the part with one `pwritev`: the connection keeps up to four
    /// fragments outstanding, and a threadpool round trip per fragment (milliseconds on a busy machine) capped
    /// how fast it could read. A fragment crossing the part's end is split; its rest waits for the next part.
    private func spillQueued(into part: S3PartStream) {
        guard let file = part.file else { return fail(.io("spill file closed")) }
        var room = Int(part.length - part.spilled)
        precondition(room > 0, "a full part is never the last one written to")
        var buffers: [UnsafeRawBufferPointer] = []
        var owners: [ByteChunk] = []
        var takes: [Int] = []
        for pending in queue {
            guard room > 0 else { break }
            let fragment = pending.fragment
            let take = min(room, fragment.count)
            buffers.append(fragment.chunk.bytes(fragment.range.lowerBound..<(fragment.range.lowerBound + take)))
            owners.append(fragment.chunk)
            takes.append(take)
            room -= take
        }
        let total = takes.reduce(0, +)
        isSpilling = true
        file.write(buffers, at: part.spilled, owner: ChunkOwners(owners)) { [self] result in
            isSpilling = false
            if case .failure(let error) = result { return fail(.io("write spill file \(part.path): \(error)")) }
            part.spilled += Int64(total)
            var end = spilledEnd
            spilledEnd += Int64(total)
            part.wakeProducer()
            for take in takes {
                end += Int64(take)
                let fragment = queue[0].fragment
                if take == fragment.count {
                    held.append((end, queue.removeFirst().completion))
                } else {
                    queue[0].fragment = BodyFragment(
                        chunk: fragment.chunk, range: (fragment.range.lowerBound + take)..<fragment.range.upperBound)
                }
            }
            startParts()
            releaseHeld()
            spillNext()
        }
    }

    private func releaseHeld() {
        if let failure {
            let waiting = held
            held = []
            for entry in waiting { entry.completion(.failure(failure)) }
            return
        }
        let confirmed = durableEnd()
        while let first = held.first, first.end - confirmed <= maxLag {
            held.removeFirst()
            first.completion(.success(first.end))
        }
    }

    /// Starts the requests of parts that have new bytes (or are full), as many as `concurrency` allows.
    private func startParts() {
        guard failure == nil, finishing == nil, !isStopped else { return }
        var uploading = parts.filter { $0.state == .uploading }.count
        for part in parts where part.state == .idle && uploading < concurrency {
            guard part.spilled > part.storedInTailObject || (part.isFull && part.length > 0) else { continue }
            upload(part)
            uploading += 1
        }
    }

    private func upload(_ part: S3PartStream) {
        part.state = .uploading
        let request = S3Request(
            method: .PUT, key: store.keys.data(id), query: [("partNumber", String(part.number)), ("uploadId", uploadID)],
            body: .stream(length: part.length, makeProducer: { TailFollowingProducer(part: part) }))
        part.handle = store.client.send(request, on: loop) { [self] result in
            part.handle = nil
            // Waiting for the client's next bytes when it failed: the client paused longer than S3's progress
            // deadline (--s3-timeout), S3 is not at fault. The part starts again when bytes come.
            let waitedForClient = part.parked != nil && !part.isFull
            part.parked = nil
            switch result {
            case .failure(.transport) where waitedForClient:
                part.state = .idle
            case .success(let response):
                let etag = response.headers["ETag"] ?? ""
                part.state = .done(etag: etag)
                releaseSpillFile(of: part)
            case .failure(.cancelled):
                part.state = .idle
            case .failure(let error):
                part.state = .failed
                fail(store.storeError(error, "UploadPart \(part.number) of \(store.keys.data(id))"))
            }
            releaseHeld()
            answerSyncWaiters()
            startParts()
            continueFinishing()
        }
    }

    /// A confirmed part's spill file goes to the next part, or away when enough are kept (or the writer stopped).
    private func releaseSpillFile(of part: S3PartStream) {
        guard let file = part.file else { return }
        part.file = nil
        if !isStopped, reusableSpillFiles.count <= concurrency {
            reusableSpillFiles.append((file, part.path))
            return
        }
        file.close()
        FileSystem.unlink(loop: loop, path: part.path) { _ in }
    }

    /// End of the bytes S3 holds: the parts confirmed contiguously from the part containing `start`.
    private func durableEnd() -> Int64 {
        var end = start
        for part in parts {
            guard part.isDone else { break }
            end = max(end, part.start + part.length)
        }
        return end
    }

    private func fail(_ error: StoreError) {
        if failure == nil { failure = error }
        let waiting = held
        held = []
        for entry in waiting { entry.completion(.failure(error)) }
        failQueued(error)
        answerSyncWaiters()
        continueFinishing()
    }

    private func failQueued(_ error: StoreError) {
        guard !isSpilling else { return }
        let waiting = queue
        queue = []
        acceptedEnd = spilledEnd
        for entry in waiting { entry.completion(.failure(error)) }
    }

    // MARK: Sync, finish, truncate

    /// A checkpoint while bytes stream: waits until the full parts spilled so far are confirmed by S3 (the parts'
    /// equivalent of an fsync of the writes completed before the call), then reports the confirmed end. Bytes of
    /// the incomplete last part are not covered: only `finish` can store them. The requests in flight are not
    /// disturbed.
    func sync(completion: @escaping (Result<Int64, StoreError>) -> Void) {
        let target = parts.filter(\.isFull).map { $0.start + $0.length }.max() ?? start
        syncWaiters.append((target, completion))
        answerSyncWaiters()
    }

    private func answerSyncWaiters() {
        guard !syncWaiters.isEmpty else { return }
        let confirmed = durableEnd()
        let settled = failure != nil || isStopped
        let ready = syncWaiters.filter { settled || confirmed >= $0.target }
        syncWaiters.removeAll { settled || confirmed >= $0.target }
        for waiter in ready { waiter.completion(.success(confirmed)) }
    }

    func finish(completion: @escaping (Result<Int64, StoreError>) -> Void) {
        precondition(queue.isEmpty && !isSpilling, "finish while writes are outstanding")
        finishing = completion
        // A part that cannot fill any more (this PATCH is over) stops its request; full parts run to the end.
        for part in parts where part.state == .uploading && !part.isFull { part.handle?.cancel() }
        continueFinishing()
    }

    private func continueFinishing() {
        guard let completion = finishing, !parts.contains(where: { $0.state == .uploading }) else { return }
        // Full parts that never started (slots were busy) go now, unless something failed.
        if failure == nil, let waiting = parts.first(where: { $0.state == .idle && $0.isFull && $0.length > 0 }) {
            upload(waiting)
            return
        }
        finishing = nil
        let confirmed = durableEnd()
        // The incomplete last part: its bytes so far go to the incomplete-part object, provided every part before
        // it is in S3 (otherwise the offset stops at the confirmed parts, and its bytes are sent again later). A
        // full part that is not in S3 never goes there: the next writer would start after it.
        guard let last = parts.last, !last.isDone, !last.isFull, parts.dropLast().allSatisfy(\.isDone) else {
            return completeIfFinished(at: confirmed, completion)
        }
        let storedEnd = max(confirmed, last.start + last.storedInTailObject)
        guard last.spilled > last.storedInTailObject, let file = last.file else {
            return completeIfFinished(at: storedEnd, completion)
        }
        let key = store.keys.tail(id, part: last.number)
        let size = last.spilled
        let request = S3Request(
            method: .PUT, key: key,
            body: .stream(length: size, makeProducer: { FileBodyProducer(file: file, offset: 0, length: size) }))
        store.client.send(request, on: loop) { [self] result in
            switch result {
            case .failure(let error):
                _ = store.storeError(error, "PUT \(key) (incomplete part)")
                completion(.success(storedEnd))
            case .success:
                last.storedInTailObject = size
                completeIfFinished(at: last.end, completion)
            }
        }
    }

    private func completeIfFinished(at end: Int64, _ completion: @escaping (Result<Int64, StoreError>) -> Void) {
        guard let length, end == length else { return completion(.success(end)) }
        store.completeUpload(id: id, uploadID: uploadID, length: length, on: loop) { error in
            if let error { return completion(.failure(error)) }
            completion(.success(end))
        }
    }

    /// Rollback of a checksummed PATCH: S3 keeps what it had before this writer (full parts it uploaded are
    /// uploaded again by the next writer, the incomplete-part object was not touched), so only the requests
    /// stop and the spilled bytes are forgotten.
    func truncate(to offset: Int64, completion: @escaping (StoreError?) -> Void) {
        precondition(offset == start, "the S3 store rolls back only to where the writer started")
        isStopped = true
        answerSyncWaiters()
        for part in parts { part.handle?.cancel() }
        acceptedEnd = start
        completion(nil)
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        isStopped = true
        answerSyncWaiters()
        for part in parts {
            part.handle?.cancel()
            part.parked = nil
            if let file = part.file {
                file.close()
                part.file = nil
                FileSystem.unlink(loop: loop, path: part.path) { _ in }
            }
        }
        for (file, path) in reusableSpillFiles {
            file.close()
            FileSystem.unlink(loop: loop, path: path) { _ in }
        }
        reusableSpillFiles = []
    }
}

/// Keeps the chunks of one batched spill write alive until the write completed.
private final class ChunkOwners {
    let chunks: [ByteChunk]
    init(_ chunks: [ByteChunk]) { self.chunks = chunks }
}
