import TusCore
public import TusHTTP1
import TusProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// What `OperationsHandler` serves besides the application.
public struct OperationsConfiguration: Sendable {
    /// `GET` path of the Prometheus metrics; nil turns them off.
    public var metricsPath: String? = "/metrics"
    public var healthPath = "/healthz"
    public var readinessPath = "/readyz"
    /// A readiness check slower than this counts as failed.
    public var readinessTimeoutMilliseconds: UInt64 = 2000

    public init() {}
}

/// The operator's side of the server, in front of the tus handler: request ids, health, readiness, metrics,
/// and per-request counters and timings.
///
/// Health, readiness and metrics are answered here, before the application sees the request, so they never
/// need credentials (probes and scrapers carry none; keep them off the public network instead).
public final class OperationsHandler: HTTPRequestHandler {
    public let next: any HTTPRequestHandler
    public let configuration: OperationsConfiguration
    public let metrics: MetricsRegistry?
    let readinessChecks: [ReadinessCheck]

    public init(
        next: any HTTPRequestHandler, configuration: OperationsConfiguration = OperationsConfiguration(),
        metrics: MetricsRegistry?, readinessChecks: [ReadinessCheck] = []
    ) {
        self.next = next
        self.configuration = configuration
        self.metrics = metrics
        self.readinessChecks = readinessChecks
    }

    public func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        var head = head
        let requestID = RequestID.accept(head.headers[RequestID.headerName]) ?? RequestID.make()
        head.headers.set(RequestID.headerName, requestID)
        exchange.tagForLogs(requestID: requestID)
        let observed = ObservedExchange(
            inner: exchange, head: head, requestID: requestID, metrics: metrics, method: Self.countedMethod(head))

        if head.method == .GET || head.method == .HEAD {
            let path = head.path
            if path == configuration.healthPath {
                return observed.respond(HTTPResponse(status: .ok, headers: ["Cache-Control": "no-store"], text: "ok"))
            }
            if path == configuration.readinessPath { return serveReadiness(observed) }
            if let metricsPath = configuration.metricsPath, path == metricsPath, let metrics {
                return metrics.scrape(on: exchange.executor) { text in
                    observed.respond(
                        HTTPResponse(
                            status: .ok, headers: ["Content-Type": PrometheusText.contentType, "Cache-Control": "no-store"],
                            body: Array(text.utf8)))
                }
            }
        }
        next.handle(head, exchange: observed)
    }

    private func serveReadiness(_ exchange: ObservedExchange) {
        let probe = ReadinessProbe(checks: readinessChecks) { ready, report in
            let text = ready ? (report.isEmpty ? "ok" : report) : report
            exchange.respond(
                HTTPResponse(
                    status: ready ? .ok : .serviceUnavailable, headers: ["Cache-Control": "no-store"], text: text))
        }
        probe.run(readinessChecks, on: exchange.executor, timeoutMilliseconds: configuration.readinessTimeoutMilliseconds)
    }

    /// tusd counts requests by their method after `X-HTTP-Method-Override`.
    static func countedMethod(_ head: RequestHead) -> HTTPMethod {
        if let override = head.headers["X-HTTP-Method-Override"],
            let method = HTTPMethod(rawValue: override.uppercased())
        {
            return method
        }
        return head.method
    }
}

/// The exchange the application sees: the head carries the request id, every response carries it back,
/// and the response's moment is measured for the duration histogram.
final class ObservedExchange: HTTPExchange {
    private let inner: any HTTPExchange
    let head: RequestHead
    private let requestID: String
    private let metrics: MetricsRegistry?
    private let method: HTTPMethod
    private let started: UInt64

    init(inner: any HTTPExchange, head: RequestHead, requestID: String, metrics: MetricsRegistry?, method: HTTPMethod) {
        self.inner = inner
        self.head = head
        self.requestID = requestID
        self.metrics = metrics
        self.method = method
        self.started = metrics == nil ? 0 : MonotonicClock.nanoseconds
    }

    var executor: any LoopExecutor { inner.executor }
    var isSecure: Bool { inner.isSecure }
    var remoteAddress: String? { inner.remoteAddress }
    func tagForLogs(requestID: String) { inner.tagForLogs(requestID: requestID) }

    func readBody(into sink: any HTTPBodySink) { inner.readBody(into: sink) }
    func stopBody() { inner.stopBody() }
    /// Untagged and untimed: the request's duration and id belong to its final response.
    func sendInformational(_ response: HTTPResponse) { inner.sendInformational(response) }

    func respond(_ response: consuming HTTPResponse) {
        inner.respond(tagged(response))
    }

    func respond(_ response: HTTPResponse, bodyLength: Int64, source: any HTTPBodySource) {
        inner.respond(tagged(response), bodyLength: bodyLength, source: source)
    }

    private func tagged(_ response: consuming HTTPResponse) -> HTTPResponse {
        response.headers.set(RequestID.headerName, requestID)
        if let metrics {
            let seconds = Double(MonotonicClock.nanoseconds &- started) / 1e9
            // The draft's requests are known by this field alone, as `TusHandler` dispatches them.
            let uploadProtocol: UploadProtocol =
                head.headers[DraftUploadHandler.interopVersionField].map {
                    .ietfDraft(interopVersion: Int($0.trimmingOWS()) ?? 0)
                } ?? .tus
            metrics.recordRequest(method, uploadProtocol: uploadProtocol, seconds: seconds, on: inner.executor)
        }
        return response
    }
}
