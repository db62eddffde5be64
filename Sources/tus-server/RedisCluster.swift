import Logging
import TusCore
import TusHTTP1
import TusLoop
import TusProtocol
import TusRedis
import TusRedisStore
import TusStore

/// `--redis`: upload state and locks in Redis, data under `--upload-dir` (shared by the cluster's instances) or,
/// with `--store s3`, in the bucket.
struct RedisCluster: Sendable {
    let client: RedisClient
    let store: any UploadStore
    let locker: RedisLocker
    let endpoint: String
    let logger: Logger

    init(
        configuration: RedisConfiguration, prefix: String, minimumReplicas: Int?, leaseMilliseconds: UInt64,
        directory: String, fsync: FsyncFlag, logger: Logger
    ) throws {
        // One line per outage and one when it is back, whatever the request rate.
        client = RedisClient(configuration: configuration, log: { logger.warning("\($0)") })
        let keys = Self.keys(prefix, configuration)
        let policy = FsyncPolicy(rawValue: fsync.rawValue) ?? .commit
        let data = try FileDataStore(directory: directory, fsync: policy, log: { logger.warning("\($0)") })
        let state = RedisStateStore(
            client: client, keys: keys, minimumReplicas: Self.replicas(minimumReplicas, configuration))
        store = ComposedUploadStore(state: state, data: data)
        locker = RedisLocker(client: client, keys: keys, leaseMilliseconds: leaseMilliseconds)
        endpoint = configuration.endpointDescription
        self.logger = logger
    }

    /// State and locks in Redis, bytes in `data` (the S3 store).
    init<Data: UploadDataStore>(
        configuration: RedisConfiguration, prefix: String, minimumReplicas: Int?, leaseMilliseconds: UInt64,
        data: Data, logger: Logger
    ) throws {
        client = RedisClient(configuration: configuration, log: { logger.warning("\($0)") })
        let keys = Self.keys(prefix, configuration)
        let state = RedisStateStore(
            client: client, keys: keys, minimumReplicas: Self.replicas(minimumReplicas, configuration))
        store = ComposedUploadStore(state: state, data: data)
        locker = RedisLocker(client: client, keys: keys, leaseMilliseconds: leaseMilliseconds)
        endpoint = configuration.endpointDescription
        self.logger = logger
    }

    /// On Redis Cluster the expiry index and the lock channels are sharded over the masters.
    static func keys(_ prefix: String, _ configuration: RedisConfiguration) -> RedisKeys {
        RedisKeys(prefix: prefix, shardCount: configuration.cluster == nil ? 1 : RedisKeys.clusterShardCount)
    }

    /// `--redis-min-replicas`, by default 1 with Sentinel: a deployment that has failover is one whose master can be
    /// replaced by a replica, so an acknowledgement is only safe once a replica has the change. 0 without, and 0 on
    /// Redis Cluster, which is as often run without replicas (where 1 would refuse every change) as with them.
    static func replicas(_ flag: Int?, _ configuration: RedisConfiguration) -> Int {
        flag ?? (configuration.sentinel == nil ? 0 : 1)
    }

    /// Subscribes to the lock channels (on one loop) so this instance hears release requests.
    func start(on executor: any LoopExecutor) {
        let logger = logger
        executor.execute { [locker] in
            locker.start(on: executor) { result in
                if case .failure(let error) = result {
                    logger.warning("redis lock channels not subscribed yet (\(error)); retrying as Redis returns")
                }
            }
        }
    }

    /// The server's `loopWillStop`: each loop closes its own Redis connections before it ends.
    var closeConnections: @Sendable (any LoopExecutor, @escaping () -> Void) -> Void {
        { [client] executor, done in client.shutdown(on: executor.eventLoop, done) }
    }
}

extension TusServerCommand {
    /// `--redis` with `--redis-ca`/`--redis-cert`/`--redis-key` applied to a `rediss://` URL. The TLS files are loaded
    /// once here, so that a missing or unreadable one stops the start instead of failing every connection.
    func redisConfiguration(_ url: String) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        if configuration.tls != nil {
            let options = RedisTLSOptions(caFile: redisCA, certificateFile: redisCertificate, keyFile: redisKey)
            _ = try options.makeContext()
            configuration.tls = options
        }
        return configuration
    }
}
