public import TusCore
import TusLoop
public import TusProtocol
public import TusRedis

/// Upload records in Redis, shared by every tus-server instance started with the same `--redis` (one cluster).
///
/// Each change is one Lua script on the keys of one upload (`RedisKeys`), so it is atomic and works on Redis
/// Cluster. Offsets move only for the holder of the upload's lock (the script compares the lease's token): a
/// writer that lost its lease can never move the offset. Progress during a PATCH is recorded at durable
/// checkpoints (`progressPolicy`), each after the data store made the bytes durable, so the offset here never
/// exceeds the bytes really stored, and an instance that takes over starts where the data really ends.
///
/// Acknowledgements: with `minimumReplicas` > 0, a change the client will be told about (create, declared length,
/// the offset a PATCH ends at, removal, a final's completion) completes only after `WAIT` confirmed that that many
/// replicas have it; otherwise it fails with `.unavailable` (503), although the master may keep it. Redis
/// replication is asynchronous, so without this a failover could promote a replica that never got an offset the
/// client was told about, and HEAD would then report less than was acknowledged. Checkpoints during a PATCH are
/// not waited for: nobody was told about them, and a lost one only makes a takeover rewrite a few bytes.
/// On a single Redis or Sentinel one `WAIT` is pipelined behind the change's commands; on Redis Cluster, where
/// each master counts its own replicas per socket, the record's script is confirmed by a `WAIT` at the master
/// that ran it (`RedisClient.evaluate(_:keys:arguments:on:confirmedBy:_:)`), once its reply is in. The index
/// entries and a partial's set of finals live on other slots there and are not waited for: they are advisory
/// (the sweep re-reads records) or re-checked (a final whose partials' sets lost it still lists its parts).
///
/// Failures: a Redis that cannot be reached or answers too slowly (the client's command timeout) fails the call
/// with `.unavailable`, which clients see as `503` with `Retry-After`. Nothing is guessed from a local copy.
///
/// Threading: calls run on the executor's loop (`LoopExecutor.eventLoop`); the client keeps one pipelined
/// connection per loop, and completions come back on that loop.
public final class RedisStateStore: UploadStateStore {
    public let client: RedisClient
    public let keys: RedisKeys
    /// How long a terminated or expired id answers 410 rather than 404.
    public let goneMarkerMilliseconds: UInt64
    public let progressPolicy: UploadProgressPolicy
    /// Replicas that must have a change before it is acknowledged (`WAIT`); 0 = acknowledge what the master has.
    public let minimumReplicas: Int

    public init(
        client: RedisClient, keys: RedisKeys = RedisKeys(), goneMarkerMilliseconds: UInt64 = 7 * 24 * 3_600_000,
        checkpointBytes: Int64 = 8 << 20, checkpointMilliseconds: UInt64 = 1000, minimumReplicas: Int = 0
    ) {
        self.client = client
        self.keys = keys
        self.goneMarkerMilliseconds = goneMarkerMilliseconds
        self.minimumReplicas = minimumReplicas
        progressPolicy = .durableCheckpoints(bytes: checkpointBytes, milliseconds: checkpointMilliseconds)
    }

    public func lookup(
        _ id: String, on executor: any LoopExecutor, completion: @escaping (Result<UploadLookup, StoreError>) -> Void
    ) {
        run(RedisScripts.lookup, keys: [keys.info(id), keys.gone(id)], on: executor) { reply in
            completion(
                reply.flatMap { value in
                    switch value {
                    case .null: return .success(.notFound)
                    case .array(let fields): return Self.decode(id: id, fields).map { .found($0) }
                    default:
                        return value.string == "gone" ? .success(.gone) : .failure(Self.unexpected(value))
                    }
                })
        }
    }

    public func create(
        _ info: UploadInfo, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        acknowledged(on: executor, completion) { completion in issueCreate(info, on: executor, completion: completion) }
    }

    private func issueCreate(
        _ info: UploadInfo, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        var fields: [RedisArgument] = ["offset", RedisArgument(String(info.offset)), "created", RedisArgument(String(info.createdAt))]
        if let length = info.length { fields += ["length", RedisArgument(String(length))] }
        if let metadata = info.metadata { fields += ["metadata", RedisArgument(metadata)] }
        if let expiresAt = info.expiresAt { fields += ["expires", RedisArgument(String(expiresAt))] }
        if let owner = info.owner { fields += ["owner", RedisArgument(owner)] }
        if let concat = info.concat {
            fields += ["concat", RedisArgument(concat)]
            if info.isPartial { fields += ["partial", "1"] }
            // Ids are [A-Za-z0-9_-]: a space separates them unambiguously.
            if info.isFinal { fields += ["parts", RedisArgument(info.partialIDs.joined(separator: " "))] }
        }
        if info.awaitsCompletion { fields += ["awaits", "1"] }
        if let digest = info.representationDigest { fields += ["reprdigest", RedisArgument(digest)] }
        if let wanted = info.wantedDigest { fields += ["wantdigest", RedisArgument(wanted)] }
        // The index entry is sent right behind the script, pipelined: one round trip. It can only be wrong when
        // the create fails, i.e. on a collision of 128-bit random ids; the sweep re-reads records anyway.
        var indexed: StoreError?? = info.expiresAt == nil ? .some(nil) : nil
        var created: Result<RESPValue, StoreError>?
        // A final is added to each partial's set of finals in the same round trip. Only a failed create can leave an
        // entry naming no final (a 128-bit id collision), which the PATCH that reads the set skips.
        var referencesPending = Set(info.partialIDs).count
        var referenceError: StoreError?
        let finish = {
            guard let created, let indexed, referencesPending == 0 else { return }
            if case .success(let value) = created, value.integer == 1, let referenceError {
                return completion(.failure(referenceError))
            }
            switch created {
            case .failure(let error): completion(.failure(error))
            case .success(let value) where value.integer == 1:
                completion(indexed.map { .failure($0) } ?? .success(info))
            case .success(let value) where value.integer == 0: completion(.failure(.alreadyExists))
            case .success(let value): completion(.failure(Self.unexpected(value)))
            }
        }
        run(
            RedisScripts.create, keys: [keys.info(info.id), keys.gone(info.id)], arguments: fields, confirmed: true,
            on: executor
        ) {
            reply in
            created = reply
            finish()
        }
        if let expiresAt = info.expiresAt {
            index(info.id, expiresAt: expiresAt, on: executor) { error in
                indexed = .some(error)
                finish()
            }
        }
        for partialID in Set(info.partialIDs) {
            client.send(["SADD", RedisArgument(keys.finals(partialID)), RedisArgument(info.id)], on: executor.eventLoop) {
                reply in
                if case .failure(let error) = reply { referenceError = Self.storeError(error) }
                referencesPending -= 1
                finish()
            }
        }
    }

    public func declareLength(
        id: String, length: Int64, completing: Bool, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        acknowledged(on: executor, completion) { completion in
            run(
                RedisScripts.declareLength, keys: [keys.info(id), keys.gone(id)],
                arguments: [RedisArgument(String(length)), RedisArgument(completing ? "1" : "0")], confirmed: true,
                on: executor
            ) { reply in
                completion(Self.record(id: id, reply, statuses: ["set": .lengthAlreadySet, "below": .exceedsLength]))
            }
        }
    }

    public func beginWrite(
        id: String, at offset: Int64, discardable: Bool, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        // Nothing to remember for a discardable write: its bytes never move the offset until verified, and
        // bytes past the offset are overwritten by the next write at that offset.
        run(
            RedisScripts.beginWrite, keys: [keys.info(id), keys.gone(id), keys.lock(id)],
            arguments: [RedisArgument(lock.token), RedisArgument(String(offset))], on: executor
        ) { reply in
            completion(Self.record(id: id, reply, statuses: ["conflict": .conflict]))
        }
    }

    public func recordProgress(
        id: String, offset: Int64, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (StoreError?) -> Void
    ) {
        advance(id: id, offset: offset, expiry: .keep, lock: lock, on: executor) { result in
            if case .failure(let error) = result { return completion(error) }
            completion(nil)
        }
    }

    public func finishWrite(
        id: String, offset: Int64, expiry: ExpiryUpdate, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        acknowledged(on: executor, completion) { completion in
            issueFinishWrite(id: id, offset: offset, expiry: expiry, lock: lock, on: executor, completion: completion)
        }
    }

    private func issueFinishWrite(
        id: String, offset: Int64, expiry: ExpiryUpdate, lock: any UploadLock, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        // A new expiry is indexed in the same round trip as the script (pipelined); only the PATCH that
        // completes the upload pays a second one, to drop it from the index.
        var indexed = true
        var advanced: Result<UploadInfo, StoreError>?
        let finish = { [self] in
            guard indexed, let advanced else { return }
            let leftInIndex: Bool
            switch advanced {
            case .success(let info): leftInIndex = info.expiresAt == nil && expiry != .keep
            case .failure(let error): leftInIndex = error == .gone || error == .notFound  // re-added by our ZADD
            }
            guard leftInIndex else { return completion(advanced) }
            unindex(id, on: executor) { _ in completion(advanced) }
        }
        advance(id: id, offset: offset, expiry: expiry, lock: lock, confirmed: true, on: executor) { result in
            advanced = result
            finish()
        }
        if case .set(let expiresAt?) = expiry {
            indexed = false
            index(id, expiresAt: expiresAt, on: executor) { _ in
                indexed = true
                finish()
            }
        }
    }

    private func advance(
        id: String, offset: Int64, expiry: ExpiryUpdate, lock: any UploadLock, confirmed: Bool = false,
        on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        var arguments = [RedisArgument(lock.token), RedisArgument(String(offset))]
        switch expiry {
        case .keep: arguments += ["keep", ""]
        case .set(nil): arguments += ["never", ""]
        case .set(let expiresAt?): arguments += ["set", RedisArgument(String(expiresAt))]
        }
        run(
            RedisScripts.advance, keys: [keys.info(id), keys.gone(id), keys.lock(id)], arguments: arguments,
            confirmed: confirmed, on: executor
        ) {
            reply in
            completion(Self.record(id: id, reply, statuses: [:]))
        }
    }

    public func remove(
        id: String, reason: UploadRemovalReason, on executor: any LoopExecutor,
        completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        acknowledged(on: executor, completion) { completion in
            issueRemove(id: id, reason: reason, on: executor, completion: completion)
        }
    }

    private func issueRemove(
        id: String, reason: UploadRemovalReason, on executor: any LoopExecutor,
        completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        let reasonText = reason == .terminated ? "terminated" : "expired"
        run(
            RedisScripts.remove, keys: [keys.info(id), keys.gone(id), keys.finals(id)],
            arguments: [RedisArgument(reasonText), RedisArgument(String(goneMarkerMilliseconds))], confirmed: true,
            on: executor
        ) { [self] reply in
            switch reply {
            case .failure(let error): completion(.failure(error))
            case .success(let value):
                switch value.string {
                case "ok": unindex(id, on: executor) { _ in completion(.success(())) }
                case "gone": completion(.failure(.gone))
                case "missing": completion(.failure(.notFound))
                default: completion(.failure(Self.unexpected(value)))
                }
            }
        }
    }

    public func finals(
        referencing partialID: String, on executor: any LoopExecutor,
        completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        client.send(["SMEMBERS", RedisArgument(keys.finals(partialID))], on: executor.eventLoop) { reply in
            switch reply {
            case .failure(let error): completion(.failure(Self.storeError(error)))
            case .success(let value):
                guard let members = value.array else { return completion(.failure(Self.unexpected(value))) }
                completion(.success(members.compactMap(\.string).sorted()))
            }
        }
    }

    /// The script, then the final leaves the expiry index (an unfinished final expires like any unfinished upload):
    /// a second round trip, once per final, since the index is not in the record's hash slot. Should the ZREM fail,
    /// the sweep finds a complete record and leaves it alone.
    public func completeFinal(
        id: String, length: Int64, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        acknowledged(on: executor, completion) { completion in
            issueCompleteFinal(id: id, length: length, on: executor, completion: completion)
        }
    }

    private func issueCompleteFinal(
        id: String, length: Int64, on executor: any LoopExecutor,
        completion: @escaping (Result<UploadInfo, StoreError>) -> Void
    ) {
        run(
            RedisScripts.completeFinal, keys: [keys.info(id), keys.gone(id)], arguments: [RedisArgument(String(length))],
            confirmed: true, on: executor
        ) { [self] reply in
            let completed = Self.record(id: id, reply, statuses: ["notfinal": .conflict])
            guard case .success = completed else { return completion(completed) }
            unindex(id, on: executor) { _ in completion(completed) }
        }
    }

    public func listExpired(
        now: Int64, on executor: any LoopExecutor, completion: @escaping (Result<[String], StoreError>) -> Void
    ) {
        // Every shard of the index (one on a single Redis), pipelined; any failure fails the listing.
        var remaining = keys.shardCount
        var expired: [String] = []
        var failure: StoreError?
        for shard in 0..<keys.shardCount {
            let command: [RedisArgument] = [
                "ZRANGEBYSCORE", RedisArgument(keys.expiryIndex(shard: shard)), "-inf", RedisArgument(String(now)),
            ]
            client.send(command, on: executor.eventLoop) { reply in
                switch reply {
                case .failure(let error): failure = failure ?? Self.storeError(error)
                case .success(let value):
                    if let members = value.array {
                        expired += members.compactMap(\.string)
                    } else {
                        failure = failure ?? Self.unexpected(value)
                    }
                }
                remaining -= 1
                guard remaining == 0 else { return }
                completion(failure.map { .failure($0) } ?? .success(expired))
            }
        }
    }

    // MARK: helpers

    /// Runs `change`, which must send its writes before it returns, then sends one `WAIT` behind them on the same
    /// connection (pipelined: one round trip plus the replicas' acknowledgement), and one more after the change's
    /// reply if a script of this loop was resent as `EVAL` meanwhile (`RedisClient.scriptResendCount(on:)`): a
    /// promoted replica's script cache is empty, and the resend leaves behind the first `WAIT`, uncovered by it.
    /// `completion` gets the change's
    /// result once both replies are in; a success that fewer than `minimumReplicas` replicas confirmed becomes
    /// `.unavailable`.
    private func acknowledged<Value>(
        on executor: any LoopExecutor, _ completion: @escaping (Result<Value, StoreError>) -> Void,
        _ change: (@escaping (Result<Value, StoreError>) -> Void) -> Void
    ) {
        guard minimumReplicas > 0, !confirmsPerScript else { return change(completion) }
        let needed = minimumReplicas
        let loop = executor.eventLoop
        let resendsBefore = client.scriptResendCount(on: loop)
        var changed: Result<Value, StoreError>?
        var replicas: Result<Int, RedisError>?
        var hasWaitedAgain = false
        func finish() {
            guard let result = changed, let confirmed = replicas else { return }
            guard case .success = result else { return completion(result) }
            if case .success(let count) = confirmed, count >= needed, !hasWaitedAgain,
                client.scriptResendCount(on: loop) != resendsBefore
            {
                // A script of this loop went out again as EVAL after a NOSCRIPT, behind the WAIT: maybe this
                // change's. Once more, now that the change has been answered.
                hasWaitedAgain = true
                replicas = nil
                return client.waitForReplicas(needed, on: loop) { reply in
                    replicas = reply
                    finish()
                }
            }
            switch confirmed {
            case .failure(let error): completion(.failure(Self.storeError(error)))
            case .success(let count) where count < needed:
                completion(.failure(.unavailable("redis: the change reached \(count) of \(needed) replicas in time")))
            case .success: completion(result)
            }
        }
        change { result in
            changed = result
            finish()
        }
        client.waitForReplicas(needed, on: executor.eventLoop) { reply in
            replicas = reply
            finish()
        }
    }

    /// Redis Cluster: `acknowledged` leaves the confirmation to the record's script (`run(confirmed: true)`).
    private var confirmsPerScript: Bool { client.configuration.cluster != nil }

    private func index(_ id: String, expiresAt: Int64, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        let index = RedisArgument(keys.expiryIndex(shard: keys.shard(of: id)))
        client.send(["ZADD", index, RedisArgument(String(expiresAt)), RedisArgument(id)], on: executor.eventLoop) {
            reply in
            if case .failure(let error) = reply { return completion(Self.storeError(error)) }
            completion(nil)
        }
    }

    private func unindex(_ id: String, on executor: any LoopExecutor, completion: @escaping (StoreError?) -> Void) {
        let index = RedisArgument(keys.expiryIndex(shard: keys.shard(of: id)))
        client.send(["ZREM", index, RedisArgument(id)], on: executor.eventLoop) { reply in
            if case .failure(let error) = reply { return completion(Self.storeError(error)) }
            completion(nil)
        }
    }

    /// `confirmed`: the script's change is one a client will be told about; on Redis Cluster with
    /// `minimumReplicas` > 0 it succeeds only once that many replicas of its master have it.
    private func run(
        _ script: RedisScript, keys: [String], arguments: [RedisArgument] = [], confirmed: Bool = false,
        on executor: any LoopExecutor, completion: @escaping (Result<RESPValue, StoreError>) -> Void
    ) {
        if confirmed && confirmsPerScript && minimumReplicas > 0 {
            let needed = minimumReplicas
            return client.evaluate(
                script, keys: keys.map { RedisArgument($0) }, arguments: arguments, on: executor.eventLoop,
                confirmedBy: needed
            ) { reply, replicas in
                switch (reply, replicas) {
                case (.failure(let error), _): completion(.failure(Self.storeError(error)))
                case (.success, .failure(let error)?): completion(.failure(Self.storeError(error)))
                case (.success, .success(let count)?) where count < needed:
                    let reason = "redis: the change reached \(count) of \(needed) replicas in time"
                    completion(.failure(.unavailable(reason)))
                case (.success(let value), _): completion(.success(value))
                }
            }
        }
        client.evaluate(script, keys: keys.map { RedisArgument($0) }, arguments: arguments, on: executor.eventLoop) {
            reply in
            completion(reply.mapError(Self.storeError))
        }
    }

    /// A record reply, or one of the status words every record script shares plus the script's own.
    private static func record(
        id: String, _ reply: Result<RESPValue, StoreError>, statuses: [String: StoreError]
    ) -> Result<UploadInfo, StoreError> {
        reply.flatMap { value in
            if case .array(let fields) = value { return decode(id: id, fields) }
            switch value.string {
            case "gone": return .failure(.gone)
            case "missing": return .failure(.notFound)
            case "lock": return .failure(.conflict)
            case let status?: return .failure(statuses[status] ?? unexpected(value))
            case nil: return .failure(unexpected(value))
            }
        }
    }

    static func decode(id: String, _ flat: [RESPValue]) -> Result<UploadInfo, StoreError> {
        var fields: [String: String] = [:]
        var index = 0
        while index + 1 < flat.count {
            if let name = flat[index].string, let value = flat[index + 1].string { fields[name] = value }
            index += 2
        }
        guard let offset = fields["offset"].flatMap({ Int64($0) }), let created = fields["created"].flatMap({ Int64($0) })
        else { return .failure(.io("redis record of \(id) is malformed: \(fields)")) }
        return .success(
            UploadInfo(
                id: id, length: fields["length"].flatMap { Int64($0) }, offset: offset, metadata: fields["metadata"],
                createdAt: created, expiresAt: fields["expires"].flatMap { Int64($0) }, owner: fields["owner"],
                concat: fields["concat"], isPartial: fields["partial"] == "1",
                partialIDs: fields["parts"].map { $0.split(separator: " ").map(String.init) } ?? [],
                awaitsCompletion: fields["awaits"] == "1", representationDigest: fields["reprdigest"],
                wantedDigest: fields["wantdigest"]))
    }

    static func storeError(_ error: RedisError) -> StoreError {
        switch error {
        case .server(let message): .io("redis: \(message)")
        case .unavailable, .timedOut, .connectionLost, .shutDown: .unavailable(error.description)
        }
    }

    private static func unexpected(_ value: RESPValue) -> StoreError {
        .io("unexpected redis reply: \(value)")
    }
}
