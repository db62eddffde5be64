/// Checklist 1.7 (checksum-trailer, T1-T3) and 1.9 (concatenation and concatenation-unfinished, N1-N17) as
/// conformance rows. `$P1`, `$P2` are partial uploads made for the row, `$L` the upload the row's request
/// created (a final); the steps after it check HEAD and the downloaded bytes.
private let helloWorld = Array("hello world".utf8)
private let helloWorldSHA1 = "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="
private let offsetStream = ("Content-Type", "application/offset+octet-stream")
/// `hello` + ` world`, both complete.
private let helloAndWorld: ConformanceUpload = .partials([
    ConformancePartial(length: 5, bytes: Array("hello".utf8)), ConformancePartial(length: 6, bytes: Array(" world".utf8)),
])

private func final(_ list: String, _ extra: [(String, String)] = [], body: [UInt8] = []) -> ConformanceRequest {
    post([("Upload-Concat", "final;" + list)] + extra, body: body)
}

private func headOf(_ target: String, _ headers: [(String, HeaderExpectation)], status: Int = 200) -> ConformanceStep {
    ConformanceStep(ConformanceRequest("HEAD", target), status: status, headers: headers)
}

private func download(_ target: String, _ bytes: String) -> ConformanceStep {
    ConformanceStep(ConformanceRequest("GET", target), status: 200, body: Array(bytes.utf8))
}

private func trailerPatch(_ trailers: [(String, String)], body: [UInt8] = helloWorld) -> ConformanceRequest {
    ConformanceRequest(
        "PATCH", headers: [offsetStream, ("Upload-Offset", "0"), ("Trailer", "Upload-Checksum")], body: body,
        chunked: true, trailers: trailers)
}

extension TusConformanceCases {
    // MARK: 1.7 checksum-trailer

    public static let checksumTrailer: [ConformanceCase] = [
        ConformanceCase(
            "T1", "checksum-trailer advertised", ConformanceRequest("OPTIONS", "/files/"), status: 204,
            headers: [("Tus-Extension", .listContains("checksum-trailer"))]),
        ConformanceCase(
            "T2", "digest in the trailer", upload: .created(length: 11),
            trailerPatch([("Upload-Checksum", helloWorldSHA1)]), status: 204, headers: [("Upload-Offset", .equals("11"))],
            steps: [download("$U", "hello world")]),
        ConformanceCase(
            "T2", "mismatching trailer discards the chunk", upload: .created(length: 11),
            trailerPatch([("Upload-Checksum", helloWorldSHA1)], body: Array("hello worlD".utf8)), status: 460,
            then: (head, 200, [("Upload-Offset", .equals("0"))])),
        ConformanceCase(
            "T2", "malformed trailer is 400 and discards", upload: .created(length: 11),
            trailerPatch([("Upload-Checksum", "sha1 not-base64!")]), status: 400,
            then: (head, 200, [("Upload-Offset", .equals("0"))])),
        ConformanceCase(
            "T2", "unsupported algorithm in the trailer", upload: .created(length: 11),
            trailerPatch([("Upload-Checksum", "crc32 AAAAAA==")]), status: 400,
            then: (head, 200, [("Upload-Offset", .equals("0"))])),
        ConformanceCase(
            "T3", "announced trailer missing discards the chunk", upload: .created(length: 11), trailerPatch([]),
            status: 460, then: (head, 200, [("Upload-Offset", .equals("0"))])),
        ConformanceCase(
            "T2", "sha256 trailer", upload: .created(length: 11),
            trailerPatch([("Upload-Checksum", "sha256 uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=")]), status: 204,
            headers: [("Upload-Offset", .equals("11"))]),
    ]

    // MARK: 1.9 concatenation

    public static let concatenation: [ConformanceCase] = [
        ConformanceCase(
            "N1 N11", "both concatenation extensions advertised", ConformanceRequest("OPTIONS", "/files/"), status: 204,
            headers: [
                ("Tus-Extension", .listContains("concatenation")),
                ("Tus-Extension", .listContains("concatenation-unfinished")),
            ]),
        ConformanceCase(
            "N2", "create a partial upload", post([("Upload-Concat", "partial"), ("Upload-Length", "5")]), status: 201,
            headers: [("Location", .present)],
            steps: [headOf("$L", [("Upload-Concat", .equals("partial")), ("Upload-Offset", .equals("0"))])]),
        ConformanceCase(
            "N2 N3", "partial with creation-with-upload",
            post([("Upload-Concat", "partial"), ("Upload-Length", "5"), offsetStream], body: Array("hello".utf8)),
            status: 201, headers: [("Upload-Offset", .equals("5"))],
            steps: [headOf("$L", [("Upload-Concat", .equals("partial")), ("Upload-Offset", .equals("5"))])]),
        ConformanceCase(
            "N3 N4 N5", "final of two partials", upload: helloAndWorld, final("$P1 $P2"), status: 201,
            headers: [("Location", .present), ("Upload-Offset", .absent)],
            steps: [
                headOf(
                    "$L",
                    [
                        ("Upload-Length", .equals("11")), ("Upload-Offset", .equals("11")),
                        ("Upload-Concat", .equals("final;$P1 $P2")), ("Upload-Expires", .absent),
                    ]),
                download("$L", "hello world"),
            ]),
        ConformanceCase(
            "N4", "list order decides the byte order", upload: helloAndWorld, final("$P2 $P1"), status: 201,
            steps: [download("$L", " worldhello")]),
        ConformanceCase(
            "N5", "Upload-Concat echoed exactly as received", upload: helloAndWorld,
            post([("Upload-Concat", "final; $P1  $P2")]), status: 201,
            steps: [headOf("$L", [("Upload-Concat", .equals("final; $P1  $P2"))])]),
        ConformanceCase(
            "N6", "absolute partial URLs", upload: helloAndWorld,
            final("http://\(ConformanceSettings.host)$P1 https://\(ConformanceSettings.host)$P2"), status: 201,
            steps: [download("$L", "hello world")]),
        ConformanceCase(
            "N6", "absolute URL outside the base path", upload: helloAndWorld, final("http://tus.example/elsewhere/x"),
            status: 400),
        ConformanceCase("N6", "URL with another scheme", upload: helloAndWorld, final("ftp://tus.example$P1"), status: 400),
        ConformanceCase(
            "N7", "final with Upload-Length", upload: helloAndWorld, final("$P1 $P2", [("Upload-Length", "11")]),
            status: 400),
        ConformanceCase(
            "N7", "final with Upload-Defer-Length", upload: helloAndWorld,
            final("$P1 $P2", [("Upload-Defer-Length", "1")]), status: 400),
        ConformanceCase(
            "N8", "PATCH to a final is forbidden", upload: helloAndWorld, final("$P1 $P2"), status: 201,
            steps: [
                ConformanceStep(patch(11, body: Array("!".utf8), target: "$L"), status: 403),
                ConformanceStep(patch(0, body: Array("!".utf8), target: "$L"), status: 403),
                download("$L", "hello world"),
                headOf("$P1", [("Upload-Offset", .equals("5"))]),
            ]),
        ConformanceCase(
            "N9", "final with a body", upload: helloAndWorld, final("$P1 $P2", [offsetStream], body: Array("x".utf8)),
            status: 403),
        ConformanceCase(
            "N11", "final created before its partials finish",
            upload: .partials([
                ConformancePartial(length: 5, bytes: Array("hello".utf8)), ConformancePartial(length: 6, bytes: Array(" wor".utf8)),
            ]),
            final("$P1 $P2"), status: 201,
            steps: [
                headOf(
                    "$L",
                    [
                        ("Upload-Offset", .absent), ("Upload-Length", .equals("11")),
                        ("Upload-Concat", .equals("final;$P1 $P2")),
                    ]),
                ConformanceStep(ConformanceRequest("GET", "$L"), status: 200, body: []),
                ConformanceStep(ConformanceRequest("PATCH", "$L", headers: [offsetStream, ("Upload-Offset", "0")], body: [1]), status: 403),
                ConformanceStep(patch(4, body: Array("ld".utf8), target: "$P2"), status: 204),
                headOf("$L", [("Upload-Offset", .equals("11")), ("Upload-Length", .equals("11"))]),
                download("$L", "hello world"),
            ]),
        ConformanceCase(
            "N11", "unfinished final of a deferred-length partial",
            upload: .partials([
                ConformancePartial(length: 5, bytes: Array("hello".utf8)), ConformancePartial(length: nil, bytes: []),
            ]),
            final("$P1 $P2"), status: 201,
            steps: [
                headOf("$L", [("Upload-Offset", .absent), ("Upload-Length", .absent)]),
                ConformanceStep(
                    patch(0, [("Upload-Length", "6")], body: Array(" world".utf8), target: "$P2"), status: 204),
                headOf("$L", [("Upload-Offset", .equals("11")), ("Upload-Length", .equals("11"))]),
                download("$L", "hello world"),
            ]),
        ConformanceCase(
            "N11", "a partial terminated before the final is complete fails the final",
            upload: .partials([
                ConformancePartial(length: 5, bytes: Array("hello".utf8)), ConformancePartial(length: 6, bytes: []),
            ]),
            final("$P1 $P2"), status: 201,
            steps: [
                ConformanceStep(ConformanceRequest("DELETE", "$P2"), status: 204),
                headOf("$L", [("Upload-Offset", .absent)], status: 410),
                ConformanceStep(ConformanceRequest("GET", "$L"), status: 410),
            ]),
        ConformanceCase(
            "N12", "the same partial twice", upload: helloAndWorld, final("$P1 $P1"), status: 201,
            steps: [headOf("$L", [("Upload-Length", .equals("10"))]), download("$L", "hellohello")]),
        ConformanceCase(
            "N13", "one partial in two finals; terminating a partial keeps assembled finals", upload: helloAndWorld,
            final("$P1 $P2"), status: 201,
            steps: [
                ConformanceStep(final("$P2 $P1"), status: 201),
                ConformanceStep(ConformanceRequest("DELETE", "$P1"), status: 204),
                download("$L", "hello world"),
                headOf("$L", [("Upload-Offset", .equals("11"))]),
            ]),
        ConformanceCase(
            "N14", "partial metadata is not inherited",
            upload: .partials([
                ConformancePartial(length: 5, bytes: Array("hello".utf8), metadata: "filename cGFydC5iaW4="),
            ]),
            final("$P1", [("Upload-Metadata", "filename YWxsLmJpbg==")]), status: 201,
            steps: [headOf("$L", [("Upload-Metadata", .equals("filename YWxsLmJpbg=="))])]),
        ConformanceCase(
            "N14", "final without metadata has none",
            upload: .partials([ConformancePartial(length: 5, bytes: Array("hello".utf8), metadata: "filename cGFydC5iaW4=")]),
            final("$P1"), status: 201, steps: [headOf("$L", [("Upload-Metadata", .absent)])]),
        ConformanceCase("N15", "final with an empty list", upload: helloAndWorld, final(""), status: 400),
        ConformanceCase("N15", "unknown Upload-Concat value", post([("Upload-Concat", "foo"), ("Upload-Length", "5")]), status: 400),
        ConformanceCase("N15", "final without a semicolon", upload: helloAndWorld, post([("Upload-Concat", "final $P1")]), status: 400),
        ConformanceCase(
            "N16", "final listing an unknown upload", upload: helloAndWorld,
            final("$P1 /files/0123456789abcdef0123456789abcdef"), status: 400),
        ConformanceCase(
            "N16", "final listing a plain (not partial) upload", upload: .created(length: 5), final("$U"), status: 400),
        ConformanceCase(
            "N17", "final larger than the maximum size",
            upload: .partials([
                ConformancePartial(length: 600, bytes: []), ConformancePartial(length: 600, bytes: []),
            ]),
            final("$P1 $P2"), status: 413),
        ConformanceCase(
            "N5", "DELETE a final; its partials stay", upload: helloAndWorld, final("$P1 $P2"), status: 201,
            steps: [
                ConformanceStep(ConformanceRequest("DELETE", "$L"), status: 204),
                headOf("$L", [], status: 410),
                headOf("$P1", [("Upload-Offset", .equals("5"))]),
            ]),
    ]
}
