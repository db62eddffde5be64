import TusHTTP1

/// The draft-ietf-httpbis-resumable-upload conformance table: rows of docs/IETF-RESUMABLE-UPLOAD.md as request ->
/// status, headers and 104s, built per interop version (`DraftConformanceCases.cases(version:)`), so one row id is
/// checked under every version it names with that version's expectations.
///
/// As the tus table, the rows run against the in-memory handler (TusProtocolTests, `FakeExchange`) and through a
/// real socket (EndToEndTests, `RawHTTPClient`, which sees each 104 on the wire). Setups create uploads with tus
/// requests on purpose: the engine state is protocol-free, so every row also proves that a tus upload is served
/// to draft clients (the reverse is proved by `DraftCrossProtocolTests`).

/// A response and the informational responses before it.
public struct DraftConformanceExchange: Sendable {
    public var response: ConformanceResponse
    public var informational: [ConformanceResponse]

    public init(response: ConformanceResponse, informational: [ConformanceResponse]) {
        self.response = response
        self.informational = informational
    }
}

public protocol DraftConformanceTransport {
    func exchange(_ request: ConformanceRequest) throws -> DraftConformanceExchange
}

/// The upload a row runs against (made with tus requests), fresh for every row.
public enum DraftConformanceUpload: Sendable {
    case none
    /// Deferred length, `bytes` written.
    case incomplete([UInt8])
    /// Length `length`, `bytes` written (fewer than `length`).
    case incompleteWithLength(Int64, [UInt8])
    /// Complete with `bytes`.
    case complete([UInt8])
    case terminated
}

public struct DraftConformanceCase: Sendable {
    public var ids: String
    public var name: String
    public var upload: DraftConformanceUpload
    public var request: ConformanceRequest
    public var status: Int
    public var headers: [(String, HeaderExpectation)]
    /// The 104s before the final response: nil = not checked; each element lists what that 104 must carry.
    public var informational: [[(String, HeaderExpectation)]]?
    /// Text the response body must contain (a problem type).
    public var bodyContains: String?
    /// Requests after the row's, in order; `$L` is the path of the row's `Location`.
    public var steps: [ConformanceStep]

    public init(
        _ ids: String, _ name: String, upload: DraftConformanceUpload = .none, _ request: ConformanceRequest,
        status: Int, headers: [(String, HeaderExpectation)] = [], informational: [[(String, HeaderExpectation)]]? = [],
        bodyContains: String? = nil, steps: [ConformanceStep] = []
    ) {
        self.ids = ids
        self.name = name
        self.upload = upload
        self.request = request
        self.status = status
        self.headers = headers
        self.informational = informational
        self.bodyContains = bodyContains
        self.steps = steps
    }
}

public enum DraftConformanceCases {
    public static let versions = Array(3...9)
    static let problemBase = "https://iana.org/assignments/http-problem-types#"

    /// `Upload-Incomplete` (v3) or `Upload-Complete` (v4+) saying whether the request ends the upload.
    public static func completion(_ version: Int, complete: Bool) -> (String, String) {
        version == 3 ? ("Upload-Incomplete", complete ? "?0" : "?1") : ("Upload-Complete", complete ? "?1" : "?0")
    }

    static func completionExpectation(_ version: Int, complete: Bool) -> (String, HeaderExpectation) {
        let (name, value) = completion(version, complete: complete)
        return (name, .equals(value))
    }

    /// A creation request (`POST /files/`) with the version's completion field.
    public static func creation(
        _ version: Int, complete: Bool, body: [UInt8] = [], extra: [(String, String)] = [], method: String = "POST",
        chunked: Bool = false
    ) -> ConformanceRequest {
        ConformanceRequest(
            method, "/files/",
            headers: [("Upload-Draft-Interop-Version", String(version)), completion(version, complete: complete)]
                + extra,
            body: body, chunked: chunked, omitTusResumable: true)
    }

    /// An append (`PATCH $U`) with the version's media type and completion field.
    public static func append(
        _ version: Int, offset: Int64, complete: Bool?, body: [UInt8] = [], extra: [(String, String)] = [],
        target: String = "$U", chunked: Bool = false
    ) -> ConformanceRequest {
        var headers = [("Upload-Draft-Interop-Version", String(version)), ("Upload-Offset", String(offset))]
        if let complete { headers.append(completion(version, complete: complete)) }
        if version >= 6, !extra.contains(where: { $0.0 == "Content-Type" }) {
            headers.append(("Content-Type", "application/partial-upload"))
        }
        return ConformanceRequest(
            "PATCH", target, headers: headers + extra, body: body, chunked: chunked, omitTusResumable: true)
    }

    public static func request(
        _ version: Int, _ method: String, _ target: String = "$U", extra: [(String, String)] = []
    ) -> ConformanceRequest {
        ConformanceRequest(
            method, target, headers: [("Upload-Draft-Interop-Version", String(version))] + extra, omitTusResumable: true
        )
    }

    /// Every row, for every version.
    public static var all: [DraftConformanceCase] { versions.flatMap { cases(version: $0) } }

    // swiftlint:disable:next function_body_length
    public static func cases(version v: Int) -> [DraftConformanceCase] {
        let hello = Array("hello".utf8)
        let world = Array(" world".utf8)
        let helloWorld = hello + world
        let vText = String(v)
        let limits = v >= 6
        let maxSize = ConformanceSettings.maxSize
        // The lifetime's tail counts down with the clock (the default expiration is on in every run).
        let limit: HeaderExpectation =
            limits ? .startsWith("max-size=\(maxSize), \(v == 6 ? "expires" : "max-age")=") : .absent
        let versionHeader: (String, HeaderExpectation) = ("Upload-Draft-Interop-Version", .equals(vText))
        let creation104: [(String, HeaderExpectation)] =
            [("Location", .present), versionHeader, ("Upload-Limit", limit)]
        let incompleteAnswerStatus = v >= 7 ? 204 : 201
        var rows: [DraftConformanceCase] = []

        // MARK: Dispatch
        rows.append(
            DraftConformanceCase(
                "D1 D5 D6 C4 C5 C9 C10", "v\(v): creation with ?0 and content: 104 with Location, 201",
                creation(v, complete: false, body: hello), status: 201,
                headers: [
                    ("Location", .present), ("Upload-Offset", .equals("5")), versionHeader,
                    completionExpectation(v, complete: false), ("Upload-Limit", limit),
                ],
                informational: [creation104],
                steps: [
                    ConformanceStep(
                        request(v, "HEAD", "$L"), status: 204,
                        headers: [
                            ("Upload-Offset", .equals("5")), completionExpectation(v, complete: false),
                            ("Cache-Control", .equals("no-store")),
                        ])
                ]))
        rows.append(
            DraftConformanceCase(
                "D2", "v\(v): Tus-Resumable beside the interop version: the draft answers",
                creation(v, complete: false, extra: [("Tus-Resumable", "1.0.0")]), status: 201,
                headers: [versionHeader, ("Tus-Resumable", .absent)], informational: [creation104]))
        for bad in ["1", "2", "10", "99", "abc", "-3", "\(v).0"] {
            rows.append(
                DraftConformanceCase(
                    "D3", "v\(v): interop version \(bad) is refused without a 104",
                    ConformanceRequest(
                        "POST", "/files/",
                        headers: [("Upload-Draft-Interop-Version", bad), completion(v, complete: false)],
                        body: hello, omitTusResumable: true),
                    status: 400,
                    headers: [("Location", .absent), ("Content-Type", .equals("application/problem+json"))],
                    informational: [], bodyContains: "supported-versions"))
        }
        rows.append(
            DraftConformanceCase(
                "D4", "v\(v): no interop version: tus answers (412), no 104",
                ConformanceRequest(
                    "POST", "/files/", headers: [completion(v, complete: true)], body: hello, omitTusResumable: true),
                status: 412, headers: [("Tus-Version", .equals("1.0.0"))], informational: []))

        // MARK: Creation
        rows.append(
            DraftConformanceCase(
                "C3", "v\(v): creation with Upload-Offset is refused",
                creation(v, complete: false, body: hello, extra: [("Upload-Offset", "0")]), status: 400,
                headers: [("Location", .absent)], informational: []))
        rows.append(
            DraftConformanceCase(
                "C11 C12 C13", "v\(v): creation with the whole content: 201, complete",
                creation(v, complete: true, body: helloWorld), status: 201,
                headers: [
                    ("Location", .present), ("Upload-Offset", .equals("11")),
                    completionExpectation(v, complete: true),
                ],
                informational: [creation104],
                steps: [
                    ConformanceStep(
                        request(v, "HEAD", "$L"), status: 204,
                        headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)])
                ]))
        rows.append(
            DraftConformanceCase(
                "C13 O3", "v\(v): complete creation with a chunked body: the length is where it ends",
                creation(v, complete: true, body: helloWorld, chunked: true), status: 201,
                headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)],
                informational: [creation104],
                steps: [
                    ConformanceStep(
                        request(v, "HEAD", "$L"), status: 204,
                        headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)]
                            + (v >= 6 ? [("Upload-Length", .equals("11"))] : []))
                ]))
        rows.append(
            DraftConformanceCase(
                "C14", "v\(v): careful creation (no content, incomplete)",
                creation(v, complete: false), status: 201,
                headers: [
                    ("Location", .present), ("Upload-Offset", .equals("0")),
                    completionExpectation(v, complete: false),
                ],
                informational: [creation104]))
        rows.append(
            DraftConformanceCase(
                "C15", "v\(v): empty complete creation", creation(v, complete: true), status: 201,
                headers: [("Upload-Offset", .equals("0")), completionExpectation(v, complete: true)],
                // Complete at once: no lifetime left to announce.
                informational: [
                    [
                        ("Location", .present), versionHeader,
                        ("Upload-Limit", limits ? .equals("max-size=\(maxSize)") : .absent),
                    ]
                ],
                steps: [
                    ConformanceStep(
                        request(v, "HEAD", "$L"), status: 204,
                        headers: [("Upload-Offset", .equals("0")), completionExpectation(v, complete: true)])
                ]))
        rows.append(
            DraftConformanceCase(
                "C19 L10", "v\(v): creation over max-size: 413 before any 104",
                creation(v, complete: true, body: [UInt8](repeating: 1, count: Int(maxSize) + 1)), status: 413,
                headers: [("Location", .absent), ("Upload-Limit", limit)],
                informational: []))
        rows.append(
            DraftConformanceCase(
                "H3", "v\(v): a malformed completion field is refused",
                ConformanceRequest(
                    "POST", "/files/",
                    headers: [("Upload-Draft-Interop-Version", vText), (completion(v, complete: true).0, "true")],
                    omitTusResumable: true),
                status: 400, informational: []))
        if v >= 4 {
            rows.append(
                DraftConformanceCase(
                    "C2", "v\(v): creation without Upload-Complete is not one",
                    request(v, "POST", "/files/"), status: 400, informational: []))
        }
        rows.append(
            DraftConformanceCase(
                "C22", "v\(v): Expect: 100-continue still gets its 100 beside the 104",
                creation(v, complete: true, body: hello, extra: [("Expect", "100-continue")]), status: 201,
                headers: [("Upload-Offset", .equals("5"))], informational: [creation104]))
        rows.append(
            DraftConformanceCase(
                "C1 C2", "v\(v): PUT creates too", creation(v, complete: false, body: hello, method: "PUT"),
                status: 201, headers: [("Upload-Offset", .equals("5"))], informational: [creation104]))
        if v >= 6 {
            rows.append(
                DraftConformanceCase(
                    "C17", "v\(v): Upload-Length recorded; HEAD reports it",
                    creation(v, complete: false, body: hello, extra: [("Upload-Length", "11")]), status: 201,
                    headers: [("Upload-Offset", .equals("5")), completionExpectation(v, complete: false)],
                    informational: [creation104],
                    steps: [
                        ConformanceStep(
                            request(v, "HEAD", "$L"), status: 204,
                            headers: [("Upload-Length", .equals("11")), ("Upload-Limit", .present)]),
                        ConformanceStep(
                            append(v, offset: 5, complete: true, body: world, target: "$L"), status: 201,
                            headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)]),
                    ]))
            rows.append(
                DraftConformanceCase(
                    "C17", "v\(v): Upload-Length and the complete content's length differ",
                    creation(v, complete: true, body: hello, extra: [("Upload-Length", "11")]), status: 400,
                    headers: [("Location", .absent)], informational: [],
                    bodyContains: v >= 7 ? problemBase + "inconsistent-upload-length" : nil))
        }

        // MARK: Offset retrieval
        rows.append(
            DraftConformanceCase(
                "R1 R2 R3 R5", "v\(v): HEAD of an incomplete upload", upload: .incomplete(hello),
                request(v, "HEAD"), status: 204,
                headers: [
                    ("Upload-Offset", .equals("5")), completionExpectation(v, complete: false),
                    ("Cache-Control", .equals("no-store")), ("Upload-Limit", limit),
                    versionHeader,
                ]))
        if v >= 6 {
            rows.append(
                DraftConformanceCase(
                    "R2 R3 H4", "v\(v): HEAD reports a known Upload-Length",
                    upload: .incompleteWithLength(11, hello), request(v, "HEAD"), status: 204,
                    headers: [("Upload-Offset", .equals("5")), ("Upload-Length", .equals("11"))]))
        }
        rows.append(
            DraftConformanceCase(
                "R10", "v\(v): HEAD of a complete upload", upload: .complete(helloWorld), request(v, "HEAD"),
                status: 204, headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)]))
        rows.append(
            DraftConformanceCase(
                "R6", "v\(v): HEAD of an unknown upload", request(v, "HEAD", "/files/0123456789abcdef0123456789abcdef"),
                status: 404, headers: [("Upload-Offset", .absent)]))
        rows.append(
            DraftConformanceCase(
                "R6 X1", "v\(v): HEAD of a cancelled upload", upload: .terminated, request(v, "HEAD"), status: 404))
        for field in [("Upload-Offset", "0"), completion(v, complete: false)] {
            rows.append(
                DraftConformanceCase(
                    "R7", "v\(v): HEAD with \(field.0) is refused", upload: .incomplete(hello),
                    request(v, "HEAD", extra: [field]), status: 400))
        }
        rows.append(
            DraftConformanceCase(
                "R4", "v\(v): GET of an upload", upload: .incomplete(hello), request(v, "GET"),
                status: v >= 9 ? 204 : 405, headers: v >= 9 ? [("Upload-Offset", .equals("5"))] : []))

        // MARK: Append
        rows.append(
            DraftConformanceCase(
                "A1 A4 A6 A9 A10", "v\(v): incomplete append", upload: .incomplete(hello),
                append(v, offset: 5, complete: false, body: world), status: incompleteAnswerStatus,
                headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: false)],
                steps: [
                    ConformanceStep(
                        request(v, "HEAD"), status: 204,
                        headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: false)])
                ]))
        rows.append(
            DraftConformanceCase(
                "A3 A5 A8", "v\(v): completing append", upload: .incomplete(hello),
                append(v, offset: 5, complete: true, body: world), status: 201,
                headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)],
                steps: [
                    ConformanceStep(
                        request(v, "HEAD"), status: 204,
                        headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)])
                ]))
        rows.append(
            DraftConformanceCase(
                "A3 A5 A8 O3", "v\(v): completing append with a chunked body", upload: .incomplete(hello),
                append(v, offset: 5, complete: true, body: world, chunked: true), status: 201,
                headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)]))
        rows.append(
            DraftConformanceCase(
                "A3 A5 A8 O3", "v\(v): a draft creation without a length, completed by a chunked append",
                creation(v, complete: false, body: hello), status: 201,
                headers: [("Upload-Offset", .equals("5")), completionExpectation(v, complete: false)],
                informational: [creation104],
                steps: [
                    ConformanceStep(
                        append(v, offset: 5, complete: true, body: world, target: "$L", chunked: true), status: 201,
                        headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)]),
                    ConformanceStep(
                        request(v, "HEAD", "$L"), status: 204,
                        headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)]),
                ]))
        rows.append(
            DraftConformanceCase(
                "A3 A5 A8", "v\(v): empty completing append", upload: .incomplete(hello),
                append(v, offset: 5, complete: true), status: 201,
                headers: [("Upload-Offset", .equals("5")), completionExpectation(v, complete: true)]))
        if v <= 6 {
            rows.append(
                DraftConformanceCase(
                    "A3 A5", "v\(v): completion field absent on PATCH = complete", upload: .incomplete(hello),
                    append(v, offset: 5, complete: nil, body: world), status: 201,
                    headers: [("Upload-Offset", .equals("11"))]))
        } else {
            rows.append(
                DraftConformanceCase(
                    "A7", "v\(v): PATCH without Upload-Complete is refused", upload: .incomplete(hello),
                    append(v, offset: 5, complete: nil, body: world), status: 400,
                    steps: [
                        ConformanceStep(request(v, "HEAD"), status: 204, headers: [("Upload-Offset", .equals("5"))])
                    ]))
        }
        rows.append(
            DraftConformanceCase(
                "A2", "v\(v): PATCH media type", upload: .incomplete(hello),
                append(
                    v, offset: 5, complete: false, body: world, extra: [("Content-Type", "application/octet-stream")]),
                status: v >= 6 ? 415 : incompleteAnswerStatus))
        rows.append(
            DraftConformanceCase(
                "A11", "v\(v): offset mismatch: 409 with the real offset", upload: .incomplete(hello),
                append(v, offset: 3, complete: false, body: world), status: 409,
                headers: [("Upload-Offset", .equals("5"))]
                    + (v >= 7 ? [completionExpectation(v, complete: false)] : []),
                bodyContains: v >= 6 ? problemBase + "mismatching-upload-offset" : nil,
                steps: [ConformanceStep(request(v, "HEAD"), status: 204, headers: [("Upload-Offset", .equals("5"))])]))
        for bad in ["-1", "1.5", "\"5\"", "abc", "1234567890123456"] {
            rows.append(
                DraftConformanceCase(
                    "H1 H7", "v\(v): Upload-Offset \(bad) is refused", upload: .incomplete(hello),
                    append(v, offset: 0, complete: false, body: world, extra: [("Upload-Offset", bad)]).replacing(
                        "Upload-Offset", with: bad),
                    status: 400))
        }
        rows.append(
            DraftConformanceCase(
                "H1", "v\(v): Upload-Offset 05 is 5", upload: .incomplete(hello),
                append(v, offset: 5, complete: false, body: world).replacing("Upload-Offset", with: "05"),
                status: incompleteAnswerStatus, headers: [("Upload-Offset", .equals("11"))]))
        // Appending to a complete upload (rows A12-A15).
        let completedStatus: Int
        let completedProblem: String?
        switch v {
        case 3...5: (completedStatus, completedProblem) = (400, nil)
        case 6, 7: (completedStatus, completedProblem) = (400, problemBase + "completed-upload")
        case 8: (completedStatus, completedProblem) = (400, problemBase + "inconsistent-upload-length")
        default: (completedStatus, completedProblem) = (400, problemBase + "inconsistent-upload-length")
        }
        rows.append(
            DraftConformanceCase(
                "A12 A13", "v\(v): content appended to a complete upload", upload: .complete(hello),
                append(v, offset: 5, complete: true, body: world), status: completedStatus,
                bodyContains: completedProblem,
                steps: [ConformanceStep(request(v, "HEAD"), status: 204, headers: [("Upload-Offset", .equals("5"))])]))
        rows.append(
            DraftConformanceCase(
                "A12 A14 A15", "v\(v): empty completing append to a complete upload", upload: .complete(hello),
                append(v, offset: 5, complete: true), status: v == 8 ? 410 : (v == 9 ? 201 : 400),
                headers: v >= 8 ? [("Location", .present)] : [],
                bodyContains: v == 6 || v == 7 || v == 8 ? problemBase + "completed-upload" : nil))
        // Section 12: offset == Upload-Length is not completion; only a request saying so completes (created under
        // v6 where the version has no Upload-Length: the version is per request, row D1).
        let heldOpenCreation = creation(max(v, 6), complete: false, body: helloWorld, extra: [("Upload-Length", "11")])
        rows.append(
            DraftConformanceCase(
                "C9 C10 R1-R4 A3 A5 A8", "v\(v): content up to Upload-Length without ?1 leaves the upload incomplete",
                heldOpenCreation, status: 201,
                headers: [("Upload-Offset", .equals("11")), completionExpectation(max(v, 6), complete: false)],
                informational: nil,
                steps: [
                    ConformanceStep(
                        request(v, "HEAD", "$L"), status: 204,
                        headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: false)]),
                    ConformanceStep(
                        append(v, offset: 11, complete: false, target: "$L"), status: incompleteAnswerStatus,
                        headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: false)]),
                    ConformanceStep(
                        append(v, offset: 11, complete: true, target: "$L"), status: 201,
                        headers: [
                            ("Upload-Offset", .equals("11")), completionExpectation(v, complete: true),
                            ("Location", .present),
                        ]),
                    ConformanceStep(
                        request(v, "HEAD", "$L"), status: 204,
                        headers: [("Upload-Offset", .equals("11")), completionExpectation(v, complete: true)]),
                ]))
        if v >= 4 {
            rows.append(
                DraftConformanceCase(
                    "A16", "v\(v): completing content longer than the recorded length",
                    upload: .incompleteWithLength(8, hello), append(v, offset: 5, complete: true, body: world),
                    status: 400,
                    bodyContains: v >= 7 ? problemBase + "inconsistent-upload-length" : nil,
                    steps: [
                        ConformanceStep(request(v, "HEAD"), status: 204, headers: [("Upload-Offset", .equals("5"))])
                    ]))
            rows.append(
                DraftConformanceCase(
                    "A16", "v\(v): chunked content past the recorded length",
                    upload: .incompleteWithLength(8, hello),
                    append(v, offset: 5, complete: false, body: world, chunked: true), status: 400,
                    // v7 on (-08): the upload is invalid afterwards; before, the bytes up to the length are kept.
                    steps: [
                        ConformanceStep(
                            request(v, "HEAD"), status: v >= 7 ? 404 : 204,
                            headers: v >= 7 ? [] : [("Upload-Offset", .equals("8"))])
                    ]))
            rows.append(
                DraftConformanceCase(
                    "A16", "v\(v): Content-Length past the recorded length",
                    upload: .incompleteWithLength(8, hello),
                    append(v, offset: 5, complete: false, body: world), status: 400,
                    steps: [
                        ConformanceStep(
                            request(v, "HEAD"), status: v >= 7 ? 404 : 204,
                            headers: v >= 7 ? [] : [("Upload-Offset", .equals("5"))])
                    ]))
        }
        if v >= 6 {
            rows.append(
                DraftConformanceCase(
                    "A17", "v\(v): PATCH with another Upload-Length", upload: .incompleteWithLength(11, hello),
                    append(v, offset: 5, complete: false, body: world, extra: [("Upload-Length", "12")]),
                    status: 400, bodyContains: v >= 7 ? problemBase + "inconsistent-upload-length" : nil))
            rows.append(
                DraftConformanceCase(
                    "A17", "v\(v): PATCH repeating the Upload-Length", upload: .incompleteWithLength(11, hello),
                    append(v, offset: 5, complete: true, body: world, extra: [("Upload-Length", "11")]),
                    status: 201, headers: [completionExpectation(v, complete: true)]))
            rows.append(
                DraftConformanceCase(
                    "H4", "v\(v): PATCH declaring Upload-Length on a deferred upload", upload: .incomplete(hello),
                    append(v, offset: 5, complete: false, body: world, extra: [("Upload-Length", "20")]),
                    status: incompleteAnswerStatus,
                    steps: [
                        ConformanceStep(request(v, "HEAD"), status: 204, headers: [("Upload-Length", .equals("20"))])
                    ]))
        }
        rows.append(
            DraftConformanceCase(
                "A21", "v\(v): PATCH to an unknown upload",
                append(v, offset: 0, complete: false, body: world, target: "/files/0123456789abcdef0123456789abcdef"),
                status: 404))

        // MARK: Digests (v6..v8)
        // sha-256(" world")
        let worldSHA256 = "sha-256=:BF8T3YZLr6rQ3Zd6yXHeVJsJDLKDbwYdB3mybdm7j0s=:"
        let wrongSHA256 = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        rows.append(
            DraftConformanceCase(
                "G2", "v\(v): Content-Digest that does not match", upload: .incomplete(hello),
                append(v, offset: 5, complete: false, body: world, extra: [("Content-Digest", wrongSHA256)]),
                status: (6...8).contains(v) ? 400 : incompleteAnswerStatus,
                steps: [
                    ConformanceStep(
                        request(v, "HEAD"), status: 204,
                        headers: [("Upload-Offset", .equals((6...8).contains(v) ? "5" : "11"))])
                ]))
        rows.append(
            DraftConformanceCase(
                "G2", "v\(v): Content-Digest that matches", upload: .incomplete(hello),
                append(v, offset: 5, complete: false, body: world, extra: [("Content-Digest", worldSHA256)]),
                status: incompleteAnswerStatus, headers: [("Upload-Offset", .equals("11"))]))
        let helloWorldSHA512 =
            "sha-512=:MJ7MSJwS1utMxA9QyQLytNDtd+5RGnx6m808qG1M2G+YndNbxf9JlnDaNCVbRbDP2DDoH2Bdz33FVC6TrpzXbw==:"
        rows.append(
            DraftConformanceCase(
                "G1", "v\(v): Repr-Digest of a one-request upload that does not match",
                creation(v, complete: true, body: hello, extra: [("Repr-Digest", helloWorldSHA512)]),
                status: (6...8).contains(v) ? 400 : 201, informational: nil))
        rows.append(
            DraftConformanceCase(
                "G1", "v\(v): Repr-Digest of a one-request upload that matches",
                creation(v, complete: true, body: helloWorld, extra: [("Repr-Digest", helloWorldSHA512)]),
                status: 201, headers: [("Upload-Offset", .equals("11"))], informational: nil))
        // Row G1 across requests: the creation's Repr-Digest is checked when a later request completes the upload.
        let digests = (6...8).contains(v)
        let helloWorldSHA256 = "sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:"
        rows.append(
            DraftConformanceCase(
                "G1", "v\(v): Repr-Digest from creation, matched by the upload completed later",
                creation(v, complete: false, body: hello, extra: [("Repr-Digest", helloWorldSHA256)]), status: 201,
                informational: nil,
                steps: [
                    ConformanceStep(
                        append(v, offset: 5, complete: true, body: world, target: "$L"), status: 201,
                        headers: [completionExpectation(v, complete: true)])
                ]))
        rows.append(
            DraftConformanceCase(
                "G1", "v\(v): Repr-Digest from creation, not matched by the upload completed later",
                creation(v, complete: false, body: hello, extra: [("Repr-Digest", helloWorldSHA256)]), status: 201,
                informational: nil,
                steps: [
                    ConformanceStep(
                        append(v, offset: 5, complete: true, body: Array(" WORLD".utf8), target: "$L"),
                        status: digests ? 400 : 201,
                        // v7 on: ?1 on the refusal too, so that the client does not send it again.
                        headers: v == 6 ? [] : [completionExpectation(v, complete: true)]),
                    // Failed: nothing processes it any more.
                    ConformanceStep(request(v, "HEAD", "$L"), status: digests ? 404 : 204),
                ]))
        // Row G3: Want-Repr-Digest at creation, answered by the completing response.
        rows.append(
            DraftConformanceCase(
                "G3", "v\(v): Want-Repr-Digest from creation: the completing response carries Repr-Digest",
                creation(v, complete: false, body: hello, extra: [("Want-Repr-Digest", "sha-512=0, sha-256=7")]),
                status: 201, informational: nil,
                steps: [
                    ConformanceStep(
                        append(v, offset: 5, complete: true, body: world, target: "$L"), status: 201,
                        headers: [("Repr-Digest", digests ? .equals(helloWorldSHA256) : .absent)])
                ]))
        rows.append(
            DraftConformanceCase(
                "G4", "v\(v): Content-Digest with only an unsupported algorithm is ignored",
                upload: .incomplete(hello),
                append(
                    v, offset: 5, complete: false, body: world,
                    extra: [("Content-Digest", "md5=:AAAAAAAAAAAAAAAAAAAAAA==:")]),
                status: incompleteAnswerStatus, headers: [("Upload-Offset", .equals("11"))]))

        // MARK: Cancellation
        rows.append(
            DraftConformanceCase(
                "X1 X2 X3", "v\(v): DELETE", upload: .incomplete(hello), request(v, "DELETE"), status: 204,
                steps: [ConformanceStep(request(v, "HEAD"), status: 404)]))
        rows.append(
            DraftConformanceCase(
                "X4", "v\(v): DELETE with Upload-Offset is refused", upload: .incomplete(hello),
                request(v, "DELETE", extra: [("Upload-Offset", "5")]), status: 400,
                steps: [ConformanceStep(request(v, "HEAD"), status: 204)]))
        rows.append(
            DraftConformanceCase(
                "X5", "v\(v): DELETE of an unknown upload",
                request(v, "DELETE", "/files/0123456789abcdef0123456789abcdef"), status: 404))

        // MARK: Routing errors
        rows.append(
            DraftConformanceCase(
                "D7", "v\(v): GET on the creation URL", request(v, "GET", "/files/"), status: 405,
                headers: [("Allow", .listContains("POST"))]))
        rows.append(
            DraftConformanceCase(
                "D7", "v\(v): POST to an upload", upload: .incomplete(hello),
                creation(v, complete: false, body: world).retargeted("$U"), status: 405,
                headers: [("Allow", .listContains("PATCH"))], informational: []))
        rows.append(
            DraftConformanceCase(
                "D7", "v\(v): a path outside the base path", request(v, "HEAD", "/elsewhere/x"), status: 404))

        // MARK: OPTIONS
        rows.append(
            DraftConformanceCase(
                "L1 L2 L4", "v\(v): OPTIONS", request(v, "OPTIONS", "/files/"), status: 204,
                headers: [
                    ("Upload-Limit", limit),
                    ("Accept-Patch", v >= 8 ? .equals("application/partial-upload") : .absent), versionHeader,
                ]))
        rows.append(
            DraftConformanceCase(
                "L3", "v\(v): OPTIONS *", request(v, "OPTIONS", "*"), status: 204,
                headers: [("Upload-Limit", limit)]))
        return rows
    }
}

extension ConformanceRequest {
    /// The same request to another target.
    public func retargeted(_ target: String) -> ConformanceRequest {
        var request = self
        request.target = target
        return request
    }

    /// The same request with `name` set to `value` (replacing every field of that name).
    public func replacing(_ name: String, with value: String) -> ConformanceRequest {
        var request = self
        request.headers = headers.filter { $0.0.lowercased() != name.lowercased() } + [(name, value)]
        return request
    }
}

public struct DraftConformanceRunner {
    public let transport: any DraftConformanceTransport

    public init(transport: any DraftConformanceTransport) { self.transport = transport }

    public func run(_ cases: [DraftConformanceCase] = DraftConformanceCases.all) -> [String] {
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

    private func run(_ row: DraftConformanceCase) throws -> [String] {
        let label = "[\(row.ids)] \(row.name)"
        var names: [String: String] = [:]
        switch row.upload {
        case .none: names["$U"] = "/files/none"
        case .incomplete(let bytes): names["$U"] = try tusUpload(length: nil, bytes: bytes)
        case .incompleteWithLength(let length, let bytes): names["$U"] = try tusUpload(length: length, bytes: bytes)
        case .complete(let bytes): names["$U"] = try tusUpload(length: Int64(bytes.count), bytes: bytes)
        case .terminated:
            let path = try tusUpload(length: 10, bytes: [])
            let deleted = try send(ConformanceRequest("DELETE", path, headers: [("Tus-Resumable", "1.0.0")]))
            guard deleted.response.status == 204 else {
                return ["\(label): setup DELETE answered \(deleted.response.status)"]
            }
            names["$U"] = path
        }
        let first = try send(substituted(row.request, names))
        var failures = check(first.response, row.request, row.status, row.headers, label)
        if let body = row.bodyContains, !String(decoding: first.response.body, as: UTF8.self).contains(body) {
            failures.append(
                "\(label): body \(String(decoding: first.response.body, as: UTF8.self).debugDescription) lacks \(body)")
        }
        if let expected = row.informational {
            if first.informational.count != expected.count {
                failures.append(
                    "\(label): \(first.informational.count) informational responses, expected \(expected.count)")
            }
            for (index, (response, headers)) in zip(first.informational, expected).enumerated() {
                if response.status != 104 { failures.append("\(label): informational \(index) is \(response.status)") }
                for (name, expectation) in headers where !expectation.matches(response.header(name)) {
                    failures.append(
                        "\(label): 104 #\(index + 1) \(name) is \(response.header(name) ?? "absent"), expected \(expectation)"
                    )
                }
            }
            // The 104's Location is the final response's (row C6, v9).
            if let announced = first.informational.first?.header("Location"),
                let final = first.response.header("Location"),
                announced != final
            {
                failures.append("\(label): 104 Location \(announced) differs from the final \(final)")
            }
        }
        if let location = first.response.header("Location") { names["$L"] = ConformanceRunner.path(of: location) }
        for (index, step) in row.steps.enumerated() {
            let request = substituted(step.request, names)
            let response = try send(request).response
            failures += check(
                response, request, step.status, step.headers, "\(label) (step \(index + 1): \(request.method))")
        }
        return failures
    }

    private func check(
        _ response: ConformanceResponse, _ request: ConformanceRequest, _ status: Int,
        _ headers: [(String, HeaderExpectation)], _ label: String
    ) -> [String] {
        var failures: [String] = []
        if response.status != status {
            failures.append(
                "\(label): status \(response.status), expected \(status) \(String(decoding: response.body.prefix(200), as: UTF8.self))"
            )
        }
        for (name, expectation) in headers where !expectation.matches(response.header(name)) {
            failures.append(
                "\(label): \(name) is \(response.header(name).map { "\"\($0)\"" } ?? "absent"), expected \(expectation)"
            )
        }
        if request.method == "HEAD", !response.body.isEmpty { failures.append("\(label): HEAD response has a body") }
        if [201, 204].contains(response.status), !response.body.isEmpty {
            failures.append("\(label): \(response.status) response has a body")
        }
        return failures
    }

    private func substituted(_ request: ConformanceRequest, _ names: [String: String]) -> ConformanceRequest {
        var request = request
        request.target = ConformanceRunner.substitute(request.target, names)
        request.headers = request.headers.map { ($0.0, ConformanceRunner.substitute($0.1, names)) }
        return request
    }

    private func send(_ request: ConformanceRequest) throws -> DraftConformanceExchange {
        var request = request
        if request.header("Host") == nil { request.headers.insert(("Host", ConformanceSettings.host), at: 0) }
        return try transport.exchange(request)
    }

    /// A tus upload of `length` (nil: deferred) holding `bytes`.
    private func tusUpload(length: Int64?, bytes: [UInt8]) throws -> String {
        let lengthHeader = length.map { ("Upload-Length", String($0)) } ?? ("Upload-Defer-Length", "1")
        let created = try send(
            ConformanceRequest("POST", "/files/", headers: [("Tus-Resumable", "1.0.0"), lengthHeader])
        ).response
        guard created.status == 201, let location = created.header("Location") else {
            throw ConformanceSetupError.creationFailed(created.status)
        }
        let path = ConformanceRunner.path(of: location)
        guard !bytes.isEmpty else { return path }
        let written = try send(
            ConformanceRequest(
                "PATCH", path,
                headers: [
                    ("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"),
                    ("Content-Type", "application/offset+octet-stream"),
                ], body: bytes)
        ).response
        guard written.status == 204 else { throw ConformanceSetupError.creationFailed(written.status) }
        return path
    }
}

/// The draft rows through a handler with `FakeExchange`s.
public struct HandlerDraftConformanceTransport: DraftConformanceTransport {
    public let inner: HandlerConformanceTransport

    public init(client: TusTestClient) { inner = HandlerConformanceTransport(client: client) }

    public func exchange(_ request: ConformanceRequest) throws -> DraftConformanceExchange {
        var informational: [ConformanceResponse] = []
        let response = try inner.send(request) { exchange in
            informational = exchange.informationalResponses.map {
                ConformanceResponse(status: $0.status.code, headers: $0.headers.map { ($0.name, $0.value) }, body: [])
            }
        }
        return DraftConformanceExchange(response: response, informational: informational)
    }
}

/// The draft rows over a real connection: every 1xx before the final response is collected (a `100 Continue`
/// releases the body, as a careful client would send it).
public struct SocketDraftConformanceTransport: DraftConformanceTransport {
    public let port: Int

    public init(port: Int) { self.port = port }

    public func exchange(_ request: ConformanceRequest) throws -> DraftConformanceExchange {
        let client = try RawHTTPClient(port: port, timeoutSeconds: 5)
        let (head, body) = SocketConformanceTransport.encode(request)
        let isHead = request.method == "HEAD"
        let waitsForContinue = request.header("Expect")?.lowercased() == "100-continue"
        client.send(waitsForContinue ? Array(head.utf8) : Array(head.utf8) + body)
        var informational: [ConformanceResponse] = []
        while true {
            let response = try client.readResponse(forHead: isHead)
            let converted = ConformanceResponse(status: response.status, headers: response.headers, body: response.body)
            guard response.status < 200 else {
                return DraftConformanceExchange(response: converted, informational: informational)
            }
            if response.status == 100 {
                if waitsForContinue { client.send(body) }
            } else {
                informational.append(converted)
            }
        }
    }
}
