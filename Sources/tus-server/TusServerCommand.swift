public import ArgumentParser
import Dispatch
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
public import Logging
import TusCrypto
import TusCore
import TusHTTP1
import TusHTTPServer
import TusHooks
import TusLoop
import TusOperations
import TusProtocol
import TusStore

@main
struct TusServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tus-server",
        abstract: "A tus 1.0.0 resumable-upload server.",
        // The one place the release is named: scripts/package.sh reads it from `tus-server --version`.
        version: "0.1.0")

    @Option(help: "Address to listen on.")
    var host = "0.0.0.0"

    @Option(help: "Port to listen on; 0 picks a free port (printed in the start-up line).")
    var port = 8080

    @Option(name: .customLong("base-path"), help: "URL path under which uploads are created and served.")
    var basePath = "/files/"

    @Option(name: .customLong("upload-dir"), help: "Directory holding upload data and .info records.")
    var uploadDir = "./data"

    @Option(help: "Store: 'file' (restart-safe, on --upload-dir), 's3' (object storage: --s3-*), or 'memory' (lost at exit; tests and demos).")
    var store: StoreKind = .file

    @Option(name: .customLong("s3-bucket"), help: "--store s3: the bucket (it must exist).")
    var s3Bucket: String?

    @Option(name: .customLong("s3-endpoint"), help: "--store s3: http(s)://host[:port] of the S3 API (AWS: https://s3.REGION.amazonaws.com). Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN), else the [default] profile of ~/.aws/credentials.")
    var s3Endpoint: String?

    @Option(name: .customLong("s3-region"), help: "--store s3: region for request signing.")
    var s3Region = "us-east-1"

    @Option(name: .customLong("s3-prefix"), help: "--store s3: prefix of every object key (P<id>, P<id>.info, P<id>.part.N).")
    var s3Prefix = ""

    @Option(name: .customLong("s3-part-size"), help: "--store s3: bytes per multipart part (suffix K, M, G = powers of 1024), at least 5 MiB (5242880 or 5M); uploads are limited to 10,000 parts.", transform: parseByteCount)
    var s3PartSize: Int64 = 8 << 20

    @Option(name: .customLong("s3-concurrency"), help: "--store s3: part uploads in flight per upload.")
    var s3Concurrency = 4

    @Flag(name: .customLong("s3-path-style"), help: "--store s3: address the bucket as endpoint/bucket/key (Ceph RGW, MinIO) instead of bucket.endpoint/key.")
    var s3PathStyle = false

    @Option(name: .customLong("s3-timeout"), help: "--store s3: seconds to connect, and seconds a request may make no progress, before it is retried (up to 4 attempts with backoff).")
    var s3Timeout: Double = 15

    @Option(help: "Durability of acknowledged bytes: none (survives a process crash), commit (also power loss; default), always.")
    var fsync: FsyncFlag = .commit

    @Option(help: "--store file without --redis: where a new upload's record goes: 'files' (<id>.info next to <id>; default) or 'log' (appended to records.<n>.log: one file per upload instead of two). Both kinds are read at start.")
    var records: RecordsFlag = .files

    @Option(help: "Event loops (threads) serving the port; default: the number of cores.")
    var loops: Int?

    @Option(name: .customLong("max-size"), help: "Largest upload in bytes (Tus-Max-Size; suffix K, M, G, T = powers of 1024); 0 = unlimited.", transform: parseByteCount)
    var maxSize: Int64 = 0

    @Option(help: "Seconds an unfinished upload lives after its last PATCH; 0 = never expire.")
    var expiration: Int64 = 604_800

    @Flag(name: .customLong("relative-location"), help: "Send Location as a path instead of an absolute URL.")
    var relativeLocationFlag = false

    @Flag(name: .customLong("behind-proxy"), help: "Trust X-Forwarded-Host/-Proto and Forwarded when building Location.")
    var behindProxy = false

    @Option(name: .customLong("min-free-space"), help: "Free space the upload directory must keep: below it, new uploads (POST) get 507 while uploads in progress may finish. Bytes (suffix K, M, G, T = powers of 1024) or a percent of the file system (e.g. 5%); 0 = off. A full disk (ENOSPC, EDQUOT) answers 507 either way.")
    var minFreeSpace = "0"

    @Flag(name: .customLong("disable-download"), help: "Do not serve uploads back (GET answers 405).")
    var disableDownload = false

    @Flag(
        name: .customLong("disable-termination"),
        help: "Do not offer the termination extension (DELETE answers 405).")
    var disableTermination = false

    @Option(name: .customLong("cors-origins"), help: "Comma-separated allowed origins, or * for any.")
    var corsOrigins = "*"

    @Flag(name: .customLong("cors-allow-credentials"), help: "Send Access-Control-Allow-Credentials (echoes the origin).")
    var corsAllowCredentials = false

    @Option(
        name: .customLong("max-connections"),
        help: """
            Open connections beyond this are answered 503. Default: 10000, or as many as the open file limit \
            (raised to its hard limit at start) can hold, 2 descriptors each.
            """)
    var maxConnections: Int?

    @Option(name: .customLong("head-timeout"), help: "Seconds allowed to send a complete request head.")
    var headTimeout: Double = 30

    @Option(name: .customLong("idle-timeout"), help: "Seconds a keep-alive connection may stay idle.")
    var idleTimeout: Double = 60

    @Option(name: .customLong("body-timeout"), help: "Seconds without progress of a request body (bytes so far are kept) or of a response write before the connection is cut.")
    var bodyTimeout: Double = 60

    @Option(name: .customLong("min-body-rate"), help: "Bytes per second a request body must average over each --body-timeout period, or the connection is cut as on a body timeout (bytes so far are kept); 0 = off. Default 128: below the ~130-250 bytes/s a GPRS uplink gives each of 20 parallel uploads, yet 128 times the cost of a 1 byte/s trickle.")
    var minBodyRate = 128

    @Option(name: .customLong("shutdown-timeout"), help: "Seconds in-flight requests get to finish after SIGTERM/SIGINT.")
    var shutdownTimeout: Double = 10

    @Option(name: .customLong("lock-timeout"), help: "Seconds a request waits for another request on the same upload to let go before 423.")
    var lockTimeout: Double = 3

    @Option(help: "redis://[:password@]HOST:PORT[/DB] or redis+sentinel://[:password@]HOST:PORT[,HOST:PORT...]/MASTER-NAME[/DB] or redis+cluster://[:password@]HOST:PORT[,HOST:PORT...] (Redis Cluster; seeds for the slot map) (rediss://, rediss+sentinel://, rediss+cluster:// for TLS): keep upload state and locks in Redis, shared by every instance started with the same --redis and the same data (one cluster). Data stays under --upload-dir (a shared file system). With Sentinel the master is found through the sentinels and followed across failovers.")
    var redis: String?

    @Option(name: .customLong("redis-min-replicas"), help: "Replicas that must confirm a change (WAIT) before the client is told it is stored (201/204), so that a failover cannot lose it; 503 when fewer confirm within 1 s. Default: 1 with redis+sentinel://, 0 (the master's word is enough) with redis:// and redis+cluster:// (there, the replicas of the master that holds the upload).")
    var redisMinReplicas: Int?

    @Option(name: .customLong("redis-ca"), help: "With rediss://: PEM CA bundle to verify Redis's certificate (default: the system's CAs).")
    var redisCA: String?

    @Option(name: .customLong("redis-cert"), help: "With rediss://: PEM client certificate to present (Redis with tls-auth-clients yes); needs --redis-key.")
    var redisCertificate: String?

    @Option(name: .customLong("redis-key"), help: "With rediss://: PEM private key of --redis-cert.")
    var redisKey: String?

    @Option(name: .customLong("redis-prefix"), help: "Prefix of every Redis key and channel, so several clusters can share one Redis.")
    var redisPrefix = "tus:"

    @Option(name: .customLong("lock-lease"), help: "Seconds a cluster lock lives without renewal: how soon an upload held by a dead instance is free (with --redis).")
    var lockLease: Double = 10

    @Option(name: .customLong("max-head-size"), help: "Largest request head in bytes (431 beyond).")
    var maxHeadSize = 16 * 1024

    @Option(name: .customLong("tls-certificate"), help: "PEM certificate (full chain): serve HTTPS. Needs --tls-key.")
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key matching --tls-certificate.")
    var tlsKey: String?

    @Option(name: .customLong("tls-mode"), help: "tls12 (TLS 1.2+1.3, Mozilla intermediate; default), tls13 (1.3 only), tls12-strong.")
    var tlsMode: TLSModeFlag = .tls12

    @Option(name: .customLong("metrics-path"), help: "Path of the Prometheus metrics (GET, no authentication: keep it off the public network).")
    var metricsPath = "/metrics"

    @Flag(name: .customLong("no-metrics"), help: "Do not count or serve metrics.")
    var noMetrics = false

    @Option(name: .customLong("auth-jwt-key"), help: "Require Authorization: Bearer <JWT> on every request but preflights, verified with this key: a PEM public key (RSA: RS256, P-256: ES256) or a shared secret of at least 32 bytes (HS256). The token's sub owns the uploads it creates; max_size caps Upload-Length.")
    var authJWTKey: String?

    @Option(name: .customLong("auth-leeway"), help: "Seconds of clock skew tolerated for a token's exp and nbf.")
    var authLeeway: Int64 = 30

    @Option(name: .customLong("hooks-http"), help: "POST each enabled hook as tusd v2 JSON to this URL; the JSON answer can reject, change or stop uploads (see README: Hooks).")
    var hooksHTTP: String?

    @Option(name: .customLong("hooks-http-retry"), help: "Further attempts after a failed hook request or a 5xx answer.")
    var hooksHTTPRetry = 3

    @Option(name: .customLong("hooks-http-backoff"), help: "Wait before each retry (1s, 500ms).")
    var hooksHTTPBackoff = "1s"

    @Option(name: .customLong("hooks-http-forward-headers"), help: "Comma-separated request headers copied onto hook requests.")
    var hooksHTTPForwardHeaders = ""

    @Option(name: .customLong("hooks-dir"), help: "Run DIR/<event> (JSON on stdin, JSON answer on stdout) for each enabled event that has an executable there.")
    var hooksDir: String?

    @Option(name: .customLong("hooks-enabled-events"), help: "Comma-separated: pre-create, post-create, post-receive, pre-finish, post-finish, pre-terminate, post-terminate, pre-access.")
    var hooksEnabledEvents = "pre-create,post-create,post-receive,post-terminate,post-finish"

    @Option(name: .customLong("progress-hooks-interval"), help: "Milliseconds between post-receive hooks of a running upload.")
    var progressHooksInterval: UInt64 = 1000

    @Option(name: .customLong("hooks-timeout"), help: "Seconds a hook call (each HTTP attempt, or an executable) may take.")
    var hooksTimeout: Double = 30

    @Option(name: .customLong("pre-access-cache"), help: "Seconds a pre-access answer is reused for the same upload, method and credential; 0 = ask every time.")
    var preAccessCache: Double = 0

    @Option(name: .customLong("http2"), help: "on or off: offer HTTP/2 (ALPN h2) on TLS connections; default on. Plain connections speak HTTP/2 only with --h2c.")
    var http2: OnOff = .on

    @Option(name: .customLong("splice"), help: "on or off: move large plain-HTTP PATCH bodies (Content-Length, no Upload-Checksum, file store, fsync none or commit) socket -> pipe -> file with splice(2), skipping the copy through user memory; default on.")
    var splice: OnOff = .on

    @Flag(name: .customLong("h2c"), help: "Also accept cleartext HTTP/2 with prior knowledge on plain connections (behind a proxy that speaks h2c to its backends); HTTP/1.1 keeps working on the same port.")
    var h2c = false

    @Option(name: .customLong("http2-stream-window"), help: "HTTP/2 per-stream receive window in bytes (SETTINGS_INITIAL_WINDOW_SIZE): what one upload stream may have in flight before its bytes are written.")
    var http2StreamWindow: Int32 = 4 << 20

    @Option(name: .customLong("http2-connection-window"), help: "HTTP/2 connection receive window in bytes: bounds the body bytes one connection holds across all its streams.")
    var http2ConnectionWindow: Int32 = 8 << 20

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .customLong("log-format"), help: "text or json (to stderr).")
    var logFormat: LogFormat = .text

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
        if let loops, loops < 1 { throw ValidationError("--loops must be at least 1") }
        guard maxSize >= 0 else { throw ValidationError("--max-size must be >= 0") }
        guard expiration >= 0 else { throw ValidationError("--expiration must be >= 0") }
        if let maxConnections, maxConnections < 1 { throw ValidationError("--max-connections must be > 0") }
        guard FreeSpaceRequirement(parsing: minFreeSpace) != nil else {
            throw ValidationError("--min-free-space must be bytes (e.g. 500M, 10G) or a percent (e.g. 5%)")
        }
        guard minBodyRate >= 0 else { throw ValidationError("--min-body-rate must be >= 0") }
        guard (65_535...(1 << 30)).contains(http2StreamWindow), (65_535...(1 << 30)).contains(http2ConnectionWindow) else {
            throw ValidationError("--http2-stream-window and --http2-connection-window must be 65535...1073741824")
        }
        guard maxHeadSize >= 1024 else { throw ValidationError("--max-head-size must be at least 1024") }
        if redis != nil && store == .memory {
            throw ValidationError("--redis shares state between instances; their data must be shared too (--store file or s3)")
        }
        if store == .s3 && (s3Bucket == nil || s3Endpoint == nil) {
            throw ValidationError("--store s3 needs --s3-bucket and --s3-endpoint")
        }
        if redis != nil && lockLease < 1 { throw ValidationError("--lock-lease must be at least 1 second") }
        if let redisMinReplicas, redisMinReplicas < 0 {
            throw ValidationError("--redis-min-replicas must be 0 or more")
        }
        if redisCA != nil || redisCertificate != nil || redisKey != nil {
            guard redis?.hasPrefix("rediss://") == true || redis?.hasPrefix("rediss+sentinel://") == true
                || redis?.hasPrefix("rediss+cluster://") == true
            else {
                throw ValidationError("--redis-ca, --redis-cert and --redis-key need a rediss:// --redis URL")
            }
            guard (redisCertificate == nil) == (redisKey == nil) else {
                throw ValidationError("--redis-cert and --redis-key go together")
            }
        }
        if hooksHTTP != nil && hooksDir != nil { throw ValidationError("--hooks-http and --hooks-dir exclude each other") }
        let unknown = Set(hooksEnabledEvents.split(separator: ",").map { $0.trimmingCharacters(in: " ") })
            .subtracting(HookConfiguration.allEvents).subtracting([""])
        if !unknown.isEmpty { throw ValidationError("--hooks-enabled-events: unknown \(unknown.sorted())") }
        if (tlsCertificate == nil) != (tlsKey == nil) {
            throw ValidationError("--tls-certificate and --tls-key go together")
        }
    }

    func run() throws {
        // One malloc arena for all threads: the loops allocate little, and each extra arena keeps its pages.
        MallocTuning.limitArenas(to: 1)
        let format = logFormat
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StderrLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tus-server")

        // Signals are taken synchronously by the main thread (sigwait) below; block them before any loop
        // thread starts so that every thread inherits the mask and none of them gets the signal instead.
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        var tlsContext: TLSContext?
        if let tlsCertificate, let tlsKey {
            do {
                tlsContext = try TLSContext.server(
                certificatePath: tlsCertificate, keyPath: tlsKey, mode: tlsMode.mode, offersHTTP2: http2 == .on)
            } catch {
                logger.critical("TLS: \(error)")
                throw ExitCode.failure
            }
        }

        let uploadStore: any UploadStore
        var locker: any UploadLocker = MemoryLocker()
        var cluster: RedisCluster?
        var s3: S3Backend?
        switch (store, redis) {
        case (.s3, _):
            do {
                let made = try S3Backend(command: self, logger: logger)
                s3 = made
                cluster = made.cluster
                uploadStore = made.store
                locker = made.locker
            } catch {
                logger.critical("cannot set up the S3 store: \(error)")
                throw ExitCode.failure
            }
        case (.memory, _):
            uploadStore = MemoryUploadStore()
        case (.file, nil):
            do {
                uploadStore = try makeFileStore(directory: uploadDir, fsync: fsync, records: records, logger: logger)
            } catch {
                logger.critical("cannot open upload directory \(uploadDir): \(error)")
                throw ExitCode.failure
            }
        case (.file, let url?):
            do {
                let made = try RedisCluster(
                    configuration: redisConfiguration(url), prefix: redisPrefix, minimumReplicas: redisMinReplicas,
                    leaseMilliseconds: milliseconds(lockLease), directory: uploadDir, fsync: fsync, logger: logger)
                cluster = made
                uploadStore = made.store
                locker = made.locker
            } catch {
                logger.critical("cannot set up the cluster store: \(error)")
                throw ExitCode.failure
            }
        }

        var effectiveMaxSize = maxSize > 0 ? maxSize : nil
        if store == .s3 {
            // 10,000 parts of --s3-part-size is all one multipart upload can hold.
            let limit = s3PartSize * 10_000
            effectiveMaxSize = min(effectiveMaxSize ?? limit, limit)
        }
        var tus = TusConfiguration(
            basePath: basePath, maxSize: effectiveMaxSize, expirationSeconds: expiration,
            relativeLocation: relativeLocationFlag, behindProxy: behindProxy,
            corsOrigins: corsOrigins == "*"
                ? nil : corsOrigins.split(separator: ",").map { String($0.filter { $0 != " " }) },
            corsAllowCredentials: corsAllowCredentials,
            lockReleaseTimeoutMilliseconds: milliseconds(lockTimeout))
        if disableDownload { tus.withheldCapabilities.insert(.download) }
        if disableTermination { tus.withheldCapabilities.insert(.termination) }
        if store == .file, let required = FreeSpaceRequirement(parsing: minFreeSpace),
            required != .bytes(0), required != .percent(0)
        {
            let directory = uploadDir
            tus.minFreeSpace = required
            tus.freeSpace = { diskSpace(of: directory) }
        }
        let lateServer = LateServer()
        let metrics = noMetrics ? nil : MetricsRegistry(connectionsOpen: { lateServer.openConnections })
        var eventHandlers: [any UploadEventHandler] = []
        if let metrics { eventHandlers.append(metrics) }
        let hooks: HookWiring?
        do {
            hooks = try HookWiring(command: self, metrics: metrics, logger: logger)
        } catch {
            logger.critical("hooks: \(error)")
            throw ExitCode.failure
        }
        if let hooks { eventHandlers.append(hooks.dispatcher) }
        let events: any UploadEventHandler = eventHandlers.isEmpty ? NoUploadEvents() : UploadEventFanOut(eventHandlers)
        tus.progressIntervalMilliseconds = progressHooksInterval
        var authorizer: (any RequestAuthorizer)?
        if let authJWTKey {
            do {
                authorizer = BearerTokenAuthorizer(
                    verifier: try JWTVerifier(keyFile: authJWTKey, leewaySeconds: authLeeway))
            } catch {
                logger.critical("--auth-jwt-key \(authJWTKey): \(error)")
                throw ExitCode.failure
            }
        }
        let tusHandler = TusHandler(
            configuration: tus, store: uploadStore, locker: locker, events: events, authorizer: authorizer)
        var operations = OperationsConfiguration()
        operations.metricsPath = noMetrics ? nil : metricsPath
        let handler = OperationsHandler(
            next: tusHandler, configuration: operations, metrics: metrics,
            readinessChecks: readinessChecks(store: uploadStore, uploadDirectory: store == .file ? uploadDir : nil))

        var http = HTTPServerConfiguration()
        http.host = host
        http.port = port
        http.loops = loops ?? ProcessInfo.processInfo.activeProcessorCount
        // Raised here rather than only in start(), so the default fits the limit instead of warning about it.
        let openFileLimit = raiseOpenFileLimit()
        http.maxConnections =
            maxConnections ?? HTTPServerConfiguration.maxConnections(fitting: openFileLimit, loops: http.loops)
        http.headTimeoutMilliseconds = milliseconds(headTimeout)
        http.idleTimeoutMilliseconds = milliseconds(idleTimeout)
        http.bodyTimeoutMilliseconds = milliseconds(bodyTimeout)
        http.minBodyBytesPerSecond = minBodyRate
        http.bodyRateWindowMilliseconds = max(1000, http.bodyTimeoutMilliseconds)
        http.shutdownTimeoutMilliseconds = milliseconds(shutdownTimeout)
        http.parserLimits.maxHeadBytes = maxHeadSize
        http.http2.cleartextPriorKnowledge = h2c
        http.spliceBodies = splice == .on
        http.http2.initialStreamWindow = http2StreamWindow
        http.http2.connectionWindow = max(http2ConnectionWindow, http2StreamWindow)

        let httpLogger = Logger(label: "http")
        let server = HTTPServer(
            configuration: http, handler: handler, tls: tlsContext, minimumLogLevel: ServerLogLevel(level),
            loopWillStop: closeOutbound(hooks: hooks?.httpTransport, store: s3?.closeConnections ?? cluster?.closeConnections)
        ) { level, message in
            httpLogger.log(level: Logger.Level(level), "\(message)")
        }
        lateServer.set(server)
        do {
            try server.start()
        } catch {
            logger.critical("cannot listen on \(host):\(port): \(error)")
            throw ExitCode.failure
        }

        if store == .s3 {
            logger.info("s3", metadata: ["endpoint": "\(s3Endpoint ?? "")", "bucket": "\(s3Bucket ?? "")", "part-size": "\(s3PartSize)", "concurrency": "\(s3Concurrency)"])
        }
        if let cluster, let executor = server.executors.first {
            cluster.start(on: executor)
        }

        // Records in an S3 bucket need the sweep even when nothing expires: it deletes gone markers past their window.
        let sweepsGoneMarkers = store == .s3 && redis == nil
        if expiration > 0 || sweepsGoneMarkers, let executor = server.executors.first {
            let every = expiration > 0 ? min(60, expiration) : 60
            scheduleSweeps(handler: tusHandler, executor: executor, everySeconds: every, logger: logger)
        }

        // The contract scripts and tests wait for: exactly this one line on stdout, with the real port.
        let scheme = tlsContext == nil ? "http" : "https"
        print("listening on \(scheme)://\(host):\(server.port)\(tus.basePath)")
        fflush(nil)
        MallocTuning.releaseFreePages()  // what parsing and wiring freed stays resident otherwise
        logger.info(
            "serving",
            metadata: [
                "loops": "\(http.loops)", "store": "\(store.rawValue)", "upload-dir": "\(uploadDir)",
                "state": "\(cluster.map { "redis \($0.endpoint) prefix \(redisPrefix)" } ?? "local")",
                "max-connections": "\(http.maxConnections)", "open-file-limit": "\(server.openFileLimit)",
            ])
        if server.openFileLimit < http.descriptorsNeeded {
            logger.warning(
                """
                open file limit \(server.openFileLimit) is below the \(http.descriptorsNeeded) descriptors \
                --max-connections \(http.maxConnections) can need: under load, accepts will pause and clients will be \
                reset. Raise the limit (ulimit -n, systemd LimitNOFILE=) or lower --max-connections.
                """)
        }

        notifySystemd("READY=1\nSTATUS=\(scheme)://\(host):\(server.port)\(tus.basePath)")

        while true {
            var received: Int32 = 0
            sigwait(&signals, &received)
            if received == SIGHUP {
                reloadCertificate(into: server, logger: logger)
                continue
            }
            logger.info("signal \(received): shutting down (grace \(shutdownTimeout)s)")
            notifySystemd("STOPPING=1")
            break
        }
        server.shutdown()
        exitIfLoopsOutlive(graceMilliseconds: http.shutdownTimeoutMilliseconds, logger: logger)
        server.wait()
        logger.info("stopped")
    }
}

extension TusServerCommand {
    /// SIGHUP: re-read certificate and key. New handshakes use the new pair; open connections keep theirs;
    /// a bad pair is logged and the old one stays in service.
    func reloadCertificate(into server: HTTPServer, logger: Logger) {
        guard let tlsCertificate, let tlsKey else {
            logger.info("SIGHUP: no TLS certificate to reload")
            return
        }
        do {
            let context = try TLSContext.server(
                certificatePath: tlsCertificate, keyPath: tlsKey, mode: tlsMode.mode, offersHTTP2: http2 == .on)
            server.replaceTLSContext(context)
            logger.info("SIGHUP: TLS certificate reloaded from \(tlsCertificate)")
        } catch {
            logger.error("SIGHUP: keeping the current certificate: \(error)")
        }
    }
}

/// The loops abort whatever is left when the grace period ends, so they stop within it plus a moment. If one
/// does not (a loop stuck in a callback: a bug), a signal must still end the process rather than be ignored.
private func exitIfLoopsOutlive(graceMilliseconds: UInt64, logger: Logger) {
    let limit = graceMilliseconds + 1_000
    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(limit))) {
        logger.critical("event loops did not stop within \(limit) ms after the signal; exiting")
        _exit(1)
    }
}

enum OnOff: String, ExpressibleByArgument, CaseIterable {
    case on, off
}

enum TLSModeFlag: String, ExpressibleByArgument, CaseIterable {
    case tls12, tls13, tls12Strong = "tls12-strong"
    var mode: TLSMode {
        switch self {
        case .tls12: .tls12
        case .tls13: .tls13
        case .tls12Strong: .tls12Strong
        }
    }
}

enum StoreKind: String, ExpressibleByArgument, CaseIterable {
    case file, memory, s3
}

private func milliseconds(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1000) }

/// Expired uploads are removed by a sweep on one loop (cheap: it reads the in-memory index), every minute, or
/// as often as uploads expire when `--expiration` is shorter than that. Until the sweep removes an expired upload
/// the handler already answers 410 for it.
private func scheduleSweeps(handler: TusHandler, executor: any LoopExecutor, everySeconds: Int64, logger: Logger) {
    let bound = SendableBox((handler, executor))
    executor.execute {
        func arm() {
            _ = bound.value.1.schedule(afterMilliseconds: UInt64(max(1, everySeconds)) * 1000) {
                bound.value.0.sweepExpired(executor: bound.value.1) { removed in
                    if !removed.isEmpty { logger.info("expired \(removed.count) upload(s)") }
                }
                arm()
            }
        }
        arm()
    }
}

struct SendableBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

extension ServerLogLevel {
    init(_ level: Logger.Level) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error, .critical: self = .error
        }
    }
}

extension Logger.Level {
    init(_ level: ServerLogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// What each loop closes before it stops: its hook connections, then its Redis connections.
private func closeOutbound(
    hooks: HTTPHookTransport?, store: (@Sendable (any LoopExecutor, @escaping () -> Void) -> Void)?
) -> (@Sendable (any LoopExecutor, @escaping () -> Void) -> Void)? {
    guard hooks != nil || store != nil else { return nil }
    return { executor, done in
        hooks?.close(on: executor)
        guard let store else { return done() }
        store(executor, done)
    }
}

/// Size flags take what every size flag takes (TusCore's `ByteCount`: 1048576, 64K, 5M, 8MiB).
func parseByteCount(_ text: String) throws -> Int64 {
    do { return try ByteCount(parsing: text).bytes } catch { throw ValidationError("\(error)") }
}
