import TusCrypto
import TusS3Store
import XCTest

final class S3ConfigurationTests: XCTestCase {
    let credentials = SigV4Credentials(accessKeyID: "a", secretAccessKey: "b")

    func testEndpoints() throws {
        let aws = try S3Configuration(
            endpoint: "https://s3.eu-west-1.amazonaws.com", bucket: "uploads", region: "eu-west-1",
            credentials: credentials, spillDirectory: "/tmp")
        XCTAssertTrue(aws.isTLS)
        XCTAssertEqual(aws.host, "s3.eu-west-1.amazonaws.com")
        XCTAssertEqual(aws.port, 443)
        let rgw = try S3Configuration(
            endpoint: "http://127.0.0.1:7480/", bucket: "uploads", pathStyle: true, credentials: credentials,
            spillDirectory: "/tmp")
        XCTAssertFalse(rgw.isTLS)
        XCTAssertEqual(rgw.port, 7480)
        XCTAssertEqual(try S3Configuration(endpoint: "http://[::1]:9000", bucket: "abc", credentials: credentials,
                                           spillDirectory: "/tmp").host, "::1")
        XCTAssertThrowsError(try S3Configuration(endpoint: "ftp://x", bucket: "abc", credentials: credentials, spillDirectory: "/tmp"))
        XCTAssertThrowsError(try S3Configuration(endpoint: "http://x/bucket", bucket: "abc", credentials: credentials, spillDirectory: "/tmp"))
        XCTAssertThrowsError(
            try S3Configuration(endpoint: "http://x", bucket: "abc", credentials: credentials, partSize: 1 << 20,
                                spillDirectory: "/tmp"), "parts under 5 MiB are refused by S3")
        XCTAssertEqual(aws.maximumUploadSize, Int64(8 << 20) * 10_000)
    }

    func testCredentialsFile() {
        let text = """
            # comment
            [other]
            aws_access_key_id = OTHER
            aws_secret_access_key = other-secret

            [default]
            aws_access_key_id=AKIDEXAMPLE
            aws_secret_access_key = wJalr/K7MDENG
            aws_session_token = token==
            """
        XCTAssertEqual(
            SigV4Credentials.parseCredentialsFile(text, profile: "default"),
            SigV4Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalr/K7MDENG", sessionToken: "token=="))
        XCTAssertEqual(SigV4Credentials.parseCredentialsFile(text, profile: "other")?.accessKeyID, "OTHER")
        XCTAssertNil(SigV4Credentials.parseCredentialsFile(text, profile: "missing"))
    }
}
