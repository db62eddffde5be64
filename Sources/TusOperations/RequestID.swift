import TusCrypto

#if canImport(Glibc)
    import Glibc
#endif

/// One thread's request ids.
final class RequestIDGenerator {
    /// The random half's 16 hex digits.
    private let prefix: [UInt8]
    private var counter: UInt64 = 0

    init() {
        prefix = Array(Hex.encode(SecureRandom.bytes(8)).utf8)
    }

    /// Written digit by digit into the string's own storage: concatenating the halves cost three allocations per
    /// request.
    func next() -> String {
        counter &+= 1
        let counter = counter
        return String(unsafeUninitializedCapacity: 32) { text in
            for index in 0..<16 { text[index] = prefix[index] }
            for index in 0..<16 {
                let nibble = UInt8(truncatingIfNeeded: counter >> UInt64(60 - 4 * index)) & 0x0F
                text[16 + index] = nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
            }
            return 32
        }
    }
}

/// `X-Request-ID`: the client's (or a proxy's) id when it is safe to put into logs and hook payloads,
/// otherwise a fresh one. Bounded and restricted to characters that need no escaping in a log line, a JSON
/// string or a header, so a client cannot forge log fields or split lines with it.
public enum RequestID {
    public static let headerName = "X-Request-ID"
    public static let maxLength = 128

    /// The client's id if it is 1...128 of `[A-Za-z0-9._:+/=-]`, else nil.
    public static func accept(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= maxLength else { return nil }
        let isSane = value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
                UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: "-"):
                true
            default: false
            }
        }
        return isSane ? value : nil
    }

    /// 32 hex digits: 64 random bits drawn once per thread, then a per-thread counter. Unique across threads
    /// and instances without coordination (the random half), and cheap per request (no RNG call: ids need to
    /// be unique, not unpredictable).
    public static func make() -> String {
        let generator: RequestIDGenerator
        if let raw = pthread_getspecific(generatorKey) {
            generator = Unmanaged<RequestIDGenerator>.fromOpaque(raw).takeUnretainedValue()
        } else {
            generator = RequestIDGenerator()
            // One per loop thread, kept for the thread's life (threads are few and long-lived).
            pthread_setspecific(generatorKey, Unmanaged.passRetained(generator).toOpaque())
        }
        return generator.next()
    }

    private static let generatorKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { raw in
            if let raw { Unmanaged<RequestIDGenerator>.fromOpaque(raw).release() }
        }
        return key
    }()
}
