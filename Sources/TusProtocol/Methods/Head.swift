import TusHTTP1

extension TusHandler {
    /// Answers from the store's in-memory state and never waits for the upload's lock: a client resuming
    /// after a dropped connection must learn the offset even while the dead PATCH still holds the upload.
    func handleHead(_ request: TusRequest, id: String) {
        withUpload(request, id: id) { [self] info in
            var headers: HTTPHeaders = ["Upload-Offset": String(info.offset), "Cache-Control": "no-store"]
            if let length = info.length {
                headers.add("Upload-Length", String(length))
            } else {
                headers.add("Upload-Defer-Length", "1")
            }
            if let metadata = info.metadata { headers.add("Upload-Metadata", metadata) }
            addExpiry(info, to: &headers)
            send(request, HTTPResponse(status: .ok, headers: headers))
        }
    }
}
