import TusHTTP1

extension TusHandler {
    /// Downloads what is stored.
    ///
    /// An unfinished upload serves the bytes committed so far, so the body length always equals the
    /// `Upload-Offset` a HEAD would report at that moment (bytes written by a concurrent PATCH after that are
    /// not included). Single byte ranges are honoured (206/416). `Content-Type` and `Content-Disposition`
    /// come from the `filetype`/`filename` metadata, sanitized (see `DownloadHeaders`). No `Tus-Resumable`
    /// is required, since browsers cannot send it.
    func handleGet(_ request: TusRequest, id: String) {
        guard capabilities.contains(.download) else { return failMethodNotAllowed(request) }
        withUpload(request, id: id) { [self] info in
            guard !info.isFinal || info.isComplete else {
                // Assembled now if it can be; an unfinished final has no committed bytes yet.
                return service.resolveFinal(info, on: request.exchange.executor) { [self] resolved in
                    switch resolved {
                    case .failure(let error): fail(request, because: error)
                    case .success(.complete(let complete)): serveDownload(request, info: complete)
                    case .success(.unfinished): serveDownload(request, info: info)
                    }
                }
            }
            serveDownload(request, info: info)
        }
    }

    private func serveDownload(_ request: TusRequest, info: UploadInfo) {
        let id = info.id
        let available = info.offset
        let metadata = info.metadata.flatMap { UploadMetadata.parse($0) }
        let filetype = metadata?["filetype"].map { String(decoding: $0, as: UTF8.self) }
        let filename = metadata?["filename"].map { String(decoding: $0, as: UTF8.self) }
        let contentType = DownloadHeaders.contentType(filetype: filetype)
        var headers: HTTPHeaders = [
            "Content-Type": contentType,
            "Content-Disposition": DownloadHeaders.contentDisposition(
                filename: filename, isInline: contentType != "application/octet-stream"),
            "Accept-Ranges": "bytes",
            "Cache-Control": "no-store",
        ]
        var status = HTTPStatus.ok
        var first: Int64 = 0
        var count = available
        switch ByteRange.resolve(request.head.headers["Range"], length: available) {
        case .whole: break
        case .unsatisfiable:
            return fail(request, .rangeNotSatisfiable, headers: ["Content-Range": "bytes */\(available)"])
        case .partial(let rangeFirst, let rangeLast):
            status = .partialContent
            first = rangeFirst
            count = rangeLast - rangeFirst + 1
            headers.add("Content-Range", "bytes \(rangeFirst)-\(rangeLast)/\(available)")
        }
        store.openReader(id: id, on: request.exchange.executor) { [self] result in
            switch result {
            case .failure(let error): fail(request, Self.mapStoreError(error))
            case .success(let reader):
                var response = HTTPResponse(status: status, headers: headers)
                addCommonHeaders(request, to: &response.headers)
                request.exchange.respond(
                    response, bodyLength: count, source: UploadDownload(reader: reader, start: first, count: count))
            }
        }
    }
}

/// Feeds a download from an `UploadReader`, one piece per request from the connection.
final class UploadDownload: HTTPBodySource {
    private let reader: any UploadReader
    private var position: Int64
    private let end: Int64
    private var isClosed = false

    init(reader: any UploadReader, start: Int64, count: Int64) {
        self.reader = reader
        self.position = start
        self.end = start + count
    }

    struct ShortRead: Error {}

    func next(maxLength: Int, completion: @escaping (Result<BodyFragment?, any Error>) -> Void) {
        guard position < end else {
            close()
            return completion(.success(nil))
        }
        let wanted = Int(min(Int64(maxLength), end - position))
        reader.read(at: position, maxLength: wanted) { [self] result in
            switch result {
            case .failure(let error):
                close()
                completion(.failure(error))
            case .success(let fragment):
                guard fragment.count > 0 else {
                    close()
                    return completion(.failure(ShortRead()))
                }
                let fragment =
                    fragment.count > wanted
                    ? BodyFragment(chunk: fragment.chunk, range: fragment.range.lowerBound..<(fragment.range.lowerBound + wanted))
                    : fragment
                position += Int64(fragment.count)
                completion(.success(fragment))
            }
        }
    }

    func cancel() { close() }

    private func close() {
        guard !isClosed else { return }
        isClosed = true
        reader.close()
    }
}
