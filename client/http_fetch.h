// Fetching one resource by plain HTTP GET (PoCo's HTTPClientSession), for
// CRL distribution points: CRLs are signed objects and are served over
// http:// (RFC 5280 §4.2.1.13), so no TLS is involved. No redirects are
// followed (the daemon fetches only the URL the policy names), the body is
// bounded, and every step has a timeout.
//
//   auto body = FetchHttp("http://127.0.0.1:8080/ca.crl", {});
//
// Thread-safety: a free function; each call uses its own connection.
#ifndef SEALPOST_CLIENT_HTTP_FETCH_H_
#define SEALPOST_CLIENT_HTTP_FETCH_H_

#include <cstdint>
#include <string>

#include "base/status.h"

namespace sealpost::client {

struct FetchOptions {
  int timeout_seconds = 15;              // connect, and each send/receive
  uint64_t max_bytes = 16u << 20;        // larger bodies are refused
};

// GETs `url` ("http://host[:port]/path[?query]"). InvalidArgument for a URL
// that is not http://; Unavailable when the connection fails or times out
// (the message names host:port); DataError for a status other than 200
// (named) or a body over max_bytes.
[[nodiscard]] Result<std::string> FetchHttp(const std::string& url, const FetchOptions& options);

}  // namespace sealpost::client

#endif  // SEALPOST_CLIENT_HTTP_FETCH_H_
