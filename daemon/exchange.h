// The exchange service: the core of a submission, independent of HTTP.
//
//   Submit(): officers' signatures verified -> policy decided (issuer = this
//   union, type, recipients, required officers, seal) -> reference number
//   assigned (per type and year, gapless) -> the union seal added to the
//   content signature and put over document.json, both through the Signer
//   (the daemon's RemoteSigner: sealpost-signer) -> archived as one
//   document-sent entry (conventions: content, content.p7s, certs.pem,
//   document.json, document.json.p7s) -> the bundle built from the spooled
//   content with the archive's checkpoint and the entry's inclusion proof ->
//   one outbox job per recipient and channel of that recipient in the
//   policy (appliance and email: payload = bundle path; webhook: payload =
//   the document's facts, daemon/webhook.h), queued in one EnqueueBatch.
//
// Failures before the archive append change nothing (no entry, no reference
// number used, no job). A signer that is down or a token that is out is
// kUnavailable from the Signer and becomes a 503 problem here.
//
// Reference numbers: the counters are rebuilt at Create() from the archive
// (the document-sent entries of this union per type and issued_at year) and
// then kept in memory; submissions are serialised (one at a time through
// seal + append) so a number is taken only when its entry is durable.
//
// Thread-safety: Submit() and the getters may be called from any thread.
#ifndef SEALPOST_DAEMON_EXCHANGE_H_
#define SEALPOST_DAEMON_EXCHANGE_H_

#include <cstdint>
#include <ctime>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "crypto/signer.h"
#include "crypto/verify.h"
#include "daemon/problem.h"
#include "daemon/trust.h"
#include "policies/holder.h"
#include "storage/archive.h"
#include "storage/outbox.h"

namespace sealpost::daemon {

struct ExchangeOptions {
  std::string union_id;   // this union (an id of the policy registry)
  std::string state_dir;  // holds archive/, outbox.sqlite, bundles/
  // The archive's origin; default "<union_id>/archive".
  std::string origin;
  // Borrowed, must outlive the Exchange. The signer is also the archive's.
  crypto::Signer* signer = nullptr;
  crypto::KeyRef seal_key;
  policies::PolicyHolder* policy = nullptr;
  // The daemon's shared trust (daemon/trust.h): when set, its snapshot
  // verifies the officers' signatures and its CRLs are archived with the
  // entry; `verifier` and `crl_files` are then not used.
  const SharedTrust* trust = nullptr;
  // Verifies officers' signatures (trust anchors + CRLs) when `trust` is unset.
  const crypto::Verifier* verifier = nullptr;
  // The CRL files that verifier uses (DER or PEM; the daemon's verify.crls),
  // read again at each submission and archived as the entry's crls.pem (and
  // put into its bundle), so that an audit can confirm the officers' and the
  // seal's certificates as of the archiving time.
  std::vector<std::string> crl_files;
  // Outbox tuning (tests shorten the backoff); path is set by Create.
  storage::OutboxOptions outbox;
  // Fixed clock for issued_at (tests); unset: now.
  std::optional<std::time_t> now;
  // True when this process owns the state directory (sealpostd holds its
  // lock, sealpostd.lock): leases left in the outbox by a previous process
  // that died end at once instead of after lease_millis.
  bool owns_state_dir = false;
};

struct SubmitRequest {
  std::string content_path;   // the spooled content (read, never moved)
  std::string content_name;   // the client's file name (display, UTF-8)
  std::string media_type;     // e.g. "application/pdf"
  std::string type;           // document type id
  std::string subject;
  std::vector<std::string> recipients;  // union ids
  // Officers' detached signature over the content (DER or PEM), empty when
  // none: one SignedData with every officer's SignerInfo.
  std::string officer_signature;
};

struct Submitted {
  std::string id;         // UUIDv4
  std::string reference;  // "" when the type has no reference pattern
  uint64_t seq = 0;       // the document-sent entry
  std::string issued_at;
  std::string content_sha256;
  std::string seal_subject;  // the seal certificate's subject (UTF-8)
  std::string seal_serial;   // upper-case hex
  std::string bundle_path;
  std::vector<std::string> recipients;
};

class Exchange {
 public:
  // Opens <state_dir>/archive (creating it, signed by the seal, when it does
  // not exist), the outbox <state_dir>/outbox.sqlite and <state_dir>/bundles,
  // and rebuilds the reference counters. Errors: InvalidArgument (options),
  // the Archive's and Outbox's errors (Unavailable: the signer is down at
  // archive creation/opening).
  [[nodiscard]] static Result<std::unique_ptr<Exchange>> Create(ExchangeOptions options);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // The whole submission (see the file comment). Problems:
  //   422 officer-signature-invalid  the .p7s does not parse, is not over
  //                                  the content, or does not verify;
  //   403 policy-refused             the policy's first failed rule;
  //   503 signer-unavailable         (Retry-After) the seal cannot be used;
  //   500 internal                   archive/bundle/outbox failure.
  std::expected<Submitted, Problem> Submit(const SubmitRequest& request);

  // The bundle of a document sent from here; NotFound if unknown.
  [[nodiscard]] Result<std::string> BundlePath(const std::string& id) const;

  // The seq of the document-sent entry of a document sent from here;
  // NotFound if unknown.
  [[nodiscard]] Result<uint64_t> SentSeq(const std::string& id) const;

  const ExchangeOptions& options() const { return options_; }
  storage::Archive& archive() { return *archive_; }
  storage::Outbox& outbox() { return *outbox_; }
  const std::string& archive_dir() const { return archive_dir_; }

 private:
  Exchange() = default;
  [[nodiscard]] Status LoadCounters();

  ExchangeOptions options_;
  std::string archive_dir_;
  std::string bundle_dir_;
  std::unique_ptr<storage::Archive> archive_;
  std::unique_ptr<storage::Outbox> outbox_;
  std::mutex submit_mu_;  // one submission at a time through seal + append
  std::map<std::pair<std::string, int>, uint64_t> counters_;  // (type, year) -> last; submit_mu_
  mutable std::mutex ids_mu_;
  std::map<std::string, uint64_t> sent_;  // document id -> seq; guarded by ids_mu_
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_EXCHANGE_H_
