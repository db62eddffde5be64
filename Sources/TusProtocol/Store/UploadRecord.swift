import TusCrypto

/// The `<id>.info` file (and S3StateStore's `P<id>.info` object, so that neither store imports the other): one
/// JSON object. Created at its final name with `O_EXCL`; every later change is written
/// whole to `<id>.info.tmp` and renamed over `<id>.info`, so a reader (recovery) sees either the old record or the
/// new one, never a mix. With `--records log` a new upload's record is instead one line of the record log
/// (`RecordLog`), in the same encoding.
///
/// ```json
/// {"id":"a1b2c3","length":1048576,"offset":524288,"metadata":"filename bXkuYmlu","createdAt":1732690000,
///  "expiresAt":1732776400,"pendingDiscardFrom":null,"owner":"alice"}
/// ```
///
/// - `id`: the upload id; also the file name of the data file `<id>` next to the record.
/// - `length`: total size in bytes (`Upload-Length`); `null` while the length is deferred.
/// - `offset`: bytes committed when the record was last written. A PATCH that only moves the offset does not
///   rewrite the record, so the data file normally holds more; recovery trusts the data file unless
///   `pendingDiscardFrom` is set.
/// - `metadata`: the `Upload-Metadata` header exactly as received, or `null`.
/// - `createdAt`, `expiresAt`: unix seconds; `expiresAt` is `null` for "never" (finished, or expiration off). A
///   complete upload's record may still carry the expiry it had before its last PATCH: recovery ignores it.
/// - `owner`: who created it (a token's `sub`); only that caller may use it. `null` (or absent, in records
///   written before owners existed) = anyone.
/// - `pendingDiscardFrom`: set while a discardable (checksummed) PATCH is running: the offset it started at. A
///   record that still carries it at startup belongs to a PATCH that never committed, so recovery truncates the
///   data back to it. `null` otherwise.
///
/// Uploads made with `Upload-Concat` carry three more keys after those, and only they (plain records keep the
/// seven above, so records written before concatenation existed read the same):
///
/// - `concat`: the `Upload-Concat` header exactly as received;
/// - `isPartial`: `true` for `Upload-Concat: partial`;
/// - `partialIDs`: for a final, its partials' ids in list order. A final's `offset` is 0 until it is assembled,
///   then equals `length`; its data file stays empty (the bytes are hard links `<id>.part-<n>`).
///
/// An IETF-draft upload still waiting for the request that completes it (`UploadInfo.awaitsCompletion`) carries
/// `"awaitsCompletion":true`, and one created with the draft's `Repr-Digest` / `Want-Repr-Digest` carries
/// `"reprDigest"` / `"wantReprDigest"` (strings) after everything else; no other record has these keys, so older
/// readers and records are unaffected.
///
/// Unknown fields are ignored when reading, and missing optional fields read as `null`.
public struct UploadRecord: Codable, Sendable, Equatable {
    public var id: String
    public var length: Int64?
    public var offset: Int64
    public var metadata: String?
    public var createdAt: Int64
    public var expiresAt: Int64?
    public var pendingDiscardFrom: Int64?
    public var concat: String?
    public var isPartial: Bool?
    public var partialIDs: [String]?
    public var owner: String?
    public var awaitsCompletion: Bool?
    public var reprDigest: String?
    public var wantReprDigest: String?

    public init(_ info: UploadInfo, pendingDiscardFrom: Int64? = nil) {
        id = info.id
        length = info.length
        offset = info.offset
        metadata = info.metadata
        createdAt = info.createdAt
        expiresAt = info.expiresAt
        owner = info.owner
        self.pendingDiscardFrom = pendingDiscardFrom
        concat = info.concat
        isPartial = info.concat == nil ? nil : info.isPartial
        partialIDs = info.isFinal ? info.partialIDs : nil
        awaitsCompletion = info.awaitsCompletion ? true : nil
        reprDigest = info.representationDigest
        wantReprDigest = info.wantedDigest
    }

    public var info: UploadInfo {
        UploadInfo(
            id: id, length: length, offset: offset, metadata: metadata, createdAt: createdAt, expiresAt: expiresAt,
            owner: owner, concat: concat, isPartial: isPartial ?? false, partialIDs: partialIDs ?? [],
            awaitsCompletion: awaitsCompletion ?? false, representationDigest: reprDigest, wantedDigest: wantReprDigest)
    }

    public var isFinal: Bool { !(partialIDs ?? []).isEmpty }

    /// The record as UTF-8 JSON, keys in the documented order with explicit `null`s.
    ///
    /// Written by hand rather than with `JSONEncoder` because it runs on the loop thread at every PATCH commit
    /// and the format is seven flat fields; recovery reads it back with `JSONDecoder`, which tests check.
    public var encodedJSON: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160 + id.utf8.count + (metadata?.utf8.count ?? 0))
        out.append(contentsOf: #"{"id":"#.utf8)
        Self.appendString(id, to: &out)
        out.append(contentsOf: #","length":"#.utf8)
        Self.appendNumber(length, to: &out)
        out.append(contentsOf: #","offset":"#.utf8)
        Self.appendNumber(offset, to: &out)
        out.append(contentsOf: #","metadata":"#.utf8)
        if let metadata { Self.appendString(metadata, to: &out) } else { out.append(contentsOf: "null".utf8) }
        out.append(contentsOf: #","createdAt":"#.utf8)
        Self.appendNumber(createdAt, to: &out)
        out.append(contentsOf: #","expiresAt":"#.utf8)
        Self.appendNumber(expiresAt, to: &out)
        out.append(contentsOf: #","pendingDiscardFrom":"#.utf8)
        Self.appendNumber(pendingDiscardFrom, to: &out)
        if let concat {
            out.append(contentsOf: #","concat":"#.utf8)
            Self.appendString(concat, to: &out)
            out.append(contentsOf: (isPartial == true ? #","isPartial":true"# : #","isPartial":false"#).utf8)
            out.append(contentsOf: #","partialIDs":["#.utf8)
            for (index, partialID) in (partialIDs ?? []).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                Self.appendString(partialID, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        if let owner {
            out.append(contentsOf: #","owner":"#.utf8)
            Self.appendString(owner, to: &out)
        }
        if awaitsCompletion == true { out.append(contentsOf: #","awaitsCompletion":true"#.utf8) }
        if let reprDigest {
            out.append(contentsOf: #","reprDigest":"#.utf8)
            Self.appendString(reprDigest, to: &out)
        }
        if let wantReprDigest {
            out.append(contentsOf: #","wantReprDigest":"#.utf8)
            Self.appendString(wantReprDigest, to: &out)
        }
        out.append(contentsOf: "}\n".utf8)
        return out
    }

    private static func appendNumber(_ value: Int64?, to out: inout [UInt8]) {
        out.append(contentsOf: (value.map { String($0) } ?? "null").utf8)
    }

    private static func appendString(_ value: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\"))
                out.append(byte)
            case 0..<0x20:
                out.append(contentsOf: #"\u00"#.utf8)
                Hex.append(byte, to: &out)
            default:
                out.append(byte)  // UTF-8 passes through: JSON text is UTF-8
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Whether the numbers make sense together; recovery quarantines records that fail this.
    public var isConsistent: Bool {
        guard offset >= 0, createdAt >= 0 else { return false }
        if let length, length < 0 || offset > length { return false }
        if let pendingDiscardFrom, pendingDiscardFrom < 0 || pendingDiscardFrom > offset { return false }
        if let partialIDs, !partialIDs.allSatisfy(UploadID.isValid) { return false }
        return UploadID.isValid(id)
    }
}
