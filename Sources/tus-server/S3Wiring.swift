#if canImport(Glibc)
import Glibc
#endif
import Logging
import TusCrypto
import TusCore
import TusHTTP1
import TusLoop
import TusProtocol
import TusS3Store

/// `--store s3`: bytes in the bucket; state in the bucket too (`P<id>.info`, one instance only), or in Redis with
/// `--redis` (a cluster).
struct S3Backend: Sendable {
    let client: S3Client
    let store: any UploadStore
    /// With `--redis`: the cluster (state and locks); nil when the records are objects in the bucket.
    let cluster: RedisCluster?

    init(command: TusServerCommand, logger: Logger) throws {
        guard let bucket = command.s3Bucket, let endpoint = command.s3Endpoint else {
            throw ValidationMessage("--store s3 needs --s3-bucket and --s3-endpoint")
        }
        // The spill files of the parts being uploaded; make --upload-dir itself first.
        mkdir(command.uploadDir, 0o755)
        let configuration = try S3Configuration(
            endpoint: endpoint, bucket: bucket, region: command.s3Region, prefix: command.s3Prefix,
            pathStyle: command.s3PathStyle, credentials: try SigV4Credentials.fromEnvironment(),
            partSize: command.s3PartSize, concurrency: command.s3Concurrency,
            timeoutMilliseconds: UInt64(max(1, command.s3Timeout) * 1000),
            spillDirectory: command.uploadDir + "/s3-spill")
        client = try S3Client(configuration: configuration)
        let data = try S3DataStore(client: client, log: { logger.warning("\($0)") })
        if let url = command.redis {
            let made = try RedisCluster(
                configuration: command.redisConfiguration(url), prefix: command.redisPrefix,
                minimumReplicas: command.redisMinReplicas,
                leaseMilliseconds: UInt64(command.lockLease * 1000), data: data, logger: logger)
            cluster = made
            store = made.store
        } else {
            cluster = nil
            // 410 for a removed id at most as long as an unfinished upload lives, 24 h when nothing expires.
            let goneLifetime = command.expiration > 0 ? command.expiration : S3StateStore.defaultGoneLifetimeSeconds
            store = ComposedUploadStore(
                state: S3StateStore(client: client, goneLifetimeSeconds: goneLifetime), data: data)
        }
    }

    var locker: any UploadLocker { cluster?.locker ?? MemoryLocker() }

    /// Each loop closes its idle S3 connections (and its Redis connections with --redis) before it ends.
    var closeConnections: @Sendable (any LoopExecutor, @escaping () -> Void) -> Void {
        { [client, cluster] executor, done in
            if let loop = executor.boundEventLoop { client.shutdown(on: loop) }
            if let cluster { cluster.closeConnections(executor, done) } else { done() }
        }
    }
}

struct ValidationMessage: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
