// storage::Index: the SQLite query index over an archive, kept up to date
// incrementally, rebuilt from the repository alone, equal either way.
#include "storage/index.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "crypto/software_signer.h"
#include "storage/archive.h"
#include "tests/support/test_pki.h"

namespace sealpost::storage {
namespace {

using sealpost::testing::RunCommand;
using sealpost::testing::ShellQuote;
using sealpost::testing::TempDir;
using sealpost::testing::TestCa;

constexpr const char* kOrigin = "cd-baichay.vn/archive";

class IndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Index Root/C=VN"));
    auto issued = ca_->Issue(sealpost::testing::CertSpec());
    auto signer = crypto::SoftwareKeySigner::CreateForTesting("seal", std::move(issued.key),
                                                              std::move(issued.cert));
    ASSERT_TRUE(signer.has_value());
    signer_ = std::move(*signer);
    path_ = tmp_.file("archive.git");
    ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = signer_.get();
    o.seal_key = crypto::KeyRef{"seal"};
    auto a = Archive::Create(path_, o);
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    archive_ = std::move(*a);
  }

  void Add(EntryKind kind, const std::string& id, const std::string& type, const std::string& from,
           const std::string& to, const std::string& issued_at) {
    EntryInput e;
    e.kind = kind;
    e.fields = {{"id", id},         {"type", type},        {"subject", "Văn bản " + id},
                {"issuer", from},   {"recipients", to},    {"issued_at", issued_at},
                {"content_name", "Tệp " + id + ".pdf"}};
    e.files.push_back({"content", id});
    auto r = archive_->Append(e);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
  }

  std::unique_ptr<ArchiveReader> Reader() {
    auto r = ArchiveReader::Open(path_);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    return r ? std::move(*r) : nullptr;
  }

  std::unique_ptr<Index> OpenIndex(const std::string& path) {
    auto i = Index::Open(path);
    EXPECT_TRUE(i.has_value()) << i.error().ToString();
    return i ? std::move(*i) : nullptr;
  }

  static std::vector<uint64_t> Seqs(const Result<std::vector<IndexedEntry>>& rows) {
    std::vector<uint64_t> out;
    if (!rows) {
      ADD_FAILURE() << rows.error().ToString();
      return out;
    }
    for (const IndexedEntry& e : *rows) out.push_back(e.seq);
    return out;
  }

  TempDir tmp_;
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<crypto::SoftwareKeySigner> signer_;
  std::unique_ptr<Archive> archive_;
  std::string path_;
};

TEST_F(IndexTest, IncrementalUpdatesEqualRebuildFromRepository) {
  auto incremental = OpenIndex(Index::PathFor(path_));
  ASSERT_TRUE(incremental);
  for (int i = 0; i < 6; ++i) {
    Add(EntryKind::kDocumentSent, "d" + std::to_string(i), "t", "a", "b",
        "2026-01-0" + std::to_string(i + 1) + "T00:00:00Z");
    auto r = Reader();
    auto u = incremental->Update(*r);
    ASSERT_TRUE(u.has_value()) << u.error().ToString();
    EXPECT_EQ(u->added, i == 0 ? 2u : 1u);  // the first update also takes entry 1
    EXPECT_FALSE(u->rebuilt && i > 0);
    EXPECT_EQ(*incremental->head(), archive_->head());
  }
  auto r = Reader();
  auto again = incremental->Update(*r);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->added, 0u);  // up to date

  auto rebuilt = OpenIndex(tmp_.file("other.sqlite"));
  ASSERT_TRUE(rebuilt);
  auto u = rebuilt->Rebuild(*r);
  ASSERT_TRUE(u.has_value()) << u.error().ToString();
  EXPECT_TRUE(u->rebuilt);
  EXPECT_EQ(u->size, 7u);
  auto a = incremental->Query({});
  auto b = rebuilt->Query({});
  ASSERT_TRUE(a.has_value() && b.has_value());
  ASSERT_EQ(a->size(), 7u);
  ASSERT_EQ(b->size(), 7u);
  for (size_t i = 0; i < a->size(); ++i) {
    const IndexedEntry& x = (*a)[i];
    const IndexedEntry& y = (*b)[i];
    EXPECT_EQ(std::tie(x.seq, x.kind, x.id, x.type, x.subject, x.issuer, x.recipients, x.date,
                       x.time, x.content_name, x.commit),
              std::tie(y.seq, y.kind, y.id, y.type, y.subject, y.issuer, y.recipients, y.date,
                       y.time, y.content_name, y.commit));
  }
  // Each entry names the commit that added it.
  auto history = r->CommitsAfter(0);
  ASSERT_TRUE(history.has_value());
  for (const CommitSize& c : *history) EXPECT_EQ((*a)[c.size - 1].commit, c.commit);
  EXPECT_EQ((*a)[3].subject, "Văn bản d2");
  EXPECT_EQ((*a)[3].content_name, "Tệp d2.pdf");
}

TEST_F(IndexTest, QueryByIdKindTypeCounterpartAndDate) {
  Add(EntryKind::kDocumentSent, "x1", "chi-thi", "cd-baichay", "cd-hongai,cd-halong",
      "2026-03-01T08:00:00Z");
  Add(EntryKind::kDocumentReceived, "x2", "bao-cao", "cd-hongai", "cd-baichay",
      "2026-04-15T08:00:00Z");
  Add(EntryKind::kDocumentSent, "x3", "chi-thi", "cd-baichay", "ld-quangninh",
      "2026-05-20T23:59:59Z");
  auto index = OpenIndex(Index::PathFor(path_));
  ASSERT_TRUE(index);
  auto r = Reader();
  ASSERT_TRUE(index->Update(*r).has_value());
  IndexQuery q;
  q.type = "chi-thi";
  EXPECT_EQ(Seqs(index->Query(q)), (std::vector<uint64_t>{2, 4}));
  q = {};
  q.kind = "document-received";
  EXPECT_EQ(Seqs(index->Query(q)), (std::vector<uint64_t>{3}));
  q = {};
  q.kind = "key-change";
  EXPECT_EQ(Seqs(index->Query(q)), (std::vector<uint64_t>{1}));
  q = {};
  q.counterpart = "cd-hongai";
  EXPECT_EQ(Seqs(index->Query(q)), (std::vector<uint64_t>{2, 3}));
  q.counterpart = "cd-halong";
  EXPECT_EQ(Seqs(index->Query(q)), (std::vector<uint64_t>{2}));
  q = {};
  q.id = "x3";
  EXPECT_EQ(Seqs(index->Query(q)), (std::vector<uint64_t>{4}));
  q = {};
  q.since = "2026-04-01T00:00:00Z";
  q.until = "2026-05-20T23:59:59Z";
  EXPECT_EQ(Seqs(index->Query(q)), (std::vector<uint64_t>{3, 4}));
  q.until = "2026-05-20T23:59:58Z";
  EXPECT_EQ(Seqs(index->Query(q)), (std::vector<uint64_t>{3}));
  q = {};
  q.type = "chi-thi";
  q.counterpart = "ld-quangninh";
  EXPECT_EQ(Seqs(index->Query(q)), (std::vector<uint64_t>{4}));
  auto one = index->FindSeq(3);
  ASSERT_TRUE(one.has_value() && one->has_value());
  EXPECT_EQ((*one)->id, "x2");
  EXPECT_FALSE(index->FindSeq(99)->has_value());
}

TEST_F(IndexTest, IndexOfAnotherHistoryIsRebuilt) {
  Add(EntryKind::kDocumentSent, "a", "t", "x", "y", "");
  auto index = OpenIndex(tmp_.file("i.sqlite"));
  ASSERT_TRUE(index);
  auto r = Reader();
  ASSERT_TRUE(index->Update(*r).has_value());
  // A second archive (another history, same origin) at another path.
  archive_.reset();
  std::string first = path_;
  path_ = tmp_.file("second.git");
  ArchiveOptions o;
  o.origin = kOrigin;
  o.signer = signer_.get();
  o.seal_key = crypto::KeyRef{"seal"};
  auto a = Archive::Create(path_, o);
  ASSERT_TRUE(a.has_value());
  archive_ = std::move(*a);
  Add(EntryKind::kDocumentSent, "b", "t", "x", "y", "");
  Add(EntryKind::kDocumentSent, "c", "t", "x", "y", "");
  auto r2 = Reader();
  auto u = index->Update(*r2);
  ASSERT_TRUE(u.has_value()) << u.error().ToString();
  EXPECT_TRUE(u->rebuilt);
  EXPECT_EQ(u->size, 3u);
  IndexQuery q;
  q.id = "a";
  EXPECT_TRUE(Seqs(index->Query(q)).empty());
  q.id = "c";
  EXPECT_EQ(Seqs(index->Query(q)), (std::vector<uint64_t>{3}));
}

TEST_F(IndexTest, FileThatIsNotAnIndexIsDataErrorAndRemovable) {
  std::string path = tmp_.file("junk.sqlite");
  sealpost::testing::WriteTestFile(path, std::string(4096, 'j'));
  auto i = Index::Open(path);
  ASSERT_FALSE(i.has_value());
  EXPECT_EQ(i.error().code(), Code::kDataError);
  ASSERT_TRUE(Index::Remove(path).ok());
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(Index::Open(path).has_value());
  EXPECT_TRUE(Index::Remove(tmp_.file("never")).ok());
}

TEST_F(IndexTest, CorruptManifestFailsUpdateAndLeavesIndexAsItWas) {
  Add(EntryKind::kDocumentSent, "a", "t", "x", "y", "");
  auto index = OpenIndex(tmp_.file("i.sqlite"));
  ASSERT_TRUE(index);
  auto r = Reader();
  ASSERT_TRUE(index->Update(*r).has_value());
  std::string before = *index->head();
  // Stock git commits a damaged manifest of entry 2 (the signed checkpoint
  // is left as it was, so the commit adds no entry, which sealpost never
  // writes): rebuilding from that history fails, and the transaction
  // leaves the index as it was.
  archive_.reset();
  std::string work = tmp_.file("work");
  ASSERT_EQ(RunCommand("git clone -q " + ShellQuote(path_) + " " + ShellQuote(work) + " && cd " +
                       ShellQuote(work) + " && echo junk > entries/00/00/00/2/manifest.json && "
                       "git -c user.name=t -c user.email=t@t commit -q -am junk && "
                       "git push -q origin main"),
            0);
  auto bad = ArchiveReader::Open(path_);
  ASSERT_TRUE(bad.has_value()) << bad.error().ToString();
  auto u = index->Rebuild(**bad);
  ASSERT_FALSE(u.has_value());
  EXPECT_EQ(u.error().code(), Code::kDataError);
  EXPECT_NE(u.error().message().find(path_), std::string::npos) << u.error().message();
  EXPECT_EQ(*index->head(), before);
  EXPECT_EQ(*index->size(), 2u);
}

}  // namespace
}  // namespace sealpost::storage
