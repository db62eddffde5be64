import Synchronization
import TusCrypto
import TusHTTP1
import XCTest

@testable import TusClient

final class BackoffTests: XCTestCase {
    func testConstantWaitsTheSameEveryTime() {
        let backoff = Backoff.constant(250)
        XCTAssertEqual((1...6).map { backoff.delay(afterFailures: $0) }, [250, 250, 250, 250, 250, 250])
    }

    func testExponentialDoublesUpToTheCap() {
        let backoff = Backoff(initialMilliseconds: 500, maximumMilliseconds: 10_000)
        XCTAssertEqual((1...7).map { backoff.delay(afterFailures: $0) }, [500, 1000, 2000, 4000, 8000, 10_000, 10_000])
        XCTAssertEqual(backoff.delay(afterFailures: 10_000), 10_000, "no overflow after many failures")
    }

    func testJitterStaysInTheUpperHalf() {
        let backoff = Backoff(initialMilliseconds: 100, maximumMilliseconds: 5_000, jitter: true)
        var seen = Set<UInt64>()
        for _ in 0..<200 {
            let delay = backoff.delay(afterFailures: 3)
            XCTAssert((200...400).contains(delay), "\(delay)")
            seen.insert(delay)
        }
        XCTAssertGreaterThan(seen.count, 1, "jitter varies the wait")
    }
}

final class SigV4RequestSignerTests: XCTestCase {
    /// The S3 "GET object" example of the S3 SigV4 documentation, signed through the pool's signer seam.
    func testS3GetObjectExample() {
        let signer = SigV4RequestSigner(
            credentials: SigV4Credentials(
                accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            region: "us-east-1", service: "s3", authority: "examplebucket.s3.amazonaws.com")
        var head = HTTPClientRequestHead(method: .GET, path: "/test.txt")
        head.headers.add("Range", "bytes=0-9")
        signer.sign(&head, payload: [], unixSeconds: 1_369_353_600)
        XCTAssertEqual(head.headers["x-amz-date"], "20130524T000000Z")
        XCTAssertEqual(head.headers["Host"], "examplebucket.s3.amazonaws.com")
        XCTAssertEqual(
            head.headers["Authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    func testStreamedBodiesAreUnsignedAndResigningReplacesTheOldSignature() {
        let signer = SigV4RequestSigner(
            credentials: SigV4Credentials(accessKeyID: "AK", secretAccessKey: "SK"), region: "us-east-1",
            service: "s3", authority: "127.0.0.1:7480")
        var head = HTTPClientRequestHead(method: .PUT, path: "/bucket/key?partNumber=1&uploadId=x")
        signer.sign(&head, payload: nil, unixSeconds: 1_369_353_600)
        XCTAssertEqual(head.headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD")
        signer.sign(&head, payload: nil, unixSeconds: 1_369_353_601)
        XCTAssertEqual(head.headers.values(for: "Authorization").count, 1)
        XCTAssertEqual(head.headers["x-amz-date"], "20130524T000001Z")
        XCTAssertFalse(head.headers["Authorization"]!.contains("authorization"), "the old signature is not signed")
    }
}
