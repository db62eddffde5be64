import TusClient
import TusCrypto
public import TusCore
import TusLoop
public import TusProtocol

/// A final upload on S3 is an object like any other upload's, `P<final>`, completed from the multipart upload its
/// POST created. Its parts come from the partials' finished objects (`S3ConcatenationPlan`): copied inside S3 with
/// `UploadPartCopy`, or, for partials below S3's 5 MiB part minimum, streamed through the server by ranged GETs.
/// The result is independent of the partials: terminating or expiring one later leaves the final whole.
///
/// Crash safety: nothing is recorded until the object is complete, and every step can be taken again. A call
/// first looks for the finished object (a crash between `CompleteMultipartUpload` and the record), then uploads
/// every part of the plan again into the final's multipart upload (a part number uploaded again replaces the
/// earlier one, and parts outside the plan are left out of the completion), or into a new one when it is gone.
/// So an interrupted assembly is finished by the next attempt, under the final's lock.
extension S3DataStore {
    public func concatenate(
        id: String, parts: [String], lengths: [Int64], on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void
    ) {
        let loop = loop(of: executor)
        let key = keys.data(id)
        let total = lengths.reduce(0, +)
        let sources = zip(parts, lengths).map { (key: keys.data($0), length: $1) }
        guard let plan = S3ConcatenationPlan(sources: sources, streamPartSize: layout.partSize) else {
            return completion(.io("concatenation of \(id): more than 10,000 parts of \(layout.partSize) bytes"))
        }
        client.send(S3Request(method: .HEAD, key: key), on: loop) { [self] result in
            switch result {
            case .success(let response) where Self.contentLength(response) == total:
                // Completed by an earlier attempt that crashed before its record said so.
                return completion(nil)
            case .failure(let error) where error.statusCode != 404:
                return completion(storeError(error, "HEAD \(key)"))
            case .success, .failure:
                break
            }
            var seen = Set<String>()
            let distinct = sources.filter { seen.insert($0.key).inserted }
            checkSources(distinct[...], on: loop) { [self] error in
                if let error { return completion(error) }
                findOrCreateUploadID(id, on: loop) { [self] found in
                    let uploadID: String
                    switch found {
                    case .failure(let error): return completion(error)
                    case .success(let id): uploadID = id
                    }
                    guard total > 0 else {
                        return completeUpload(id: id, uploadID: uploadID, length: 0, on: loop, completion)
                    }
                    S3Assembly(store: self, key: key, uploadID: uploadID, plan: plan, loop: loop).run { [self] error in
                        if let error {
                            uploadIDs.remove(id)  // the next attempt looks again (the upload may be gone)
                            return completion(error)
                        }
                        completeUpload(
                            id: id, uploadID: uploadID, length: total, partSizes: plan.sizes, on: loop, completion)
                    }
                }
            }
        }
    }

    /// Every partial's object must exist with exactly its recorded length before anything is copied: a missing
    /// one is gone (terminated or expired before the final was assembled), a different size is never served.
    private func checkSources(
        _ sources: ArraySlice<(key: String, length: Int64)>, on loop: EventLoop,
        _ completion: @escaping (StoreError?) -> Void
    ) {
        guard let (key, length) = sources.first else { return completion(nil) }
        client.send(S3Request(method: .HEAD, key: key), on: loop) { [self] result in
            switch result {
            case .failure(let error) where error.statusCode == 404: completion(.gone)
            case .failure(let error): completion(storeError(error, "HEAD \(key)"))
            case .success(let response) where Self.contentLength(response) != length:
                completion(.io("\(key) holds \(Self.contentLength(response) ?? -1) bytes, the partial \(length)"))
            case .success: checkSources(sources.dropFirst(), on: loop, completion)
            }
        }
    }

    /// The final's multipart upload, made at its POST; a new one if it is gone (nothing of it was needed: the
    /// parts are all uploaded again).
    private func findOrCreateUploadID(
        _ id: String, on loop: EventLoop, _ completion: @escaping (Result<String, StoreError>) -> Void
    ) {
        findUploadIDs(id, on: loop) { [self] found in
            switch found {
            case .failure(let error): completion(.failure(error))
            case .success(let ids):
                if let last = ids.last { return completion(.success(last)) }
                createMultipartUpload(id, on: loop) { [self] error in
                    if let error { return completion(.failure(error)) }
                    guard let created = uploadIDs.get(id) else {
                        return completion(.failure(.io("no upload id for \(id)")))
                    }
                    completion(.success(created))
                }
            }
        }
    }

    static func contentLength(_ response: S3Response) -> Int64? {
        response.headers["Content-Length"].flatMap { Int64($0) }
    }

    /// `x-amz-copy-source`: the bucket and the URI-encoded key.
    func copySource(_ key: String) -> String {
        "/" + client.configuration.bucket + "/" + SigV4Signer.uriEncode(key, keepSlash: true)
    }
}

/// The parts of one final, at most `--s3-concurrency` requests at a time, on one loop. The first failure cancels
/// the requests in flight and ends the run.
final class S3Assembly {
    private let store: S3DataStore
    private let key: String
    private let uploadID: String
    private let plan: S3ConcatenationPlan
    private let loop: EventLoop
    private var next = 0
    private var inFlight: [Int: S3RequestHandle] = [:]
    private var failure: StoreError?
    private var completion: ((StoreError?) -> Void)?
    /// Set by a streamed part whose source answered 404 (a partial removed during the assembly).
    private var sourceMissing = false

    init(store: S3DataStore, key: String, uploadID: String, plan: S3ConcatenationPlan, loop: EventLoop) {
        self.store = store
        self.key = key
        self.uploadID = uploadID
        self.plan = plan
        self.loop = loop
    }

    func run(_ completion: @escaping (StoreError?) -> Void) {
        self.completion = completion
        launch()
    }

    private func launch() {
        while failure == nil, next < plan.parts.count, inFlight.count < store.client.configuration.concurrency {
            start(index: next)
            next += 1
        }
        guard inFlight.isEmpty, failure != nil || next == plan.parts.count, let completion else { return }
        self.completion = nil
        completion(failure)
    }

    private func start(index: Int) {
        let number = index + 1
        let part = plan.parts[index]
        let query = [("partNumber", String(number)), ("uploadId", uploadID)]
        let request: S3Request
        switch part {
        case .copy(let piece):
            request = S3Request(
                method: .PUT, key: key, query: query,
                headers: [
                    ("x-amz-copy-source", store.copySource(piece.key)),
                    ("x-amz-copy-source-range", "bytes=\(piece.range.lowerBound)-\(piece.range.upperBound - 1)"),
                ],
                timeoutMilliseconds: Self.copyTimeout(store.client.configuration.timeoutMilliseconds))
        case .stream(let pieces):
            let store = store
            let loop = loop
            request = S3Request(
                method: .PUT, key: key, query: query,
                body: .stream(length: part.size) { [weak self] in
                    S3PiecesProducer(store: store, pieces: pieces, loop: loop) { self?.sourceMissing = true }
                })
        }
        inFlight[number] = store.client.send(request, on: loop) { [self] result in
            inFlight[number] = nil
            if failure == nil { failure = error(of: result, part: part, number: number) }
            if failure != nil { for handle in inFlight.values { handle.cancel() } }
            launch()
        }
    }

    /// RGW answers a copy only once it is done: 4 copies of 256 MiB at once took up to 16 s at load 14 here, past
    /// the default 15 s `--s3-timeout` that is right for requests that stream. A copy may stay silent 8 times as long
    /// (2 minutes by default) before it counts as failed and is retried.
    static func copyTimeout(_ timeout: UInt64) -> UInt64 { timeout * 8 }

    private func error(
        of result: Result<S3Response, S3Error>, part: S3ConcatenationPlan.Part, number: Int
    ) -> StoreError? {
        let what = "UploadPart\(part.streamedBytes == 0 ? "Copy" : "") \(key) #\(number)"
        switch result {
        case .failure(let error):
            if case .status(404, let code, _) = error {
                // NoSuchKey: the source partial went away meanwhile. NoSuchUpload: the final's multipart upload did
                // (aborted from outside); the next attempt starts a new one.
                return code == "NoSuchUpload" ? .unavailable("\(what): NoSuchUpload") : .gone
            }
            if sourceMissing { return .gone }
            return store.storeError(error, what)
        case .success(let response):
            // Like CompleteMultipartUpload, a copy may answer 200 with an error document once it has started.
            let text = String(decoding: response.body, as: UTF8.self)
            if text.contains("<Error>"), let (code, message) = S3Responses.error(from: text) {
                return .unavailable("\(what): \(code) \(message)")
            }
            return nil
        }
    }
}

/// The body of a streamed part: the pieces' bytes, one ranged GET after the other, pulled as the part's request
/// sends them. The GET's connection stops reading until its last bytes were taken, so a part in flight holds one
/// read's bytes here, whatever its size. A retry of the part makes a new producer (S3Client), which reads again.
final class S3PiecesProducer: HTTPBodyProducer {
    private let store: S3DataStore
    private let pieces: [S3ConcatenationPlan.Piece]
    private let loop: EventLoop
    private let onMissingSource: () -> Void
    private var index = 0
    private var handle: S3RequestHandle?
    /// Bytes of the current piece received so far.
    private var received: Int64 = 0
    private var buffered: [UInt8] = []
    private var resume: (() -> Void)?
    /// The current piece's GET ended: nil when it succeeded.
    private var ended: S3Error?? = nil
    private var waiting: ((Result<BodyFragment?, any Error>) -> Void)?

    init(
        store: S3DataStore, pieces: [S3ConcatenationPlan.Piece], loop: EventLoop,
        onMissingSource: @escaping () -> Void
    ) {
        self.store = store
        self.pieces = pieces
        self.loop = loop
        self.onMissingSource = onMissingSource
    }

    deinit {
        handle?.cancel()
    }

    func nextFragment(_ deliver: @escaping (Result<BodyFragment?, any Error>) -> Void) {
        waiting = deliver
        serve()
    }

    private func serve() {
        guard let deliver = waiting else { return }
        if !buffered.isEmpty {
            waiting = nil
            let fragment = BodyFragment(copying: buffered)
            buffered = []
            let resume = resume
            self.resume = nil
            deliver(.success(fragment))
            resume?()
            return
        }
        if let ended {
            if let error = ended {
                waiting = nil
                if error.statusCode == 404 { onMissingSource() }
                return deliver(.failure(error))
            }
            guard received == pieces[index].range.count64 else {
                waiting = nil
                return deliver(.failure(S3Error.transport("GET \(pieces[index].key) ended after \(received) bytes")))
            }
            index += 1
            self.ended = nil
            handle = nil
        }
        guard handle == nil else { return }
        guard index < pieces.count else {
            waiting = nil
            return deliver(.success(nil))
        }
        startGet(pieces[index])
    }

    private func startGet(_ piece: S3ConcatenationPlan.Piece) {
        received = 0
        let range = "bytes=\(piece.range.lowerBound)-\(piece.range.upperBound - 1)"
        let request = S3Request(method: .GET, key: piece.key, headers: [("range", range)])
        var started: S3RequestHandle?
        started = store.client.send(
            request, on: loop,
            streamBody: { [weak self] bytes, resume in
                guard let self, self.handle === started else { return resume() }
                self.received += Int64(bytes.count)
                guard self.received <= piece.range.count64 else {
                    self.ended = .some(.transport("GET \(piece.key) sent more than the range asked for"))
                    self.handle?.cancel()
                    return self.serve()
                }
                self.buffered += bytes
                self.resume = resume
                self.serve()
            }
        ) { [weak self] result in
            guard let self, self.handle === started, self.ended == nil else { return }
            switch result {
            case .success: self.ended = .some(nil)
            case .failure(let error): self.ended = .some(error)
            }
            self.serve()
        }
        handle = started
    }
}
