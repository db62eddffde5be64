public import TusHTTP1

/// The draft-ietf-httpbis-resumable-upload adapter ("Resumable Uploads for HTTP", interop versions 3 to 9): maps
/// each request to an `UploadService` call and the result to the version's response, beside the tus 1.0.0 adapter
/// on the same base path. `TusHandler` hands it every request that carries `Upload-Draft-Interop-Version` (rows
/// D1-D4); the rules per version are rows of `DraftInteropVersion.all`, the test plan docs/IETF-RESUMABLE-UPLOAD.md.
///
/// Upload state is version-free: the engine's length and offset say everything the draft asks (an upload is
/// complete when its offset reached its length; a request with `Upload-Complete: ?1` fixes the length where its
/// body ends), so an upload created under one version (or by tus) is resumed under another.
///
/// Threading: as `TusHandler`.
public final class DraftUploadHandler: Sendable {
    public static let interopVersionField = "Upload-Draft-Interop-Version"

    public let service: UploadService
    var configuration: TusConfiguration { service.configuration }

    public init(service: UploadService) {
        self.service = service
    }

    /// Fields that carry one value: sent twice, a request is ambiguous and refused (as tus's `SingletonFields`).
    static let singletonFields = [
        interopVersionField, "Upload-Offset", "Upload-Complete", "Upload-Incomplete", "Upload-Length", "Content-Type",
        "Content-Digest",
    ]

    /// Bit n set: some singleton field's name is n bytes long (all are shorter than 64).
    private static let singletonLengths: UInt64 = singletonFields.reduce(0) { $0 | 1 << $1.utf8.count }

    /// The first of `singletonFields` (in their order) on more than one field line: one pass over the fields,
    /// nothing allocated, since every request of the draft asks.
    static func repeatedSingleton(in headers: HTTPHeaders) -> String? {
        var seen = 0, repeated = 0
        for field in headers {
            // Most fields are ruled out by their length alone, before any name is compared.
            let length = field.name.utf8.count
            guard length < 64, singletonLengths & (1 << length) != 0 else { continue }
            guard let index = singletonFields.firstIndex(where: { field.name.equalsIgnoringASCIICase($0) }) else {
                continue
            }
            if seen & (1 << index) != 0 { repeated |= 1 << index }
            seen |= 1 << index
        }
        guard repeated != 0 else { return nil }
        return singletonFields[repeated.trailingZeroBitCount]
    }

    public func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        let field = head.headers[Self.interopVersionField] ?? ""
        guard let version = DraftInteropVersion.named(field[...]) else {
            // Row D3: no 104 for a version we do not serve, nothing created or changed.
            let supported = DraftInteropVersion.supportedNumbers.map(String.init).joined(separator: ", ")
            var response = Self.problem(
                .badRequest, type: nil, title: "unsupported \(Self.interopVersionField)",
                detail: "this server serves interop versions \(supported)",
                members: ["supported-versions": "[\(supported)]"])
            response.headers.add("X-Content-Type-Options", "nosniff")
            if head.method == .HEAD { response.body = [] }
            return exchange.respond(response)
        }
        let request = DraftRequest(head: head, exchange: exchange, version: version)
        if let name = Self.repeatedSingleton(in: head.headers) {
            return fail(request, .badRequest, "\(name) given more than once")
        }
        if head.method == .OPTIONS { return handleOptions(request) }
        guard let authorizer = service.authorizer else { return dispatch(request) }
        authorizer.authorize(head, on: exchange.executor) { [self] result in
            switch result {
            case .granted(let grant):
                var request = request
                request.grant = grant
                dispatch(request)
            case .denied(let challenge):
                send(request, HTTPResponse(status: HTTPStatus(code: 401), headers: ["WWW-Authenticate": challenge]))
            }
        }
    }

    private func dispatch(_ request: DraftRequest) {
        let method = request.head.method
        switch (TusHandler.route(request.head.path, basePath: configuration.basePath), method) {
        case (.outside, _): fail(request, .notFound, "not an upload URL of this server")
        case (.creation, .POST), (.creation, .PUT), (.creation, .PATCH): handleCreation(request)
        case (.creation, _):
            fail(request, .methodNotAllowed, "uploads are created with POST", headers: ["Allow": "POST, PUT, OPTIONS"])
        case (.upload(let id), .HEAD): handleOffsetRetrieval(request, id: id)
        case (.upload(let id), .GET) where request.version.retrievesWithGet: handleOffsetRetrieval(request, id: id)
        case (.upload(let id), .PATCH): handleAppend(request, id: id)
        case (.upload(let id), .DELETE): handleCancellation(request, id: id)
        case (.upload, _):
            let allow =
                request.version.retrievesWithGet ? "HEAD, GET, PATCH, DELETE, OPTIONS" : "HEAD, PATCH, DELETE, OPTIONS"
            fail(request, .methodNotAllowed, "an upload answers HEAD, PATCH and DELETE", headers: ["Allow": allow])
        }
    }

    // MARK: Responses

    /// The one exit for responses: every answer names the interop version (row D6) and strips bodies from HEAD.
    func send(_ request: DraftRequest, _ response: HTTPResponse) {
        var response = response
        response.headers.set(Self.interopVersionField, String(request.version.number))
        response.headers.set("X-Content-Type-Options", "nosniff")
        TusHandler.addCORSHeaders(request.head, configuration: configuration, to: &response.headers)
        if request.head.method == .HEAD { response.body = [] }
        request.exchange.respond(response)
    }

    /// A 104 with the request's interop version (row D5). `HTTPExchange` drops it for HTTP/1.0 (row D8).
    func sendInformational(_ request: DraftRequest, _ headers: HTTPHeaders) {
        var headers = headers
        headers.set(Self.interopVersionField, String(request.version.number))
        request.exchange.sendInformational(HTTPResponse(status: .uploadResumptionSupported, headers: headers))
    }

    /// An error as `application/problem+json` (RFC 9457): with the draft's problem type when the version names it,
    /// `about:blank` otherwise.
    func fail(
        _ request: DraftRequest, _ status: HTTPStatus, _ detail: String, problem: DraftProblemType? = nil,
        headers: HTTPHeaders = [:], members: [String: String] = [:], closeConnection: Bool = false,
        code: String? = nil
    ) {
        let type = problem.flatMap { request.version.problemTypes.contains($0) ? $0 : nil }
        var response = Self.problem(status, type: type, title: status.reason, detail: detail, members: members)
        for field in headers { response.headers.set(field.name, field.value) }
        response.closeConnection = closeConnection
        measureError(request, status: status, code: code ?? type?.rawValue)
        send(request, response)
    }

    /// Counted under the draft's label (`tus_errors_by_protocol_total`): its problem type, the tus code of a
    /// service failure tus would report the same way, or else the status's reason (`bad-request`).
    func measureError(_ request: DraftRequest, status: HTTPStatus, code: String?) {
        let code = code ?? status.reason.lowercased().split(separator: " ").joined(separator: "-")
        service.events.measure(
            .protocolError(.ietfDraft(interopVersion: request.version.number), status: status.code, code: code),
            on: request.exchange.executor)
    }

    static func problem(
        _ status: HTTPStatus, type: DraftProblemType?, title: String, detail: String, members: [String: String]
    ) -> HTTPResponse {
        var json = "{\"type\":\"\(type?.uri ?? "about:blank")\",\"status\":\(status.code)"
        json += ",\"title\":\(jsonString(title)),\"detail\":\(jsonString(detail))"
        // Members are numbers or arrays written by this file, never client text.
        for (name, value) in members.sorted(by: { $0.key < $1.key }) { json += ",\(jsonString(name)):\(value)" }
        json += "}"
        return HTTPResponse(
            status: status, headers: ["Content-Type": "application/problem+json"], body: Array(json.utf8))
    }

    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20:
                out +=
                    "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// A service error in the draft's words (rows R6, A11-A17, C19); what tus answers for the rest (lock, store, hook).
    func fail(
        _ request: DraftRequest, because error: UploadServiceError, headers: HTTPHeaders = [:],
        closeConnection: Bool = false
    ) {
        var headers = headers
        switch error {
        case .notFound, .gone:
            fail(request, .notFound, "no such upload", headers: headers, closeConnection: closeConnection)
        case .tooLarge:
            if let limit = uploadLimit(request, upload: nil) { headers.set("Upload-Limit", limit) }
            fail(
                request, .payloadTooLarge, "larger than this server's max-size", headers: headers,
                closeConnection: closeConnection)
        case .exceedsLength, .lengthMismatch, .lengthAlreadySet, .lengthBelowOffset:
            fail(
                request, .badRequest, "the request does not agree with the upload's length",
                problem: .inconsistentUploadLength, headers: headers, closeConnection: closeConnection)
        case .finalNotWritable:
            fail(
                request, .badRequest, "a concatenated upload takes no appends", headers: headers,
                closeConnection: closeConnection)
        case .checksumMismatch:
            fail(
                request, .badRequest, "the content does not match its digest: none of it was kept", headers: headers,
                closeConnection: closeConnection)
        case .notOffered:
            fail(request, .methodNotAllowed, "not offered by this server", headers: headers)
        case .rejected(_, let override), .stopped(let override):
            let tusError = TusHandler.tusError(error)
            var response = Self.problem(
                tusError.status, type: nil, title: tusError.status.reason, detail: tusError.message, members: [:])
            for field in headers { response.headers.set(field.name, field.value) }
            response.apply(override)
            response.closeConnection = closeConnection || response.closeConnection
            measureError(request, status: response.status, code: tusError.code)
            send(request, response)
        default:
            // Lock, store, hook and body failures: the same status tus gives them.
            let tusError = TusHandler.tusError(error)
            if tusError.asksToRetrySoon { headers.set("Retry-After", "1") }
            fail(
                request, tusError.status, tusError.message, headers: headers, closeConnection: closeConnection,
                code: tusError.code)
        }
    }

    // MARK: Shared pieces

    /// `Upload-Limit` (row L1) for the version, from the server's settings: `max-size` from `--max-size` (lowered by a
    /// token's cap), the lifetime from `--expiration` (what is left of `upload`'s, or a new upload's whole). No
    /// append-size limits: the server has none. nil for versions without limits.
    func uploadLimit(_ request: DraftRequest, upload: UploadInfo?) -> String? {
        guard request.version.sendsLimits else { return nil }
        // Written straight into one string (no list of items to join): every creation answer carries it twice.
        var value = ""
        if let maxSize = service.maxUploadLength(callerCap: request.grant?.maxUploadLength) {
            value = "max-size=" + String(maxSize)
        }
        if let key = request.version.lifetimeKey, configuration.expirationSeconds > 0 {
            var lifetime: Int64?
            if let upload {
                if !upload.isComplete, let expiresAt = upload.expiresAt { lifetime = max(0, expiresAt - service.now()) }
            } else {
                lifetime = configuration.expirationSeconds
            }
            if let lifetime { value += (value.isEmpty ? "" : ", ") + key + "=" + String(lifetime) }
        }
        // Never empty (row L2): an empty dictionary would say nothing at all.
        return value.isEmpty ? "min-size=0" : value
    }

    /// The version's completion field for an upload that is (or is not) complete.
    func completionHeader(_ request: DraftRequest, isComplete: Bool) -> (String, String) {
        switch request.version.completionField {
        case .uploadIncomplete: ("Upload-Incomplete", isComplete ? "?0" : "?1")
        case .uploadComplete: ("Upload-Complete", isComplete ? "?1" : "?0")
        }
    }

    /// Whether the request says it ends the upload: `.failure` for a malformed field or a required one missing.
    /// `Upload-Incomplete` (v3) absent means complete, as `Upload-Complete` absent does before v7.
    func requestCompletes(_ request: DraftRequest, required: Bool) -> Result<Bool, DraftFieldError> {
        let headers = request.head.headers
        switch request.version.completionField {
        case .uploadIncomplete:
            guard let text = headers["Upload-Incomplete"] else { return .success(true) }
            guard let incomplete = StructuredField.boolean(text[...]) else {
                return .failure(DraftFieldError("Upload-Incomplete must be ?1 or ?0"))
            }
            return .success(!incomplete)
        case .uploadComplete:
            guard let text = headers["Upload-Complete"] else {
                return required ? .failure(DraftFieldError("Upload-Complete is required")) : .success(true)
            }
            guard let complete = StructuredField.boolean(text[...]) else {
                return .failure(DraftFieldError("Upload-Complete must be ?1 or ?0"))
            }
            return .success(complete)
        }
    }

    /// `Upload-Length` where the version has it: nil when absent, `.failure` when malformed.
    func declaredLength(_ request: DraftRequest) -> Result<Int64?, DraftFieldError> {
        guard request.version.hasUploadLength, let text = request.head.headers["Upload-Length"] else {
            return .success(nil)
        }
        guard let length = StructuredField.integer(text[...]) else {
            return .failure(DraftFieldError("Upload-Length must be a non-negative integer"))
        }
        return .success(length)
    }

    /// `Content-Digest` where the version verifies it and the store can roll an append back: nil when there is none
    /// or it names no algorithm we hash (row G4).
    ///
    /// A request whose content is the whole representation (it starts at 0 and completes the upload) is checked
    /// against `Repr-Digest` too, when it has no `Content-Digest` (row G1 for uploads made in one request; one sent
    /// in several requests is checked over the stored bytes when it completes: `representationCheck`).
    func contentDigest(
        _ request: DraftRequest, carriesWholeRepresentation: Bool
    ) -> Result<UploadChecksum?, DraftFieldError> {
        guard request.version.verifiesContentDigest, service.capabilities.contains(.discardableWrites) else {
            return .success(nil)
        }
        var field = "Content-Digest"
        var text = request.head.headers[field]
        if text == nil, carriesWholeRepresentation {
            field = "Repr-Digest"
            text = request.head.headers[field]
        }
        guard let text else { return .success(nil) }
        switch StructuredField.digest(text[...]) {
        case nil: return .success(nil)
        case .success(let checksum): return .success(checksum)
        case .failure: return .failure(DraftFieldError("\(field) is malformed"))
        }
    }

    func location(_ request: DraftRequest, id: String) -> String {
        UploadLocation.make(
            id: id, head: request.head, isSecure: request.exchange.isSecure, configuration: configuration)
    }

    /// Progress 104s with `Upload-Offset` for versions that define them (rows C6, A19), never with `Location`;
    /// the service calls this at most once per progress interval.
    func progressReporter(_ request: DraftRequest) -> ((Int64) -> Void)? {
        guard request.version.sendsProgress else { return nil }
        return { [self] offset in sendInformational(request, ["Upload-Offset": String(offset)]) }
    }
}

struct DraftFieldError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// One request as the draft adapter sees it.
struct DraftRequest {
    let head: RequestHead
    let exchange: any HTTPExchange
    let version: DraftInteropVersion
    var grant: AccessGrant?

    init(head: RequestHead, exchange: any HTTPExchange, version: DraftInteropVersion) {
        self.head = head
        self.exchange = exchange
        self.version = version
    }

    var caller: UploadCaller {
        UploadCaller(
            executor: exchange.executor, principal: grant?.subject, maxUploadLength: grant?.maxUploadLength,
            method: head.method, uploadProtocol: .ietfDraft(interopVersion: version.number),
            describe: { [self] in eventRequest })
    }

    var eventRequest: EventRequest {
        EventRequest(
            method: head.method, uri: head.target, remoteAddress: exchange.remoteAddress ?? "", headers: head.headers,
            requestID: head.headers["X-Request-ID"] ?? "", principal: grant?.subject,
            uploadProtocol: .ietfDraft(interopVersion: version.number))
    }
}
