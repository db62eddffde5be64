import Foundation
import TusCrypto
import XCTest

final class JWTVerifierTests: XCTestCase {
    let now: Int64 = 1_750_000_000

    func hs() throws -> JWTVerifier { try JWTVerifier(keyBytes: Array((JWTFixtures.secret + "\n").utf8)) }

    func testHS256AcceptsAndReadsClaims() throws {
        let claims = try hs().verify(JWTFixtures.hs, now: now).get()
        XCTAssertEqual(claims.subject, "alice")
        XCTAssertEqual(claims.maxSize, 1000)
        XCTAssertEqual(claims.expiresAt, 4_102_444_800)
    }

    func testExpiryAndNotBeforeWithLeeway() throws {
        let verifier = try hs()
        XCTAssertEqual(verifier.verify(JWTFixtures.hsExpired, now: now).failure, .expired)
        XCTAssertNotNil(try? verifier.verify(JWTFixtures.hsExpired, now: 1_700_000_000 + 29).get(), "within leeway")
        XCTAssertEqual(verifier.verify(JWTFixtures.hsExpired, now: 1_700_000_000 + 30).failure, .expired)
        XCTAssertEqual(verifier.verify(JWTFixtures.hsNbf, now: now).failure, .notYetValid)
        XCTAssertNotNil(try? verifier.verify(JWTFixtures.hsNbf, now: 4_102_444_000 - 30).get(), "within leeway")
        XCTAssertEqual(verifier.verify(JWTFixtures.expText, now: now).failure, .invalidClaim("payload"))
    }

    func testWrongSignatureNoneAndConfusionAreRefused() throws {
        let verifier = try hs()
        XCTAssertEqual(verifier.verify(JWTFixtures.hsWrongKey, now: now).failure, .badSignature)
        XCTAssertEqual(verifier.verify(JWTFixtures.none, now: now).failure, .algorithmNotAllowed("none"))
        XCTAssertEqual(verifier.verify(JWTFixtures.rs, now: now).failure, .algorithmNotAllowed("RS256"))
        // HS256 signed with the RSA public key's PEM as the secret, presented to an RS256 server.
        let rsa = try JWTVerifier(keyBytes: Array(JWTFixtures.rsaPublic.utf8))
        XCTAssertEqual(rsa.algorithm, .rs256)
        XCTAssertEqual(rsa.verify(JWTFixtures.confused, now: now).failure, .algorithmNotAllowed("HS256"))
        XCTAssertEqual(rsa.verify(JWTFixtures.none, now: now).failure, .algorithmNotAllowed("none"))
    }

    func testRS256AndES256() throws {
        let rsa = try JWTVerifier(keyBytes: Array(JWTFixtures.rsaPublic.utf8))
        XCTAssertEqual(try rsa.verify(JWTFixtures.rs, now: now).get().subject, "bob")
        let ec = try JWTVerifier(keyBytes: Array(JWTFixtures.ecPublic.utf8))
        XCTAssertEqual(ec.algorithm, .es256)
        XCTAssertEqual(try ec.verify(JWTFixtures.es, now: now).get().subject, "carol")
        XCTAssertEqual(ec.verify(JWTFixtures.rsForEC, now: now).failure, .algorithmNotAllowed("RS256"))
        // A flipped bit in the signature.
        var tampered = Array(JWTFixtures.es.utf8)
        tampered[tampered.count - 5] = tampered[tampered.count - 5] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        XCTAssertEqual(ec.verify(String(decoding: tampered, as: UTF8.self), now: now).failure, .badSignature)
        XCTAssertEqual(rsa.verify(JWTFixtures.rs.replacingOccurrences(of: "Ym9i", with: "Ym9j"), now: now).failure, .badSignature)
    }

    func testMalformedTokensAndWeakKeys() throws {
        let verifier = try hs()
        for token in ["", "a.b", "a.b.c.d", "!!.e30.", JWTFixtures.hs + "=", JWTFixtures.hs.replacingOccurrences(of: "_", with: "/")] {
            XCTAssertNotNil(verifier.verify(token, now: now).failure, token)
        }
        XCTAssertThrowsError(try JWTVerifier(keyBytes: Array("short secret".utf8)))
        XCTAssertThrowsError(try JWTVerifier(keyBytes: Array(JWTFixtures.rsa1024Public.utf8)))
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
