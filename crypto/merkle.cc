#include "crypto/merkle.h"

#include <bit>
#include <cstring>

#include <openssl/evp.h>

#include "base/encoding.h"

namespace sealpost::crypto::merkle {
namespace {

// Fetched once: EVP_sha256() would do an implicit fetch on every digest.
// Never freed (process lifetime), which keeps it usable from any thread.
const EVP_MD* Sha256() {
  static const EVP_MD* md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? static_cast<const EVP_MD*>(fetched) : EVP_sha256();
  }();
  return md;
}

Hash Digest(const unsigned char* data, size_t len) {
  Hash out;
  unsigned int n = 0;
  // SHA-256 over bytes in memory cannot fail short of memory exhaustion;
  // treat that as fatal rather than return a wrong hash.
  if (EVP_Digest(data, len, out.data(), &n, Sha256(), nullptr) != 1 || n != kHashSize) abort();
  return out;
}

// Largest power of two strictly less than n (n >= 2).
uint64_t SplitPoint(uint64_t n) { return std::bit_floor(n - 1); }

Hash Mth(std::span<const Hash> leaves) {
  if (leaves.empty()) return EmptyRoot();
  if (leaves.size() == 1) return leaves[0];
  uint64_t k = SplitPoint(leaves.size());
  return NodeHash(Mth(leaves.subspan(0, k)), Mth(leaves.subspan(k)));
}

void Path(uint64_t m, std::span<const Hash> leaves, std::vector<Hash>* out) {
  if (leaves.size() <= 1) return;
  uint64_t k = SplitPoint(leaves.size());
  if (m < k) {
    Path(m, leaves.subspan(0, k), out);
    out->push_back(Mth(leaves.subspan(k)));
  } else {
    Path(m - k, leaves.subspan(k), out);
    out->push_back(Mth(leaves.subspan(0, k)));
  }
}

void SubProof(uint64_t m, std::span<const Hash> leaves, bool complete, std::vector<Hash>* out) {
  uint64_t n = leaves.size();
  if (m == n) {
    if (!complete) out->push_back(Mth(leaves));
    return;
  }
  uint64_t k = SplitPoint(n);
  if (m <= k) {
    SubProof(m, leaves.subspan(0, k), complete, out);
    out->push_back(Mth(leaves.subspan(k)));
  } else {
    SubProof(m - k, leaves.subspan(k), false, out);
    out->push_back(Mth(leaves.subspan(0, k)));
  }
}

Status Fail(std::string m) { return Status::FailedPrecondition(std::move(m)); }

}  // namespace

Hash LeafHash(std::string_view data) {
  std::string buf;
  buf.reserve(data.size() + 1);
  buf.push_back('\0');
  buf.append(data);
  return Digest(reinterpret_cast<const unsigned char*>(buf.data()), buf.size());
}

Hash NodeHash(const Hash& left, const Hash& right) {
  unsigned char buf[1 + 2 * kHashSize];
  buf[0] = 0x01;
  std::memcpy(buf + 1, left.data(), kHashSize);
  std::memcpy(buf + 1 + kHashSize, right.data(), kHashSize);
  return Digest(buf, sizeof buf);
}

Hash EmptyRoot() {
  static const Hash empty = Digest(nullptr, 0);
  return empty;
}

std::string ToHex(const Hash& h) {
  return HexEncode(std::string_view(reinterpret_cast<const char*>(h.data()), h.size()));
}

Result<Hash> HashFromBytes(std::string_view bytes, std::string_view what) {
  if (bytes.size() != kHashSize) {
    return Err(Status::DataError(std::string(what) + ": a SHA-256 hash has 32 bytes, got " +
                                 std::to_string(bytes.size())));
  }
  Hash h;
  std::memcpy(h.data(), bytes.data(), kHashSize);
  return h;
}

Hash RootFromLeafHashes(std::span<const Hash> leaves) { return Mth(leaves); }

Result<std::vector<Hash>> InclusionProof(std::span<const Hash> leaves, uint64_t index) {
  if (index >= leaves.size()) {
    return Err(Status::InvalidArgument("inclusion proof: leaf index " + std::to_string(index) +
                                       " is not below tree size " +
                                       std::to_string(leaves.size())));
  }
  std::vector<Hash> out;
  Path(index, leaves, &out);
  return out;
}

Result<std::vector<Hash>> ConsistencyProof(std::span<const Hash> leaves, uint64_t m) {
  if (m > leaves.size()) {
    return Err(Status::InvalidArgument("consistency proof: old size " + std::to_string(m) +
                                       " is larger than tree size " +
                                       std::to_string(leaves.size())));
  }
  std::vector<Hash> out;
  if (m == 0 || m == leaves.size()) return out;
  SubProof(m, leaves, true, &out);
  return out;
}

Status VerifyInclusion(const Hash& leaf_hash, uint64_t index, uint64_t size,
                       std::span<const Hash> proof, const Hash& root) {
  // RFC 9162 §2.1.3.2.
  if (index >= size) {
    return Fail("inclusion proof: leaf index " + std::to_string(index) +
                " is not below tree size " + std::to_string(size));
  }
  uint64_t fn = index, sn = size - 1;
  Hash r = leaf_hash;
  for (const Hash& p : proof) {
    if (sn == 0) return Fail("inclusion proof is longer than the tree allows");
    if ((fn & 1) != 0 || fn == sn) {
      r = NodeHash(p, r);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return Fail("inclusion proof is shorter than the tree requires");
  if (r != root) return Fail("inclusion proof does not lead to the expected root");
  return Status::Ok();
}

Status VerifyConsistency(uint64_t size1, uint64_t size2, const Hash& root1, const Hash& root2,
                         std::span<const Hash> proof) {
  if (size1 > size2) {
    return Fail("consistency proof: old size " + std::to_string(size1) +
                " is larger than new size " + std::to_string(size2));
  }
  if (size1 == 0) {
    if (!proof.empty()) return Fail("consistency proof from the empty tree must be empty");
    if (root1 != EmptyRoot()) return Fail("root of the empty tree is not the empty hash");
    return Status::Ok();
  }
  if (size1 == size2) {
    if (!proof.empty()) return Fail("consistency proof between equal sizes must be empty");
    if (root1 != root2) return Fail("trees of equal size have different roots");
    return Status::Ok();
  }
  // RFC 9162 §2.1.4.2.
  if (proof.empty()) return Fail("consistency proof is empty");
  std::vector<Hash> path;
  path.reserve(proof.size() + 1);
  if (std::has_single_bit(size1)) path.push_back(root1);
  path.insert(path.end(), proof.begin(), proof.end());

  uint64_t fn = size1 - 1, sn = size2 - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0], sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return Fail("consistency proof is longer than the trees allow");
    if ((fn & 1) != 0 || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return Fail("consistency proof is shorter than the trees require");
  if (fr != root1) return Fail("consistency proof does not lead to the old root");
  if (sr != root2) return Fail("consistency proof does not lead to the new root");
  return Status::Ok();
}

Result<CompactRange> CompactRange::FromParts(uint64_t size, std::vector<Hash> subtree_roots) {
  if (static_cast<uint64_t>(std::popcount(size)) != subtree_roots.size()) {
    return Err(Status::DataError("compact range of size " + std::to_string(size) + " needs " +
                                 std::to_string(std::popcount(size)) + " subtree roots, got " +
                                 std::to_string(subtree_roots.size())));
  }
  CompactRange r;
  r.size_ = size;
  r.roots_ = std::move(subtree_roots);
  return r;
}

void CompactRange::AppendLeafHash(const Hash& leaf_hash) {
  roots_.push_back(leaf_hash);
  // Each trailing one bit of the old size is a perfect subtree of the same
  // height as the one just completed: merge them, smallest first.
  for (uint64_t s = size_; (s & 1) != 0; s >>= 1) {
    Hash right = roots_.back();
    roots_.pop_back();
    Hash left = roots_.back();
    roots_.back() = NodeHash(left, right);
  }
  ++size_;
}

Hash CompactRange::Root() const {
  if (roots_.empty()) return EmptyRoot();
  Hash acc = roots_.back();
  for (size_t i = roots_.size() - 1; i-- > 0;) acc = NodeHash(roots_[i], acc);
  return acc;
}

}  // namespace sealpost::crypto::merkle
