import TusHTTP1

/// A single `Range: bytes=...` request (RFC 9110 §14). Multiple ranges and malformed values are ignored
/// (the whole body is sent), which the RFC allows and which keeps multipart/byteranges out of the server.
enum ByteRange {
    enum Resolution: Equatable {
        case whole
        case partial(first: Int64, last: Int64)
        case unsatisfiable
    }

    static func resolve(_ header: String?, length: Int64) -> Resolution {
        guard let header = header?.trimmingOWS(), header.lowercased().hasPrefix("bytes=") else { return .whole }
        let spec = header.dropFirst(6)
        guard !spec.contains(",") else { return .whole }
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .whole }
        let firstText = parts[0].trimmingOWS()
        let lastText = parts[1].trimmingOWS()
        if firstText.isEmpty {
            guard let suffix = DecimalInteger.parse(lastText.utf8) else { return .whole }
            guard suffix > 0, length > 0 else { return .unsatisfiable }
            return .partial(first: max(0, length - suffix), last: length - 1)
        }
        guard let first = DecimalInteger.parse(firstText.utf8) else { return .whole }
        var last = length - 1
        if !lastText.isEmpty {
            guard let parsed = DecimalInteger.parse(lastText.utf8) else { return .whole }
            guard parsed >= first else { return .whole }
            last = min(parsed, length - 1)
        }
        guard first < length else { return .unsatisfiable }
        return .partial(first: first, last: last)
    }
}
