public import TusCrypto
import TusHTTP1

#if canImport(Glibc)
    import Glibc
#endif

/// AWS Signature V4 in the header form, for `HTTPClientPoolConfiguration.signer`: signs `host`, `x-amz-date`,
/// `x-amz-content-sha256` (the body's SHA-256, or `UNSIGNED-PAYLOAD` for a streamed body), the session token and
/// every other header the request carries when it is signed (the connection adds `Content-Length` later).
///
/// The request target must be the canonical path, then `?` and `SigV4Signer.canonicalQueryString` of the query,
/// as it is signed the way it is sent.
public struct SigV4RequestSigner: HTTPRequestSigner {
    public let signer: SigV4Signer
    /// The `Host` header the request goes out with.
    public let authority: String

    public init(credentials: SigV4Credentials, region: String, service: String, authority: String) {
        signer = SigV4Signer(credentials: credentials, region: region, service: service)
        self.authority = authority
    }

    public func sign(_ head: inout HTTPClientRequestHead, payload: [UInt8]?) {
        sign(&head, payload: payload, unixSeconds: Int64(time(nil)))
    }

    /// `sign` at a given time (tests compare with AWS's published examples).
    public func sign(_ head: inout HTTPClientRequestHead, payload: [UInt8]?, unixSeconds: Int64) {
        let payloadHash =
            switch payload {
            case nil: SigV4Signer.unsignedPayload
            case let bytes? where bytes.isEmpty: SigV4Signer.emptyPayloadHash
            case let bytes?: StreamingDigest.digest(.sha256, of: bytes).lowercaseHex
            }
        let amzDate = SigV4Signer.amzDate(unixSeconds: unixSeconds)
        head.headers.set("x-amz-date", amzDate)
        head.headers.set("x-amz-content-sha256", payloadHash)
        if let token = signer.credentials.sessionToken { head.headers.set("x-amz-security-token", token) }
        head.headers.remove("Authorization")
        head.headers.set("Host", authority)
        let signed = head.headers.map { ($0.name, $0.value) }
        let (path, query) =
            if let mark = head.path.firstIndex(of: "?") {
                (String(head.path[..<mark]), String(head.path[head.path.index(after: mark)...]))
            } else {
                (head.path, "")
            }
        let authorization = signer.authorization(
            method: head.method.rawValue, canonicalPath: path, canonicalQuery: query, headers: signed,
            payloadHash: payloadHash, amzDate: amzDate)
        head.headers.add("Authorization", authorization)
    }
}
