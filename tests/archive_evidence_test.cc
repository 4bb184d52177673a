// daemon::ArchiveEvidence fed by the archive's commits (in process, no
// reading back) against what an ArchiveReader reads back from git for the
// same entries: the manifest, a checkpoint committed in the archive (exact
// bytes of that commit's log/checkpoint and .p7s, signed by the seal)
// covering the entry, and an inclusion proof that verifies against it and
// equals the reader's. Also the reader path it keeps: entries older than the
// manifests kept, and commits the feed missed.
#include "daemon/archive_evidence.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "crypto/checkpoint.h"
#include "crypto/merkle.h"
#include "crypto/software_signer.h"
#include "storage/archive.h"
#include "storage/reader.h"
#include "tests/support/test_pki.h"

namespace sealpost::daemon {
namespace {

using sealpost::testing::CertSpec;
using sealpost::testing::RunCommand;
using sealpost::testing::ShellQuote;
using sealpost::testing::TempDir;
using sealpost::testing::TestCa;
namespace merkle = crypto::merkle;

constexpr const char* kOrigin = "cd-baichay.vn/archive";

storage::EntryInput Document(int i) {
  storage::EntryInput e;
  e.kind = storage::EntryKind::kDocumentSent;
  e.fields["id"] = "doc-" + std::to_string(i);
  e.fields["subject"] = "Công văn số " + std::to_string(i);
  e.files.push_back({"content.txt", "document body " + std::to_string(i) + "\n"});
  return e;
}

class ArchiveEvidenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Test Root/O=Test Federation/C=VN"));
    CertSpec spec;
    spec.subject = "/CN=Con dấu Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN";
    auto issued = ca_->Issue(spec);
    auto signer = crypto::SoftwareKeySigner::CreateForTesting("seal", std::move(issued.key),
                                                              std::move(issued.cert));
    ASSERT_TRUE(signer.has_value());
    signer_ = std::move(*signer);
    path_ = tmp_.file("archive.git");
    storage::ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = signer_.get();
    o.seal_key = crypto::KeyRef{"seal"};
    auto a = storage::Archive::Create(path_, o);
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    archive_ = std::move(*a);
  }

  // `e` is the evidence of entry `seq`: as the archive holds it.
  void ExpectAsReadBack(uint64_t seq, const EntryEvidence& e) {
    SCOPED_TRACE("entry " + std::to_string(seq));
    auto reader = storage::ArchiveReader::Open(path_);
    ASSERT_TRUE(reader.has_value()) << reader.error().ToString();
    auto manifest = (*reader)->ReadEntryFile(seq, "manifest.json");
    ASSERT_TRUE(manifest.has_value());
    EXPECT_EQ(e.manifest, *manifest);
    // The checkpoint: exactly the one of the commit of that size.
    ASSERT_GE(e.tree_size, seq);
    auto commit = CommitOfSize(**reader, e.tree_size);
    ASSERT_FALSE(commit.empty()) << "no commit with a checkpoint of size " << e.tree_size;
    EXPECT_EQ(e.checkpoint_body, GitBlob(commit + ":log/checkpoint"));
    EXPECT_EQ(e.checkpoint_p7s, GitBlob(commit + ":log/checkpoint.p7s"));
    auto seal = signer_->Certificate(crypto::KeyRef{"seal"});
    ASSERT_TRUE(seal.has_value());
    Status signed_by_seal =
        crypto::VerifyCheckpointSignature(e.checkpoint_body, e.checkpoint_p7s, seal->get(), "p7s");
    EXPECT_TRUE(signed_by_seal.ok()) << signed_by_seal.ToString();
    auto cp = crypto::ParseCheckpoint(e.checkpoint_body, "checkpoint");
    ASSERT_TRUE(cp.has_value());
    EXPECT_EQ(cp->size, e.tree_size);
    // The proof verifies against it and is the reader's.
    Status included =
        merkle::VerifyInclusion(merkle::LeafHash(*manifest), seq - 1, e.tree_size, e.proof, cp->root);
    EXPECT_TRUE(included.ok()) << included.ToString();
    auto proof = (*reader)->InclusionProof(seq, e.tree_size);
    ASSERT_TRUE(proof.has_value());
    EXPECT_EQ(e.proof, *proof);
  }

  std::string CommitOfSize(storage::ArchiveReader& reader, uint64_t size) {
    if (commits_.empty() || commits_.rbegin()->first < size) {
      auto all = reader.CommitsAfter(0);
      EXPECT_TRUE(all.has_value());
      if (all.has_value()) {
        for (const storage::CommitSize& c : *all) commits_[c.size] = c.commit;
      }
    }
    auto it = commits_.find(size);
    return it == commits_.end() ? "" : it->second;
  }

  std::string GitBlob(const std::string& spec) {
    const std::string out = tmp_.file("blob");
    int rc = RunCommand("git -C " + ShellQuote(path_) + " cat-file blob " + ShellQuote(spec) +
                        " > " + ShellQuote(out));
    EXPECT_EQ(rc, 0) << spec;
    return sealpost::testing::ReadTestFile(out);
  }

  TempDir tmp_;
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<crypto::SoftwareKeySigner> signer_;
  std::string path_;
  std::unique_ptr<storage::Archive> archive_;
  std::map<uint64_t, std::string> commits_;  // checkpoint size -> commit
};

TEST_F(ArchiveEvidenceTest, FedEvidenceOfConcurrentAppendsEqualsWhatAReaderReadsBack) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(archive_->Append(Document(i)).has_value());
  auto evidence = ArchiveEvidence::Create(path_, {}, archive_.get());
  ASSERT_TRUE(evidence.has_value()) << evidence.error().ToString();
  ArchiveEvidence& ev = **evidence;

  constexpr int kThreads = 8, kEach = 12;
  std::mutex mu;
  std::map<uint64_t, EntryEvidence> got;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto a = archive_->Append(Document(100 + t * kEach + i));
        if (!a.has_value()) {
          ADD_FAILURE() << a.error().ToString();
          continue;
        }
        // At once, as Exchange::Submit does.
        auto e = ev.Get(a->seq);
        if (!e.has_value()) {
          ADD_FAILURE() << a->seq << ": " << e.error().ToString();
          continue;
        }
        // The commit that made the entry durable covers it, and the one
        // given is at least that (a later commit's when one followed).
        EXPECT_GE(e->tree_size, a->tree_size);
        std::lock_guard<std::mutex> lock(mu);
        got[a->seq] = std::move(*e);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(got.size(), static_cast<size_t>(kThreads * kEach));
  // Every Get of an appended entry was answered from the feed: no reader
  // moved, no manifest read back.
  ArchiveEvidence::Counters c = ev.counters();
  EXPECT_EQ(c.from_memory, static_cast<uint64_t>(kThreads * kEach));
  EXPECT_EQ(c.reader_moves, 0u);
  EXPECT_EQ(c.manifest_reads, 0u);
  EXPECT_EQ(c.feed_gaps, 0u);
  for (const auto& [seq, e] : got) ExpectAsReadBack(seq, e);

  // Entries from before the evidence was created (manifests not kept):
  // from the reader, with the newest checkpoint.
  auto first = ev.Get(1);
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  EXPECT_EQ(first->tree_size, archive_->size());
  ExpectAsReadBack(1, *first);
  auto fifth = ev.Get(5);
  ASSERT_TRUE(fifth.has_value()) << fifth.error().ToString();
  ExpectAsReadBack(5, *fifth);
  EXPECT_GE(ev.counters().manifest_reads, 2u);

  EXPECT_EQ(ev.Get(0).error().code(), Code::kInvalidArgument);
  EXPECT_FALSE(ev.Get(archive_->size() + 1).has_value());  // not appended
}

TEST_F(ArchiveEvidenceTest, CommitsTheFeedMissedAreReadFromTheArchive) {
  auto evidence = ArchiveEvidence::Create(path_, {}, archive_.get());
  ASSERT_TRUE(evidence.has_value()) << evidence.error().ToString();
  ArchiveEvidence& ev = **evidence;
  auto a = archive_->Append(Document(1));
  ASSERT_TRUE(a.has_value());
  auto e = ev.Get(a->seq);
  ASSERT_TRUE(e.has_value()) << e.error().ToString();
  ExpectAsReadBack(a->seq, *e);

  // Someone else takes the listener for a while: those commits are missed.
  archive_->SetCommitListener({});
  std::vector<uint64_t> missed;
  for (int i = 0; i < 3; ++i) {
    auto m = archive_->Append(Document(10 + i));
    ASSERT_TRUE(m.has_value());
    missed.push_back(m->seq);
  }
  for (uint64_t seq : missed) {
    auto got = ev.Get(seq);
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    ExpectAsReadBack(seq, *got);
  }
  EXPECT_GE(ev.counters().reader_moves, 1u);
}

TEST_F(ArchiveEvidenceTest, WithoutAnArchiveEveryEntryComesFromTheReader) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(archive_->Append(Document(i)).has_value());
  auto evidence = ArchiveEvidence::Create(path_);
  ASSERT_TRUE(evidence.has_value()) << evidence.error().ToString();
  auto later = archive_->Append(Document(9));
  ASSERT_TRUE(later.has_value());
  for (uint64_t seq = 1; seq <= later->seq; ++seq) {
    auto e = (*evidence)->Get(seq);
    ASSERT_TRUE(e.has_value()) << e.error().ToString();
    ExpectAsReadBack(seq, *e);
  }
  // Every manifest read back (none fed).
  EXPECT_EQ((*evidence)->counters().manifest_reads, later->seq);
}

}  // namespace
}  // namespace sealpost::daemon
