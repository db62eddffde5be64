#ifndef CNGHTTP2_SHIM_H
#define CNGHTTP2_SHIM_H
/* libnghttp2 (Debian libnghttp2-dev 1.52): HTTP/2 framing, HPACK and flow control. Imported only by
   TusHTTPServer (Sources/TusHTTPServer/HTTP2), with `internal import`. No macros are needed from it. */
#include <nghttp2/nghttp2.h>
#endif
