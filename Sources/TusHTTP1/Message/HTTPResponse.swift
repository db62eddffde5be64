/// A response the handler hands to the connection. The connection adds framing headers (Content-Length,
/// Connection, Date) itself, so handlers cannot produce a mis-framed response.
public struct HTTPResponse: Sendable {
    public var status: HTTPStatus
    public var headers: HTTPHeaders
    /// Small, fully known bodies only (error text). Large bodies go through `HTTPResponder.respond(_:streaming:)`.
    public var body: [UInt8]
    /// Close the connection after sending, e.g. when a rejected request body will not be drained.
    public var closeConnection: Bool

    public init(status: HTTPStatus, headers: HTTPHeaders = [:], body: [UInt8] = [], closeConnection: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.closeConnection = closeConnection
    }

    public init(status: HTTPStatus, headers: HTTPHeaders = [:], text: String, closeConnection: Bool = false) {
        var headers = headers
        if !headers.contains("Content-Type") { headers.add("Content-Type", "text/plain; charset=utf-8") }
        self.init(status: status, headers: headers, body: Array((text + "\n").utf8), closeConnection: closeConnection)
    }
}
