// What a bundle carries from our archive for one of its entries — the
// entry's manifest, a signed checkpoint at or after it and the inclusion
// proof in that checkpoint's tree — without reading every manifest again
// for every bundle.
//
// ArchiveReader::InclusionProof reads tree_size manifests and hashes O(n)
// nodes per call: per submission that grew with the archive (quadratic over
// its life). ArchiveEvidence keeps the Merkle tree's nodes in memory (every
// leaf hash and every complete subtree root: about 2n hashes, 64 MiB per
// million entries), loaded once at Create and extended by the entries
// appended since (whoever appended them: exchange, inbox, delivery); a
// proof is then O(log n) lookups (O(log^2 n) hashes for the right edge).
// After each extension the tree's root is checked against the signed
// checkpoint read from the archive, so a cache that disagrees with the
// archive is reported, never used.
//
// Fed in process: given the storage::Archive this process appends through,
// ArchiveEvidence listens to its commits (Archive::SetCommitListener): each
// durable commit hands over its entries' manifests and leaf hashes and its
// signed checkpoint, exactly as the writer committed them, before any of its
// appends is acknowledged. Get(seq) for such an entry reads nothing back
// from git (no reader refresh, no CMS parse or verification per commit):
// the checkpoint is the newest commit's, the proof from the nodes, the
// manifest from the last kRecentManifests kept. The reader path stays for
// Create's catch-up, for older entries' manifests (bundle rebuilds), and
// whenever the feed missed commits (it then catches up from the archive).
//
// Thread-safety: Get() may be called from any thread (one internal mutex;
// the reader it holds is used under it only). The commit listener queues
// under a mutex of its own and applies the queue only when it can take the
// main one at once, so an archive commit never waits for a Get() reading git.
#ifndef SEALPOST_DAEMON_ARCHIVE_EVIDENCE_H_
#define SEALPOST_DAEMON_ARCHIVE_EVIDENCE_H_

#include <chrono>
#include <deque>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "crypto/merkle.h"
#include "daemon/startup_scan.h"
#include "storage/archive.h"
#include "storage/reader.h"

namespace sealpost::daemon {

// The nodes of an RFC 6962 tree kept for proofs: levels_[0] are the leaf
// hashes, levels_[k][i] the root of the perfect subtree of 2^k leaves
// starting at leaf i * 2^k (present once all its leaves are). Not
// synchronised.
class MerkleNodes {
 public:
  void Append(const crypto::merkle::Hash& leaf_hash);
  uint64_t size() const { return levels_.empty() ? 0 : levels_[0].size(); }
  // MTH of the first `tree_size` leaves; REQUIRES tree_size <= size().
  crypto::merkle::Hash Root(uint64_t tree_size) const;
  // PATH(index, D[tree_size]) as crypto::merkle::InclusionProof computes
  // it; InvalidArgument unless index < tree_size <= size().
  Result<std::vector<crypto::merkle::Hash>> InclusionProof(uint64_t index, uint64_t tree_size) const;

 private:
  crypto::merkle::Hash RangeRoot(uint64_t lo, uint64_t hi) const;
  void Path(uint64_t index, uint64_t lo, uint64_t hi, std::vector<crypto::merkle::Hash>* out) const;
  std::vector<std::vector<crypto::merkle::Hash>> levels_;
};

// The leaf hashes of the archive, gathered by the start-up pass
// (daemon/startup_scan.h) for ArchiveEvidence::Create.
class LeafHashesScan final : public ManifestConsumer {
 public:
  uint64_t covered() const override { return nodes_.size(); }
  [[nodiscard]] Status Consume(uint64_t, std::string_view text, const storage::Manifest&) override {
    nodes_.Append(crypto::merkle::LeafHash(text));
    return Status::Ok();
  }
  const MerkleNodes& nodes() const { return nodes_; }

 private:
  MerkleNodes nodes_;
};

struct EntryEvidence {
  std::string manifest;         // manifest.json of the entry, as committed
  std::string checkpoint_body;  // log/checkpoint of a commit holding the entry
  std::string checkpoint_p7s;   // log/checkpoint.p7s of that commit
  uint64_t tree_size = 0;       // that checkpoint's size (>= seq)
  std::vector<crypto::merkle::Hash> proof;  // PATH(seq - 1, tree_size)
};

class ArchiveEvidence {
 public:
  // Reads every manifest of the archive in `dir` once. Errors: the
  // reader's, DataError when the leaves do not give the checkpoint's root.
  // `known`: the leaves of entries 1..known.size() already read (by the
  // start-up pass); only the manifests after them are read. The root is
  // checked against the checkpoint either way.
  [[nodiscard]] static Result<std::unique_ptr<ArchiveEvidence>> Create(const std::string& dir,
                                                                       MerkleNodes known = {});

  // With `archive` (the one this process appends through, open on `dir`;
  // it must outlive the ArchiveEvidence): fed by its commits from now on
  // (the listener is set before the archive is read, and removed by the
  // destructor).
  [[nodiscard]] static Result<std::unique_ptr<ArchiveEvidence>> Create(const std::string& dir,
                                                                       MerkleNodes known,
                                                                       storage::Archive* archive);
  ~ArchiveEvidence();
  ArchiveEvidence(const ArchiveEvidence&) = delete;
  ArchiveEvidence& operator=(const ArchiveEvidence&) = delete;

  // The evidence for entry `seq`, which must be durable (acknowledged by
  // Archive::Append). Fed entries (see above) are answered from memory,
  // with the newest committed checkpoint. Otherwise: when the reader held does not reach `seq` it is
  // moved to the archive's head (ArchiveReader::Refresh, which checks the
  // new checkpoint's signature as Open does), or reopened when it is older
  // than kReopenAfter or the refresh failed. Errors: the reader's; Internal when the in-memory tree
  // disagrees with the archive's checkpoint.
  [[nodiscard]] Result<EntryEvidence> Get(uint64_t seq);

  // How Get() calls were answered (for tests and metrics).
  struct Counters {
    uint64_t from_memory = 0;     // checkpoint and proof without moving the reader
    uint64_t reader_moves = 0;    // reader refreshed or reopened
    uint64_t manifest_reads = 0;  // manifests read back from git
    uint64_t feed_gaps = 0;       // fed commits that did not follow the nodes
  };
  Counters counters() const;

  // Manifests of the newest fed entries kept for Get() (about 1 KiB each).
  static constexpr size_t kRecentManifests = 4096;

 private:
  explicit ArchiveEvidence(std::string dir) : dir_(std::move(dir)) {}
  // Extends nodes_ to the reader's size and checks the root. REQUIRES mu_.
  [[nodiscard]] Status CatchUp();
  // The listener: queues a commit, and applies the queue when mu_ is free
  // (try_lock: never waits for a Get()).
  void OnCommit(const std::vector<storage::Appended>& commit);
  // Applies the queued commits to nodes_, recent_ and head_. REQUIRES mu_.
  void DrainFeed();
  // Moves (refreshes or reopens) the reader so that it reaches `seq`, and
  // catches the nodes up with it. REQUIRES mu_.
  [[nodiscard]] Status MoveReader(uint64_t seq);
  // The reader's head checkpoint becomes head_ if it is newer. REQUIRES mu_.
  void TakeReaderCheckpoint();
  // Forgets the nodes and checkpoint (rebuilt from the archive next). REQUIRES mu_.
  void Reset();

  // A reader is reopened at most this long after it was opened, so pack
  // files the archive merged and deleted are not held open for long.
  static constexpr std::chrono::seconds kReopenAfter{10};

  const std::string dir_;
  storage::Archive* archive_ = nullptr;  // fed by; the listener is removed at destruction
  mutable std::mutex mu_;
  std::chrono::steady_clock::time_point opened_at_;  // of reader_; guarded by mu_
  std::unique_ptr<storage::ArchiveReader> reader_;  // guarded by mu_
  MerkleNodes nodes_;                               // guarded by mu_
  // The newest signed checkpoint whose leaves nodes_ holds (nullptr: none
  // yet); guarded by mu_. Invariant: head_->size <= nodes_.size() and
  // nodes_.Root(head_->size) == head_->root.
  std::shared_ptr<const storage::CommittedCheckpoint> head_;
  // Manifests of fed entries recent_first_ .. recent_first_ + size - 1; guarded by mu_.
  std::deque<std::string> recent_;
  uint64_t recent_first_ = 0;
  Counters counters_;  // guarded by mu_

  std::mutex feed_mu_;
  std::vector<std::vector<storage::Appended>> feed_;  // commits not yet applied; feed_mu_
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_ARCHIVE_EVIDENCE_H_
