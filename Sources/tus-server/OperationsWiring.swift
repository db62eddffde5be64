import Synchronization
import TusHTTP1
import TusHTTPServer
import TusOperations
import TusProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The server, known only after the handler chain exists; metrics read its open-connection count at scrape
/// time.
final class LateServer: Sendable {
    private let server = Mutex<HTTPServer?>(nil)
    func set(_ value: HTTPServer) { server.withLock { $0 = value } }
    var openConnections: Int { server.withLock { $0?.openConnections ?? 0 } }
}

/// `/readyz`: the upload state answers (a lookup through the state store, which for `--redis` is a round
/// trip to Redis) and, for the file store, the upload directory takes a new file.
func readinessChecks(store: any UploadStore, uploadDirectory: String?) -> [ReadinessCheck] {
    var checks = [
        ReadinessCheck(name: "state") { executor, completion in
            store.lookup("readyz-probe", on: executor) { result in
                switch result {
                case .success: completion(nil)
                case .failure(let error): completion("\(error)")
                }
            }
        }
    ]
    if let uploadDirectory {
        checks.append(
            ReadinessCheck(name: "upload-dir") { executor, completion in
                let outcome = Mutex<String?>("not checked")
                // open/unlink may block on a sick disk: a worker thread waits, not the loop.
                executor.offload({
                    let path = uploadDirectory + "/.readyz-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
                    let fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0o600)
                    if fd < 0 {
                        let reason = String(cString: strerror(errno))
                        outcome.withLock { $0 = "cannot create a file: \(reason)" }
                        return
                    }
                    close(fd)
                    unlink(path)
                    outcome.withLock { $0 = nil }
                }, completion: { completion(outcome.withLock { $0 }) })
            })
    }
    return checks
}
