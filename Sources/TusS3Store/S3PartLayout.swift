/// Where each byte of an upload goes: part `n` (1-based) holds bytes `[(n-1)·P, n·P)` of the upload, P being
/// `--s3-part-size`; the last part is shorter when the length is known. Pure arithmetic, tested without S3.
public struct S3PartLayout: Sendable, Equatable {
    public let partSize: Int64

    public init(partSize: Int64) {
        precondition(partSize > 0)
        self.partSize = partSize
    }

    /// The part that byte `offset` belongs to (the next part when `offset` is on a boundary).
    public func partNumber(at offset: Int64) -> Int { Int(offset / partSize) + 1 }

    public func start(ofPart number: Int) -> Int64 { Int64(number - 1) * partSize }

    /// The part's `Content-Length`: `partSize`, or less for the last part of an upload of known length.
    public func length(ofPart number: Int, uploadLength: Int64?) -> Int64 {
        guard let uploadLength else { return partSize }
        return max(0, min(partSize, uploadLength - start(ofPart: number)))
    }

    /// Bytes of the part containing `offset` that lie before it: what the incomplete-part object must hold.
    public func tail(at offset: Int64) -> Int64 { offset % partSize }

    public func partCount(uploadLength: Int64) -> Int {
        Int((uploadLength + partSize - 1) / partSize)
    }

    /// The parts a finished upload of `uploadLength` consists of, checked against what `ListParts` reports:
    /// nil when one is missing or has the wrong size (never complete an upload with a hole or a stale part).
    public func completeParts(_ listed: [S3Part], uploadLength: Int64) -> [S3Part]? {
        let count = partCount(uploadLength: uploadLength)
        let sizes = stride(from: 1, through: count, by: 1).map { length(ofPart: $0, uploadLength: uploadLength) }
        return Self.completeParts(listed, sizes: sizes)
    }

    /// Parts 1…N as listed, when part n exists with exactly `sizes[n-1]` bytes; nil otherwise.
    public static func completeParts(_ listed: [S3Part], sizes: [Int64]) -> [S3Part]? {
        var byNumber: [Int: S3Part] = [:]
        for part in listed { byNumber[part.number] = part }
        var parts: [S3Part] = []
        for (index, size) in sizes.enumerated() {
            guard let part = byNumber[index + 1], part.size == size else { return nil }
            parts.append(part)
        }
        return parts
    }
}

/// Object names in the bucket, all under `--s3-prefix` P.
public struct S3Keys: Sendable {
    public let prefix: String

    public init(prefix: String) { self.prefix = prefix }

    /// `P<id>`: the multipart upload while it runs, the finished object afterwards.
    public func data(_ id: String) -> String { prefix + id }
    /// `P<id>.info`: the upload's record (S3 state store only; with --redis the record is in Redis).
    public func info(_ id: String) -> String { prefix + id + ".info" }
    /// `P<id>.part.<n>`: the first bytes of part n, written when a PATCH ends inside it.
    public func tail(_ id: String, part: Int) -> String { prefix + id + ".part.\(part)" }
    public func tailPrefix(_ id: String) -> String { prefix + id + ".part." }
}
