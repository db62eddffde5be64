import Glibc

/// A private single-node Ceph RADOS Gateway (S3 API) for one test class: `scripts/ceph-rgw.sh` starts a mon, a
/// memstore OSD and radosgw under a directory of its own, on free ports; `stop()` stops them by the PIDs it recorded
/// (never by name: other tests and developers run their own). Its OSD keeps every byte in RAM until it stops, so
/// call `stop()` when the tests end.
public final class CephRGWProcess {
    public let directory: String
    public private(set) var endpoint = ""
    public private(set) var accessKeyID = ""
    public private(set) var secretAccessKey = ""
    private var isRunning = false

    public enum StartError: Error, CustomStringConvertible {
        case notInstalled
        case failed(Int32)

        public var description: String {
            switch self {
            case .notInstalled: "radosgw is not installed (scripts/bootstrap.sh installs it)"
            case .failed(let status): "scripts/ceph-rgw.sh start failed (exit status \(status))"
            }
        }
    }

    /// Starts the gateway (a few seconds); `memstoreBytes` caps what the OSD holds.
    public init(memstoreBytes: Int64 = 1 << 30) throws {
        guard access("/usr/bin/radosgw", X_OK) == 0 else { throw StartError.notInstalled }
        var template = Array("/tmp/tus-rgw-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw StartError.failed(errno) }
        directory = String(cString: created)
        let status = Self.script(["start", directory], environment: ["CEPH_MEMSTORE_BYTES=\(memstoreBytes)"])
        isRunning = true
        guard status == 0, let values = Self.readEnvironment(directory + "/env"), let endpoint = values["RGW_ENDPOINT"],
            let key = values["AWS_ACCESS_KEY_ID"], let secret = values["AWS_SECRET_ACCESS_KEY"]
        else {
            stop()
            throw StartError.failed(status)
        }
        self.endpoint = endpoint
        accessKeyID = key
        secretAccessKey = secret
    }

    deinit {
        stop()
    }

    /// radosgw, then the OSD, then the mon (the script's order); removes the directory. Idempotent.
    public func stop() {
        guard isRunning else { return }
        isRunning = false
        _ = Self.script(["stop", directory], environment: [])
        _ = system("rm -rf '\(directory)'")
    }

    /// The repository's `scripts/ceph-rgw.sh`, found from this file's path.
    static var scriptPath: String {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
        return path + "/scripts/ceph-rgw.sh"
    }

    /// Runs the script bounded by `timeout` (its ceph calls are bounded too); output to the directory's log.
    private static func script(_ arguments: [String], environment: [String]) -> Int32 {
        let log = (arguments.last ?? "/tmp") + "/script.log"
        let command = ["/usr/bin/timeout", "180", "/bin/bash", scriptPath] + arguments
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fileActions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
        var cArguments = command.map { strdup($0) }
        cArguments.append(nil)
        defer { cArguments.forEach { free($0) } }
        var index = 0
        var inherited: [String] = []
        while let entry = environ[index] {
            inherited.append(String(cString: entry))
            index += 1
        }
        var cEnvironment = (inherited + environment).map { strdup($0) }
        cEnvironment.append(nil)
        defer { cEnvironment.forEach { free($0) } }
        var child: pid_t = 0
        guard posix_spawn(&child, command[0], &fileActions, nil, cArguments, cEnvironment) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(child, &status, 0) == -1 && errno == EINTR {}
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
    }

    private static func readEnvironment(_ path: String) -> [String: String]? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var values: [String: String] = [:]
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line).trimmingSuffix("\n")
            guard let equals = text.firstIndex(of: "=") else { continue }
            values[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        free(line)
        return values
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
