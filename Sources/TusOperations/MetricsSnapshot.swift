import TusHTTP1
import TusProtocol

/// Every counter of one loop (or, after `add`, of all loops) at one moment.
public struct MetricsSnapshot: Sendable {
    /// Methods tusd labels requests with; anything else counts as "OTHER".
    static let methods = ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "OTHER"]

    /// The wire protocols of one upload service (`UploadProtocol.name`), so both can be compared on one server.
    static let protocols = ["tus", "ietf-draft"]

    var requests = [UInt64](repeating: 0, count: MetricsSnapshot.methods.count)
    var requestsByProtocol = [UInt64](repeating: 0, count: MetricsSnapshot.protocols.count)
    var uploadsCreatedByProtocol = [UInt64](repeating: 0, count: MetricsSnapshot.protocols.count)
    var uploadsFinishedByProtocol = [UInt64](repeating: 0, count: MetricsSnapshot.protocols.count)
    var durations = [Histogram](repeating: Histogram(), count: MetricsSnapshot.methods.count)
    /// Keyed by "status code" pairs.
    var errors: [ErrorKey: UInt64] = [:]
    /// Every adapter's errors, tus's included (with its codes): `tusd_errors_total` stays tus-only, as tusd's.
    var errorsByProtocol: [ProtocolErrorKey: UInt64] = [:]
    var bytesReceived: UInt64 = 0
    var uploadsCreated: UInt64 = 0
    var uploadsFinished: UInt64 = 0
    var uploadsTerminated: UInt64 = 0
    var hookInvocations: [String: UInt64] = [:]
    var hookErrors: [String: UInt64] = [:]
    var lockWait = Histogram()

    struct ErrorKey: Hashable, Sendable {
        var status: Int
        var code: String
    }

    struct ProtocolErrorKey: Hashable, Sendable {
        var `protocol`: String
        var status: Int
        var code: String
    }

    static func methodIndex(_ method: HTTPMethod) -> Int {
        methods.firstIndex(of: method.rawValue) ?? methods.count - 1
    }

    static func protocolIndex(_ uploadProtocol: UploadProtocol) -> Int {
        protocols.firstIndex(of: uploadProtocol.name) ?? 0
    }

    mutating func add(_ other: MetricsSnapshot) {
        for index in requestsByProtocol.indices {
            requestsByProtocol[index] += other.requestsByProtocol[index]
            uploadsCreatedByProtocol[index] += other.uploadsCreatedByProtocol[index]
            uploadsFinishedByProtocol[index] += other.uploadsFinishedByProtocol[index]
        }
        for index in requests.indices {
            requests[index] += other.requests[index]
            durations[index].add(other.durations[index])
        }
        errors.merge(other.errors, uniquingKeysWith: +)
        errorsByProtocol.merge(other.errorsByProtocol, uniquingKeysWith: +)
        bytesReceived += other.bytesReceived
        uploadsCreated += other.uploadsCreated
        uploadsFinished += other.uploadsFinished
        uploadsTerminated += other.uploadsTerminated
        hookInvocations.merge(other.hookInvocations, uniquingKeysWith: +)
        hookErrors.merge(other.hookErrors, uniquingKeysWith: +)
        lockWait.add(other.lockWait)
    }
}
