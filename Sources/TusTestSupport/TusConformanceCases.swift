import TusHTTP1

/// The tus 1.0.0 conformance table: every MUST and SHOULD of /work/shared/TUS-SPEC-CHECKLIST.md sections
/// 1.1-1.6 and 1.8 (core, creation, creation-with-upload, creation-defer-length, expiration, checksum,
/// termination) as request -> status and headers.
///
/// The same rows run against the in-memory handler (TusProtocolTests, through `FakeExchange`) and through a
/// real socket (EndToEndTests, through `RawHTTPClient`), so a behaviour that only the connection layer could
/// break (framing, 100-continue, HEAD bodies, header case) is proved on the wire too. Rows that need a clock
/// (E6, expiry) or an interrupted connection (C22, C23, W3, K7) are not request -> response and live in the
/// targets' own tests.

/// What a response header must be.
public enum HeaderExpectation: Sendable, CustomStringConvertible {
    case equals(String)
    case absent
    case present
    /// RFC 9110 IMF-fixdate (E4).
    case httpDate
    /// A comma-separated list that contains this item.
    case listContains(String)
    /// A value that starts with this text (a field whose tail is a clock reading).
    case startsWith(String)

    public func matches(_ value: String?) -> Bool {
        switch self {
        case .equals(let expected): return value == expected
        case .absent: return value == nil
        case .present: return value != nil
        case .httpDate: return value.map(isIMFFixdate) ?? false
        case .listContains(let item):
            return value?.split(separator: ",").contains { $0.trimmingOWS() == item } ?? false
        case .startsWith(let prefix): return value?.hasPrefix(prefix) ?? false
        }
    }

    public var description: String {
        switch self {
        case .equals(let value): "== \"\(value)\""
        case .absent: "absent"
        case .present: "present"
        case .httpDate: "an IMF-fixdate"
        case .listContains(let item): "a list containing \(item)"
        case .startsWith(let prefix): "starting with \(prefix)"
        }
    }
}

/// The upload a row runs against; each row gets a fresh one, so rows are independent and order-free.
public enum ConformanceUpload: Sendable {
    /// No upload: the row's target is a fixed path.
    case none
    case created(length: Int64, metadata: String? = nil)
    case deferred
    /// Created with `length`, then `bytes` PATCHed at offset 0.
    case written(length: Int64, bytes: [UInt8])
    /// Created, then terminated.
    case terminated
    /// Partial uploads (`Upload-Concat: partial`), each created with `length` (nil: deferred) and then given
    /// `bytes`; requests name them `$P1`, `$P2`, ... (paths), in targets and header values.
    case partials([ConformancePartial])
}

public struct ConformancePartial: Sendable {
    public var length: Int64?
    public var bytes: [UInt8]
    public var metadata: String?

    public init(length: Int64?, bytes: [UInt8], metadata: String? = nil) {
        self.length = length
        self.bytes = bytes
        self.metadata = metadata
    }
}

/// A request sent after the row's, in order, with what it must answer. `$L` is the path of the `Location` the
/// row's request answered (a final upload created by the row), in targets, header values and expectations.
public struct ConformanceStep: Sendable {
    public var request: ConformanceRequest
    public var status: Int
    public var headers: [(String, HeaderExpectation)]
    /// The exact response body, when it matters (downloads of a final).
    public var body: [UInt8]?

    public init(
        _ request: ConformanceRequest, status: Int, headers: [(String, HeaderExpectation)] = [], body: [UInt8]? = nil
    ) {
        self.request = request
        self.status = status
        self.headers = headers
        self.body = body
    }
}

public struct ConformanceRequest: Sendable {
    public var method: String
    /// "$U" is replaced by the upload's path.
    public var target: String
    /// Sent in this order. `Tus-Resumable: 1.0.0` and `Host` are added unless `omitTusResumable`/present.
    public var headers: [(String, String)]
    public var body: [UInt8]
    public var chunked: Bool
    public var omitTusResumable: Bool
    /// Trailer fields after a chunked body (checksum-trailer).
    public var trailers: [(String, String)]

    public init(
        _ method: String, _ target: String = "$U", headers: [(String, String)] = [], body: [UInt8] = [],
        chunked: Bool = false, omitTusResumable: Bool = false, trailers: [(String, String)] = []
    ) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.chunked = chunked
        self.omitTusResumable = omitTusResumable
        self.trailers = trailers
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

public struct ConformanceResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// Sends one request and returns its final response (a `100 Continue` is not a final response).
public protocol ConformanceTransport {
    func send(_ request: ConformanceRequest) throws -> ConformanceResponse
}

public struct ConformanceCase: Sendable {
    /// Checklist ids, e.g. "C17".
    public var ids: String
    public var name: String
    public var upload: ConformanceUpload
    public var request: ConformanceRequest
    public var status: Int
    public var headers: [(String, HeaderExpectation)]
    /// A request sent after the row's request, with what it must answer: "not processed" rows prove
    /// nothing changed (C2, C17, K4...).
    public var then: (ConformanceRequest, Int, [(String, HeaderExpectation)])?
    /// More requests after `then`, in order (multi-step rows: concatenation).
    public var steps: [ConformanceStep]

    public init(
        _ ids: String, _ name: String, upload: ConformanceUpload = .none, _ request: ConformanceRequest,
        status: Int, headers: [(String, HeaderExpectation)] = [],
        then: (ConformanceRequest, Int, [(String, HeaderExpectation)])? = nil, steps: [ConformanceStep] = []
    ) {
        self.steps = steps
        self.ids = ids
        self.name = name
        self.upload = upload
        self.request = request
        self.status = status
        self.headers = headers
        self.then = then
    }
}

/// The configuration every conformance run uses; the table's expectations depend on it.
public enum ConformanceSettings {
    public static let maxSize: Int64 = 1000
    public static let extensions =
        "creation,creation-with-upload,creation-defer-length,termination,concatenation,concatenation-unfinished,checksum,checksum-trailer,expiration"
    public static let checksumAlgorithms = "sha1,md5,sha256,sha512"
    public static let host = "tus.example"
}

private let offsetStream = ("Content-Type", "application/offset+octet-stream")
private let helloWorld = Array("hello world".utf8)
/// sha1("hello world"), the spec's own example.
private let helloWorldSHA1 = "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="
private let specMetadata = "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"

func patch(_ offset: Int64, _ extra: [(String, String)] = [], body: [UInt8], target: String = "$U", chunked: Bool = false)
    -> ConformanceRequest
{
    // `extra` replaces a default of the same name: a repeated header would mean something else on the wire.
    let defaults = [offsetStream, ("Upload-Offset", String(offset))].filter { name, _ in
        !extra.contains { $0.0.lowercased() == name.lowercased() }
    }
    return ConformanceRequest("PATCH", target, headers: defaults + extra, body: body, chunked: chunked)
}

func post(_ headers: [(String, String)], body: [UInt8] = [], omitTusResumable: Bool = false) -> ConformanceRequest {
    ConformanceRequest("POST", "/files/", headers: headers, body: body, omitTusResumable: omitTusResumable)
}

let head = ConformanceRequest("HEAD")

private func headOffset(_ offset: Int64) -> (ConformanceRequest, Int, [(String, HeaderExpectation)]) {
    (head, 200, [("Upload-Offset", .equals(String(offset)))])
}

public enum TusConformanceCases {
    public static let all: [ConformanceCase] = core + creation + creationWithUpload + deferLength + expiration
        + checksum + checksumTrailer + termination + concatenation

    // MARK: 1.1 core

    public static let core: [ConformanceCase] = [
        ConformanceCase(
            "C1 C10 C12 C13 C14 CR3", "HEAD of a fresh upload", upload: .created(length: 100), head, status: 200,
            headers: [
                ("Tus-Resumable", .equals("1.0.0")), ("Upload-Offset", .equals("0")), ("Upload-Length", .equals("100")),
                ("Cache-Control", .equals("no-store")), ("Upload-Defer-Length", .absent),
            ]),
        ConformanceCase(
            "C2", "POST with another version", post([("Upload-Length", "5"), ("Tus-Resumable", "0.2.2")]),
            status: 412, headers: [("Tus-Version", .equals("1.0.0")), ("Location", .absent)]),
        ConformanceCase(
            "C2", "HEAD with another version", upload: .created(length: 5),
            ConformanceRequest("HEAD", headers: [("Tus-Resumable", "0.2.2")]), status: 412,
            headers: [("Tus-Version", .equals("1.0.0")), ("Upload-Offset", .absent)]),
        ConformanceCase(
            "C2", "PATCH with another version is not processed", upload: .created(length: 5),
            patch(0, [("Tus-Resumable", "0.2.2")], body: Array("hello".utf8)), status: 412,
            headers: [("Tus-Version", .equals("1.0.0"))], then: headOffset(0)),
        ConformanceCase(
            "C2", "DELETE with another version is not processed", upload: .created(length: 5),
            ConformanceRequest("DELETE", headers: [("Tus-Resumable", "0.2.2")]), status: 412,
            headers: [("Tus-Version", .equals("1.0.0"))], then: headOffset(0)),
        ConformanceCase(
            "C3", "POST without Tus-Resumable", post([("Upload-Length", "5")], omitTusResumable: true), status: 412,
            headers: [("Tus-Version", .equals("1.0.0"))]),
        ConformanceCase(
            "C4 C5 C6 C7 CR1 W1 D1 E1 K1 K2 X1", "OPTIONS without Tus-Resumable",
            ConformanceRequest("OPTIONS", "/files/", omitTusResumable: true), status: 204,
            headers: [
                ("Tus-Version", .equals("1.0.0")), ("Tus-Extension", .equals(ConformanceSettings.extensions)),
                ("Tus-Max-Size", .equals(String(ConformanceSettings.maxSize))),
                ("Tus-Checksum-Algorithm", .equals(ConformanceSettings.checksumAlgorithms)),
                ("Tus-Checksum-Algorithm", .listContains("sha1")),
            ]),
        ConformanceCase(
            "C4", "OPTIONS with a bogus Tus-Resumable",
            ConformanceRequest("OPTIONS", "/files/", headers: [("Tus-Resumable", "9.9.9")]), status: 204,
            headers: [("Tus-Version", .equals("1.0.0"))]),
        ConformanceCase(
            "C27", "OPTIONS on an upload URL", upload: .created(length: 5), ConformanceRequest("OPTIONS"),
            status: 204, headers: [("Tus-Version", .equals("1.0.0")), ("Tus-Extension", .listContains("creation"))]),
        ConformanceCase(
            "C8", "Upload-Offset -1", upload: .created(length: 5), patch(0, [("Upload-Offset", "-1")], body: [1]),
            status: 400, then: headOffset(0)),
        ConformanceCase(
            "C8", "Upload-Offset +0", upload: .created(length: 5), patch(0, [("Upload-Offset", "+0")], body: [1]),
            status: 400),
        ConformanceCase(
            "C8", "Upload-Offset abc", upload: .created(length: 5), patch(0, [("Upload-Offset", "abc")], body: [1]),
            status: 400),
        ConformanceCase(
            "C8", "Upload-Offset overflows", upload: .created(length: 5),
            patch(0, [("Upload-Offset", "99999999999999999999")], body: [1]), status: 400),
        ConformanceCase(
            "C9", "POST overridden to PATCH", upload: .created(length: 5),
            ConformanceRequest(
                "POST", headers: [("X-HTTP-Method-Override", "PATCH"), offsetStream, ("Upload-Offset", "0")],
                body: Array("hello".utf8)),
            status: 204, headers: [("Upload-Offset", .equals("5"))], then: headOffset(5)),
        ConformanceCase(
            "C9", "POST overridden to HEAD", upload: .created(length: 5),
            ConformanceRequest("POST", headers: [("X-HTTP-Method-Override", "HEAD")]), status: 200,
            headers: [("Upload-Offset", .equals("0"))]),
        ConformanceCase(
            "C11", "HEAD of a completed upload", upload: .written(length: 3, bytes: [1, 2, 3]), head, status: 200,
            headers: [("Upload-Offset", .equals("3")), ("Upload-Length", .equals("3"))]),
        ConformanceCase(
            "C15", "HEAD of an unknown upload", ConformanceRequest("HEAD", "/files/0123456789abcdef0123456789abcdef"),
            status: 404, headers: [("Upload-Offset", .absent), ("Tus-Resumable", .equals("1.0.0"))]),
        ConformanceCase(
            "C16", "PATCH as application/octet-stream", upload: .created(length: 5),
            ConformanceRequest(
                "PATCH", headers: [("Content-Type", "application/octet-stream"), ("Upload-Offset", "0")],
                body: Array("hello".utf8)),
            status: 415, then: headOffset(0)),
        ConformanceCase(
            "C16", "PATCH without Content-Type", upload: .created(length: 5),
            ConformanceRequest("PATCH", headers: [("Upload-Offset", "0")], body: Array("hello".utf8)), status: 415),
        ConformanceCase(
            "C17", "PATCH at the wrong offset", upload: .created(length: 5), patch(3, body: Array("lo".utf8)),
            status: 409, then: headOffset(0)),
        ConformanceCase(
            "C18 C1", "PATCH 30 bytes", upload: .created(length: 30), patch(0, body: [UInt8](repeating: 7, count: 30)),
            status: 204, headers: [("Upload-Offset", .equals("30")), ("Tus-Resumable", .equals("1.0.0"))],
            then: headOffset(30)),
        ConformanceCase(
            "C19", "PATCH an unknown upload", patch(0, body: [1], target: "/files/0123456789abcdef0123456789abcdef"),
            status: 404),
        ConformanceCase(
            "C20", "PATCH without Upload-Offset", upload: .created(length: 5),
            ConformanceRequest("PATCH", headers: [offsetStream], body: [1]), status: 400),
        ConformanceCase(
            "C21", "chunked PATCH", upload: .created(length: 11), patch(0, body: helloWorld, chunked: true),
            status: 204, headers: [("Upload-Offset", .equals("11"))], then: headOffset(11)),
        ConformanceCase(
            "C24", "PATCH beyond Upload-Length", upload: .created(length: 5), patch(0, body: Array("hello!".utf8)),
            status: 413, then: headOffset(0)),
        ConformanceCase(
            "C25", "empty PATCH on a complete upload", upload: .written(length: 3, bytes: [1, 2, 3]),
            patch(3, body: []), status: 204, headers: [("Upload-Offset", .equals("3"))]),
        ConformanceCase(
            "C26", "a second PATCH appends", upload: .written(length: 10, bytes: [1, 2, 3]),
            patch(3, body: [4, 5, 6, 7]), status: 204, headers: [("Upload-Offset", .equals("7"))],
            then: headOffset(7)),
        // Issue 14 §2 (not in the spec text): a singleton field on two lines is ambiguous and refused.
        ConformanceCase(
            "I14", "POST with Upload-Length twice", post([("Upload-Length", "5"), ("Upload-Length", "6")]),
            status: 400, headers: [("Location", .absent), ("Tus-Resumable", .equals("1.0.0"))]),
        ConformanceCase(
            "I14", "PATCH with Upload-Offset twice is not processed", upload: .created(length: 5),
            ConformanceRequest(
                "PATCH", headers: [offsetStream, ("Upload-Offset", "0"), ("Upload-Offset", "0")],
                body: Array("hello".utf8)),
            status: 400, then: headOffset(0)),
    ]

    // MARK: 1.2 creation

    public static let creation: [ConformanceCase] = [
        ConformanceCase(
            "CR2", "create", post([("Upload-Length", "100"), ("Content-Length", "0")]), status: 201,
            headers: [("Location", .present), ("Tus-Resumable", .equals("1.0.0")), ("Upload-Offset", .absent)]),
        ConformanceCase("CR4", "neither length nor deferral", post([]), status: 400),
        ConformanceCase("CR5", "empty upload", post([("Upload-Length", "0")]), status: 201, headers: [("Location", .present)]),
        ConformanceCase(
            "CR5", "HEAD of an empty upload", upload: .created(length: 0), head, status: 200,
            headers: [("Upload-Offset", .equals("0")), ("Upload-Length", .equals("0"))]),
        ConformanceCase(
            "CR6", "over Tus-Max-Size", post([("Upload-Length", String(ConformanceSettings.maxSize + 1))]), status: 413),
        ConformanceCase(
            "CR6", "at Tus-Max-Size", post([("Upload-Length", String(ConformanceSettings.maxSize))]), status: 201),
        ConformanceCase(
            "CR7", "metadata is echoed as sent", upload: .created(length: 10, metadata: specMetadata), head,
            status: 200, headers: [("Upload-Metadata", .equals(specMetadata))]),
        ConformanceCase("CR8", "metadata key with empty value", post([("Upload-Length", "1"), ("Upload-Metadata", "key ")]), status: 201),
        ConformanceCase("CR8", "metadata key without value", post([("Upload-Length", "1"), ("Upload-Metadata", "key")]), status: 201),
        ConformanceCase("CR9", "metadata with an empty key", post([("Upload-Length", "1"), ("Upload-Metadata", ",x aGk=")]), status: 400),
        ConformanceCase(
            "CR9", "metadata with a duplicate key", post([("Upload-Length", "1"), ("Upload-Metadata", "a aGk=,a aGk=")]),
            status: 400),
        ConformanceCase("CR9", "metadata not base64", post([("Upload-Length", "1"), ("Upload-Metadata", "a !!!")]), status: 400),
        ConformanceCase("CR9", "metadata with three tokens", post([("Upload-Length", "1"), ("Upload-Metadata", "a b c")]), status: 400),
        ConformanceCase(
            "CR10", "metadata decoding to CRLF stays base64", upload: .created(length: 1, metadata: "name DQo="), head,
            status: 200, headers: [("Upload-Metadata", .equals("name DQo="))]),
        ConformanceCase("CR11", "empty Upload-Metadata", post([("Upload-Length", "1"), ("Upload-Metadata", "")]), status: 201),
        ConformanceCase("C8", "Upload-Length -1", post([("Upload-Length", "-1")]), status: 400),
        ConformanceCase("C8", "Upload-Length 1e3", post([("Upload-Length", "1e3")]), status: 400),
        // (" 5" is not a row: HTTP strips leading whitespace from field values before tus sees them.)
        ConformanceCase("C8", "Upload-Length +5", post([("Upload-Length", "+5")]), status: 400),
    ]

    // MARK: 1.3 creation-with-upload

    public static let creationWithUpload: [ConformanceCase] = [
        ConformanceCase(
            "W2", "create with a body", post([("Upload-Length", "100"), offsetStream], body: Array("hello".utf8)),
            status: 201, headers: [("Location", .present), ("Upload-Offset", .equals("5"))]),
        ConformanceCase(
            "W2", "create with a chunked body",
            ConformanceRequest(
                "POST", "/files/", headers: [("Upload-Length", "11"), offsetStream], body: helloWorld, chunked: true),
            status: 201, headers: [("Upload-Offset", .equals("11"))]),
        ConformanceCase(
            "W5", "Expect: 100-continue", post([("Upload-Length", "5"), offsetStream, ("Expect", "100-continue")], body: Array("hello".utf8)),
            status: 201, headers: [("Upload-Offset", .equals("5"))]),
        ConformanceCase(
            "W5 W6", "Expect: 100-continue with a body longer than the upload",
            post([("Upload-Length", "3"), offsetStream, ("Expect", "100-continue")], body: Array("hello".utf8)),
            status: 413),
        ConformanceCase(
            "W7", "create with a matching checksum",
            post([("Upload-Length", "11"), offsetStream, ("Upload-Checksum", helloWorldSHA1)], body: helloWorld),
            status: 201, headers: [("Upload-Offset", .equals("11"))]),
        ConformanceCase(
            "W7", "create with a mismatching checksum",
            post([("Upload-Length", "11"), offsetStream, ("Upload-Checksum", helloWorldSHA1)], body: Array("hello worlD".utf8)),
            status: 460),
        ConformanceCase(
            "W8 E3 E4", "Upload-Expires on creation", post([("Upload-Length", "10")]), status: 201,
            headers: [("Upload-Expires", .httpDate)]),
    ]

    // MARK: 1.4 creation-defer-length

    public static let deferLength: [ConformanceCase] = [
        ConformanceCase("D2", "create deferred", post([("Upload-Defer-Length", "1")]), status: 201, headers: [("Location", .present)]),
        ConformanceCase(
            "D2 D9", "HEAD while deferred", upload: .deferred, head, status: 200,
            headers: [("Upload-Defer-Length", .equals("1")), ("Upload-Length", .absent), ("Upload-Offset", .equals("0"))]),
        ConformanceCase("D3", "Upload-Defer-Length 2", post([("Upload-Defer-Length", "2")]), status: 400),
        ConformanceCase("D3", "Upload-Defer-Length true", post([("Upload-Defer-Length", "true")]), status: 400),
        ConformanceCase("D4", "both lengths", post([("Upload-Defer-Length", "1"), ("Upload-Length", "5")]), status: 400),
        ConformanceCase(
            "D5", "declare the length with the last PATCH", upload: .deferred,
            patch(0, [("Upload-Length", "11")], body: helloWorld), status: 204,
            headers: [("Upload-Offset", .equals("11"))],
            then: (head, 200, [("Upload-Length", .equals("11")), ("Upload-Defer-Length", .absent)])),
        ConformanceCase(
            "D6", "changing a known length", upload: .created(length: 11),
            patch(0, [("Upload-Length", "12")], body: []), status: 400),
        ConformanceCase(
            "D7", "declared length over Tus-Max-Size", upload: .deferred,
            patch(0, [("Upload-Length", String(ConformanceSettings.maxSize + 1))], body: []), status: 413),
    ]

    // MARK: 1.5 expiration (E6 needs a clock: ExpirationTests)

    public static let expiration: [ConformanceCase] = [
        ConformanceCase(
            "E2 E4", "Upload-Expires on PATCH of an unfinished upload", upload: .created(length: 10),
            patch(0, body: [1, 2]), status: 204, headers: [("Upload-Expires", .httpDate)]),
        ConformanceCase(
            "E7", "no Upload-Expires once finished", upload: .created(length: 2), patch(0, body: [1, 2]),
            status: 204, headers: [("Upload-Expires", .absent)]),
        ConformanceCase(
            "E8", "Upload-Expires on HEAD", upload: .created(length: 10), head, status: 200,
            headers: [("Upload-Expires", .httpDate)]),
    ]

    // MARK: 1.6 checksum

    public static let checksum: [ConformanceCase] = [
        ConformanceCase(
            "K3 K8", "the spec's sha1 vector", upload: .created(length: 11),
            patch(0, [("Upload-Checksum", helloWorldSHA1)], body: helloWorld), status: 204,
            headers: [("Upload-Offset", .equals("11"))]),
        ConformanceCase(
            "K4", "mismatch discards the chunk", upload: .created(length: 11),
            patch(0, [("Upload-Checksum", helloWorldSHA1)], body: Array("hello worlD".utf8)), status: 460,
            then: headOffset(0)),
        ConformanceCase(
            "K4", "mismatch on a later chunk keeps the earlier one", upload: .written(length: 22, bytes: helloWorld),
            patch(11, [("Upload-Checksum", helloWorldSHA1)], body: Array("hello worlD".utf8)), status: 460,
            then: headOffset(11)),
        ConformanceCase(
            "K5", "unsupported algorithm", upload: .created(length: 11),
            patch(0, [("Upload-Checksum", "foo AAAA")], body: helloWorld), status: 400, then: headOffset(0)),
        ConformanceCase(
            "K6", "checksum without a value", upload: .created(length: 11),
            patch(0, [("Upload-Checksum", "sha1")], body: helloWorld), status: 400),
        ConformanceCase(
            "K6", "checksum not base64", upload: .created(length: 11),
            patch(0, [("Upload-Checksum", "sha1 not-base64!")], body: helloWorld), status: 400),
        ConformanceCase(
            "K6", "digest of the wrong length", upload: .created(length: 11),
            patch(0, [("Upload-Checksum", "sha1 AAAA")], body: helloWorld), status: 400),
        ConformanceCase(
            "K8", "URL-safe base64 is not standard base64", upload: .created(length: 11),
            patch(0, [("Upload-Checksum", "sha1 Kq5sNclPz7QV2-lfQIuc6R7oRu0=")], body: helloWorld), status: 400),
        ConformanceCase(
            "K3", "checksum over a chunked body", upload: .created(length: 11),
            patch(0, [("Upload-Checksum", helloWorldSHA1)], body: helloWorld, chunked: true), status: 204,
            headers: [("Upload-Offset", .equals("11"))]),
    ]

    // MARK: 1.8 termination

    public static let termination: [ConformanceCase] = [
        ConformanceCase(
            "X2 X3", "DELETE an unfinished upload", upload: .written(length: 10, bytes: [1, 2]),
            ConformanceRequest("DELETE", headers: [("Content-Length", "0")]), status: 204,
            headers: [("Tus-Resumable", .equals("1.0.0"))], then: (head, 410, [("Upload-Offset", .absent)])),
        ConformanceCase(
            "X2", "DELETE a completed upload", upload: .written(length: 2, bytes: [1, 2]), ConformanceRequest("DELETE"),
            status: 204),
        ConformanceCase("X3", "HEAD after DELETE", upload: .terminated, head, status: 410),
        ConformanceCase("X3", "PATCH after DELETE", upload: .terminated, patch(0, body: [1]), status: 410),
        ConformanceCase("X3", "DELETE after DELETE", upload: .terminated, ConformanceRequest("DELETE"), status: 410),
        ConformanceCase(
            "X4", "DELETE an unknown upload", ConformanceRequest("DELETE", "/files/0123456789abcdef0123456789abcdef"),
            status: 404),
        ConformanceCase(
            "X6", "POST overridden to DELETE", upload: .created(length: 5),
            ConformanceRequest("POST", headers: [("X-HTTP-Method-Override", "DELETE")]), status: 204,
            then: (head, 410, [])),
    ]
}

/// Runs the table through a transport and returns one line per broken expectation (empty = conformant).
public struct ConformanceRunner {
    public let transport: any ConformanceTransport

    public init(transport: any ConformanceTransport) { self.transport = transport }

    public func run(_ cases: [ConformanceCase] = TusConformanceCases.all) -> [String] {
        var failures: [String] = []
        for row in cases {
            do {
                failures += try run(row)
            } catch {
                failures.append("[\(row.ids)] \(row.name): transport error \(error)")
            }
        }
        return failures
    }

    private func run(_ row: ConformanceCase) throws -> [String] {
        let label = "[\(row.ids)] \(row.name)"
        let uploadPath: String
        var names: [String: String] = [:]
        switch row.upload {
        case .partials(let partials):
            for (index, partial) in partials.enumerated() {
                var headers = [("Upload-Concat", "partial")]
                if let metadata = partial.metadata { headers.append(("Upload-Metadata", metadata)) }
                let path = try create(length: partial.length, metadata: nil, extra: headers)
                names["$P\(index + 1)"] = path
                guard !partial.bytes.isEmpty else { continue }
                let written = try send(patch(0, body: partial.bytes), path: path)
                guard written.status == 204 else { return ["\(label): setup PATCH of $P\(index + 1) answered \(written.status)"] }
            }
            uploadPath = names["$P1"] ?? "/files/none"
        case .none: uploadPath = "/files/none"
        case .created(let length, let metadata): uploadPath = try create(length: length, metadata: metadata)
        case .deferred: uploadPath = try create(length: nil, metadata: nil)
        case .written(let length, let bytes):
            uploadPath = try create(length: length, metadata: nil)
            let written = try send(patch(0, body: bytes), path: uploadPath)
            guard written.status == 204 else { return ["\(label): setup PATCH answered \(written.status)"] }
        case .terminated:
            uploadPath = try create(length: 10, metadata: nil)
            let deleted = try send(ConformanceRequest("DELETE"), path: uploadPath)
            guard deleted.status == 204 else { return ["\(label): setup DELETE answered \(deleted.status)"] }
        }
        names["$U"] = uploadPath
        let first = try send(substituted(row.request, names), path: uploadPath)
        var failures = check(first, row.request, row.status, row.headers, label)
        if let location = first.header("Location") { names["$L"] = Self.path(of: location) }
        if let (request, status, headers) = row.then {
            failures += check(try send(request, path: uploadPath), request, status, headers, "\(label) (then \(request.method))")
        }
        for (index, step) in row.steps.enumerated() {
            let request = substituted(step.request, names)
            let response = try send(request, path: uploadPath)
            let stepLabel = "\(label) (step \(index + 1): \(request.method) \(step.request.target))"
            let expected = step.headers.map { name, expectation -> (String, HeaderExpectation) in
                if case .equals(let value) = expectation { return (name, .equals(Self.substitute(value, names))) }
                return (name, expectation)
            }
            failures += check(response, request, step.status, expected, stepLabel)
            if let body = step.body, response.body != body {
                failures.append("\(stepLabel): body \(String(decoding: response.body.prefix(64), as: UTF8.self).debugDescription), expected \(String(decoding: body.prefix(64), as: UTF8.self).debugDescription)")
            }
        }
        return failures
    }

    /// `$P1`, `$L`... replaced by paths, in the target and header values.
    private func substituted(_ request: ConformanceRequest, _ names: [String: String]) -> ConformanceRequest {
        var request = request
        request.target = Self.substitute(request.target, names)
        request.headers = request.headers.map { ($0.0, Self.substitute($0.1, names)) }
        return request
    }

    /// Longest names first, so `$P1` never eats the start of `$P12`.
    static func substitute(_ text: String, _ names: [String: String]) -> String {
        guard text.contains("$") else { return text }
        var result = text
        for (name, value) in names.sorted(by: { $0.key.count > $1.key.count }) {
            result = result.replacing(name, with: value)
        }
        return result
    }

    private func check(
        _ response: ConformanceResponse, _ request: ConformanceRequest, _ status: Int,
        _ headers: [(String, HeaderExpectation)], _ label: String
    ) -> [String] {
        var failures: [String] = []
        if response.status != status { failures.append("\(label): status \(response.status), expected \(status)") }
        for (name, expectation) in headers where !expectation.matches(response.header(name)) {
            failures.append("\(label): \(name) is \(response.header(name).map { "\"\($0)\"" } ?? "absent"), expected \(expectation)")
        }
        if request.method == "HEAD" || request.header("X-HTTP-Method-Override") == "HEAD", !response.body.isEmpty {
            failures.append("\(label): HEAD response has a body")
        }
        if [201, 204].contains(response.status), !response.body.isEmpty {
            failures.append("\(label): \(response.status) response has a body")
        }
        return failures
    }

    private func send(_ request: ConformanceRequest, path: String) throws -> ConformanceResponse {
        var request = request
        if request.target == "$U" { request.target = path }
        return try transport.send(completed(request))
    }

    private func completed(_ request: ConformanceRequest) -> ConformanceRequest {
        var request = request
        if request.header("Host") == nil { request.headers.insert(("Host", ConformanceSettings.host), at: 0) }
        if !request.omitTusResumable, request.header("Tus-Resumable") == nil {
            request.headers.insert(("Tus-Resumable", "1.0.0"), at: 1)
        }
        return request
    }

    private func create(length: Int64?, metadata: String?, extra: [(String, String)] = []) throws -> String {
        var headers: [(String, String)] = extra
        if let length { headers.append(("Upload-Length", String(length))) } else { headers.append(("Upload-Defer-Length", "1")) }
        if let metadata { headers.append(("Upload-Metadata", metadata)) }
        let response = try transport.send(completed(post(headers)))
        guard response.status == 201, let location = response.header("Location") else {
            throw ConformanceSetupError.creationFailed(response.status)
        }
        return Self.path(of: location)
    }

    /// The path of an absolute or relative URL.
    public static func path(of location: String) -> String {
        guard let scheme = location.firstRange(of: "://") else { return location }
        let rest = location[scheme.upperBound...]
        return rest.firstIndex(of: "/").map { String(rest[$0...]) } ?? "/"
    }
}

public enum ConformanceSetupError: Error { case creationFailed(Int) }

private func isIMFFixdate(_ value: String) -> Bool {
    // "Wed, 25 Jun 2014 16:00:00 GMT"
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    let bytes = Array(value.utf8)
    guard bytes.count == 29 else { return false }
    func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
    func digits(_ range: Range<Int>) -> Bool { bytes[range].allSatisfy { $0 >= 48 && $0 <= 57 } }
    return days.contains(text(0..<3)) && text(3..<5) == ", " && digits(5..<7) && bytes[7] == 32
        && months.contains(text(8..<11)) && bytes[11] == 32 && digits(12..<16) && bytes[16] == 32
        && digits(17..<19) && bytes[19] == 58 && digits(20..<22) && bytes[22] == 58 && digits(23..<25)
        && text(25..<29) == " GMT"
}
