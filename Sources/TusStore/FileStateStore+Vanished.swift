import TusCore
import TusLoop
import TusProtocol

/// Uploads whose files were deleted outside the server (an operator, a cleanup job that deletes processed uploads):
/// the in-memory index must let go of them, or HEAD and PATCH answer as if they still existed. Noticed two ways,
/// neither of which costs a request a `stat`: inotify reports the data file's removal at once (`watchRemovals`,
/// which is what makes HEAD, answered from memory, say 404), and opening the data file finds it missing (PATCH,
/// GET: `FileDataStore`'s `onVanished`), which also covers what inotify cannot see (a deletion by another machine
/// on a shared file system, a watcher that could not start).
extension FileStateStore {
    /// Starts watching the directory for removals (`RemovalWatcher`): the server does, tests that delete files by
    /// hand may. Without inotify (out of instances) only open-time detection remains, and a line is logged.
    public func watchRemovals() {
        let watcher = RemovalWatcher(
            directory: directory,
            onRemoved: { [weak self] name in
                // Only the data file: the record log's uploads have no `<id>.info`, and the server's own removals
                // unlink records while the upload is still indexed.
                guard UploadID.isValid(name), let cleanup = self?.forgetVanished(name) else { return }
                cleanup()
            },
            onOverflow: { [weak self] in self?.forgetUploadsWithoutData() })
        if watcher == nil {
            log("FileStateStore: cannot watch \(directory) (inotify); uploads deleted outside the server are noticed "
                + "at their next PATCH or GET")
        }
        // A second call replaces the watcher: the earlier one's thread holds it, so it must be told to stop, or its
        // thread and descriptors would outlive the store and each removal would be handled twice.
        let earlier = removalWatcher.withLock { current in
            defer { current = watcher }
            return current
        }
        earlier?.stop()
    }

    /// `FileDataStore` found `<id>` missing when it opened it, on `executor`'s loop.
    func dataFileVanished(_ id: String, on executor: any LoopExecutor) {
        guard let cleanup = forgetVanished(id) else { return }
        executor.eventLoop.runBlocking(cleanup, completion: { _ in })
    }

    /// Forgets `id` in memory at once: from now on it is an id never seen (404, not 410: the server neither
    /// terminated nor expired it). Returns the blocking cleanup to run off the loops: its record goes too, or a
    /// restart would bring the upload back empty. nil when the index no longer has it (the server's own removal
    /// deletes the data file after the index let go).
    func forgetVanished(_ id: String) -> (@Sendable () -> Void)? {
        let found: Int?? = state.withLock { state in
            guard state.index.uploads.removeValue(forKey: id) != nil else { return .none }
            state.repairs[id] = nil
            state.discardPending.remove(id)
            return .some(state.logged.removeValue(forKey: id))
        }
        guard case .some(let segment) = found else { return nil }
        log("FileStateStore: upload \(id) forgotten: its data file was deleted outside the server")
        let paths = [recordPath(id)] + (segment.flatMap { recordLog?.release($0) } ?? [])
        return {
            for path in paths { _ = BlockingFileSystem.unlink(path) }
        }
    }

    /// After an inotify queue overflow some removals went unreported: every indexed upload's data file is looked at
    /// once (on the watcher's thread).
    func forgetUploadsWithoutData() {
        let ids = state.withLock { Array($0.index.uploads.keys) }
        for id in ids {
            guard case .failure(let failure) = BlockingFileSystem.size(of: directory + "/" + id),
                failure.error == .notFound
            else { continue }
            forgetVanished(id)?()
        }
    }
}
