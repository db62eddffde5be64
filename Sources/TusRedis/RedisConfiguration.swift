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
    public var host: String
    public var port: Int
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
    /// How often an idle subscriber connection sends `PING`: a subscription otherwise never notices that a
    /// silent Redis (paused, or cut off without a reset) stopped delivering messages.
    public var subscriberPingIntervalMilliseconds: UInt64 = 1000
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
    public init(url: String) throws(RedisConfigurationError) {
        let isTLS = url.hasPrefix("rediss://")
        let scheme = isTLS ? "rediss://" : "redis://"
        guard url.hasPrefix(scheme) else {
            // Only the scheme goes into the error: the rest of a URL may hold a password.
            let scheme = url.prefix { $0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == "." }
            throw .unsupportedScheme(url.dropFirst(scheme.count).hasPrefix("://") ? String(scheme) : "")
        }
        var rest = Substring(url.dropFirst(scheme.count))
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
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw .invalidHost(String(rest)) }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidHost(String(rest)) }
                portText = after.dropFirst()
            }
        } else if let colon = rest.firstIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw .invalidHost(String(rest)) }
        var port = 6379
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else { throw .invalidPort(String(portText)) }
            port = value
        }
        var database = 0
        if !path.isEmpty {
            guard let value = Int(path), value >= 0 else { throw .invalidDatabase(String(path)) }
            database = value
        }
        self.init(host: String(host), port: port, username: username, password: password, database: database)
        if isTLS { tls = RedisTLSOptions() }
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

    /// "host:port" for log lines (never the password).
    public var endpointDescription: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

extension RedisConfiguration: CustomStringConvertible {
    /// The URL with the password masked, for start-up logs.
    public var description: String {
        let credentials = password == nil ? "" : "\(username ?? ""):***@"
        return "\(tls == nil ? "redis" : "rediss")://\(credentials)\(endpointDescription)/\(database)"
    }
}

public enum RedisConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    case unsupportedScheme(String)
    case invalidHost(String)
    case invalidPort(String)
    case invalidDatabase(String)
    case invalidPercentEncoding

    public var description: String {
        switch self {
        case .unsupportedScheme(let scheme):
            scheme.isEmpty
                ? "a Redis URL starts with redis:// (or rediss:// for TLS)"
                : "a Redis URL starts with redis:// or rediss://, not \(scheme)://"
        case .invalidHost(let text): "invalid host in Redis URL: \(text)"
        case .invalidPort(let text): "invalid port in Redis URL: \(text)"
        case .invalidDatabase(let text): "invalid database number in Redis URL: \(text)"
        case .invalidPercentEncoding: "invalid percent-encoding in the Redis URL's credentials"
        }
    }
}
