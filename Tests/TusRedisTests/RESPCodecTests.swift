import TusTestSupport
import XCTest

@testable import TusRedis

/// Feeds `bytes` to a fresh decoder in the pieces ending at `ends` (each piece its own exact allocation, dropped
/// after `append`), draining values after every piece; returns the values and the failure, if any.
private func decodeAll(
    _ bytes: [UInt8], ends: [Int], limits: RESPDecoderLimits = RESPDecoderLimits()
) -> DecodeOutcome {
    var decoder = RESPDecoder(limits: limits)
    var values: [RESPValue] = []
    var start = 0
    for end in ends {
        withExactAllocation(bytes[start..<end]) { decoder.append($0) }
        start = end
        while true {
            switch decoder.next() {
            case .needMoreData:
                break
            case .value(let value):
                values.append(value)
                continue
            case .failure(let error):
                return DecodeOutcome(values: values, error: error, leftover: decoder.bufferedByteCount)
            }
            break
        }
    }
    return DecodeOutcome(values: values, error: nil, leftover: decoder.bufferedByteCount)
}

private struct DecodeOutcome: Equatable {
    var values: [RESPValue]
    var error: RESPDecodeError?
    /// Bytes of an incomplete value at the end (0 when the input ended on a value boundary).
    var leftover: Int
}

/// The outcome with the input in one piece, after checking that every other way of cutting it agrees.
private func decodeSplitEverywhere(
    _ bytes: [UInt8], limits: RESPDecoderLimits = RESPDecoderLimits(), file: StaticString = #filePath,
    line: UInt = #line
) -> DecodeOutcome {
    let strategies = splitStrategies(count: bytes.count, exhaustive: bytes.count <= 600)
    let whole = decodeAll(bytes, ends: strategies[0].ends, limits: limits)
    for strategy in strategies.dropFirst() {
        let outcome = decodeAll(bytes, ends: strategy.ends, limits: limits)
        if whole.error != nil {
            // A failure may be detected at a different value only if it is the same failure.
            XCTAssertEqual(outcome.error, whole.error, strategy.name, file: file, line: line)
        } else {
            XCTAssertEqual(outcome, whole, strategy.name, file: file, line: line)
        }
    }
    return whole
}

final class RESPCodecTests: XCTestCase {
    private let samples: [RESPValue] = [
        .simpleString("OK"),
        .simpleString(""),
        .error("ERR unknown command 'FOO'"),
        .integer(0),
        .integer(-1),
        .integer(Int64.max),
        .integer(Int64.min),
        .bulkString([]),
        .bulkString(Array("hello".utf8)),
        .bulkString([0, 13, 10, 36, 42, 255, 13]),
        .null,
        .array([]),
        .array([.integer(1), .bulkString(Array("two".utf8)), .null, .array([.simpleString("nested"), .error("E x")])]),
    ]

    func testEveryValueRoundTripsAtEverySplitPoint() {
        for sample in samples {
            let outcome = decodeSplitEverywhere(sample.encoded)
            XCTAssertEqual(outcome, DecodeOutcome(values: [sample], error: nil, leftover: 0), "\(sample)")
        }
    }

    func testAPipelineOfRepliesDecodesInOrderAtEverySplitPoint() {
        var stream: [UInt8] = []
        for sample in samples { sample.encode(into: &stream) }
        XCTAssertEqual(decodeSplitEverywhere(stream), DecodeOutcome(values: samples, error: nil, leftover: 0))
    }

    func testNullArrayAndNullBulkBothDecodeAsNull() {
        XCTAssertEqual(decodeAll(Array("*-1\r\n$-1\r\n".utf8), ends: [10]).values, [.null, .null])
    }

    func testIncompleteInputAsksForMoreAndKeepsItsBytes() {
        let bytes = Array("$5\r\nhel".utf8)
        var decoder = RESPDecoder()
        decoder.append(bytes)
        XCTAssertEqual(decoder.next(), .needMoreData)
        XCTAssertEqual(decoder.bufferedByteCount, bytes.count)
        decoder.append(Array("lo\r\n+OK\r".utf8))
        XCTAssertEqual(decoder.next(), .value(.bulkString(Array("hello".utf8))))
        XCTAssertEqual(decoder.next(), .needMoreData)
        decoder.append([10])
        XCTAssertEqual(decoder.next(), .value(.simpleString("OK")))
        XCTAssertEqual(decoder.next(), .needMoreData)
        XCTAssertEqual(decoder.bufferedByteCount, 0)
    }

    func testALargeBulkStringArrivingInManyReadsDecodesOnce() {
        let payload = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let encoded = RESPValue.bulkString(payload).encoded
        var decoder = RESPDecoder()
        var results: [RESPDecodeResult] = []
        for start in stride(from: 0, to: encoded.count, by: 65536) {
            decoder.append(Array(encoded[start..<min(start + 65536, encoded.count)]))
            let result = decoder.next()
            if result != .needMoreData { results.append(result) }
        }
        XCTAssertEqual(results, [.value(.bulkString(payload))])
    }

    func testMalformedInputFailsWithAStickyError() {
        let cases: [(String, RESPDecodeError)] = [
            ("?x\r\n", .invalidType(UInt8(ascii: "?"))),
            (":12a\r\n", .invalidInteger),
            (":\r\n", .invalidInteger),
            (":-\r\n", .invalidInteger),
            (":99999999999999999999\r\n", .invalidInteger),
            ("$-2\r\n", .invalidLength(-2)),
            ("*-5\r\n", .invalidLength(-5)),
            ("$3\r\nabcd\r\n", .missingCRLF),
            ("+OK\rX", .missingCRLF),
        ]
        for (input, expected) in cases {
            let outcome = decodeSplitEverywhere(Array(input.utf8))
            XCTAssertEqual(outcome.error, expected, input)
        }
        var decoder = RESPDecoder()
        decoder.append(Array("?\r\n+OK\r\n".utf8))
        XCTAssertEqual(decoder.next(), .failure(.invalidType(UInt8(ascii: "?"))))
        XCTAssertEqual(decoder.next(), .failure(.invalidType(UInt8(ascii: "?"))), "errors are sticky until reset")
        decoder.reset()
        decoder.append(Array("+OK\r\n".utf8))
        XCTAssertEqual(decoder.next(), .value(.simpleString("OK")))
    }

    func testLimitsAreCheckedFromTheHeaderBeforeThePayloadArrives() {
        let limits = RESPDecoderLimits(maxBulkLength: 10, maxArrayCount: 3, maxDepth: 2, maxLineLength: 8)
        XCTAssertEqual(decodeSplitEverywhere(Array("$11\r\n".utf8), limits: limits).error, .bulkTooLong(11))
        XCTAssertEqual(decodeSplitEverywhere(Array("$10\r\n0123456789\r\n".utf8), limits: limits).values.count, 1)
        XCTAssertEqual(decodeSplitEverywhere(Array("*4\r\n".utf8), limits: limits).error, .arrayTooLong(4))
        XCTAssertEqual(
            decodeSplitEverywhere(Array("*1\r\n*1\r\n*1\r\n:1\r\n".utf8), limits: limits).error, .nestedTooDeep)
        XCTAssertEqual(decodeSplitEverywhere(Array("+123456789".utf8), limits: limits).error, .lineTooLong)
        XCTAssertEqual(decodeSplitEverywhere(Array("+12345678\r\n".utf8), limits: limits).values.count, 1)
        // A huge claimed array count with few bytes must not preallocate for the claim.
        XCTAssertEqual(decodeAll(Array("*1000000\r\n:1\r\n".utf8), ends: [14]).leftover, 14)
    }

    func testCommandsEncodeAsArraysOfBulkStrings() {
        XCTAssertEqual(
            RESPCommandEncoder.encode(["SET", "key", .bytes([0, 13, 10]), 42]),
            Array("*4\r\n$3\r\nSET\r\n$3\r\nkey\r\n$3\r\n".utf8) + [0, 13, 10] + Array("\r\n$2\r\n42\r\n".utf8))
        XCTAssertEqual(RESPCommandEncoder.encode([]), Array("*0\r\n".utf8))
        XCTAssertEqual(RESPValue.integer(-12).encoded, Array(":-12\r\n".utf8))
        XCTAssertEqual(RESPValue.integer(Int64.min).encoded, Array(":-9223372036854775808\r\n".utf8))
    }

    func testSHA1KnownAnswers() {
        XCTAssertEqual(SHA1.hexDigest(of: []), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(SHA1.hexDigest(of: Array("abc".utf8)), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(
            SHA1.hexDigest(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        XCTAssertEqual(
            SHA1.hexDigest(of: [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }
}

final class RedisConfigurationTests: XCTestCase {
    func testURLForms() throws {
        let plain = try RedisConfiguration(url: "redis://127.0.0.1:6380")
        XCTAssertEqual(plain.host, "127.0.0.1")
        XCTAssertEqual(plain.port, 6380)
        XCTAssertNil(plain.password)
        XCTAssertNil(plain.username)
        XCTAssertEqual(plain.database, 0)
        XCTAssertEqual(plain.commandTimeoutMilliseconds, 2000)

        let withPassword = try RedisConfiguration(url: "redis://:s3cr%40t@redis.internal/4")
        XCTAssertEqual(withPassword.host, "redis.internal")
        XCTAssertEqual(withPassword.port, 6379)
        XCTAssertEqual(withPassword.password, "s3cr@t")
        XCTAssertNil(withPassword.username)
        XCTAssertEqual(withPassword.database, 4)

        let withUser = try RedisConfiguration(url: "redis://tus:pw:with:colons@[::1]:7000/2")
        XCTAssertEqual(withUser.username, "tus")
        XCTAssertEqual(withUser.password, "pw:with:colons")
        XCTAssertEqual(withUser.host, "::1")
        XCTAssertEqual(withUser.port, 7000)
        XCTAssertEqual(withUser.database, 2)
        XCTAssertEqual(withUser.endpointDescription, "[::1]:7000")

        XCTAssertEqual(try RedisConfiguration(url: "redis://onlypassword@h").password, "onlypassword")
        XCTAssertEqual(try RedisConfiguration(url: "redis://h/").database, 0)
        XCTAssertNil(plain.tls)

        let secure = try RedisConfiguration(url: "rediss://:pw@redis.internal:6380/1")
        XCTAssertEqual(secure.tls, RedisTLSOptions())
        XCTAssertEqual(secure.host, "redis.internal")
        XCTAssertEqual(secure.port, 6380)
        XCTAssertEqual(secure.database, 1)
        XCTAssertEqual(secure.description, "rediss://:***@redis.internal:6380/1")
    }

    func testSentinelURLForms() throws {
        let full = try RedisConfiguration(
            url: "redis+sentinel://tus:p%40ss@10.0.0.1:5000,[::1],s3.internal/my%20master/3")
        XCTAssertEqual(
            full.sentinel,
            RedisSentinelConfiguration(
                sentinels: [
                    RedisEndpoint(host: "10.0.0.1", port: 5000), RedisEndpoint(host: "::1", port: 26379),
                    RedisEndpoint(host: "s3.internal", port: 26379),
                ], masterName: "my master"))
        XCTAssertEqual(full.username, "tus")
        XCTAssertEqual(full.password, "p@ss", "the credentials are the master's")
        XCTAssertEqual(full.database, 3)
        XCTAssertEqual(
            full.description, "redis+sentinel://tus:***@10.0.0.1:5000,[::1]:26379,s3.internal:26379/my master/3")
        XCTAssertEqual(full.endpointDescription, "master my master via 10.0.0.1:5000,[::1]:26379,s3.internal:26379")

        let minimal = try RedisConfiguration(url: "redis+sentinel://h/mymaster")
        XCTAssertEqual(minimal.sentinel?.sentinels, [RedisEndpoint(host: "h", port: 26379)])
        XCTAssertEqual(minimal.sentinel?.masterName, "mymaster")
        XCTAssertEqual(minimal.database, 0)
        XCTAssertNil(minimal.password)
        XCTAssertNil(try RedisConfiguration(url: "redis://h").sentinel, "plain redis:// has no sentinels")

        let cases: [(String, RedisConfigurationError)] = [
            ("redis+sentinel://h", .missingMasterName),
            ("redis+sentinel://h/", .missingMasterName),
            ("redis+sentinel://h,/m", .invalidHost("")),
            ("redis+sentinel://h:0/m", .invalidPort("0")),
            ("redis+sentinel://h/m/x", .invalidDatabase("x")),
            ("redis+sentinel://h/m/1/2", .invalidDatabase("1/2")),
            ("redis+shard://h/m", .unsupportedScheme("redis+shard")),
        ]
        for (url, expected) in cases {
            XCTAssertThrowsError(try RedisConfiguration(url: url), url) { error in
                XCTAssertEqual(error as? RedisConfigurationError, expected, url)
            }
        }
    }

    /// What sentinels answer: the master's address (or null for a name they do not monitor), and `+switch-master`
    /// messages, of which only those about our master count.
    func testSentinelRepliesAndSwitchMessages() {
        let address = RESPValue.array([.bulkString(Array("10.0.0.7".utf8)), .bulkString(Array("6380".utf8))])
        XCTAssertEqual(SentinelQuery.masterAddress(address), RedisEndpoint(host: "10.0.0.7", port: 6380))
        XCTAssertNil(SentinelQuery.masterAddress(.null), "a sentinel that does not monitor the name")
        XCTAssertNil(SentinelQuery.masterAddress(.array([.bulkString(Array("h".utf8)), .bulkString(Array("0".utf8))])))
        XCTAssertNil(SentinelQuery.masterAddress(.error("ERR unknown command")))
        let rows: [(String, RedisEndpoint?)] = [
            ("mymaster 127.0.0.1 6379 127.0.0.1 6380", RedisEndpoint(host: "127.0.0.1", port: 6380)),
            ("other 127.0.0.1 6379 127.0.0.1 6380", nil),
            ("mymaster 127.0.0.1 6379 127.0.0.1", nil),
            ("mymaster 127.0.0.1 6379 127.0.0.1 x", nil),
            ("mymasterX 127.0.0.1 6379 ::1 6380", nil),
        ]
        for (message, expected) in rows {
            XCTAssertEqual(SentinelQuery.switchedMaster(Array(message.utf8), masterName: "mymaster"), expected, message)
        }
        XCTAssertTrue(RedisConnection.meansNotTheMaster("READONLY You can't write against a read only replica."))
        XCTAssertTrue(RedisConnection.meansNotTheMaster("MASTERDOWN Link with MASTER is down"))
        XCTAssertTrue(RedisConnection.meansNotTheMaster("LOADING Redis is loading the dataset in memory"))
        XCTAssertFalse(RedisConnection.meansNotTheMaster("ERR wrong number of arguments"))
        XCTAssertFalse(RedisConnection.meansNotTheMaster("NOSCRIPT No matching script"))
    }

    func testInvalidURLsAreRejectedWithoutEchoingThePassword() {
        let cases: [(String, RedisConfigurationError)] = [
            ("redisss://h", .unsupportedScheme("redisss")),
            ("http://:pw@h", .unsupportedScheme("http")),
            ("127.0.0.1:6379", .unsupportedScheme("")),
            ("redis://", .invalidHost("")),
            ("redis://:pw@:6379", .invalidHost(":6379")),
            ("redis://h:0", .invalidPort("0")),
            ("redis://h:70000", .invalidPort("70000")),
            ("redis://h:x", .invalidPort("x")),
            ("redis://h/x", .invalidDatabase("x")),
            ("redis://h/-1", .invalidDatabase("-1")),
            ("redis://:%zz@h", .invalidPercentEncoding),
            ("redis://[::1", .invalidHost("[::1")),
        ]
        for (url, expected) in cases {
            XCTAssertThrowsError(try RedisConfiguration(url: url), url) { error in
                XCTAssertEqual(error as? RedisConfigurationError, expected, url)
            }
        }
        let configuration = try? RedisConfiguration(url: "redis://tus:hunter2@h:7000/3")
        XCTAssertEqual(configuration?.description, "redis://tus:***@h:7000/3")
        XCTAssertEqual(try? RedisConfiguration(url: "redis://h").description, "redis://h:6379/0")
    }
}
