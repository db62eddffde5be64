public import TusCore
import TusHTTP1
public import TusProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Counters of one loop. Only that loop's thread touches them, so they are plain integers: no atomics and
/// no shared cache lines on the request path. A scrape asks each loop for a copy (`snapshot`) on its own
/// thread and adds the copies up.
final class LoopMetrics {
    let executor: any LoopExecutor
    var values = MetricsSnapshot()

    init(executor: any LoopExecutor) { self.executor = executor }
}

/// The server's metrics: per-loop counters, an `UploadEventHandler` that counts what the tus handler reports,
/// and the Prometheus rendering of their sum.
///
/// Each loop gets its own `LoopMetrics` (a `LoopLocal`, keyed by its executor) the first time it records
/// something; finding it again on that loop takes no lock.
public final class MetricsRegistry: UploadEventHandler, @unchecked Sendable {
    private let registered = LoopLocal<LoopMetrics>()
    /// Read at scrape time (open connections live in the HTTP server).
    private let connectionsOpen: @Sendable () -> Int
    /// How long a scrape waits for a busy loop before answering without it.
    let scrapeTimeoutMilliseconds: UInt64

    public init(scrapeTimeoutMilliseconds: UInt64 = 2000, connectionsOpen: @escaping @Sendable () -> Int = { 0 }) {
        self.connectionsOpen = connectionsOpen
        self.scrapeTimeoutMilliseconds = scrapeTimeoutMilliseconds
    }

    /// The counters of `executor`'s loop; the caller runs on that loop.
    func loop(_ executor: any LoopExecutor) -> LoopMetrics {
        registered.value(on: executor) { LoopMetrics(executor: executor) }
    }

    // MARK: Recording (loop thread)

    func recordRequest(
        _ method: HTTPMethod, uploadProtocol: UploadProtocol, seconds: Double, on executor: any LoopExecutor
    ) {
        let metrics = loop(executor)
        metrics.values.requestsByProtocol[MetricsSnapshot.protocolIndex(uploadProtocol)] += 1
        let index = MetricsSnapshot.methodIndex(method)
        metrics.values.requests[index] += 1
        metrics.values.durations[index].observe(seconds: seconds)
    }

    /// A hook call ended (hooks report here; `failed` when it could not be completed).
    public func recordHook(_ type: String, failed: Bool, on executor: any LoopExecutor) {
        let metrics = loop(executor)
        metrics.values.hookInvocations[type, default: 0] += 1
        if failed { metrics.values.hookErrors[type, default: 0] += 1 }
    }

    /// An error answered outside the tus handler (health, 401 before routing is inside it).
    func recordError(status: Int, code: String, on executor: any LoopExecutor) {
        loop(executor).values.errors[.init(status: status, code: code), default: 0] += 1
    }

    // MARK: UploadEventHandler

    /// Counts read only the request's protocol.
    public var wantsRequestDetails: Bool { false }

    public func notify(_ notification: UploadNotification, _ event: UploadEvent, on executor: any LoopExecutor) {
        let metrics = loop(executor)
        switch notification {
        case .created:
            metrics.values.uploadsCreated += 1
            metrics.values.uploadsCreatedByProtocol[MetricsSnapshot.protocolIndex(event.request.uploadProtocol)] += 1
        case .finished:
            metrics.values.uploadsFinished += 1
            metrics.values.uploadsFinishedByProtocol[MetricsSnapshot.protocolIndex(event.request.uploadProtocol)] += 1
        case .terminated: metrics.values.uploadsTerminated += 1
        }
    }

    public func measure(_ measurement: RequestMeasurement, on executor: any LoopExecutor) {
        let metrics = loop(executor)
        switch measurement {
        case .bodyBytes(let count): metrics.values.bytesReceived += UInt64(count)
        case .lockWait(let nanoseconds): metrics.values.lockWait.observe(seconds: Double(nanoseconds) / 1e9)
        case .error(let error):
            metrics.values.errors[.init(status: error.status.code, code: error.code), default: 0] += 1
            let key = MetricsSnapshot.ProtocolErrorKey(protocol: "tus", status: error.status.code, code: error.code)
            metrics.values.errorsByProtocol[key, default: 0] += 1
        case .protocolError(let uploadProtocol, let status, let code):
            metrics.values.errorsByProtocol[
                .init(protocol: uploadProtocol.name, status: status, code: code), default: 0] += 1
        }
    }

    // MARK: Scraping

    /// Collects every loop's counters, each copied on its own loop, and renders the sum on `executor`
    /// (the scraping request's loop). A loop that does not answer within the scrape timeout is left out.
    public func scrape(on executor: any LoopExecutor, completion: @escaping (String) -> Void) {
        let loops = registered.values.map(LoopBox.init)
        let collector = ScrapeCollector(expected: loops.count, completion: completion, render: render)
        let collectorBox = LoopBox(collector)
        for box in loops {
            let metrics = box.value
            if metrics.executor.inLoop {
                collector.add(metrics.values)
                continue
            }
            metrics.executor.execute {
                let copy = box.value.values
                executor.execute { collectorBox.value.add(copy) }
            }
        }
        collector.finishIfComplete()
        if !collector.isFinished {
            _ = executor.schedule(afterMilliseconds: scrapeTimeoutMilliseconds) { collector.finish() }
        }
    }

    private func render(_ snapshot: MetricsSnapshot) -> String {
        PrometheusText.render(snapshot, connectionsOpen: connectionsOpen())
    }
}

/// Adds up the loops' copies on the scraping loop and answers once.
private final class ScrapeCollector {
    private let expected: Int
    private var received = 0
    private var sum = MetricsSnapshot()
    private(set) var isFinished = false
    private let completion: (String) -> Void
    private let render: (MetricsSnapshot) -> String

    init(expected: Int, completion: @escaping (String) -> Void, render: @escaping (MetricsSnapshot) -> String) {
        self.expected = expected
        self.completion = completion
        self.render = render
    }

    func add(_ snapshot: MetricsSnapshot) {
        guard !isFinished else { return }
        sum.add(snapshot)
        received += 1
        finishIfComplete()
    }

    func finishIfComplete() {
        if received >= expected { finish() }
    }

    func finish() {
        guard !isFinished else { return }
        isFinished = true
        completion(render(sum))
    }
}

/// Carries a loop-confined object to its own loop (or back to the scraping loop) through `execute`.
private struct LoopBox<Value: AnyObject>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
