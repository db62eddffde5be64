import TusHTTP1
import TusTestSupport
import XCTest

func decodeEverywhere(
    _ text: String, framing: BodyFraming = .chunked, limits: HTTPParserLimits = .init(),
    file: StaticString = #filePath, line: UInt = #line
) -> BodyDecodeOutcome {
    decodeEverywhere(Array(text.utf8), framing: framing, limits: limits, file: file, line: line)
}

func decodeEverywhere(
    _ bytes: [UInt8], framing: BodyFraming = .chunked, limits: HTTPParserLimits = .init(),
    file: StaticString = #filePath, line: UInt = #line
) -> BodyDecodeOutcome {
    let report = decodeBodySplitEverywhere(bytes, framing: framing, limits: limits)
    XCTAssertTrue(report.isConsistent, "split feeding disagrees: \(report)", file: file, line: line)
    return report.outcome
}

private func utf8(_ s: String) -> [UInt8] { Array(s.utf8) }

final class BodyDecoderTests: XCTestCase {
    func testContentLengthStopsAtLength() {
        XCTAssertEqual(
            decodeEverywhere("helloGET / HTTP/1.1\r\n", framing: .contentLength(5)),
            .complete(body: utf8("hello"), trailers: [:], consumed: 5))
    }

    func testContentLengthIncomplete() {
        XCTAssertEqual(decodeEverywhere("hel", framing: .contentLength(5)), .incomplete(body: utf8("hel")))
    }

    func testContentLengthProgress() {
        var decoder = BodyDecoder(framing: .contentLength(10))
        XCTAssertEqual(decoder.remainingContentLength, 10)
        let (event, consumed) = utf8("abcd").withUnsafeBytes { decoder.next($0) }
        XCTAssertEqual(event, .data(0..<4))
        XCTAssertEqual(consumed, 4)
        XCTAssertEqual(decoder.remainingContentLength, 6)
        XCTAssertFalse(decoder.isComplete)
        XCTAssertEqual(decoder.next(UnsafeRawBufferPointer(start: nil, count: 0)).event, .needMoreData)
    }

    func testNoBodyEndsImmediately() {
        XCTAssertEqual(decodeEverywhere("GET", framing: .none), .complete(body: [], trailers: [:], consumed: 0))
        let decoder = BodyDecoder(framing: .none)
        XCTAssertTrue(decoder.isComplete)
        XCTAssertEqual(decoder.remainingContentLength, 0)
        XCTAssertNil(BodyDecoder(framing: .chunked).remainingContentLength)
    }

    func testChunkedSimple() {
        let text = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        XCTAssertEqual(
            decodeEverywhere(text + "GET / HTTP/1.1\r\n"),
            .complete(body: utf8("hello world"), trailers: [:], consumed: text.utf8.count))
    }

    func testChunkedWithExtensionsAndTrailers() {
        let text =
            "5;name=value\r\nhello\r\n6 ; a=\"b c\";flag\r\n world\r\nA\r\n0123456789\r\n0;last\r\n"
            + "Upload-Checksum: sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=\r\nX-Other:  v \r\n\r\n"
        XCTAssertEqual(
            decodeEverywhere(text + "\r\nnext"),
            .complete(
                body: utf8("hello world0123456789"),
                trailers: ["upload-checksum": "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", "X-Other": "v"],
                consumed: text.utf8.count))
    }

    func testChunkSizeForms() {
        XCTAssertEqual(
            decodeEverywhere("0000a\r\n0123456789\r\n0\r\n\r\n"),
            .complete(body: utf8("0123456789"), trailers: [:], consumed: 24))
        XCTAssertEqual(decodeEverywhere("F\r\n"), .incomplete(body: []))
        // 15 hex digits is the largest size accepted.
        XCTAssertEqual(decodeEverywhere("fffffffffffffff\r\nab"), .incomplete(body: utf8("ab")))
    }

    func testManyTinyChunks() {
        var text = ""
        var expected: [UInt8] = []
        for i in 0..<200 {
            let byte = UInt8(0x41 + i % 26)
            text += "1\r\n" + String(UnicodeScalar(byte)) + "\r\n"
            expected.append(byte)
        }
        text += "0\r\n\r\n"
        XCTAssertEqual(decodeEverywhere(text), .complete(body: expected, trailers: [:], consumed: text.utf8.count))
    }

    func testMalformedChunkedTable() {
        let cases: [(String, String, Int, String)] = [
            // (name, input, status, body bytes delivered before the error)
            ("non-hex size", "g\r\n", 400, ""),
            ("empty size", "\r\nhello\r\n", 400, ""),
            ("negative size", "-5\r\n", 400, ""),
            ("0x prefix", "0x5\r\n", 400, ""),
            ("16 hex digits", "1234567890abcdef\r\n", 400, ""),
            ("overflowing size", "ffffffffffffffffffff\r\n", 400, ""),
            ("bare LF after size", "5\nhello\r\n", 400, ""),
            ("CR then junk", "5\rXhello", 400, ""),
            ("junk after size", "5 x\r\n", 400, ""),
            ("control in extension", "5;a=\u{1}\r\n", 400, ""),
            ("missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", 400, "hello"),
            ("CR CR after data", "5\r\nhello\r\r0\r\n\r\n", 400, "hello"),
            ("data longer than size", "3\r\nhello\r\n", 400, "hel"),
            ("second chunk bad", "2\r\nhi\r\nzz\r\n", 400, "hi"),
            ("trailer obs-fold", "0\r\nA: b\r\n c\r\n\r\n", 400, ""),
            ("trailer bare LF", "0\r\nA: b\n\r\n", 400, ""),
            ("trailer end bare LF", "0\r\n\n", 400, ""),
            ("trailer no colon", "0\r\nA\r\n\r\n", 400, ""),
            ("trailer space before colon", "0\r\nA : b\r\n\r\n", 400, ""),
        ]
        for (name, text, status, before) in cases {
            let outcome = decodeEverywhere(text)
            guard case .failure(let error, let body) = outcome else {
                XCTFail("\(name): expected \(status), got \(outcome)")
                continue
            }
            XCTAssertEqual(error.status.code, status, "\(name): \(error)")
            XCTAssertEqual(body, utf8(before), name)
        }
    }

    func testChunkLineLimit() {
        let limits = HTTPParserLimits(maxChunkLineBytes: 16)
        XCTAssertEqual(
            decodeEverywhere("5;ext=123456789\r\nhello\r\n0\r\n\r\n", limits: limits),
            .complete(body: utf8("hello"), trailers: [:], consumed: 29))
        guard case .failure(let error, _) = decodeEverywhere("5;ext=1234567890\r\nhello\r\n", limits: limits) else {
            return XCTFail()
        }
        XCTAssertEqual(error.status.code, 400)
        // An endless extension fails once past the limit, without the line ever ending.
        let endless = Array("5;".utf8) + [UInt8](repeating: 0x61, count: 10_000)
        guard case .failure = decodeBody(endless, framing: .chunked, ends: [endless.count]) else { return XCTFail() }
    }

    func testTrailerLimits() {
        let trailer = "0\r\nA: 1234567890\r\nB: 1234567890\r\n\r\n"  // trailer section is 32 bytes
        XCTAssertEqual(
            decodeEverywhere(trailer, limits: .init(maxTrailerBytes: 32)),
            .complete(body: [], trailers: ["A": "1234567890", "B": "1234567890"], consumed: trailer.utf8.count))
        guard case .failure(let tooLarge, _) = decodeEverywhere(trailer, limits: .init(maxTrailerBytes: 31)) else {
            return XCTFail()
        }
        XCTAssertEqual(tooLarge.status.code, 431)
        guard case .failure(let tooMany, _) = decodeEverywhere(trailer, limits: .init(maxHeaderCount: 1)) else {
            return XCTFail()
        }
        XCTAssertEqual(tooMany.status.code, 431)
    }

    func testFailureIsSticky() {
        var decoder = BodyDecoder(framing: .chunked)
        let bad = utf8("zz\r\n")
        guard case .failure(let error) = bad.withUnsafeBytes({ decoder.next($0).event }) else { return XCTFail() }
        XCTAssertEqual(utf8("5\r\nhello").withUnsafeBytes { decoder.next($0).event }, .failure(error))
    }

    func testEndRepeatsWithoutConsuming() {
        var decoder = BodyDecoder(framing: .contentLength(2))
        XCTAssertEqual(utf8("ab").withUnsafeBytes { decoder.next($0).event }, .data(0..<2))
        let after = utf8("GET").withUnsafeBytes { decoder.next($0) }
        XCTAssertEqual(after.event, .end(trailers: [:]))
        XCTAssertEqual(after.consumed, 0)
    }
}
