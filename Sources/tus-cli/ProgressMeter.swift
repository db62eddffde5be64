import TusClient
import Glibc
import TusCore

/// A progress bar on a terminal (redrawn at most 10 times a second), plain lines (at most one a second)
/// otherwise. Called from the client's loop thread and the main thread; a mutex keeps lines whole.
final class ProgressMeter: @unchecked Sendable {
    private let isTerminal: Bool
    private let isQuiet: Bool
    private var mutex = pthread_mutex_t()
    private var startTime = MonotonicClock.seconds
    private var startOffset: Int64?
    private var lastDraw = 0.0
    private var lastProgress = UploadProgress(offset: 0, total: 0)
    private var hasDrawnBar = false

    init(isTerminal: Bool, isQuiet: Bool) {
        self.isTerminal = isTerminal
        self.isQuiet = isQuiet
        pthread_mutex_init(&mutex, nil)
    }

    func update(_ progress: UploadProgress) {
        guard !isQuiet else { return }
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if startOffset == nil {
            startOffset = progress.offset
            startTime = MonotonicClock.seconds
        }
        lastProgress = progress
        let now = MonotonicClock.seconds
        let interval = isTerminal ? 0.1 : 1.0
        guard now - lastDraw >= interval || progress.offset >= progress.total else { return }
        lastDraw = now
        draw(progress, now: now)
    }

    private func draw(_ progress: UploadProgress, now: Double) {
        let elapsed = max(now - startTime, 0.001)
        let rate = Double(progress.offset - (startOffset ?? 0)) / elapsed
        let fraction = progress.total > 0 ? Double(progress.offset) / Double(progress.total) : 1
        let eta = rate > 0 ? Double(progress.total - progress.offset) / rate : 0
        let text =
            "\(Self.bytes(progress.offset)) / \(Self.bytes(progress.total)) "
            + "\(Self.bytes(Int64(rate)))/s ETA \(Self.duration(eta))"
        if isTerminal {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
            writeStandardError("\r\u{1B}[K[\(bar)] \(Int(fraction * 100))% \(text)")
            hasDrawnBar = true
        } else {
            writeStandardError("progress: \(Int(fraction * 100))% \(text)\n")
        }
    }

    /// Makes room for a message line under a half-drawn bar.
    func clearLine() {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if hasDrawnBar {
            writeStandardError("\r\u{1B}[K")
            hasDrawnBar = false
        }
    }

    func finish() {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if hasDrawnBar { writeStandardError("\n") }
    }

    static func bytes(_ count: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : "\((value * 10).rounded() / 10) \(units[unit])"
    }

    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        if total >= 3600 { return "\(total / 3600)h\(total % 3600 / 60)m" }
        if total >= 60 { return "\(total / 60)m\(total % 60)s" }
        return "\(total)s"
    }
}
