internal import COpenSSL

/// The read half of a TLS 1.3 record layer (RFC 8446 §5), for the server's application data after the handshake:
/// `TLSSession` hands records to it instead of OpenSSL, so ciphertext is decrypted straight from the buffer it was
/// received into, into the caller's plaintext buffer. OpenSSL's record layer copies every record into its own
/// buffer first (our borrowed-input BIO), the largest user-space cost of a TLS upload after the AEAD itself
/// (bench/results/2026-12-07-tlsh1). libcrypto still does the AEAD (EVP); this type does the framing: length
/// limits, the per-record nonce, the header as additional data, the tag, the inner content type, KeyUpdate.
///
/// Keys come from the client application traffic secret (HKDF-Expand-Label "key" and "iv"); the secret is kept,
/// for KeyUpdate ("traffic upd"), and wiped when replaced or when the reader goes. Loop thread only.
final class TLS13RecordReader {
    /// The cipher suites this reader handles, by IANA id (`SSL_CIPHER_get_protocol_id`).
    struct Suite {
        let cipher: OpaquePointer
        let digest: OpaquePointer
        let keyLength: Int
        let hashLength: Int

        init?(protocolID: UInt16) {
            switch protocolID {
            case 0x1301: self.init(cipher: EVP_aes_128_gcm(), digest: EVP_sha256(), keyLength: 16, hashLength: 32)
            case 0x1302: self.init(cipher: EVP_aes_256_gcm(), digest: EVP_sha384(), keyLength: 32, hashLength: 48)
            case 0x1303:
                self.init(cipher: EVP_chacha20_poly1305(), digest: EVP_sha256(), keyLength: 32, hashLength: 32)
            default: return nil
            }
        }

        private init?(cipher: OpaquePointer?, digest: OpaquePointer?, keyLength: Int, hashLength: Int) {
            guard let cipher, let digest else { return nil }
            self.cipher = cipher
            self.digest = digest
            self.keyLength = keyLength
            self.hashLength = hashLength
        }
    }

    static let headerLength = 5
    static let tagLength = 16
    /// TLSCiphertext.length limit (RFC 8446 §5.2): 2^14 + 256.
    static let maximumCiphertextLength = 16384 + 256
    /// TLSInnerPlaintext limit: 2^14 content bytes plus the content type.
    static let maximumInnerPlaintextLength = 16384 + 1

    private let suite: Suite
    private let context: OpaquePointer
    /// The current client application traffic secret (`hashLength` bytes), the input of the next KeyUpdate.
    private let secret: UnsafeMutableRawBufferPointer
    private let iv: UnsafeMutablePointer<UInt8>
    private let nonce: UnsafeMutablePointer<UInt8>
    /// Records opened under the current key; never wraps (`open` refuses the last value).
    private(set) var sequenceNumber: UInt64 = 0

    /// nil when libcrypto refuses the key (a broken build): the caller then leaves the records to OpenSSL.
    init?(suite: Suite, secret: UnsafeRawBufferPointer) {
        guard secret.count == suite.hashLength, let context = EVP_CIPHER_CTX_new() else { return nil }
        self.suite = suite
        self.context = context
        self.secret = .allocate(byteCount: suite.hashLength, alignment: 16)
        self.secret.copyMemory(from: secret)
        iv = .allocate(capacity: 12)
        nonce = .allocate(capacity: 12)
        guard EVP_DecryptInit_ex(context, suite.cipher, nil, nil, nil) == 1, installKeys() else { return nil }
    }

    deinit {
        OPENSSL_cleanse(secret.baseAddress, secret.count)
        OPENSSL_cleanse(iv, 12)
        OPENSSL_cleanse(nonce, 12)
        secret.deallocate()
        iv.deallocate()
        nonce.deallocate()
        EVP_CIPHER_CTX_free(context)  // wipes the key schedule
    }

    /// Decrypts and authenticates one record (`record`: header and ciphertext with tag, lengths already checked
    /// by the caller) into `output`, which must hold `record.count - headerLength - tagLength` bytes. Returns false
    /// when the tag does not verify (or libcrypto fails); the caller must then treat `output` as garbage.
    func open(_ record: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) -> Bool {
        guard sequenceNumber < UInt64.max, let base = record.baseAddress else { return false }
        let ciphertextLength = record.count - Self.headerLength - Self.tagLength
        // nonce = iv XOR the 64-bit sequence number, right-aligned (RFC 8446 §5.3).
        nonce.update(from: iv, count: 12)
        for index in 0..<8 { nonce[4 + index] ^= UInt8(truncatingIfNeeded: sequenceNumber >> (56 - 8 * index)) }
        var length: Int32 = 0
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        guard EVP_DecryptInit_ex(context, nil, nil, nil, nonce) == 1,
            EVP_DecryptUpdate(context, nil, &length, bytes, Int32(Self.headerLength)) == 1,
            EVP_DecryptUpdate(
                context, output.assumingMemoryBound(to: UInt8.self), &length, bytes + Self.headerLength,
                Int32(ciphertextLength)) == 1,
            EVP_CIPHER_CTX_ctrl(
                context, EVP_CTRL_AEAD_SET_TAG, Int32(Self.tagLength),
                UnsafeMutableRawPointer(mutating: base + Self.headerLength + ciphertextLength)) == 1
        else { return false }
        var finalLength: Int32 = 0
        guard EVP_DecryptFinal_ex(context, output.assumingMemoryBound(to: UInt8.self) + Int(length), &finalLength) == 1
        else { return false }
        sequenceNumber += 1
        return true
    }

    /// The peer's KeyUpdate: the next secret is HKDF-Expand-Label(secret, "traffic upd", "", Hash.length)
    /// (RFC 8446 §7.2), new key and IV from it, sequence number back to 0.
    func update() -> Bool {
        let next = Self.expandLabel(suite, secret: UnsafeRawBufferPointer(secret), label: "traffic upd",
            length: suite.hashLength)
        defer { OPENSSL_cleanse(next.baseAddress, next.count); next.deallocate() }
        secret.copyMemory(from: UnsafeRawBufferPointer(next))
        sequenceNumber = 0
        return installKeys()
    }

    private func installKeys() -> Bool {
        let key = Self.expandLabel(suite, secret: UnsafeRawBufferPointer(secret), label: "key", length: suite.keyLength)
        let newIV = Self.expandLabel(suite, secret: UnsafeRawBufferPointer(secret), label: "iv", length: 12)
        defer {
            OPENSSL_cleanse(key.baseAddress, key.count)
            OPENSSL_cleanse(newIV.baseAddress, newIV.count)
            key.deallocate()
            newIV.deallocate()
        }
        iv.update(from: newIV.baseAddress!.assumingMemoryBound(to: UInt8.self), count: 12)
        return EVP_DecryptInit_ex(context, nil, nil, key.baseAddress?.assumingMemoryBound(to: UInt8.self), nil) == 1
    }

    /// HKDF-Expand-Label(secret, label, "", length) (RFC 8446 §7.1). Every length used here is at most the hash
    /// length, so HKDF-Expand (RFC 5869) is its first block: HMAC(secret, HkdfLabel || 0x01).
    static func expandLabel(
        _ suite: Suite, secret: UnsafeRawBufferPointer, label: String, length: Int
    ) -> UnsafeMutableRawBufferPointer {
        precondition(length <= suite.hashLength)
        let fullLabel = Array("tls13 ".utf8) + Array(label.utf8)
        var info: [UInt8] = [UInt8(length >> 8), UInt8(length & 0xFF), UInt8(fullLabel.count)]
        info += fullLabel
        info += [0, 1]  // empty context; HKDF-Expand's block counter
        var block = [UInt8](repeating: 0, count: 64)
        var blockLength: UInt32 = 0
        let result = block.withUnsafeMutableBytes { out in
            HMAC(
                suite.digest, secret.baseAddress, Int32(secret.count), info, info.count,
                out.baseAddress?.assumingMemoryBound(to: UInt8.self), &blockLength)
        }
        // Only a broken libcrypto fails here (the digests are built in): a bug, not input.
        guard result != nil, Int(blockLength) == suite.hashLength else { preconditionFailure("HKDF-Expand failed") }
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 16)
        block.withUnsafeMutableBytes { bytes in
            output.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<length]))
            OPENSSL_cleanse(bytes.baseAddress, bytes.count)
        }
        return output
    }
}
