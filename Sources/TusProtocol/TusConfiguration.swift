public import TusCrypto

/// Operator settings for `TusHandler`. Everything the server advertises in `OPTIONS` is derived from this
/// and the store's capabilities.
public struct TusConfiguration: Sendable {
    /// Where uploads are created (`POST`) and under which upload URLs live. Normalized to end with "/".
    public var basePath: String
    /// Largest upload accepted (`Tus-Max-Size`); nil = no limit.
    public var maxSize: Int64?
    /// Seconds an unfinished upload lives after its last PATCH (sliding); 0 disables the `expiration`
    /// extension.
    public var expirationSeconds: Int64
    /// `Location: /files/<id>` instead of an absolute URL (for clients behind rewriting proxies).
    public var relativeLocation: Bool
    /// Trust `X-Forwarded-Host`, `X-Forwarded-Proto` and `Forwarded` when building `Location`. Only safe when
    /// a proxy that overwrites them is the only way in.
    public var behindProxy: Bool
    /// Origins allowed by CORS; nil or containing "*" = any origin.
    public var corsOrigins: [String]?
    /// Send `Access-Control-Allow-Credentials: true` (the origin is then echoed, never "*").
    public var corsAllowCredentials: Bool
    /// How long a request waits for the current holder of an upload to let go before answering 423.
    public var lockReleaseTimeoutMilliseconds: UInt64
    /// `Upload-Checksum` algorithms accepted, in `Tus-Checksum-Algorithm` order; empty disables `checksum`.
    public var checksumAlgorithms: [DigestAlgorithm]
    /// Below this much free space, creation answers 507; uploads in progress may still finish. nil = no check.
    public var minFreeSpace: FreeSpaceRequirement?
    /// Free and total bytes where uploads are stored (tus-server: `statvfs` of the upload directory); nil when
    /// unknown, which lets creation proceed. Injected so that tests can fake a full disk.
    public var freeSpace: (@Sendable () -> DiskSpace?)?
    /// How often a running PATCH reports progress to event handlers (post-receive hooks).
    public var progressIntervalMilliseconds: UInt64 = 1000
    /// What the store can do but the operator does not offer (tus-server `--disable-download`,
    /// `--disable-termination`, as in tusd): the handler then behaves exactly as over a store without it.
    public var withheldCapabilities: UploadStoreCapabilities = []

    public init(
        basePath: String = "/files/", maxSize: Int64? = nil, expirationSeconds: Int64 = 604_800,
        relativeLocation: Bool = false, behindProxy: Bool = false, corsOrigins: [String]? = nil,
        corsAllowCredentials: Bool = false, lockReleaseTimeoutMilliseconds: UInt64 = 3000,
        checksumAlgorithms: [DigestAlgorithm] = [.sha1, .md5, .sha256, .sha512]
    ) {
        var basePath = basePath
        if !basePath.hasPrefix("/") { basePath = "/" + basePath }
        if !basePath.hasSuffix("/") { basePath += "/" }
        self.basePath = basePath
        self.maxSize = maxSize
        self.expirationSeconds = max(0, expirationSeconds)
        self.relativeLocation = relativeLocation
        self.behindProxy = behindProxy
        self.corsOrigins = corsOrigins
        self.corsAllowCredentials = corsAllowCredentials
        self.lockReleaseTimeoutMilliseconds = lockReleaseTimeoutMilliseconds
        self.checksumAlgorithms = checksumAlgorithms
    }
}
