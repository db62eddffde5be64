import TusHTTP1
import TusTestSupport
import XCTest

/// Parses `text` (which spells out its own CRLFs) fed in every split; fails the test if any split disagrees.
func parseHeadEverywhere(
    _ text: String, limits: HTTPParserLimits = .init(), file: StaticString = #filePath, line: UInt = #line
) -> HeadParseResult {
    let report = parseHeadSplitEverywhere(Array(text.utf8), limits: limits)
    XCTAssertTrue(report.isConsistent, "split feeding disagrees: \(report)", file: file, line: line)
    return report.outcome
}

func expectHead(
    _ text: String, limits: HTTPParserLimits = .init(), file: StaticString = #filePath, line: UInt = #line
) -> (head: RequestHead, consumed: Int)? {
    let result = parseHeadEverywhere(text, limits: limits, file: file, line: line)
    guard case .head(let head, let consumed) = result else {
        XCTFail("expected a head, got \(result) for \(text.debugDescription)", file: file, line: line)
        return nil
    }
    return (head, consumed)
}

final class RequestHeadParserTests: XCTestCase {
    func testSimpleGet() throws {
        let text = "GET /files/abc?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n"
        let (head, consumed) = try XCTUnwrap(expectHead(text))
        XCTAssertEqual(consumed, text.utf8.count)
        XCTAssertEqual(head.method, .GET)
        XCTAssertEqual(head.target, "/files/abc?x=1")
        XCTAssertEqual(head.path, "/files/abc")
        XCTAssertEqual(head.version, .http1_1)
        XCTAssertEqual(head.headers, ["Host": "example.com", "User-Agent": "t"])
        XCTAssertEqual(head.bodyFraming, .none)
        XCTAssertTrue(head.keepAlive)
        XCTAssertFalse(head.expectsContinue)
    }

    func testPostWithContentLengthStopsBeforeBody() throws {
        let text = "POST /files HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTus-Resumable: 1.0.0\r\n\r\nhello"
        let (head, consumed) = try XCTUnwrap(expectHead(text))
        XCTAssertEqual(head.method, .POST)
        XCTAssertEqual(head.bodyFraming, .contentLength(5))
        XCTAssertEqual(consumed, text.utf8.count - 5)
    }

    func testIncompleteHeadNeedsMoreData() {
        XCTAssertEqual(parseHeadEverywhere("GET / HTTP/1.1\r\nHost: h\r\n"), .needMoreData)
        XCTAssertEqual(parseHeadEverywhere("GET / HTTP/1.1\r\nHost: h\r\n\r"), .needMoreData)
        XCTAssertEqual(parseHeadEverywhere(""), .needMoreData)
    }

    func testValidHeadsTable() throws {
        // (name, request, expected framing, keepAlive, expectsContinue)
        let cases: [(String, String, BodyFraming, Bool, Bool)] = [
            ("CL 0 is no body", "PATCH /f HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", .none, true, false),
            (
                "identical CL repeats", "PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
                .contentLength(7), true, false
            ),
            (
                "identical CL list", "PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 7 , 7\r\n\r\n", .contentLength(7),
                true, false
            ),
            (
                "max CL digits", "PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999999999\r\n\r\n",
                .contentLength(999_999_999_999_999_999), true, false
            ),
            ("chunked", "POST /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", .chunked, true, false),
            (
                "chunked any case", "POST /f HTTP/1.1\r\nHost: h\r\ntransfer-encoding: CHUNKED\r\n\r\n", .chunked, true,
                false
            ),
            (
                "lowercase names", "POST /f HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\n", .contentLength(3), true,
                false
            ),
            ("1.1 close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", .none, false, false),
            ("1.1 close in list", "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n", .none, false, false),
            ("1.0 default close", "GET / HTTP/1.0\r\n\r\n", .none, false, false),
            ("1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", .none, true, false),
            (
                "1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", .none, false,
                false
            ),
            (
                "expect", "PATCH /f HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
                .contentLength(2), true, true
            ),
            (
                "expect any case", "PATCH /f HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nEXPECT: 100-Continue\r\n\r\n",
                .contentLength(2), true, true
            ),
            (
                "expect ignored on 1.0", "POST /f HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
                .contentLength(2), false, false
            ),
            ("other expectation", "POST /f HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n", .none, true, false),
            ("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", .none, true, false),
            ("absolute form", "GET http://h/p?q HTTP/1.1\r\nHost: h\r\n\r\n", .none, true, false),
            ("empty value", "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n", .none, true, false),
            ("obs-text value", "GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\u{E9}\r\n\r\n", .none, true, false),
        ]
        for (name, text, framing, keepAlive, expectsContinue) in cases {
            guard let (head, consumed) = expectHead(text) else {
                XCTFail(name)
                continue
            }
            XCTAssertEqual(consumed, text.utf8.count, name)
            XCTAssertEqual(head.bodyFraming, framing, name)
            XCTAssertEqual(head.keepAlive, keepAlive, name)
            XCTAssertEqual(head.expectsContinue, expectsContinue, name)
        }
    }

    func testHeaderNamesAreCaseInsensitiveAndValuesTrimmed() throws {
        let text = "HEAD /files/1 HTTP/1.1\r\nHost: h\r\nTUS-Resumable: 1.0.0\r\nX-Pad: \t  padded value \t\r\n\r\n"
        let (head, _) = try XCTUnwrap(expectHead(text))
        XCTAssertEqual(head.method, .HEAD)
        XCTAssertEqual(head.headers["tus-resumable"], "1.0.0")
        XCTAssertEqual(head.headers["Tus-Resumable"], "1.0.0")
        XCTAssertEqual(head.headers.fields[1].name, "TUS-Resumable", "names are kept as sent")
        XCTAssertEqual(head.headers["x-pad"], "padded value")
    }

    func testEmptyLinesBeforeRequestLineAreSkipped() throws {
        let text = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"
        let (head, consumed) = try XCTUnwrap(expectHead(text))
        XCTAssertEqual(head.target, "/")
        XCTAssertEqual(consumed, text.utf8.count)
    }

    func testEveryMethodParses() throws {
        for method in HTTPMethod.allCases {
            let (head, _) = try XCTUnwrap(expectHead("\(method.rawValue) /x HTTP/1.1\r\nHost: h\r\n\r\n"))
            XCTAssertEqual(head.method, method)
        }
    }

    func testMalformedHeadsTable() {
        let cases: [(String, String, Int)] = [
            ("CL and TE", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("TE and CL", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
            ("differing CL", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
            ("differing CL list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400),
            ("CL -1", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
            ("CL +5", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400),
            ("CL 1e3", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1e3\r\n\r\n", 400),
            ("CL overflow", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            ("CL 19 digits", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000000000\r\n\r\n", 400),
            ("CL inner space", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400),
            ("CL empty", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400),
            ("CL empty element", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n", 400),
            ("CL hex", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", 400),
            ("TE gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
            ("TE chunked then gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            ("TE gzip, chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            (
                "TE split fields",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501
            ),
            ("TE chunked twice", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
            ("TE with parameter", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 400),
            ("TE empty", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", 400),
            ("TE on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400),
            ("whitespace before first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
            ("space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
            ("tab before colon", "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400),
            ("no colon", "GET / HTTP/1.1\r\nHost h\r\n\r\n", 400),
            ("empty name", "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400),
            ("bad name char", "GET / HTTP/1.1\r\nHost: h\r\nX(a): v\r\n\r\n", 400),
            ("CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400),
            ("NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\u{0}b\r\n\r\n", 400),
            ("DEL in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\u{7F}\r\n\r\n", 400),
            ("bare LF everywhere", "GET / HTTP/1.1\nHost: h\n\n", 400),
            ("bare LF in field", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400),
            ("bare LF ending head", "GET / HTTP/1.1\r\nHost: h\r\n\n", 400),
            ("unknown method", "FOO / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
            ("lowercase method", "get / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
            ("CONNECT", "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 501),
            ("HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
            ("HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
            ("HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 505),
            ("version two digits", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400),
            ("version no minor", "GET / HTTP/1\r\nHost: h\r\n\r\n", 400),
            ("version lowercase", "GET / http/1.1\r\nHost: h\r\n\r\n", 400),
            ("version garbage", "GET / FOO\r\nHost: h\r\n\r\n", 400),
            ("no version", "GET /\r\nHost: h\r\n\r\n", 400),
            ("trailing space", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
            ("double space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("target not origin form", "GET foo HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("asterisk without OPTIONS", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("control char in target", "GET /a\u{1}b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("non-ASCII target", "GET /caf\u{E9} HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("method with control", "GE\u{1}T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("request line CR only", "GET\r\n\r\n", 400),
            ("missing Host", "GET / HTTP/1.1\r\n\r\n", 400),
            ("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
            ("junk", "\u{16}\u{3}\u{1}\u{0}\u{A5}junk", 400),
        ]
        for (name, text, status) in cases {
            let result = parseHeadEverywhere(text)
            guard case .failure(let error) = result else {
                XCTFail("\(name): expected \(status), got \(result)")
                continue
            }
            XCTAssertEqual(error.status.code, status, "\(name): \(error)")
            XCTAssertFalse(error.message.isEmpty, name)
        }
    }

    func testJunkFailsOnFirstByte() {
        let junk: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00]  // a TLS ClientHello on the plain port
        XCTAssertEqual(parseHead(junk, ends: [1]).statusCode, 400)
    }

    func testHeadSizeLimitExactBoundary() throws {
        let text = "GET / HTTP/1.1\r\nHost: h\r\nX-A: 0123456789\r\n\r\n"
        let size = text.utf8.count
        XCTAssertNotNil(expectHead(text, limits: .init(maxHeadBytes: size)))
        let result = parseHeadEverywhere(text, limits: .init(maxHeadBytes: size - 1))
        XCTAssertEqual(result.statusCode, 431)
    }

    func testHeaderCountLimit() {
        let three = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"
        XCTAssertNotNil(expectHead(three, limits: .init(maxHeaderCount: 3)))
        XCTAssertEqual(parseHeadEverywhere(three, limits: .init(maxHeaderCount: 2)).statusCode, 431)
        // Detected at the field line, before the head is complete.
        XCTAssertEqual(
            parseHeadEverywhere("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n", limits: .init(maxHeaderCount: 2))
                .statusCode, 431)
    }

    func testDefaultLimitAllowsHundredFields() {
        var text = "GET / HTTP/1.1\r\nHost: h\r\n"
        for i in 1..<100 { text += "X-\(i): v\r\n" }
        let bytes = Array((text + "\r\n").utf8)
        guard case .head(let head, _) = parseHead(bytes, ends: [bytes.count]) else { return XCTFail() }
        XCTAssertEqual(head.headers.count, 100)
        let tooMany = Array((text + "X-100: v\r\n\r\n").utf8)
        XCTAssertEqual(parseHead(tooMany, ends: [tooMany.count]).statusCode, 431)
    }

    /// A 256 KiB header dribbled in must be refused on the first call where the buffer reaches the limit, not
    /// after the whole thing has been buffered.
    func testOversizedHeadFailsAtFirstCallPastLimit() {
        let limit = 16 * 1024
        let bytes = Array("GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".utf8) + [UInt8](repeating: 0x61, count: 256 * 1024)
        var parser = RequestHeadParser()
        var end = 0
        while end < bytes.count {
            end = min(bytes.count, end + 1000)
            let result = withExactAllocation(bytes[0..<end]) { parser.parse($0) }
            if end < limit {
                XCTAssertEqual(result, .needMoreData, "at \(end)")
            } else {
                XCTAssertEqual(result.statusCode, 431, "at \(end)")
                XCTAssertGreaterThanOrEqual(end, limit)
                XCTAssertLessThan(end, limit + 1000)
                break
            }
        }
        // Sticky: more bytes do not revive it.
        XCTAssertEqual(withExactAllocation(bytes[...]) { parser.parse($0) }.statusCode, 431)
    }

    func testSlowlorisOneByteAtATimeUpToTheLimit() {
        let bytes = Array("GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".utf8) + [UInt8](repeating: 0x61, count: 20_000)
        var parser = RequestHeadParser()
        var failedAt: Int?
        // One allocation for every call: the parser only reads the prefix it is shown.
        bytes.withUnsafeBytes { all in
            for end in 1...all.count {
                if case .failure(let error) = parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<end])) {
                    XCTAssertEqual(error.status.code, 431)
                    failedAt = end
                    return
                }
            }
        }
        XCTAssertEqual(failedAt, 16 * 1024)
    }

    func testErrorsAreStickyUntilReset() {
        var parser = RequestHeadParser()
        let bad = Array("GET / HTTP/9.9\r\n".utf8)
        let good = Array("GET / HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
        XCTAssertEqual(withExactAllocation(bad[...]) { parser.parse($0) }.statusCode, 505)
        XCTAssertEqual(withExactAllocation(good[...]) { parser.parse($0) }.statusCode, 505)
        parser.reset()
        guard case .head = withExactAllocation(good[...], { parser.parse($0) }) else { return XCTFail() }
    }

    func testPipelinedRequests() throws {
        let first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
        let second = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"
        let third = "DELETE /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        let all = Array((first + second + "abc" + third).utf8)

        // Every split of the whole stream yields the first head with the same consumed count.
        let report = parseHeadSplitEverywhere(all)
        XCTAssertTrue(report.isConsistent, report.description)
        guard case .head(let a, let consumedA) = report.outcome else { return XCTFail("\(report)") }
        XCTAssertEqual(a.target, "/a")
        XCTAssertEqual(consumedA, first.utf8.count)

        // The same parser instance continues with the rest (it resets itself after a head).
        var parser = RequestHeadParser()
        _ = withExactAllocation(all[...]) { parser.parse($0) }
        let rest = Array(all[consumedA...])
        guard case .head(let b, let consumedB) = withExactAllocation(rest[...], { parser.parse($0) }) else {
            return XCTFail()
        }
        XCTAssertEqual(b.target, "/b")
        XCTAssertEqual(consumedB, second.utf8.count)
        XCTAssertEqual(parseHeadSplitEverywhere(rest).outcome, .head(b, consumed: consumedB))

        let bodyAndMore = Array(rest[consumedB...])
        let body = decodeBodySplitEverywhere(bodyAndMore, framing: b.bodyFraming)
        XCTAssertTrue(body.isConsistent, body.description)
        XCTAssertEqual(body.outcome, .complete(body: Array("abc".utf8), trailers: [:], consumed: 3))

        let last = Array(bodyAndMore[3...])
        let c = try XCTUnwrap(expectHead(String(decoding: last, as: UTF8.self)))
        XCTAssertEqual(c.head.method, .DELETE)
        XCTAssertFalse(c.head.keepAlive)
        XCTAssertEqual(c.consumed, last.count)
    }
}

extension HeadParseResult {
    var statusCode: Int? {
        if case .failure(let error) = self { return error.status.code }
        return nil
    }
}
