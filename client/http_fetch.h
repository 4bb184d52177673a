// Fetching one resource by HTTP GET, for CRL distribution points: plain
// http:// (PoCo's HTTPClientSession; CRLs are signed objects, RFC 5280
// §4.2.1.13) or https:// (client::HttpsClient: the server certificate is
// checked against FetchOptions::https_ca, or the system's CA store when it
// is empty, and must name the URL's host). No redirects are followed (the
// daemon fetches only the URL the policy names), the body is bounded, and
// every step has a timeout.
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
  // https:// only: PEM bundle the server's certificate must chain to; empty:
  // the system's CA store (/etc/ssl/certs).
  std::string https_ca;
};

// GETs `url` ("http://host[:port]/path[?query]"). InvalidArgument for a URL
// that is not http://; Unavailable when the connection fails or times out
// (the message names host:port); DataError for a status other than 200
// (named) or a body over max_bytes.
[[nodiscard]] Result<std::string> FetchHttp(const std::string& url, const FetchOptions& options);

// The same for "https://host[:port]/path[?query]": InvalidArgument for
// another scheme; Unavailable for connection, TLS (an untrusted or
// misnamed server certificate) or timeout failures, naming host:port;
// DataError for a status other than 200 or a body over max_bytes.
[[nodiscard]] Result<std::string> FetchHttps(const std::string& url, const FetchOptions& options);

}  // namespace sealpost::client

#endif  // SEALPOST_CLIENT_HTTP_FETCH_H_
