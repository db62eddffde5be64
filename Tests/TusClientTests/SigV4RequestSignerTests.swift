import Synchronization
import TusCrypto
import TusHTTP1
import XCTest

@testable import TusClient

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
