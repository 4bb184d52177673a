// An HTTPS client of sealpostd's API and of peer appliances (PoCo's client
// classes): server certificate checked against a CA bundle (and, by
// default, against the host name), optional client certificate, one
// keep-alive connection reused across calls, timeouts, uploads streamed
// from files, responses read up to a bound, problem+json answers decoded
// into a Status.
//
//   ClientOptions o;  o.host = "127.0.0.1";  o.port = 8443;  o.ca_file = "ca.pem";
//   auto c = HttpsClient::Create(o);
//   auto r = (*c)->Get("/api/v1/health");
//   if (r && r->status != 200) Status s = StatusFromProblem(*r);
//
// Thread-safety: an HttpsClient is one connection; use it from one thread at
// a time (or one client per thread).
#ifndef SEALPOST_CLIENT_HTTPS_CLIENT_H_
#define SEALPOST_CLIENT_HTTPS_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace Poco::Net {
class HTTPSClientSession;
}  // namespace Poco::Net

namespace sealpost::client {

struct ClientOptions {
  std::string host = "127.0.0.1";
  int port = 443;
  std::string ca_file;      // PEM bundle the server's certificate must chain to
  // Without ca_file: trust the system's CA store instead (opt-in; e.g. a
  // webhook on the public internet). One of the two is required.
  bool system_cas = false;
  std::string cert_file;    // client certificate (PEM), optional
  std::string key_file;     // its unencrypted private key (PEM), with cert_file
  bool verify_host = true;  // the server certificate must name `host` (CN or DNS SAN)
  int connect_timeout_seconds = 10;
  int timeout_seconds = 30;  // per send/receive
  uint64_t max_response_bytes = 16u << 20;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Response {
  int status = 0;
  std::string content_type;
  Headers headers;
  std::string body;
  // The value of a header (case-insensitive name), "" if absent.
  std::string Header(std::string_view name) const;
};

// One part of a multipart/form-data upload: from a file (streamed) or from
// memory.
struct FormPart {
  std::string name;
  std::string filename;  // sent as the part's filename (may be empty)
  std::string content_type = "application/octet-stream";
  std::string path;  // when non-empty: the file to stream
  std::string data;  // otherwise: these bytes
};

class HttpsClient {
 public:
  // Builds the TLS context. NotFound/DataError naming the CA, certificate or
  // key file that cannot be used; InvalidArgument when ca_file is empty
  // (and system_cas is not set) or only one of cert_file/key_file is given.
  [[nodiscard]] static Result<std::unique_ptr<HttpsClient>> Create(const ClientOptions& options);
  ~HttpsClient();
  HttpsClient(const HttpsClient&) = delete;
  HttpsClient& operator=(const HttpsClient&) = delete;

  // Each returns the response whatever its status (4xx/5xx included), or
  // Unavailable when the connection or TLS handshake fails or times out
  // (the message names host:port), DataError when the body exceeds
  // max_response_bytes. After an error the next call opens a new connection.
  [[nodiscard]] Result<Response> Get(const std::string& path, const Headers& headers = {});
  [[nodiscard]] Result<Response> Post(const std::string& path, const std::string& content_type,
                                      const std::string& body, const Headers& headers = {});
  // Streams the file at `file_path` as the body (Content-Length set);
  // NotFound if it cannot be read.
  [[nodiscard]] Result<Response> PostFile(const std::string& path, const std::string& content_type,
                                          const std::string& file_path,
                                          const Headers& headers = {});
  // GET whose 2xx body is streamed into the file `out_path` (created or
  // truncated, mode 0600; 64 KiB pieces, never held whole, no size bound);
  // the returned Response then has an empty body. Any other status: the
  // body is read into memory as for Get() and the file is not touched.
  // IoError naming the file when it cannot be written.
  [[nodiscard]] Result<Response> GetToFile(const std::string& path, const std::string& out_path,
                                           const Headers& headers = {});
  // multipart/form-data with the parts in order; file parts are streamed.
  [[nodiscard]] Result<Response> PostMultipart(const std::string& path,
                                               const std::vector<FormPart>& parts,
                                               const Headers& headers = {});

 private:
  HttpsClient(ClientOptions options, std::unique_ptr<Poco::Net::HTTPSClientSession> session);
  ClientOptions options_;
  std::unique_ptr<Poco::Net::HTTPSClientSession> session_;
};

// The Status an error response stands for: the code from the HTTP status
// (400/405/413/415/431 -> InvalidArgument, 422 -> DataError, 401/403 ->
// PermissionDenied, 404 -> NotFound, 409/412 -> FailedPrecondition,
// 502/503/504 -> Unavailable, other 5xx -> Internal) and the message
// "title: detail" from an RFC 9457 problem+json body (or "HTTP <status>"
// when the body is not one). OK for 2xx.
Status StatusFromProblem(const Response& response);

}  // namespace sealpost::client

#endif  // SEALPOST_CLIENT_HTTPS_CLIENT_H_
