/// One interop version of draft-ietf-httpbis-resumable-upload (`Upload-Draft-Interop-Version`), as data: what each
/// rule of docs/IETF-RESUMABLE-UPLOAD.md says for it (section 11 lists the same differences side by side). Serving
/// a new version is adding one row to `all`; the handlers read these fields and never compare version numbers.
public struct DraftInteropVersion: Sendable, Equatable {
    public let number: Int
    /// The draft revisions that announce this number ("-01", "-04/-05"...), for logs and docs.
    public let drafts: String

    /// How a request says whether the upload ends with it (rows H2, H3).
    enum CompletionField: Sendable, Equatable {
        /// `Upload-Incomplete: ?1` = more to come; absent = complete (-01).
        case uploadIncomplete
        /// `Upload-Complete: ?1` = this request ends the representation (-02 on).
        case uploadComplete
    }

    /// What a PATCH to an upload that is already complete gets (rows A12-A15).
    enum CompletedAppendAnswer: Sendable, Equatable {
        /// 400, with the `completed-upload` problem type where the version names it (-01 .. -09).
        case badRequest
        /// Non-empty content: 400 `inconsistent-upload-length`; empty: 410 Gone with `Location` (-10, -11).
        case inconsistentOrGone
        /// A repeat of the completing request (offset = length, `Upload-Complete: ?1`, no content) gets the
        /// completion answer again; anything else 409 or 400 (-12).
        case replayCompletion
    }

    let completionField: CompletionField
    /// A PATCH without the completion field is a 400 (v7+); before, absent means complete (row A7).
    let appendRequiresCompletionField: Bool
    /// The media type a PATCH must carry (v6+: `application/partial-upload`, row A2); nil: any.
    let appendMediaType: String?
    /// 104s with `Upload-Offset` while a body streams in (v5+, rows C6, C7, A19).
    let sendsProgress: Bool
    /// `Upload-Limit` on the creation 104, incomplete creation answers, offset retrieval and OPTIONS (v6+).
    let sendsLimits: Bool
    /// The `Upload-Limit` key for an upload's remaining lifetime in seconds (row L1): `expires` in v6, `max-age`
    /// from v7; nil before limits existed.
    let lifetimeKey: String?
    /// `Upload-Length` is a field of this version (-05 on, row H4): read on every request, sent on retrieval.
    let hasUploadLength: Bool
    /// Problem types (RFC 9457) this version names (section 6 rows A11-A17).
    let problemTypes: Set<DraftProblemType>
    let completedAppend: CompletedAppendAnswer
    /// `Content-Digest` on appends is verified (-04 .. -11, section 9); -12 removed the section.
    let verifiesContentDigest: Bool
    /// `GET` on an upload retrieves its offset like `HEAD` (-12, row R4).
    let retrievesWithGet: Bool
    /// `OPTIONS` names `application/partial-upload` in `Accept-Patch` (-10/-11 require it; harmless after, row L4).
    let sendsAcceptPatch: Bool
    /// Every answer to a PATCH carries `Upload-Complete` (v7+, rows A9, A10, A11): errors say `?0`.
    let completionFieldOnEveryAppendAnswer: Bool
    /// Content past the upload's length makes the upload invalid: it is cancelled (-08 on, row A16).
    let invalidatesOnExcess: Bool

    public static let all: [DraftInteropVersion] = [
        DraftInteropVersion(
            number: 3, drafts: "-01", completionField: .uploadIncomplete, appendRequiresCompletionField: false,
            appendMediaType: nil, sendsProgress: false, sendsLimits: false, lifetimeKey: nil, hasUploadLength: false,
            problemTypes: [], completedAppend: .badRequest, verifiesContentDigest: false, retrievesWithGet: false,
            sendsAcceptPatch: false, completionFieldOnEveryAppendAnswer: false, invalidatesOnExcess: false),
        DraftInteropVersion(
            number: 4, drafts: "-02", completionField: .uploadComplete, appendRequiresCompletionField: false,
            appendMediaType: nil, sendsProgress: false, sendsLimits: false, lifetimeKey: nil, hasUploadLength: false,
            problemTypes: [], completedAppend: .badRequest, verifiesContentDigest: false, retrievesWithGet: false,
            sendsAcceptPatch: false, completionFieldOnEveryAppendAnswer: false, invalidatesOnExcess: false),
        DraftInteropVersion(
            number: 5, drafts: "-03", completionField: .uploadComplete, appendRequiresCompletionField: false,
            appendMediaType: nil, sendsProgress: true, sendsLimits: false, lifetimeKey: nil, hasUploadLength: false,
            problemTypes: [], completedAppend: .badRequest, verifiesContentDigest: false, retrievesWithGet: false,
            sendsAcceptPatch: false, completionFieldOnEveryAppendAnswer: false, invalidatesOnExcess: false),
        DraftInteropVersion(
            number: 6, drafts: "-04/-05", completionField: .uploadComplete, appendRequiresCompletionField: false,
            appendMediaType: partialUpload, sendsProgress: true, sendsLimits: true, lifetimeKey: "expires",
            hasUploadLength: true, problemTypes: [.mismatchingUploadOffset, .completedUpload],
            completedAppend: .badRequest, verifiesContentDigest: true, retrievesWithGet: false, sendsAcceptPatch: false,
            completionFieldOnEveryAppendAnswer: false, invalidatesOnExcess: false),
        DraftInteropVersion(
            number: 7, drafts: "-06/-07/-08", completionField: .uploadComplete, appendRequiresCompletionField: true,
            appendMediaType: partialUpload, sendsProgress: true, sendsLimits: true, lifetimeKey: "max-age",
            hasUploadLength: true,
            problemTypes: [.mismatchingUploadOffset, .completedUpload, .inconsistentUploadLength],
            completedAppend: .badRequest, verifiesContentDigest: true, retrievesWithGet: false, sendsAcceptPatch: false,
            completionFieldOnEveryAppendAnswer: true, invalidatesOnExcess: true),
        DraftInteropVersion(
            number: 8, drafts: "-09/-10/-11", completionField: .uploadComplete, appendRequiresCompletionField: true,
            appendMediaType: partialUpload, sendsProgress: true, sendsLimits: true, lifetimeKey: "max-age",
            hasUploadLength: true,
            problemTypes: [.mismatchingUploadOffset, .completedUpload, .inconsistentUploadLength],
            completedAppend: .inconsistentOrGone, verifiesContentDigest: true, retrievesWithGet: false,
            sendsAcceptPatch: true, completionFieldOnEveryAppendAnswer: true, invalidatesOnExcess: true),
        DraftInteropVersion(
            number: 9, drafts: "-12", completionField: .uploadComplete, appendRequiresCompletionField: true,
            appendMediaType: partialUpload, sendsProgress: true, sendsLimits: true, lifetimeKey: "max-age",
            hasUploadLength: true, problemTypes: [.mismatchingUploadOffset, .inconsistentUploadLength],
            completedAppend: .replayCompletion, verifiesContentDigest: false, retrievesWithGet: true,
            sendsAcceptPatch: true, completionFieldOnEveryAppendAnswer: true, invalidatesOnExcess: true),
    ]

    public static let partialUpload = "application/partial-upload"

    /// The row for `Upload-Draft-Interop-Version`'s value, an sf-integer (row H6); nil for a malformed or unserved one.
    public static func named(_ value: Substring) -> DraftInteropVersion? {
        guard let number = StructuredField.integer(value) else { return nil }
        return all.first { $0.number == number }
    }

    public static var supportedNumbers: [Int] { all.map(\.number) }
}

/// RFC 9457 problem types the draft registers (`https://iana.org/assignments/http-problem-types#...`).
enum DraftProblemType: String, Sendable, Hashable {
    case mismatchingUploadOffset = "mismatching-upload-offset"
    case completedUpload = "completed-upload"
    case inconsistentUploadLength = "inconsistent-upload-length"

    var uri: String { "https://iana.org/assignments/http-problem-types#" + rawValue }
}
