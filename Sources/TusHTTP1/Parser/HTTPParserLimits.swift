/// Hard bounds on what one request may make the parser hold or scan. Each limit caps memory per connection,
/// so a hostile client cannot grow it by sending huge heads, endless header lists or long chunk lines.
public struct HTTPParserLimits: Sendable {
    /// Request line + header fields + the final CRLF.
    public var maxHeadBytes: Int
    public var maxHeaderCount: Int
    /// A chunk-size line including its extensions (which are ignored, so there is no reason to allow many).
    public var maxChunkLineBytes: Int
    /// Trailer section of a chunked body, including its final CRLF; it is buffered, unlike body data.
    public var maxTrailerBytes: Int

    public init(
        maxHeadBytes: Int = 16 * 1024, maxHeaderCount: Int = 100, maxChunkLineBytes: Int = 4096,
        maxTrailerBytes: Int = 16 * 1024
    ) {
        self.maxHeadBytes = maxHeadBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxChunkLineBytes = maxChunkLineBytes
        self.maxTrailerBytes = maxTrailerBytes
    }
}
