/// How a final upload's object is assembled from its partials' objects: the parts of one multipart upload, each
/// either copied inside S3 (`UploadPartCopy` of a byte range of one partial: no byte passes through the server) or
/// streamed through the server (ranged GETs of one or more partials sent as one `UploadPart`). Pure arithmetic,
/// tested without S3.
///
/// S3 wants every part but the last to be at least 5 MiB. A partial that big is copied; smaller partials (and the
/// bytes of a big one needed to bring a run of small ones up to the minimum) are streamed, in parts of about the
/// store's part size. So finals of big partials (`tus-cli --parallel`, tus-js-client's `parallelUploads`) are
/// assembled without moving a byte, and only small partials cost a copy through the server. tusd copies when every
/// partial is big enough and otherwise downloads every partial into a temporary file.
public struct S3ConcatenationPlan: Sendable, Equatable {
    /// Bytes `range` of the source object `key`.
    public struct Piece: Sendable, Equatable {
        public var key: String
        public var range: Range<Int64>

        public init(key: String, range: Range<Int64>) {
            self.key = key
            self.range = range
        }
    }

    public enum Part: Sendable, Equatable {
        case copy(Piece)
        case stream([Piece])

        public var size: Int64 {
            switch self {
            case .copy(let piece): piece.range.count64
            case .stream(let pieces): pieces.reduce(0) { $0 + $1.range.count64 }
            }
        }

        public var streamedBytes: Int64 {
            if case .stream = self { return size }
            return 0
        }
    }

    public private(set) var parts: [Part] = []

    public var sizes: [Int64] { parts.map(\.size) }
    public var length: Int64 { parts.reduce(0) { $0 + $1.size } }

    /// S3's limits: every part but the last at least 5 MiB, none above 5 GiB, at most 10,000.
    public static let minimumPartSize: Int64 = 5 << 20
    public static let maximumPartSize: Int64 = 5 << 30
    public static let maximumPartCount = 10_000
    /// One `UploadPartCopy` copies at most this much: Ceph RGW answers a copy only when it is done (about 3.5 s for
    /// 256 MiB on a loaded 2-core box here), so a piece must finish inside its no-progress deadline
    /// (`S3Assembly.copyTimeout`); pieces also let one big partial be copied by several requests at once.
    public static let maximumCopySize: Int64 = 256 << 20

    /// `sources`: the partials' object keys and lengths in the final's order (a key may repeat). `streamPartSize`:
    /// the size of streamed parts (the store's part size). Nil when S3 cannot hold the result in 10,000 parts.
    public init?(
        sources: [(key: String, length: Int64)], streamPartSize: Int64, minimumPartSize: Int64 = Self.minimumPartSize,
        maximumPartSize: Int64 = Self.maximumPartSize, maximumCopySize: Int64 = Self.maximumCopySize,
        maximumPartCount: Int = Self.maximumPartCount
    ) {
        precondition(streamPartSize >= minimumPartSize && maximumCopySize >= 2 * minimumPartSize)
        let nonEmpty = sources.filter { $0.length > 0 }
        var pending: [Piece] = []
        var pendingSize: Int64 = 0

        func copy(_ key: String, _ range: Range<Int64>) {
            // Near-equal pieces of at most maximumCopySize, each at least half of it (so at least the minimum).
            let count = (range.count64 + maximumCopySize - 1) / maximumCopySize
            for index in 0..<count {
                let start = range.lowerBound + range.count64 * index / count
                let end = range.lowerBound + range.count64 * (index + 1) / count
                parts.append(.copy(Piece(key: key, range: start..<end)))
            }
        }

        func flushPending() {
            guard pendingSize > 0 else { return }
            // Near-equal parts of [S, 2S) bytes (S = streamPartSize), or of at most S when 2S would pass S3's
            // maximum; a run below S is one part (below the minimum only at the very end).
            var count = max(1, pendingSize / streamPartSize)
            if pendingSize / count > maximumPartSize { count = (pendingSize + streamPartSize - 1) / streamPartSize }
            var pieces = pending[...]
            for index in 0..<count {
                var remaining = pendingSize * (index + 1) / count - pendingSize * index / count
                var part: [Piece] = []
                while remaining > 0, var piece = pieces.first {
                    let taken = min(remaining, piece.range.count64)
                    part.append(Piece(key: piece.key, range: piece.range.lowerBound..<(piece.range.lowerBound + taken)))
                    remaining -= taken
                    piece.range = (piece.range.lowerBound + taken)..<piece.range.upperBound
                    if piece.range.isEmpty { pieces = pieces.dropFirst() } else { pieces[pieces.startIndex] = piece }
                }
                parts.append(.stream(part))
            }
            pending = []
            pendingSize = 0
        }

        for (index, source) in nonEmpty.enumerated() {
            let isLast = index == nonEmpty.count - 1
            var start: Int64 = 0
            if pendingSize > 0, pendingSize < minimumPartSize {
                // Streamed bytes waiting: they may not end a part below the minimum, so this source lends its head.
                start = min(source.length, minimumPartSize - pendingSize)
                pending.append(Piece(key: source.key, range: 0..<start))
                pendingSize += start
            }
            let rest = source.length - start
            if rest == 0 { continue }
            if rest >= minimumPartSize || isLast {
                flushPending()
                copy(source.key, start..<source.length)
            } else {
                pending.append(Piece(key: source.key, range: start..<source.length))
                pendingSize += rest
            }
        }
        flushPending()
        guard parts.count <= maximumPartCount else { return nil }
    }
}

extension Range where Bound == Int64 {
    var count64: Int64 { upperBound - lowerBound }
}
