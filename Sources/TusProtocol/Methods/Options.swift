import TusHTTP1

extension TusHandler {
    /// Capabilities, on any path and whatever `Tus-Resumable` says (spec: the server MUST ignore it here),
    /// because browsers preflight upload URLs too.
    func handleOptions(_ request: TusRequest) {
        var headers: HTTPHeaders = ["Tus-Version": Self.version]
        let extensions = extensions
        if !extensions.isEmpty { headers.add("Tus-Extension", extensions.joined(separator: ",")) }
        if let maxSize = configuration.maxSize { headers.add("Tus-Max-Size", String(maxSize)) }
        if checksumEnabled {
            headers.add("Tus-Checksum-Algorithm", configuration.checksumAlgorithms.map(\.rawValue).joined(separator: ","))
        }
        addPreflightHeaders(request, to: &headers)
        send(request, HTTPResponse(status: .noContent, headers: headers))
    }
}
