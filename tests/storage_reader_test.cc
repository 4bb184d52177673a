// storage::ArchiveReader (read-only view of an archive), ParseManifest,
// SetArchiveConfig and MirrorMain, on real git repositories written by
// storage::Archive (software seal key: the token is tested through the CLI).
#include "storage/reader.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "crypto/checkpoint.h"
#include "crypto/merkle.h"
#include "crypto/software_signer.h"
#include "storage/archive.h"
#include "tests/support/test_pki.h"

namespace sealpost::storage {
namespace {

using sealpost::testing::RunCommand;
using sealpost::testing::ShellQuote;
using sealpost::testing::TempDir;
using sealpost::testing::TestCa;
namespace merkle = crypto::merkle;

constexpr const char* kOrigin = "cd-baichay.vn/archive";

std::string Git(const std::string& dir, const std::string& args) {
  std::string out;
  RunCommand("git -C " + ShellQuote(dir) + " " + args + " 2>&1", &out);
  return out;
}

class ReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Reader Root/C=VN"));
    sealpost::testing::CertSpec spec;
    spec.subject = "/CN=Con dấu/O=Công đoàn Bãi Cháy/C=VN";
    auto issued = ca_->Issue(spec);
    auto signer = crypto::SoftwareKeySigner::CreateForTesting("seal", std::move(issued.key),
                                                              std::move(issued.cert));
    ASSERT_TRUE(signer.has_value());
    signer_ = std::move(*signer);
    path_ = tmp_.file("archive.git");
  }

  std::unique_ptr<Archive> Create() {
    ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = signer_.get();
    o.seal_key = crypto::KeyRef{"seal"};
    auto a = Archive::Create(path_, o);
    EXPECT_TRUE(a.has_value()) << a.error().ToString();
    return a ? std::move(*a) : nullptr;
  }

  static EntryInput Doc(int i) {
    EntryInput e;
    e.fields["id"] = "doc-" + std::to_string(i);
    e.fields["subject"] = "Chỉ thị số " + std::to_string(i);
    e.files.push_back({"content", "body " + std::to_string(i)});
    return e;
  }

  TempDir tmp_;
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<crypto::SoftwareKeySigner> signer_;
  std::string path_;
};

TEST_F(ReaderTest, OpenReadsHeadCheckpointManifestsAndFiles) {
  auto a = Create();
  ASSERT_TRUE(a);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a->Append(Doc(i)).has_value());
  auto r = ArchiveReader::Open(path_);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ((*r)->head(), a->head());
  EXPECT_EQ((*r)->size(), 6u);
  EXPECT_EQ((*r)->origin(), kOrigin);
  EXPECT_EQ((*r)->checkpoint(), a->checkpoint());
  EXPECT_TRUE(crypto::VerifyCheckpointSignature((*r)->checkpoint_body(), (*r)->checkpoint_signature(),
                                                (*r)->seal(), "cp")
                  .ok());
  auto m = (*r)->ReadManifest(3);
  ASSERT_TRUE(m.has_value()) << m.error().ToString();
  EXPECT_EQ(m->seq, 3u);
  EXPECT_EQ(m->kind, EntryKind::kDocumentSent);
  EXPECT_EQ(m->Field("subject"), "Chỉ thị số 1");
  ASSERT_EQ(m->files.size(), 1u);
  EXPECT_EQ(m->files[0].name, "content");
  EXPECT_EQ(m->files[0].size, 6u);
  auto content = (*r)->ReadEntryFile(3, "content");
  ASSERT_TRUE(content.has_value());
  EXPECT_EQ(*content, "body 1");
  EXPECT_EQ((*r)->ReadEntryFile(3, "nope").error().code(), Code::kNotFound);
  EXPECT_EQ((*r)->ReadEntryFile(7, "manifest.json").error().code(), Code::kNotFound);
  // The same leaves as the writer's.
  auto leaves = (*r)->ReadLeafHashes(6);
  ASSERT_TRUE(leaves.has_value());
  EXPECT_EQ(*leaves, *a->ReadLeafHashes());
}

TEST_F(ReaderTest, ReaderWorksBesideTheWriterAndIsASnapshot) {
  auto a = Create();
  ASSERT_TRUE(a);  // holds the writer lock
  auto r = ArchiveReader::Open(path_);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_TRUE(a->Append(Doc(1)).has_value());
  EXPECT_EQ((*r)->size(), 1u);  // opened before the append
  EXPECT_TRUE((*r)->ContainsCommit((*r)->head()));
  auto later = ArchiveReader::Open(path_);
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ((*later)->size(), 2u);
  EXPECT_TRUE((*later)->ContainsCommit((*r)->head()));
  EXPECT_FALSE((*r)->ContainsCommit((*later)->head()));
  EXPECT_FALSE((*r)->ContainsCommit("not-a-commit"));
}

TEST_F(ReaderTest, ProofsFromReaderVerifyAgainstCheckpoint) {
  auto a = Create();
  ASSERT_TRUE(a);
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(a->Append(Doc(i)).has_value());
  auto r = ArchiveReader::Open(path_);
  ASSERT_TRUE(r.has_value());
  auto leaves = (*r)->ReadLeafHashes(13);
  ASSERT_TRUE(leaves.has_value());
  for (uint64_t seq = 1; seq <= 13; ++seq) {
    auto proof = (*r)->InclusionProof(seq, 13);
    ASSERT_TRUE(proof.has_value());
    EXPECT_TRUE(merkle::VerifyInclusion((*leaves)[seq - 1], seq - 1, 13, *proof,
                                        (*r)->checkpoint().root)
                    .ok());
    // Another leaf with the same proof fails.
    EXPECT_FALSE(merkle::VerifyInclusion((*leaves)[seq % 13], seq - 1, 13, *proof,
                                         (*r)->checkpoint().root)
                     .ok());
  }
  auto c = (*r)->ConsistencyProof(5, 13);
  ASSERT_TRUE(c.has_value());
  merkle::Hash root5 = merkle::RootFromLeafHashes(std::span(leaves->data(), 5));
  EXPECT_TRUE(merkle::VerifyConsistency(5, 13, root5, (*r)->checkpoint().root, *c).ok());
  EXPECT_EQ((*r)->InclusionProof(14, 14).error().code(), Code::kInvalidArgument);
  EXPECT_EQ((*r)->InclusionProof(0, 5).error().code(), Code::kInvalidArgument);
}

TEST_F(ReaderTest, CommitsAfterMapsEveryEntryToItsCommit) {
  auto a = Create();
  ASSERT_TRUE(a);
  std::vector<std::string> commits = {a->head()};
  for (int i = 0; i < 3; ++i) {
    auto ap = a->Append(Doc(i));
    ASSERT_TRUE(ap.has_value());
    commits.push_back(ap->commit);
  }
  auto r = ArchiveReader::Open(path_);
  ASSERT_TRUE(r.has_value());
  auto all = (*r)->CommitsAfter(0);
  ASSERT_TRUE(all.has_value()) << all.error().ToString();
  ASSERT_EQ(all->size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ((*all)[i].commit, commits[i]);
    EXPECT_EQ((*all)[i].size, i + 1);
  }
  auto tail = (*r)->CommitsAfter(2);
  ASSERT_TRUE(tail.has_value());
  ASSERT_EQ(tail->size(), 2u);
  EXPECT_EQ(tail->front().size, 3u);
  EXPECT_TRUE((*r)->CommitsAfter(4)->empty());
}

TEST_F(ReaderTest, OpenOfWhatIsNotAnArchiveFailsWithDataErrorOrNotFound) {
  EXPECT_EQ(ArchiveReader::Open(tmp_.file("none")).error().code(), Code::kNotFound);
  std::filesystem::create_directories(tmp_.file("plain"));
  auto plain = ArchiveReader::Open(tmp_.file("plain"));
  ASSERT_FALSE(plain.has_value());
  EXPECT_EQ(plain.error().code(), Code::kDataError);
  EXPECT_NE(plain.error().message().find("not a git repository"), std::string::npos);
  ASSERT_EQ(RunCommand("git init -q --bare -b main " + ShellQuote(tmp_.file("empty.git"))), 0);
  auto empty = ArchiveReader::Open(tmp_.file("empty.git"));
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code(), Code::kDataError);
  EXPECT_NE(empty.error().message().find("not a sealpost archive"), std::string::npos)
      << empty.error().message();
  // A git repository with commits but no FORMAT.
  std::string work = tmp_.file("work");
  ASSERT_EQ(RunCommand("git init -q -b main " + ShellQuote(work) + " && cd " + ShellQuote(work) +
                       " && echo x > f && git add f && git -c user.name=t -c user.email=t@t "
                       "commit -q -m x"),
            0);
  auto other = ArchiveReader::Open(work);
  ASSERT_FALSE(other.has_value());
  EXPECT_NE(other.error().message().find("no FORMAT"), std::string::npos) << other.error().message();
}

TEST_F(ReaderTest, ForgedCheckpointSignatureIsRefusedAtOpen) {
  {
    auto a = Create();
    ASSERT_TRUE(a);
  }
  // Commit a checkpoint that the seal did not sign, with stock git.
  std::string work = tmp_.file("work");
  ASSERT_EQ(RunCommand("git clone -q " + ShellQuote(path_) + " " + ShellQuote(work)), 0);
  ASSERT_EQ(RunCommand("cd " + ShellQuote(work) + " && printf '" + std::string(kOrigin) +
                       "\\n1\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\\n' > log/checkpoint && "
                       "git -c user.name=t -c user.email=t@t commit -q -am forged && "
                       "git push -q origin main"),
            0);
  auto r = ArchiveReader::Open(path_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kDataError);
  EXPECT_NE(r.error().message().find("checkpoint.p7s"), std::string::npos) << r.error().message();
}

TEST_F(ReaderTest, RefreshMovesToTheNewHeadWithItsCheckpointAndEntries) {
  auto a = Create();
  ASSERT_TRUE(a);
  auto r = ArchiveReader::Open(path_);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_TRUE((*r)->Refresh().ok());  // nothing new: unchanged
  EXPECT_EQ((*r)->size(), 1u);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(a->Append(Doc(round * 4 + i)).has_value());
    Status s = (*r)->Refresh();
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ((*r)->head(), a->head());
    EXPECT_EQ((*r)->size(), a->size());
    EXPECT_EQ((*r)->checkpoint(), a->checkpoint());
    auto fresh = ArchiveReader::Open(path_);
    ASSERT_TRUE(fresh.has_value());
    EXPECT_EQ((*r)->checkpoint_body(), (*fresh)->checkpoint_body());
    EXPECT_EQ((*r)->checkpoint_signature(), (*fresh)->checkpoint_signature());
    EXPECT_EQ(X509_cmp((*r)->seal(), (*fresh)->seal()), 0);
    auto last = (*r)->ReadEntryFile((*r)->size(), "content");
    ASSERT_TRUE(last.has_value()) << last.error().ToString();
    EXPECT_EQ(*last, "body " + std::to_string(round * 4 + 3));
  }
}

TEST_F(ReaderTest, RefreshToAForgedCheckpointFailsAndKeepsTheReaderAsItWas) {
  {
    auto a = Create();
    ASSERT_TRUE(a);
    ASSERT_TRUE(a->Append(Doc(1)).has_value());
  }
  auto r = ArchiveReader::Open(path_);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  const std::string head = (*r)->head();
  const std::string body = (*r)->checkpoint_body();
  std::string work = tmp_.file("work");
  ASSERT_EQ(RunCommand("git clone -q " + ShellQuote(path_) + " " + ShellQuote(work)), 0);
  ASSERT_EQ(RunCommand("cd " + ShellQuote(work) + " && printf '" + std::string(kOrigin) +
                       "\\n3\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\\n' > log/checkpoint && "
                       "git -c user.name=t -c user.email=t@t commit -q -am forged && "
                       "git push -q origin main"),
            0);
  Status s = (*r)->Refresh();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kDataError);
  EXPECT_NE(s.message().find("checkpoint.p7s"), std::string::npos) << s.message();
  EXPECT_EQ((*r)->head(), head);
  EXPECT_EQ((*r)->checkpoint_body(), body);
  EXPECT_EQ((*r)->size(), 2u);
}

TEST_F(ReaderTest, ConfigIsReadFromTheRepositoryOnly) {
  auto a = Create();
  ASSERT_TRUE(a);
  ASSERT_TRUE(SetArchiveConfig(path_, {{"sealpost.origin", kOrigin},
                                       {"sealpost.trust", "/etc/sealpost/Công đoàn.pem"}})
                  .ok());
  auto r = ArchiveReader::Open(path_);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)->ConfigString("sealpost.origin"), std::optional<std::string>(kOrigin));
  EXPECT_EQ((*r)->ConfigString("sealpost.trust"),
            std::optional<std::string>("/etc/sealpost/Công đoàn.pem"));
  EXPECT_EQ((*r)->ConfigString("sealpost.key"), std::nullopt);
  EXPECT_EQ(Git(path_, "config --local sealpost.origin"), std::string(kOrigin) + "\n");
}

TEST_F(ReaderTest, ParseManifestRejectsWhatBuildManifestNeverWrites) {
  EntryInput e = Doc(1);
  e.fields["issuer"] = "cd-\"baichay\"\\x";
  std::string good = BuildManifest(e, kOrigin, 7, 1700000000);
  auto m = ParseManifest(good, "m");
  ASSERT_TRUE(m.has_value()) << m.error().ToString();
  EXPECT_EQ(m->Field("issuer"), "cd-\"baichay\"\\x");
  EXPECT_EQ(m->seq, 7u);
  EXPECT_EQ(m->time, "2023-11-14T22:13:20Z");
  for (const std::string& bad : {
           std::string(""), good + " ", good.substr(0, good.size() - 1),
           std::string("{\"seq\":1}"),
           [&] { std::string s = good; s.replace(s.find("\"seq\":7"), 7, "\"seq\":07"); return s; }(),
           [&] { std::string s = good; s.replace(s.find("\"kind\""), 6, "\"kinx\""); return s; }(),
           [&] { std::string s = good; s.replace(s.find("\"format\":1"), 10, "\"format\":2"); return s; }(),
           [&] { std::string s = good; s.replace(s.find("document-sent"), 13, "document-lost"); return s; }(),
       }) {
    EXPECT_FALSE(ParseManifest(bad, "m").has_value()) << bad;
  }
}

TEST_F(ReaderTest, MirrorPushesForwardAndRefusesRewrittenRemote) {
  auto a = Create();
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->Append(Doc(1)).has_value());
  std::string bare = tmp_.file("mirror.git");
  ASSERT_EQ(RunCommand("git init -q --bare " + ShellQuote(bare)), 0);
  auto m = MirrorMain(path_, bare);
  ASSERT_TRUE(m.has_value()) << m.error().ToString();
  EXPECT_EQ(m->remote_before, "");
  EXPECT_EQ(Git(bare, "rev-parse main"), a->head() + "\n");
  ASSERT_TRUE(a->Append(Doc(2)).has_value());
  m = MirrorMain(path_, "file://" + bare);
  ASSERT_TRUE(m.has_value()) << m.error().ToString();
  EXPECT_EQ(Git(bare, "rev-parse main"), a->head() + "\n");
  // Rewritten: the mirror's main replaced by a commit the archive never had.
  std::string forged = Git(bare, "commit-tree -p main~1 -m forged main^{tree}");
  forged.pop_back();
  Git(bare, "update-ref refs/heads/main " + forged);
  ASSERT_TRUE(a->Append(Doc(3)).has_value());
  m = MirrorMain(path_, bare);
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(Git(bare, "rev-parse main"), forged + "\n");
  EXPECT_EQ(MirrorMain(path_, "https://example.org/x.git").error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace sealpost::storage
