public import TusHTTP1
import TusCrypto

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The tus 1.0.0 server: routes each request by (overridden) method and path to one of the files in
/// `Methods/`. No sockets, no loop: everything arrives through `HTTPExchange`, so the same code runs
/// under the libuv server and under `FakeExchange` in tests.
///
/// Threading: one instance serves every loop. Its own state is immutable; shared mutable state lives in
/// the store and the locker, each behind its own mutex. Per-request state (`UploadAppend`) belongs to the
/// request's loop.
public final class TusHandler: HTTPRequestHandler {
    public static let version = "1.0.0"

    /// The upload engine this adapter speaks tus for: it owns the stores, locks, expiry and events.
    public let service: UploadService
    public var configuration: TusConfiguration { service.configuration }
    public var store: any UploadStore { service.store }
    public var locker: any UploadLocker { service.locker }
    public var events: any UploadEventHandler { service.events }
    public var authorizer: (any RequestAuthorizer)? { service.authorizer }
    var now: @Sendable () -> Int64 { service.now }

    public convenience init(
        configuration: TusConfiguration = TusConfiguration(), store: any UploadStore,
        locker: any UploadLocker = MemoryLocker(), events: any UploadEventHandler = NoUploadEvents(),
        authorizer: (any RequestAuthorizer)? = nil,
        now: @escaping @Sendable () -> Int64 = TusHandler.systemNow
    ) {
        self.init(
            service: UploadService(
                configuration: configuration, store: store, locker: locker, events: events, authorizer: authorizer,
                now: now))
    }

    /// The draft-ietf-httpbis-resumable-upload adapter on the same service and base path.
    public let draft: DraftUploadHandler

    public init(service: UploadService) {
        self.service = service
        self.draft = DraftUploadHandler(service: service)
    }

    @Sendable public static func systemNow() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec)
    }

    var capabilities: UploadStoreCapabilities { service.capabilities }

    /// `Tus-Extension`, computed from what the store and configuration actually support.
    public var extensions: [String] {
        var list = ["creation", "creation-with-upload", "creation-defer-length"]
        if capabilities.contains(.termination) { list.append("termination") }
        // A final may be created before its partials finish: completion is decided when somebody looks.
        if capabilities.contains(.concatenation) { list += ["concatenation", "concatenation-unfinished"] }
        // Trailers are decoded by the HTTP layer for every chunked body, so the trailer form comes with checksum.
        if checksumEnabled { list += ["checksum", "checksum-trailer"] }
        if configuration.expirationSeconds > 0 { list.append("expiration") }
        return list
    }

    var checksumEnabled: Bool {
        !configuration.checksumAlgorithms.isEmpty && capabilities.contains(.discardableWrites)
    }

    // MARK: Routing

    enum Route: Equatable {
        case creation
        case upload(String)
        case outside
    }

    func route(_ path: Substring) -> Route { Self.route(path, basePath: configuration.basePath) }

    static func route(_ path: Substring, basePath base: String) -> Route {
        if path == base || path == base.dropLast() { return .creation }
        guard path.hasPrefix(base) else { return .outside }
        let id = path.dropFirst(base.count)
        return UploadID.isValid(id) ? .upload(String(id)) : .outside
    }

    public func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        // The draft's requests are known by their interop version alone (rows D1-D4), even beside `Tus-Resumable`.
        if head.headers.contains(DraftUploadHandler.interopVersionField) {
            return draft.handle(head, exchange: exchange)
        }
        // Before anything reads a header: every later check would otherwise see only the first value.
        if let repeated = SingletonFields.firstRepeated(in: head.headers) {
            let request = TusRequest(head: head, exchange: exchange, method: head.method)
            return fail(request, .repeatedHeader, detail: repeated)
        }
        var method = head.method
        // "The actual method of the request MUST be ignored" (spec), whatever it is.
        if let override = head.headers["X-HTTP-Method-Override"] {
            guard let overridden = HTTPMethod(rawValue: override.trimmingOWS().uppercased()) else {
                let request = TusRequest(head: head, exchange: exchange, method: head.method)
                return fail(request, .methodNotAllowed)
            }
            method = overridden
        }
        var request = TusRequest(head: head, exchange: exchange, method: method)

        if method == .OPTIONS { return handleOptions(request) }
        guard let authorizer else { return dispatch(request) }
        authorizer.authorize(head, on: exchange.executor) { [self] result in
            switch result {
            case .granted(let grant):
                request.grant = grant
                dispatch(request)
            case .denied(let challenge):
                fail(request, .unauthorized, headers: ["WWW-Authenticate": challenge])
            }
        }
    }

    private func dispatch(_ request: TusRequest) {
        let head = request.head
        let method = request.method
        // GET serves browsers, which cannot send the header (tusd skips the check for GET as well).
        if method != .GET && head.headers["Tus-Resumable"].map({ String($0.trimmingOWS()) }) != Self.version {
            return fail(request, .unsupportedVersion)
        }
        switch (route(head.path), method) {
        case (.outside, _): fail(request, .notFound)
        case (.creation, .POST): handlePost(request)
        case (.creation, _): fail(request, .methodNotAllowed, headers: ["Allow": "POST, OPTIONS"])
        case (.upload(let id), .HEAD): handleHead(request, id: id)
        case (.upload(let id), .PATCH): handlePatch(request, id: id)
        case (.upload(let id), .DELETE): handleDelete(request, id: id)
        case (.upload(let id), .GET): handleGet(request, id: id)
        case (.upload, _): failMethodNotAllowed(request)
        }
    }

    /// 405 with the methods an upload URL answers here, which depend on what is offered.
    func failMethodNotAllowed(_ request: TusRequest) {
        var methods = ["HEAD", "PATCH"]
        if capabilities.contains(.download) { methods.append("GET") }
        if capabilities.contains(.termination) { methods.append("DELETE") }
        fail(request, .methodNotAllowed, headers: ["Allow": (methods + ["OPTIONS"]).joined(separator: ", ")])
    }

    // MARK: Shared helpers

    /// Headers every response describing an upload's progress carries.
    func addExpiry(_ info: UploadInfo, to headers: inout HTTPHeaders) {
        if !info.isComplete { addExpiry(info.expiresAt, to: &headers) }
    }

    /// `Upload-Expires` for an unfinished upload that expires at `expiresAt` (nil = never).
    func addExpiry(_ expiresAt: Int64?, to headers: inout HTTPHeaders) {
        if configuration.expirationSeconds > 0, let expiresAt {
            headers.add("Upload-Expires", HTTPDate.format(unixSeconds: expiresAt))
        }
    }

    /// `detail` (a header name, a value) is appended to the error's fixed message.
    func fail(
        _ request: TusRequest, _ error: TusError, headers: HTTPHeaders = [:], closeConnection: Bool = false,
        detail: String? = nil, override: ResponseOverride? = nil
    ) {
        var headers = headers
        if error == .unsupportedVersion { headers.add("Tus-Version", Self.version) }
        if error.asksToRetrySoon { headers.set("Retry-After", "1") }
        let text = "\(error.code): \(error.message)" + (detail.map { ": \($0)" } ?? "")
        var response = HTTPResponse(
            status: error.status, headers: headers, text: text,
            closeConnection: closeConnection)
        if let override { response.apply(override) }
        if request.isHead { response.body = [] }
        events.measure(.error(error), on: request.exchange.executor)
        send(request, response)
    }

    /// The one exit for responses: adds the headers every response carries and strips bodies from HEAD.
    func send(_ request: TusRequest, _ response: consuming HTTPResponse) {
        addCommonHeaders(request, to: &response.headers)
        if request.isHead { response.body = [] }
        request.exchange.respond(response)
    }

    func addCommonHeaders(_ request: TusRequest, to headers: inout HTTPHeaders) {
        headers.set("Tus-Resumable", Self.version)
        headers.set("X-Content-Type-Options", "nosniff")
        addCORSHeaders(request, to: &headers)
    }

    /// A service error in tus's words. A refusal is answered with the error tus gives that decision point, changed
    /// by the hook's response; an ability not offered is a method not allowed here.
    func fail(
        _ request: TusRequest, because error: UploadServiceError, headers: HTTPHeaders = [:],
        closeConnection: Bool = false
    ) {
        switch error {
        case .notOffered: failMethodNotAllowed(request)
        case .rejected(_, let response), .stopped(let response):
            fail(request, Self.tusError(error), headers: headers, closeConnection: closeConnection, override: response)
        default: fail(request, Self.tusError(error), headers: headers, closeConnection: closeConnection)
        }
    }

    static func rejection(at point: DecisionPoint) -> TusError {
        switch point {
        case .preAccess: .accessDenied
        case .preCreate, .preFinish: .uploadRejected
        case .preTerminate: .terminationRejected
        }
    }

    /// tus's error table entry for a service error (`TusError` is the wire table; this is the only way into it).
    static func tusError(_ error: UploadServiceError) -> TusError {
        switch error {
        case .notFound: .notFound
        case .gone: .gone
        case .locked: .uploadLocked
        case .unavailable: .storeUnavailable
        case .storageFailure: .storeFailure
        case .insufficientStorage: .insufficientStorage
        case .lengthAlreadySet: .lengthAlreadySet
        case .lengthBelowOffset: .lengthBelowOffset
        case .finalNotWritable: .modifyFinal
        case .exceedsLength: .uploadSizeExceeded
        case .offsetMismatch: .mismatchedOffset
        // Only the draft adapter asks for these checks; tus's nearest words, should one ever reach it.
        case .alreadyComplete: .uploadSizeExceeded
        case .lengthMismatch: .lengthAlreadySet
        case .tooLarge: .maxSizeExceeded
        case .notOffered: .methodNotAllowed
        case .partialNotFound: .partialNotFound
        case .notPartial: .notPartial
        case .partialGone: .partialGone
        case .hookUnavailable: .hookUnavailable
        case .interrupted: .uploadInterrupted
        case .lockLost: .uploadLockLost
        case .checksumMismatch: .checksumMismatch
        case .checksumMissing: .missingChecksumTrailer
        case .checksumMalformed: .invalidChecksumHeader
        case .checksumAlgorithmUnsupported: .unsupportedChecksumAlgorithm
        case .bodyAborted(.clientClosed): .connectionLost
        case .bodyAborted(.timeout): .readTimeout
        case .bodyAborted(.shutdown): .serverShuttingDown
        case .bodyAborted(.malformed): .malformedBody
        case .stopped: .uploadStopped
        case .rejected(let point, _): rejection(at: point)
        }
    }

    static func mapStoreError(_ error: StoreError) -> TusError { tusError(UploadServiceError(error)) }
}

/// One request as the handler sees it.
struct TusRequest {
    let head: RequestHead
    let exchange: any HTTPExchange
    /// After `X-HTTP-Method-Override`.
    let method: HTTPMethod
    /// What the authorizer granted; nil without one.
    var grant: AccessGrant?

    init(head: RequestHead, exchange: any HTTPExchange, method: HTTPMethod) {
        self.head = head
        self.exchange = exchange
        self.method = method
    }

    var isHead: Bool { method == .HEAD || head.method == .HEAD }

    /// The request as the upload service sees its caller.
    var caller: UploadCaller {
        UploadCaller(
            executor: exchange.executor, principal: grant?.subject, maxUploadLength: grant?.maxUploadLength,
            method: method, uploadProtocol: .tus, describe: { [self] in eventRequest })
    }

    /// The request as events describe it.
    var eventRequest: EventRequest {
        EventRequest(
            method: method, uri: head.target, remoteAddress: exchange.remoteAddress ?? "", headers: head.headers,
            requestID: head.headers["X-Request-ID"] ?? "", principal: grant?.subject)
    }
}
