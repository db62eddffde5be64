/// Redis Cluster's key space: 16384 hash slots, a key's slot from CRC16 of its hash tag (the part between the
/// first `{` and the next `}`, when not empty) or of the whole key, as in the cluster specification.
public enum ClusterSlots {
    public static let count = 16384

    public static func slot(of key: some Collection<UInt8>) -> Int {
        let bytes = Array(key)
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
            let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        {
            return Int(crc16(bytes[(open + 1)..<close]) % UInt16(count))
        }
        return Int(crc16(bytes) % UInt16(count))
    }

    public static func slot(of key: String) -> Int {
        slot(of: Array(key.utf8))
    }

    /// The slot a command must run in, from its first key (or shard channel), nil for a command without one
    /// (PING, ROLE, CLUSTER ...), which any master can answer. Covers the commands this project sends: the key is
    /// the first argument, except for scripts (`EVAL`/`EVALSHA script numkeys key ...`).
    static func slot(ofCommand arguments: [RedisArgument]) -> Int? {
        guard let name = arguments.first?.bytes else { return nil }
        switch String(decoding: name, as: UTF8.self).uppercased() {
        case "EVAL", "EVALSHA":
            guard arguments.count > 3, let keys = Int(String(decoding: arguments[2].bytes, as: UTF8.self)), keys > 0
            else { return nil }
            return slot(of: arguments[3].bytes)
        case "PING", "ROLE", "CLUSTER", "WAIT", "ASKING", "INFO", "SCRIPT", "PUBLISH", "FLUSHALL", "DBSIZE":
            return nil
        default:
            return arguments.count > 1 ? slot(of: arguments[1].bytes) : nil
        }
    }

    /// CRC16-CCITT (XModem: polynomial 0x1021, initial value 0), the variant the cluster specification names.
    static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 {
                crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }

    /// `-MOVED slot host:port` (the slot lives there now) or `-ASK slot host:port` (this one command, preceded
    /// by `ASKING`, goes there while the slot migrates).
    struct Redirect: Equatable {
        var isMoved: Bool
        var slot: Int
        var endpoint: RedisEndpoint
    }

    static func redirect(_ message: String) -> Redirect? {
        let fields = message.split(separator: " ")
        guard fields.count == 3, fields[0] == "MOVED" || fields[0] == "ASK", let slot = Int(fields[1]),
            (0..<count).contains(slot), let colon = fields[2].lastIndex(of: ":"),
            let port = Int(fields[2][fields[2].index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        var host = String(fields[2][..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return Redirect(isMoved: fields[0] == "MOVED", slot: slot, endpoint: RedisEndpoint(host: host, port: port))
    }

    /// The owner of every slot from a `CLUSTER SLOTS` reply (`[[start, end, [host, port, id...], replicas...]...]`);
    /// an empty host means the node that answered (`answeredBy`). Nil when the reply is not that shape.
    static func owners(fromClusterSlots value: RESPValue, answeredBy: RedisEndpoint) -> [RedisEndpoint?]? {
        guard let ranges = value.array else { return nil }
        var owners = [RedisEndpoint?](repeating: nil, count: count)
        for range in ranges {
            guard let parts = range.array, parts.count >= 3, let start = parts[0].integer, let end = parts[1].integer,
                0 <= start, start <= end, end < count, let master = parts[2].array, master.count >= 2,
                let host = master[0].string, let port = master[1].integer, (1...65535).contains(port)
            else { return nil }
            let endpoint = host.isEmpty || host == "?" ? answeredBy : RedisEndpoint(host: host, port: Int(port))
            for slot in Int(start)...Int(end) { owners[slot] = endpoint }
        }
        return owners
    }
}
