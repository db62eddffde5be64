import TusCrypto
import XCTest

/// Known answers from AWS's published Signature Version 4 test suite (aws-sig-v4-test-suite: get-vanilla,
/// get-vanilla-query-order-key-case, post-vanilla; credentials AKIDEXAMPLE, region us-east-1, service
/// "service", 20150830T123600Z) and the S3 "GET object" example of the S3 SigV4 documentation
/// (examplebucket, AKIAIOSFODNN7EXAMPLE, 20130524T000000Z, Range bytes=0-9).
final class SigV4Tests: XCTestCase {
    let suite = SigV4Signer(
        credentials: SigV4Credentials(
            accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1", service: "service")
    let suiteHeaders = [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")]

    func testGetVanilla() {
        let (request, signed) = SigV4Signer.canonicalRequest(
            method: "GET", canonicalPath: "/", query: [], headers: suiteHeaders,
            payloadHash: SigV4Signer.emptyPayloadHash)
        XCTAssertEqual(
            request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
                + SigV4Signer.emptyPayloadHash)
        XCTAssertEqual(signed, "host;x-amz-date")
        XCTAssertEqual(
            StreamingDigest.digest(.sha256, of: Array(request.utf8)).lowercaseHex,
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        XCTAssertEqual(
            suite.authorization(
                method: "GET", canonicalPath: "/", query: [], headers: suiteHeaders,
                payloadHash: SigV4Signer.emptyPayloadHash, amzDate: "20150830T123600Z"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                + "SignedHeaders=host;x-amz-date, "
                + "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    func testGetVanillaQueryOrderKeyCase() {
        let authorization = suite.authorization(
            method: "GET", canonicalPath: "/", query: [("Param2", "value2"), ("Param1", "value1")],
            headers: suiteHeaders, payloadHash: SigV4Signer.emptyPayloadHash, amzDate: "20150830T123600Z")
        XCTAssertTrue(
            authorization.hasSuffix("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
            authorization)
    }

    func testPostVanilla() {
        let authorization = suite.authorization(
            method: "POST", canonicalPath: "/", query: [], headers: suiteHeaders,
            payloadHash: SigV4Signer.emptyPayloadHash, amzDate: "20150830T123600Z")
        XCTAssertTrue(
            authorization.hasSuffix("Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
            authorization)
    }

    func testS3GetObjectExample() {
        let signer = SigV4Signer(
            credentials: SigV4Credentials(
                accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            region: "us-east-1", service: "s3")
        let authorization = signer.authorization(
            method: "GET", canonicalPath: "/test.txt", query: [],
            headers: [
                ("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash), ("x-amz-date", "20130524T000000Z"),
            ],
            payloadHash: SigV4Signer.emptyPayloadHash, amzDate: "20130524T000000Z")
        XCTAssertEqual(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    func testHMACRFC4231Case2() {
        XCTAssertEqual(
            HMACSHA256.authenticationCode(key: Array("Jefe".utf8), message: "what do ya want for nothing?")
                .lowercaseHex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    func testEncodingAndDate() {
        XCTAssertEqual(SigV4Signer.uriEncode("a b/c~d*é", keepSlash: true), "a%20b/c~d%2A%C3%A9")
        XCTAssertEqual(SigV4Signer.uriEncode("a/b"), "a%2Fb")
        XCTAssertEqual(SigV4Signer.canonicalQueryString([("uploads", ""), ("b", "2"), ("a", "x y")]), "a=x%20y&b=2&uploads=")
        XCTAssertEqual(SigV4Signer.amzDate(unixSeconds: 1_440_938_160), "20150830T123600Z")
    }
}
