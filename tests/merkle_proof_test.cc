#include "crypto/merkle.h"

#include <gtest/gtest.h>

#include <openssl/evp.h>

#include <string>
#include <vector>

#include "base/encoding.h"

namespace sealpost::crypto::merkle {
namespace {

// An independent, deliberately naive RFC 6962 implementation over byte
// strings, written straight from the RFC's recursive definitions, used as
// the reference the production code must agree with.
std::string RefSha256(const std::string& s) {
  unsigned char out[32];
  unsigned int n = 0;
  EXPECT_EQ(EVP_Digest(s.data(), s.size(), out, &n, EVP_sha256(), nullptr), 1);
  return std::string(reinterpret_cast<char*>(out), n);
}
std::string RefLeaf(const std::string& d) { return RefSha256(std::string(1, '\0') + d); }
std::string RefNode(const std::string& l, const std::string& r) {
  return RefSha256(std::string(1, '\1') + l + r);
}
size_t RefK(size_t n) {
  size_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
std::vector<std::string> Slice(const std::vector<std::string>& d, size_t a, size_t b) {
  return std::vector<std::string>(d.begin() + a, d.begin() + b);
}
std::string RefMth(const std::vector<std::string>& d) {
  if (d.empty()) return RefSha256("");
  if (d.size() == 1) return RefLeaf(d[0]);
  size_t k = RefK(d.size());
  return RefNode(RefMth(Slice(d, 0, k)), RefMth(Slice(d, k, d.size())));
}
std::vector<std::string> RefPath(size_t m, const std::vector<std::string>& d) {
  if (d.size() <= 1) return {};
  size_t k = RefK(d.size());
  std::vector<std::string> out;
  if (m < k) {
    out = RefPath(m, Slice(d, 0, k));
    out.push_back(RefMth(Slice(d, k, d.size())));
  } else {
    out = RefPath(m - k, Slice(d, k, d.size()));
    out.push_back(RefMth(Slice(d, 0, k)));
  }
  return out;
}
std::vector<std::string> RefSubproof(size_t m, const std::vector<std::string>& d, bool b) {
  if (m == d.size()) return b ? std::vector<std::string>{} : std::vector<std::string>{RefMth(d)};
  size_t k = RefK(d.size());
  std::vector<std::string> out;
  if (m <= k) {
    out = RefSubproof(m, Slice(d, 0, k), b);
    out.push_back(RefMth(Slice(d, k, d.size())));
  } else {
    out = RefSubproof(m - k, Slice(d, k, d.size()), false);
    out.push_back(RefMth(Slice(d, 0, k)));
  }
  return out;
}

std::string Bytes(const Hash& h) { return std::string(reinterpret_cast<const char*>(h.data()), 32); }
std::vector<std::string> Bytes(const std::vector<Hash>& v) {
  std::vector<std::string> out;
  for (const Hash& h : v) out.push_back(Bytes(h));
  return out;
}
Hash FromHex(const std::string& hex) { return *HashFromBytes(*HexDecode(hex), "test vector"); }

std::vector<std::string> EntryData(size_t n) {
  std::vector<std::string> d;
  for (size_t i = 0; i < n; ++i) d.push_back("entry " + std::to_string(i) + std::string(i % 7, 'x'));
  return d;
}
std::vector<Hash> LeafHashes(const std::vector<std::string>& d) {
  std::vector<Hash> out;
  for (const auto& s : d) out.push_back(LeafHash(s));
  return out;
}
Hash Flip(Hash h) {
  h[7] ^= 0x01;
  return h;
}

// The eight leaves of the Certificate Transparency reference tests.
std::vector<std::string> CtLeaves() {
  return {std::string(), std::string("\x00", 1), "\x10", "\x20\x21", "\x30\x31",
          "\x40\x41\x42\x43", "\x50\x51\x52\x53\x54\x55\x56\x57",
          "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"};
}

TEST(MerkleTest, RootOfEmptyTreeIsSha256OfEmptyString) {
  EXPECT_EQ(ToHex(EmptyRoot()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(RootFromLeafHashes({}), EmptyRoot());
  EXPECT_EQ(CompactRange().Root(), EmptyRoot());
}

TEST(MerkleTest, RootsOfCertificateTransparencyVectorsMatchKnownAnswers) {
  const char* kRoots[] = {
      "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
      "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
      "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
      "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
      "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
      "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
  };
  std::vector<std::string> leaves = CtLeaves();
  std::vector<Hash> hashes = LeafHashes(leaves);
  CompactRange range;
  for (size_t n = 1; n <= 8; ++n) {
    range.AppendData(leaves[n - 1]);
    std::span<const Hash> prefix(hashes.data(), n);
    EXPECT_EQ(ToHex(RootFromLeafHashes(prefix)), kRoots[n - 1]) << "size " << n;
    EXPECT_EQ(ToHex(range.Root()), kRoots[n - 1]) << "size " << n;
    EXPECT_EQ(Bytes(RootFromLeafHashes(prefix)), RefMth(Slice(leaves, 0, n)));
  }
}

TEST(MerkleTest, InclusionProofOfCtVectorLeafZeroMatchesKnownAnswer) {
  std::vector<Hash> hashes = LeafHashes(CtLeaves());
  auto proof = InclusionProof(hashes, 0);
  ASSERT_TRUE(proof.has_value());
  ASSERT_EQ(proof->size(), 3u);
  EXPECT_EQ(ToHex((*proof)[0]), "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7");
  EXPECT_EQ(ToHex((*proof)[1]), "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e");
  EXPECT_EQ(ToHex((*proof)[2]), "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4");
  EXPECT_TRUE(VerifyInclusion(hashes[0], 0, 8, *proof,
                              FromHex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"))
                  .ok());
}

TEST(MerkleTest, RootsAndProofsForEverySizeUpTo64MatchReferenceImplementation) {
  std::vector<std::string> data = EntryData(64);
  std::vector<Hash> hashes = LeafHashes(data);
  for (size_t n = 1; n <= 64; ++n) {
    std::vector<std::string> d = Slice(data, 0, n);
    std::span<const Hash> h(hashes.data(), n);
    ASSERT_EQ(Bytes(RootFromLeafHashes(h)), RefMth(d)) << "size " << n;
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(Bytes(*InclusionProof(h, i)), RefPath(i, d)) << "leaf " << i << " size " << n;
    }
    for (size_t m = 1; m < n; ++m) {
      ASSERT_EQ(Bytes(*ConsistencyProof(h, m)), RefSubproof(m, d, true)) << m << "->" << n;
    }
  }
}

TEST(MerkleTest, CompactRangeRootEqualsFullRootForEverySizeUpTo1000) {
  std::vector<Hash> hashes = LeafHashes(EntryData(1000));
  CompactRange range;
  for (size_t n = 1; n <= hashes.size(); ++n) {
    range.AppendLeafHash(hashes[n - 1]);
    ASSERT_EQ(range.size(), n);
    ASSERT_EQ(range.subtree_roots().size(), static_cast<size_t>(std::popcount(n)));
    ASSERT_EQ(range.Root(), RootFromLeafHashes(std::span<const Hash>(hashes.data(), n)))
        << "size " << n;
  }
}

TEST(MerkleTest, CompactRangeFromPartsContinuesLikeTheOriginal) {
  std::vector<Hash> hashes = LeafHashes(EntryData(300));
  CompactRange a;
  for (size_t i = 0; i < 137; ++i) a.AppendLeafHash(hashes[i]);
  auto b = CompactRange::FromParts(a.size(), a.subtree_roots());
  ASSERT_TRUE(b.has_value());
  for (size_t i = 137; i < 300; ++i) {
    a.AppendLeafHash(hashes[i]);
    b->AppendLeafHash(hashes[i]);
  }
  EXPECT_EQ(b->Root(), a.Root());
  EXPECT_EQ(b->Root(), RootFromLeafHashes(hashes));
}

TEST(MerkleTest, CompactRangeFromPartsWithWrongCountFails) {
  std::vector<Hash> two = LeafHashes(EntryData(2));
  auto r = CompactRange::FromParts(7, two);  // 7 = 0b111 needs three roots
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kDataError);
}

TEST(MerkleTest, InclusionProofsVerifyForEveryIndexAndSizeUpTo300) {
  std::vector<Hash> hashes = LeafHashes(EntryData(300));
  for (size_t n = 1; n <= hashes.size(); ++n) {
    std::span<const Hash> h(hashes.data(), n);
    Hash root = RootFromLeafHashes(h);
    for (size_t i = 0; i < n; ++i) {
      auto proof = InclusionProof(h, i);
      ASSERT_TRUE(proof.has_value());
      Status s = VerifyInclusion(hashes[i], i, n, *proof, root);
      ASSERT_TRUE(s.ok()) << "leaf " << i << " size " << n << ": " << s.ToString();
    }
  }
}

TEST(MerkleTest, InclusionProofWithAnyDefectFailsForEveryIndexAndSizeUpTo130) {
  std::vector<Hash> hashes = LeafHashes(EntryData(131));
  Hash outsider = LeafHash("not in the tree");
  for (size_t n = 1; n <= 130; ++n) {
    std::span<const Hash> h(hashes.data(), n);
    Hash root = RootFromLeafHashes(h);
    for (size_t i = 0; i < n; ++i) {
      std::vector<Hash> proof = *InclusionProof(h, i);
      SCOPED_TRACE("leaf " + std::to_string(i) + " size " + std::to_string(n));
      EXPECT_FALSE(VerifyInclusion(outsider, i, n, proof, root).ok());      // wrong leaf
      EXPECT_FALSE(VerifyInclusion(hashes[i], i, n, proof, Flip(root)).ok());  // wrong root
      EXPECT_FALSE(VerifyInclusion(hashes[i], n, n, proof, root).ok());     // index out of range
      if (n > 1) {
        size_t other = (i + 1) % n;
        EXPECT_FALSE(VerifyInclusion(hashes[i], other, n, proof, root).ok());   // wrong index
        EXPECT_FALSE(VerifyInclusion(hashes[other], i, n, proof, root).ok());   // another leaf
        std::vector<Hash> truncated(proof.begin(), proof.end() - 1);
        EXPECT_FALSE(VerifyInclusion(hashes[i], i, n, truncated, root).ok());
        for (size_t j = 0; j < proof.size(); ++j) {
          std::vector<Hash> mutated = proof;
          mutated[j] = Flip(mutated[j]);
          EXPECT_FALSE(VerifyInclusion(hashes[i], i, n, mutated, root).ok());
        }
      }
      std::vector<Hash> extended = proof;
      extended.push_back(outsider);
      EXPECT_FALSE(VerifyInclusion(hashes[i], i, n, extended, root).ok());
      std::vector<Hash> extended_front = proof;
      extended_front.insert(extended_front.begin(), outsider);
      EXPECT_FALSE(VerifyInclusion(hashes[i], i, n, extended_front, root).ok());
    }
  }
}

TEST(MerkleTest, ConsistencyProofsVerifyForEveryPairOfSizesUpTo220) {
  std::vector<Hash> hashes = LeafHashes(EntryData(220));
  std::vector<Hash> roots{EmptyRoot()};
  CompactRange range;
  for (const Hash& h : hashes) {
    range.AppendLeafHash(h);
    roots.push_back(range.Root());
  }
  for (size_t n = 0; n <= hashes.size(); ++n) {
    std::span<const Hash> h(hashes.data(), n);
    for (size_t m = 0; m <= n; ++m) {
      auto proof = ConsistencyProof(h, m);
      ASSERT_TRUE(proof.has_value());
      Status s = VerifyConsistency(m, n, roots[m], roots[n], *proof);
      ASSERT_TRUE(s.ok()) << m << "->" << n << ": " << s.ToString();
    }
  }
}

TEST(MerkleTest, ConsistencyProofWithAnyDefectFailsForEveryPairUpTo100) {
  std::vector<Hash> hashes = LeafHashes(EntryData(101));
  std::vector<Hash> roots{EmptyRoot()};
  CompactRange range;
  for (const Hash& h : hashes) {
    range.AppendLeafHash(h);
    roots.push_back(range.Root());
  }
  Hash junk = LeafHash("junk");
  for (size_t n = 1; n <= 100; ++n) {
    std::span<const Hash> h(hashes.data(), n);
    for (size_t m = 1; m < n; ++m) {
      SCOPED_TRACE(std::to_string(m) + "->" + std::to_string(n));
      std::vector<Hash> proof = *ConsistencyProof(h, m);
      ASSERT_FALSE(proof.empty());
      EXPECT_FALSE(VerifyConsistency(m, n, Flip(roots[m]), roots[n], proof).ok());
      EXPECT_FALSE(VerifyConsistency(m, n, roots[m], Flip(roots[n]), proof).ok());
      EXPECT_FALSE(VerifyConsistency(m, n, roots[m], roots[m], proof).ok());
      EXPECT_FALSE(VerifyConsistency(n, m, roots[n], roots[m], proof).ok());
      std::vector<Hash> truncated(proof.begin(), proof.end() - 1);
      EXPECT_FALSE(VerifyConsistency(m, n, roots[m], roots[n], truncated).ok());
      std::vector<Hash> extended = proof;
      extended.push_back(junk);
      EXPECT_FALSE(VerifyConsistency(m, n, roots[m], roots[n], extended).ok());
      for (size_t j = 0; j < proof.size(); ++j) {
        std::vector<Hash> mutated = proof;
        mutated[j] = Flip(mutated[j]);
        EXPECT_FALSE(VerifyConsistency(m, n, roots[m], roots[n], mutated).ok());
      }
    }
  }
}

TEST(MerkleTest, ConsistencyBetweenEqualOrEmptyTreesChecksRoots) {
  std::vector<Hash> hashes = LeafHashes(EntryData(5));
  Hash r5 = RootFromLeafHashes(hashes);
  EXPECT_TRUE(VerifyConsistency(5, 5, r5, r5, {}).ok());
  EXPECT_FALSE(VerifyConsistency(5, 5, r5, Flip(r5), {}).ok());
  EXPECT_FALSE(VerifyConsistency(5, 5, r5, r5, std::vector<Hash>{r5}).ok());
  EXPECT_TRUE(VerifyConsistency(0, 5, EmptyRoot(), r5, {}).ok());
  EXPECT_FALSE(VerifyConsistency(0, 5, r5, r5, {}).ok());
  EXPECT_FALSE(VerifyConsistency(0, 5, EmptyRoot(), r5, std::vector<Hash>{r5}).ok());
}

TEST(MerkleTest, ProofRequestsOutOfRangeFail) {
  std::vector<Hash> hashes = LeafHashes(EntryData(4));
  EXPECT_EQ(InclusionProof(hashes, 4).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(InclusionProof({}, 0).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(ConsistencyProof(hashes, 5).error().code(), Code::kInvalidArgument);
  EXPECT_FALSE(HashFromBytes("short", "x").has_value());
}

}  // namespace
}  // namespace sealpost::crypto::merkle
