import TusCore
import TusCrypto
import TusHTTP1

/// What a request's representation check found, for its answer: filled by the check before finish events run.
final class RepresentationCheck {
    /// The stored representation does not match `Repr-Digest` (row G1): the answer is the draft's, not tus's.
    var mismatched = false
    /// `Repr-Digest` to send (row G3), computed over the whole stored representation.
    var answerDigest: String?
}

extension DraftUploadHandler {
    /// `Repr-Digest` and `Want-Repr-Digest` of a request (v6..v8, section 9): the digest to verify, and the algorithm
    /// the client wants the representation's digest in. Unsupported algorithms are ignored (row G4); a supported
    /// member that is not a digest of its length is malformed.
    func representationFields(
        _ request: DraftRequest
    ) -> Result<(expected: UploadChecksum?, wanted: DigestAlgorithm?), DraftFieldError> {
        guard request.version.verifiesContentDigest else { return .success((nil, nil)) }
        var expected: UploadChecksum?
        if let text = request.head.headers["Repr-Digest"] {
            switch StructuredField.digest(text[...]) {
            case nil: break
            case .success(let parsed): expected = parsed
            case .failure: return .failure(DraftFieldError("Repr-Digest is malformed"))
            }
        }
        let wanted = request.head.headers["Want-Repr-Digest"].flatMap { Self.preferredAlgorithm($0[...]) }
        return .success((expected, wanted))
    }

    /// The supported algorithm a `Want-Repr-Digest` dictionary (`sha-512=3, sha-256=10`, RFC 9530 §4) prefers most;
    /// preference 0 means "not acceptable". nil when it names none we hash.
    static func preferredAlgorithm(_ text: Substring) -> DigestAlgorithm? {
        var best: (algorithm: DigestAlgorithm, preference: Int64)?
        for member in text.split(separator: ",") {
            let parts = member.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let algorithm = Self.digestAlgorithm(named: parts[0].trimmingOWS()),
                let preference = StructuredField.integer(parts[1]), preference > 0
            else { continue }
            if best == nil || preference > best!.preference { best = (algorithm, preference) }
        }
        return best?.algorithm
    }

    static func digestAlgorithm(named name: Substring) -> DigestAlgorithm? {
        switch name.lowercased() {
        case "sha-256": .sha256
        case "sha-512": .sha512
        default: nil
        }
    }

    static func fieldName(_ algorithm: DigestAlgorithm) -> String { algorithm == .sha512 ? "sha-512" : "sha-256" }

    static func encodedDigest(_ algorithm: DigestAlgorithm, _ bytes: [UInt8]) -> String {
        "\(fieldName(algorithm))=:\(Base64.encode(bytes)):"
    }

    /// Rows G1 and G3 for the request that completes an upload: the representation's digest over the stored bytes,
    /// compared with `Repr-Digest` (this request's, else the creation's) and answered in the wanted algorithm.
    /// `checkedInStream`: this request's body was the whole representation and was verified against `Repr-Digest`
    /// as it arrived. Hashing reads the upload back through the store's reader, so it costs a pass over the data;
    /// it runs only when a digest was given or asked for.
    func representationCheck(
        _ request: DraftRequest, expected own: UploadChecksum?, wanted ownWanted: DigestAlgorithm?,
        checkedInStream: Bool, into check: RepresentationCheck
    ) -> UploadService.BeforeFinish? {
        guard request.version.verifiesContentDigest else { return nil }
        return { [self] upload, completion in
            var expected = checkedInStream ? nil : own
            if expected == nil, !checkedInStream, let stored = upload.representationDigest,
                case .success(let parsed)? = StructuredField.digest(stored[...])
            {
                expected = parsed
            }
            let wanted = ownWanted ?? upload.wantedDigest.flatMap { Self.digestAlgorithm(named: $0[...]) }
            guard expected != nil || wanted != nil, let length = upload.length else { return completion(nil) }
            var algorithms: [DigestAlgorithm] = []
            for algorithm in [expected?.algorithm, wanted].compactMap({ $0 }) where !algorithms.contains(algorithm) {
                algorithms.append(algorithm)
            }
            hashStored(upload.id, length: length, algorithms: algorithms, executor: request.exchange.executor) {
                hashed in
                guard case .success(let digests) = hashed else { return completion(.storageFailure) }
                if let expected, digests[expected.algorithm] != expected.expected {
                    check.mismatched = true
                    return completion(.checksumMismatch)
                }
                if let wanted, let digest = digests[wanted] { check.answerDigest = Self.encodedDigest(wanted, digest) }
                completion(nil)
            }
        }
    }

    /// Row G1's answer: the upload is failed (cancelled, so nothing processes it), `400`, and from v7 on
    /// `Upload-Complete: ?1` so that the client does not send it again.
    func answerRepresentationMismatch(_ request: DraftRequest, id: String, location: String? = nil) {
        service.cancel(id, for: request.caller) { [self] _ in
            var headers: HTTPHeaders = [:]
            if request.version.completionFieldOnEveryAppendAnswer {
                let (name, value) = completionHeader(request, isComplete: true)
                headers.set(name, value)
            }
            fail(request, .badRequest, "the representation does not match its Repr-Digest", headers: headers)
        }
    }

    private func hashStored(
        _ id: String, length: Int64, algorithms: [DigestAlgorithm], executor: any LoopExecutor,
        completion: @escaping (Result<[DigestAlgorithm: [UInt8]], StoreError>) -> Void
    ) {
        service.store.openReader(id: id, on: executor) { opened in
            let reader: any UploadReader
            switch opened {
            case .failure(let error): return completion(.failure(error))
            case .success(let opened): reader = opened
            }
            let digests = algorithms.map(StreamingDigest.init)
            func read(from offset: Int64) {
                guard offset < length else {
                    reader.close()
                    let finished = digests.map { ($0.algorithm, $0.finalize()) }
                    return completion(.success(Dictionary(uniqueKeysWithValues: finished)))
                }
                reader.read(at: offset, maxLength: Int(min(length - offset, 1 << 18))) { result in
                    switch result {
                    case .failure(let error):
                        reader.close()
                        completion(.failure(error))
                    case .success(let fragment) where fragment.count == 0:
                        reader.close()
                        completion(.failure(.io("the upload's data ends before its length")))
                    case .success(let fragment):
                        for digest in digests { digest.update(fragment.bytes) }
                        read(from: offset + Int64(fragment.count))
                    }
                }
            }
            read(from: 0)
        }
    }
}
