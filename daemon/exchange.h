// The exchange service: the core of a submission, independent of HTTP.
//
//   Submit(): officers' signatures verified -> policy decided (issuer = this
//   union, type, recipients, required officers, seal) -> reference number
//   assigned (per type and year, gapless) -> the union seal added to the
//   content signature and put over document.json, both through the Signer
//   (the daemon's RemoteSigner: sealpost-signer) -> archived as one
//   document-sent entry (conventions: content, content.p7s, certs.pem,
//   document.json, document.json.p7s) -> the bundle built from the spooled
//   content with the archive's checkpoint and the entry's inclusion proof
//   (in memory and kept in a bounded cache when small, else a file:
//   ExchangeOptions::memory_bundle_max_bytes) ->
//   one outbox job per recipient and channel of that recipient in the
//   policy (appliance and email: payload = the bundle file's path, which
//   the worker does not read: it asks Bundle(); webhook: payload =
//   the document's facts, daemon/webhook.h), queued in one EnqueueBatch.
//
// Failures before the archive append change nothing (no entry, no reference
// number used, no job). A signer that is down or a token that is out is
// kUnavailable from the Signer and becomes a 503 problem here.
//
// Reference numbers (docs/decisions/0010-concurrent-submissions.md): only
// taking a number is serialised (counters_mu_, held for microseconds);
// the seal signatures, the archive append (concurrent appends share one
// commit), the bundle and the outbox insert run concurrently. A number is
// reserved before document.json is sealed (it is part of it); when the
// submission fails before its entry is durable, the number goes back and
// is the next one handed out for that type and year (smallest first). Each
// document-sent entry records its number (field reference_number), so the
// counters and the numbers freed by a process that ended mid-submission
// are rebuilt at Create() from the archive: the numbers in the archive
// have no gap once the next submission of that type has been archived.
//
// Durability: Submit() answers only after the entry is durable and its
// outbox jobs are committed, whatever order concurrent submissions end in.
// The bundle (cached bytes or file) is derived from the archive and its file
// rebuilt from it when it is missing or incomplete (Bundle, EnsureBundle); jobs a crash left out after the
// append are queued at the next start (RecoverUnqueued). See docs/daemon.md
// "Bundles".
//
// Thread-safety: Submit() and the getters may be called from any thread.
#ifndef SEALPOST_DAEMON_EXCHANGE_H_
#define SEALPOST_DAEMON_EXCHANGE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <time.h>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "crypto/signer.h"
#include "crypto/verify.h"
#include "daemon/archive_evidence.h"
#include "daemon/bundle_cache.h"
#include "daemon/problem.h"
#include "daemon/startup_scan.h"
#include "daemon/trust.h"
#include "policies/holder.h"
#include "storage/archive.h"
#include "storage/outbox.h"

namespace sealpost::daemon {

// What Exchange::Create rebuilds from the archive (daemon/startup_scan.h):
// the documents sent from here and the reference numbers they carry.
class SentDocumentsScan final : public ManifestConsumer {
 public:
  explicit SentDocumentsScan(std::string union_id) : union_id_(std::move(union_id)) {}
  uint64_t covered() const override { return covered_; }
  [[nodiscard]] Status Consume(uint64_t seq, std::string_view text,
                               const storage::Manifest& m) override;

 private:
  friend class Exchange;
  using CounterKey = std::pair<std::string, int>;  // (type, year)
  std::string union_id_;
  uint64_t covered_ = 0;
  std::map<std::string, uint64_t> sent_;  // document id -> seq
  // Entries written before reference_number existed were numbered in
  // archive order without gaps (one submission at a time): 1..legacy.
  std::map<CounterKey, uint64_t> legacy_;
  std::map<CounterKey, std::set<uint64_t>> numbered_;
};

class LeafHashesScan;  // daemon/archive_evidence.h

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
  // Filled by the start-up pass (daemon/startup_scan.h); Create catches them
  // up with the entries after them instead of reading the whole archive.
  // Unset: Create reads every manifest itself.
  std::shared_ptr<SentDocumentsScan> sent_scan;
  std::shared_ptr<LeafHashesScan> leaves_scan;
  // Small bundles in memory (docs/decisions/0014-small-bundles-in-memory.md):
  // a submission whose bundle is estimated at most memory_bundle_max_bytes
  // is built in memory and kept in a cache of at most bundle_cache_bytes
  // (least recently used dropped first) instead of a file in bundles/.
  // Either 0: every bundle is a file (sealpostd's defaults: 1 MiB, 64 MiB,
  // daemon/config.h).
  uint64_t memory_bundle_max_bytes = 0;
  uint64_t bundle_cache_bytes = 0;
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
  // The bundle file; empty when the bundle was made in memory (kept in the
  // cache: Exchange::Bundle).
  std::string bundle_path;
  std::vector<std::string> recipients;
};

// Where a sent document's bundle is: its bytes (from the cache of small
// bundles; shared, immutable) or else the path of its file.
struct BundleSource {
  std::shared_ptr<const std::string> bytes;
  std::string path;  // when bytes is null
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

  // The path of the bundle of a document sent from here, made again from
  // the archive (daemon/bundle_rebuild.h) when the file is missing or not a
  // complete bundle (a crash before it was written, a power loss after).
  // A file this process put in place is taken as it is; an older one is
  // read through once (ZIP structure and every member's CRC) before it is
  // first used. Errors: NotFound (no
  // such document), the rebuild's.
  [[nodiscard]] Result<std::string> EnsureBundle(const std::string& id);

  // The bundle of a document sent from here for a delivery or a download:
  // the bytes when the cache of small bundles holds them, otherwise the
  // file of EnsureBundle (made from the archive when missing: after an
  // eviction or a restart). Errors: EnsureBundle's.
  [[nodiscard]] Result<BundleSource> Bundle(const std::string& id);

  // The cache of small bundles, or null when every bundle is a file.
  const BundleCache* bundle_cache() const { return bundle_cache_.get(); }

  // The seq of the document-sent entry of a document sent from here;
  // NotFound if unknown.
  [[nodiscard]] Result<uint64_t> SentSeq(const std::string& id) const;

  const ExchangeOptions& options() const { return options_; }
  storage::Archive& archive() { return *archive_; }
  storage::Outbox& outbox() { return *outbox_; }
  const std::string& archive_dir() const { return archive_dir_; }

  // Where successful submissions spent their time, summed since Create
  // (wall clock, nanoseconds): verify = content digest, officers'
  // signatures, policy; seal = both seal signatures through the signer;
  // append = the archive append until durable; bundle = evidence + bundle
  // file; outbox = the jobs' transaction.
  struct StepTimes {
    uint64_t submissions = 0;
    uint64_t verify_ns = 0, seal_ns = 0, append_ns = 0, bundle_ns = 0, outbox_ns = 0;
  };
  StepTimes step_times() const;

 private:
  // A reference number taken for (type, year); see the file comment.
  struct Counter {
    uint64_t last = 0;         // the largest number handed out or archived
    std::set<uint64_t> freed;  // numbers below `last` not archived, handed out first
  };
  using CounterKey = std::pair<std::string, int>;
  class Reservation;

  Exchange() = default;
  // Start-up repair: every document sent from here, archived after the mark
  // <state_dir>/sent-queued-through and up to `covered`, that has no
  // outbox job at all (the process ended between the archive append and
  // the jobs' commit) gets its jobs now, its bundle rebuilt if needed;
  // then the mark moves to `covered`. Errors: the outbox's or archive's
  // (the mark does not move).
  [[nodiscard]] Status RecoverUnqueued(uint64_t covered);
  // Moves the mark of RecoverUnqueued to the archive's size, or below the
  // first submission still between its append and its jobs' commit (or
  // whose commit failed); at most once a minute unless `force`.
  void AdvanceQueuedMark(bool force);
  class QueueFloor;
  // Step 10 of Submit: the bundle of the new entry `seq`.
  // Built in memory into bundle_cache_ when `in_memory`, else the file.
  [[nodiscard]] Status BuildSubmittedBundle(uint64_t seq, const std::string& id,
                                            const std::string& content_path,
                                            const std::string& doc_json, const std::string& doc_p7s,
                                            const std::string& content_p7s,
                                            const std::string& certs_pem,
                                            const std::string& crls_pem,
                                            const std::string& bundle_path, std::time_t now,
                                            bool in_memory);
  [[nodiscard]] Status LoadCounters(const SentDocumentsScan& scan);
  uint64_t TakeNumber(const CounterKey& key);
  // The seal's path under `verifier` at `at` (for the policy's seal rule);
  // one validation per second, trust snapshot and seal certificate.
  crypto::PathResult SealPath(const std::shared_ptr<const TrustSnapshot>& trust,
                              const crypto::Verifier* verifier, X509* seal, std::time_t at);
  void ReturnNumber(const CounterKey& key, uint64_t number);

  ExchangeOptions options_;
  std::string archive_dir_;
  std::string bundle_dir_;
  std::unique_ptr<storage::Archive> archive_;
  std::unique_ptr<storage::Outbox> outbox_;
  std::unique_ptr<ArchiveEvidence> evidence_;
  std::unique_ptr<BundleCache> bundle_cache_;  // null: no bundle in memory
  std::mutex counters_mu_;  // only around taking / returning a number
  std::map<CounterKey, Counter> counters_;  // guarded by counters_mu_
  struct KeptSealPath {
    std::shared_ptr<const TrustSnapshot> trust;  // keeps `verifier` alive when it is the snapshot's
    const crypto::Verifier* verifier = nullptr;
    X509Ptr seal;
    std::time_t at = 0;
    crypto::PathResult result;
  };
  std::mutex seal_path_mu_;
  std::optional<KeptSealPath> seal_path_;  // guarded by seal_path_mu_
  mutable std::mutex ids_mu_;
  std::map<std::string, uint64_t> sent_;  // document id -> seq; guarded by ids_mu_
  std::mutex mark_mu_;  // guards the five below
  std::multiset<uint64_t> floors_;  // QueueFloor
  bool mark_known_ = false;
  uint64_t mark_written_ = 0;
  std::chrono::steady_clock::time_point mark_written_at_;
  struct timespec started_ {};  // CLOCK_REALTIME at Create
  // Whether bundle files are synced when written: no, they are rebuilt
  // from the archive when a power loss drops them (EnsureBundle).
  bool bundle_sync_ = false;
  std::mutex rebuild_mu_;
  std::set<std::string> checked_;  // older bundle files read through; guarded by rebuild_mu_
  std::atomic<uint64_t> t_count_{0}, t_verify_{0}, t_seal_{0}, t_append_{0}, t_bundle_{0},
      t_outbox_{0};
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_EXCHANGE_H_
