import TusCore
import TusLoop
import TusProtocol

/// Reads a finished upload's object with one streamed `GET` (`Range: bytes=<offset>-`), handing the bytes to
/// the download as it asks for them: the connection stops reading until the last piece was taken, so a slow
/// downloader holds at most one read chunk (64 KiB) here. A read elsewhere than where the stream stands starts a
/// new ranged GET.
final class S3UploadReader: UploadReader {
    private let store: S3DataStore
    private let key: String
    private let loop: EventLoop
    private var handle: S3RequestHandle?
    /// Upload offset of `buffered`'s first byte.
    private var position: Int64 = -1
    private var buffered: [UInt8] = []
    private var resume: (() -> Void)?
    private var ended: StoreError?? = nil
    private var waiting: (maxLength: Int, completion: (Result<BodyFragment, StoreError>) -> Void)?

    init(store: S3DataStore, key: String, loop: EventLoop) {
        self.store = store
        self.key = key
        self.loop = loop
    }

    func read(at offset: Int64, maxLength: Int, completion: @escaping (Result<BodyFragment, StoreError>) -> Void) {
        if offset != position || handle == nil && ended == nil {
            restart(at: offset)
        }
        waiting = (maxLength, completion)
        serve()
    }

    private func restart(at offset: Int64) {
        handle?.cancel()
        buffered = []
        resume = nil
        ended = nil
        position = offset
        let request = S3Request(method: .GET, key: key, headers: [("range", "bytes=\(offset)-")])
        var started: S3RequestHandle?
        started = store.client.send(
            request, on: loop,
            streamBody: { [weak self] bytes, resume in
                guard let self, self.handle === started else { return resume() }
                self.buffered += bytes
                self.resume = resume
                self.serve()
            }
        ) { [weak self] result in
            guard let self, self.handle === started else { return }
            switch result {
            case .success: self.ended = .some(nil)
            case .failure(let error): self.ended = .some(self.store.storeError(error, "GET \(self.key)"))
            }
            self.serve()
        }
        handle = started
    }

    private func serve() {
        guard let (maxLength, completion) = waiting else { return }
        if !buffered.isEmpty {
            waiting = nil
            let count = min(maxLength, buffered.count)
            let fragment = BodyFragment(copying: Array(buffered[0..<count]))
            buffered.removeFirst(count)
            position += Int64(count)
            if buffered.isEmpty, let resume {
                self.resume = nil
                resume()
            }
            return completion(.success(fragment))
        }
        guard let ended else { return }
        waiting = nil
        handle = nil
        completion(.failure(ended ?? .io("GET \(key): the object ended before the upload's offset")))
    }

    func close() {
        handle?.cancel()
        handle = nil
        waiting = nil
        resume = nil
    }
}
