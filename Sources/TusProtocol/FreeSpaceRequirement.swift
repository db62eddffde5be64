import TusCore
import TusHTTP1

/// Free and total bytes of the file system that holds the uploads.
public struct DiskSpace: Sendable, Equatable {
    public var available: Int64
    public var total: Int64

    public init(available: Int64, total: Int64) {
        self.available = available
        self.total = total
    }
}

/// `--min-free-space`: how much room must be left before a new upload is accepted. A full disk fails uploads
/// half-way (ENOSPC), after clients have spent their bandwidth; refusing new ones earlier leaves the rest for the
/// uploads already running.
public enum FreeSpaceRequirement: Sendable, Equatable {
    case bytes(Int64)
    /// Percent of the file system's size, 0...100.
    case percent(Double)

    /// "0" (nil: no check), "500M", "10G", "1048576", "5%". Sizes as every size flag takes them (`ByteCount`).
    public init?(parsing text: String) {
        let trimmed = text.trimmingOWS()
        if trimmed.hasSuffix("%") {
            guard let value = Double(trimmed.dropLast()), value >= 0, value <= 100 else { return nil }
            self = .percent(value)
            return
        }
        guard let size = try? ByteCount(parsing: text) else { return nil }
        self = .bytes(size.bytes)
    }

    public func isMet(by space: DiskSpace) -> Bool {
        switch self {
        case .bytes(let minimum): space.available >= minimum
        case .percent(let minimum): Double(space.available) >= Double(space.total) * minimum / 100
        }
    }
}
