import TusRedis

/// The Lua scripts that make each state change atomic. Each touches only the keys of one upload (one hash slot),
/// and answers a short status word for every failure, so the Swift side never guesses.
enum RedisScripts {
    /// KEYS: info, gone. → the record's fields (flat array), `"gone"`, or nil.
    static let lookup = RedisScript(
        source: """
            local fields = redis.call('HGETALL', KEYS[1])
            if #fields > 0 then return fields end
            if redis.call('EXISTS', KEYS[2]) == 1 then return 'gone' end
            return false
            """)

    /// KEYS: info, gone. ARGV: field, value, ... → 1 created, 0 the id is taken or gone.
    static let create = RedisScript(
        source: """
            if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
            redis.call('HSET', KEYS[1], unpack(ARGV))
            return 1
            """)

    /// KEYS: info, gone. ARGV: length, completing (`1`/`0`). → the record, or `gone` / `missing` / `set` / `below`.
    /// `UploadInfo.declaringLength`'s rule: a completing declaration also ends a draft upload's `awaits`, and may
    /// name the length already declared. Both lengths are Swift's decimal text, so comparing strings compares numbers.
    static let declareLength = RedisScript(
        source: """
            if redis.call('EXISTS', KEYS[1]) == 0 then
              if redis.call('EXISTS', KEYS[2]) == 1 then return 'gone' end
              return 'missing'
            end
            local length = redis.call('HGET', KEYS[1], 'length')
            if length then
              if ARGV[2] ~= '1' or redis.call('HEXISTS', KEYS[1], 'awaits') == 0 or length ~= ARGV[1] then
                return 'set'
              end
            else
              if tonumber(redis.call('HGET', KEYS[1], 'offset')) > tonumber(ARGV[1]) then return 'below' end
              redis.call('HSET', KEYS[1], 'length', ARGV[1])
            end
            if ARGV[2] == '1' then redis.call('HDEL', KEYS[1], 'awaits') end
            return redis.call('HGETALL', KEYS[1])
            """)

    /// KEYS: info, gone, lock. ARGV: token, offset. The writer still holds the lock and the record is at `offset`.
    /// → the record, or `lock` / `gone` / `missing` / `conflict`.
    static let beginWrite = RedisScript(
        source: """
            if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 'lock' end
            local fields = redis.call('HGETALL', KEYS[1])
            if #fields == 0 then
              if redis.call('EXISTS', KEYS[2]) == 1 then return 'gone' end
              return 'missing'
            end
            if redis.call('HGET', KEYS[1], 'offset') ~= ARGV[2] then return 'conflict' end
            return fields
            """)

    /// KEYS: info, gone, lock. ARGV: token, offset, expiry mode (`keep`, `set`, `never`), expires.
    /// Moves the offset only for the lock's current holder: a writer whose lease lapsed gets `lock`.
    /// A complete upload loses its expiry; one that `awaits` its completing request is not complete at its length.
    /// → the record, or `lock` / `gone` / `missing`.
    static let advance = RedisScript(
        source: """
            if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 'lock' end
            if redis.call('EXISTS', KEYS[1]) == 0 then
              if redis.call('EXISTS', KEYS[2]) == 1 then return 'gone' end
              return 'missing'
            end
            redis.call('HSET', KEYS[1], 'offset', ARGV[2])
            if ARGV[3] == 'set' then
              redis.call('HSET', KEYS[1], 'expires', ARGV[4])
            elseif ARGV[3] == 'never' then
              redis.call('HDEL', KEYS[1], 'expires')
            end
            if redis.call('HGET', KEYS[1], 'length') == ARGV[2] and redis.call('HEXISTS', KEYS[1], 'awaits') == 0 then
              redis.call('HDEL', KEYS[1], 'expires')
            end
            return redis.call('HGETALL', KEYS[1])
            """)

    /// KEYS: info, gone. ARGV: length. A final upload's data is assembled: offset = length, no expiry. Idempotent
    /// (every instance that assembles writes the same values). → the record, or `gone` / `missing` / `notfinal`.
    static let completeFinal = RedisScript(
        source: """
            if redis.call('EXISTS', KEYS[1]) == 0 then
              if redis.call('EXISTS', KEYS[2]) == 1 then return 'gone' end
              return 'missing'
            end
            if redis.call('HEXISTS', KEYS[1], 'parts') == 0 then return 'notfinal' end
            redis.call('HSET', KEYS[1], 'length', ARGV[1], 'offset', ARGV[1])
            redis.call('HDEL', KEYS[1], 'expires')
            return redis.call('HGETALL', KEYS[1])
            """)

    /// KEYS: info, gone, finals. ARGV: reason, gone marker TTL in ms. → `ok`, `gone`, `missing`.
    static let remove = RedisScript(
        source: """
            if redis.call('EXISTS', KEYS[1]) == 0 then
              if redis.call('EXISTS', KEYS[2]) == 1 then return 'gone' end
              return 'missing'
            end
            redis.call('DEL', KEYS[1], KEYS[3])
            redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
            return 'ok'
            """)

    /// KEYS: lock. ARGV: token, lease ms. → 1 renewed, 0 the lease is someone else's (or lapsed).
    static let renewLock = RedisScript(
        source: """
            if redis.call('GET', KEYS[1]) == ARGV[1] then
              redis.call('PEXPIRE', KEYS[1], ARGV[2])
              return 1
            end
            return 0
            """)

    /// KEYS: lock. ARGV: the orphaned token, the new token, lease ms. → 1 the lease is now the new token's; else,
    /// as `SET NX GET` answers, the token it holds instead (nil: none), so the waiter knows whom it may ask to let go.
    static let takeOverLock = RedisScript(
        source: """
            local current = redis.call('GET', KEYS[1])
            if current == ARGV[1] then
              redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
              return 1
            end
            return current
            """)

    /// KEYS: lock. ARGV: token, released channel (empty: the caller publishes), upload id. Deletes only our own
    /// lease, then tells the waiters.
    static let releaseLock = RedisScript(
        source: """
            if redis.call('GET', KEYS[1]) == ARGV[1] then
              redis.call('DEL', KEYS[1])
              if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
              return 1
            end
            return 0
            """)
}
