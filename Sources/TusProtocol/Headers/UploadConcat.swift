/// The `Upload-Concat` request header (concatenation extension), parsed but not resolved: turning the URLs into
/// upload ids needs the server's base path (`TusHandler.partialID(fromURL:)`).
enum UploadConcat: Equatable {
    case partial
    /// The partial uploads' URLs, as listed (absolute or relative; an URL may repeat).
    case final([Substring])

    /// `partial`, or `final;` followed by space-separated URLs (at least one). Spaces around the list are
    /// tolerated (rustus writes `final; /a /b`); anything else is nil (400).
    static func parse(_ value: String) -> UploadConcat? {
        let trimmed = String(value.trimmingOWS())
        if trimmed == "partial" { return .partial }
        guard trimmed.hasPrefix("final;") else { return nil }
        let urls = trimmed.dropFirst("final;".count).split(separator: " ", omittingEmptySubsequences: true)
        return urls.isEmpty ? nil : .final(urls)
    }
}
