public import TusCore
import TusHTTP1

/// One thing `/readyz` checks: a store the server cannot work without. `check` runs on the scraping
/// request's loop and must complete exactly once there, with nil (fine) or what is wrong.
public struct ReadinessCheck: Sendable {
    public let name: String
    public let check: @Sendable (_ executor: any LoopExecutor, _ completion: @escaping (String?) -> Void) -> Void

    public init(
        name: String,
        check: @escaping @Sendable (_ executor: any LoopExecutor, _ completion: @escaping (String?) -> Void) -> Void
    ) {
        self.name = name
        self.check = check
    }
}

/// Runs every check at once and reports when all answered, or when the timeout decides for the slow ones
/// (a paused Redis never answers: "not ready" must not wait for it).
final class ReadinessProbe {
    private var results: [String?]
    private var pending: Int
    private var isFinished = false
    private let names: [String]
    private let completion: (_ ready: Bool, _ report: String) -> Void

    init(checks: [ReadinessCheck], completion: @escaping (_ ready: Bool, _ report: String) -> Void) {
        results = Array(repeating: "timed out", count: checks.count)
        pending = checks.count
        names = checks.map(\.name)
        self.completion = completion
    }

    func run(_ checks: [ReadinessCheck], on executor: any LoopExecutor, timeoutMilliseconds: UInt64) {
        for (index, check) in checks.enumerated() {
            check.check(executor) { [self] problem in
                guard !isFinished else { return }
                results[index] = problem
                pending -= 1
                if pending == 0 { finish() }
            }
        }
        if pending == 0 { return finish() }
        _ = executor.schedule(afterMilliseconds: timeoutMilliseconds) { [self] in finish() }
    }

    private func finish() {
        guard !isFinished else { return }
        isFinished = true
        let ready = results.allSatisfy { $0 == nil }
        let report = zip(names, results).map { "\($0): \($1 ?? "ok")" }.joined(separator: "\n")
        completion(ready, report)
    }
}
