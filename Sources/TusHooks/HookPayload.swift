import FoundationEssentials
import TusHTTP1
import TusProtocol

/// The JSON a hook receives, field for field tusd v2's `hooks.HookRequest` (`pkg/hooks/hooks.go`,
/// `pkg/handler/hooks.go`), so that a receiver written for tusd works unchanged:
///
/// ```json
/// {"Type":"post-finish","Event":{
///   "Upload":{"ID":"…","Size":5,"SizeIsDeferred":false,"Offset":5,"MetaData":{"filename":"a.txt"},
///             "IsPartial":false,"IsFinal":false,"PartialUploads":null,"Storage":{"Type":"filestore",…}},
///   "HTTPRequest":{"Method":"PATCH","URI":"/files/…","RemoteAddr":"127.0.0.1:5555",
///                  "Header":{"Tus-Resumable":["1.0.0"],"X-Request-Id":["…"]}}}}
/// ```
///
/// `IsPartial` marks a piece of a future final upload (`Upload-Concat: partial`): a receiver that post-processes
/// finished files skips post-finish events whose `IsPartial` is true (checklist N18). A final carries
/// `IsFinal: true` and its partials' ids in `PartialUploads`, in list order.
struct HookRequestBody: Encodable {
    let type: String
    let event: EventBody

    enum CodingKeys: String, CodingKey {
        case type = "Type", event = "Event"
    }

    /// Beside tusd's two members, `Protocol` says which wire protocol the request spoke (`tus`, `ietf-draft`), and
    /// `InteropVersion` the draft's `Upload-Draft-Interop-Version` (absent for tus): a receiver written for tusd
    /// ignores both.
    struct EventBody: Encodable {
        let upload: FileInfoBody
        let httpRequest: HTTPRequestBody
        let uploadProtocol: String
        let interopVersion: Int?

        enum CodingKeys: String, CodingKey {
            case upload = "Upload", httpRequest = "HTTPRequest", uploadProtocol = "Protocol"
            case interopVersion = "InteropVersion"
        }
    }

    struct FileInfoBody: Encodable {
        let id: String
        let size: Int64
        let sizeIsDeferred: Bool
        let offset: Int64
        let metaData: [String: String]
        let isPartial: Bool
        let isFinal: Bool
        let partialUploads: [String]?
        let storage: [String: String]?

        enum CodingKeys: String, CodingKey {
            case id = "ID", size = "Size", sizeIsDeferred = "SizeIsDeferred", offset = "Offset",
                metaData = "MetaData", isPartial = "IsPartial", isFinal = "IsFinal", partialUploads = "PartialUploads",
                storage = "Storage"
        }

        // Written by hand: Go writes `null` for nil slices and maps, synthesized Encodable would leave them out.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(id, forKey: .id)
            try container.encode(size, forKey: .size)
            try container.encode(sizeIsDeferred, forKey: .sizeIsDeferred)
            try container.encode(offset, forKey: .offset)
            try container.encode(metaData, forKey: .metaData)
            try container.encode(isPartial, forKey: .isPartial)
            try container.encode(isFinal, forKey: .isFinal)
            if let partialUploads { try container.encode(partialUploads, forKey: .partialUploads) } else {
                try container.encodeNil(forKey: .partialUploads)
            }
            if let storage { try container.encode(storage, forKey: .storage) } else { try container.encodeNil(forKey: .storage) }
        }
    }

    struct HTTPRequestBody: Encodable {
        let method: String
        let uri: String
        let remoteAddr: String
        let header: [String: [String]]

        enum CodingKeys: String, CodingKey {
            case method = "Method", uri = "URI", remoteAddr = "RemoteAddr", header = "Header"
        }
    }

    init(type: String, event: UploadEvent, storage: [String: String]?) {
        self.type = type
        let upload = event.upload
        var metaData: [String: String] = [:]
        if let raw = upload.metadata, let parsed = UploadMetadata.parse(raw) {
            for pair in parsed.pairs { metaData[pair.key] = String(decoding: pair.value, as: UTF8.self) }
        }
        var header: [String: [String]] = [:]
        for field in event.request.headers { header[Self.canonicalHeaderKey(field.name), default: []].append(field.value) }
        self.event = EventBody(
            upload: FileInfoBody(
                id: upload.id, size: upload.length ?? 0, sizeIsDeferred: upload.isLengthDeferred, offset: upload.offset,
                metaData: metaData, isPartial: upload.isPartial, isFinal: upload.isFinal,
                partialUploads: upload.isFinal ? upload.partialIDs : nil, storage: upload.id.isEmpty ? nil : storage),
            httpRequest: HTTPRequestBody(
                method: event.request.method.rawValue, uri: event.request.uri, remoteAddr: event.request.remoteAddress,
                header: header),
            uploadProtocol: event.request.uploadProtocol.name, interopVersion: Self.interopVersion(event.request))
    }

    static func interopVersion(_ request: EventRequest) -> Int? {
        if case .ietfDraft(let version) = request.uploadProtocol { return version }
        return nil
    }

    /// Go's `http.CanonicalHeaderKey` ("x-request-id" → "X-Request-Id"): receivers written for tusd look
    /// headers up by that spelling.
    static func canonicalHeaderKey(_ name: String) -> String {
        var out = ""
        var upper = true
        for scalar in name.unicodeScalars {
            let character = Character(scalar)
            out.append(upper ? Character(character.uppercased()) : Character(character.lowercased()))
            upper = scalar == "-"
        }
        return out
    }

    func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding plain strings, numbers and maps cannot fail.
        return (try? [UInt8](encoder.encode(self))) ?? Array("{}".utf8)
    }
}

/// What a hook answers (tusd `hooks.HookResponse`, plus `RejectTermination` and our `RejectAccess`). Every
/// field is optional; an empty body means "go on, change nothing".
struct HookResponseBody: Decodable {
    var httpResponse: HTTPResponseBody?
    var rejectUpload: Bool?
    var changeFileInfo: FileInfoChanges?
    var stopUpload: Bool?
    var rejectTermination: Bool?
    var rejectAccess: Bool?

    enum CodingKeys: String, CodingKey {
        case httpResponse = "HTTPResponse", rejectUpload = "RejectUpload", changeFileInfo = "ChangeFileInfo",
            stopUpload = "StopUpload", rejectTermination = "RejectTermination", rejectAccess = "RejectAccess"
    }

    struct HTTPResponseBody: Decodable {
        var statusCode: Int?
        var body: String?
        var header: [String: String]?

        enum CodingKeys: String, CodingKey {
            case statusCode = "StatusCode", body = "Body", header = "Header"
        }
    }

    struct FileInfoChanges: Decodable {
        var id: String?
        var metaData: [String: String]?

        enum CodingKeys: String, CodingKey {
            case id = "ID", metaData = "MetaData"
        }
    }

    static func decode(_ bytes: [UInt8]) throws -> HookResponseBody {
        let trimmed = bytes.drop { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
        if trimmed.isEmpty { return HookResponseBody() }
        return try JSONDecoder().decode(HookResponseBody.self, from: Data(trimmed))
    }

    /// The response changes as the protocol layer applies them. A zero status means "unset" in Go.
    var responseOverride: ResponseOverride {
        var override = ResponseOverride()
        if let code = httpResponse?.statusCode, code != 0 { override.statusCode = code }
        if let body = httpResponse?.body, !body.isEmpty { override.body = body }
        for (name, value) in (httpResponse?.header ?? [:]).sorted(by: { $0.key < $1.key }) {
            override.headers.add(name, value)
        }
        return override
    }

    func verdict(for point: DecisionPoint) -> EventVerdict {
        var verdict = EventVerdict(response: responseOverride)
        switch point {
        case .preCreate:
            verdict.isRejected = rejectUpload ?? false
            verdict.changedID = changeFileInfo?.id.flatMap { $0.isEmpty ? nil : $0 }
            verdict.changedMetadata = changeFileInfo?.metaData.map { $0.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
        case .preFinish:
            break
        case .preTerminate:
            verdict.isRejected = rejectTermination ?? false
        case .preAccess:
            verdict.isRejected = rejectAccess ?? false
        }
        return verdict
    }
}
