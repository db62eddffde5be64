import Glibc
public import TusHTTP1
public import TusLoop

/// What the file state and data stores share about their directory.
enum FileDirectory {
    /// fsync of the directory: what makes a rename, creation or unlink inside it durable. A no-op under `.none`.
    /// Open, fsync and close run as one threadpool job (`BlockingFileSystem`), not three `uv_fs` requests.
    static func sync(
        _ directory: String, policy: FsyncPolicy, loop: EventLoop, completion: @escaping (UVError?) -> Void
    ) {
        guard policy.syncsAtCommit else { return completion(nil) }
        loop.runBlocking({ BlockingFileSystem.syncDirectory(directory)?.error }, completion: completion)
    }
}

extension LoopExecutor {
    /// The loop a store issues its libuv requests on: the caller's, named by the executor it passed.
    public var eventLoop: EventLoop {
        guard let bound = self as? any EventLoopBound else {
            preconditionFailure("file stores need an executor backed by a TusLoop EventLoop, got \(type(of: self))")
        }
        return bound.eventLoop
    }
}

extension FileDirectory {
    /// Creates the directory (and its parents) if needed; synchronous, for start-up.
    static func ensureExists(_ directory: String) -> Bool {
        var path = directory.hasPrefix("/") ? "" : "."
        for component in directory.split(separator: "/", omittingEmptySubsequences: true) {
            path += "/" + component
            if mkdir(path, 0o755) != 0 && errno != EEXIST { return false }
        }
        var status = stat()
        return stat(directory, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }
}

extension UVError {
    /// ENOSPC, or EDQUOT (a quota; libuv 1.44 has no name for it, and Linux numbers it 122).
    var isOutOfSpace: Bool { self == .noSpaceLeft || code == -122 }
}
