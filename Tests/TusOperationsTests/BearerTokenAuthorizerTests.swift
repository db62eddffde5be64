import Synchronization
import TusCrypto
import TusHTTP1
import TusOperations
import TusProtocol
import TusTestSupport
import XCTest

final class BearerTokenAuthorizerTests: XCTestCase {
    /// An HS256 token for sub "alice", exp 2100, max_size 1000 (Tests/TusCryptoTests/JWTFixtures.swift).
    let token =
        "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiYWxpY2UiLCAiZXhwIjogNDEwMjQ0NDgwMCwgIm1heF9zaXplIjogMTAwMH0.N8AHZZbaYmJta2yqWyMORvhVvyQpZdF2_lL2Qx8hTVk"

    func authorize(_ authorization: String?, at now: Int64 = 1_750_000_000, with shared: BearerTokenAuthorizer? = nil) throws
        -> AuthorizationResult
    {
        let verifier = try JWTVerifier(keyBytes: Array("0123456789abcdef0123456789abcdef-shared".utf8))
        let authorizer = shared ?? BearerTokenAuthorizer(verifier: verifier, now: { now })
        var headers: HTTPHeaders = [:]
        if let authorization { headers.add("Authorization", authorization) }
        var result: AuthorizationResult?
        authorizer.authorize(RequestHead(method: .HEAD, target: "/files/x", headers: headers), on: ManualExecutor()) {
            result = $0
        }
        return try XCTUnwrap(result)
    }

    func testChallengesFollowRFC6750() throws {
        XCTAssertEqual(try authorize(nil), .denied(challenge: "Bearer realm=\"tus\""))
        XCTAssertEqual(try authorize("Basic YWxpY2U6cHc="), .denied(challenge: "Bearer realm=\"tus\""))
        XCTAssertEqual(try authorize("Bearer "), .denied(challenge: "Bearer realm=\"tus\""))
        XCTAssertEqual(
            try authorize("Bearer " + token.dropLast()), .denied(challenge: "Bearer realm=\"tus\", error=\"invalid_token\""))
    }

    /// The second request with the same token skips the signature but not the expiry check.
    func testRememberedTokensStillExpire() throws {
        let clock = TestClock(1_750_000_000)
        let verifier = try JWTVerifier(keyBytes: Array("0123456789abcdef0123456789abcdef-shared".utf8))
        let authorizer = BearerTokenAuthorizer(verifier: verifier, now: { clock.now })
        let granted = AuthorizationResult.granted(AccessGrant(subject: "alice", maxUploadLength: 1000))
        XCTAssertEqual(try authorize("Bearer " + token, with: authorizer), granted)
        XCTAssertEqual(try authorize("Bearer " + token, with: authorizer), granted)
        clock.set(4_102_444_800 + 30)
        XCTAssertEqual(
            try authorize("Bearer " + token, with: authorizer),
            .denied(challenge: "Bearer realm=\"tus\", error=\"invalid_token\""))
    }

    func testGrantCarriesSubjectAndCap() throws {
        XCTAssertEqual(try authorize("Bearer " + token), .granted(AccessGrant(subject: "alice", maxUploadLength: 1000)))
        XCTAssertEqual(try authorize("bearer " + token), .granted(AccessGrant(subject: "alice", maxUploadLength: 1000)))
    }
}

final class TestClock: Sendable {
    private let seconds: Mutex<Int64>
    init(_ start: Int64) { seconds = Mutex(start) }
    var now: Int64 { seconds.withLock { $0 } }
    func set(_ value: Int64) { seconds.withLock { $0 = value } }
}
