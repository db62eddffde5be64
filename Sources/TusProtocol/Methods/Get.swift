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
        service.download(id, for: request.caller) { [self] result in
            switch result {
            case .failure(let error): fail(request, because: error)
            case .success(let upload): serveDownload(request, info: upload)
            }
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
        service.read(id, first: first, count: count, for: request.caller) { [self] result in
            switch result {
            case .failure(let error): fail(request, because: error)
            case .success(let source):
                var response = HTTPResponse(status: status, headers: headers)
                addCommonHeaders(request, to: &response.headers)
                request.exchange.respond(response, bodyLength: count, source: source)
            }
        }
    }
}
