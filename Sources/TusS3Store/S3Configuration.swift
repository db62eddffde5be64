public import TusCrypto

#if canImport(Glibc)
    import Glibc
#endif

/// Where the bucket is and how to talk to it (`--s3-*` flags).
public struct S3Configuration: Sendable {
    public var isTLS: Bool
    public var host: String
    public var port: Int
    public var bucket: String
    public var region: String
    /// Prepended to every object key (`P` in `P<id>`, `P<id>.info`, `P<id>.part.<n>`).
    public var prefix: String
    /// `http://host/bucket/key` (Ceph RGW, MinIO) instead of `http://bucket.host/key` (AWS's default).
    public var pathStyle: Bool
    public var credentials: SigV4Credentials
    /// Bytes per multipart part (the last one may be shorter); S3 wants at least 5 MiB for all but the last.
    public var partSize: Int64
    /// Part uploads in flight per tus upload.
    public var concurrency: Int
    /// Connect deadline, and how long a request may make no progress (no byte sent or received) before it is
    /// abandoned and retried.
    public var timeoutMilliseconds: UInt64
    /// Attempts per request for network errors, 5xx and throttling (SlowDown), with exponential backoff.
    public var maxAttempts: Int
    /// Local directory for the spill files of the parts being uploaded (`<id>.<part>`).
    public var spillDirectory: String

    public static let minimumPartSize: Int64 = 5 << 20
    public static let maximumPartCount = 10_000

    public init(
        endpoint: String, bucket: String, region: String = "us-east-1", prefix: String = "", pathStyle: Bool = false,
        credentials: SigV4Credentials, partSize: Int64 = 8 << 20, concurrency: Int = 4,
        timeoutMilliseconds: UInt64 = 15_000, maxAttempts: Int = 4, spillDirectory: String
    ) throws(S3ConfigurationError) {
        var rest = Substring(endpoint)
        if rest.hasPrefix("https://") {
            isTLS = true
            rest = rest.dropFirst(8)
        } else if rest.hasPrefix("http://") {
            isTLS = false
            rest = rest.dropFirst(7)
        } else {
            throw S3ConfigurationError("--s3-endpoint must start with http:// or https://")
        }
        if let slash = rest.firstIndex(of: "/") {
            guard rest[slash...].allSatisfy({ $0 == "/" }) else {
                throw S3ConfigurationError("--s3-endpoint takes no path (the bucket is --s3-bucket)")
            }
            rest = rest[..<slash]
        }
        var hostPart = rest
        var portValue = isTLS ? 443 : 80
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw S3ConfigurationError("bad IPv6 endpoint") }
            hostPart = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let parsed = Int(after.dropFirst()) else { throw S3ConfigurationError("bad endpoint port") }
                portValue = parsed
            }
        } else if let colon = rest.lastIndex(of: ":") {
            hostPart = rest[..<colon]
            guard let parsed = Int(rest[rest.index(after: colon)...]) else {
                throw S3ConfigurationError("bad endpoint port")
            }
            portValue = parsed
        }
        guard !hostPart.isEmpty, (1...65535).contains(portValue) else {
            throw S3ConfigurationError("bad --s3-endpoint \(endpoint)")
        }
        guard bucket.utf8.count >= 3 else { throw S3ConfigurationError("--s3-bucket must have at least 3 characters") }
        guard partSize >= Self.minimumPartSize else {
            throw S3ConfigurationError("--s3-part-size must be at least 5 MiB (5242880): S3 refuses smaller parts")
        }
        guard partSize <= 5 << 30 else { throw S3ConfigurationError("--s3-part-size must be at most 5 GiB") }
        guard concurrency >= 1 else { throw S3ConfigurationError("--s3-concurrency must be at least 1") }
        host = String(hostPart)
        port = portValue
        self.bucket = bucket
        self.region = region
        self.prefix = prefix
        self.pathStyle = pathStyle
        self.credentials = credentials
        self.partSize = partSize
        self.concurrency = concurrency
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxAttempts = max(1, maxAttempts)
        self.spillDirectory = spillDirectory
    }

    /// The largest upload the part size allows (10,000 parts).
    public var maximumUploadSize: Int64 { partSize * Int64(Self.maximumPartCount) }

    /// What the `Host` header says and where to connect.
    var connectHost: String { pathStyle ? host : "\(bucket).\(host)" }
    var authority: String {
        let name = connectHost.contains(":") ? "[\(connectHost)]" : connectHost
        return (isTLS && port == 443) || (!isTLS && port == 80) ? name : "\(name):\(port)"
    }

    /// The request path of an object (nil: the bucket itself), encoded as SigV4 wants it for S3.
    func path(key: String?) -> String {
        let encodedKey = key.map { SigV4Signer.uriEncode($0, keepSlash: true) } ?? ""
        return pathStyle ? "/\(bucket)/\(encodedKey)" : "/\(encodedKey)"
    }
}

public struct S3ConfigurationError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension SigV4Credentials {
    /// The AWS way: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) from the environment,
    /// else the `[default]` profile (or `AWS_PROFILE`) of `~/.aws/credentials` (or `AWS_SHARED_CREDENTIALS_FILE`).
    public static func fromEnvironment() throws(S3ConfigurationError) -> SigV4Credentials {
        func env(_ name: String) -> String? {
            guard let value = getenv(name) else { return nil }
            let text = String(cString: value)
            return text.isEmpty ? nil : text
        }
        if let key = env("AWS_ACCESS_KEY_ID"), let secret = env("AWS_SECRET_ACCESS_KEY") {
            return SigV4Credentials(accessKeyID: key, secretAccessKey: secret, sessionToken: env("AWS_SESSION_TOKEN"))
        }
        let path = env("AWS_SHARED_CREDENTIALS_FILE") ?? ((env("HOME") ?? "") + "/.aws/credentials")
        let profile = env("AWS_PROFILE") ?? "default"
        guard let text = readSmallFile(path) else {
            throw S3ConfigurationError(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write \(path)")
        }
        guard let credentials = parseCredentialsFile(text, profile: profile) else {
            throw S3ConfigurationError("\(path) has no [\(profile)] profile with aws_access_key_id and aws_secret_access_key")
        }
        return credentials
    }

    /// The INI-like `~/.aws/credentials` format: `[profile]` sections of `name = value` lines, `#`/`;` comments.
    public static func parseCredentialsFile(_ text: String, profile: String) -> SigV4Credentials? {
        var section = ""
        var values: [String: String] = [:]
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = rawLine.trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast()).trimmingSpaces()
                continue
            }
            guard section == profile, let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals]).trimmingSpaces().lowercased()] = String(line[line.index(after: equals)...])
                .trimmingSpaces()
        }
        guard let key = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] else { return nil }
        return SigV4Credentials(accessKeyID: key, secretAccessKey: secret, sessionToken: values["aws_session_token"])
    }

    private static func readSmallFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view.removeFirst() }
        while let last = view.last, last == " " || last == "\t" { view.removeLast() }
        return String(view)
    }
}
