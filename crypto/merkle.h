// RFC 6962 / RFC 9162 Merkle tree hashing over SHA-256: leaf and node
// hashes, the tree head of n leaves (MTH), inclusion proofs (PATH) and
// consistency proofs (PROOF) generated from the list of leaf hashes, their
// verification (RFC 9162 §2.1.3.2 and §2.1.4.2), and a compact range
// ("frontier") that appends a leaf in O(log n) and yields the root of the
// current size without rehashing earlier leaves.
//
// All functions are pure and thread-safe; a CompactRange is a value type
// (copyable), not synchronised: one thread at a time.
#ifndef SEALPOST_CRYPTO_MERKLE_H_
#define SEALPOST_CRYPTO_MERKLE_H_

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace sealpost::crypto::merkle {

inline constexpr size_t kHashSize = 32;
using Hash = std::array<unsigned char, kHashSize>;

// SHA-256(0x00 || data).
Hash LeafHash(std::string_view data);
// SHA-256(0x01 || left || right).
Hash NodeHash(const Hash& left, const Hash& right);
// MTH({}) = SHA-256("") = e3b0c442...b855.
Hash EmptyRoot();

std::string ToHex(const Hash& h);
// Exactly 32 bytes, else DataError naming `what`.
Result<Hash> HashFromBytes(std::string_view bytes, std::string_view what);

// MTH(D[n]) where `leaves` are the leaf hashes (already LeafHash'ed).
Hash RootFromLeafHashes(std::span<const Hash> leaves);

// PATH(index, D[n]), n = leaves.size(). Errors: InvalidArgument if
// index >= n. Cost: O(n) hashes.
Result<std::vector<Hash>> InclusionProof(std::span<const Hash> leaves, uint64_t index);

// PROOF(m, D[n]), n = leaves.size(). 0 <= m <= n; for m == 0 and m == n the
// proof is empty. Errors: InvalidArgument if m > n. Cost: O(n) hashes.
Result<std::vector<Hash>> ConsistencyProof(std::span<const Hash> leaves, uint64_t m);

// Checks that `leaf_hash` is leaf number `index` of the tree of `size`
// leaves whose root is `root`. OK or FailedPrecondition naming the reason
// (index out of range, proof too long/short, root mismatch).
Status VerifyInclusion(const Hash& leaf_hash, uint64_t index, uint64_t size,
                       std::span<const Hash> proof, const Hash& root);

// Checks that the tree of size `size2` with root `root2` extends the tree of
// size `size1` with root `root1` (append-only). size1 == 0 requires an empty
// proof and root1 == EmptyRoot(); size1 == size2 requires an empty proof and
// equal roots. OK or FailedPrecondition naming the reason.
Status VerifyConsistency(uint64_t size1, uint64_t size2, const Hash& root1, const Hash& root2,
                         std::span<const Hash> proof);

// The right edge of a Merkle tree: the roots of the perfect subtrees that
// make up the first size() leaves (one per set bit of size(), largest first).
// Append costs O(log n) hashes (amortised O(1)); Root() costs O(log n).
class CompactRange {
 public:
  CompactRange() = default;

  // Rebuilds a range from a stored size and its perfect-subtree roots
  // (exactly popcount(size) hashes, largest subtree first).
  // Errors: DataError if the count does not match.
  static Result<CompactRange> FromParts(uint64_t size, std::vector<Hash> subtree_roots);

  void AppendLeafHash(const Hash& leaf_hash);
  void AppendData(std::string_view data) { AppendLeafHash(LeafHash(data)); }

  uint64_t size() const { return size_; }
  Hash Root() const;
  const std::vector<Hash>& subtree_roots() const { return roots_; }

 private:
  uint64_t size_ = 0;
  std::vector<Hash> roots_;  // largest (leftmost) subtree first
};

}  // namespace sealpost::crypto::merkle

#endif  // SEALPOST_CRYPTO_MERKLE_H_
