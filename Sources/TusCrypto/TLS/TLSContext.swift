internal import COpenSSL
internal import COpenSSLShims

/// Shared configuration for many `TLSSession`s: certificate, key, versions, ciphers, ALPN. Wraps an `SSL_CTX`.
///
/// Immutable once created, which is why it is `Sendable`: OpenSSL allows `SSL_new` on one `SSL_CTX` from many
/// threads (its refcount and session cache are locked). For certificate hot reload, build a new context and
/// hand it to new connections; sessions already running keep their own reference to the old one.
public final class TLSContext: @unchecked Sendable {
    let context: OpaquePointer
    let isServer: Bool

    private init(context: OpaquePointer, isServer: Bool) {
        self.context = context
        self.isServer = isServer
    }

    deinit {
        SSL_CTX_free(context)
    }

    /// Server context over `SSL_CTX_use_certificate_chain_file` and `SSL_CTX_use_PrivateKey_file`. Refuses a key
    /// that does not match the certificate (`SSL_CTX_check_private_key`) and an expired certificate
    /// (`X509_cmp_current_time` on notAfter), so a bad reload fails loudly instead of breaking every handshake.
    /// Errors name the file and the problem. ALPN selects "h2" when `offersHTTP2` and the client offers it,
    /// otherwise "http/1.1"; session tickets stay on (OpenSSL default).
    public static func server(
        certificatePath: String, keyPath: String, mode: TLSMode, offersHTTP2: Bool = false
    ) throws -> TLSContext {
        OpenSSLErrorQueue.clear()
        guard let method = TLS_server_method(), let raw = SSL_CTX_new(method) else {
            throw TLSError.fromErrorQueue("SSL_CTX_new failed")
        }
        let tls = TLSContext(context: raw, isServer: true)
        try tls.applyCommonSettings(
            maximumVersion: TLS1_3_VERSION, minimumVersion: mode == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION)
        if mode != .tls13 {
            let ciphers = mode == .tls12Strong ? TLSMode.strongCiphers : TLSMode.intermediateCiphers
            guard SSL_CTX_set_cipher_list(raw, ciphers) == 1 else {
                throw TLSError.fromErrorQueue("TLS cipher list for mode \(mode.rawValue) rejected")
            }
            if mode == .tls12 {
                // The intermediate list has DHE suites; let OpenSSL pick a DH group matching the key size.
                _ = COpenSSLShims_SSL_CTX_set_dh_auto(raw, 1)
            }
        }
        try tls.loadCertificateAndKey(certificatePath: certificatePath, keyPath: keyPath)
        // The callback is a plain C function; the one bit of configuration it needs travels as its argument
        // (a non-nil pointer means "h2 allowed"), so nothing has to be retained for it.
        SSL_CTX_set_alpn_select_cb(raw, selectALPN, offersHTTP2 ? UnsafeMutableRawPointer(bitPattern: 1) : nil)
        // The client application traffic secret, for the session's own TLS 1.3 record reader (TLSSession).
        SSL_CTX_set_keylog_callback(raw, logTrafficSecret)
        return tls
    }

    /// Client context (tus-cli, tus-bench, S3, hooks, Redis): verifies the server against `caFile`, or the system
    /// default paths when nil, unless `insecure`. With `certificatePath` and `keyPath` it presents that client
    /// certificate (servers that require one: Redis with `tls-auth-clients yes`). ALPN offers `applicationProtocols`
    /// (none when empty).
    public static func client(
        caFile: String?, insecure: Bool, certificatePath: String? = nil, keyPath: String? = nil,
        applicationProtocols: [String] = ["http/1.1"]
    ) throws -> TLSContext {
        try client(
            caFile: caFile, insecure: insecure, allowsTLS13: true, certificatePath: certificatePath, keyPath: keyPath,
            applicationProtocols: applicationProtocols)
    }

    /// `allowsTLS13: false` caps the client at TLS 1.2; tests use it to prove the server's version policy.
    static func client(
        caFile: String?, insecure: Bool, allowsTLS13: Bool, certificatePath: String? = nil, keyPath: String? = nil,
        applicationProtocols: [String] = ["http/1.1"]
    ) throws -> TLSContext {
        OpenSSLErrorQueue.clear()
        guard let method = TLS_client_method(), let raw = SSL_CTX_new(method) else {
            throw TLSError.fromErrorQueue("SSL_CTX_new failed")
        }
        let tls = TLSContext(context: raw, isServer: false)
        try tls.applyCommonSettings(
            maximumVersion: allowsTLS13 ? TLS1_3_VERSION : TLS1_2_VERSION, minimumVersion: TLS1_2_VERSION)
        if insecure {
            SSL_CTX_set_verify(raw, SSL_VERIFY_NONE, nil)
        } else {
            SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nil)
            if let caFile {
                guard SSL_CTX_load_verify_locations(raw, caFile, nil) == 1 else {
                    throw TLSError.fromErrorQueue("TLS CA file \(caFile): cannot load")
                }
            } else if SSL_CTX_set_default_verify_paths(raw) != 1 {
                throw TLSError.fromErrorQueue("TLS system CA paths: cannot load")
            }
        }
        if let certificatePath, let keyPath {
            try tls.loadCertificateAndKey(certificatePath: certificatePath, keyPath: keyPath)
        } else if certificatePath != nil || keyPath != nil {
            throw TLSError("a TLS client certificate needs both the certificate and its key")
        }
        // Wire format: length-prefixed protocol names. Unlike most OpenSSL calls, 0 means success here.
        let protocols = applicationProtocols.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        guard protocols.isEmpty || SSL_CTX_set_alpn_protos(raw, protocols, UInt32(protocols.count)) == 0 else {
            throw TLSError.fromErrorQueue("SSL_CTX_set_alpn_protos failed")
        }
        return tls
    }

    private func applyCommonSettings(maximumVersion: Int32, minimumVersion: Int32) throws {
        guard COpenSSLShims_SSL_CTX_set_min_proto_version(context, minimumVersion) == 1,
            COpenSSLShims_SSL_CTX_set_max_proto_version(context, maximumVersion) == 1
        else {
            throw TLSError.fromErrorQueue("TLS protocol version range rejected")
        }
        // Renegotiation lets a peer restart the handshake mid-stream: extra CPU per connection and a
        // state the byte pump would have to handle, for no use in HTTP/1.1 uploads.
        _ = SSL_CTX_set_options(context, COpenSSLShims_SSL_OP_NO_RENEGOTIATION())
        // TLSSession may retry a write from pending bytes held in a Swift array that moves when it grows.
        _ = COpenSSLShims_SSL_CTX_set_mode(context, Int(SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
    }

    private func loadCertificateAndKey(certificatePath: String, keyPath: String) throws {
        guard SSL_CTX_use_certificate_chain_file(context, certificatePath) == 1 else {
            throw TLSError.fromErrorQueue("TLS certificate \(certificatePath): cannot load PEM certificate chain")
        }
        guard SSL_CTX_use_PrivateKey_file(context, keyPath, SSL_FILETYPE_PEM) == 1 else {
            // OpenSSL already compares the key with the loaded certificate here.
            if ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH {
                throw TLSError.fromErrorQueue(
                    "TLS private key \(keyPath) does not match certificate \(certificatePath)")
            }
            throw TLSError.fromErrorQueue("TLS private key \(keyPath): cannot load PEM private key")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw TLSError.fromErrorQueue("TLS private key \(keyPath) does not match certificate \(certificatePath)")
        }
        guard let certificate = SSL_CTX_get0_certificate(context), let notAfter = X509_get0_notAfter(certificate)
        else {
            throw TLSError.fromErrorQueue("TLS certificate \(certificatePath): no certificate loaded")
        }
        if X509_cmp_current_time(notAfter) <= 0 {
            OpenSSLErrorQueue.clear()
            throw TLSError(
                "TLS certificate \(certificatePath) has expired (notAfter \(Self.describe(notAfter))); "
                    + "refusing to use it")
        }
    }

    /// `ASN1_TIME_print` into a memory BIO: "Nov 26 06:13:36 2026 GMT".
    private static func describe(_ time: UnsafePointer<ASN1_TIME>) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "?" }
        defer { BIO_free(bio) }
        guard ASN1_TIME_print(bio, time) == 1 else { return "?" }
        var data: UnsafeMutablePointer<CChar>? = nil
        let length = COpenSSLShims_BIO_get_mem_data(bio, &data)
        guard let data, length > 0 else { return "?" }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }
}

/// ALPN: pick "h2" (when `argument` is non-nil: the context offers HTTP/2) or else "http/1.1" from the client's
/// list; the server's preference wins over the client's order. A client that offers ALPN with neither gets the
/// fatal no_application_protocol alert RFC 7301 §3.2 asks for; a client that offers no ALPN is not called here
/// (and speaks HTTP/1.1).
private func selectALPN(
    ssl: OpaquePointer?, selected: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
    selectedLength: UnsafeMutablePointer<UInt8>?, offered: UnsafePointer<UInt8>?, offeredLength: UInt32,
    argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let offered, let selected, let selectedLength else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    let preferences: [[UInt8]] = argument != nil ? [Array("h2".utf8), Array("http/1.1".utf8)] : [Array("http/1.1".utf8)]
    let list = UnsafeBufferPointer(start: offered, count: Int(offeredLength))
    for wanted in preferences {
        var index = 0
        while index < list.count {
            let length = Int(list[index])
            let start = index + 1
            guard start + length <= list.count else { break }
            if length == wanted.count && list[start..<start + length].elementsEqual(wanted) {
                // Pointing into `offered` is allowed: OpenSSL copies the selection before the buffer goes away.
                selected.pointee = offered + start
                selectedLength.pointee = UInt8(length)
                return SSL_TLSEXT_ERR_OK
            }
            index = start + length
        }
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL
}
