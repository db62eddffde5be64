/// Which protocol versions and ciphers a server context accepts; raw values are the `--tls-mode` spellings.
/// None allows anything below TLS 1.2.
public enum TLSMode: String, Sendable, CaseIterable {
    /// TLS 1.2 and 1.3, Mozilla "intermediate" TLS 1.2 ciphers: the compatible default.
    case tls12
    /// TLS 1.3 only.
    case tls13
    /// TLS 1.2 and 1.3, but TLS 1.2 limited to ECDHE key exchange with AEAD ciphers (no finite-field DHE).
    case tls12Strong = "tls12-strong"

    /// Mozilla intermediate configuration (v5.7). TLS 1.3 suites are OpenSSL's defaults, which match it.
    static let intermediateCiphers =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        + "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
        + "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

    static let strongCiphers =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        + "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
}
