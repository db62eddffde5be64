import Glibc
import Synchronization
import TusLoop

/// Tells the file store when a name leaves its directory (deleted or moved away: inotify `IN_DELETE`,
/// `IN_MOVED_FROM`), so that an upload whose files an operator or a cleanup job deleted answers 404 at once, HEAD
/// included, without a `stat` per request: HEAD answers from memory, and nothing else would notice before the next
/// open of the data file (`FileStateStore.dataFileVanished`, which also covers what inotify cannot see, such as a
/// deletion by another machine on a shared file system).
///
/// A thread of its own blocked in `poll` on the inotify descriptor and a pipe that `stop` writes to (so an idle
/// server never wakes for it), not a loop handle: the events are rare (removals only; writes and creations are not watched), and what it does with them is a few blocking
/// unlinks, which belong off the loops anyway. The server's own removals come through too, after the index let go
/// of the upload, so they find nothing to forget.
final class RemovalWatcher: Sendable {
    private let descriptor: Int32
    /// A pipe `stop` writes a byte into to wake the thread; every descriptor closes in `deinit`, after the thread
    /// (which holds the watcher) ended, so `stop` never writes to a closed or reused descriptor.
    private let stopPipe: (read: Int32, write: Int32)
    private let isStopped = Atomic(false)

    /// nil when inotify is unavailable (out of instances or watches): open-time detection still works.
    init?(
        directory: String, onRemoved: @escaping @Sendable (String) -> Void,
        onOverflow: @escaping @Sendable () -> Void
    ) {
        let descriptor = inotify_init1(Int32(IN_CLOEXEC))
        guard descriptor >= 0 else { return nil }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            close(descriptor)
            return nil
        }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        self.descriptor = descriptor
        self.stopPipe = (ends[0], ends[1])
        guard inotify_add_watch(descriptor, directory, UInt32(IN_DELETE) | UInt32(IN_MOVED_FROM)) >= 0 else {
            return nil  // deinit closes
        }
        let body = Unmanaged.passRetained(ThreadBody { [self] in run(onRemoved: onRemoved, onOverflow: onOverflow) })
        var thread = pthread_t()
        let status = pthread_create(
            &thread, nil,
            { argument in
                Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue().run()
                return nil
            }, body.toOpaque())
        guard status == 0 else {
            body.release()  // the descriptors close in deinit
            return nil
        }
        pthread_detach(thread)
    }

    /// The thread wakes and ends at once.
    func stop() {
        isStopped.store(true, ordering: .releasing)
        var byte: UInt8 = 1
        _ = write(stopPipe.write, &byte, 1)
    }

    deinit {
        close(descriptor)
        close(stopPipe.read)
        close(stopPipe.write)
    }

    private func run(onRemoved: @Sendable (String) -> Void, onOverflow: @Sendable () -> Void) {
        // 4 KiB: about 60 events of an id-named file per read, and no more private memory than one page (64 KiB
        // showed in the one-upload RssAnon row).
        var buffer = [UInt8](repeating: 0, count: 4096)
        var watched = [
            pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0),
        ]
        while !isStopped.load(ordering: .acquiring) {
            guard poll(&watched, 2, -1) > 0, watched[0].revents != 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { continue }
            // `struct inotify_event`: wd, mask, cookie, len (4 bytes each), then `len` bytes of NUL-padded name.
            var position = 0
            while position + 16 <= count {
                let (mask, length) = buffer.withUnsafeBytes { bytes in
                    (bytes.loadUnaligned(fromByteOffset: position + 4, as: UInt32.self),
                     Int(bytes.loadUnaligned(fromByteOffset: position + 12, as: UInt32.self)))
                }
                let nameBytes = buffer[(position + 16)..<min(count, position + 16 + length)]
                position += 16 + length
                if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    onOverflow()
                } else if mask & UInt32(IN_IGNORED) != 0 {
                    return  // the directory itself went away
                } else {
                    onRemoved(String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self))
                }
            }
        }
    }
}

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
