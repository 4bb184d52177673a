#include "storage/archive.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>

#include "base/encoding.h"
#include "crypto/cades_sign.h"
#include "crypto/checkpoint.h"
#include "crypto/digest.h"
#include "crypto/merkle.h"
#include "crypto/software_signer.h"
#include "storage/audit.h"
#include "tests/support/cms_peers.h"
#include "tests/support/test_pki.h"

namespace sealpost::storage {
namespace {

using sealpost::testing::CertSpec;
using sealpost::testing::CertToPem;
using sealpost::testing::RunCommand;
using sealpost::testing::ShellQuote;
using sealpost::testing::TempDir;
using sealpost::testing::TestCa;
using sealpost::testing::WriteTestFile;
namespace merkle = crypto::merkle;

constexpr const char* kOrigin = "cd-baichay.vn/archive";

std::unique_ptr<crypto::SoftwareKeySigner> MakeSigner(TestCa& ca, const std::string& label,
                                                      const std::string& cn) {
  CertSpec spec;
  spec.subject = "/CN=" + cn + "/O=Công đoàn Bãi Cháy/C=VN";
  auto issued = ca.Issue(spec);
  auto signer = crypto::SoftwareKeySigner::CreateForTesting(label, std::move(issued.key),
                                                            std::move(issued.cert));
  EXPECT_TRUE(signer.has_value());
  return std::move(*signer);
}

EntryInput Document(int i) {
  EntryInput e;
  e.kind = EntryKind::kDocumentSent;
  e.fields["id"] = "doc-" + std::to_string(i);
  e.fields["subject"] = "Báo cáo tài chính quý " + std::to_string(i);
  e.files.push_back({"content.txt", "document body " + std::to_string(i) + "\n"});
  e.files.push_back({"content.txt.p7s", std::string(64, static_cast<char>('a' + i % 26))});
  return e;
}

std::string Git(const std::string& dir, const std::string& args, int* rc = nullptr) {
  std::string out;
  int r = RunCommand("git -C " + ShellQuote(dir) + " " + args, &out);
  if (rc != nullptr) *rc = r;
  return out;
}

class ArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Test Root/O=Test Federation/C=VN"));
    signer_ = MakeSigner(*ca_, "seal", "Con dấu Công đoàn Bãi Cháy");
    path_ = tmp_.file("archive.git");
  }

  ArchiveOptions Options(crypto::Signer* signer = nullptr, std::string origin = kOrigin) {
    ArchiveOptions o;
    o.origin = std::move(origin);
    o.signer = signer != nullptr ? signer : signer_.get();
    o.seal_key = crypto::KeyRef{signer != nullptr ? "other" : "seal"};
    return o;
  }

  std::unique_ptr<Archive> CreateArchive() {
    auto a = Archive::Create(path_, Options());
    EXPECT_TRUE(a.has_value()) << a.error().ToString();
    return a.has_value() ? std::move(*a) : nullptr;
  }

  // git fsck --strict, and git verify-commit (x509, gpgsm) of every commit.
  void ExpectStockGitAccepts() {
    int rc = 0;
    std::string out = Git(path_, "fsck --strict --no-dangling", &rc);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out.find("error"), std::string::npos) << out;
    EXPECT_EQ(out.find("warning"), std::string::npos) << out;

    sealpost::testing::GpgsmHome gpg(tmp_.path());
    ASSERT_TRUE(gpg.TrustCa(ca_->cert()));
    std::stringstream commits(Git(path_, "rev-list main"));
    std::string c;
    int n = 0;
    while (std::getline(commits, c)) {
      std::string vout;
      int vrc = RunCommand("GNUPGHOME=" + ShellQuote(tmp_.path() + "/gnupg") + " git -C " +
                               ShellQuote(path_) + " -c gpg.format=x509 verify-commit " + c,
                           &vout);
      EXPECT_EQ(vrc, 0) << c << ": " << vout;
      EXPECT_NE(vout.find("Good signature"), std::string::npos) << c << ": " << vout;
      ++n;
    }
    EXPECT_GT(n, 0);
  }

  // The checkpoint in the head commit matches the manifests and is signed.
  void ExpectCheckpointMatchesEntries(Archive& a) {
    auto leaves = a.ReadLeafHashes();
    ASSERT_TRUE(leaves.has_value()) << leaves.error().ToString();
    crypto::Checkpoint cp = a.checkpoint();
    EXPECT_EQ(cp.size, leaves->size());
    EXPECT_EQ(cp.root, merkle::RootFromLeafHashes(*leaves));
    std::string body = Git(path_, "cat-file blob main:log/checkpoint");
    EXPECT_EQ(body, *crypto::SerializeCheckpoint(cp));
    WriteTestFile(tmp_.file("cp"), body);
    RunCommand("git -C " + ShellQuote(path_) + " cat-file blob main:log/checkpoint.p7s > " +
               ShellQuote(tmp_.file("cp.p7s")));
    auto seal = signer_->Certificate(crypto::KeyRef{"seal"});
    Status s = crypto::VerifyCheckpointSignature(body, sealpost::testing::ReadTestFile(tmp_.file("cp.p7s")),
                                                 seal->get(), "cp.p7s");
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

  TempDir tmp_;
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<crypto::SoftwareKeySigner> signer_;
  std::string path_;
};

TEST_F(ArchiveTest, CreateWritesFormatSealAndFirstEntryThatStockGitAccepts) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->size(), 1u);
  EXPECT_EQ(Git(path_, "symbolic-ref HEAD"), "refs/heads/main\n");
  EXPECT_EQ(Git(path_, "rev-parse --is-bare-repository"), "true\n");
  EXPECT_EQ(Git(path_, "cat-file blob main:FORMAT"), "sealpost-archive 1\n");
  std::string manifest = Git(path_, "cat-file blob main:" + EntryDir(1) + "/manifest.json");
  EXPECT_NE(manifest.find("\"kind\":\"key-change\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"seq\":1"), std::string::npos) << manifest;
  EXPECT_EQ(Git(path_, "cat-file blob main:seal.pem"),
            Git(path_, "cat-file blob main:" + EntryDir(1) + "/seal.pem"));
  ExpectCheckpointMatchesEntries(*a);
  ExpectStockGitAccepts();
}

TEST_F(ArchiveTest, SequentialAppendsAreGaplessSignedAndMatchCheckpoint) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  std::string previous = a->head();
  for (int i = 0; i < 20; ++i) {
    auto r = a->Append(Document(i));
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(r->seq, static_cast<uint64_t>(i + 2));
    EXPECT_EQ(r->commit, a->head());
    // The branch only moved forward: the new head descends from the old.
    int rc = 0;
    Git(path_, "merge-base --is-ancestor " + previous + " " + r->commit, &rc);
    EXPECT_EQ(rc, 0);
    previous = r->commit;
    auto manifest = a->ReadEntryFile(r->seq, "manifest.json");
    ASSERT_TRUE(manifest.has_value());
    EXPECT_EQ(merkle::LeafHash(*manifest), r->leaf);
  }
  EXPECT_EQ(a->size(), 21u);
  EXPECT_EQ(Git(path_, "rev-list --count main"), "21\n");
  EXPECT_EQ(Git(path_, "cat-file blob main:" + EntryDir(7) + "/content.txt"), "document body 5\n");
  ExpectCheckpointMatchesEntries(*a);
  ExpectStockGitAccepts();
}

TEST_F(ArchiveTest, ConcurrentAppendsAreGroupedGaplessAndDurable) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  constexpr int kThreads = 16, kEach = 25;
  std::vector<std::vector<Appended>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r = a->Append(Document(t * 1000 + i));
        if (r.has_value()) got[t].push_back(*r);
        else ADD_FAILURE() << r.error().ToString();
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint64_t> seqs;
  for (const auto& v : got) {
    for (const Appended& r : v) seqs.insert(r.seq);
  }
  ASSERT_EQ(seqs.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(*seqs.begin(), 2u);
  EXPECT_EQ(*seqs.rbegin(), static_cast<uint64_t>(kThreads * kEach + 1));  // gapless
  EXPECT_LT(a->commits_written(), static_cast<uint64_t>(kThreads * kEach))
      << "appends were not grouped";
  // Every acknowledged append is on the branch with its own content.
  for (const auto& v : got) {
    for (const Appended& r : v) {
      auto m = a->ReadEntryFile(r.seq, "manifest.json");
      ASSERT_TRUE(m.has_value());
      EXPECT_EQ(merkle::LeafHash(*m), r.leaf);
      int rc = 0;
      Git(path_, "merge-base --is-ancestor " + r.commit + " main", &rc);
      EXPECT_EQ(rc, 0);
    }
  }
  ExpectCheckpointMatchesEntries(*a);
  ExpectStockGitAccepts();
}

TEST_F(ArchiveTest, AppendAfterBranchMovedByAnotherWriterFailsAndKeepsTheirCommit) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->Append(Document(1)).has_value());
  // Someone else moves main (an unsigned commit on top) behind our back.
  std::string foreign = Git(path_, "-c user.name=x -c user.email=x@x commit-tree main^{tree} -p main -m intruder");
  foreign.erase(foreign.find_last_not_of("\n") + 1);
  int rc = 0;
  Git(path_, "update-ref refs/heads/main " + foreign, &rc);
  ASSERT_EQ(rc, 0);

  auto r = a->Append(Document(2));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition) << r.error().ToString();
  EXPECT_EQ(Git(path_, "rev-parse main"), foreign + "\n");  // CAS did not overwrite it
  auto again = a->Append(Document(3));
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), Code::kFailedPrecondition);
}

// The pack writer's output as stock git sees it: ids, contents, tree order,
// objects stored (incompressible), deflated (text) and a pack larger than
// the writer's in-memory buffer (written out as it grows).
TEST_F(ArchiveTest, PackWriterOutputIsReadByStockGit) {
  const std::string repo = tmp_.file("plain.git");
  int rc = 0;
  std::string out;
  ASSERT_EQ(RunCommand("git init -q --bare " + ShellQuote(repo), &out), 0) << out;
  uint32_t x = 12345;
  auto noise = [&x](size_t n) {
    std::string out(n, '\0');
    for (char& c : out) {
      x = x * 1103515245u + 12345u;
      c = static_cast<char>(x >> 24);
    }
    return out;
  };
  const std::string random = noise(20000);
  std::string text;
  for (int i = 0; i < 2000; ++i) text += std::to_string(i) + " a line of text that deflates well\n";
  const std::string big = noise(9u << 20);
  // Every size class of the small deflate streams (and their edges: the
  // window holds the object plus 262 bytes of look-ahead), an empty blob,
  // a stored object of exactly one block and one of a block and a byte.
  std::vector<std::string> more = {std::string(), "x", noise(600), noise(65535), noise(65536)};
  for (size_t n : {100u, 761u, 762u, 763u, 3833u, 3834u, 3835u, 16121u, 16123u, 40000u}) {
    more.push_back(text.substr(0, n));
    more.back().back() = '#';  // distinct from the prefix of a longer one
  }
  auto w = PackWriter::Create(repo + "/objects/pack");
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  std::vector<std::pair<git_oid, const std::string*>> blobs;
  std::vector<const std::string*> all = {&random, &text, &big};
  for (const std::string& m : more) all.push_back(&m);
  for (const std::string* data : all) {
    auto id = (*w)->AddObject(GIT_OBJECT_BLOB, *data);
    ASSERT_TRUE(id.has_value()) << id.error().ToString();
    blobs.push_back({*id, data});
  }
  auto sub = (*w)->AddObject(GIT_OBJECT_TREE, SerializeTree({{"x", blobs[1].first, false}}));
  ASSERT_TRUE(sub.has_value());
  // git's order: "foo.txt" < "foo-" ... by bytes, a directory as "foo/".
  auto tree = (*w)->AddObject(
      GIT_OBJECT_TREE, SerializeTree({{"foo", *sub, true},
                                      {"foo.txt", blobs[0].first, false},
                                      {"foo-bar", blobs[1].first, false},
                                      {"foo0", blobs[2].first, false},
                                      {"bar", blobs[1].first, false}}));
  ASSERT_TRUE(tree.has_value());
  EXPECT_GT((*w)->pack_bytes(), 8u << 20);  // beyond the buffer
  auto name = (*w)->Finish();
  ASSERT_TRUE(name.has_value()) << name.error().ToString();
  ASSERT_TRUE((*w)->Publish().ok());
  out = Git(repo, "verify-pack -v objects/pack/" + *name + ".idx", &rc);
  ASSERT_EQ(rc, 0) << out;
  for (const auto& [id, data] : blobs) {
    WriteTestFile(tmp_.file("blob"), *data);
    std::string hashed = Git(repo, "hash-object " + ShellQuote(tmp_.file("blob")));
    EXPECT_EQ(hashed, OidHex(id) + "\n");
    RunCommand("git -C " + ShellQuote(repo) + " cat-file blob " + OidHex(id) + " > " +
                   ShellQuote(tmp_.file("back")),
               &out);
    EXPECT_TRUE(sealpost::testing::ReadTestFile(tmp_.file("back")) == *data)
        << OidHex(id) << " of " << data->size() << " bytes";
  }
  // The same objects made outside the writer (PackObject, as appenders
  // do) are byte for byte what the writer stores.
  for (const auto& [id, data] : blobs) {
    if (data->size() > (1u << 20)) continue;
    auto packed = PackObject(GIT_OBJECT_BLOB, *data);
    ASSERT_TRUE(packed.has_value());
    EXPECT_EQ(OidHex(packed->id), OidHex(id));
    EXPECT_EQ(packed->crc, static_cast<uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(
                                                               packed->entry.data()),
                                                           packed->entry.size())));
  }
  out = Git(repo, "ls-tree --name-only " + OidHex(*tree), &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, "bar\nfoo-bar\nfoo.txt\nfoo\nfoo0\n");
  Git(repo, "update-ref refs/heads/main " +
                Git(repo, "-c user.name=x -c user.email=x@x commit-tree " + OidHex(*tree) + " -m t")
                    .substr(0, GIT_OID_HEXSZ),
      &rc);
  ASSERT_EQ(rc, 0);
  out = Git(repo, "fsck --strict", &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("error"), std::string::npos) << out;
}

// Commits that cannot be made durable (here: main.lock held by someone
// else) fail — with them every commit the writer already built on top of
// them — and the next append is built on the durable head: gapless, and
// nothing of the failed appends is in the log.
TEST_F(ArchiveTest, FailedCommitsFailWhatWasBuiltOnThemAndTheNextBuildsOnTheDurableHead) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->Append(Document(1)).has_value());
  const std::string before = Git(path_, "rev-parse main");
  WriteTestFile(path_ + "/refs/heads/main.lock", "held by someone else\n");
  std::vector<std::thread> threads;
  std::atomic<int> failed{0}, succeeded{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 4; ++i) {
        auto r = a->Append(Document(100 + t * 10 + i));
        if (r.has_value()) {
          ++succeeded;
        } else {
          EXPECT_EQ(r.error().code(), Code::kUnavailable) << r.error().ToString();
          ++failed;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(succeeded.load(), 0);
  EXPECT_EQ(failed.load(), 32);
  EXPECT_EQ(Git(path_, "rev-parse main"), before);
  EXPECT_EQ(a->size(), 2u);
  ASSERT_EQ(::unlink((path_ + "/refs/heads/main.lock").c_str()), 0);
  std::vector<std::thread> again;
  std::set<uint64_t> seqs;
  std::mutex mu;
  for (int t = 0; t < 8; ++t) {
    again.emplace_back([&, t] {
      auto r = a->Append(Document(200 + t));
      ASSERT_TRUE(r.has_value()) << r.error().ToString();
      std::lock_guard<std::mutex> lock(mu);
      seqs.insert(r->seq);
    });
  }
  for (auto& th : again) th.join();
  ASSERT_EQ(seqs.size(), 8u);
  EXPECT_EQ(*seqs.begin(), 3u);
  EXPECT_EQ(*seqs.rbegin(), 10u);
  EXPECT_EQ(a->size(), 10u);
  ExpectCheckpointMatchesEntries(*a);
  ExpectStockGitAccepts();
}

TEST_F(ArchiveTest, ReopenAfterCrashWithLeftoverRefLockLosesNothing) {
  std::vector<Appended> acknowledged;
  {
    auto a = CreateArchive();
    ASSERT_TRUE(a);
    for (int i = 0; i < 10; ++i) acknowledged.push_back(*a->Append(Document(i)));
  }
  // A crash between creating main.lock and renaming it leaves this behind;
  // libgit2 then refuses every ref update with GIT_ELOCKED.
  WriteTestFile(path_ + "/refs/heads/main.lock", "0123456789012345678901234567890123456789\n");
  auto a = Archive::Open(path_, Options());
  ASSERT_TRUE(a.has_value()) << a.error().ToString();
  struct stat st;
  EXPECT_NE(::stat((path_ + "/refs/heads/main.lock").c_str(), &st), 0);
  EXPECT_EQ((*a)->size(), 11u);
  for (const Appended& r : acknowledged) {
    auto m = (*a)->ReadEntryFile(r.seq, "manifest.json");
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(merkle::LeafHash(*m), r.leaf);
  }
  auto next = (*a)->Append(Document(99));
  ASSERT_TRUE(next.has_value()) << next.error().ToString();
  EXPECT_EQ(next->seq, 12u);
  ExpectCheckpointMatchesEntries(**a);
  ExpectStockGitAccepts();
}

TEST_F(ArchiveTest, OpenWhileAnotherWriterHoldsItFailsUnavailable) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  auto b = Archive::Open(path_, Options());
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().code(), Code::kUnavailable) << b.error().ToString();
}

TEST_F(ArchiveTest, OpenArchiveOfAnotherOriginFailsAndChangesNothing) {
  { ASSERT_TRUE(CreateArchive()); }
  std::string before = Git(path_, "rev-parse main");
  auto b = Archive::Open(path_, Options(nullptr, "cd-other.vn/archive"));
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(b.error().message().find(kOrigin), std::string::npos) << b.error().message();
  EXPECT_EQ(Git(path_, "rev-parse main"), before);
}

TEST_F(ArchiveTest, OpenWithKeyThatIsNotTheSealFails) {
  { ASSERT_TRUE(CreateArchive()); }
  auto other = MakeSigner(*ca_, "other", "Con dấu Công đoàn Bãi Cháy");  // same CA, same name
  auto b = Archive::Open(path_, Options(other.get()));
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().code(), Code::kFailedPrecondition) << b.error().ToString();
}

TEST_F(ArchiveTest, OpenSomethingThatIsNotAnArchiveFailsClearly) {
  auto missing = Archive::Open(tmp_.file("nothing-here"), Options());
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);

  ASSERT_EQ(::mkdir(tmp_.file("plain").c_str(), 0700), 0);
  WriteTestFile(tmp_.file("plain/file.txt"), "x");
  auto plain = Archive::Open(tmp_.file("plain"), Options());
  ASSERT_FALSE(plain.has_value());
  EXPECT_EQ(plain.error().code(), Code::kDataError) << plain.error().ToString();
  struct stat st;
  EXPECT_NE(::stat(tmp_.file("plain/sealpost.lock").c_str(), &st), 0) << "changed the directory";

  ASSERT_EQ(RunCommand("git init -q --bare -b main " + ShellQuote(tmp_.file("bare.git"))), 0);
  auto bare = Archive::Open(tmp_.file("bare.git"), Options());
  ASSERT_FALSE(bare.has_value());
  EXPECT_EQ(bare.error().code(), Code::kDataError) << bare.error().ToString();
}

TEST_F(ArchiveTest, OpenWithMissingOrCorruptHeadObjectFailsClearlyAndChangesNothing) {
  { ASSERT_TRUE(CreateArchive()); }
  const std::string ref = path_ + "/refs/heads/main";
  std::string good = sealpost::testing::ReadTestFile(ref);
  WriteTestFile(ref, std::string(40, '1') + "\n");  // names an object that does not exist
  auto a = Archive::Open(path_, Options());
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code(), Code::kDataError) << a.error().ToString();
  EXPECT_NE(a.error().message().find("head commit"), std::string::npos) << a.error().message();
  EXPECT_EQ(sealpost::testing::ReadTestFile(ref), std::string(40, '1') + "\n");

  // Corrupt every pack's data (keep the headers): the head cannot be read.
  WriteTestFile(ref, good);
  for (const auto& e : std::filesystem::directory_iterator(path_ + "/objects/pack")) {
    if (e.path().extension() != ".pack") continue;
    std::string data = sealpost::testing::ReadTestFile(e.path().string());
    for (size_t i = 12; i + 20 < data.size(); ++i) data[i] = static_cast<char>(data[i] ^ 0x5a);
    std::filesystem::permissions(e.path(), std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::add);
    WriteTestFile(e.path().string(), data);
  }
  auto b = Archive::Open(path_, Options());
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().code(), Code::kDataError) << b.error().ToString();
  EXPECT_EQ(sealpost::testing::ReadTestFile(ref), good);
}

TEST_F(ArchiveTest, CreateInNonEmptyDirectoryFailsAndLeavesItAlone) {
  ASSERT_EQ(::mkdir(path_.c_str(), 0700), 0);
  WriteTestFile(path_ + "/keep.txt", "mine");
  auto a = Archive::Create(path_, Options());
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(sealpost::testing::ReadTestFile(path_ + "/keep.txt"), "mine");
}

TEST_F(ArchiveTest, InvalidEntryIsRefusedAndNothingIsWritten) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  std::string head = a->head();
  EntryInput bad = Document(1);
  bad.files.push_back({"../escape", "x"});
  auto r = a->Append(bad);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().message().find("../escape"), std::string::npos);
  EntryInput dangling = Document(2);
  dangling.refers_to = 5;
  EXPECT_EQ(a->Append(dangling).error().code(), Code::kInvalidArgument);
  EntryInput bad_field = Document(3);
  bad_field.fields["subject"] = "two\nlines";
  EXPECT_EQ(a->Append(bad_field).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(a->head(), head);
  EXPECT_EQ(a->size(), 1u);
  EXPECT_EQ(Git(path_, "rev-parse main"), head + "\n");
}

TEST_F(ArchiveTest, EntriesAreShardedSoLeafTreesHoldAtMost256Entries) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 75; ++i) ASSERT_TRUE(a->Append(Document(t * 100 + i)).has_value());
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(a->size(), 601u);
  EXPECT_EQ(EntryDir(300), "entries/00/00/01/300");
  auto count = [&](const std::string& tree) {
    std::string out = Git(path_, "ls-tree main:" + tree);
    return std::count(out.begin(), out.end(), '\n');
  };
  EXPECT_EQ(count("entries/00/00/00"), 255);  // 1..255
  EXPECT_EQ(count("entries/00/00/01"), 256);  // 256..511
  EXPECT_EQ(count("entries/00/00/02"), 90);   // 512..601
  EXPECT_EQ(count("entries/00/00"), 3);
  // A later commit rewrites only the path to its entries: unchanged shards
  // keep their tree ids.
  EXPECT_EQ(Git(path_, "rev-parse main:entries/00/00/00"),
            Git(path_, "rev-parse main~1:entries/00/00/00"));
  ExpectCheckpointMatchesEntries(*a);
}

TEST_F(ArchiveTest, ProofsFromArchiveVerifyAgainstItsSignedCheckpoints) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  std::vector<Appended> appended;
  std::vector<std::pair<std::string, crypto::Checkpoint>> history;  // commit, checkpoint
  for (int i = 0; i < 24; ++i) {
    appended.push_back(*a->Append(Document(i)));
    history.emplace_back(appended.back().commit, a->checkpoint());
  }
  crypto::Checkpoint now = a->checkpoint();
  ASSERT_EQ(now.size, 25u);
  for (const Appended& r : appended) {
    auto proof = a->InclusionProof(r.seq, now.size);
    ASSERT_TRUE(proof.has_value()) << proof.error().ToString();
    EXPECT_TRUE(merkle::VerifyInclusion(r.leaf, r.seq - 1, now.size, *proof, now.root).ok());
    EXPECT_FALSE(merkle::VerifyInclusion(merkle::LeafHash("forged manifest"), r.seq - 1, now.size,
                                         *proof, now.root)
                     .ok());
  }
  for (const auto& [commit, cp] : history) {
    // The checkpoint stored in that commit is the one the archive reported.
    std::string body = Git(path_, "cat-file blob " + commit + ":log/checkpoint");
    auto parsed = crypto::ParseCheckpoint(body, commit);
    ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
    EXPECT_EQ(*parsed, cp);
    auto proof = a->ConsistencyProof(cp.size, now.size);
    ASSERT_TRUE(proof.has_value()) << proof.error().ToString();
    Status s = merkle::VerifyConsistency(cp.size, now.size, cp.root, now.root, *proof);
    EXPECT_TRUE(s.ok()) << cp.size << ": " << s.ToString();
  }
  EXPECT_EQ(a->InclusionProof(26, 25).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(a->ConsistencyProof(3, 26).error().code(), Code::kInvalidArgument);
}

TEST_F(ArchiveTest, ManyCommitsAreMergedIntoFewPacksAndStayReadable) {
  std::vector<Appended> acknowledged;
  {
    auto a = CreateArchive();
    ASSERT_TRUE(a);
    for (int i = 0; i < 60; ++i) acknowledged.push_back(*a->Append(Document(i)));
  }
  auto count_packs = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(path_ + "/objects/pack")) {
      if (e.path().extension() == ".pack") ++n;
    }
    return n;
  };
  EXPECT_LE(count_packs(), static_cast<int>(kMaxPacks) + 1);
  std::string loose = Git(path_, "count-objects -v");
  EXPECT_NE(loose.find("count: 0\n"), std::string::npos) << loose;
  EXPECT_NE(loose.find("garbage: 0\n"), std::string::npos) << loose;
  auto a = Archive::Open(path_, Options());
  ASSERT_TRUE(a.has_value()) << a.error().ToString();
  // Packs found at open are merged like the ones written since.
  for (int i = 60; i < 100; ++i) acknowledged.push_back(*(*a)->Append(Document(i)));
  EXPECT_LE(count_packs(), static_cast<int>(kMaxPacks) + 1);
  for (const Appended& r : acknowledged) {
    auto m = (*a)->ReadEntryFile(r.seq, "manifest.json");
    ASSERT_TRUE(m.has_value()) << r.seq;
    EXPECT_EQ(merkle::LeafHash(*m), r.leaf);
  }
  ExpectCheckpointMatchesEntries(**a);
  ExpectStockGitAccepts();
}

TEST_F(ArchiveTest, OpenRemovesPackLeftWithoutIndexByACrash) {
  { ASSERT_TRUE(CreateArchive()); }
  WriteTestFile(path_ + "/objects/pack/pack-0123456789abcdef0123456789abcdef01234567.pack", "PACK");
  WriteTestFile(path_ + "/objects/pack/pack_git2_deadbeef", "tmp");
  auto a = Archive::Open(path_, Options());
  ASSERT_TRUE(a.has_value()) << a.error().ToString();
  struct stat st;
  EXPECT_NE(::stat((path_ + "/objects/pack/pack-0123456789abcdef0123456789abcdef01234567.pack").c_str(), &st), 0);
  EXPECT_NE(::stat((path_ + "/objects/pack/pack_git2_deadbeef").c_str(), &st), 0);
  ASSERT_TRUE((*a)->Append(Document(1)).has_value());
  ExpectStockGitAccepts();
}

// PublishCommit syncs the renames of the pack, its index and the ref in one
// round: a file system may keep the ref's rename and lose the others in a
// crash. The pack's contents were durable, so Open rolls it forward.
TEST_F(ArchiveTest, RefDurableBeforeItsPackRenamesIsRolledForwardAtOpen) {
  std::vector<Appended> acknowledged;
  {
    auto a = CreateArchive();
    ASSERT_TRUE(a);
    for (int i = 0; i < 5; ++i) acknowledged.push_back(*a->Append(Document(i)));
  }
  const std::string pack_dir = path_ + "/objects/pack";
  git_oid head;
  ASSERT_EQ(git_oid_fromstr(&head, acknowledged.back().commit.c_str()), 0);
  std::string base;  // objects/pack/pack-<hex> holding the head commit
  for (const auto& e : std::filesystem::directory_iterator(pack_dir)) {
    if (e.path().extension() != ".idx") continue;
    auto ids = ReadPackIndex(e.path().string());
    ASSERT_TRUE(ids.has_value()) << ids.error().ToString();
    for (const git_oid& id : *ids) {
      if (git_oid_equal(&id, &head)) base = pack_dir + "/" + e.path().stem().string();
    }
  }
  ASSERT_FALSE(base.empty());
  const std::string tmp_pack = pack_dir + "/tmp_sealpost_pack_crash1";
  const std::string tmp_idx = pack_dir + "/tmp_sealpost_idx_crash1";
  struct Case {
    bool pack_lost, idx_lost;
  };
  for (Case c : {Case{true, true}, Case{false, true}, Case{true, false}}) {
    SCOPED_TRACE(std::string("pack rename lost: ") + (c.pack_lost ? "yes" : "no") +
                 ", idx rename lost: " + (c.idx_lost ? "yes" : "no"));
    if (c.pack_lost) {
      ASSERT_EQ(::rename((base + ".pack").c_str(), tmp_pack.c_str()), 0);
    }
    if (c.idx_lost) {
      ASSERT_EQ(::rename((base + ".idx").c_str(), tmp_idx.c_str()), 0);
    }
    auto a = Archive::Open(path_, Options());
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    struct stat st;
    EXPECT_EQ(::stat((base + ".pack").c_str(), &st), 0);
    EXPECT_EQ(::stat((base + ".idx").c_str(), &st), 0);
    EXPECT_NE(::stat(tmp_pack.c_str(), &st), 0);
    EXPECT_NE(::stat(tmp_idx.c_str(), &st), 0);
    EXPECT_EQ((*a)->head(), acknowledged.back().commit);
    for (const Appended& r : acknowledged) {
      auto m = (*a)->ReadEntryFile(r.seq, "manifest.json");
      ASSERT_TRUE(m.has_value()) << m.error().ToString();
      EXPECT_EQ(merkle::LeafHash(*m), r.leaf);
    }
  }
  ExpectStockGitAccepts();

  // A pack that is not complete is not rolled forward, and nothing is
  // removed: Open fails naming the head commit.
  ASSERT_EQ(::rename((base + ".pack").c_str(), tmp_pack.c_str()), 0);
  ASSERT_EQ(::rename((base + ".idx").c_str(), tmp_idx.c_str()), 0);
  std::filesystem::permissions(tmp_pack, std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
  ASSERT_EQ(::truncate(tmp_pack.c_str(), static_cast<off_t>(std::filesystem::file_size(tmp_pack) - 1)), 0);
  auto broken = Archive::Open(path_, Options());
  ASSERT_FALSE(broken.has_value());
  EXPECT_EQ(broken.error().code(), Code::kDataError) << broken.error().ToString();
  EXPECT_NE(broken.error().message().find("head commit"), std::string::npos) << broken.error().message();
  struct stat st;
  EXPECT_EQ(::stat(tmp_pack.c_str(), &st), 0);
  EXPECT_EQ(::stat(tmp_idx.c_str(), &st), 0);
}

// The on-disk states a crash leaves after the one sync round of a commit C
// (decision 0005, "Durability"): refs/heads/main.lock naming C is durable,
// C's pack and index are durable under their temporary names (or one or
// both already renamed), the branch still names C's parent.
class ArchiveIntentTest : public ArchiveTest {
 protected:
  void SetUp() override {
    ArchiveTest::SetUp();
    pack_dir_ = path_ + "/objects/pack";
    tmp_pack_ = pack_dir_ + "/tmp_sealpost_pack_intent1";
    tmp_idx_ = pack_dir_ + "/tmp_sealpost_idx_intent1";
    lock_ = path_ + "/refs/heads/main.lock";
    ref_ = path_ + "/refs/heads/main";
    {
      auto a = CreateArchive();
      ASSERT_TRUE(a);
      for (int i = 0; i < 4; ++i) acknowledged_.push_back(*a->Append(SignedDocument(i)));
    }
    head_ = acknowledged_.back().commit;
    parent_ = Trim(Git(path_, "rev-parse main~1"));
    grandparent_ = Trim(Git(path_, "rev-parse main~2"));
    git_oid head;
    ASSERT_EQ(git_oid_fromstr(&head, head_.c_str()), 0);
    for (const auto& e : std::filesystem::directory_iterator(pack_dir_)) {
      if (e.path().extension() != ".idx") continue;
      auto ids = ReadPackIndex(e.path().string());
      ASSERT_TRUE(ids.has_value()) << ids.error().ToString();
      for (const git_oid& id : *ids) {
        if (git_oid_equal(&id, &head)) base_ = pack_dir_ + "/" + e.path().stem().string();
      }
    }
    ASSERT_FALSE(base_.empty());
    trust_ = tmp_.file("ca.pem");
    WriteTestFile(trust_, CertToPem(ca_->cert()));
  }

  // A document entry the audit accepts: content, content.p7s by an officer
  // of the CA, certs.pem.
  EntryInput SignedDocument(int i) {
    if (!officer_) officer_ = MakeSigner(*ca_, "officer", "Nguyễn Thị Duyên");
    const crypto::KeyRef key{"officer"};
    EntryInput e;
    e.kind = EntryKind::kDocumentSent;
    std::string content = "Báo cáo tài chính quý " + std::to_string(i) + "\n";
    auto cert = officer_->Certificate(key);
    auto alg = crypto::DigestAlgForKey(X509_get0_pubkey(cert->get()));
    auto digest = crypto::DigestBytes(crypto::DigestAlgMd(*alg), content);
    auto der = crypto::BuildDetachedSignature(*officer_, key, cert->get(), *alg, *digest,
                                              crypto::CadesSignOptions{});
    EXPECT_TRUE(der.has_value()) << der.error().ToString();
    e.fields["id"] = "cd-baichay.vn/doc-" + std::to_string(i);
    e.fields["type"] = "report";
    e.fields["subject"] = "Báo cáo số " + std::to_string(i);
    e.fields["content_name"] = "bao-cao-" + std::to_string(i) + ".txt";
    e.fields["content_media_type"] = "text/plain";
    e.fields["content_size"] = std::to_string(content.size());
    e.fields["content_sha256"] = HexEncode(*crypto::DigestBytes(EVP_sha256(), content));
    e.files.push_back({"content.p7s", der.value_or("")});
    e.files.push_back({"certs.pem", CertToPem(cert->get())});
    e.files.push_back({"content", std::move(content)});
    return e;
  }

  static std::string Trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }

  // Puts the archive in the state "C's sync round done, renames lost".
  void MakeIntent(bool pack_renamed, bool idx_renamed, const std::string& branch) {
    if (!pack_renamed) {
      ASSERT_EQ(::rename((base_ + ".pack").c_str(), tmp_pack_.c_str()), 0);
    }
    if (!idx_renamed) {
      ASSERT_EQ(::rename((base_ + ".idx").c_str(), tmp_idx_.c_str()), 0);
    }
    WriteTestFile(lock_, head_ + "\n");
    WriteTestFile(ref_, branch + "\n");
  }

  bool Exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }

  void ExpectAuditClean() {
    AuditOptions o;
    o.trust_files = {trust_};
    auto report = Audit(path_, o);
    ASSERT_TRUE(report.has_value()) << report.error().ToString();
    EXPECT_EQ(report->ExitCode(), 0) << AuditReportToText(*report, Lang::kEn);
    EXPECT_TRUE(report->problems.empty()) << AuditReportToText(*report, Lang::kEn);
    EXPECT_TRUE(report->pending_commit.empty());
  }

  std::unique_ptr<crypto::SoftwareKeySigner> officer_;
  std::vector<Appended> acknowledged_;
  std::string head_, parent_, grandparent_, base_, trust_;
  std::string pack_dir_, tmp_pack_, tmp_idx_, lock_, ref_;
};

TEST_F(ArchiveIntentTest, IntentWithCompletePackIsRolledForwardAtOpenAndAuditsClean) {
  struct Case {
    bool pack_renamed, idx_renamed;
  };
  for (Case c : {Case{false, false}, Case{true, false}, Case{true, true}}) {
    SCOPED_TRACE(std::string("pack renamed: ") + (c.pack_renamed ? "yes" : "no") +
                 ", idx renamed: " + (c.idx_renamed ? "yes" : "no"));
    MakeIntent(c.pack_renamed, c.idx_renamed, parent_);
    // Before Open, outside readers see the parent: nothing half-written;
    // the audit (which changes nothing) notes the pending commit.
    EXPECT_EQ(Trim(Git(path_, "rev-parse main")), parent_);
    {
      AuditOptions o;
      o.trust_files = {trust_};
      auto report = Audit(path_, o);
      ASSERT_TRUE(report.has_value()) << report.error().ToString();
      EXPECT_EQ(report->ExitCode(), 0) << AuditReportToText(*report, Lang::kEn);
      EXPECT_EQ(report->head, parent_);
      EXPECT_EQ(report->pending_commit, head_);
      EXPECT_NE(AuditReportToJson(*report).find("\"pendingCommit\":\"" + head_ + "\""),
                std::string::npos);
      EXPECT_TRUE(Exists(lock_));
    }
    {
      auto a = Archive::Open(path_, Options());
      ASSERT_TRUE(a.has_value()) << a.error().ToString();
      EXPECT_EQ((*a)->head(), head_);
      for (const Appended& r : acknowledged_) {
        auto m = (*a)->ReadEntryFile(r.seq, "manifest.json");
        ASSERT_TRUE(m.has_value()) << m.error().ToString();
        EXPECT_EQ(merkle::LeafHash(*m), r.leaf);
      }
      ExpectCheckpointMatchesEntries(**a);
    }
    EXPECT_FALSE(Exists(lock_));
    EXPECT_FALSE(Exists(tmp_pack_));
    EXPECT_FALSE(Exists(tmp_idx_));
    EXPECT_TRUE(Exists(base_ + ".pack"));
    EXPECT_TRUE(Exists(base_ + ".idx"));
    EXPECT_EQ(sealpost::testing::ReadTestFile(ref_), head_ + "\n");
  }
  ExpectAuditClean();
  ExpectStockGitAccepts();
}

TEST_F(ArchiveIntentTest, RecoverAloneRollsTheIntentForwardForReaders) {
  MakeIntent(false, false, parent_);
  EXPECT_EQ(Trim(Git(path_, "rev-parse main")), parent_);
  Status s = Archive::Recover(path_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Trim(Git(path_, "rev-parse main")), head_);
  EXPECT_FALSE(Exists(lock_));
  ExpectAuditClean();
  // Not while a writer holds the archive.
  auto a = Archive::Open(path_, Options());
  ASSERT_TRUE(a.has_value()) << a.error().ToString();
  EXPECT_EQ(Archive::Recover(path_).code(), Code::kUnavailable);
}

TEST_F(ArchiveIntentTest, IntentWithIncompletePackIsDroppedWithoutTouchingTheBranch) {
  MakeIntent(false, false, parent_);
  std::filesystem::permissions(tmp_pack_, std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
  ASSERT_EQ(::truncate(tmp_pack_.c_str(), static_cast<off_t>(std::filesystem::file_size(tmp_pack_) - 1)), 0);
  {
    auto a = Archive::Open(path_, Options());
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    EXPECT_EQ((*a)->head(), parent_);
    EXPECT_EQ((*a)->size(), acknowledged_.back().seq - 1);
    EXPECT_EQ(sealpost::testing::ReadTestFile(ref_), parent_ + "\n");
    EXPECT_FALSE(Exists(lock_));
    EXPECT_FALSE(Exists(tmp_pack_));
    EXPECT_FALSE(Exists(tmp_idx_));
    // The log goes on from the parent, gapless.
    auto r = (*a)->Append(SignedDocument(9));
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(r->seq, acknowledged_.back().seq);
    ExpectCheckpointMatchesEntries(**a);
  }
  ExpectAuditClean();
  ExpectStockGitAccepts();
}

TEST_F(ArchiveIntentTest, IntentWhoseParentIsNotTheHeadIsDroppedWithoutTouchingTheBranch) {
  MakeIntent(false, false, grandparent_);
  {
    auto a = Archive::Open(path_, Options());
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    EXPECT_EQ((*a)->head(), grandparent_);
    EXPECT_EQ(sealpost::testing::ReadTestFile(ref_), grandparent_ + "\n");
    EXPECT_FALSE(Exists(lock_));
    EXPECT_FALSE(Exists(tmp_pack_));
    EXPECT_FALSE(Exists(tmp_idx_));
  }
  ExpectAuditClean();
  ExpectStockGitAccepts();
}

TEST_F(ArchiveIntentTest, IntentWhoseWriteDidNotReachTheDiskIsDropped) {
  for (const std::string& text : {std::string(), std::string("0123"), head_}) {
    SCOPED_TRACE("main.lock holds \"" + text + "\"");
    WriteTestFile(lock_, text);  // empty, cut, or without its line end
    auto a = Archive::Open(path_, Options());
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    EXPECT_EQ((*a)->head(), head_);
    EXPECT_FALSE(Exists(lock_));
  }
}

TEST_F(ArchiveIntentTest, IdleArchiveHasNoIntentLeftAndClosesDurable) {
  auto a = Archive::Open(path_, Options());
  ASSERT_TRUE(a.has_value()) << a.error().ToString();
  ASSERT_TRUE((*a)->Append(SignedDocument(7)).has_value());
  // The renames follow the acknowledgement, and the idle sync follows them.
  for (int i = 0; i < 200 && (*a)->stats().idle_syncs == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE((*a)->stats().idle_syncs, 1u);
  EXPECT_FALSE(Exists(lock_));
  EXPECT_EQ(sealpost::testing::ReadTestFile(ref_), (*a)->head() + "\n");
}

TEST_F(ArchiveTest, ChangeSealWritesCoSignedEntryAndLaterCommitsAreSignedByTheNewSeal) {
  auto signer2 = MakeSigner(*ca_, "seal2", "Con dấu mới Công đoàn Bãi Cháy");
  const std::string old_pem = CertToPem(signer_->Certificate(crypto::KeyRef{"seal"})->get());
  const std::string new_pem = CertToPem(signer2->Certificate(crypto::KeyRef{"seal2"})->get());
  std::string before_rotation;
  {
    auto a = CreateArchive();
    ASSERT_TRUE(a);
    ASSERT_TRUE(a->Append(Document(1)).has_value());
    before_rotation = a->head();
    // The seal in force is no change: refused, nothing written.
    auto same = a->ChangeSeal(signer_.get(), crypto::KeyRef{"seal"});
    ASSERT_FALSE(same.has_value());
    EXPECT_EQ(same.error().code(), Code::kInvalidArgument);
    EXPECT_EQ(a->head(), before_rotation);

    auto r = a->ChangeSeal(signer2.get(), crypto::KeyRef{"seal2"});
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(r->seq, 3u);
    EXPECT_EQ(CertToPem(a->seal_certificate().get()), new_pem);
    ASSERT_TRUE(a->Append(Document(2)).has_value());
    EXPECT_EQ(a->size(), 4u);
  }
  // Root seal.pem = the certificate of each commit's signer.
  EXPECT_EQ(Git(path_, "cat-file blob " + before_rotation + ":seal.pem"), old_pem);
  EXPECT_EQ(Git(path_, "cat-file blob main:seal.pem"), new_pem);
  EXPECT_EQ(Git(path_, "cat-file blob main~1:seal.pem"), new_pem);
  // The entry: change=rotate, seal.pem and seal.pem.p7s signed by both seals.
  const std::string dir = EntryDir(3);
  std::string manifest = Git(path_, "cat-file blob main:" + dir + "/manifest.json");
  EXPECT_NE(manifest.find("\"change\":\"rotate\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"kind\":\"key-change\""), std::string::npos) << manifest;
  EXPECT_EQ(Git(path_, "cat-file blob main:" + dir + "/seal.pem"), new_pem);
  RunCommand("git -C " + ShellQuote(path_) + " cat-file blob main:" + dir + "/seal.pem.p7s > " +
             ShellQuote(tmp_.file("rot.p7s")));
  WriteTestFile(tmp_.file("rot.pem"), new_pem);
  WriteTestFile(tmp_.file("ca.pem"), CertToPem(ca_->cert()));
  std::string out;
  int rc = RunCommand("openssl cms -verify -binary -inform DER -in " + ShellQuote(tmp_.file("rot.p7s")) +
                          " -content " + ShellQuote(tmp_.file("rot.pem")) + " -CAfile " +
                          ShellQuote(tmp_.file("ca.pem")) + " -purpose any -out /dev/null -signer " +
                          ShellQuote(tmp_.file("signers.pem")),
                      &out);
  EXPECT_EQ(rc, 0) << out;
  std::string signers = sealpost::testing::ReadTestFile(tmp_.file("signers.pem"));
  EXPECT_NE(signers.find(old_pem), std::string::npos);
  EXPECT_NE(signers.find(new_pem), std::string::npos);
  // The head's checkpoint is signed by the new seal, not the old one.
  std::string body = Git(path_, "cat-file blob main:log/checkpoint");
  RunCommand("git -C " + ShellQuote(path_) + " cat-file blob main:log/checkpoint.p7s > " +
             ShellQuote(tmp_.file("cp.p7s")));
  std::string cp_sig = sealpost::testing::ReadTestFile(tmp_.file("cp.p7s"));
  EXPECT_TRUE(crypto::VerifyCheckpointSignature(
                  body, cp_sig, signer2->Certificate(crypto::KeyRef{"seal2"})->get(), "cp")
                  .ok());
  EXPECT_FALSE(crypto::VerifyCheckpointSignature(
                   body, cp_sig, signer_->Certificate(crypto::KeyRef{"seal"})->get(), "cp")
                   .ok());
  // git verify-commit (gpgsm) accepts the commits before and after.
  ExpectStockGitAccepts();
  // Reopening: only the new seal is accepted.
  auto with_old = Archive::Open(path_, Options());
  ASSERT_FALSE(with_old.has_value());
  EXPECT_EQ(with_old.error().code(), Code::kFailedPrecondition);
  ArchiveOptions o = Options();
  o.signer = signer2.get();
  o.seal_key = crypto::KeyRef{"seal2"};
  auto with_new = Archive::Open(path_, o);
  ASSERT_TRUE(with_new.has_value()) << with_new.error().ToString();
  auto r = (*with_new)->Append(Document(3));
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->seq, 5u);
}

TEST_F(ArchiveTest, AppendManyWritesLargeBatchesGaplessAndInOrder) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  std::vector<EntryInput> entries;
  for (int i = 0; i < 700; ++i) entries.push_back(Document(i));
  entries[5].files[0].name = "../bad";  // refused alone, the others go in
  auto results = a->AppendMany(std::move(entries));
  ASSERT_EQ(results.size(), 700u);
  EXPECT_EQ(results[5].error().code(), Code::kInvalidArgument);
  uint64_t expected = 2;
  for (size_t i = 0; i < results.size(); ++i) {
    if (i == 5) continue;
    ASSERT_TRUE(results[i].has_value()) << i << ": " << results[i].error().ToString();
    EXPECT_EQ(results[i]->seq, expected++);
  }
  // 699 entries in at most two commits of max_batch (512) after the first.
  EXPECT_LE(a->commits_written(), 3u);
  EXPECT_EQ(a->size(), 700u);
  ExpectCheckpointMatchesEntries(*a);
  int rc = 0;
  std::string out = Git(path_, "fsck --strict --no-dangling", &rc);
  EXPECT_EQ(rc, 0) << out;
}

// What Append returns and the commit listener is told carry exactly what
// was committed: the manifest, and the commit's signed checkpoint (the
// bytes of <commit>:log/checkpoint and .p7s), so the daemon proves entries
// without reading the archive back (daemon/archive_evidence.h).
TEST_F(ArchiveTest, AppendResultsAndCommitListenerCarryTheCommittedManifestAndSignedCheckpoint) {
  auto a = CreateArchive();
  ASSERT_TRUE(a);
  std::mutex mu;
  std::vector<Appended> told;
  uint64_t calls = 0;
  a->SetCommitListener([&](const std::vector<Appended>& commit) {
    std::lock_guard<std::mutex> lock(mu);
    ++calls;
    for (const Appended& r : commit) told.push_back(r);
  });
  constexpr int kThreads = 8, kEach = 10;
  std::vector<std::vector<Appended>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r = a->Append(Document(t * 1000 + i));
        if (r.has_value()) got[t].push_back(*r);
        else ADD_FAILURE() << r.error().ToString();
      }
    });
  }
  for (auto& th : threads) th.join();
  a->SetCommitListener({});
  ASSERT_TRUE(a->Append(Document(9999)).has_value());  // not told: the listener was removed

  // The listener saw every commit once, in order: seqs 2..81 gapless.
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(told.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(calls, a->commits_written() - 2);  // not the first commit, not the last
  for (size_t i = 0; i < told.size(); ++i) EXPECT_EQ(told[i].seq, i + 2);
  auto seal = signer_->Certificate(crypto::KeyRef{"seal"});
  ASSERT_TRUE(seal.has_value());
  std::map<std::string, std::shared_ptr<const CommittedCheckpoint>> by_commit;
  for (const auto& v : got) {
    for (const Appended& r : v) {
      const Appended& t = told[r.seq - 2];
      EXPECT_EQ(t.commit, r.commit);
      EXPECT_EQ(t.manifest, r.manifest);
      ASSERT_TRUE(r.checkpoint);
      EXPECT_EQ(t.checkpoint, r.checkpoint);  // the same object, shared by the commit
      auto m = a->ReadEntryFile(r.seq, "manifest.json");
      ASSERT_TRUE(m.has_value());
      EXPECT_EQ(r.manifest, *m);
      EXPECT_EQ(merkle::LeafHash(r.manifest), r.leaf);
      EXPECT_EQ(r.checkpoint->size, r.tree_size);
      EXPECT_GE(r.tree_size, r.seq);
      by_commit[r.commit] = r.checkpoint;
    }
  }
  EXPECT_LT(by_commit.size(), static_cast<size_t>(kThreads * kEach)) << "appends were not grouped";
  for (const auto& [commit, cp] : by_commit) {
    EXPECT_EQ(Git(path_, "cat-file blob " + commit + ":log/checkpoint"), cp->body);
    RunCommand("git -C " + ShellQuote(path_) + " cat-file blob " + commit +
               ":log/checkpoint.p7s > " + ShellQuote(tmp_.file("cp.p7s")));
    EXPECT_EQ(sealpost::testing::ReadTestFile(tmp_.file("cp.p7s")), cp->signature);
    Status s = crypto::VerifyCheckpointSignature(cp->body, cp->signature, seal->get(), "cp.p7s");
    EXPECT_TRUE(s.ok()) << s.ToString();
    auto parsed = crypto::ParseCheckpoint(cp->body, "cp");
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->size, cp->size);
    EXPECT_EQ(parsed->root, cp->root);
  }
  // The head's, also after reopening (read from the head commit then).
  auto head_cp = a->signed_checkpoint();
  ASSERT_TRUE(head_cp);
  EXPECT_EQ(head_cp->size, a->size());
  EXPECT_EQ(head_cp->body, Git(path_, "cat-file blob main:log/checkpoint"));
  a.reset();
  auto reopened = Archive::Open(path_, Options());
  ASSERT_TRUE(reopened.has_value()) << reopened.error().ToString();
  auto again = (*reopened)->signed_checkpoint();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, head_cp->body);
  EXPECT_EQ(again->signature, head_cp->signature);
  EXPECT_EQ(again->size, head_cp->size);
  EXPECT_EQ(again->root, head_cp->root);
}

// The merge policy (decision 0005, "Packs"): nothing at kMaxPacks or
// fewer; a run of small packs is merged without the much larger ones; a
// run of large alike packs rather than one small pack with a large one.
TEST(PacksToMergeTest, TakesARunOfPacksEachAtMostTwiceThoseBefore) {
  auto run = [](const std::vector<uint64_t>& v) {
    PackRun r = PacksToMerge(v);
    return std::pair<size_t, size_t>(r.first, r.count);
  };
  std::vector<uint64_t> packs(kMaxPacks, 60);
  EXPECT_EQ(run(packs).second, 0u);
  packs.push_back(60);
  EXPECT_EQ(run(packs), std::make_pair(size_t{0}, kPacksPerMerge));  // all alike: 16
  // 15 commit packs, then a merged one of 1,801 objects and 17 of 2,000:
  // the 15 alone (1,801 > 2 x 900).
  std::vector<uint64_t> mixed(15, 60);
  mixed.push_back(1801);
  mixed.insert(mixed.end(), 17, 2000);
  EXPECT_EQ(run(mixed), std::make_pair(size_t{0}, size_t{15}));
  mixed[15] = 1800;  // at most twice the 900 taken: taken too
  EXPECT_EQ(run(mixed), std::make_pair(size_t{0}, size_t{16}));
  // One small pack before 32 large alike ones (after a bulk fill): not
  // the small one with a large one at every commit, but 16 large ones.
  std::vector<uint64_t> filled(1, 60);
  filled.insert(filled.end(), 32, 2000);
  EXPECT_EQ(run(filled), std::make_pair(size_t{1}, kPacksPerMerge));
  // A geometric series (each more than twice all smaller ones): the two
  // smallest, so the count still goes down.
  std::vector<uint64_t> geometric;
  for (uint64_t v = 1; geometric.size() <= kMaxPacks; v *= 3) geometric.push_back(v);
  EXPECT_EQ(run(geometric), std::make_pair(size_t{0}, size_t{2}));
}

// Over many commits the objects copied per commit stay bounded (each
// object is rewritten O(log n) times), instead of growing with the
// archive — also after a bulk fill left many large packs.
TEST(PacksToMergeTest, CopyPerCommitDoesNotGrowWithTheArchive) {
  for (size_t prefill : {0u, 200u}) {
    std::vector<uint64_t> packs(prefill, 2000);  // AppendMany's packs
    uint64_t copied = 0, copied_first = 0;
    size_t most_packs = 0;
    constexpr int kCommits = 12000;
    for (int c = 1; c <= kCommits; ++c) {
      packs.push_back(60);
      for (;;) {
        std::sort(packs.begin(), packs.end());
        PackRun r = PacksToMerge(packs);
        if (r.count == 0) break;
        ASSERT_GE(r.count, 2u);
        ASSERT_LE(r.first + r.count, packs.size());
        auto from = packs.begin() + static_cast<std::ptrdiff_t>(r.first);
        auto to = from + static_cast<std::ptrdiff_t>(r.count);
        const uint64_t sum = std::accumulate(from, to, uint64_t{0});
        packs.erase(from, to);
        packs.push_back(sum);
        copied += sum;
      }
      most_packs = std::max(most_packs, packs.size());
      if (c == 1000) copied_first = copied;
    }
    const double first = static_cast<double>(copied_first) / 1000;
    const double last = static_cast<double>(copied - copied_first) / (kCommits - 1000);
    EXPECT_LE(most_packs, kMaxPacks) << "prefill " << prefill;
    // Objects copied per object written (60 per commit): a few rewrites,
    // not dozens (~4-5 here; the 16-smallest policy: 25-48, growing without end).
    EXPECT_LT(last / 60, 8.0) << "prefill " << prefill << ": first " << first << ", then " << last;
  }
}

// FinishManifest(ManifestPrefix(...)) is BuildManifest, with the files'
// SHA-256 computed or given.
TEST(ManifestTest, PrefixThenFinishIsBuildManifest) {
  EntryInput e = Document(7);
  e.refers_to = 3;
  std::vector<std::string> sha;
  for (const EntryFile& f : e.files) sha.push_back(*crypto::DigestBytes(EVP_sha256(), f.data));
  const std::string built = BuildManifest(e, "o.vn/archive", 42, 1700000000);
  EXPECT_EQ(FinishManifest(ManifestPrefix(e, "o.vn/archive"), 42, 1700000000), built);
  EXPECT_EQ(FinishManifest(ManifestPrefix(e, "o.vn/archive", sha), 42, 1700000000), built);
  EXPECT_NE(FinishManifest(ManifestPrefix(e, "o.vn/archive", sha), 43, 1700000000), built);
}

// The sync round's pool (decision 0005, "Durability"): a round's jobs run
// at the same time — here each job waits for all the others to have
// started, which a pool running fewer at once would never see (the test
// then fails on the wait's deadline instead of hanging) — rounds follow one
// another on the same threads, and the first failure in the jobs' order
// is returned only once every job is done.
TEST(JobPoolTest, RunsARoundsJobsAtOnceAndReturnsTheFirstFailureInOrder) {
  JobPool pool(4);
  for (int round = 0; round < 200; ++round) {
    std::mutex mu;
    std::condition_variable cv;
    int started = 0;
    std::atomic<int> finished{0};
    bool all_met = true;
    std::vector<JobPool::Job> jobs;
    for (int j = 0; j < 5; ++j) {
      jobs.push_back([&, j]() -> Status {
        std::unique_lock<std::mutex> lock(mu);
        ++started;
        cv.notify_all();
        if (!cv.wait_for(lock, std::chrono::seconds(5), [&] { return started == 5; })) {
          all_met = false;
        }
        lock.unlock();
        finished.fetch_add(1);
        if (j == 2) return Status::IoError("job 2");
        if (j == 4) return Status::IoError("job 4");
        return Status::Ok();
      });
    }
    Status s = pool.Run(jobs);
    EXPECT_EQ(finished.load(), 5) << "round " << round;
    EXPECT_TRUE(all_met) << "round " << round << ": the jobs did not all run at once";
    EXPECT_EQ(s.code(), Code::kIoError);
    EXPECT_EQ(s.message(), "job 2") << "round " << round;
    if (::testing::Test::HasFailure()) return;
  }
  EXPECT_TRUE(pool.Run({}).ok());
  EXPECT_TRUE(pool.Run({[] { return Status::Ok(); }}).ok());
}

// The writer signs in jobs[0] of its round (BuildCommit): the Signer is
// called from the writer's thread only, so jobs[0] must run there.
TEST(JobPoolTest, FirstJobRunsInTheCallingThread) {
  JobPool pool(3);
  for (int round = 0; round < 500; ++round) {
    std::thread::id first;
    std::vector<JobPool::Job> jobs;
    jobs.push_back([&]() -> Status {
      first = std::this_thread::get_id();
      return Status::Ok();
    });
    for (int j = 0; j < 3; ++j) jobs.push_back([] { return Status::Ok(); });
    ASSERT_TRUE(pool.Run(jobs).ok());
    ASSERT_EQ(first, std::this_thread::get_id()) << "round " << round;
  }
}

// Run() from several threads at once: each caller gets its own round's
// results (rounds do not mix) and every job runs exactly once.
TEST(JobPoolTest, RoundsFromSeveralThreadsDoNotMix) {
  JobPool pool(2);
  std::atomic<int> runs{0};
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int round = 0; round < 300; ++round) {
        std::vector<JobPool::Job> jobs;
        for (int j = 0; j < 3; ++j) {
          jobs.push_back([&, t, j]() -> Status {
            runs.fetch_add(1);
            if (j == 1) return Status::IoError("caller " + std::to_string(t));
            return Status::Ok();
          });
        }
        Status s = pool.Run(jobs);
        if (s.message() != "caller " + std::to_string(t)) wrong.fetch_add(1);
      }
    });
  }
  for (std::thread& c : callers) c.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(runs.load(), 4 * 300 * 3);
}

}  // namespace
}  // namespace sealpost::storage
