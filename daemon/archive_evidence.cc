#include "daemon/archive_evidence.h"

#include <bit>

#include "base/json.h"
#include "base/log.h"

namespace sealpost::daemon {

namespace merkle = crypto::merkle;

namespace {

// The largest power of two smaller than n (n >= 2), as RFC 6962 splits.
uint64_t SplitPoint(uint64_t n) { return std::bit_floor(n - 1); }

}  // namespace

void MerkleNodes::Append(const merkle::Hash& leaf_hash) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(leaf_hash);
  // Each completed pair at level k completes one node at level k + 1.
  for (size_t k = 0; levels_[k].size() % 2 == 0; ++k) {
    const std::vector<merkle::Hash>& level = levels_[k];
    merkle::Hash parent = merkle::NodeHash(level[level.size() - 2], level[level.size() - 1]);
    if (levels_.size() == k + 1) levels_.emplace_back();
    levels_[k + 1].push_back(parent);
  }
}

merkle::Hash MerkleNodes::RangeRoot(uint64_t lo, uint64_t hi) const {
  const uint64_t n = hi - lo;
  if (std::has_single_bit(n) && lo % n == 0) {
    // A perfect, aligned subtree: stored once all its leaves are present.
    const size_t k = static_cast<size_t>(std::countr_zero(n));
    return levels_[k][lo / n];
  }
  const uint64_t split = SplitPoint(n);
  return merkle::NodeHash(RangeRoot(lo, lo + split), RangeRoot(lo + split, hi));
}

merkle::Hash MerkleNodes::Root(uint64_t tree_size) const {
  if (tree_size == 0) return merkle::EmptyRoot();
  return RangeRoot(0, tree_size);
}

void MerkleNodes::Path(uint64_t index, uint64_t lo, uint64_t hi,
                       std::vector<merkle::Hash>* out) const {
  const uint64_t n = hi - lo;
  if (n <= 1) return;
  const uint64_t split = SplitPoint(n);
  if (index - lo < split) {
    Path(index, lo, lo + split, out);
    out->push_back(RangeRoot(lo + split, hi));
  } else {
    Path(index, lo + split, hi, out);
    out->push_back(RangeRoot(lo, lo + split));
  }
}

Result<std::vector<merkle::Hash>> MerkleNodes::InclusionProof(uint64_t index,
                                                              uint64_t tree_size) const {
  if (index >= tree_size || tree_size > size()) {
    return Err(Status::InvalidArgument("inclusion proof of leaf " + std::to_string(index) +
                                       " in a tree of " + std::to_string(tree_size) + ": " +
                                       std::to_string(size()) + " leaves known"));
  }
  std::vector<merkle::Hash> out;
  Path(index, 0, tree_size, &out);
  return out;
}

Result<std::unique_ptr<ArchiveEvidence>> ArchiveEvidence::Create(const std::string& dir,
                                                                 MerkleNodes known) {
  return Create(dir, std::move(known), nullptr);
}

Result<std::unique_ptr<ArchiveEvidence>> ArchiveEvidence::Create(const std::string& dir,
                                                                 MerkleNodes known,
                                                                 storage::Archive* archive) {
  std::unique_ptr<ArchiveEvidence> e(new ArchiveEvidence(dir));
  if (archive != nullptr) {
    // Before the archive is read: a commit made meanwhile is either in the
    // reader's head or queued (or both; DrainFeed skips what is known).
    e->archive_ = archive;
    ArchiveEvidence* self = e.get();
    archive->SetCommitListener(
        [self](const std::vector<storage::Appended>& commit) { self->OnCommit(commit); });
  }
  std::lock_guard<std::mutex> lock(e->mu_);
  auto reader = storage::ArchiveReader::Open(dir);
  if (!reader) return Err(reader.error().WithContext("archive evidence"));
  e->reader_ = std::move(*reader);
  e->opened_at_ = std::chrono::steady_clock::now();
  if (known.size() > e->reader_->size()) {
    return Err(Status::FailedPrecondition("archive evidence: " + std::to_string(known.size()) +
                                          " leaves known, but " + dir + " has " +
                                          std::to_string(e->reader_->size()) + " entries"));
  }
  e->nodes_ = std::move(known);
  if (Status s = e->CatchUp(); !s.ok()) return Err(s);
  e->TakeReaderCheckpoint();
  if (archive != nullptr) {
    // Fed from now on: the reader is only needed again for older
    // manifests; not holding it lets merged pack files go.
    e->reader_.reset();
  }
  return e;
}

ArchiveEvidence::~ArchiveEvidence() {
  // When this returns no listener call is running, and none will.
  if (archive_ != nullptr) archive_->SetCommitListener({});
}

Status ArchiveEvidence::CatchUp() {
  // The nodes may be ahead of the reader (fed commits): then only the root
  // of the reader's size is checked.
  const uint64_t target = reader_->size();
  for (uint64_t seq = nodes_.size() + 1; seq <= target; ++seq) {
    auto m = reader_->ReadEntryFile(seq, "manifest.json");
    if (!m) return m.error().WithContext("archive evidence");
    nodes_.Append(merkle::LeafHash(*m));
  }
  if (nodes_.Root(target) != reader_->checkpoint().root) {
    return Status::DataError("archive evidence: the leaves of " + dir_ + " do not give the root of its "
                             "checkpoint of size " + std::to_string(target));
  }
  return Status::Ok();
}

void ArchiveEvidence::TakeReaderCheckpoint() {
  if (head_ && head_->size >= reader_->size()) return;
  auto cp = std::make_shared<storage::CommittedCheckpoint>();
  cp->size = reader_->size();
  cp->root = reader_->checkpoint().root;
  cp->body = reader_->checkpoint_body();
  cp->signature = reader_->checkpoint_signature();
  head_ = std::move(cp);
}

void ArchiveEvidence::Reset() {
  reader_.reset();
  nodes_ = MerkleNodes();
  head_.reset();
  recent_.clear();
  recent_first_ = 0;
}

void ArchiveEvidence::OnCommit(const std::vector<storage::Appended>& commit) {
  if (commit.empty()) return;
  {
    std::lock_guard<std::mutex> lock(feed_mu_);
    feed_.push_back(commit);
  }
  // Applied now unless a Get() holds mu_ (it may be reading git): then the
  // next commit or Get() applies it. The queue never outgrows the Gets.
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (lock.owns_lock()) DrainFeed();
}

void ArchiveEvidence::DrainFeed() {
  std::vector<std::vector<storage::Appended>> feed;
  {
    std::lock_guard<std::mutex> lock(feed_mu_);
    feed.swap(feed_);
  }
  for (std::vector<storage::Appended>& commit : feed) {
    const std::shared_ptr<const storage::CommittedCheckpoint>& cp = commit.back().checkpoint;
    // The manifests, kept for Get() whether or not the leaves follow on.
    for (storage::Appended& a : commit) {
      if (recent_.empty() || a.seq != recent_first_ + recent_.size()) {
        recent_.clear();
        recent_first_ = a.seq;
      }
      recent_.push_back(std::move(a.manifest));
    }
    while (recent_.size() > kRecentManifests) {
      recent_.pop_front();
      ++recent_first_;
    }
    if (commit.front().seq > nodes_.size() + 1) {
      // Commits missed (made before the listener was set, or nodes reset):
      // the reader path catches up when an entry needs it.
      ++counters_.feed_gaps;
      continue;
    }
    for (const storage::Appended& a : commit) {
      if (a.seq == nodes_.size() + 1) nodes_.Append(a.leaf);
    }
    if (!cp || cp->size > nodes_.size() || (head_ && cp->size <= head_->size)) continue;
    if (nodes_.Root(cp->size) != cp->root) {
      Log(LogLevel::kError, "archive evidence: the fed leaves do not give the committed root",
          "archive=" + JsonString(dir_) + " size=" + std::to_string(cp->size));
      Reset();  // rebuilt from the archive by the next Get
      continue;
    }
    head_ = cp;
  }
}

Status ArchiveEvidence::MoveReader(uint64_t seq) {
  if (!reader_ || reader_->size() < seq) {
    const auto now = std::chrono::steady_clock::now();
    ++counters_.reader_moves;
    Status moved = Status::Internal("no reader");
    if (reader_ && now - opened_at_ < kReopenAfter) {
      // Usually: the held reader moved to the new head (no reopening of
      // the repository, the seal certificate kept).
      moved = reader_->Refresh();
      if (!moved.ok()) {
        Log(LogLevel::kWarn, "archive evidence: refresh failed, reopening",
            "error=" + JsonString(moved.message()));
      }
    }
    if (!moved.ok()) {
      // Now and then a fresh reader: libgit2 keeps pack files that the
      // archive merged and deleted open for as long as a repository is.
      reader_.reset();
      auto reader = storage::ArchiveReader::Open(dir_);
      if (!reader) return reader.error().WithContext("archive evidence");
      reader_ = std::move(*reader);
      opened_at_ = now;
    }
    if (reader_->size() < seq) {
      return Status::Internal("archive evidence: entry " + std::to_string(seq) +
                              " is not at the head of " + dir_);
    }
  }
  // The nodes reach the reader's size (fed ones may be ahead) and give its root.
  if (Status s = CatchUp(); !s.ok()) {
    Reset();  // rebuilt from the start by the next call
    return Status::Internal(s.message());
  }
  TakeReaderCheckpoint();
  return Status::Ok();
}

Result<EntryEvidence> ArchiveEvidence::Get(uint64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (seq == 0) return Err(Status::InvalidArgument("archive evidence: entry 0"));
  DrainFeed();
  if (archive_ != nullptr && reader_ &&
      std::chrono::steady_clock::now() - opened_at_ >= kReopenAfter) {
    reader_.reset();  // fed: an old reader only holds merged packs open
  }
  if (!head_ || head_->size < seq) {
    if (Status s = MoveReader(seq); !s.ok()) return Err(s);
  } else {
    ++counters_.from_memory;
  }
  EntryEvidence out;
  if (seq >= recent_first_ && seq - recent_first_ < recent_.size()) {
    out.manifest = recent_[seq - recent_first_];
  } else {
    if (Status s = MoveReader(seq); !s.ok()) return Err(s);
    auto manifest = reader_->ReadEntryFile(seq, "manifest.json");
    if (!manifest) return Err(manifest.error().WithContext("archive evidence"));
    ++counters_.manifest_reads;
    out.manifest = std::move(*manifest);
  }
  out.checkpoint_body = head_->body;
  out.checkpoint_p7s = head_->signature;
  out.tree_size = head_->size;
  auto proof = nodes_.InclusionProof(seq - 1, out.tree_size);
  if (!proof) return Err(proof.error());
  out.proof = std::move(*proof);
  return out;
}

ArchiveEvidence::Counters ArchiveEvidence::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

}  // namespace sealpost::daemon
