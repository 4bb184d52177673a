// The documents endpoints of the user listener, over the Exchange:
//   POST /api/v1/documents      (clerk, officer) submit a document
//   GET  /api/v1/documents/bundle?id=ID   the bundle of a document sent from here
// and the read side (daemon/documents_read.cc; docs/api/openapi.yaml):
//   GET  /api/v1/documents[?direction&type&counterpart&since&until&limit&cursor]
//   GET  /api/v1/documents/{id}[/content|/signature|/bundle|/receipts]
//   GET  /api/v1/inbox          received documents, unread first
//   GET  /api/v1/checkpoint[/consistency?from=N&to=M]   (also peers)
// Reads never need the signer: they open the archive read-only
// (storage::ArchiveReader, a snapshot per request) and its query index
// (storage::Index, brought up to date on each request), and the outbox for
// delivery states.
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

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "crypto/verify.h"
#include "daemon/archive_evidence.h"
#include "daemon/config.h"
#include "daemon/exchange.h"
#include "daemon/policy_update.h"
#include "daemon/trust.h"
#include "daemon/problem.h"
#include "policies/holder.h"
#include "storage/outbox.h"

namespace Poco::Net {
class HTTPServerRequest;
}  // namespace Poco::Net

namespace sealpost::signer {
class RemoteSigner;
}  // namespace sealpost::signer

namespace sealpost::daemon {

class SpoolPool;  // daemon/upload.h

// What to answer: a JSON body, or a problem.
struct DocumentsAnswer {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;            // JSON, or a file path when `file` is set
  bool file = false;           // body names a file to send
  std::optional<Problem> problem;
  int retry_after_seconds = 0;  // > 0: send Retry-After
  bool body_consumed = true;
  // With `file`: send only `file_length` bytes from `file_offset` (a STORED
  // member inside a bundle), streamed in pieces.
  uint64_t file_offset = 0;
  std::optional<uint64_t> file_length;
  // With `file`: a temporary file, removed once sent (or the send failed).
  bool remove_file_after = false;
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
};

// Called the first time a received document's content is fetched by a
// clerk or officer of this union (the read notice goes back to the sender:
// daemon/delivery.h NoteOpened). An error is logged; the content is still
// served.
using OpenedHook = std::function<Status(const std::string& document_id, const std::string& role)>;

// 503 bundle-unavailable (logged): the bundle of sent document `id` can be
// neither served checked nor made again from the archive now (`why`).
Problem BundleUnavailableProblem(const std::string& id, const Status& why);

class DocumentsService {
 public:
  // Borrowed pointers must outlive the service.
  DocumentsService(const Config& config, policies::PolicyHolder* policy,
                   const SharedTrust* trust);
  ~DocumentsService();
  DocumentsService(const DocumentsService&) = delete;
  DocumentsService& operator=(const DocumentsService&) = delete;

  DocumentsAnswer Submit(Poco::Net::HTTPServerRequest& req, SpoolPool& spool);
  DocumentsAnswer Bundle(Poco::Net::HTTPServerRequest& req);

  // The read side. `uri` is the request target (its query is parsed
  // strictly: unknown parameters are 400). `id` is the path parameter.
  DocumentsAnswer List(const std::string& uri, bool inbox);
  DocumentsAnswer Document(const std::string& id);
  // `role`: the caller's role; a clerk or officer opening a received
  // document counts as the union reading it (OpenedHook, first time only).
  DocumentsAnswer Content(const std::string& id, const std::string& role);
  DocumentsAnswer Signature(const std::string& id);
  DocumentsAnswer BundleOf(const std::string& id);
  DocumentsAnswer Receipts(const std::string& id);
  DocumentsAnswer Checkpoint();
  DocumentsAnswer Consistency(const std::string& uri);

  // Set before the server starts (not synchronised with requests).
  void SetOpenedHook(OpenedHook hook) { opened_hook_ = std::move(hook); }
  // A policy-version entry to archive once the archive writer is open
  // (daemon/policy_update.h RecoverPolicyUpdate). Before the first Get().
  void SetPendingPolicyVersion(PendingPolicyVersion p) { pending_policy_ = std::move(p); }
  // The Exchange's part of the start-up pass (daemon/startup.h), given to
  // Exchange::Create and dropped once it succeeded. Before the first Get().
  void SetStartupScans(std::shared_ptr<SentDocumentsScan> sent,
                       std::shared_ptr<LeafHashesScan> leaves) {
    sent_scan_ = std::move(sent);
    leaves_scan_ = std::move(leaves);
  }

  // The Exchange, created on first success (also for the delivery worker
  // and the inbox). Unavailable while it cannot be.
  Result<Exchange*> Get();
  // The Exchange if it was created already, else null. Never creates it,
  // never waits (for the signer, or for a Get() that is creating it): for
  // metrics, and for reads that have another source while it is not open.
  Exchange* IfCreated() { return created_.load(std::memory_order_acquire); }
  // The daemon's client of sealpost-signer (owned; lives as long as this).
  signer::RemoteSigner* signer() { return signer_.get(); }

 private:
  // The bundle of the document-received entry `seq`, made from the archive
  // in a temporary file of the spool directory (the caller removes it).
  // One at a time (received_mu_): each holds its content in memory for a
  // moment, so concurrent GETs of large documents do not add up.
  Result<std::string> ReceivedBundleFile(uint64_t seq);

  const Config& config_;
  policies::PolicyHolder* policy_;
  const SharedTrust* trust_;
  std::unique_ptr<signer::RemoteSigner> signer_;
  std::mutex mu_;
  std::unique_ptr<Exchange> exchange_;  // guarded by mu_ until set
  std::atomic<Exchange*> created_{nullptr};  // exchange_.get() once set
  std::mutex received_mu_;                   // ReceivedBundleFile
  std::optional<PendingPolicyVersion> pending_policy_;  // mu_
  std::shared_ptr<SentDocumentsScan> sent_scan_;  // mu_
  std::shared_ptr<LeafHashesScan> leaves_scan_;   // mu_
  OpenedHook opened_hook_;
  std::mutex outbox_mu_;
  std::unique_ptr<storage::Outbox> outbox_;  // read side's own handle; outbox_mu_
  // The outbox for delivery states, opened on first use. Null (not an
  // error) while <state_dir>/outbox.sqlite does not exist.
  Result<storage::Outbox*> ReadOutbox();
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_DOCUMENTS_H_
