import Glibc
import Synchronization
import TusLoop

/// New uploads' records as lines appended to `records.<n>.log` (`--records log`), so that a creation allocates one
/// inode (its data file) instead of two.
///
/// Why: creating a file is the largest cost of a creation, and on ext4 after deletions (production deletes
/// processed uploads) it is most of it: without a journal, every inode allocation skips the inodes deleted in the
/// last minutes one by one (`recently_deleted`), about a millisecond each (bench/results/2026-12-07-creation). An
/// append to a file that is already open allocates nothing and takes no directory lock.
///
/// Format: each entry is a newline and one JSON object: a creation's `UploadRecord` (`encodedJSON`), or a removal
/// `{"removed":"<id>"}`. The leading newline ends whatever a failed earlier append left half-written, so a torn
/// entry spoils only itself (recovery skips lines that do not parse). Later entries win, segments in number order;
/// an `<id>.info` (every change after creation is still written there, `persist`) wins over the log.
///
/// Segments: appends go to the highest-numbered one until it holds `segmentLimit` bytes, then to the next. Each
/// segment counts its *live* entries: creation records not yet superseded by an `<id>.info` or a removal. The
/// oldest segments are deleted once they have none; only a prefix ever goes, so a removal entry is never
/// deleted before the creation entry it cancels. A segment pinned by a long-lived upload is compacted at the next
/// start (recovery rewrites the live records as one new segment).
///
/// Threading: appends come from threadpool jobs of every loop; one mutex orders them (a write of a few hundred
/// bytes to the page cache). Syncs (`--fsync commit`) run outside it, grouped per segment like directory fsyncs.
final class RecordLog: Sendable {
    /// 16 MiB: about 60,000 creations per segment.
    static let defaultSegmentLimit: Int64 = 16 << 20

    let directory: String
    let segmentLimit: Int64
    private let state: Mutex<LogState>

    struct LogState {
        /// The segment appends go to; opened at the first append.
        var current: Int
        var descriptor: Int32 = -1
        var size: Int64 = 0
        /// Every segment on disk (oldest to `current`) -> creation entries in it that are still the upload's
        /// record.
        var live: [Int: Int]
        var syncGroups: [Int: DirectorySyncGroup] = [:]
    }

    /// - Parameters:
    ///   - current: the segment to append to (the next number, or recovery's compacted segment).
    ///   - live: the segments on disk and their live entries; pinned (never deleted) when unknown.
    init(directory: String, current: Int, live: [Int: Int], segmentLimit: Int64 = RecordLog.defaultSegmentLimit) {
        self.directory = directory
        self.segmentLimit = segmentLimit
        var live = live
        if live[current] == nil { live[current] = 0 }
        state = Mutex(LogState(current: current, live: live))
    }

    deinit {
        state.withLock { state in
            if state.descriptor >= 0 { close(state.descriptor) }
        }
    }

    static func segmentName(_ number: Int) -> String { "records.\(number).log" }

    /// The segment number of a file name, if it is a segment.
    static func segmentNumber(ofName name: String) -> Int? {
        guard name.hasPrefix("records."), name.hasSuffix(".log") else { return nil }
        return Int(name.dropFirst("records.".count).dropLast(".log".count))
    }

    func segmentPath(_ number: Int) -> String { directory + "/" + Self.segmentName(number) }

    static func removalEntry(_ id: String) -> [UInt8] {
        Array(#"{"removed":""#.utf8) + Array(id.utf8) + Array("\"}\n".utf8)
    }

    /// Appends `entry` (one JSON line) and returns the segment it went to. `counted`: a creation record, live until
    /// `release`d. Blocking: call it inside a threadpool job.
    func append(_ entry: [UInt8], counted: Bool) -> Result<Int, BlockingFileSystem.Failure> {
        append([entry], counted: counted)
    }

    /// `entries` in one write (a batch of creations, `FileStateStore+Create`), all in one segment.
    func append(_ entries: [[UInt8]], counted: Bool) -> Result<Int, BlockingFileSystem.Failure> {
        var line = [UInt8]()
        line.reserveCapacity(entries.reduce(0) { $0 + $1.count + 1 })
        for entry in entries {
            line.append(UInt8(ascii: "\n"))
            line.append(contentsOf: entry)
        }
        return state.withLock { state in
            if state.descriptor >= 0 && state.size >= segmentLimit {
                close(state.descriptor)
                state.descriptor = -1
                state.current += 1
                state.size = 0
                state.live[state.current] = 0
            }
            let path = segmentPath(state.current)
            if state.descriptor < 0 {
                switch BlockingFileSystem.openForAppending(path) {
                case .failure(let failure): return .failure(failure)
                case .success(let descriptor): state.descriptor = descriptor
                }
            }
            // Counted even when it fails: whatever part landed stays in the file until the segment goes.
            state.size += Int64(line.count)
            if let failure = BlockingFileSystem.append(line, to: state.descriptor, path: path) {
                return .failure(failure)
            }
            if counted { state.live[state.current, default: 0] += entries.count }
            return .success(state.current)
        }
    }

    /// fdatasync of `segment`, shared with the other callers waiting for one (`DirectorySyncGroup`). A segment
    /// deleted meanwhile held nothing live any more. Blocking: call it inside a threadpool job.
    func sync(_ segment: Int) -> BlockingFileSystem.Failure? {
        let group = state.withLock { state in
            if let group = state.syncGroups[segment] { return group }
            let group = DirectorySyncGroup(path: segmentPath(segment)) { path in
                guard let failure = BlockingFileSystem.syncFile(path), failure.error != .notFound else { return nil }
                return failure
            }
            state.syncGroups[segment] = group
            return group
        }
        return group.sync()
    }

    /// One creation entry of `segment` is no longer its upload's record. Returns the paths of the segments that
    /// can now be deleted (the oldest ones with nothing live, never the current one).
    func release(_ segment: Int) -> [String] {
        state.withLock { state in
            if let count = state.live[segment], count > 0 { state.live[segment] = count - 1 }
            var dead: [String] = []
            while let oldest = state.live.keys.min(), oldest < state.current, state.live[oldest] == 0 {
                state.live[oldest] = nil
                state.syncGroups[oldest] = nil
                dead.append(segmentPath(oldest))
            }
            return dead
        }
    }

    /// `release`, and the dead segments deleted at once. Blocking: call it inside a threadpool job.
    func releaseDeletingDead(_ segment: Int) {
        for path in release(segment) { _ = BlockingFileSystem.unlink(path) }
    }

    /// Live entries per segment (tests, diagnostics).
    var liveEntries: [Int: Int] { state.withLock { $0.live } }
    var currentSegment: Int { state.withLock { $0.current } }
}
