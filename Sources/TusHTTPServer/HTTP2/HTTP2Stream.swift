import TusCore
import TusHTTP1

/// One HTTP/2 stream: a request head being collected, then one `HTTPExchange`. Owned by its `HTTP2Connection`
/// (loop thread only); the connection drives every transition.
///
/// Body bytes wait here until the sink takes them, as ranges of chunks: either of the connection's receive chunk
/// (TLS: DATA payloads are decrypted there back to back, and a payload that lands right after the previous one of
/// this stream extends the same range, so one stream's frames become one fragment without a copy), or of this
/// stream's own chunks, into which payloads are copied when they arrived elsewhere (h2c, the bytes a connection
/// began with, or the receive chunks' budget spent: see `HTTP2Connection.allocatePlaintextBuffer`). The stream's
/// window is reopened only when a fragment's `done` runs (`nghttp2_session_consume`), so the bytes held here never
/// exceed the window.
final class HTTP2Stream {
    let id: Int32

    // MARK: Request head
    var method = ""
    var path = ""
    var authority: String?
    var headers = HTTPHeaders()
    var trailers = HTTPHeaders()
    var head: RequestHead?
    var exchange: HTTP2Exchange?

    // MARK: Lifecycle
    /// Body phase, request end, answer, close and scheduling marks; the connection acts on its answers.
    var lifecycle = HTTP2StreamStateMachine()
    var isClosed: Bool { lifecycle.isClosed }
    var hasResponded: Bool { lifecycle.hasResponded }
    var isRemoteEnded: Bool { lifecycle.isRemoteEnded }

    // MARK: Request body
    /// Where the body goes while `lifecycle.body` is `.reading`.
    var sink: (any HTTPBodySink)?
    /// Complete pieces not yet handed to the sink, in order (`queuedByteCount` bytes).
    private var queued: [BodyFragment] = []
    private var queuedHead = 0
    private(set) var queuedByteCount = 0
    /// The last piece, which the next bytes may still extend: `tail[tailStart..<tailEnd]` is not handed out yet.
    private var tail: ByteChunk?
    private var tailStart = 0
    private var tailEnd = 0
    /// Whether `tail` is this stream's own chunk (copied bytes; filled to its end) or a slice of a receive chunk.
    private var isTailOwn = false
    private var nextChunkCapacity = 16 * 1024
    /// Fragments handed to the sink whose `done` has not run; their bytes are still unconsumed.
    var outstandingFragments = 0
    /// Body bytes received since the connection last told its state machine (deadlines and rate).
    var unreportedBodyBytes = 0

    // MARK: Response
    enum ResponseBody {
        case none
        case bytes([UInt8], sent: Int)
        case source(any HTTPBodySource, remaining: Int64)
    }
    var responseBody: ResponseBody = .none
    /// The piece of a streamed response being sent (`responseOffset` bytes of it are out).
    var responseFragment: BodyFragment?
    var responseOffset = 0

    init(id: Int32) {
        self.id = id
    }

    var bufferedByteCount: Int { queuedByteCount + (tailEnd - tailStart) }

    /// Copies DATA payload into this stream's own chunks. Chunks start small (16 KiB) and double up to `maxChunk`
    /// while the stream keeps sending, so a stream that sends a few bytes pins little and a big upload gets
    /// big writes.
    /// Chunks come from `pool` (the loop's) when given, so their pages stay mapped from one chunk to the next.
    func append(_ bytes: UnsafeRawBufferPointer, maxChunk: Int, pool: ByteChunkPool? = nil) {
        var offset = 0
        while offset < bytes.count {
            if !isTailOwn || tail == nil || tailEnd == tail!.capacity {
                if isTailOwn, tail != nil, tailEnd == tailStart, isKnownUniquelyReferenced(&tail) {
                    // Every fragment of it is done: start over at its beginning instead of allocating (a fresh
                    // 256 KiB chunk costs page faults each time, measured with perf on a large upload).
                    tailStart = 0
                    tailEnd = 0
                } else {
                    queueTail()
                    let capacity = nextChunkCapacity
                    nextChunkCapacity = min(maxChunk, capacity * 2)
                    tail = pool?.chunk(capacity: capacity) ?? ByteChunk(capacity: capacity)
                    isTailOwn = true
                }
            }
            let chunk = tail!
            let count = min(bytes.count - offset, chunk.capacity - tailEnd)
            (chunk.base + tailEnd).copyMemory(from: bytes.baseAddress! + offset, byteCount: count)
            tailEnd += count
            offset += count
        }
    }

    /// Takes `chunk[range]` (DATA payload decrypted in place) without a copy; it extends the piece before it when
    /// it continues it in the same chunk.
    func appendSlice(of chunk: ByteChunk, range: Range<Int>) {
        if !isTailOwn, tail === chunk, tailEnd == range.lowerBound {
            tailEnd = range.upperBound
            return
        }
        queueTail()
        tail = chunk
        isTailOwn = false
        tailStart = range.lowerBound
        tailEnd = range.upperBound
    }

    /// Closes the growing piece: what is not handed out yet joins the queue.
    private func queueTail() {
        if let tail, tailEnd > tailStart {
            queued.append(BodyFragment(chunk: tail, range: tailStart..<tailEnd))
            queuedByteCount += tailEnd - tailStart
        }
        tail = nil
        tailStart = 0
        tailEnd = 0
    }

    /// The oldest complete piece, if any.
    func takeQueued() -> BodyFragment? {
        guard queuedHead < queued.count else { return nil }
        let fragment = queued[queuedHead]
        queuedHead += 1
        queuedByteCount -= fragment.count
        if queuedHead == queued.count {
            queued.removeAll(keepingCapacity: true)
            queuedHead = 0
        }
        return fragment
    }

    /// The bytes of the growing piece not yet handed out, as a fragment (and marks them handed out). A slice is let
    /// go of at once: holding it would keep the connection's receive chunk from being reused.
    func takeCurrent() -> BodyFragment? {
        guard let tail, tailEnd > tailStart else { return nil }
        let fragment = BodyFragment(chunk: tail, range: tailStart..<tailEnd)
        tailStart = tailEnd
        if !isTailOwn || tailEnd == tail.capacity {
            self.tail = nil
            tailStart = 0
            tailEnd = 0
        }
        return fragment
    }

    /// Every byte not handed out yet, in order (and marks them handed out).
    func takeAll() -> [BodyFragment] {
        var fragments: [BodyFragment] = []
        while let fragment = takeQueued() { fragments.append(fragment) }
        if let current = takeCurrent() { fragments.append(current) }
        return fragments
    }

    /// Drops every byte not handed out; returns how many (to be consumed, so the windows reopen).
    func dropBuffered() -> Int {
        let count = bufferedByteCount
        queued = []
        queuedHead = 0
        queuedByteCount = 0
        tail = nil
        tailStart = 0
        tailEnd = 0
        return count
    }
}

/// The handler's view of one HTTP/2 stream. Calls after the stream ended (a late answer after a reset or a
/// lock takeover) are ignored, as on HTTP/1.1.
final class HTTP2Exchange: HTTPExchange {
    let head: RequestHead
    private let link: HTTP2ConnectionLink
    private var connection: HTTP2Connection? { link.connection }
    private let stream: HTTP2Stream

    let executor: any LoopExecutor
    let isSecure: Bool

    init(head: RequestHead, connection: HTTP2Connection, stream: HTTP2Stream) {
        self.head = head
        self.link = connection.link
        self.stream = stream
        self.executor = connection.context.executor
        self.isSecure = connection.isSecure
    }

    func readBody(into sink: any HTTPBodySink) {
        guard let connection, !stream.isClosed, !stream.hasResponded else { return sink.bodyAborted(.clientClosed) }
        connection.streamReadBody(stream, into: sink)
    }

    func stopBody() {
        guard let connection, !stream.isClosed, !stream.hasResponded else { return }
        connection.streamStopBody(stream)
    }

    func respond(_ response: consuming HTTPResponse) {
        guard let connection, !stream.hasResponded else { return }
        connection.streamRespond(stream, response, bodyLength: nil, source: nil)
    }

    func sendInformational(_ response: HTTPResponse) {
        guard let connection, response.status.isInterim else { return }
        connection.streamSendInformational(stream, response)
    }

    func respond(_ response: HTTPResponse, bodyLength: Int64, source: any HTTPBodySource) {
        guard let connection, !stream.hasResponded else { return source.cancel() }
        connection.streamRespond(stream, response, bodyLength: bodyLength, source: source)
    }
}
