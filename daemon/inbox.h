// The peer inbox: a bundle delivered by another union's appliance, verified,
// archived once and receipted. Independent of HTTP like the Exchange; the
// thin handler of POST /api/v1/inbox (peer listener) is in server.cc. Wire
// contract: docs/exchange.md ("The inbox").
//
// Receive() for a bundle from peer union P (P = the union whose tls_identity
// matched the client certificate), in this order:
//   1. the form (crypto::ReadBundle: ZIP limits, members, strict parsers)
//      -> 422 bundle-invalid;
//   2. document.json's issuer must be P             -> 403 issuer-mismatch;
//   3. crypto::VerifyBundle with our trust anchors and CRLs (the bundle's
//      and the daemon's): every signature, chains, revocation, the archive
//      manifest against the carried files, the checkpoint signed by the
//      document seal, the inclusion proof, origin "<P>/archive"; and the
//      document seal must be P's `seal` identity in the policy registry
//                                                   -> 422 bundle-invalid;
//   4. a document id already received: from P with the same content, the
//      stored receipt is answered again (200, nothing archived); otherwise
//                                                   -> 422 bundle-invalid;
//   5. this union among the recipients, and policies::EvaluateVerifiedDocument
//      (may P issue this type to these recipients, required officers, seal,
//      size, media type)                            -> 403 policy-refused;
//   6. the sender's checkpoint against the largest checkpoint seen from P:
//      same size and root, or a consistency proof (header
//      Sealpost-Consistency-Proof) between the two sizes. No proof or one
//      for other sizes -> 409 consistency-proof-required (from_size,
//      to_size); same size with another root, or a proof that fails
//      -> 422 checkpoint-inconsistent, recorded as an alarm;
//   7. ONE document-received entry appended (durable), the peer's checkpoint
//      state updated, the DeliveryReceipt signed by our seal over our
//      checkpoint after the append, stored durably, answered (200).
// Refusals change nothing in the archive; each is logged and counted by
// reason (MetricsText()).
//
// State (<state_dir>/inbox/): peers/<union>.checkpoint (the largest
// checkpoint accepted from each peer; a cache: rebuilt from the archive's
// document-received entries at Create, the archive wins), receipts/ (the
// receipt answered for each received document, so a redelivery gets the
// same bytes), alarms.jsonl (forked histories seen; kept for health).
//
// Thread-safety: every method may be called from any thread. Verification
// runs concurrently; steps 4 to 7 run one at a time per sender (its
// checkpoints are checked in order), deliveries from different senders run
// concurrently (their appends share archive commits), and one document id
// is handled by one delivery at a time (a redelivery waits for the first).
#ifndef SEALPOST_DAEMON_INBOX_H_
#define SEALPOST_DAEMON_INBOX_H_

#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/bundle.h"
#include "crypto/checkpoint.h"
#include "crypto/merkle.h"
#include "crypto/receipt.h"
#include "crypto/signer.h"
#include "daemon/problem.h"
#include "daemon/startup_scan.h"
#include "daemon/trust.h"
#include "policies/holder.h"
#include "storage/archive.h"

namespace sealpost::daemon {

// The request header carrying a consistency proof of the SENDER's log:
//   Sealpost-Consistency-Proof: <from>:<to>:<base64 of the concatenated
//   32-byte hashes>   (from < to, decimal without leading zeros; the base64
//   is canonical with padding and may be empty when the proof is empty).
inline constexpr std::string_view kConsistencyProofHeader = "Sealpost-Consistency-Proof";
inline constexpr size_t kMaxConsistencyProofHashes = 128;

struct ConsistencyProofHeader {
  uint64_t from = 0;
  uint64_t to = 0;
  std::vector<crypto::merkle::Hash> hashes;
  friend bool operator==(const ConsistencyProofHeader&, const ConsistencyProofHeader&) = default;
};
// Strict parse of the header value. DataError naming the header and what is
// wrong (syntax, from >= to, non-canonical base64, not a multiple of 32
// bytes, more than kMaxConsistencyProofHashes hashes).
[[nodiscard]] Result<ConsistencyProofHeader> ParseConsistencyProofHeader(std::string_view value);
std::string FormatConsistencyProofHeader(const ConsistencyProofHeader& proof);

class ReceivedDocumentsScan;  // below

struct InboxOptions {
  std::string union_id;   // this union
  std::string state_dir;  // <state_dir>/inbox is created
  // Spooled bundles are extracted here (must exist); default <state_dir>/inbox/tmp.
  std::string work_dir;
  // Borrowed, must outlive the Inbox: the Exchange's archive, its signer and
  // seal key (receipts are signed by our seal), the policy in force.
  storage::Archive* archive = nullptr;
  crypto::Signer* signer = nullptr;
  crypto::KeyRef seal_key;
  policies::PolicyHolder* policy = nullptr;
  // Trust for bundles: the daemon's shared trust (daemon/trust.h; a
  // snapshot per delivery, CRLs fetched meanwhile included). When null, the
  // files below are loaded once at Create (tests of the inbox alone).
  const SharedTrust* trust = nullptr;
  // Anchors (at least one file when `trust` is null) and CRLs (files).
  std::vector<std::string> trust_anchors;
  std::vector<std::string> crls;
  crypto::BundleLimits limits;
  // Fixed clock (tests); unset: now.
  std::optional<std::time_t> now;
  // Filled by the start-up pass (daemon/startup_scan.h); Create catches it
  // up with the entries after it. Unset: Create reads every manifest.
  std::shared_ptr<ReceivedDocumentsScan> scan;
};

// One delivery as the HTTP layer hands it over.
struct Delivery {
  std::string peer;         // union id of the authenticated peer
  std::string bundle_path;  // the spooled body (read, never moved or removed)
  std::optional<ConsistencyProofHeader> proof;
};

struct InboxAccepted {
  crypto::SignedReceipt receipt;
  std::string document_id;
  uint64_t seq = 0;         // our document-received entry
  bool redelivery = false;  // answered from the stored receipt, nothing archived
};

// A received document (for the user API: GET /api/v1/inbox and friends).
struct ReceivedDocument {
  std::string id;
  std::string peer;  // the issuer
  uint64_t seq = 0;  // the document-received entry in our archive
  std::string type, reference, subject, issued_at, received_at;
  std::string content_name, content_media_type, content_sha256;
  uint64_t content_size = 0;
};

struct InboxAlarm {
  std::string time;  // RFC 3339
  std::string peer;
  std::string document_id;
  std::string detail;  // language-neutral: sizes, roots, what failed
};

// The largest checkpoint accepted from a peer and the entry that brought it.
struct InboxPeerState {
  crypto::Checkpoint checkpoint;
  uint64_t seq = 0;
};

// What the Inbox rebuilds from the archive (daemon/startup_scan.h): the
// documents received, the receipts we archived, the peers' checkpoints.
class ReceivedDocumentsScan final : public ManifestConsumer {
 public:
  explicit ReceivedDocumentsScan(std::string union_id) : union_id_(std::move(union_id)) {}
  uint64_t covered() const override { return covered_; }
  [[nodiscard]] Status Consume(uint64_t seq, std::string_view text,
                               const storage::Manifest& m) override;

 private:
  friend class Inbox;
  std::string union_id_;
  uint64_t covered_ = 0;
  std::map<std::string, ReceivedDocument> received_;  // by document id
  std::vector<std::string> order_;                    // ids in archive order
  std::map<std::string, uint64_t> receipt_entries_;   // document id -> entry seq
  std::map<std::string, InboxPeerState> peers_;
};

class Inbox {
 public:
  // Creates <state_dir>/inbox/{peers,receipts,tmp}, loads the trust, rebuilds
  // the received documents and the peers' checkpoints from the archive's
  // document-received entries, and reads the alarms. Errors: InvalidArgument
  // (options), NotFound/DataError (trust files), IoError, the archive
  // reader's errors.
  [[nodiscard]] static Result<std::unique_ptr<Inbox>> Create(InboxOptions options);
  ~Inbox();
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  // The whole reception (see the file comment). Problems: 422
  // bundle-invalid, 403 issuer-mismatch, 403 policy-refused, 409
  // consistency-proof-required (extension members from_size, to_size), 422
  // checkpoint-inconsistent, 503 signer-unavailable (Retry-After; the seal
  // cannot sign now: nothing archived, or the entry archived and the
  // receipt made on the retry), 500 internal.
  std::expected<InboxAccepted, Problem> Receive(const Delivery& delivery);

  // Received documents (from memory; rebuilt from the archive at Create).
  std::optional<ReceivedDocument> Received(const std::string& id) const;
  std::vector<ReceivedDocument> List() const;  // in archive order
  // The largest checkpoint accepted from `peer`.
  std::optional<crypto::Checkpoint> PeerCheckpoint(const std::string& peer) const;
  std::vector<InboxAlarm> Alarms() const;
  // Prometheus text (counters: accepted, redeliveries, refusals by reason,
  // alarms), to append to /metrics.
  std::string MetricsText() const;

 private:
  Inbox() = default;
  [[nodiscard]] Status Rebuild();
  std::expected<InboxAccepted, Problem> Refuse(const std::string& reason, Problem p,
                                               const Delivery& d, const std::string& id);
  // Signs (or returns the stored) receipt for entry `seq`, stores it, and
  // archives it (a delivery-receipt entry referring to the document's entry,
  // once per document) before it is given to the sender.
  // REQUIRES: doc.id in in_flight_ (taken by this thread); mu_ not held.
  std::expected<crypto::SignedReceipt, Problem> ReceiptFor(const ReceivedDocument& doc);
  std::expected<void, Problem> ArchiveReceipt(const ReceivedDocument& doc,
                                              const crypto::SignedReceipt& receipt);
  // Our signed checkpoint (exact bytes) of a tree that holds entry `seq`:
  // the one kept when it does, else the head's, read once and kept.
  struct SignedCheckpoint {
    uint64_t size = 0;
    std::string body, signature;
  };
  [[nodiscard]] Result<SignedCheckpoint> CheckpointCovering(uint64_t seq);
  void RaiseAlarm(const std::string& peer, const std::string& id, const std::string& detail);
  std::string ReceiptPath(const std::string& id) const;
  std::time_t Now() const;

  InboxOptions options_;
  std::string dir_;
  X509StackPtr anchors_;
  X509CrlStackPtr crls_;

  mutable std::mutex mu_;  // guards everything below; never held across a signature or append
  std::condition_variable in_flight_cv_;
  std::set<std::string> in_flight_;  // document ids being received or receipted
  // One per sender, held from step 4 to the end of step 7 (not mu_).
  std::map<std::string, std::shared_ptr<std::mutex>> peer_mu_;
  std::map<std::string, ReceivedDocument> received_;  // by document id
  std::vector<std::string> order_;                    // ids in archive order
  // Receipts we issued and archived: document id -> entry seq.
  std::map<std::string, uint64_t> receipt_entries_;
  using PeerState = InboxPeerState;
  std::map<std::string, PeerState> peers_;

  // The signed checkpoint receipts are made over (CheckpointCovering).
  std::mutex checkpoint_mu_;  // never held with mu_ wanted
  SignedCheckpoint checkpoint_;
  uint64_t checkpoint_reads_ = 0;  // archive readers opened for it

  mutable std::mutex stats_mu_;  // guards the counters and alarms (never held with mu_ wanted)
  std::vector<InboxAlarm> alarms_;
  uint64_t accepted_ = 0, redeliveries_ = 0;
  std::map<std::string, uint64_t> refused_;  // reason -> count
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_INBOX_H_
