public import TusCore
public import TusHTTP1

/// An `HTTPExchange` without a connection, for driving `HTTPRequestHandler`s in tests.
///
/// It records what the handler did (whether it asked for the body, every response it sent, a streamed
/// download), and lets the test play the connection: deliver body fragments (whole or split), end or abort
/// the body. Like the real connection it delivers nothing after the handler has responded, and with no
/// body it calls `bodyEnd` synchronously inside `readBody`.
public final class FakeExchange: HTTPExchange {
    public let head: RequestHead
    public let manualExecutor: ManualExecutor
    public var executor: any LoopExecutor { manualExecutor }
    public var isSecure: Bool

    /// Whether the handler called `readBody` (with `Expect: 100-continue`, whether `100` would be sent).
    public private(set) var didReadBody = false
    public private(set) var sink: (any HTTPBodySink)?
    /// Every response, in order; a correct handler sends exactly one.
    public private(set) var responses: [HTTPResponse] = []
    /// Every informational (1xx) response sent before the final one, in order; as on a real connection, those
    /// sent after it (or with 101 or a non-1xx status) are dropped.
    public private(set) var informationalResponses: [HTTPResponse] = []
    /// For `respond(_:bodyLength:source:)`: the announced length and the bytes pulled from the source.
    public private(set) var streamedBodyLength: Int64?
    public private(set) var streamedBody: [UInt8]?
    public private(set) var streamError: (any Error)?
    /// Fragments delivered whose `done` has not been called yet.
    public private(set) var outstandingFragments = 0
    /// Largest piece the fake connection asks a body source for.
    public var downloadPieceSize = 7
    public private(set) var bodyFinished = false
    /// The handler called `stopBody`: nothing more is delivered.
    public private(set) var bodyStopped = false

    public init(head: RequestHead, executor: ManualExecutor = ManualExecutor(), isSecure: Bool = false) {
        self.head = head
        self.manualExecutor = executor
        self.isSecure = isSecure
    }

    /// The single response, or nil.
    public var response: HTTPResponse? { responses.first }
    public var hasResponded: Bool { !responses.isEmpty }
    public var status: Int? { response?.status.code }
    public func header(_ name: String) -> String? { response?.headers[name] }

    // MARK: HTTPExchange

    public func readBody(into sink: any HTTPBodySink) {
        precondition(!didReadBody, "readBody called twice")
        didReadBody = true
        self.sink = sink
        if !head.bodyFraming.hasBody {
            bodyFinished = true
            sink.bodyEnd(trailers: [:])
        }
    }

    public func respond(_ response: consuming HTTPResponse) {
        responses.append(response)
    }

    public func stopBody() {
        bodyStopped = true
    }

    public func sendInformational(_ response: HTTPResponse) {
        guard responses.isEmpty, response.status.isInterim else { return }
        informationalResponses.append(response)
    }

    public func respond(_ response: HTTPResponse, bodyLength: Int64, source: any HTTPBodySource) {
        responses.append(response)
        streamedBodyLength = bodyLength
        guard head.method != .HEAD else {
            source.cancel()
            return
        }
        streamedBody = []
        pull(source)
    }

    private func pull(_ source: any HTTPBodySource) {
        source.next(maxLength: downloadPieceSize) { [self] result in
            switch result {
            case .success(let fragment?):
                streamedBody!.append(contentsOf: fragment.array)
                pull(source)
            case .success(nil): break
            case .failure(let error): streamError = error
            }
        }
    }

    // MARK: Playing the connection

    /// Whether body events still reach the sink (read started, not finished or stopped, no response yet).
    public var isReadingBody: Bool { didReadBody && !bodyFinished && !bodyStopped && responses.isEmpty && sink != nil }

    /// Delivers `bytes` as one fragment, or as pieces of `fragmentSize`. Returns false if nothing was
    /// delivered because the handler is not reading.
    @discardableResult
    public func deliver(_ bytes: [UInt8], fragmentSize: Int? = nil) -> Bool {
        guard isReadingBody, let sink else { return false }
        let size = max(1, fragmentSize ?? bytes.count)
        var start = 0
        repeat {
            guard isReadingBody else { return start > 0 }
            let end = min(bytes.count, start + size)
            outstandingFragments += 1
            sink.bodyFragment(BodyFragment(copying: Array(bytes[start..<end]))) { [self] in outstandingFragments -= 1 }
            start = end
        } while start < bytes.count
        return true
    }

    public func endBody(trailers: HTTPHeaders = [:]) {
        guard isReadingBody, let sink else { return }
        bodyFinished = true
        sink.bodyEnd(trailers: trailers)
    }

    /// Unlike end, an abort reaches the sink even after a response (the connection may still fail).
    public func abortBody(_ reason: BodyAbortReason) {
        guard didReadBody, !bodyFinished, let sink else { return }
        bodyFinished = true
        sink.bodyAborted(reason)
    }
}
