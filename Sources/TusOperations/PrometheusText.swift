/// The Prometheus text exposition format, version 0.0.4.
public enum PrometheusText {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Hook types always present (at zero) so dashboards see every series from the start, as tusd does.
    static let hookTypes = ["pre-create", "post-create", "post-receive", "pre-finish", "post-finish", "pre-terminate",
        "post-terminate", "pre-access"]

    /// Renders `snapshot` plus gauges read at scrape time. Names follow tusd where the meaning is the same.
    static func render(_ snapshot: MetricsSnapshot, connectionsOpen: Int) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: [(String, String)] = [], _ value: String) {
            out += name
            if !labels.isEmpty {
                out += "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
            }
            out += " \(value)\n"
        }
        func histogram(_ name: String, _ histogram: Histogram, labels: [(String, String)]) {
            for (bound, count) in histogram.cumulative {
                sample(name + "_bucket", labels + [("le", bound)], String(count))
            }
            sample(name + "_sum", labels, number(histogram.sum))
            sample(name + "_count", labels, String(histogram.count))
        }

        family("tusd_requests_total", "counter", "Total number of requests served by tusd per method.")
        for (index, method) in MetricsSnapshot.methods.enumerated() {
            sample("tusd_requests_total", [("method", method)], String(snapshot.requests[index]))
        }
        family("tusd_errors_total", "counter", "Total number of errors per status.")
        for (key, count) in snapshot.errors.sorted(by: { ($0.key.status, $0.key.code) < ($1.key.status, $1.key.code) }) {
            sample("tusd_errors_total", [("status", String(key.status)), ("code", key.code)], String(count))
        }
        family("tus_errors_by_protocol_total", "counter", "Errors per wire protocol, status and that protocol's code.")
        let byProtocol = snapshot.errorsByProtocol.sorted {
            ($0.key.protocol, $0.key.status, $0.key.code) < ($1.key.protocol, $1.key.status, $1.key.code)
        }
        for (key, count) in byProtocol {
            sample(
                "tus_errors_by_protocol_total",
                [("protocol", key.protocol), ("status", String(key.status)), ("code", key.code)], String(count))
        }
        family("tusd_bytes_received", "counter", "Number of bytes received for uploads.")
        sample("tusd_bytes_received", [], String(snapshot.bytesReceived))
        family("tusd_uploads_created", "counter", "Number of created uploads.")
        sample("tusd_uploads_created", [], String(snapshot.uploadsCreated))
        family("tusd_uploads_finished", "counter", "Number of finished uploads.")
        sample("tusd_uploads_finished", [], String(snapshot.uploadsFinished))
        family("tusd_uploads_terminated", "counter", "Number of terminated uploads.")
        sample("tusd_uploads_terminated", [], String(snapshot.uploadsTerminated))
        family("tusd_connections_open", "gauge", "Current number of open connections.")
        sample("tusd_connections_open", [], String(connectionsOpen))
        family("tusd_hook_invocations_total", "counter", "Total number of invocations per hook type.")
        for type in hookTypes {
            sample("tusd_hook_invocations_total", [("hooktype", type)], String(snapshot.hookInvocations[type] ?? 0))
        }
        family("tusd_hook_errors_total", "counter", "Total number of execution errors per hook type.")
        for type in hookTypes {
            sample("tusd_hook_errors_total", [("hooktype", type)], String(snapshot.hookErrors[type] ?? 0))
        }
        family(
            "tus_request_duration_seconds", "histogram",
            "Time from a request's head to its response head, per method (a PATCH includes its body).")
        for (index, method) in MetricsSnapshot.methods.enumerated() {
            histogram("tus_request_duration_seconds", snapshot.durations[index], labels: [("method", method)])
        }
        family("tus_requests_by_protocol_total", "counter", "Requests per wire protocol (tus, ietf-draft).")
        for (index, name) in MetricsSnapshot.protocols.enumerated() {
            sample("tus_requests_by_protocol_total", [("protocol", name)], String(snapshot.requestsByProtocol[index]))
        }
        family("tus_uploads_created_by_protocol_total", "counter", "Uploads created per wire protocol.")
        for (index, name) in MetricsSnapshot.protocols.enumerated() {
            sample(
                "tus_uploads_created_by_protocol_total", [("protocol", name)],
                String(snapshot.uploadsCreatedByProtocol[index]))
        }
        family("tus_uploads_finished_by_protocol_total", "counter", "Uploads finished per wire protocol.")
        for (index, name) in MetricsSnapshot.protocols.enumerated() {
            sample(
                "tus_uploads_finished_by_protocol_total", [("protocol", name)],
                String(snapshot.uploadsFinishedByProtocol[index]))
        }
        family("tus_lock_wait_seconds", "histogram", "Time requests waited for an upload's lock.")
        histogram("tus_lock_wait_seconds", snapshot.lockWait, labels: [])
        return out
    }

    /// Label values escape backslash, double quote and line feed.
    static func escape(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }

    /// Go-style float text ("0.0001", "2.5", "60"), which both Prometheus and its Python parser read.
    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

extension PrometheusText {
    /// `escape`, for tests.
    public static func escapeForTesting(_ value: String) -> String { escape(value) }
}
