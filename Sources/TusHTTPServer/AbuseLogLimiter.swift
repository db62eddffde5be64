/// What a line about a hostile or broken peer is about; each kind has its own budget in `AbuseLogLimiter`, so a
/// flood of one kind hides nothing of another.
enum AbuseLogKind: Hashable, CaseIterable, CustomStringConvertible {
    /// An HTTP/2 connection ended by our limits: floods, reset budget, header blocks, SETTINGS and idle deadlines.
    case http2LimitReached
    /// An HTTP/2 connection ended by nghttp2's own checks (protocol errors, its flood stops).
    case http2ProtocolError
    /// An HTTP/2 stream reset for a header block far over the limit.
    case http2HeaderBlockTooLarge
    /// A request body that stopped coming (HTTP/1.1 connection closed, HTTP/2 stream reset).
    case bodyStalled
    /// A request body under the minimum rate.
    case bodyTooSlow
    /// A response the peer does not read.
    case responseStalled

    var description: String {
        switch self {
        case .http2LimitReached: "HTTP/2 limit"
        case .http2ProtocolError: "HTTP/2 protocol error"
        case .http2HeaderBlockTooLarge: "HTTP/2 header block"
        case .bodyStalled: "body timeout"
        case .bodyTooSlow: "slow body"
        case .responseStalled: "response write timeout"
        }
    }
}

/// At most one line per kind per interval about hostile or broken peers; the rest are counted, and the count goes
/// out with the next line of that kind (or on its own once the interval passed with nothing to carry it). A flood
/// of hostile connections would otherwise write a line each: the log write is synchronous, and a log pipe nobody
/// drains (found by the HTTP/2 abuse tests: a full stderr pipe after ~490 lines) blocks the loop. One per loop,
/// confined to it; the clock is injected, so it is tested without sleeping.
struct AbuseLogLimiter {
    enum Verdict: Equatable {
        /// Write the line; `suppressed` lines of this kind were left out since the last one written.
        case log(suppressed: Int)
        case skip
    }

    private struct Budget {
        var lastLogged: UInt64
        var suppressed = 0
    }

    let intervalMilliseconds: UInt64
    private var budgets: [AbuseLogKind: Budget] = [:]

    init(intervalMilliseconds: UInt64 = 1_000) {
        self.intervalMilliseconds = intervalMilliseconds
    }

    mutating func admit(_ kind: AbuseLogKind, now: UInt64) -> Verdict {
        guard var budget = budgets[kind], now &- budget.lastLogged < intervalMilliseconds else {
            let suppressed = budgets[kind]?.suppressed ?? 0
            budgets[kind] = Budget(lastLogged: now)
            return .log(suppressed: suppressed)
        }
        budget.suppressed += 1
        budgets[kind] = budget
        return .skip
    }

    /// Kinds whose interval passed with lines left out and none written since: their counts, to be written as one
    /// line each (so a flood that stopped still shows how big it was). The budget restarts with that line.
    mutating func overdueCounts(now: UInt64) -> [(kind: AbuseLogKind, suppressed: Int)] {
        var overdue: [(kind: AbuseLogKind, suppressed: Int)] = []
        for kind in AbuseLogKind.allCases {
            guard let budget = budgets[kind], budget.suppressed > 0, now &- budget.lastLogged >= intervalMilliseconds
            else { continue }
            overdue.append((kind, budget.suppressed))
            budgets[kind] = Budget(lastLogged: now)
        }
        return overdue
    }
}
