import TusHTTP1

extension TusClient {
    /// POST `Upload-Concat: final;<url> <url> ...` (concatenation): the final upload made of `partials`, in order.
    /// It carries no length (the server adds the partials' up) and the metadata for the whole file.
    public func createFinal(
        at url: TusURL, partials: [TusURL], metadata: [(key: String, value: String)] = []
    ) throws(TusClientError) -> TusURL {
        var headers: HTTPHeaders = ["Tus-Resumable": Self.tusVersion]
        headers.add("Upload-Concat", "final;" + partials.map(\.description).joined(separator: " "))
        if !metadata.isEmpty { headers.add("Upload-Metadata", Self.encodeMetadata(metadata)) }
        let response = try perform(.POST, url, headers: headers)
        try Self.expect(response, [201])
        guard let location = response.headers["Location"] else {
            throw .protocolViolation("201 Created without a Location header")
        }
        return try url.resolving(location)
    }
}
