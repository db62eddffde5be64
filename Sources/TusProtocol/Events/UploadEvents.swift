public import TusCore
public import TusHTTP1

/// The request behind an event, as hooks and authorizers see it (the shape of tusd's `HTTPRequest`).
public struct EventRequest: Sendable {
    /// After `X-HTTP-Method-Override`.
    public var method: HTTPMethod
    /// The request target as sent (path and query).
    public var uri: String
    /// "host:port" of the peer; empty when the transport does not know it (tests).
    public var remoteAddress: String
    public var headers: HTTPHeaders
    /// `X-Request-ID` as the client sent it or as the server made it (empty without the operations layer).
    public var requestID: String
    /// Who the authorizer says is asking (`sub` of a token); nil without authentication.
    public var principal: String?
    /// The wire protocol of the request (hook payloads and metrics say which).
    public var uploadProtocol: UploadProtocol

    public init(
        method: HTTPMethod, uri: String, remoteAddress: String = "", headers: HTTPHeaders = [:], requestID: String = "",
        principal: String? = nil, uploadProtocol: UploadProtocol = .tus
    ) {
        self.uploadProtocol = uploadProtocol
        self.method = method
        self.uri = uri
        self.remoteAddress = remoteAddress
        self.headers = headers
        self.requestID = requestID
        self.principal = principal
    }
}

/// The wire protocols served on one upload service.
public enum UploadProtocol: Sendable, Equatable {
    case tus
    /// draft-ietf-httpbis-resumable-upload at this `Upload-Draft-Interop-Version`.
    case ietfDraft(interopVersion: Int)

    /// How hook payloads and metric labels name it.
    public var name: String {
        switch self {
        case .tus: "tus"
        case .ietfDraft: "ietf-draft"
        }
    }
}

/// One upload event: the upload as it stands and the request that caused it (tusd's `HookEvent`).
public struct UploadEvent: Sendable {
    public var upload: UploadInfo
    public var request: EventRequest

    public init(upload: UploadInfo, request: EventRequest) {
        self.upload = upload
        self.request = request
    }
}

/// Points where an event handler decides whether the request goes on. The request waits for the decision;
/// its loop does not.
public enum DecisionPoint: String, Sendable, CaseIterable {
    /// Before an upload exists (the upload in the event has no id yet); may change the id and metadata.
    case preCreate = "pre-create"
    /// The last byte is stored; the response waits (tusd sends the pre-finish response afterwards), and so does
    /// post-finish, which follows only a yes: a rejection or a hook that cannot be asked fails the answer and no
    /// post-finish is sent, though the upload stays complete (tusd `emitFinishEvents`).
    case preFinish = "pre-finish"
    /// Before a DELETE removes anything.
    case preTerminate = "pre-terminate"
    /// Before any request that names an upload, and before creation: an access decision per request.
    case preAccess = "pre-access"
}

/// Things that happened. Never waited for: a slow receiver cannot slow an upload down.
public enum UploadNotification: String, Sendable, CaseIterable {
    case created = "post-create"
    case finished = "post-finish"
    case terminated = "post-terminate"
}

/// Cheap per-request measurements (metrics). Called on the request's loop, on the hot path: keep them cheap.
public enum RequestMeasurement: Sendable {
    /// Body bytes that reached the store.
    case bodyBytes(Int)
    /// Time a request waited for an upload's lock.
    case lockWait(nanoseconds: UInt64)
    /// The handler answered with this protocol error.
    case error(TusError)
    /// Another wire protocol's adapter (the IETF draft) answered with an error: its status and a code of that
    /// protocol's (a problem type, or the status's reason), so tus's own error counters keep tus's codes.
    case protocolError(UploadProtocol, status: Int, code: String)
}

/// What a decision hook wants done to the response. Fields left nil keep the handler's own values; headers
/// are added to (or replace) the handler's. The shape of tusd's `HTTPResponse`.
public struct ResponseOverride: Sendable {
    public var statusCode: Int?
    public var body: String?
    public var headers: HTTPHeaders

    public init(statusCode: Int? = nil, body: String? = nil, headers: HTTPHeaders = [:]) {
        self.statusCode = statusCode
        self.body = body
        self.headers = headers
    }

    public var isEmpty: Bool { statusCode == nil && body == nil && headers.count == 0 }
}

/// The outcome of a decision point.
public struct EventVerdict: Sendable {
    /// Reject the request; the response is the event's rejection error, changed by `response`.
    public var isRejected: Bool
    /// The hook could not be asked (receiver down, timeout, bad answer): the request fails closed with 503
    /// where the decision gates it (pre-create, pre-access, pre-terminate).
    public var isUnavailable: Bool
    public var response: ResponseOverride
    /// pre-create only: a new upload id (validated like any id; an invalid one fails the request).
    public var changedID: String?
    /// pre-create only: new metadata as key/value pairs (values as text).
    public var changedMetadata: [(key: String, value: String)]?

    public init(
        isRejected: Bool = false, isUnavailable: Bool = false, response: ResponseOverride = ResponseOverride(),
        changedID: String? = nil, changedMetadata: [(key: String, value: String)]? = nil
    ) {
        self.isRejected = isRejected
        self.isUnavailable = isUnavailable
        self.response = response
        self.changedID = changedID
        self.changedMetadata = changedMetadata
    }

    public static let proceed = EventVerdict()
    public static let unavailable = EventVerdict(isUnavailable: true)
}

/// Lets an event handler end a running PATCH (tusd's `StopUpload`), which, as in tusd v2, also terminates the
/// upload before the request is answered. Safe from any thread: it hops to the request's loop. Stopping a request
/// whose body already ended does nothing.
public final class UploadStopSwitch: Sendable {
    private let executor: any LoopExecutor
    private let action: LoopBoundAction

    init(executor: any LoopExecutor, action: @escaping (ResponseOverride) -> Void) {
        self.executor = executor
        self.action = LoopBoundAction(action)
    }

    /// For event handlers' tests: a switch whose stop runs `action` on `executor`.
    public static func forTesting(
        executor: any LoopExecutor, action: @escaping (ResponseOverride) -> Void
    ) -> UploadStopSwitch {
        UploadStopSwitch(executor: executor, action: action)
    }

    public func stop(response: ResponseOverride = ResponseOverride()) {
        let action = action
        executor.execute { action.run(response) }
    }
}

/// The stop action belongs to the request's loop and only ever runs there.
private struct LoopBoundAction: @unchecked Sendable {
    let body: (ResponseOverride) -> Void
    init(_ body: @escaping (ResponseOverride) -> Void) { self.body = body }
    func run(_ response: ResponseOverride) { body(response) }
}

/// Where the handler tells the outside world about uploads (hooks, metrics) and asks it for decisions.
///
/// Every call happens on the request's loop (`executor`). A decision's `completion` must be called exactly
/// once, on that same loop; the request waits for it, nothing else does. Notifications must return at once
/// and do their work elsewhere (another loop, a worker thread, a later iteration).
///
/// Every requirement has a default that does nothing and decides `.proceed`, so an implementation provides
/// only what it cares about.
public protocol UploadEventHandler: AnyObject, Sendable {
    /// Whether `decide(.preAccess, ...)` should be called at all: when false the handler skips building the
    /// event on every request.
    var wantsAccessDecisions: Bool { get }
    /// Whether `.preCreate`, `.preFinish`, `.preTerminate` are wanted (false skips the round trip).
    func wantsDecision(_ point: DecisionPoint) -> Bool
    /// Whether notifications need their request described in full (target, peer, headers, request id). When
    /// false they carry only its method, protocol and principal: describing the peer and copying the fields was
    /// ~2.5 % of a POST's CPU for a server whose only listener is its metrics (bench/results/2026-12-07-post).
    var wantsRequestDetails: Bool { get }

    func decide(
        _ point: DecisionPoint, _ event: UploadEvent, on executor: any LoopExecutor,
        completion: @escaping (EventVerdict) -> Void)

    func notify(_ notification: UploadNotification, _ event: UploadEvent, on executor: any LoopExecutor)

    /// During a PATCH, at most every `TusConfiguration.progressIntervalMilliseconds`, and once when the
    /// request's bytes are committed (tusd `post-receive`). `stop` ends the running request.
    func progressed(_ event: UploadEvent, stop: UploadStopSwitch, on executor: any LoopExecutor)

    func measure(_ measurement: RequestMeasurement, on executor: any LoopExecutor)
}

extension UploadEventHandler {
    public var wantsAccessDecisions: Bool { false }
    public func wantsDecision(_ point: DecisionPoint) -> Bool { false }
    public var wantsRequestDetails: Bool { true }
    public func decide(
        _ point: DecisionPoint, _ event: UploadEvent, on executor: any LoopExecutor,
        completion: @escaping (EventVerdict) -> Void
    ) { completion(.proceed) }
    public func notify(_ notification: UploadNotification, _ event: UploadEvent, on executor: any LoopExecutor) {}
    public func progressed(_ event: UploadEvent, stop: UploadStopSwitch, on executor: any LoopExecutor) {}
    public func measure(_ measurement: RequestMeasurement, on executor: any LoopExecutor) {}
}

/// The default: nobody listens, everything proceeds.
public final class NoUploadEvents: UploadEventHandler {
    public init() {}
    public var wantsRequestDetails: Bool { false }
}

/// Several handlers as one: decisions are asked in order and the first rejection (or failure) wins, so a
/// cheap local check can come before a remote hook; notifications and measurements go to all.
public final class UploadEventFanOut: UploadEventHandler {
    public let handlers: [any UploadEventHandler]

    public init(_ handlers: [any UploadEventHandler]) { self.handlers = handlers }

    public var wantsAccessDecisions: Bool { handlers.contains { $0.wantsAccessDecisions } }
    public func wantsDecision(_ point: DecisionPoint) -> Bool { handlers.contains { $0.wantsDecision(point) } }
    public var wantsRequestDetails: Bool { handlers.contains { $0.wantsRequestDetails } }

    public func decide(
        _ point: DecisionPoint, _ event: UploadEvent, on executor: any LoopExecutor,
        completion: @escaping (EventVerdict) -> Void
    ) {
        let asked = handlers.filter {
            point == .preAccess ? $0.wantsAccessDecisions : $0.wantsDecision(point)
        }
        func ask(_ index: Int, merged: EventVerdict) {
            guard index < asked.count else { return completion(merged) }
            asked[index].decide(point, event, on: executor) { verdict in
                if verdict.isRejected || verdict.isUnavailable { return completion(verdict) }
                var merged = merged
                merged.response.statusCode = verdict.response.statusCode ?? merged.response.statusCode
                merged.response.body = verdict.response.body ?? merged.response.body
                for field in verdict.response.headers { merged.response.headers.set(field.name, field.value) }
                merged.changedID = verdict.changedID ?? merged.changedID
                merged.changedMetadata = verdict.changedMetadata ?? merged.changedMetadata
                ask(index + 1, merged: merged)
            }
        }
        ask(0, merged: .proceed)
    }

    public func notify(_ notification: UploadNotification, _ event: UploadEvent, on executor: any LoopExecutor) {
        for handler in handlers { handler.notify(notification, event, on: executor) }
    }

    public func progressed(_ event: UploadEvent, stop: UploadStopSwitch, on executor: any LoopExecutor) {
        for handler in handlers { handler.progressed(event, stop: stop, on: executor) }
    }

    public func measure(_ measurement: RequestMeasurement, on executor: any LoopExecutor) {
        for handler in handlers { handler.measure(measurement, on: executor) }
    }
}
