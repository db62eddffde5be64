import Foundation
import Glibc
import Synchronization
import TusCore
import TusHTTP1
import TusHTTPServer
import TusTestSupport

/// Just enough of a draft server (docs/IETF-RESUMABLE-UPLOAD.md) to hold the client to the wire: creation answered
/// with a 104 (`Location`) before the body is read, offset retrieval, append with the offset check, cancellation.
/// Bytes of an interrupted request are kept; a HEAD or PATCH on an upload ends the earlier request's writing (R8),
/// so a stale body can never land after the offset the client resumes from. Records each request's head.
final class FakeResumableUploadHandler: HTTPRequestHandler, @unchecked Sendable {
    struct Upload {
        var bytes: [UInt8] = []
        var length: Int64?
        var isComplete = false
        /// Which request may still write; bumped by every later request on the upload.
        var writer = 0
    }

    private let state = Mutex<(uploads: [String: Upload], requests: [RequestHead], next: Int)>(([:], [], 0))
    /// A second 104 with `Upload-Offset` once the creation body arrived (v5+ progress), to test that several come.
    let sendsProgress: Bool

    init(sendsProgress: Bool = false) {
        self.sendsProgress = sendsProgress
    }

    var requests: [RequestHead] { state.withLock { $0.requests } }
    func upload(_ id: String) -> Upload? { state.withLock { $0.uploads[id] } }

    func handle(_ head: RequestHead, exchange: any HTTPExchange) {
        state.withLock { $0.requests.append(head) }
        guard let versionText = head.headers["Upload-Draft-Interop-Version"], let version = Int(versionText),
            (3...9).contains(version)
        else {
            return exchange.respond(HTTPResponse(status: .badRequest, text: "unknown interop version"))
        }
        var common: HTTPHeaders = ["Upload-Draft-Interop-Version": String(version)]
        let id = String(head.path.split(separator: "/").last ?? "")
        switch (head.method, head.path.hasSuffix("/files/") || head.path == "/files") {
        case (.POST, true):
            let (newID, writer) = state.withLock { state -> (String, Int) in
                state.next += 1
                let id = "u\(state.next)"
                var upload = Upload()
                upload.length = head.headers["Upload-Length"].flatMap { Int64($0) }
                state.uploads[id] = upload
                return (id, upload.writer)
            }
            var announce = common
            announce.add("Location", "/files/\(newID)")
            exchange.sendInformational(HTTPResponse(status: .uploadResumptionSupported, headers: announce))
            readBody(of: exchange, into: newID, writer: writer, version: version, head: head) { upload in
                if self.sendsProgress {
                    var progress = common
                    progress.add("Upload-Offset", String(upload.bytes.count))
                    exchange.sendInformational(HTTPResponse(status: .uploadResumptionSupported, headers: progress))
                }
                var headers = self.stateHeaders(upload, version: version, common: common)
                headers.add("Location", "/files/\(newID)")
                exchange.respond(HTTPResponse(status: .created, headers: headers))
            }
        case (.HEAD, false):
            guard let upload = takeOver(id) else { return exchange.respond(HTTPResponse(status: .notFound)) }
            let headers = stateHeaders(upload, version: version, common: common)
            exchange.respond(HTTPResponse(status: .noContent, headers: headers))
        case (.PATCH, false):
            guard let upload = takeOver(id) else { return exchange.respond(HTTPResponse(status: .notFound)) }
            let offset = head.headers["Upload-Offset"].flatMap { Int64($0) }
            guard offset == Int64(upload.bytes.count), !upload.isComplete else {
                common.add("Upload-Offset", String(upload.bytes.count))
                return exchange.respond(HTTPResponse(status: .conflict, headers: common, text: "offset mismatch"))
            }
            readBody(of: exchange, into: id, writer: upload.writer, version: version, head: head) { upload in
                let status: HTTPStatus = upload.isComplete ? .created : .noContent
                let headers = self.stateHeaders(upload, version: version, common: common)
                exchange.respond(HTTPResponse(status: status, headers: headers))
            }
        case (.DELETE, false):
            let removed = state.withLock { $0.uploads.removeValue(forKey: id) }
            exchange.respond(HTTPResponse(status: removed == nil ? .notFound : .noContent, headers: common))
        default:
            exchange.respond(HTTPResponse(status: .methodNotAllowed))
        }
    }

    private func takeOver(_ id: String) -> Upload? {
        state.withLock { state in
            state.uploads[id]?.writer += 1
            return state.uploads[id]
        }
    }

    private func stateHeaders(_ upload: Upload, version: Int, common: HTTPHeaders) -> HTTPHeaders {
        var headers = common
        headers.add("Upload-Offset", String(upload.bytes.count))
        if version == 3 {
            headers.add("Upload-Incomplete", upload.isComplete ? "?0" : "?1")
        } else {
            headers.add("Upload-Complete", upload.isComplete ? "?1" : "?0")
        }
        if let length = upload.length { headers.add("Upload-Length", String(length)) }
        return headers
    }

    private func readBody(
        of exchange: any HTTPExchange, into id: String, writer: Int, version: Int, head: RequestHead,
        _ answer: @escaping (Upload) -> Void
    ) {
        let completes =
            version == 3
            ? head.headers["Upload-Incomplete"] != "?1" : head.headers["Upload-Complete"] == "?1"
        exchange.readBody(
            into: Sink(
                append: { bytes in
                    self.state.withLock { state in
                        guard state.uploads[id]?.writer == writer else { return }
                        state.uploads[id]?.bytes.append(contentsOf: bytes)
                    }
                },
                end: {
                    let upload = self.state.withLock { state -> Upload? in
                        guard state.uploads[id]?.writer == writer else { return nil }
                        if completes { state.uploads[id]?.isComplete = true }
                        return state.uploads[id]
                    }
                    guard let upload else { return exchange.respond(HTTPResponse(status: .conflict)) }
                    answer(upload)
                }))
    }

    private final class Sink: HTTPBodySink {
        let append: ([UInt8]) -> Void
        let end: () -> Void
        init(append: @escaping ([UInt8]) -> Void, end: @escaping () -> Void) {
            self.append = append
            self.end = end
        }
        func bodyFragment(_ fragment: BodyFragment, done: @escaping () -> Void) {
            append(fragment.array)
            done()
        }
        func bodyEnd(trailers: HTTPHeaders) { end() }
        func bodyAborted(_ reason: BodyAbortReason) {}
    }
}

/// A TCP relay on 127.0.0.1 in front of a server that breaks its first `cutConnections` connections after
/// `cutAfter` bytes from the client: the bytes so far reach the server, then (after `grace`, so answers already
/// on their way such as a 104 still arrive) both sides are closed. What a client sees when its network drops
/// mid-body.
final class CuttingProxy: @unchecked Sendable {
    let port: Int
    private let listening: Int32
    private let upstreamPort: Int
    private let cutAfter: Int
    private let remainingCuts: Atomic<Int>
    private let graceMicroseconds: UInt32

    init(upstreamPort: Int, cutAfter: Int, cutConnections: Int = 1, graceMilliseconds: UInt32 = 200) {
        let (listening, port) = listeningLoopbackSocket()
        self.listening = listening
        self.port = port
        self.upstreamPort = upstreamPort
        self.cutAfter = cutAfter
        self.remainingCuts = Atomic(cutConnections)
        self.graceMicroseconds = graceMilliseconds * 1000
        Thread { [self] in
            while true {
                let client = accept(listening, nil, nil)
                guard client >= 0 else { return }
                let cuts = remainingCuts.load(ordering: .relaxed) > 0
                if cuts { remainingCuts.subtract(1, ordering: .relaxed) }
                Thread { self.relay(client, cuts: cuts) }.start()
            }
        }.start()
    }

    private func relay(_ client: Int32, cuts: Bool) {
        let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(upstreamPort).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        defer {
            close(upstream)
            close(client)
        }
        guard connected == 0 else { return }
        var forwarded = 0
        var cutAt: UInt64? = nil
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var fds = [
                pollfd(fd: client, events: Int16(POLLIN), revents: 0),
                pollfd(fd: upstream, events: Int16(POLLIN), revents: 0),
            ]
            if cutAt != nil { fds[0].events = 0 }  // stop taking the client's bytes
            let ready = poll(&fds, 2, 20)
            if let cutAt, Self.nowMicroseconds() - cutAt >= UInt64(graceMicroseconds) { return }
            guard ready >= 0 else { return }
            if fds[1].revents != 0 {
                let count = read(upstream, &buffer, buffer.count)
                guard count > 0, write(client, buffer, count) == count else { return }
            }
            if fds[0].revents != 0, cutAt == nil {
                let want = cuts ? min(buffer.count, cutAfter - forwarded) : buffer.count
                let count = read(client, &buffer, want)
                guard count > 0, write(upstream, buffer, count) == count else { return }
                forwarded += count
                if cuts && forwarded >= cutAfter { cutAt = Self.nowMicroseconds() }
            }
        }
    }

    private static func nowMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }

    func stop() {
        shutdown(listening, Int32(SHUT_RDWR))
        close(listening)
    }
}
