/// Why a request could not be parsed, as the status to answer with and a text for the response body.
/// The connection answers it and closes: after a framing error the byte stream can no longer be trusted.
public struct HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: HTTPStatus
    public var message: String

    public init(status: HTTPStatus, message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "\(status.code) \(message)" }

    static func badRequest(_ message: String) -> HTTPParseError {
        HTTPParseError(status: .badRequest, message: message)
    }
    static func tooLarge(_ message: String) -> HTTPParseError {
        HTTPParseError(status: .requestHeaderFieldsTooLarge, message: message)
    }
}
