import TusHTTP1

/// Builds `Location` for a new upload.
///
/// Host and scheme come from the request (`Host`, TLS), or, only when the operator says a proxy sits in
/// front, from `X-Forwarded-Host`/`X-Forwarded-Proto` and `Forwarded` (which wins, as in tusd
/// `getHostAndProtocol`). Host values are checked against a conservative character set, because they
/// end up in a response header: a hostile value must not be able to inject anything.
enum UploadLocation {
    static func make(id: String, head: RequestHead, isSecure: Bool, configuration: TusConfiguration) -> String {
        if configuration.relativeLocation { return configuration.basePath + id }
        var host = head.headers["Host"]
        var scheme = isSecure ? "https" : "http"
        if configuration.behindProxy {
            if let forwardedHost = head.headers["X-Forwarded-Host"] {
                host = String((forwardedHost.split(separator: ",").first ?? "").trimmingOWS())
            }
            if let proto = head.headers["X-Forwarded-Proto"] { scheme = proto.trimmingOWS().lowercased() }
            if let forwarded = head.headers["Forwarded"] {
                // Only the first (client-most) element: `for=..;host=..;proto=..`.
                let element = forwarded.split(separator: ",").first ?? ""
                for pair in element.split(separator: ";") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    let name = parts[0].trimmingOWS().lowercased()
                    var value = String(parts[1].trimmingOWS())
                    if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                        value = String(value.dropFirst().dropLast())
                    }
                    if name == "host" { host = value }
                    if name == "proto" { scheme = value.lowercased() }
                }
            }
        }
        if scheme != "http" && scheme != "https" { scheme = isSecure ? "https" : "http" }
        guard let host, isSafeHost(host) else { return configuration.basePath + id }
        // One allocation (an interpolation grows its string piece by piece): this runs for every creation.
        var location = ""
        let base = configuration.basePath
        location.reserveCapacity(scheme.utf8.count + 3 + host.utf8.count + base.utf8.count + id.utf8.count)
        location += scheme
        location += "://"
        location += host
        location += base
        location += id
        return location
    }

    static func isSafeHost(_ host: String) -> Bool {
        !host.isEmpty && host.utf8.count <= 255
            && host.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: ":"),
                    UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "_"):
                    true
                default: false
                }
            }
    }
}
