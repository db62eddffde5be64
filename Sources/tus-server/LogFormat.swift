import ArgumentParser
import FoundationEssentials
import Logging

#if canImport(Glibc)
import Glibc
#endif

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// One line per event on stderr, as text or as JSON objects (for log shippers).
///
/// Written with FoundationEssentials and `write(2)` only: full Foundation would pull ICU into the process,
/// several MiB of resident memory for a server that never formats a localized string.
struct StderrLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let timestamp = Date.now.formatted(.iso8601)
        let fields = metadata.merging(event.metadata ?? [:]) { $1 }.sorted { $0.key < $1.key }
        var line: String
        switch format {
        case .text:
            line = "\(timestamp) \(event.level) \(label): \(event.message)"
            if !fields.isEmpty { line += " " + fields.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
        case .json:
            var pairs = [
                ("time", timestamp), ("level", event.level.rawValue), ("logger", label), ("message", "\(event.message)"),
            ]
            pairs += fields.map { ($0.key, "\($0.value)") }
            line = "{" + pairs.map { jsonString($0.0) + ":" + jsonString($0.1) }.joined(separator: ",") + "}"
        }
        line += "\n"
        var bytes = Array(line.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            written += n
        }
        bytes.removeAll()
    }
}

/// A JSON string literal (RFC 8259 escaping).
func jsonString(_ value: String) -> String {
    var out = "\""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
