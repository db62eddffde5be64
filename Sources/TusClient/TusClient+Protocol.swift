import TusHTTP1
public import TusCrypto
import TusLoop
import Dispatch
import Glibc

/// One method per tus request. Each checks that the answer comes from a tus server and turns unexpected
/// statuses into `TusClientError.server` with the body text as message.
extension TusClient {
    public static let tusVersion = "1.0.0"

    private var tusHeaders: HTTPHeaders { ["Tus-Resumable": Self.tusVersion] }

    public func options(_ url: TusURL) throws(TusClientError) -> ServerCapabilities {
        let response = try perform(.OPTIONS, url)
        try Self.expect(response, [200, 204])
        guard let versions = response.headers["Tus-Version"] else {
            throw .notTusServer("OPTIONS \(url) answered without Tus-Version")
        }
        func list(_ name: String) -> [String] {
            (response.headers[name] ?? "").split(separator: ",").map { String($0.trimmingOWS()) }
                .filter { !$0.isEmpty }
        }
        return ServerCapabilities(
            versions: list("Tus-Version").isEmpty ? [versions] : list("Tus-Version"),
            extensions: list("Tus-Extension"),
            maxSize: response.headers["Tus-Max-Size"].flatMap { Int64($0) },
            checksumAlgorithms: list("Tus-Checksum-Algorithm"))
    }

    /// `Upload-Metadata`: keys as given, values base64; an empty value sends the bare key.
    static func encodeMetadata(_ metadata: [(key: String, value: String)]) -> String {
        metadata.map { pair in
            pair.value.isEmpty ? pair.key : "\(pair.key) \(Base64.encode(Array(pair.value.utf8)))"
        }.joined(separator: ",")
    }

    /// POST (creation). `length` nil defers it. `concat` is sent as `Upload-Concat` (`partial` for a piece of a
    /// parallel upload). With `upload`, the first bytes go in the same request
    /// (creation-with-upload). Returns the upload URL and the offset the server reports (0 without a body).
    public func create(
        at url: TusURL, length: Int64?, metadata: [(key: String, value: String)] = [], upload: FileRange? = nil,
        concat: String? = nil, onSent: (@Sendable (Int) -> Void)? = nil
    ) throws(TusClientError) -> (url: TusURL, offset: Int64) {
        var headers = tusHeaders
        if let length { headers.add("Upload-Length", String(length)) } else { headers.add("Upload-Defer-Length", "1") }
        if let concat { headers.add("Upload-Concat", concat) }
        if !metadata.isEmpty { headers.add("Upload-Metadata", Self.encodeMetadata(metadata)) }
        var body = Body.none
        if let upload {
            headers.add("Content-Type", "application/offset+octet-stream")
            body = .file(upload, onSent: onSent)
        }
        let response = try perform(.POST, url, headers: headers, body: body)
        try Self.expect(response, [201])
        guard let location = response.headers["Location"] else {
            throw .protocolViolation("201 Created without a Location header")
        }
        let uploadURL = try url.resolving(location)
        let offset = response.headers["Upload-Offset"].flatMap { Int64($0) } ?? 0
        return (uploadURL, offset)
    }

    public func head(_ url: TusURL) throws(TusClientError) -> UploadStatus {
        var headers = tusHeaders
        headers.add("Cache-Control", "no-store")
        let response = try perform(.HEAD, url, headers: headers)
        try Self.expect(response, [200, 204])
        guard let offsetText = response.headers["Upload-Offset"], let offset = Int64(offsetText), offset >= 0 else {
            throw .protocolViolation("HEAD answered without a valid Upload-Offset")
        }
        return UploadStatus(
            offset: offset, length: response.headers["Upload-Length"].flatMap { Int64($0) },
            metadata: response.headers["Upload-Metadata"])
    }

    /// PATCH `range` of a file at `offset`. `declareLength` sets Upload-Length on a deferred upload. Returns the
    /// new offset; a 460 (checksum mismatch) is a `.server(460, ...)` error.
    public func patch(
        _ url: TusURL, offset: Int64, range: FileRange, checksum: DigestAlgorithm? = nil, declareLength: Int64? = nil,
        onSent: (@Sendable (Int) -> Void)? = nil
    ) throws(TusClientError) -> Int64 {
        var headers = tusHeaders
        headers.add("Upload-Offset", String(offset))
        headers.add("Content-Type", "application/offset+octet-stream")
        if let declareLength { headers.add("Upload-Length", String(declareLength)) }
        let response = try perform(.PATCH, url, headers: headers, body: .file(range, checksum: checksum, onSent: onSent))
        try Self.expect(response, [204, 200])
        guard let newOffset = response.headers["Upload-Offset"].flatMap({ Int64($0) }) else {
            throw .protocolViolation("PATCH answered without Upload-Offset")
        }
        return newOffset
    }

    public func delete(_ url: TusURL) throws(TusClientError) {
        let response = try perform(.DELETE, url, headers: tusHeaders)
        try Self.expect(response, [204, 200])
    }

    /// GET the upload's bytes into `path`. If `path` already holds bytes and `resume`, asks for the rest with
    /// `Range`; a 200 answer (range ignored) rewrites the file from the start. Returns the file's final size.
    @discardableResult
    public func download(
        _ url: TusURL, to path: String, resume: Bool = true, onReceived: (@Sendable (Int64) -> Void)? = nil
    ) throws(TusClientError) -> Int64 {
        var existing: Int64 = 0
        var info = stat()
        if resume, stat(path, &info) == 0 { existing = Int64(info.st_size) }
        var headers = tusHeaders
        if existing > 0 { headers.add("Range", "bytes=\(existing)-") }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw .localIO("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let writer = DownloadWriter(descriptor: descriptor)
        let response: HTTPClientResponse
        do {
            response = try perform(
                .GET, url, headers: headers,
                responseBody: .stream { head, bytes, resume in
                    writer.append(bytes, base: head.status.code == 206 ? existing : 0)
                    onReceived?(writer.position)
                    resume()
                })
        } catch {
            throw error
        }
        if response.statusCode == 416, existing > 0 {
            // Asked past the end: the file is already complete (or longer than the upload).
            return existing
        }
        try Self.expect(response, [200, 206])
        if let error = writer.error { throw .localIO("write \(path): \(error)") }
        if response.statusCode == 200 { ftruncate(descriptor, off_t(writer.written)) }
        return response.statusCode == 206 ? existing + writer.written : writer.written
    }

    /// Throws unless `response.statusCode` is one of `accepted`, checking first that a tus server answered.
    static func expect(_ response: HTTPClientResponse, _ accepted: [Int]) throws(TusClientError) {
        let isTus = response.headers.contains("Tus-Resumable") || response.headers.contains("Tus-Version")
        if accepted.contains(response.statusCode) {
            guard isTus else {
                throw .notTusServer(
                    "the answer (\(response.status)) has no Tus-Resumable header; is the URL a tus endpoint?")
            }
            return
        }
        let text = String(String(decoding: response.body.prefix(300), as: UTF8.self).trimming { "\n\r ".contains($0) })
        if !isTus && (response.statusCode == 404 || response.statusCode == 405) {
            throw .notTusServer("\(response.status) without Tus-Resumable; is the URL a tus endpoint?")
        }
        throw .server(status: response.statusCode, message: text)
    }
}

/// Writes a streamed GET body; the first chunk decides between appending (206) and rewriting (200).
private final class DownloadWriter: @unchecked Sendable {
    let descriptor: Int32
    var written: Int64 = 0
    var position: Int64 = 0
    var error: String?

    init(descriptor: Int32) { self.descriptor = descriptor }

    func append(_ bytes: [UInt8], base: Int64) {
        guard error == nil else { return }
        let at = base + written
        let count = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(at)) }
        if count != bytes.count {
            error = String(cString: strerror(errno))
            return
        }
        written += Int64(count)
        position = at + Int64(count)
    }
}
