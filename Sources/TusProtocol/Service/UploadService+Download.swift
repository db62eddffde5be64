import TusCore
public import TusHTTP1

extension UploadService {
    /// The upload whose stored bytes (`0..<offset`) a download serves. An unfinished upload serves what is
    /// committed so far; a final is assembled first if it can be, and an unfinished final has no bytes yet.
    public func download(
        _ id: String, for caller: UploadCaller, completion: @escaping (Result<UploadInfo, UploadServiceError>) -> Void
    ) {
        guard capabilities.contains(.download) else { return completion(.failure(.notOffered(.download))) }
        access(id, for: caller) { [self] accessed in
            guard case .success(let info) = accessed, info.isFinal, !info.isComplete else {
                return completion(accessed)
            }
            resolveFinal(info, for: caller) { resolved in
                completion(
                    resolved.map { state in
                        switch state {
                        case .complete(let complete, _): complete
                        case .unfinished: info
                        }
                    })
            }
        }
    }

    /// `count` stored bytes of upload `id` from `first`, as a body the transport pulls piece by piece.
    public func read(
        _ id: String, first: Int64, count: Int64, for caller: UploadCaller,
        completion: @escaping (Result<any HTTPBodySource, UploadServiceError>) -> Void
    ) {
        store.openReader(id: id, on: caller.executor) { result in
            switch result {
            case .failure(let error): completion(.failure(UploadServiceError(error)))
            case .success(let reader): completion(.success(UploadDownload(reader: reader, start: first, count: count)))
            }
        }
    }
}

/// Feeds a download from an `UploadReader`, one piece per request from the connection.
final class UploadDownload: HTTPBodySource {
    private let reader: any UploadReader
    private var position: Int64
    private let end: Int64
    private var isClosed = false

    init(reader: any UploadReader, start: Int64, count: Int64) {
        self.reader = reader
        self.position = start
        self.end = start + count
    }

    struct ShortRead: Error {}

    func next(maxLength: Int, completion: @escaping (Result<BodyFragment?, any Error>) -> Void) {
        guard position < end else {
            close()
            return completion(.success(nil))
        }
        let wanted = Int(min(Int64(maxLength), end - position))
        reader.read(at: position, maxLength: wanted) { [self] result in
            switch result {
            case .failure(let error):
                close()
                completion(.failure(error))
            case .success(let fragment):
                guard fragment.count > 0 else {
                    close()
                    return completion(.failure(ShortRead()))
                }
                let fragment =
                    fragment.count > wanted
                    ? BodyFragment(chunk: fragment.chunk, range: fragment.range.lowerBound..<(fragment.range.lowerBound + wanted))
                    : fragment
                position += Int64(fragment.count)
                completion(.success(fragment))
            }
        }
    }

    func cancel() { close() }

    private func close() {
        guard !isClosed else { return }
        isClosed = true
        reader.close()
    }
}
