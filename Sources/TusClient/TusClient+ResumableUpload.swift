public import TusHTTP1
import TusLoop
import Glibc

/// The client side of "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload), per interop version.
/// What differs between the versions a client sends is kept here as data (docs/IETF-RESUMABLE-UPLOAD.md §11):
/// v3 says `Upload-Incomplete: ?1` where later ones say `Upload-Complete: ?0`; from v6 an append carries
/// `Content-Type: application/partial-upload` and the length may be declared with `Upload-Length`.
public struct ResumableUploadDraft: Sendable, Equatable, CustomStringConvertible {
    /// The `Upload-Draft-Interop-Version` numbers this client speaks: the ones Apple's URLSession, tus-js-client and
    /// our server use (draft -01 ... -12).
    public static let supportedVersions = 3...9
    public static let latest = ResumableUploadDraft(supportedVersions.upperBound)!

    public let interopVersion: Int

    public init?(_ interopVersion: Int) {
        guard Self.supportedVersions.contains(interopVersion) else { return nil }
        self.interopVersion = interopVersion
    }

    public var description: String { "interop version \(interopVersion)" }

    /// v3 (-01) names the opposite field: `Upload-Incomplete: ?1` means more is to come.
    public var usesIncompleteField: Bool { interopVersion == 3 }
    /// -05 (v6) added `Upload-Length`; a -04 server of the same number ignores it.
    public var sendsLength: Bool { interopVersion >= 6 }
    /// -04 (v6) on: "MUST use the PATCH method with the application/partial-upload media type".
    public var appendContentType: String? { interopVersion >= 6 ? "application/partial-upload" : nil }

    /// `Upload-Draft-Interop-Version` and the completion field for a request that does (not) end the upload.
    public func headers(complete: Bool) -> HTTPHeaders {
        var headers: HTTPHeaders = ["Upload-Draft-Interop-Version": String(interopVersion)]
        if usesIncompleteField {
            headers.add("Upload-Incomplete", complete ? "?0" : "?1")
        } else {
            headers.add("Upload-Complete", complete ? "?1" : "?0")
        }
        return headers
    }

    /// Whether a response says the upload is complete. v3 reads `Upload-Incomplete` (absent = complete); later
    /// versions `Upload-Complete`, absent meaning "not said": nil.
    public func isComplete(_ headers: HTTPHeaders) -> Bool? {
        if usesIncompleteField {
            return headers["Upload-Incomplete"].flatMap(StructuredField.boolean).map { !$0 } ?? true
        }
        return headers["Upload-Complete"].flatMap(StructuredField.boolean)
    }
}

/// The few RFC 9651 structured-field items the draft's headers use.
enum StructuredField {
    /// sf-integer, non-negative, at most 15 digits (larger is not an sf-integer).
    static func nonNegativeInteger(_ text: String) -> Int64? {
        let trimmed = String(text.trimmingOWS())
        guard !trimmed.isEmpty, trimmed.count <= 15, trimmed.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
            return nil
        }
        return Int64(trimmed)
    }

    /// sf-boolean: `?1` or `?0`; anything else is no boolean.
    static func boolean(_ text: String) -> Bool? {
        switch String(text.trimmingOWS()) {
        case "?1": return true
        case "?0": return false
        default: return nil
        }
    }
}

/// What a draft server answered about an upload.
public struct ResumableUploadState: Sendable, Equatable {
    public var url: TusURL
    public var offset: Int64
    public var isComplete: Bool
    /// `Upload-Length` when the server reported one.
    public var length: Int64?
    /// The raw `Upload-Limit` dictionary, when sent (v6+).
    public var limits: String?
}

/// The outcome of a creation request: the final response's state and every 104 it was preceded by.
public struct ResumableUploadCreation: Sendable {
    public var state: ResumableUploadState
    public var informationalCount: Int
}

/// One method per draft request (creation, offset retrieval, append, cancellation). Status codes other than the
/// expected ones become `TusClientError.server` with the body (a problem+json text, usually) as the message.
extension TusClient {
    /// Creation (POST to `url`) with `body` as its content. `complete` says the body is the whole representation
    /// (`Upload-Complete: ?1`), else more will be appended. `length` is the whole representation's length, sent as
    /// `Upload-Length` from v6. `onLocation` hears the upload URL from the 104 as soon as it arrives (on the loop
    /// thread): if the connection then breaks mid-body, the caller still knows where to resume, and the error is
    /// thrown as usual. `representationHeaders` (`Content-Type`, `Content-Disposition`) describe the upload.
    public func createResumableUpload(
        at url: TusURL, draft: ResumableUploadDraft = .latest, body: FileRange?, complete: Bool, length: Int64?,
        representationHeaders: HTTPHeaders = HTTPHeaders(),
        onLocation: (@Sendable (TusURL) -> Void)? = nil, onSent: (@Sendable (Int) -> Void)? = nil
    ) throws(TusClientError) -> ResumableUploadCreation {
        var headers = draft.headers(complete: complete)
        if draft.sendsLength, let length { headers.add("Upload-Length", String(length)) }
        for field in representationHeaders { headers.add(field.name, field.value) }
        if body == nil, !headers.contains("Content-Type") { headers.add("Content-Type", "application/octet-stream") }
        let seen = InformationalLog()
        let response = try perform(
            .POST, url, headers: headers, body: body.map { .file($0, onSent: onSent) } ?? .bytes([]),
            informational: { head in
                guard head.status.code == 104 else { return }
                let location = head.headers["Location"].flatMap { try? url.resolving($0) }
                if seen.record(location: location), let location { onLocation?(location) }
            })
        try Self.expectDraft(response, [200, 201, 204], draft: draft)
        var finalLocation: TusURL? = nil
        if let text = response.headers["Location"] { finalLocation = try url.resolving(text) }
        guard let uploadURL = finalLocation ?? seen.firstLocation else {
            throw .protocolViolation("the creation response (\(response.status)) names no upload (no Location)")
        }
        if let announced = seen.firstLocation, announced != uploadURL {
            throw .protocolViolation("the 104 announced \(announced) but the final response names \(uploadURL)")
        }
        let sent = body?.length ?? 0
        let offset = response.headers["Upload-Offset"].flatMap(StructuredField.nonNegativeInteger) ?? sent
        let state = ResumableUploadState(
            url: uploadURL, offset: offset, isComplete: draft.isComplete(response.headers) ?? complete,
            length: response.headers["Upload-Length"].flatMap(StructuredField.nonNegativeInteger) ?? length,
            limits: response.headers["Upload-Limit"])
        return ResumableUploadCreation(state: state, informationalCount: seen.count)
    }

    /// Offset retrieval (HEAD): where the server got to, and whether the upload is complete.
    public func resumableUploadState(
        _ url: TusURL, draft: ResumableUploadDraft = .latest
    ) throws(TusClientError) -> ResumableUploadState {
        let headers: HTTPHeaders = ["Upload-Draft-Interop-Version": String(draft.interopVersion)]
        let response = try perform(.HEAD, url, headers: headers)
        try Self.expectDraft(response, [200, 204], draft: draft)
        guard let offset = response.headers["Upload-Offset"].flatMap(StructuredField.nonNegativeInteger) else {
            throw .protocolViolation("offset retrieval answered without a valid Upload-Offset")
        }
        return ResumableUploadState(
            url: url, offset: offset, isComplete: draft.isComplete(response.headers) ?? false,
            length: response.headers["Upload-Length"].flatMap(StructuredField.nonNegativeInteger),
            limits: response.headers["Upload-Limit"])
    }

    /// Append (PATCH) `range` at `offset`; `complete` ends the upload with it. An empty range with `complete`
    /// finishes an upload whose bytes all arrived but whose completion did not.
    public func appendResumableUpload(
        _ url: TusURL, draft: ResumableUploadDraft = .latest, offset: Int64, range: FileRange?, complete: Bool,
        length: Int64? = nil, onSent: (@Sendable (Int) -> Void)? = nil
    ) throws(TusClientError) -> ResumableUploadState {
        var headers = draft.headers(complete: complete)
        headers.add("Upload-Offset", String(offset))
        if let type = draft.appendContentType { headers.add("Content-Type", type) }
        if draft.sendsLength, let length { headers.add("Upload-Length", String(length)) }
        let body: Body = range.map { .file($0, onSent: onSent) } ?? .bytes([])
        let response = try perform(.PATCH, url, headers: headers, body: body)
        try Self.expectDraft(response, [200, 201, 204], draft: draft)
        let expected = offset + (range?.length ?? 0)
        let newOffset = response.headers["Upload-Offset"].flatMap(StructuredField.nonNegativeInteger) ?? expected
        return ResumableUploadState(
            url: url, offset: newOffset, isComplete: draft.isComplete(response.headers) ?? complete,
            length: response.headers["Upload-Length"].flatMap(StructuredField.nonNegativeInteger),
            limits: response.headers["Upload-Limit"])
    }

    /// Cancellation (DELETE).
    public func cancelResumableUpload(_ url: TusURL, draft: ResumableUploadDraft = .latest) throws(TusClientError) {
        let headers: HTTPHeaders = ["Upload-Draft-Interop-Version": String(draft.interopVersion)]
        let response = try perform(.DELETE, url, headers: headers)
        try Self.expectDraft(response, [200, 204], draft: draft)
    }

    /// Throws unless `response.statusCode` is one of `accepted`. A draft server need not mark its final responses
    /// (the 104 is the draft's signal), so only a 405 that says nothing of the draft is "not a server for it"; a 404
    /// stays a server answer (an upload that is gone, which `Uploader` replaces with a new one).
    static func expectDraft(
        _ response: HTTPClientResponse, _ accepted: [Int], draft: ResumableUploadDraft
    ) throws(TusClientError) {
        if accepted.contains(response.statusCode) { return }
        let text = String(String(decoding: response.body.prefix(300), as: UTF8.self).trimming { "\n\r ".contains($0) })
        let speaksDraft =
            response.headers.contains("Upload-Draft-Interop-Version") || response.headers.contains("Upload-Offset")
        if !speaksDraft && response.statusCode == 405 {
            throw .notTusServer("\(response.status): the URL takes no resumable uploads (\(draft))")
        }
        throw .server(status: response.statusCode, message: text)
    }
}

/// The 104s of one request, filled on the loop thread and read by the caller after `perform` returned.
final class InformationalLog: @unchecked Sendable {
    private(set) var count = 0
    private(set) var firstLocation: TusURL?

    /// Returns true for the first 104 that names a location.
    func record(location: TusURL?) -> Bool {
        count += 1
        guard firstLocation == nil, let location else { return false }
        firstLocation = location
        return true
    }
}
