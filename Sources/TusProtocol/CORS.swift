import TusHTTP1

/// CORS, so browser clients (tus-js-client, Uppy) can talk to the server from another origin.
///
/// Headers are added only when the request has an `Origin` that is allowed: a response to a non-browser
/// client stays small, and a disallowed origin learns nothing. `Vary: Origin` is sent whenever the answer
/// depends on the origin, so caches do not hand one origin's grant to another.
extension TusHandler {
    static let corsAllowedMethods = "POST, HEAD, PATCH, OPTIONS, GET, DELETE"
    static let corsAllowedHeaders =
        "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, Content-Type, "
        + "Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, Upload-Defer-Length, Upload-Concat, "
        + "Upload-Checksum, Upload-Draft-Interop-Version, Upload-Complete, Upload-Incomplete, Content-Digest, "
        + "Repr-Digest"
    static let corsExposedHeaders =
        "Location, Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Metadata, Upload-Concat, "
        + "Upload-Expires, Tus-Version, Tus-Resumable, Tus-Max-Size, Tus-Extension, Tus-Checksum-Algorithm, "
        + "X-Request-ID, WWW-Authenticate, Upload-Draft-Interop-Version, Upload-Complete, Upload-Incomplete, "
        + "Upload-Limit"

    /// The `Access-Control-Allow-Origin` value for this request, or nil when CORS does not apply.
    func allowedOrigin(_ request: TusRequest) -> String? {
        Self.allowedOrigin(request.head, configuration: configuration)
    }

    static func allowedOrigin(_ head: RequestHead, configuration: TusConfiguration) -> String? {
        guard let origin = head.headers["Origin"], !origin.isEmpty else { return nil }
        let anyOrigin = configuration.corsOrigins == nil || configuration.corsOrigins!.contains("*")
        if anyOrigin { return configuration.corsAllowCredentials ? origin : "*" }
        return configuration.corsOrigins!.contains(origin) ? origin : nil
    }

    func addCORSHeaders(_ request: TusRequest, to headers: inout HTTPHeaders) {
        Self.addCORSHeaders(request.head, configuration: configuration, to: &headers)
    }

    /// Also for the draft adapter's responses (same origins, same exposed fields).
    static func addCORSHeaders(_ head: RequestHead, configuration: TusConfiguration, to headers: inout HTTPHeaders) {
        guard head.headers["Origin"] != nil else { return }
        let allowed = allowedOrigin(head, configuration: configuration)
        if allowed != "*" { headers.set("Vary", "Origin") }
        guard let allowed else { return }
        headers.set("Access-Control-Allow-Origin", allowed)
        if configuration.corsAllowCredentials { headers.set("Access-Control-Allow-Credentials", "true") }
        headers.set("Access-Control-Expose-Headers", Self.corsExposedHeaders)
    }

    /// Extra headers for a preflight (`OPTIONS` with `Access-Control-Request-Method`).
    func addPreflightHeaders(_ request: TusRequest, to headers: inout HTTPHeaders) {
        guard request.head.headers["Access-Control-Request-Method"] != nil, allowedOrigin(request) != nil else {
            return
        }
        headers.add("Access-Control-Allow-Methods", Self.corsAllowedMethods)
        headers.add("Access-Control-Allow-Headers", Self.corsAllowedHeaders)
        headers.add("Access-Control-Max-Age", "86400")
    }
}
