/// Equal when the same fields come in the same order; names compare case-insensitively, values exactly.
/// Order matters because repeated fields (and trailers) are significant in order.
extension HTTPHeaders: Equatable {
    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for (l, r) in zip(lhs.fields, rhs.fields) {
            guard l.value == r.value, l.name.equalsIgnoringASCIICase(r.name) else { return false }
        }
        return true
    }
}

/// Lets tests (and the split-feeding verifier) compare whole parse results.
extension RequestHead: Equatable {
    public static func == (lhs: RequestHead, rhs: RequestHead) -> Bool {
        lhs.method == rhs.method && lhs.target == rhs.target && lhs.version == rhs.version
            && lhs.headers == rhs.headers && lhs.bodyFraming == rhs.bodyFraming && lhs.keepAlive == rhs.keepAlive
            && lhs.expectsContinue == rhs.expectsContinue
    }
}
