import TusHTTP1
import TusTestSupport
import XCTest

/// SplitMix64: deterministic, so a failure reproduces from the seed alone.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Not a real fuzzer (that belongs in a fuzz target), but a cheap net: random and mutated inputs must never
/// crash, hang, or give split-dependent results, and every run ends in a definite outcome.
final class ParserFuzzTests: XCTestCase {
    private let pieces: [String] = [
        "GET", "POST", "PATCH", " ", "/", "/files/1", "*", "HTTP/1.1", "HTTP/1.0", "\r\n", "\r\n\r\n", "\n", "\r", ":",
        ": ", "Host", "Content-Length", "Transfer-Encoding", "chunked", "Connection", "close", "Expect",
        "100-continue", "0", "5", "ff", ";", ",", "\t", "a", "hello", "\u{0}", "\u{7F}", "\u{FF}",
    ]

    private let validRequests: [String] = [
        "POST /files HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "PATCH /files/1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
            + "5;x=y\r\nhello\r\n3\r\nabc\r\n0\r\nUpload-Checksum: sha1 abc=\r\n\r\n",
        "HEAD /files/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    ]

    func testRandomAndMutatedInputsAlwaysTerminateConsistently() {
        var rng = SeededGenerator(state: 0x5EED_1234)
        var outcomes = [String: Int]()
        for iteration in 0..<2000 {
            let input: [UInt8]
            switch iteration % 4 {
            case 0:
                input = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:
                var text = ""
                for _ in 0..<Int.random(in: 1..<24, using: &rng) { text += pieces.randomElement(using: &rng)! }
                input = Array(text.utf8)
            default:
                input = mutate(Array(validRequests.randomElement(using: &rng)!.utf8), using: &rng)
            }
            let kind = check(input, limits: .init(maxHeadBytes: 256, maxHeaderCount: 8, maxTrailerBytes: 64))
            outcomes[kind, default: 0] += 1
        }
        // The mutations must exercise the interesting paths, not just fail on byte one.
        XCTAssertGreaterThan(outcomes["head", default: 0], 100, "\(outcomes)")
        XCTAssertGreaterThan(outcomes["failure", default: 0], 100, "\(outcomes)")
    }

    func testRandomChunkedBodies() {
        var rng = SeededGenerator(state: 42)
        for _ in 0..<500 {
            var text = ""
            for _ in 0..<Int.random(in: 0..<6, using: &rng) {
                let size = Int.random(in: 0..<6, using: &rng)
                text += String(size, radix: 16) + "\r\n" + String(repeating: "z", count: size) + "\r\n"
            }
            text += "0\r\n\r\n"
            let input = mutate(Array(text.utf8), using: &rng)
            let report = decodeBodySplitEverywhere(input, framing: .chunked, exhaustive: false)
            XCTAssertTrue(report.isConsistent, "\(input): \(report)")
            if case .contractViolation = report.outcome { XCTFail("\(input): \(report)") }
        }
    }

    private func check(_ input: [UInt8], limits: HTTPParserLimits) -> String {
        let head = parseHeadSplitEverywhere(input, limits: limits, exhaustive: false)
        XCTAssertTrue(head.isConsistent, "\(input): \(head)")
        switch head.outcome {
        case .needMoreData:
            return "needMoreData"
        case .failure(let error):
            XCTAssertTrue([400, 431, 501, 505].contains(error.status.code), "\(error)")
            return "failure"
        case .head(let request, let consumed):
            XCTAssertGreaterThan(consumed, 0)
            XCTAssertLessThanOrEqual(consumed, input.count)
            let body = decodeBodySplitEverywhere(
                Array(input[consumed...]), framing: request.bodyFraming, limits: limits, exhaustive: false)
            XCTAssertTrue(body.isConsistent, "\(input): \(body)")
            if case .contractViolation = body.outcome { XCTFail("\(input): \(body)") }
            return "head"
        }
    }

    private func mutate(_ bytes: [UInt8], using rng: inout SeededGenerator) -> [UInt8] {
        var bytes = bytes
        for _ in 0..<Int.random(in: 1...3, using: &rng) where !bytes.isEmpty {
            let at = Int.random(in: 0..<bytes.count, using: &rng)
            switch Int.random(in: 0..<5, using: &rng) {
            case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
            case 1: bytes.remove(at: at)
            case 2: bytes.insert(Array("\r\n :;,0aZ\t".utf8).randomElement(using: &rng)!, at: at)
            case 3: bytes.removeSubrange(at...)
            default:
                let end = min(bytes.count, at + Int.random(in: 1..<16, using: &rng))
                bytes.insert(contentsOf: bytes[at..<end], at: end)
            }
        }
        return bytes
    }
}
