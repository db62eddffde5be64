import Dispatch
import Glibc
import TusHTTP1

/// `tus-cli upload --parallel N`: the file is cut into N byte ranges, each sent as a partial upload
/// (`Upload-Concat: partial`) over its own connection at the same time, and once all are complete one final upload
/// (`Upload-Concat: final;...`) joins them, carrying the file's metadata.
///
/// Resuming: each part's URL is remembered under `<key>-part-<i>-of-<n>` as soon as it exists, and the final's
/// under `<key>-final` as soon as it exists, so a run after an interruption resumes every part where the server got
/// to and never creates a second final (it finds the remembered one). A run that finished forgets them all, as a
/// single upload does, so the next run uploads again.
extension Uploader {
    public func uploadInParallel(
        file path: String, to endpoint: TusURL, parts count: Int
    ) throws(TusClientError) -> TusURL {
        let absolute = Self.absolutePath(path)
        let size = try Self.fileSize(absolute)
        let key = try Self.fingerprint(path: absolute, size: size, endpoint: endpoint)
        let store = ResumeStore(directory: options.cacheDirectory ?? ResumeStore.defaultDirectory())
        let parts = max(1, min(count, Int(max(1, size))))
        let finalKey = "\(key)-final"
        let partKeys = (0..<parts).map { "\(key)-part-\($0)-of-\(parts)" }
        let forgetAll = { for name in [finalKey] + partKeys { store.forget(name) } }

        if options.resume, let remembered = store.lookup(finalKey), let url = try? TusURL(string: remembered) {
            do {
                let status = try client.head(url)
                if status.offset == size {
                    onMessage?("\(url) is complete")
                    forgetAll()
                    return url
                }
                onMessage?("remembered final upload \(url) is at \(status.offset) of \(size): starting over")
            } catch .server(let status, _) where [403, 404, 410].contains(status) {
                onMessage?("remembered final upload \(url) is gone (\(status)): starting over")
            } catch .protocolViolation {
                onMessage?("remembered final upload \(url) is not complete yet: starting over")
            }
            forgetAll()
        }
        let capabilities = try client.options(endpoint)
        guard capabilities.extensions.contains("concatenation") else {
            throw .protocolViolation("the server does not offer the concatenation extension; upload without --parallel")
        }

        // Part i covers [start(i), start(i + 1)): sizes differ by at most one byte.
        let starts = (0...parts).map { Int64($0) * size / Int64(parts) }
        let total = size
        let sent = ParallelProgress(parts: parts)
        let progress = onProgress
        let messages = MessageLock(onMessage)
        let results = UncheckedBox([Result<TusURL, TusClientError>?](repeating: nil, count: parts))
        let resultsLock = MessageLock(nil)
        let configuration = client.configuration
        let options = options
        DispatchQueue.concurrentPerform(iterations: parts) { index in
            let outcome: Result<TusURL, TusClientError>
            do throws(TusClientError) {
                let partClient = try TusClient(configuration: configuration)
                defer { partClient.shutdown() }
                let range = FileRange(path: absolute, offset: starts[index], length: starts[index + 1] - starts[index])
                outcome = .success(
                    try Self.uploadPart(
                        range, key: partKeys[index], client: partClient, endpoint: endpoint, store: store,
                        options: options, messages: messages,
                        onSent: { done in progress?(UploadProgress(offset: sent.set(index, done), total: total)) }))
            } catch {
                outcome = .failure(error)
            }
            resultsLock.locked { results.value[index] = outcome }
        }
        var partURLs: [TusURL] = []
        for result in results.value {
            switch result {
            case .success(let url)?: partURLs.append(url)
            case .failure(let error)?: throw error
            case nil: throw .protocolViolation("a part did not finish")
            }
        }
        let finalURL = try client.createFinal(at: endpoint, partials: partURLs, metadata: fileMetadata(absolute))
        store.remember(finalKey, url: finalURL.description)
        onMessage?("created \(finalURL) from \(parts) parts")
        let status = try client.head(finalURL)
        guard status.offset == size, status.length == size else {
            throw .protocolViolation(
                "final upload \(finalURL) has \(status.offset) of \(status.length ?? -1) bytes, the file \(size)")
        }
        onProgress?(UploadProgress(offset: size, total: size))
        forgetAll()
        return finalURL
    }

    /// One partial upload to completion: resumed from its remembered URL when the server still has it, with the
    /// same retry rules as a single upload. Returns its URL.
    private static func uploadPart(
        _ range: FileRange, key: String, client: TusClient, endpoint: TusURL, store: ResumeStore,
        options: UploadOptions, messages: MessageLock,
        onSent: @escaping @Sendable (Int64) -> Void
    ) throws(TusClientError) -> TusURL {
        var url: TusURL?
        var offset: Int64 = 0
        if options.resume, let remembered = store.lookup(key), let rememberedURL = try? TusURL(string: remembered) {
            do {
                let status = try client.head(rememberedURL)
                if status.length == range.length {
                    url = rememberedURL
                    offset = status.offset
                    messages.send("resuming part \(rememberedURL) at byte \(offset) of \(range.length)")
                }
            } catch .server(let status, _) where [403, 404, 410].contains(status) {
                store.forget(key)
            }
        }
        var failures = 0
        while true {
            do throws(TusClientError) {
                if url == nil {
                    let created = try client.create(at: endpoint, length: range.length, concat: "partial")
                    url = created.url
                    offset = created.offset
                    store.remember(key, url: created.url.description)
                }
                guard let partURL = url else { continue }
                onSent(offset)
                if offset >= range.length { return partURL }
                let length = min(range.length - offset, options.chunkSize ?? (range.length - offset))
                let base = offset
                let counter = Counter()
                let newOffset = try client.patch(
                    partURL, offset: offset,
                    range: FileRange(path: range.path, offset: range.offset + offset, length: length),
                    checksum: options.checksum, onSent: { count in onSent(base + counter.add(Int64(count))) })
                guard newOffset > offset, newOffset <= range.length else {
                    throw TusClientError.protocolViolation("server moved the offset from \(offset) to \(newOffset)")
                }
                offset = newOffset
                failures = 0
            } catch let error where error.isRetryable {
                failures += 1
                guard failures <= options.retries else { throw error }
                let delay = options.backoff.delay(afterFailures: failures)
                messages.send("\(error); retry \(failures)/\(options.retries) in \(Double(delay) / 1000) s")
                usleep(UInt32(min(delay * 1000, UInt64(UInt32.max))))
                if let partURL = url, let status = try? client.head(partURL) { offset = status.offset }
            }
        }
    }

    /// `filename` and `filetype` plus the user's pairs: on the final only (partials are not files of their own).
    func fileMetadata(_ path: String) -> [(key: String, value: String)] {
        var metadata = options.metadata
        let name = String(path.split(separator: "/").last ?? "")
        if !metadata.contains(where: { $0.key == "filename" }) { metadata.append((key: "filename", value: name)) }
        if !metadata.contains(where: { $0.key == "filetype" }) {
            metadata.append((key: "filetype", value: MediaType.guess(forFileName: name)))
        }
        return metadata
    }
}

/// Bytes sent per part, summed for one progress figure; parts report from their own client threads.
final class ParallelProgress: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var perPart: [Int64]

    init(parts: Int) {
        perPart = Array(repeating: 0, count: parts)
        pthread_mutex_init(&mutex, nil)
    }

    /// Records part `index` at `done` bytes; returns the sum over all parts.
    func set(_ index: Int, _ done: Int64) -> Int64 {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        perPart[index] = done
        return perPart.reduce(0, +)
    }
}

/// Serializes calls that were written for one thread (the caller's message callback, the results array).
final class MessageLock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private let handler: ((String) -> Void)?

    init(_ handler: ((String) -> Void)?) {
        self.handler = handler
        pthread_mutex_init(&mutex, nil)
    }

    func send(_ message: String) {
        locked { handler?(message) }
    }

    func locked(_ body: () -> Void) {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        body()
    }
}
