import TusClient
import TusHTTP1
import TusLoop
import TusS3Store

/// An in-memory S3 behind the store's transport seam: multipart uploads, parts, objects, ranged GETs, the list
/// calls. Request bodies are pulled from their producers exactly as a socket would (one fragment after the
/// other), so the part writer's streaming and backpressure run for real, without sockets. Loop thread only.
final class FakeS3: S3Transport, @unchecked Sendable {
    let configuration: S3Configuration
    var objects: [String: [UInt8]] = [:]
    var uploads: [String: (key: String, parts: [Int: [UInt8]])] = [:]
    /// Every request, as "METHOD key?query".
    var log: [String] = []
    /// The next UploadPart attempts that fail with 503 (after reading their body).
    var failingPartAttempts = 0
    /// UploadPartCopy requests received, and the no-progress deadline each asked for.
    var copies = 0
    var copyTimeouts: [UInt64?] = []
    /// While true, UploadPart requests take no body bytes (a stalled S3): they wait for `resumeStalled`.
    var stallsParts = false
    private var stalled: [() -> Void] = []
    private var nextUploadNumber = 1

    init(partSize: Int64 = 5 << 20, concurrency: Int = 2, spill: String) throws {
        configuration = try S3Configuration(
            endpoint: "http://127.0.0.1:1", bucket: "fake", pathStyle: true,
            credentials: .init(accessKeyID: "a", secretAccessKey: "b"), partSize: partSize, concurrency: concurrency,
            spillDirectory: spill)
    }

    func resumeStalled() {
        stallsParts = false
        let waiting = stalled
        stalled = []
        for resume in waiting { resume() }
    }

    var partRequestsInFlight = 0

    func send(
        _ request: S3Request, on loop: EventLoop, streamBody: ((_ bytes: [UInt8], _ resume: @escaping () -> Void) -> Void)?,
        completion: @escaping (Result<S3Response, S3Error>) -> Void
    ) -> S3RequestHandle {
        let handle = S3RequestHandle()
        var isDone = false
        let finish: (Result<S3Response, S3Error>) -> Void = { result in
            guard !isDone else { return }
            isDone = true
            completion(result)
        }
        handle.onCancel = { finish(.failure(.cancelled)) }
        let query = Dictionary(request.query, uniquingKeysWith: { a, _ in a })
        log.append("\(request.method.rawValue) \(request.key ?? "")?\(request.query.map { $0.0 }.joined(separator: "&"))")
        let answer: (Int, [UInt8], [(String, String)]) -> Void = { status, body, headers in
            _ = loop.schedule(afterMilliseconds: 0) {
                var fields = HTTPHeaders()
                for (name, value) in headers { fields.add(name, value) }
                if (200..<300).contains(status) {
                    finish(.success(S3Response(status: status, headers: fields, body: body)))
                } else {
                    finish(.failure(.status(status, code: status == 404 ? "NoSuchKey" : "ServiceUnavailable", message: "")))
                }
            }
        }
        switch (request.method, request.key) {
        case (.POST, let key?) where query["uploads"] != nil:
            let id = "upload-\(nextUploadNumber)"
            nextUploadNumber += 1
            uploads[id] = (key, [:])
            answer(200, Array("<InitiateMultipartUploadResult><UploadId>\(id)</UploadId></InitiateMultipartUploadResult>".utf8), [])
        case (.PUT, let key?) where request.headers.contains { $0.0 == "x-amz-copy-source" }:
            // UploadPartCopy: a byte range of an object becomes a part (the fake's keys need no decoding).
            copies += 1
            copyTimeouts.append(request.timeoutMilliseconds)
            let source = request.headers.first { $0.0 == "x-amz-copy-source" }!.1
            let sourceKey = String(source.dropFirst("/\(configuration.bucket)/".count))
            guard let number = query["partNumber"].flatMap({ Int($0) }), let uploadID = query["uploadId"],
                uploads[uploadID] != nil
            else { answer(404, Array("<Error><Code>NoSuchUpload</Code></Error>".utf8), []); break }
            guard let bytes = objects[sourceKey] else { answer(404, [], []); break }
            var copied = bytes
            if let range = request.headers.first(where: { $0.0 == "x-amz-copy-source-range" })?.1 {
                let spec = range.dropFirst("bytes=".count).split(separator: "-").map { Int($0)! }
                guard spec[1] < bytes.count else { answer(416, [], []); break }
                copied = Array(bytes[spec[0]...spec[1]])
            }
            _ = key
            uploads[uploadID]!.parts[number] = copied
            answer(200, Array("<CopyPartResult><ETag>\"etag-\(number)-\(copied.count)\"</ETag></CopyPartResult>".utf8), [])
        case (.PUT, let key?):
            readBody(request.body, loop: loop, isPart: query["partNumber"] != nil, handle: handle) { [self] bytes in
                guard let bytes else { return }
                if let number = query["partNumber"].flatMap({ Int($0) }), let uploadID = query["uploadId"] {
                    if failingPartAttempts > 0 {
                        failingPartAttempts -= 1
                        return answer(503, [], [])
                    }
                    guard uploads[uploadID] != nil else { return answer(404, [], []) }
                    uploads[uploadID]!.parts[number] = bytes
                    answer(200, [], [("ETag", "\"etag-\(number)-\(bytes.count)\"")])
                } else {
                    objects[key] = bytes
                    answer(200, [], [])
                }
            }
        case (.GET, nil) where query["uploads"] != nil:
            let prefix = query["prefix"] ?? ""
            let listed = uploads.filter { $0.value.key.hasPrefix(prefix) }
                .map { "<Upload><Key>\($0.value.key)</Key><UploadId>\($0.key)</UploadId></Upload>" }.joined()
            answer(200, Array("<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\(listed)</ListMultipartUploadsResult>".utf8), [])
        case (.GET, nil):
            let prefix = query["prefix"] ?? ""
            let listed = objects.keys.filter { $0.hasPrefix(prefix) }.sorted()
                .map { "<Contents><Key>\($0)</Key></Contents>" }.joined()
            answer(200, Array("<ListBucketResult><IsTruncated>false</IsTruncated>\(listed)</ListBucketResult>".utf8), [])
        case (.GET, let key?) where query["uploadId"] != nil:
            guard let upload = uploads[query["uploadId"]!] else { answer(404, [], []); break }
            let parts = upload.parts.keys.sorted().map {
                "<Part><PartNumber>\($0)</PartNumber><ETag>\"etag-\($0)-\(upload.parts[$0]!.count)\"</ETag><Size>\(upload.parts[$0]!.count)</Size></Part>"
            }.joined()
            _ = key
            answer(200, Array("<ListPartsResult><IsTruncated>false</IsTruncated>\(parts)</ListPartsResult>".utf8), [])
        case (.HEAD, let key?):
            answer(objects[key] == nil ? 404 : 200, [], objects[key].map { [("Content-Length", String($0.count))] } ?? [])
        case (.GET, let key?):
            guard var bytes = objects[key] else { answer(404, [], []); break }
            if let range = request.headers.first(where: { $0.0 == "range" })?.1 {
                let spec = range.dropFirst("bytes=".count).split(separator: "-", omittingEmptySubsequences: false)
                let first = Int(spec[0])!
                let last = spec.count > 1 && !spec[1].isEmpty ? min(Int(spec[1])!, bytes.count - 1) : bytes.count - 1
                bytes = first <= last ? Array(bytes[first...last]) : []
            }
            if let streamBody {
                _ = loop.schedule(afterMilliseconds: 0) {
                    streamBody(bytes) { answer(200, [], []) }
                }
            } else {
                answer(200, bytes, [])
            }
        case (.POST, let key?) where query["uploadId"] != nil:
            guard let upload = uploads[query["uploadId"]!] else { answer(404, [], []); break }
            guard case .bytes(let body) = request.body else { answer(400, [], []); break }
            let numbers = S3XML.values("PartNumber", in: String(decoding: body, as: UTF8.self)).compactMap { Int($0) }
            objects[key] = numbers.flatMap { upload.parts[$0] ?? [] }
            uploads[query["uploadId"]!] = nil
            answer(200, Array("<CompleteMultipartUploadResult><Key>\(key)</Key></CompleteMultipartUploadResult>".utf8), [])
        case (.DELETE, let key?):
            if let uploadID = query["uploadId"] {
                uploads[uploadID] = nil
            } else {
                objects[key] = nil
            }
            answer(204, [], [])
        default:
            answer(400, [], [])
        }
        return handle
    }

    /// Pulls a request body the way a socket does: the next fragment only after the previous one was taken.
    private func readBody(
        _ body: S3RequestBody, loop: EventLoop, isPart: Bool, handle: S3RequestHandle,
        _ completion: @escaping ([UInt8]?) -> Void
    ) {
        switch body {
        case .none: completion([])
        case .bytes(let bytes): completion(bytes)
        case .stream(let length, let makeProducer):
            let producer = makeProducer()
            var collected: [UInt8] = []
            if isPart { partRequestsInFlight += 1 }
            func pull() {
                guard !handle.isCancelled else {
                    if isPart { partRequestsInFlight -= 1 }
                    return completion(nil)
                }
                if Int64(collected.count) == length {
                    if isPart { partRequestsInFlight -= 1 }
                    return completion(collected)
                }
                if isPart && stallsParts {
                    stalled.append { pull() }
                    return
                }
                producer.nextFragment { result in
                    switch result {
                    case .success(let fragment?):
                        collected += fragment.array
                        _ = loop.schedule(afterMilliseconds: 0) { pull() }
                    case .success(nil), .failure:
                        if isPart { self.partRequestsInFlight -= 1 }
                        completion(nil)
                    }
                }
            }
            pull()
        }
    }
}
