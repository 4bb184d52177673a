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
  std::unique_ptr<ArchiveEvidence> e(new ArchiveEvidence(dir));
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
  return e;
}

Status ArchiveEvidence::CatchUp() {
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

Result<EntryEvidence> ArchiveEvidence::Get(uint64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (seq == 0) return Err(Status::InvalidArgument("archive evidence: entry 0"));
  if (!reader_ || reader_->size() < seq) {
    const auto now = std::chrono::steady_clock::now();
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
      auto reader = storage::ArchiveReader::Open(dir_);
      if (!reader) return Err(reader.error().WithContext("archive evidence"));
      reader_ = std::move(*reader);
      opened_at_ = now;
    }
    if (reader_->size() < seq) {
      return Err(Status::Internal("archive evidence: entry " + std::to_string(seq) +
                                  " is not at the head of " + dir_));
    }
    if (Status s = CatchUp(); !s.ok()) {
      reader_.reset();
      nodes_ = MerkleNodes();  // rebuilt from the start by the next call
      return Err(Status::Internal(s.message()));
    }
  }
  EntryEvidence out;
  auto manifest = reader_->ReadEntryFile(seq, "manifest.json");
  if (!manifest) return Err(manifest.error().WithContext("archive evidence"));
  out.manifest = std::move(*manifest);
  out.checkpoint_body = reader_->checkpoint_body();
  out.checkpoint_p7s = reader_->checkpoint_signature();
  out.tree_size = reader_->size();
  auto proof = nodes_.InclusionProof(seq - 1, out.tree_size);
  if (!proof) return Err(proof.error());
  out.proof = std::move(*proof);
  return out;
}

}  // namespace sealpost::daemon
