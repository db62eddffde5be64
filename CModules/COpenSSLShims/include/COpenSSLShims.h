#ifndef COPENSSLSHIMS_H
#define COPENSSLSHIMS_H
/* Only OpenSSL *macros* live here: Swift cannot call a function-like macro. Each shim says which macro it
   stands for; delete the shim if OpenSSL ever turns that macro into a real function. */
#include <openssl/ssl.h>
#include <openssl/bio.h>

/* SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl. */
long COpenSSLShims_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
/* SSL_CTX_set_max_proto_version is a macro over SSL_CTX_ctrl. */
long COpenSSLShims_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version);
/* BIO_get_mem_data is a macro over BIO_ctrl. */
long COpenSSLShims_BIO_get_mem_data(BIO *bio, char **data);
/* SSL_set_tlsext_host_name is a macro over SSL_ctrl (client SNI). */
long COpenSSLShims_SSL_set_tlsext_host_name(SSL *ssl, const char *name);
/* SSL_CTX_set_mode is a macro over SSL_CTX_ctrl (TLSSession retries SSL_write from a growable Swift array). */
long COpenSSLShims_SSL_CTX_set_mode(SSL_CTX *ctx, long mode);
/* SSL_CTX_set_dh_auto is a macro over SSL_CTX_ctrl (the Mozilla intermediate DHE ciphers need DH groups). */
long COpenSSLShims_SSL_CTX_set_dh_auto(SSL_CTX *ctx, int onoff);
/* SSL_OP_NO_RENEGOTIATION expands to the function-like macro SSL_OP_BIT, which Swift does not import. */
uint64_t COpenSSLShims_SSL_OP_NO_RENEGOTIATION(void);
#endif
