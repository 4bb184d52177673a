// The documents endpoints of the user listener, over the Exchange:
//   POST /api/v1/documents      (clerk, officer) submit a document
//   GET  /api/v1/documents/bundle?id=ID   the bundle of a document sent from here
// The HTTP plumbing (authentication, problem+json, keep-alive) stays in
// server.cc; these functions read the request and return what to answer.
//
// Submission form (raw): Content-Type application/octet-stream, a
// Content-Length (411 without: the body limit must be known before reading),
// the document as the body (spooled to disk in 64 KiB pieces, never whole in
// memory before the archive takes it), the metadata as URL query parameters
// (UTF-8, percent-encoded): type, subject, recipients (comma-separated union
// ids), name (the file name), media_type (default application/octet-stream);
// the officers' detached signature, optional, base64 in the header
// Sealpost-Signature (at most 1 MiB decoded).
//
// The Exchange is created on first use (it opens the archive, which needs the
// seal through sealpost-signer): while the signer is down the endpoint
// answers 503 with Retry-After and retries on the next request.
#ifndef SEALPOST_DAEMON_DOCUMENTS_H_
#define SEALPOST_DAEMON_DOCUMENTS_H_

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/status.h"
#include "crypto/verify.h"
#include "daemon/config.h"
#include "daemon/exchange.h"
#include "daemon/problem.h"
#include "policies/holder.h"

namespace Poco::Net {
class HTTPServerRequest;
}  // namespace Poco::Net

namespace sealpost::signer {
class RemoteSigner;
}  // namespace sealpost::signer

namespace sealpost::daemon {

// What to answer: a JSON body, or a problem.
struct DocumentsAnswer {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;            // JSON, or a file path when `file` is set
  bool file = false;           // body names a file to send
  std::optional<Problem> problem;
  int retry_after_seconds = 0;  // > 0: send Retry-After
  bool body_consumed = true;
};

class DocumentsService {
 public:
  // Borrowed pointers must outlive the service.
  DocumentsService(const Config& config, policies::PolicyHolder* policy,
                   const crypto::Verifier* verifier);
  ~DocumentsService();
  DocumentsService(const DocumentsService&) = delete;
  DocumentsService& operator=(const DocumentsService&) = delete;

  DocumentsAnswer Submit(Poco::Net::HTTPServerRequest& req, const std::string& spool_dir);
  DocumentsAnswer Bundle(Poco::Net::HTTPServerRequest& req);

  // The Exchange, created on first success (also for the delivery worker
  // and the inbox). Unavailable while it cannot be.
  Result<Exchange*> Get();

 private:
  const Config& config_;
  policies::PolicyHolder* policy_;
  const crypto::Verifier* verifier_;
  std::unique_ptr<signer::RemoteSigner> signer_;
  std::mutex mu_;
  std::unique_ptr<Exchange> exchange_;  // guarded by mu_ until set
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_DOCUMENTS_H_
