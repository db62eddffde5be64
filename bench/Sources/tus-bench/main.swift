// tus-bench: a load generator on the project's own event loop (TusLoop + TusClient.HTTPClientConnection).
//
// Scenarios (see `--help`): single, concurrent, head, create, put, idle; `--checksum` turns single/concurrent
// into the checksum scenario, an https URL into the TLS one. Body bytes come from one pseudo-random buffer made
// at start-up; nothing is read from disk while measuring. Results: one markdown table row set on stdout and one
// JSON object per run appended to `--json-out`.
import ArgumentParser
import Glibc
import Synchronization
import TusClient
import TusCrypto
import TusCore
import TusHTTP1
import TusLoop

// MARK: options

/// The command line, parsed by swift-argument-parser; every spelling bench/run* and bench/profile use is kept
/// (`-c`, `--server-pid A,B`, sizes such as `1GiB`, `--insecure` although verification is always off).
struct Arguments: ParsableCommand {
    static let scenarios = ["single", "concurrent", "head", "create", "put", "idle"]

    static let configuration = CommandConfiguration(
        commandName: "tus-bench",
        abstract: "A load generator for tus servers (and plain HTTP PUT/HEAD peers).",
        discussion: """
            Scenarios:
              single      one upload of --bytes, in one PATCH or PATCHes of --chunk bytes
              concurrent  --concurrency uploads at once, --bytes each
              head        HEAD requests/s over --concurrency keep-alive connections for
                          --duration s (an upload per connection is created first;
                          --plain: HEAD or GET the URL itself)
              create      POST requests/s over --concurrency keep-alive connections for
                          --duration s
              put         raw PUT of --bytes to the URL (one ending in / gets bench-<n>
                          appended), --concurrency at once
              idle        hold --concurrency idle keep-alive connections (one OPTIONS or
                          HEAD each): the server's memory per connection

            --protocol ietf runs single, concurrent, head and create as Resumable Uploads for HTTP (the IETF draft, \
            --interop 3 to 9): an upload is one creation request carrying the whole body (with --chunk: the first \
            chunk, then appends), and every creation must be answered by a 104 with Location first.

            --checksum turns single and concurrent into the checksum scenario, an https URL into the TLS one. Results: \
            a markdown table on stdout, and one JSON object per run appended to --json-out. Sizes take the suffixes \
            K, M, G or KiB, MiB, GiB (powers of 1024).
            """)

    @Argument(help: "single, concurrent, head, create, put or idle.")
    var scenario: String

    @Option(help: "Endpoint (tus creation URL, or the URL to PUT/HEAD), http:// or https://.")
    var url: String

    @Option(help: "Bytes per upload or PUT (default: 1GiB).", transform: size)
    var bytes: Int64 = 1 << 30

    @Option(help: "Bytes per PATCH (0: the whole upload in one).", transform: size)
    var chunk: Int64 = 0

    @Option(name: [.customShort("c"), .long], help: "Connections (uploads) at once.")
    var concurrency = 1

    @Option(help: "Seconds a head, create or idle run lasts.")
    var duration = 5.0

    @Option(help: "Client event loops (threads).")
    var loops = 1

    @Option(help: "Send Upload-Checksum with this algorithm (sha1, sha256, ...).")
    var checksum: String?

    @Option(
        name: .customLong("server-pid"),
        help: "PIDs (comma-separated) whose CPU time and memory are measured alongside.")
    var serverPIDs: String = ""

    @Option(name: .customLong("json-out"), help: "Append one JSON object per run to this file.")
    var jsonOut: String?

    @Option(help: "Label of the rows in the table and the JSON.")
    var label = ""

    @Flag(help: "Accepted for old command lines: https certificates are never verified.")
    var insecure = false

    @Flag(help: "head: request the URL itself, not uploads (nginx, a static file).")
    var plain = false

    @Option(help: "Method of head --plain: HEAD or GET.")
    var method = "HEAD"

    @Option(help: "Bytes per body write (default: 1MiB).", transform: size)
    var fragment: Int64 = 1 << 20

    @Option(help: "Seconds a run may take before it is abandoned (exit 3).")
    var timeout = 600.0

    @Option(name: .customLong("repeat"), help: "Runs, reported one row each.")
    var repeats = 1

    @Option(name: .customLong("header"), help: "Extra request header 'Name: value' (repeatable), e.g. a bearer token.")
    var headers: [String] = []

    @Option(name: .customLong("protocol"), help: "tus (tus 1.0.0) or ietf (Resumable Uploads for HTTP).")
    var uploadProtocol = "tus"

    @Option(help: "Upload-Draft-Interop-Version with --protocol ietf (3 to 9).")
    var interop = ResumableUploadDraft.latest.interopVersion

    func validate() throws {
        guard ["tus", "ietf"].contains(uploadProtocol) else { throw ValidationError("--protocol must be tus or ietf") }
        guard ResumableUploadDraft(interop) != nil else { throw ValidationError("--interop must be 3 to 9") }
        if uploadProtocol == "ietf", checksum != nil {
            throw ValidationError("--checksum needs --protocol tus (Upload-Checksum is tus's)")
        }
        guard Self.scenarios.contains(scenario) else {
            throw ValidationError("unknown scenario '\(scenario)': \(Self.scenarios.joined(separator: ", "))")
        }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw ValidationError("--url must be http:// or https://")
        }
        if let checksum, DigestAlgorithm(rawValue: checksum) == nil {
            throw ValidationError("unknown checksum algorithm '\(checksum)'")
        }
        guard ["HEAD", "GET"].contains(method) else { throw ValidationError("--method must be HEAD or GET") }
        guard concurrency >= 0, loops >= 1, repeats >= 1, fragment >= 1 else {
            throw ValidationError("--concurrency must be >= 0; --loops, --repeat and --fragment >= 1")
        }
        guard serverPIDs.split(separator: ",").allSatisfy({ Int32($0) != nil }) else {
            throw ValidationError("--server-pid wants PID[,PID...]")
        }
        for header in headers where !header.contains(":") {
            throw ValidationError("--header wants \"Name: value\", got '\(header)'")
        }
    }

    var options: Options {
        var options = Options()
        options.scenario = scenario
        options.url = url
        options.bytes = bytes
        options.chunk = chunk
        options.concurrency = concurrency
        options.duration = duration
        options.loops = loops
        options.checksum = checksum.flatMap(DigestAlgorithm.init(rawValue:))
        options.serverPIDs = serverPIDs.split(separator: ",").compactMap { Int32($0) }
        options.jsonOut = jsonOut
        options.label = label
        options.plain = plain
        options.method = method == "GET" ? .GET : .HEAD
        options.fragment = Int(fragment)
        options.timeout = timeout
        options.repeats = repeats
        options.draft = uploadProtocol == "ietf" ? ResumableUploadDraft(interop) : nil
        options.extraHeaders = headers.map { text in
            let colon = text.firstIndex(of: ":")!  // validate() checked
            return (String(text[..<colon]), String(text[text.index(after: colon)...].drop { $0 == " " }))
        }
        return options
    }
}

/// What a run needs, plain and Sendable, handed to every loop.
struct Options: Sendable {
    var scenario = ""
    var url = ""
    var bytes: Int64 = 1 << 30
    var chunk: Int64 = 0
    var concurrency = 1
    var duration = 5.0
    var loops = 1
    var checksum: DigestAlgorithm?
    var serverPIDs: [Int32] = []
    var jsonOut: String?
    var label = ""
    /// Always: a benchmark measures the server, not certificate verification.
    let insecure = true
    var plain = false
    var method: HTTPMethod = .HEAD
    var fragment = 1 << 20
    var timeout = 600.0
    var repeats = 1
    /// `--header "Name: value"`, repeatable: added to every tus request (a bearer token for auth runs).
    var extraHeaders: [(String, String)] = []
    /// `--protocol ietf`: the draft at this interop version instead of tus 1.0.0.
    var draft: ResumableUploadDraft?
}

/// `1GiB`, `8M`, `4096`: powers of 1024 (TusCore's `ByteCount`, as every size flag).
func size(_ text: String) throws -> Int64 {
    do { return try ByteCount(parsing: text).bytes } catch { throw ValidationError("\(error)") }
}

func fail(_ message: String) -> Never {
    print(message)
    exit(2)
}

struct Target: Sendable {
    var https: Bool
    var host: String
    var port: Int
    var path: String

    init(_ url: String) {
        let https = url.hasPrefix("https://")
        guard https || url.hasPrefix("http://") else { fail("URL must be http:// or https://") }
        let rest = url.dropFirst(https ? 8 : 7)
        let authority = rest.prefix { $0 != "/" }
        path = String(rest.dropFirst(authority.count))
        if path.isEmpty { path = "/" }
        self.https = https
        if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            port = Int(authority[authority.index(after: colon)...]) ?? (https ? 443 : 80)
        } else {
            host = String(authority)
            port = https ? 443 : 80
        }
    }
}

// MARK: clocks and process accounting

func now() -> Double { MonotonicClock.seconds }

func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
        + Double(usage.ru_stime.tv_usec) / 1e6
}

func readFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&buffer, 1, buffer.count, file)
        if count <= 0 { break }
        bytes.append(contentsOf: buffer[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// utime + stime from /proc/PID/stat (fields 14 and 15), in seconds.
func processCPUSeconds(_ pid: Int32) -> Double? {
    guard let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A field of /proc/PID/status in bytes (VmRSS, VmHWM).
func processStatusBytes(_ pid: Int32, _ field: String) -> Int64? {
    guard let status = readFile("/proc/\(pid)/status") else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
        let number = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first
            .flatMap { Int64($0) }
        return number.map { $0 * 1024 }
    }
    return nil
}

// MARK: shared bytes

/// The body source: 8 MiB of xorshift bytes, made once. Every body starts at offset 0 of it and wraps, so two
/// bodies of the same length are identical and their checksum is computed once, before the clock starts.
let payload: ByteChunk = {
    let chunk = ByteChunk(capacity: 8 << 20)
    var state: UInt64 = 0x2545_F491_4F6C_DD1D
    let words = chunk.base.bindMemory(to: UInt64.self, capacity: chunk.capacity / 8)
    for index in 0..<(chunk.capacity / 8) {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        words[index] = state
    }
    return chunk
}()

final class PayloadProducer: HTTPBodyProducer {
    let length: Int64
    let fragment: Int
    var sent: Int64 = 0

    init(length: Int64, fragment: Int) {
        self.length = length
        self.fragment = fragment
    }

    func nextFragment(_ deliver: @escaping (Result<BodyFragment?, any Error>) -> Void) {
        guard sent < length else { return deliver(.success(nil)) }
        let start = Int(sent % Int64(payload.capacity))
        let count = min(fragment, payload.capacity - start, Int(length - sent))
        sent += Int64(count)
        deliver(.success(BodyFragment(chunk: payload, range: start..<(start + count))))
    }
}

func checksumHeader(_ algorithm: DigestAlgorithm, length: Int64) -> String {
    let digest = StreamingDigest(algorithm)
    var done: Int64 = 0
    while done < length {
        let count = min(Int64(payload.capacity), length - done)
        digest.update(UnsafeRawBufferPointer(start: payload.base, count: Int(count)))
        done += count
    }
    return "\(algorithm.rawValue) \(Base64.encode(digest.finalize()))"
}

// MARK: results

/// Filled by loop threads, read by main after join.
final class Tally: @unchecked Sendable {
    private let lock = Mutex(())
    private var latencies: [Double] = []
    private(set) var requests = 0
    private(set) var errors = 0
    private(set) var bodyBytes: Int64 = 0
    private(set) var errorSamples: [String] = []

    func merge(latencies more: [Double], requests: Int, errors: Int, bytes: Int64, samples: [String]) {
        lock.withLock { _ in
            latencies += more
            self.requests += requests
            self.errors += errors
            bodyBytes += bytes
            if errorSamples.count < 5 { errorSamples += samples.prefix(5 - errorSamples.count) }
        }
    }

    var sortedLatencies: [Double] { lock.withLock { _ in latencies.sorted() } }
}

/// Per-loop accumulator (loop thread only), merged into the tally when the loop is done.
final class LoopStats {
    var latencies: [Double] = []
    var requests = 0
    var errors = 0
    var bytes: Int64 = 0
    var samples: [String] = []

    func error(_ text: String) {
        errors += 1
        if samples.count < 5 { samples.append(text) }
    }
}

// MARK: workers

/// Everything one loop does: a set of connections, each running `scenario` until done.
final class Worker: @unchecked Sendable {
    let loop: EventLoop
    let options: Options
    let target: Target
    let tls: TLSContext?
    let connections: Int
    let indexBase: Int
    let stats = LoopStats()
    let tally: Tally
    let checksums: [Int64: String]
    var deadline = 0.0
    var active = 0
    var open: [HTTPClientConnection] = []
    var onAllConnected: (() -> Void)?

    init(
        loop: EventLoop, options: Options, target: Target, tls: TLSContext?, connections: Int, indexBase: Int,
        tally: Tally, checksums: [Int64: String]
    ) {
        self.loop = loop
        self.options = options
        self.target = target
        self.tls = tls
        self.connections = connections
        self.indexBase = indexBase
        self.tally = tally
        self.checksums = checksums
    }

    /// Loop thread (or before run()).
    func start() {
        deadline = now() + options.duration
        active = connections
        if connections == 0 { return finish() }
        for index in 0..<connections { connect(index: indexBase + index) }
    }

    func connect(index: Int) {
        HTTPClientConnection.connect(
            loop: loop, host: target.host, port: target.port, tls: tls, connectTimeoutMilliseconds: 30_000
        ) { [self] result in
            switch result {
            case .failure(let error):
                stats.error("connect: \(error)")
                connectionDone(nil)
            case .success(let connection):
                open.append(connection)
                run(connection, index: index)
            }
        }
    }

    func connectionDone(_ connection: HTTPClientConnection?) {
        if options.scenario != "idle" { connection?.close() }
        active -= 1
        guard active == 0 else { return }
        guard options.scenario == "idle" else { return finish() }
        idleAnswered.add(1, ordering: .releasing)
        let poll = LoopTimer(loop: loop)
        poll.start(afterMilliseconds: 20, repeatMilliseconds: 20) { [self] in
            guard idleRelease.load(ordering: .acquiring) else { return }
            poll.close()
            finish()
        }
    }

    func finish() {
        for connection in open { connection.close() }
        open = []
        tally.merge(
            latencies: stats.latencies, requests: stats.requests, errors: stats.errors, bytes: stats.bytes,
            samples: stats.samples)
        loop.stop()
    }

    func head(_ method: HTTPMethod, _ path: String) -> HTTPClientRequestHead {
        var head = HTTPClientRequestHead(method: method, path: path)
        if let draft = options.draft, !options.plain {
            head.headers.add("Upload-Draft-Interop-Version", String(draft.interopVersion))
        } else if !options.plain {
            head.headers.add("Tus-Resumable", "1.0.0")
        }
        for (name, value) in options.extraHeaders { head.headers.add(name, value) }
        return head
    }

    func run(_ connection: HTTPClientConnection, index: Int) {
        switch options.scenario {
        case "single" where options.draft != nil, "concurrent" where options.draft != nil: createWithBody(connection)
        case "single", "concurrent": create(connection, length: options.bytes) { [self] path in
                guard let path else { return connectionDone(connection) }
                patch(connection, path: path, offset: 0)
            }
        case "head":
            if options.plain { return headLoop(connection, path: target.path) }
            create(connection, length: 1000) { [self] path in
                guard let path else { return connectionDone(connection) }
                headLoop(connection, path: path)
            }
        case "create": createLoop(connection)
        case "put": put(connection, index: index)
        case "idle": idle(connection)
        default: fail("unknown scenario \(options.scenario)")
        }
    }

    func timed(
        _ connection: HTTPClientConnection, _ head: HTTPClientRequestHead, body: HTTPClientRequestBody,
        expect: ClosedRange<Int>, bytes: Int64 = 0, informational: ((HTTPResponseHead) -> Void)? = nil,
        _ next: @escaping (HTTPClientResponse?) -> Void
    ) {
        let started = now()
        connection.send(head, body: body, informational: informational) { [self] result in
            let elapsed = now() - started
            switch result {
            case .success(let response) where expect.contains(response.statusCode):
                stats.requests += 1
                stats.bytes += bytes
                stats.latencies.append(elapsed)
                next(response)
            case .success(let response):
                stats.error("\(head.method.rawValue) \(head.path): HTTP \(response.statusCode)")
                next(nil)
            case .failure(let error):
                stats.error("\(head.method.rawValue) \(head.path): \(error)")
                next(nil)
            }
        }
    }

    func create(_ connection: HTTPClientConnection, length: Int64, _ next: @escaping (String?) -> Void) {
        if let draft = options.draft { return createDraft(connection, draft: draft, length: length, next) }
        var request = head(.POST, target.path)
        request.headers.add("Upload-Length", String(length))
        let started = now()
        connection.send(request, body: .none) { [self] result in
            guard case .success(let response) = result, response.statusCode == 201,
                let location = response.headers["Location"]
            else {
                stats.error("POST: \((try? result.get().statusCode).map { "HTTP \($0)" } ?? "\(result)")")
                return next(nil)
            }
            if options.scenario == "create" { stats.latencies.append(now() - started) }
            next(Worker.pathOf(location))
        }
    }

    /// Draft creation without content (`Upload-Complete: ?0`), as a client that sends the body in appends does:
    /// the request the create scenario measures against tus's POST. Counts as an error without its 104.
    func createDraft(
        _ connection: HTTPClientConnection, draft: ResumableUploadDraft, length: Int64,
        _ next: @escaping (String?) -> Void
    ) {
        var request = head(.POST, target.path)
        for field in draft.headers(complete: false) where field.name != "Upload-Draft-Interop-Version" {
            request.headers.add(field.name, field.value)
        }
        if draft.sendsLength { request.headers.add("Upload-Length", String(length)) }
        let started = now()
        var announced: String? = nil
        connection.send(request, body: .none, informational: { head in
            if head.status.code == 104, announced == nil { announced = head.headers["Location"] }
        }) { [self] result in
            guard case .success(let response) = result, response.statusCode == 201,
                let location = response.headers["Location"]
            else {
                stats.error("POST: \((try? result.get().statusCode).map { "HTTP \($0)" } ?? "\(result)")")
                return next(nil)
            }
            guard announced == location else {
                stats.error("POST: 104 Location \(announced ?? "missing"), final Location \(location)")
                return next(nil)
            }
            if options.scenario == "create" { stats.latencies.append(now() - started) }
            next(Worker.pathOf(location))
        }
    }

    /// A draft upload of --bytes: one creation request with the body (`Upload-Complete: ?1`), or with --chunk the
    /// first chunk (`?0`) and appends after it. Timed like tus's PATCHes; the 104 must come first.
    func createWithBody(_ connection: HTTPClientConnection) {
        guard let draft = options.draft else { return connectionDone(connection) }
        let size = options.chunk > 0 ? min(options.chunk, options.bytes) : options.bytes
        var request = head(.POST, target.path)
        for field in draft.headers(complete: size == options.bytes) where field.name != "Upload-Draft-Interop-Version" {
            request.headers.add(field.name, field.value)
        }
        if draft.sendsLength { request.headers.add("Upload-Length", String(options.bytes)) }
        request.headers.add("Content-Type", "application/octet-stream")
        var announced: String? = nil
        timed(
            connection, request, body: .stream(length: size, PayloadProducer(length: size, fragment: options.fragment)),
            expect: 200...201, bytes: size,
            informational: { head in
                if head.status.code == 104, announced == nil { announced = head.headers["Location"] }
            }
        ) { [self] response in
            guard let response else { return connectionDone(connection) }
            guard let location = announced, response.headers["Location"] ?? location == location else {
                stats.error("POST: no 104 with the upload's Location before the final response")
                return connectionDone(connection)
            }
            append(connection, draft: draft, path: Worker.pathOf(location), offset: size)
        }
    }

    func append(_ connection: HTTPClientConnection, draft: ResumableUploadDraft, path: String, offset: Int64) {
        guard offset < options.bytes else { return connectionDone(connection) }
        let size = min(options.chunk, options.bytes - offset)
        var request = head(.PATCH, path)
        for field in draft.headers(complete: offset + size == options.bytes)
        where field.name != "Upload-Draft-Interop-Version" {
            request.headers.add(field.name, field.value)
        }
        request.headers.add("Upload-Offset", String(offset))
        if let type = draft.appendContentType { request.headers.add("Content-Type", type) }
        timed(
            connection, request, body: .stream(length: size, PayloadProducer(length: size, fragment: options.fragment)),
            expect: 200...204, bytes: size
        ) { [self] response in
            guard response != nil else { return connectionDone(connection) }
            append(connection, draft: draft, path: path, offset: offset + size)
        }
    }

    static func pathOf(_ location: String) -> String {
        guard location.hasPrefix("http") else { return location }
        let rest = location.drop { $0 != "/" }.dropFirst(2)  // after "//"
        return String(rest.drop { $0 != "/" })
    }

    func patch(_ connection: HTTPClientConnection, path: String, offset: Int64) {
        guard offset < options.bytes else { return connectionDone(connection) }
        let size = options.chunk > 0 ? min(options.chunk, options.bytes - offset) : options.bytes - offset
        var request = head(.PATCH, path)
        request.headers.add("Content-Type", "application/offset+octet-stream")
        request.headers.add("Upload-Offset", String(offset))
        if let checksum = checksums[size] { request.headers.add("Upload-Checksum", checksum) }
        timed(
            connection, request, body: .stream(length: size, PayloadProducer(length: size, fragment: options.fragment)),
            expect: 204...204, bytes: size
        ) { [self] response in
            guard response != nil else { return connectionDone(connection) }
            patch(connection, path: path, offset: offset + size)
        }
    }

    func headLoop(_ connection: HTTPClientConnection, path: String) {
        guard now() < deadline else { return connectionDone(connection) }
        timed(connection, head(options.plain ? options.method : .HEAD, path), body: .none, expect: 200...299) {
            [self] response in
            guard response != nil, connection.isReusable else { return connectionDone(connection) }
            headLoop(connection, path: path)
        }
    }

    func createLoop(_ connection: HTTPClientConnection) {
        guard now() < deadline else { return connectionDone(connection) }
        create(connection, length: 1000) { [self] path in
            guard path != nil, connection.isReusable else { return connectionDone(connection) }
            stats.requests += 1
            createLoop(connection)
        }
    }

    func put(_ connection: HTTPClientConnection, index: Int) {
        let path = target.path.hasSuffix("/") ? "\(target.path)bench-\(index)" : target.path
        let request = HTTPClientRequestHead(method: .PUT, path: path)
        timed(
            connection, request,
            body: .stream(length: options.bytes, PayloadProducer(length: options.bytes, fragment: options.fragment)),
            expect: 200...299, bytes: options.bytes
        ) { [self] _ in connectionDone(connection) }
    }

    func idle(_ connection: HTTPClientConnection) {
        let request = options.plain ? head(.HEAD, target.path) : head(.OPTIONS, target.path)
        timed(connection, request, body: .none, expect: 200...299) { [self] _ in
            connectionDone(connection)  // the connection stays open (held in `open`) until finish()
        }
    }
}

// MARK: running

struct RunResult {
    var wall: Double
    var clientCPU: Double
    var serverCPU: Double?
    var serverPeakRSS: Int64?
    /// Largest RssAnon seen (sampled every 10 ms): the server's private memory, without the shared-library
    /// text that VmHWM also counts (about 15 MiB of the Swift runtime and Foundation for tus-server, 1.5 MiB for
    /// a static Go binary), which no load changes.
    var serverPeakAnonymous: Int64?
    var serverRSSBefore: Int64?
    var serverRSSHeld: Int64?
    var tally: Tally
}

func runOnce(_ options: Options) -> RunResult {
    let target = Target(options.url)
    let tls: TLSContext? = target.https ? (try? TLSContext.client(caFile: nil, insecure: options.insecure)) : nil
    if target.https && tls == nil { fail("cannot create TLS context") }
    var checksums: [Int64: String] = [:]
    if let algorithm = options.checksum {
        let size = options.chunk > 0 ? min(options.chunk, options.bytes) : options.bytes
        checksums[size] = checksumHeader(algorithm, length: size)
        if options.chunk > 0, options.bytes % options.chunk != 0 {
            checksums[options.bytes % options.chunk] = checksumHeader(algorithm, length: options.bytes % options.chunk)
        }
    }
    let tally = Tally()
    idleAnswered.store(0, ordering: .relaxed)
    idleRelease.store(false, ordering: .relaxed)
    let loopCount = min(options.loops, max(1, options.concurrency))
    var workers: [Worker] = []
    var base = 0
    for index in 0..<loopCount {
        let share = options.concurrency / loopCount + (index < options.concurrency % loopCount ? 1 : 0)
        let loop = try! EventLoop()
        workers.append(
            Worker(
                loop: loop, options: options, target: target, tls: tls, connections: share, indexBase: base,
                tally: tally, checksums: checksums))
        base += share
    }
    let serverCPUBefore = options.serverPIDs.compactMap(processCPUSeconds).reduce(0, +)
    let serverRSSBefore = options.serverPIDs.compactMap { processStatusBytes($0, "VmRSS") }.reduce(0, +)
    let cpuBefore = ownCPUSeconds()
    let anonymousSampler = options.serverPIDs.isEmpty ? nil : PeakSampler(pids: options.serverPIDs, field: "RssAnon")
    let started = now()
    var heldRSS: Int64?
    for worker in workers {
        worker.start()
        worker.loop.runOnNewThread(name: "tus-bench")
    }
    let watchdog = Watchdog(seconds: options.timeout)
    if options.scenario == "idle" {
        // Connections stay open after their one request; sample the server while all of them are held.
        while idleAnswered.load(ordering: .acquiring) < workers.count { usleep(20_000) }
        usleep(1_000_000)
        heldRSS = options.serverPIDs.compactMap { processStatusBytes($0, "VmRSS") }.reduce(0, +)
        idleRelease.store(true, ordering: .releasing)
    }
    for worker in workers { worker.loop.join() }
    watchdog.cancel()
    let wall = now() - started
    let peakAnonymous = anonymousSampler?.stop()
    let cpu = ownCPUSeconds() - cpuBefore
    let pids = options.serverPIDs
    let serverCPU = pids.isEmpty ? nil : pids.compactMap(processCPUSeconds).reduce(0, +) - serverCPUBefore
    let peak = pids.isEmpty ? nil : pids.compactMap { processStatusBytes($0, "VmHWM") }.reduce(0, +)
    return RunResult(
        wall: wall, clientCPU: cpu, serverCPU: serverCPU, serverPeakRSS: peak, serverPeakAnonymous: peakAnonymous,
        serverRSSBefore: pids.isEmpty ? nil : serverRSSBefore, serverRSSHeld: heldRSS, tally: tally)
}

/// Samples a /proc/PID/status field (summed over the PIDs) every 10 ms on its own thread; `stop` returns the
/// largest sum seen. The kernel keeps a peak only for the whole RSS (VmHWM), not for its private part.
final class PeakSampler: @unchecked Sendable {
    private let running = Atomic<Bool>(true)
    private let peak = Atomic<Int64>(0)
    private var thread = pthread_t()

    init(pids: [Int32], field: String) {
        let box = Unmanaged.passRetained(SamplerContext(sampler: self, pids: pids, field: field)).toOpaque()
        pthread_create(
            &thread, nil,
            { argument in
                let context = Unmanaged<SamplerContext>.fromOpaque(argument!).takeRetainedValue()
                while context.sampler.running.load(ordering: .relaxed) {
                    let sum = context.pids.compactMap { processStatusBytes($0, context.field) }.reduce(0, +)
                    if sum > context.sampler.peak.load(ordering: .relaxed) { context.sampler.peak.store(sum, ordering: .relaxed) }
                    usleep(10_000)
                }
                return nil
            }, box)
    }

    func stop() -> Int64 {
        running.store(false, ordering: .relaxed)
        pthread_join(thread, nil)
        return peak.load(ordering: .relaxed)
    }
}

private final class SamplerContext {
    let sampler: PeakSampler
    let pids: [Int32]
    let field: String
    init(sampler: PeakSampler, pids: [Int32], field: String) {
        self.sampler = sampler
        self.pids = pids
        self.field = field
    }
}

/// Idle scenario: loops that have every connection answered and held; main sets `idleRelease` after sampling.
let idleAnswered = Atomic<Int>(0)
let idleRelease = Atomic<Bool>(false)

/// Aborts the process when a run exceeds its time bound, so a hung server never hangs the suite.
final class Watchdog: @unchecked Sendable {
    private let cancelled = Atomic<Bool>(false)

    init(seconds: Double) {
        let box = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let context = UnsafeMutablePointer<(UnsafeMutableRawPointer, Double)>.allocate(capacity: 1)
        context.initialize(to: (box, seconds))
        pthread_create(
            &thread, nil,
            { argument in
                let context = argument!.assumingMemoryBound(to: (UnsafeMutableRawPointer, Double).self)
                let (box, seconds) = context.pointee
                context.deallocate()
                let watchdog = Unmanaged<Watchdog>.fromOpaque(box).takeRetainedValue()
                let end = now() + seconds
                while now() < end {
                    if watchdog.cancelled.load(ordering: .relaxed) { return nil }
                    usleep(100_000)
                }
                if !watchdog.cancelled.load(ordering: .relaxed) {
                    print("tus-bench: timed out after \(seconds) s")
                    exit(3)
                }
                return nil
            }, context)
        pthread_detach(thread)
    }

    func cancel() { cancelled.store(true, ordering: .relaxed) }
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let index = min(sorted.count - 1, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1)
    return sorted[max(0, index)]
}

func format(_ value: Double, _ places: Int = 2) -> String {
    var scale = 1.0
    for _ in 0..<places { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    return "\(rounded)"
}

func report(_ options: Options, _ runs: [RunResult]) {
    // The median run by wall time stands for the set; all throughputs are listed too.
    let ordered = runs.sorted { $0.wall < $1.wall }
    let result = ordered[ordered.count / 2]
    let tally = result.tally
    let sorted = tally.sortedLatencies
    let mbps = Double(tally.bodyBytes) / result.wall / 1e6
    let rps = Double(tally.requests) / result.wall
    let loopsUsed = Double(min(options.loops, max(1, options.concurrency)))
    let clientLoad = result.clientCPU / result.wall / loopsUsed
    let saturated = clientLoad > 0.9
    let perConnectionKiB: Double? = {
        guard options.scenario == "idle", let held = result.serverRSSHeld, let before = result.serverRSSBefore,
            options.concurrency > 0
        else { return nil }
        return Double(held - before) / Double(options.concurrency) / 1024
    }()
    var fields: [(String, String)] = [
        ("label", "\"\(options.label)\""), ("scenario", "\"\(options.scenario)\""), ("url", "\"\(options.url)\""),
        ("bytes", "\(options.bytes)"), ("chunk", "\(options.chunk)"), ("concurrency", "\(options.concurrency)"),
        ("loops", "\(Int(loopsUsed))"), ("checksum", options.checksum.map { "\"\($0.rawValue)\"" } ?? "null"),
        ("runs", "\(runs.count)"), ("wall_seconds", format(result.wall, 4)), ("MBps", format(mbps, 1)),
        ("MBps_all_runs", "[" + runs.map { format(Double($0.tally.bodyBytes) / $0.wall / 1e6, 1) }.joined(separator: ",") + "]"),
        ("requests", "\(tally.requests)"), ("requests_per_second", format(rps, 1)),
        ("rps_all_runs", "[" + runs.map { format(Double($0.tally.requests) / $0.wall, 1) }.joined(separator: ",") + "]"),
        ("p50_ms", format(percentile(sorted, 50) * 1000, 3)), ("p99_ms", format(percentile(sorted, 99) * 1000, 3)),
        ("max_ms", format((sorted.last ?? 0) * 1000, 3)), ("errors", "\(tally.errors)"),
        ("client_cpu_seconds", format(result.clientCPU, 3)), ("client_cpu_per_loop", format(clientLoad, 3)),
        ("client_saturated", "\(saturated)"),
        ("server_cpu_seconds", result.serverCPU.map { format($0, 3) } ?? "null"),
        ("server_peak_rss_MiB", result.serverPeakRSS.map { format(Double($0) / 1_048_576, 2) } ?? "null"),
        ("server_peak_anon_MiB", result.serverPeakAnonymous.map { format(Double($0) / 1_048_576, 2) } ?? "null"),
        ("server_rss_per_connection_KiB", perConnectionKiB.map { format($0, 2) } ?? "null"),
        ("error_samples", "[" + tally.errorSamples.map { "\"\($0.replacingQuotes())\"" }.joined(separator: ",") + "]"),
    ]
    if runs.count == 1 { fields.removeAll { $0.0 == "MBps_all_runs" || $0.0 == "rps_all_runs" } }
    let json = "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    print("| label | scenario | MB/s | req/s | p50 ms | p99 ms | max ms | errors | client CPU s | server CPU s | server peak RSS MiB | peak private MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        "| \(options.label) | \(options.scenario) | \(format(mbps, 1)) | \(format(rps, 1)) | "
            + "\(format(percentile(sorted, 50) * 1000, 3)) | \(format(percentile(sorted, 99) * 1000, 3)) | "
            + "\(format((sorted.last ?? 0) * 1000, 3)) | \(tally.errors) | \(format(result.clientCPU, 3)) | "
            + "\(result.serverCPU.map { format($0, 3) } ?? "-") | "
            + "\(result.serverPeakRSS.map { format(Double($0) / 1_048_576, 2) } ?? "-") | "
            + "\(result.serverPeakAnonymous.map { format(Double($0) / 1_048_576, 2) } ?? "-") |")
    if let perConnectionKiB { print("server RSS per idle connection: \(format(perConnectionKiB, 2)) KiB") }
    if saturated {
        print("WARNING: tus-bench's own CPU was saturated (\(format(clientLoad, 2)) CPU s per wall s per loop); the client may be the bottleneck — add --loops")
    }
    for sample in tally.errorSamples { print("error: \(sample)") }
    if let path = options.jsonOut, let file = fopen(path, "a") {
        fputs(json + "\n", file)
        fclose(file)
    } else {
        print(json)
    }
}

extension String {
    func replacingQuotes() -> String {
        String(map { $0 == "\"" ? "'" : $0 })
    }
}

let options = Arguments.parseOrExit().options
signal(SIGPIPE, SIG_IGN)
if options.scenario == "idle" || options.concurrency > 900 { _ = raiseOpenFileLimit() }
_ = payload.capacity  // make the bytes before any clock starts
var runs: [RunResult] = []
for _ in 0..<options.repeats {
    runs.append(runOnce(options))
}
report(options, runs)
