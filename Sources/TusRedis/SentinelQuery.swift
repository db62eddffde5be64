import TusCrypto
import TusLoop

/// Asks Redis Sentinel where the master is (`SENTINEL get-master-addr-by-name`), one sentinel after another.
///
/// Each question goes over a short-lived `RedisConnection` of its own, so it has the same connect and reply
/// deadlines as every other command, and a silent sentinel costs at most those before the next one is asked.
/// What a sentinel answers is only a hint: the caller connects there and checks `ROLE`, since a sentinel
/// that has not yet seen a failover (or sits on the wrong side of a partition) still names the old master.
enum SentinelQuery {
    struct Located {
        var master: RedisEndpoint
        /// The sentinel that answered: asked first next time.
        var sentinelIndex: Int
    }

    /// Why no sentinel named the master, for the outage log line.
    struct Failure: Error {
        var text: String
    }

    /// Asks the sentinels in turn, starting at `startingAt`, until one names `sentinel.masterName`; `completion`
    /// runs on `loop`.
    static func locateMaster(
        _ sentinel: RedisSentinelConfiguration, configuration: RedisConfiguration,
        tls: Result<TLSContext, TLSError>?, on loop: EventLoop, startingAt first: Int, completion: @escaping (Result<Located, Failure>) -> Void
    ) {
        var reasons: [String] = []
        func ask(_ attempt: Int) {
            guard attempt < sentinel.sentinels.count else {
                let text = "no sentinel named master \(sentinel.masterName): " + reasons.joined(separator: "; ")
                return completion(.failure(Failure(text: text)))
            }
            let index = (first + attempt) % sentinel.sentinels.count
            let address = sentinel.sentinels[index]
            let probe = RedisConnection(
                loop: loop, role: .commands, configuration: configuration.fixed(at: address, isSentinel: true), tls: tls,
                outageLog: OutageLog(endpoint: address.description, log: { _ in }), target: .server(address))
            probe.send(["SENTINEL", "get-master-addr-by-name", RedisArgument(sentinel.masterName)]) { reply in
                probe.shutdown {}
                switch reply {
                case .success(let value):
                    if let master = masterAddress(value) {
                        return completion(.success(Located(master: master, sentinelIndex: index)))
                    }
                    reasons.append("\(address) knows no such master")
                case .failure(let error):
                    reasons.append("\(address): \(error)")
                }
                ask(attempt + 1)
            }
        }
        ask(0)
    }

    /// `[ip, port]`, or nil for a null reply (a sentinel that does not monitor that name) or anything else.
    static func masterAddress(_ value: RESPValue) -> RedisEndpoint? {
        guard let parts = value.array, parts.count == 2, let host = parts[0].string, !host.isEmpty,
            let port = parts[1].string.flatMap({ Int($0) }), (1...65535).contains(port)
        else { return nil }
        return RedisEndpoint(host: host, port: port)
    }

    /// `+switch-master` messages read `<name> <old-ip> <old-port> <new-ip> <new-port>`: the new master if the
    /// message is about `masterName`.
    static func switchedMaster(_ message: [UInt8], masterName: String) -> RedisEndpoint? {
        let fields = String(decoding: message, as: UTF8.self).split(separator: " ")
        guard fields.count == 5, fields[0] == masterName, let port = Int(fields[4]), (1...65535).contains(port)
        else { return nil }
        return RedisEndpoint(host: String(fields[3]), port: port)
    }
}
