import TusHTTP1

extension TusHandler {
    /// `UploadService.status` in tus's words. It never waits for the upload's lock, so a client resuming after a
    /// dropped connection learns the offset even while the dead PATCH still holds the upload.
    func handleHead(_ request: TusRequest, id: String) {
        service.status(of: id, for: request.caller) { [self] status in
            switch status {
            case .failure(let error): fail(request, because: error)
            case .success(.upload(let info)): respondHead(request, info: info)
            case .success(.unfinishedFinal(let info, let length, let expiresAt)):
                // concatenation-unfinished: no `Upload-Offset` (SHOULD NOT), `Upload-Length` once computable.
                var headers: HTTPHeaders = ["Cache-Control": "no-store"]
                if let length { headers.add("Upload-Length", String(length)) }
                if let metadata = info.metadata { headers.add("Upload-Metadata", metadata) }
                if let concat = info.concat { headers.add("Upload-Concat", concat) }
                addExpiry(expiresAt, to: &headers)
                send(request, HTTPResponse(status: .ok, headers: headers))
            }
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
