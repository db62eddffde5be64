public import TusCrypto
import TusCore
import TusHTTP1
import Glibc

/// Progress of an upload as seen by the client: `offset` of `total` bytes acknowledged or in flight.
public struct UploadProgress: Sendable {
    public var offset: Int64
    public var total: Int64
    public init(offset: Int64, total: Int64) {
        self.offset = offset
        self.total = total
    }
}

/// `tus-cli upload`: create (or find again) the upload for a file, send it, survive crashes and flaky networks.
///
/// Resuming: the upload URL is stored under `<cache>/tus-cli/uploads/<key>`, where the key hashes the endpoint,
/// the absolute path, the size, and the first and last 64 KiB. A changed file therefore gets a new key and a new
/// upload (never a mixed one). If the file changes *during* an upload (size differs from the start, or a read
/// comes up short), the upload stops with `.fileChanged` and forgets the record, so the next run starts afresh.
/// If the remembered upload is gone (404/410) or has another length, a new upload is created (with a message).
///
/// Retrying: network errors, 5xx, 409 and 423 are retried after a backoff (base × 2^n, capped at 10 s), then
/// HEAD tells where to continue. `retries` bounds consecutive failures; any progress resets the count.
public struct UploadOptions: Sendable {
    public var chunkSize: Int64?
    public var checksum: DigestAlgorithm?
    public var retries = 5
    public var resume = true
    public var retryDelayMilliseconds: UInt64 = 500
    /// `retryDelayMilliseconds` doubling per consecutive failure, at most 10 s.
    var backoff: Backoff { Backoff(initialMilliseconds: retryDelayMilliseconds, maximumMilliseconds: 10_000) }
    /// Extra Upload-Metadata pairs (filename and filetype are added unless present).
    public var metadata: [(key: String, value: String)] = []
    /// Defaults to $XDG_CACHE_HOME/tus-cli or ~/.cache/tus-cli.
    public var cacheDirectory: String?
    /// tus 1.0.0 unless told otherwise; the draft path ignores `checksum` (it has no per-request checksum).
    public var uploadProtocol: UploadProtocol = .tus
    public init() {}
}

public final class Uploader {
    public let client: TusClient
    public let options: UploadOptions
    public var onProgress: (@Sendable (UploadProgress) -> Void)?
    /// Human-readable notes (resuming, retrying, starting over).
    public var onMessage: ((String) -> Void)?

    public init(client: TusClient, options: UploadOptions) {
        self.client = client
        self.options = options
    }

    /// Uploads `path` to the creation endpoint `endpoint`; returns the upload URL.
    public func upload(file path: String, to endpoint: TusURL) throws(TusClientError) -> TusURL {
        if case .ietf(let draft) = options.uploadProtocol {
            return try uploadResumable(file: path, to: endpoint, draft: draft)
        }
        let absolute = Self.absolutePath(path)
        let size = try Self.fileSize(absolute)
        let key = try Self.fingerprint(path: absolute, size: size, endpoint: endpoint)
        let store = ResumeStore(directory: options.cacheDirectory ?? ResumeStore.defaultDirectory())
        var failures = 0
        var uploadURL: TusURL? = nil
        var offset: Int64 = 0

        if options.resume, let remembered = store.lookup(key), let url = try? TusURL(string: remembered) {
            do {
                let status = try client.head(url)
                if let length = status.length, length != size {
                    onMessage?("remembered upload \(url) has length \(length), file has \(size): starting a new upload")
                } else {
                    uploadURL = url
                    offset = status.offset
                    onMessage?("resuming \(url) at byte \(offset) of \(size)")
                }
            } catch .server(let status, _) where [403, 404, 410].contains(status) {
                onMessage?("remembered upload \(url) is gone (\(status)): starting a new upload")
                store.forget(key)
            }
        }

        while true {
            do throws(TusClientError) {
                if uploadURL == nil {
                    let created = try createUpload(absolute, size: size, at: endpoint)
                    uploadURL = created.url
                    offset = created.offset
                    store.remember(key, url: created.url.description)
                }
                guard let url = uploadURL else { continue }
                try checkUnchanged(absolute, size: size)
                if offset >= size {
                    onProgress?(UploadProgress(offset: size, total: size))
                    store.forget(key)
                    return url
                }
                let length = min(size - offset, options.chunkSize ?? (size - offset))
                let base = offset
                let sent = Counter()
                let total = size
                let progress = onProgress
                let newOffset = try client.patch(
                    url, offset: offset, range: FileRange(path: absolute, offset: offset, length: length),
                    checksum: options.checksum,
                    onSent: { count in
                        progress?(UploadProgress(offset: base + sent.add(Int64(count)), total: total))
                    })
                guard newOffset > offset, newOffset <= size else {
                    throw TusClientError.protocolViolation("server moved the offset from \(offset) to \(newOffset)")
                }
                offset = newOffset
                failures = 0
                onProgress?(UploadProgress(offset: offset, total: size))
            } catch let error where error.isRetryable {
                failures += 1
                guard failures <= options.retries else { throw error }
                let delay = options.backoff.delay(afterFailures: failures)
                onMessage?("\(error); retry \(failures)/\(options.retries) in \(Double(delay) / 1000) s")
                usleep(UInt32(min(delay * 1000, UInt64(UInt32.max))))
                if let url = uploadURL {
                    // Where did the server get to? A failure here just counts as the next attempt.
                    if let status = try? client.head(url) { offset = status.offset }
                }
            } catch .fileChanged(let message) {
                store.forget(key)
                throw .fileChanged("\(message); run again to start a new upload")
            } catch {
                throw error
            }
        }
    }

    private func createUpload(_ path: String, size: Int64, at endpoint: TusURL) throws(TusClientError) -> (
        url: TusURL, offset: Int64
    ) {
        var metadata = options.metadata
        let name = String(path.split(separator: "/").last ?? "")
        if !metadata.contains(where: { $0.key == "filename" }) { metadata.append((key: "filename", value: name)) }
        if !metadata.contains(where: { $0.key == "filetype" }) {
            metadata.append((key: "filetype", value: MediaType.guess(forFileName: name)))
        }
        let created = try client.create(at: endpoint, length: size, metadata: metadata)
        onMessage?("created \(created.url)")
        return created
    }

    func checkUnchanged(_ path: String, size: Int64) throws(TusClientError) {
        let current: Int64
        do {
            current = try Self.fileSize(path)
        } catch {
            throw .fileChanged("\(path) can no longer be read")
        }
        guard current == size else {
            throw .fileChanged("\(path) was \(size) bytes when the upload began and is \(current) now")
        }
    }

    // MARK: Files

    static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        let cwd = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return cwd + "/" + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
    }

    static func fileSize(_ path: String) throws(TusClientError) -> Int64 {
        var info = stat()
        guard stat(path, &info) == 0 else { throw .localIO("\(path): \(String(cString: strerror(errno)))") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw .localIO("\(path): not a regular file") }
        return Int64(info.st_size)
    }

    /// sha256 over endpoint, absolute path, size and the first and last 64 KiB: cheap for huge files, and any
    /// truncation, append or rewrite of either end changes it. `protocolName` keeps another wire format's record
    /// apart (nil for tus, so records written before the draft existed still match).
    public static func fingerprint(
        path: String, size: Int64, endpoint: TusURL, protocolName: String? = nil
    ) throws(TusClientError) -> String {
        let digest = StreamingDigest(.sha256)
        if let protocolName { digest.update(Array("\(protocolName)\n".utf8)) }
        digest.update(Array("\(endpoint)\n\(path)\n\(size)\n".utf8))
        let sample: Int64 = 64 * 1024
        try digest.update(fileRange: FileRange(path: path, offset: 0, length: min(sample, size)))
        if size > sample {
            let start = max(sample, size - sample)
            try digest.update(fileRange: FileRange(path: path, offset: start, length: size - start))
        }
        return Hex.encode(digest.finalize())
    }
}

extension StreamingDigest {
    func update(fileRange range: FileRange) throws(TusClientError) {
        let descriptor = open(range.path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .localIO("cannot open \(range.path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: Int(range.length))
        var done = 0
        while done < buffer.count {
            let count = buffer.withUnsafeMutableBytes {
                pread(descriptor, $0.baseAddress! + done, $0.count - done, off_t(range.offset + Int64(done)))
            }
            guard count > 0 else { throw .localIO("read \(range.path) failed") }
            done += count
        }
        update(buffer)
    }
}

/// A counter shared between the loop thread (progress) and nobody else; a class so closures can mutate it.
final class Counter: @unchecked Sendable {
    private var value: Int64 = 0
    func add(_ amount: Int64) -> Int64 {
        value += amount
        return value
    }
}

/// Remembered upload URLs: one small file per fingerprint, written atomically (temp file + rename).
struct ResumeStore {
    let directory: String

    static func defaultDirectory() -> String {
        if let xdg = getenv("XDG_CACHE_HOME").map({ String(cString: $0) }), xdg.hasPrefix("/") {
            return xdg + "/tus-cli"
        }
        let home = getenv("HOME").map { String(cString: $0) } ?? "/tmp"
        return home + "/.cache/tus-cli"
    }

    private var uploadsDirectory: String { directory + "/uploads" }

    func lookup(_ key: String) -> String? {
        guard let file = fopen(uploadsDirectory + "/" + key, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 4096)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let line = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let trimmed = String(line.trimming { "\n\r ".contains($0) })
        return trimmed.isEmpty ? nil : trimmed
    }

    func remember(_ key: String, url: String) {
        mkdirs(uploadsDirectory)
        let path = uploadsDirectory + "/" + key
        let temporary = path + ".tmp\(getpid())"
        guard let file = fopen(temporary, "w") else { return }
        fputs(url + "\n", file)
        fflush(file)
        fsync(fileno(file))
        fclose(file)
        rename(temporary, path)
    }

    func forget(_ key: String) {
        unlink(uploadsDirectory + "/" + key)
    }

    private func mkdirs(_ path: String) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            mkdir(current, 0o700)
        }
    }
}

/// Content types for the `filetype` metadata, by extension; unknown ones are application/octet-stream.
public enum MediaType {
    static let byExtension: [String: String] = [
        "txt": "text/plain", "html": "text/html", "htm": "text/html", "css": "text/css", "csv": "text/csv",
        "js": "text/javascript", "json": "application/json", "xml": "application/xml", "pdf": "application/pdf",
        "zip": "application/zip", "gz": "application/gzip", "tar": "application/x-tar", "png": "image/png",
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "svg": "image/svg+xml",
        "mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime", "mkv": "video/x-matroska",
        "mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg", "md": "text/markdown", "bin": "application/octet-stream",
    ]

    public static func guess(forFileName name: String) -> String {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "application/octet-stream" }
        return byExtension[name[name.index(after: dot)...].lowercased()] ?? "application/octet-stream"
    }
}
