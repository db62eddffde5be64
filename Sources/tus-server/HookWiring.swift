import Logging
import TusClient
import TusCore
import TusHTTP1
import TusHooks
import TusOperations
import TusProtocol

/// Builds the hook dispatcher from the tusd-named flags; nil when no hook transport is configured.
struct HookWiring {
    let dispatcher: HookDispatcher
    let httpTransport: HTTPHookTransport?

    init?(command: TusServerCommand, metrics: MetricsRegistry?, logger: Logger) throws {
        let timeoutMilliseconds = UInt64(max(0.1, command.hooksTimeout) * 1000)
        let transport: any HookTransport
        var httpTransport: HTTPHookTransport?
        switch (command.hooksHTTP, command.hooksDir) {
        case (nil, nil): return nil
        case (let url?, _):
            let endpoint = try TusURL(string: url)
            let made = try HTTPHookTransport(
                endpoint: endpoint, retries: max(0, command.hooksHTTPRetry),
                backoffMilliseconds: try parseDuration(command.hooksHTTPBackoff), timeoutMilliseconds: timeoutMilliseconds)
            httpTransport = made
            transport = made
        case (nil, let directory?):
            transport = ExecHookTransport(directory: directory, timeoutMilliseconds: Int(timeoutMilliseconds))
        }
        var configuration = HookConfiguration()
        configuration.enabledEvents = Set(
            command.hooksEnabledEvents.split(separator: ",").map { $0.trimmingCharacters(in: " ") }.filter { !$0.isEmpty })
        configuration.forwardHeaders = command.hooksHTTPForwardHeaders.split(separator: ",")
            .map { $0.trimmingCharacters(in: " ") }.filter { !$0.isEmpty }
        configuration.accessCacheMilliseconds = UInt64(max(0, command.preAccessCache) * 1000)
        if command.store == .file {
            let directory = command.uploadDir
            configuration.storage = { id in
                ["Type": "filestore", "Path": directory + "/" + id, "InfoPath": directory + "/" + id + ".info"]
            }
        } else {
            configuration.storage = { _ in ["Type": "memorystore"] }
        }
        let hookLogger = Logger(label: "hooks")
        dispatcher = HookDispatcher(
            configuration: configuration, transport: transport, log: { hookLogger.warning("\($0)") },
            completed: { type, failed, executor in metrics?.recordHook(type, failed: failed, on: executor) })
        self.httpTransport = httpTransport
        logger.info(
            "hooks",
            metadata: [
                "transport": "\(command.hooksHTTP ?? command.hooksDir ?? "")",
                "events": "\(configuration.enabledEvents.sorted().joined(separator: ","))",
            ])
    }
}

/// "1s", "500ms", "2.5s" or bare seconds (TusCore's `Duration(parsing:)`; tusd takes Go durations).
func parseDuration(_ text: String) throws -> UInt64 {
    do { return try Duration(parsing: text).wholeMilliseconds } catch { throw HookFlagError("--hooks-http-backoff: \(error)") }
}

struct HookFlagError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension StringProtocol {
    func trimmingCharacters(in character: Character) -> String {
        var text = Substring(self)
        while text.first == character { text.removeFirst() }
        while text.last == character { text.removeLast() }
        return String(text)
    }
}
