import TusHTTP1

extension TusHandler {
    /// Answers from the store's in-memory state and never waits for the upload's lock: a client resuming
    /// after a dropped connection must learn the offset even while the dead PATCH still holds the upload.
    /// (An unfinished final is the exception: the first HEAD after its last partial completed assembles it.)
    func handleHead(_ request: TusRequest, id: String) {
        withUpload(request, id: id) { [self] info in
            guard !info.isFinal || info.isComplete else { return headFinal(request, info: info) }
            respondHead(request, info: info)
        }
    }

    func respondHead(_ request: TusRequest, info: UploadInfo) {
        var headers: HTTPHeaders = ["Upload-Offset": String(info.offset), "Cache-Control": "no-store"]
        if let length = info.length {
            headers.add("Upload-Length", String(length))
        } else {
            headers.add("Upload-Defer-Length", "1")
        }
        if let metadata = info.metadata { headers.add("Upload-Metadata", metadata) }
        if let concat = info.concat { headers.add("Upload-Concat", concat) }
        addExpiry(info, to: &headers)
        send(request, HTTPResponse(status: .ok, headers: headers))
    }
}
