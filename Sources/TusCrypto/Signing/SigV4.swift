#if canImport(Glibc)
    import Glibc
#endif

/// AWS credentials for Signature Version 4.
public struct SigV4Credentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    /// Temporary credentials (STS) also send `X-Amz-Security-Token`.
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// AWS Signature Version 4 (header form), pure: strings in, an `Authorization` value out. The algorithm is
/// AWS's "Create a signed AWS API request" page: canonical request → string to sign → signing key
/// (HMAC chain date/region/service/"aws4_request") → signature. Checked against AWS's published SigV4 test
/// suite examples (`Tests/TusCryptoTests/SigV4Tests.swift`).
///
/// The caller decides which headers are signed (all it passes in `headers`): S3 needs at least `host`,
/// `x-amz-date` and `x-amz-content-sha256`.
public struct SigV4Signer: Sendable {
    public let credentials: SigV4Credentials
    public let region: String
    public let service: String

    public init(credentials: SigV4Credentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// SHA-256 of the empty payload, the value of `x-amz-content-sha256` for bodiless requests.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// Streaming bodies are not hashed (S3 accepts it; the transport is trusted or TLS).
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    /// The canonical request (exposed for tests and debugging).
    /// - Parameters:
    ///   - canonicalPath: the path already URI-encoded as the service wants it (S3: each segment encoded once).
    ///   - query: raw (unencoded) name/value pairs; encoded and sorted here.
    ///   - headers: name/value pairs to sign; names are lowercased, values trimmed and inner spaces squeezed.
    public static func canonicalRequest(
        method: String, canonicalPath: String, query: [(String, String)], headers: [(String, String)],
        payloadHash: String
    ) -> (request: String, signedHeaders: String) {
        canonicalRequest(
            method: method, canonicalPath: canonicalPath, canonicalQuery: canonicalQueryString(query),
            headers: headers, payloadHash: payloadHash)
    }

    /// The same with the query already in canonical form (`canonicalQueryString`), as a request target built
    /// with it carries it.
    public static func canonicalRequest(
        method: String, canonicalPath: String, canonicalQuery: String, headers: [(String, String)],
        payloadHash: String
    ) -> (request: String, signedHeaders: String) {
        var merged: [String: [String]] = [:]
        for (name, value) in headers { merged[name.lowercased(), default: []].append(squeeze(value)) }
        let names = merged.keys.sorted()
        var canonicalHeaders = ""
        for name in names { canonicalHeaders += name + ":" + merged[name]!.joined(separator: ",") + "\n" }
        let signedHeaders = names.joined(separator: ";")
        let request = [method, canonicalPath, canonicalQuery, canonicalHeaders, signedHeaders, payloadHash]
            .joined(separator: "\n")
        return (request, signedHeaders)
    }

    /// The `Authorization` header value. `amzDate` is `YYYYMMDD'T'HHMMSS'Z'` and must equal the signed
    /// `x-amz-date` header.
    public func authorization(
        method: String, canonicalPath: String, query: [(String, String)], headers: [(String, String)],
        payloadHash: String, amzDate: String
    ) -> String {
        authorization(
            method: method, canonicalPath: canonicalPath, canonicalQuery: Self.canonicalQueryString(query),
            headers: headers, payloadHash: payloadHash, amzDate: amzDate)
    }

    /// The same with the query already in canonical form.
    public func authorization(
        method: String, canonicalPath: String, canonicalQuery: String, headers: [(String, String)],
        payloadHash: String, amzDate: String
    ) -> String {
        let (request, signedHeaders) = Self.canonicalRequest(
            method: method, canonicalPath: canonicalPath, canonicalQuery: canonicalQuery, headers: headers,
            payloadHash: payloadHash)
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256", amzDate, scope,
            StreamingDigest.digest(.sha256, of: Array(request.utf8)).lowercaseHex,
        ].joined(separator: "\n")
        let signature = HMACSHA256.authenticationCode(key: signingKey(day: day), message: stringToSign).lowercaseHex
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), "
            + "Signature=\(signature)"
    }

    public func signingKey(day: String) -> [UInt8] {
        var key = HMACSHA256.authenticationCode(key: Array(("AWS4" + credentials.secretAccessKey).utf8), message: day)
        key = HMACSHA256.authenticationCode(key: key, message: region)
        key = HMACSHA256.authenticationCode(key: key, message: service)
        return HMACSHA256.authenticationCode(key: key, message: "aws4_request")
    }

    /// `YYYYMMDD'T'HHMMSS'Z'` for unix seconds (UTC).
    public static func amzDate(unixSeconds: Int64) -> String {
        var time = time_t(unixSeconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    /// RFC 3986 unreserved characters stay, everything else is %XX (uppercase); `/` stays only when asked
    /// (object keys in paths).
    public static func uriEncode(_ text: String, keepSlash: Bool = false) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var output = [UInt8]()
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                output.append(byte)
            case UInt8(ascii: "/") where keepSlash:
                output.append(byte)
            default:
                output += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Encoded names and values, sorted by encoded name then value, `name=value` joined by `&`.
    public static func canonicalQueryString(_ query: [(String, String)]) -> String {
        query.map { (uriEncode($0.0), uriEncode($0.1)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    private static func squeeze(_ value: String) -> String {
        var output = ""
        var lastWasSpace = false
        for character in value.trimmingCharacters() {
            if character == " " {
                if !lastWasSpace { output.append(" ") }
                lastWasSpace = true
            } else {
                output.append(character)
                lastWasSpace = false
            }
        }
        return output
    }
}

extension String {
    fileprivate func trimmingCharacters() -> Substring {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view.removeFirst() }
        while let last = view.last, last == " " || last == "\t" { view.removeLast() }
        return view
    }
}
