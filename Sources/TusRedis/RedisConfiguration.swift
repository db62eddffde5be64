public import TusCore
public import TusCrypto

/// TLS to Redis (`rediss://`): which CA to trust and, for a Redis with `tls-auth-clients yes`, the client
/// certificate to present. File paths, so that the configuration stays a plain value.
public struct RedisTLSOptions: Sendable, Equatable {
    /// PEM CA bundle; nil: the system's default CA paths.
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }

    /// The client context for these options (no ALPN: Redis does not use it). Throws for files that cannot be
    /// loaded, so a caller can refuse to start instead of failing every connection.
    public func makeContext() throws -> TLSContext {
        try TLSContext.client(
            caFile: caFile, insecure: false, certificatePath: certificateFile, keyPath: keyFile,
            applicationProtocols: [])
    }
}

/// Where Redis is and how patient the client is with it.
///
/// The time limits exist because Redis sits on the request path of every upload: a stalled Redis must turn into
/// quick errors for the clients (who retry), never into requests that hang and pile up.
public struct RedisConfiguration: Sendable, Equatable {
    /// The server to connect to; with `sentinel` set, only a placeholder (the first sentinel) for log lines.
    public var host: String
    public var port: Int
    /// When set, the master is found through these sentinels at every (re)connect and followed across failovers
    /// (`redis+sentinel://`); `host`/`port` are then not connected to.
    public var sentinel: RedisSentinelConfiguration?
    /// Redis Cluster (`redis+cluster://`): seed nodes asked for the slot map (`CLUSTER SLOTS`); commands then go
    /// to the master of their key's slot. `host`/`port` are the first seed.
    public var cluster: [RedisEndpoint]?
    /// `AUTH username password` (Redis 6 ACL) when set, otherwise `AUTH password` (`requirepass`).
    public var username: String?
    public var password: String?
    /// `SELECT` after every (re)connect when not 0.
    public var database: Int
    /// Resolution plus TCP connect.
    public var connectTimeoutMilliseconds: UInt64 = 1000
    /// A command without a reply after this long fails with `.timedOut` and its connection is replaced.
    public var commandTimeoutMilliseconds: UInt64 = 2000
    /// First wait after a failed connection; doubles per further failure up to `reconnectMaxDelayMilliseconds`,
    /// and starts over once a reply arrives.
    public var reconnectInitialDelayMilliseconds: UInt64 = 100
    public var reconnectMaxDelayMilliseconds: UInt64 = 2000
    public var reconnectBackoff: Backoff {
        Backoff(initialMilliseconds: reconnectInitialDelayMilliseconds, maximumMilliseconds: reconnectMaxDelayMilliseconds)
    }
    /// How often an idle subscriber connection sends `PING`: a subscription otherwise never notices that a
    /// silent Redis (paused, or cut off without a reset) stopped delivering messages.
    public var subscriberPingIntervalMilliseconds: UInt64 = 1000
    /// How long `WAIT` (`RedisClient.waitForReplicas`) blocks at most; below `commandTimeoutMilliseconds`, or a
    /// slow replica would cost the whole connection.
    public var replicaTimeoutMilliseconds: UInt64 = 1000
    public var decoderLimits = RESPDecoderLimits()
    /// Set by `rediss://`: the connection speaks TLS (the certificate is checked against `host`).
    public var tls: RedisTLSOptions?

    public init(host: String, port: Int = 6379, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// `redis://[[username]:password@]host[:port][/database]`, or `rediss://...` for TLS (system CAs unless
    /// `tls` is changed afterwards); the host may be a name, an IPv4 literal or an IPv6 literal in brackets; user
    /// name and password are percent-decoded. The port defaults to 6379, the database to 0.
    ///
    /// `redis+sentinel://[[username]:password@]host[:port][,host[:port]...]/master-name[/database]` (or
    /// `rediss+sentinel://` for TLS to the sentinels and the master alike): the sentinels to ask for the master
    /// named `master-name` (port default 26379). The credentials are the master's (and its replicas'); the
    /// sentinels are asked without any.
    ///
    /// `redis+cluster://[[username]:password@]host[:port][,host[:port]...]` (or `rediss+cluster://`): seed nodes of a
    /// Redis Cluster (port default 6379); any one that answers gives the slot map. No database: a cluster has one.
    public init(url: String) throws(RedisConfigurationError) {
        // Only the scheme goes into an error: the rest of a URL may hold a password.
        let scheme = url.prefix { $0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == "." }
        guard url.dropFirst(scheme.count).hasPrefix("://") else { throw .unsupportedScheme("") }
        let isSentinel: Bool
        let isTLS: Bool
        var isCluster = false
        switch scheme {
        case "redis": (isSentinel, isTLS) = (false, false)
        case "rediss": (isSentinel, isTLS) = (false, true)
        case "redis+sentinel": (isSentinel, isTLS) = (true, false)
        case "rediss+sentinel": (isSentinel, isTLS) = (true, true)
        case "redis+cluster": (isSentinel, isTLS, isCluster) = (false, false, true)
        case "rediss+cluster": (isSentinel, isTLS, isCluster) = (false, true, true)
        default: throw .unsupportedScheme(String(scheme))
        }
        var rest = url.dropFirst(scheme.count + 3)
        var path = Substring("")
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = credentials[..<colon]
                username = user.isEmpty ? nil : try Self.percentDecoded(user)
                password = try Self.percentDecoded(credentials[credentials.index(after: colon)...])
            } else {
                // "redis://secret@host" is how several clients write a password without a user.
                password = try Self.percentDecoded(credentials)
            }
        }
        var sentinel: RedisSentinelConfiguration?
        if isSentinel {
            let endpoints = try rest.split(separator: ",", omittingEmptySubsequences: false).map {
                (text) throws(RedisConfigurationError) in try Self.endpoint(text, defaultPort: 26379)
            }
            var segments = path.split(separator: "/", omittingEmptySubsequences: false)
            guard let name = segments.first, !name.isEmpty else { throw .missingMasterName }
            segments.removeFirst()
            guard segments.count <= 1 else { throw .invalidDatabase(segments.joined(separator: "/")) }
            path = segments.first ?? ""
            sentinel = RedisSentinelConfiguration(
                sentinels: endpoints, masterName: try Self.percentDecoded(name))
        }
        var seeds: [RedisEndpoint]?
        if isCluster {
            seeds = try rest.split(separator: ",", omittingEmptySubsequences: false).map {
                (text) throws(RedisConfigurationError) in try Self.endpoint(text, defaultPort: 6379)
            }
            guard path.isEmpty || path == "0" else { throw .invalidDatabase(String(path)) }
        }
        let endpoint: RedisEndpoint
        if let sentinel {
            endpoint = sentinel.sentinels[0]
        } else if let seeds {
            endpoint = seeds[0]
        } else {
            endpoint = try Self.endpoint(rest, defaultPort: 6379)
        }
        var database = 0
        if !path.isEmpty {
            guard let value = Int(path), value >= 0 else { throw .invalidDatabase(String(path)) }
            database = value
        }
        self.init(host: endpoint.host, port: endpoint.port, username: username, password: password, database: database)
        self.sentinel = sentinel
        self.cluster = seeds
        if isTLS { tls = RedisTLSOptions() }
    }

    /// `host[:port]`, the host a name, an IPv4 literal or an IPv6 literal in brackets.
    private static func endpoint(_ text: Substring, defaultPort: Int) throws(RedisConfigurationError) -> RedisEndpoint {
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .invalidHost(String(text)) }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidHost(String(text)) }
                portText = after.dropFirst()
            }
        } else if let colon = text.firstIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            host = text
        }
        guard !host.isEmpty else { throw .invalidHost(String(text)) }
        var port = defaultPort
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else { throw .invalidPort(String(portText)) }
            port = value
        }
        return RedisEndpoint(host: String(host), port: port)
    }

    private static func percentDecoded(_ text: Substring) throws(RedisConfigurationError) -> String {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw .invalidPercentEncoding
            }
            bytes.append(high << 4 | low)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// "host:port" for log lines (never the password); with sentinels, "master NAME via host:port,...".
    public var endpointDescription: String {
        if let cluster { return "cluster via " + cluster.map(\.description).joined(separator: ",") }
        guard let sentinel else { return RedisEndpoint(host: host, port: port).description }
        return "master \(sentinel.masterName) via \(sentinel.sentinels.map(\.description).joined(separator: ","))"
    }

    /// The same settings aimed at one fixed server (a sentinel, or the master a sentinel named), without
    /// credentials or database when `isSentinel` (sentinels are asked without any).
    func fixed(at endpoint: RedisEndpoint, isSentinel: Bool = false) -> RedisConfiguration {
        var copy = self
        copy.host = endpoint.host
        copy.port = endpoint.port
        copy.sentinel = nil
        copy.cluster = nil
        if isSentinel {
            copy.username = nil
            copy.password = nil
            copy.database = 0
        }
        return copy
    }
}

/// One `host:port` of a Redis server or sentinel.
public struct RedisEndpoint: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Redis Sentinel: which sentinels to ask, for which master.
public struct RedisSentinelConfiguration: Sendable, Equatable {
    /// Asked in turn (`SENTINEL get-master-addr-by-name`) until one names the master; at least one.
    public var sentinels: [RedisEndpoint]
    public var masterName: String

    public init(sentinels: [RedisEndpoint], masterName: String) {
        precondition(!sentinels.isEmpty, "Redis Sentinel needs at least one sentinel")
        self.sentinels = sentinels
        self.masterName = masterName
    }
}

extension RedisConfiguration: CustomStringConvertible {
    /// The URL with the password masked, for start-up logs.
    public var description: String {
        let credentials = password == nil ? "" : "\(username ?? ""):***@"
        let scheme = tls == nil ? "redis" : "rediss"
        if let cluster {
            return "\(scheme)+cluster://\(credentials)" + cluster.map(\.description).joined(separator: ",")
        }
        guard let sentinel else { return "\(scheme)://\(credentials)\(endpointDescription)/\(database)" }
        let sentinels = sentinel.sentinels.map(\.description).joined(separator: ",")
        return "\(scheme)+sentinel://\(credentials)\(sentinels)/\(sentinel.masterName)/\(database)"
    }
}

public enum RedisConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    case unsupportedScheme(String)
    case invalidHost(String)
    case invalidPort(String)
    case invalidDatabase(String)
    case invalidPercentEncoding
    case missingMasterName

    public var description: String {
        switch self {
        case .unsupportedScheme(let scheme):
            "a Redis URL starts with redis://, rediss:// (TLS), redis+sentinel://, rediss+sentinel://, "
                + "redis+cluster:// or rediss+cluster://"
                + (scheme.isEmpty ? "" : ", not \(scheme)://")
        case .invalidHost(let text): "invalid host in Redis URL: \(text)"
        case .invalidPort(let text): "invalid port in Redis URL: \(text)"
        case .invalidDatabase(let text): "invalid database number in Redis URL: \(text)"
        case .invalidPercentEncoding: "invalid percent-encoding in the Redis URL's credentials"
        case .missingMasterName: "a redis+sentinel:// URL names the master after the sentinels: /MASTER-NAME[/DB]"
        }
    }
}
