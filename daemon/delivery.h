// The sending side of the exchange: a DeliveryWorker takes due jobs from the
// Exchange's outbox (storage::Outbox: leases, a cap per recipient, backoff
// with full jitter) and delivers them to the recipients' appliances; and the
// read notices, on both sides. See docs/exchange.md ("Delivery") and the
// wire contract in docs/api/openapi.yaml.
//
// Channel `appliance` (payload = path of the bundle):
//   POST <recipient endpoint>/api/v1/inbox with the bundle (mutual TLS,
//   through a PeerTransport) ->
//     200  the receipt is verified (crypto::VerifyDeliveryReceipt: document
//          id, content hash, recipient, signed by the recipient's seal as
//          the policy registry names it; the seal's path validated with the
//          daemon's trust, anchors + CRLs, at the receipt's time; see
//          PeerSeal), archived once as a delivery-receipt entry, and the
//          job marked delivered with the receipt entry's seq;
//     409  consistency-proof-required: the proof between the two sizes of
//          our archive is sent at once with the same bundle (once);
//     4xx  a final refusal: the job is refused with the problem's detail;
//     5xx, network errors, a receipt that does not verify: retried with
//          backoff; but a receipt whose seal certificate is revoked,
//          expired, not yet valid or chains to no anchor: refused (final;
//          nothing archived; the reason in the job's last_error and the log).
// Channel `email` (payload = path of the bundle; recipient = a union id of
//   the registry, whose `email` is the address, or a bare address):
//   an S/MIME signed mail (crypto/smime.h, signed by our seal through the
//   Exchange's Signer) sent over SMTP (client/smtp_client.h) ->
//     2xx  delivered, receipt "smtp:<queue id>" (or "smtp:<Message-ID>");
//     5xx  a final refusal;
//     4xx, network errors, the signer unavailable, no email configuration
//          or no address yet: retried with backoff.
//   No receipt comes back; a retry after a lost completion sends the mail
//   again (same Message-ID).
// Channel `notice` (payload = the JSON body to send):
//   POST <sender endpoint>/api/v1/notices; 200 -> done, 4xx -> refused,
//   else retried.
// Channel `webhook` (payload = the document's facts): a signed notification
//   through DeliveryOptions::webhook (daemon/webhook.h); 2xx -> delivered,
//   408/429/5xx/network -> retried, else refused.
// When the transport cannot reach an appliance at all (Unavailable:
//   connection refused, TLS handshake, timeout), or the registry names no
//   endpoint for it, on channels appliance and notice, the attempt is
//   completed with Outbox::Unreachable: the recipient
//   is down, its other jobs are deferred (not attempted) until its probe
//   time, then one job probes it (docs/outbox.md, "Recipients that are down").
// Every attempt is recorded by the outbox; finished attempts are archived in
// batches as delivery-attempts entries (at most kAttemptsPerEntry per
// entry, written when that many are waiting or the oldest has waited
// attempts_flush_millis, and at Stop()).
//
// Thread-safety: every public method may be called from any thread.
#ifndef SEALPOST_DAEMON_DELIVERY_H_
#define SEALPOST_DAEMON_DELIVERY_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <deque>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/status.h"
#include "client/https_client.h"
#include "client/smtp_client.h"
#include "daemon/exchange.h"
#include "daemon/problem.h"
#include "daemon/startup_scan.h"
#include "daemon/trust.h"
#include "daemon/webhook.h"
#include "policies/holder.h"
#include "storage/outbox.h"

namespace sealpost::daemon {

// How the worker reaches other appliances. Tests of the worker's logic
// inject a fake; the daemon uses MakeHttpsTransport.
class PeerTransport {
 public:
  virtual ~PeerTransport() = default;
  // POSTs to `endpoint` (the registry's https URL of the appliance) + `path`
  // either the file at `file_path` (streamed) or, when it is empty, `body`.
  // Any HTTP status is a response; Unavailable when the appliance cannot be
  // reached (connection, TLS, timeout).
  [[nodiscard]] virtual Result<client::Response> Post(const std::string& endpoint,
                                                      const std::string& path,
                                                      const std::string& content_type,
                                                      const std::string& body,
                                                      const std::string& file_path,
                                                      const client::Headers& headers) = 0;
};

struct PeerTlsFiles {
  std::string certificate;  // our client certificate (PEM), the peer TLS identity
  std::string key;          // its key (PEM)
  std::string ca;           // the CA bundle the peers' server certificates chain to
  int connect_timeout_seconds = 10;
  int timeout_seconds = 30;
};

// Mutual TLS with client::HttpsClient (server certificate checked against
// `ca` and against the endpoint's host, e.g. the IP SAN 127.0.0.1), one
// keep-alive connection per endpoint and concurrent caller, reused; at most
// 8 idle connections per endpoint and 64 in all are kept (least recently
// used closed first).
// InvalidArgument if an endpoint is not an https URL.
std::unique_ptr<PeerTransport> MakeHttpsTransport(PeerTlsFiles files);

// Entries per delivery-attempts entry of the archive.
inline constexpr size_t kAttemptsPerEntry = 64;
// Jobs pruned per outbox transaction (see DeliveryOptions).
inline constexpr size_t kPruneBatch = 256;

// Channel email: how mail leaves the appliance (docs/email.md).
struct EmailDeliveryOptions {
  client::SmtpOptions smtp;
  std::string from;        // our union's address, the seal's rfc822Name
  std::string verify_url;  // named in the mail's text; may be empty
};

struct DeliveryOptions {
  std::string union_id;                     // this union
  policies::PolicyHolder* policy = nullptr;  // borrowed; the registry
  // The daemon's trust (anchors + static and fetched CRLs), borrowed: every
  // peer seal (receipts, read notices) is validated with its snapshot.
  // Null: a trust is built from trust_anchor_files alone (no CRLs; tests).
  const SharedTrust* trust = nullptr;
  // PEM files of trust anchors, used only when `trust` is null.
  std::vector<std::string> trust_anchor_files;
  // Deliveries in progress at once, all recipients together (the global
  // cap; the outbox adds its cap per recipient): this many worker threads,
  // fed by one dispatcher thread that leases up to as many jobs as workers
  // are free. A fan-out to 128 appliances keeps `threads` TLS connections
  // and bundle uploads going, not 128.
  int threads = 32;
  int poll_millis = 250;           // the dispatcher's idle wait between looks at the outbox
  int64_t attempts_flush_millis = 60'000;
  // Delivered and read jobs are pruned from the outbox this long after
  // delivery, once their attempts are archived (0: never), a batch of
  // kPruneBatch at a time between leases, every prune_interval_millis and
  // at start (sooner while a batch comes back full).
  int64_t keep_delivered_millis = 30LL * 86'400'000;
  int64_t prune_interval_millis = 3'600'000;
  std::string worker_name = "delivery";
  // Unset: email jobs are retried (with the reason) until configured.
  std::optional<EmailDeliveryOptions> email;
  // Channel webhook (daemon/webhook.h); null: webhook jobs are retried.
  std::shared_ptr<WebhookSender> webhook;
};

// For health and metrics.
struct DeliveryStatus {
  std::string state;  // "starting" (no Exchange yet), "running", "stopped"
  uint64_t delivered = 0;        // receipts verified (jobs completed)
  uint64_t refused = 0;          // final refusals
  uint64_t retries = 0;          // retryable failures (unreachable included)
  uint64_t unreachable = 0;      // of those, the recipient could not be reached
  uint64_t notices_sent = 0;
  uint64_t notices_received = 0;
  uint64_t attempt_entries = 0;  // delivery-attempts entries written
  uint64_t pruned = 0;           // delivered jobs pruned from the outbox
  std::string last_error;
  bool outbox_ok = false;
  storage::OutboxMetrics outbox;
};

// The "delivery" member of GET /api/v1/health (a JSON object) and the
// delivery and outbox series of /metrics (Prometheus text).
std::string DeliveryHealthJson(const DeliveryStatus& status);
std::string DeliveryMetricsText(const DeliveryStatus& status);

// What the delivery worker knows from the archive: receipts, read notices,
// received documents, the last outbox attempt archived. Filled by the
// start-up pass (daemon/startup_scan.h) or, without it, from entry 1 on
// first use; then kept up to date by the worker.
struct DeliveryIndex final : ManifestConsumer {
  uint64_t covered() const override { return scanned; }
  [[nodiscard]] Status Consume(uint64_t seq, std::string_view text,
                               const storage::Manifest& m) override;

  uint64_t scanned = 0;  // entries 1..scanned have been read
  // (document id, recipient) -> seq of the archived delivery receipt.
  std::map<std::pair<std::string, std::string>, uint64_t> receipts;
  // (document id, reading union) -> seq of the archived read notice (ours
  // when the union is this one, a recipient's otherwise).
  std::map<std::pair<std::string, std::string>, uint64_t> notices;
  // received document id -> (seq of its document-received entry, issuer).
  std::map<std::string, std::pair<uint64_t, std::string>> received;
  int64_t attempts_cursor = 0;  // last outbox attempt id archived
  // Receipts being appended right now (not yet in `receipts`).
  std::set<std::pair<std::string, std::string>> archiving;
};

class DeliveryWorker {
 public:
  // Gives the Exchange once it exists (Unavailable etc. until then).
  using ExchangeProvider = std::function<Result<Exchange*>()>;

  // InvalidArgument for missing options.
  [[nodiscard]] static Result<std::unique_ptr<DeliveryWorker>> Create(
      DeliveryOptions options, ExchangeProvider exchange, std::unique_ptr<PeerTransport> transport);
  ~DeliveryWorker();  // Stop()
  DeliveryWorker(const DeliveryWorker&) = delete;
  DeliveryWorker& operator=(const DeliveryWorker&) = delete;

  // The index filled by the start-up pass; before Start() and any delivery.
  void SeedIndex(std::unique_ptr<DeliveryIndex> index);
  // Starts the worker threads (idempotent).
  void Start();
  // Lets the deliveries in progress finish, archives the finished attempts
  // still waiting, joins the threads. Idempotent.
  void Stop();
  // Wakes idle threads (e.g. after a submission queued jobs).
  void Wake();

  // One pass without threads (tests): leases and handles due jobs until
  // none is due, then archives the waiting attempts when `flush_attempts`.
  // Returns the number of jobs handled.
  [[nodiscard]] Result<size_t> RunOnce(bool flush_attempts = true);

  // One batch of the prune (the dispatcher runs it; tests call it): up to
  // kPruneBatch delivered or read jobs delivered more than
  // keep_delivered_millis ago whose attempts are archived. Returns how many.
  [[nodiscard]] Result<size_t> PruneDelivered();

  // Reader's side: a clerk (or officer) of this union opened the received
  // document `document_id` for the first time. Signs a read notice with our
  // seal, archives it (delivery-receipt entry, receipt_type read-notice) and
  // queues it for the sender (channel notice). Later calls do nothing.
  // NotFound when no such document was received; Unavailable while the
  // Exchange or the seal cannot be used (the next open tries again).
  [[nodiscard]] Status NoteOpened(const std::string& document_id, const std::string& role);

  // Sender's side of POST /api/v1/notices from peer union `peer_union`
  // (the body as received). Verifies the notice against the peer's seal,
  // archives it once, marks the delivery read. Returns the JSON to answer
  // with 200, or the problem (422 bad notice, 404 no such delivery, 503).
  std::expected<std::string, Problem> ReceiveNotice(const std::string& peer_union,
                                                    std::string_view body);

  DeliveryStatus Snapshot();

 private:
  DeliveryWorker() = default;
  using Index = DeliveryIndex;
  // kUnreachable: retried, and the recipient is marked down in the outbox
  // (the transport could not reach it at all: connection, TLS, timeout).
  enum class Outcome { kDelivered, kRefused, kRetry, kUnreachable };

  // The dispatcher: leases due jobs while workers are free, queues them for
  // the workers, flushes the finished attempts. One thread.
  void Dispatch();
  // A worker: handles queued jobs until Stop() and the queue is empty.
  void Work();
  Result<Exchange*> GetExchange();
  // Handles one leased job and completes it in the outbox.
  void Handle(Exchange& ex, const storage::Job& job);
  std::pair<Outcome, std::string> DeliverBundle(Exchange& ex, const storage::Job& job);
  std::pair<Outcome, std::string> SendNotice(Exchange& ex, const storage::Job& job);
  std::pair<Outcome, std::string> SendMail(Exchange& ex, const storage::Job& job);
  // Reads archive entries not yet seen into the index. REQUIRES: index_mu_.
  Status RefreshLocked(Exchange& ex);
  // Writes delivery-attempts entries for the finished attempts waiting
  // (all of them when `force`, else only when a batch is full or old).
  Status FlushAttempts(Exchange& ex, bool force);
  // The certificate of `union_id`'s seal embedded in `cms_der`: its path
  // validated with the trust (anchors + CRLs) at `at` (the receipt's or
  // notice's time, at most now), then checked against the registry.
  // Errors name the union and the reason: PermissionDenied when the seal is
  // revoked, expired or not yet valid at `at`, or has no valid path (final);
  // Unavailable when revocation cannot be decided now (CRL missing or
  // outdated: try later); FailedPrecondition when it is not the registry's
  // seal of `union_id`; DataError for a malformed signature.
  Result<X509Ptr> PeerSeal(const std::string& union_id, const std::string& cms_der,
                           std::time_t at);
  void NoteError(const std::string& e);

  DeliveryOptions options_;
  ExchangeProvider provider_;
  std::unique_ptr<PeerTransport> transport_;
  std::unique_ptr<SharedTrust> own_trust_;  // when options_.trust is null
  const SharedTrust* trust_ = nullptr;      // options_.trust or own_trust_

  std::mutex index_mu_;
  std::unique_ptr<Index> index_;  // guarded by index_mu_
  std::mutex flush_mu_;           // one attempts flush at a time
  std::mutex notice_mu_;          // one NoteOpened/ReceiveNotice at a time

  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  bool stopping_ = false;  // guarded by mu_
  uint64_t wake_seq_ = 0;  // guarded by mu_
  std::deque<storage::Job> queue_;  // leased, not yet taken by a worker; guarded by mu_
  int busy_ = 0;                    // leased jobs queued or being handled; guarded by mu_
  bool workers_stop_ = false;        // set by Stop() after the dispatcher ended; guarded by mu_
  std::condition_variable work_cv_;  // workers: queue_ not empty or workers_stop_
  std::vector<std::thread> threads_;
  std::atomic<Exchange*> exchange_{nullptr};

  std::atomic<uint64_t> delivered_{0}, refused_{0}, retries_{0}, notices_sent_{0},
      notices_received_{0}, attempt_entries_{0}, unreachable_{0}, pruned_{0};
  std::mutex error_mu_;
  std::string last_error_;  // guarded by error_mu_
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_DELIVERY_H_
