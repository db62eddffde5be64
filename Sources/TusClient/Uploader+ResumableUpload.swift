import TusHTTP1
import TusCrypto
import Glibc

/// Which wire format `Uploader` speaks: tus 1.0.0 or the IETF draft at one interop version.
public enum UploadProtocol: Sendable, Equatable {
    case tus
    case ietf(ResumableUploadDraft)
}

/// `tus-cli upload --protocol ietf`: the same promises as the tus path (remembered per file, resumed on the next
/// run, retried with backoff), in the draft's requests. The creation request carries the file (or its first
/// chunk), so the URL is first known from its 104: it is remembered the moment the 104 arrives, and a run killed
/// in the middle of that body resumes from the server's offset like one killed between appends.
extension Uploader {
    func uploadResumable(
        file path: String, to endpoint: TusURL, draft: ResumableUploadDraft
    ) throws(TusClientError) -> TusURL {
        let absolute = Self.absolutePath(path)
        let size = try Self.fileSize(absolute)
        // Keyed apart from tus records: a tus upload of the same file is another upload.
        let key = try Self.fingerprint(path: absolute, size: size, endpoint: endpoint, protocolName: "ietf")
        let store = ResumeStore(directory: options.cacheDirectory ?? ResumeStore.defaultDirectory())
        var failures = 0
        var uploadURL: TusURL? = nil
        var offset: Int64 = 0
        var isComplete = false

        if options.resume, let remembered = store.lookup(key), let url = try? TusURL(string: remembered) {
            do {
                let state = try client.resumableUploadState(url, draft: draft)
                if let length = state.length, length != size {
                    onMessage?("remembered upload \(url) has length \(length), file has \(size): starting a new upload")
                    store.forget(key)
                } else {
                    uploadURL = url
                    offset = state.offset
                    isComplete = state.isComplete
                    onMessage?("resuming \(url) at byte \(offset) of \(size)")
                }
            } catch .server(let status, _) where [403, 404, 410].contains(status) {
                onMessage?("remembered upload \(url) is gone (\(status)): starting a new upload")
                store.forget(key)
            }
        }

        let total = size
        let progress = onProgress
        while true {
            do throws(TusClientError) {
                try checkUnchanged(absolute, size: size)
                if uploadURL == nil {
                    let first = min(size, options.chunkSize ?? size)
                    let announced = AnnouncedURL()
                    let sent = Counter()
                    do {
                        let creation = try client.createResumableUpload(
                            at: endpoint, draft: draft,
                            body: first > 0 ? FileRange(path: absolute, offset: 0, length: first) : nil,
                            complete: first == size, length: size,
                            representationHeaders: representationHeaders(absolute),
                            onLocation: { url in
                                announced.value = url
                                store.remember(key, url: url.description)
                            },
                            onSent: { count in
                                progress?(UploadProgress(offset: sent.add(Int64(count)), total: total))
                            })
                        uploadURL = creation.state.url
                        offset = creation.state.offset
                        isComplete = creation.state.isComplete
                        store.remember(key, url: creation.state.url.description)
                        onMessage?("created \(creation.state.url)")
                    } catch {
                        if let url = announced.value {
                            uploadURL = url
                            onMessage?("created \(url) (announced by 104 before the request failed)")
                        }
                        throw error
                    }
                }
                guard let url = uploadURL else { continue }
                if isComplete {
                    guard offset == size else {
                        throw TusClientError.protocolViolation("upload complete at \(offset) bytes, file has \(size)")
                    }
                    onProgress?(UploadProgress(offset: size, total: size))
                    store.forget(key)
                    return url
                }
                guard offset <= size else {
                    throw TusClientError.protocolViolation("server holds \(offset) bytes, file has \(size)")
                }
                // All bytes stored but the completion not recorded (cut after the last byte): an empty completing
                // append finishes it.
                let length = min(size - offset, options.chunkSize ?? (size - offset))
                let base = offset
                let sent = Counter()
                let state = try client.appendResumableUpload(
                    url, draft: draft, offset: offset,
                    range: length > 0 ? FileRange(path: absolute, offset: offset, length: length) : nil,
                    complete: offset + length == size,
                    onSent: { count in progress?(UploadProgress(offset: base + sent.add(Int64(count)), total: total)) })
                guard state.offset >= offset, state.offset <= size, state.offset > offset || state.isComplete else {
                    throw TusClientError.protocolViolation("server moved the offset from \(offset) to \(state.offset)")
                }
                offset = state.offset
                isComplete = state.isComplete
                failures = 0
                onProgress?(UploadProgress(offset: offset, total: size))
            } catch let error where error.isRetryable {
                failures += 1
                guard failures <= options.retries else { throw error }
                let delay = options.backoff.delay(afterFailures: failures)
                onMessage?("\(error); retry \(failures)/\(options.retries) in \(Double(delay) / 1000) s")
                usleep(UInt32(min(delay * 1000, UInt64(UInt32.max))))
                if let url = uploadURL, let state = try? client.resumableUploadState(url, draft: draft) {
                    offset = state.offset
                    isComplete = state.isComplete
                }
            } catch .fileChanged(let message) {
                store.forget(key)
                throw .fileChanged("\(message); run again to start a new upload")
            } catch {
                throw error
            }
        }
    }

    /// The draft has no `Upload-Metadata`: the representation's own fields carry the name and type (C21), from
    /// `filename`/`filetype` metadata when given, else from the path.
    func representationHeaders(_ path: String) -> HTTPHeaders {
        let name =
            options.metadata.first { $0.key == "filename" }?.value ?? String(path.split(separator: "/").last ?? "")
        let type = options.metadata.first { $0.key == "filetype" }?.value ?? MediaType.guess(forFileName: name)
        var headers: HTTPHeaders = ["Content-Type": type]
        headers.add("Content-Disposition", Self.contentDisposition(filename: name))
        return headers
    }

    /// `inline` (the draft, -10 on, recommends it for uploads) with the name as a quoted-string when it is plain
    /// ASCII, else as RFC 8187 `filename*` (percent-encoded UTF-8).
    static func contentDisposition(filename: String) -> String {
        let plain = filename.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }
        if plain { return "inline; filename=\"\(filename)\"" }
        let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
        let encoded = filename.utf8.map { byte in
            unreserved.contains(byte) ? String(UnicodeScalar(byte)) : "%" + Hex.encode([byte]).uppercased()
        }.joined()
        return "inline; filename*=UTF-8''\(encoded)"
    }
}

/// The URL a 104 announced, set on the loop thread and read by the caller after the request returned.
final class AnnouncedURL: @unchecked Sendable {
    var value: TusURL?
}
