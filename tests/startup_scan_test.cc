// daemon/startup_scan.h and daemon/startup.h over a real archive (software
// seal): each scan gets exactly the entries after its covered(), once and in
// order; a scan ahead of the archive is refused; the one start-up pass gives
// what each part's own full pass gives, also when caught up later.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "crypto/software_signer.h"
#include "daemon/startup.h"
#include "daemon/startup_scan.h"
#include "storage/archive.h"
#include "storage/reader.h"
#include "tests/support/test_pki.h"

namespace sealpost::daemon {
namespace {

using testing::CertSpec;
using testing::Issued;
using testing::TempDir;
using testing::TestCa;

constexpr char kUnion[] = "ldld-thu";

// Records the seqs it is given.
class Recorder final : public ManifestConsumer {
 public:
  explicit Recorder(uint64_t from = 0) : covered_(from) {}
  uint64_t covered() const override { return covered_; }
  Status Consume(uint64_t seq, std::string_view text, const storage::Manifest& m) override {
    EXPECT_EQ(m.seq, seq);
    EXPECT_FALSE(text.empty());
    seqs.push_back(seq);
    covered_ = seq;
    return Status::Ok();
  }
  std::vector<uint64_t> seqs;

 private:
  uint64_t covered_;
};

std::string Uuid(int i) {
  char b[64];
  std::snprintf(b, sizeof b, "00000000-0000-4000-8000-%012d", i);
  return b;
}

class StartupScanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestCa ca = TestCa::CreateRoot("/CN=Startup Test CA/O=Test/C=VN");
    CertSpec spec;
    spec.subject = "/CN=Con dấu thử/O=Thử/C=VN";
    Issued seal = ca.Issue(spec);
    auto signer = crypto::SoftwareKeySigner::CreateForTesting("seal", std::move(seal.key),
                                                              std::move(seal.cert));
    ASSERT_TRUE(signer.has_value()) << signer.error().message();
    signer_ = std::move(*signer);
    storage::ArchiveOptions ao;
    ao.origin = std::string(kUnion) + "/archive";
    ao.signer = signer_.get();
    ao.seal_key = {"seal"};
    auto archive = storage::Archive::Create(dir(), ao);
    ASSERT_TRUE(archive.has_value()) << archive.error().message();
    archive_ = std::move(*archive);
  }

  std::string dir() const { return tmp_.file("archive"); }

  // Appends `n` entries of every kind the scans look at, numbered from `i`.
  void AppendMixed(int i, int n) {
    std::vector<storage::EntryInput> batch;
    uint64_t seq = archive_->size();
    for (int k = i; k < i + n; ++k) {
      storage::EntryInput e;
      ++seq;
      switch (k % 5) {
        case 0:
          e.kind = storage::EntryKind::kDocumentSent;
          e.fields = {{"id", Uuid(k)}, {"type", k % 10 == 0 ? "policy" : "cong-van"},
                      {"reference", "CV"}, {"reference_number", std::to_string(k / 5 + 1)},
                      {"issuer", kUnion}, {"issued_at", "2026-12-07T08:00:00Z"}};
          break;
        case 1:
          e.kind = storage::EntryKind::kDocumentReceived;
          e.fields = {{"id", Uuid(k)}, {"type", "bao-cao"}, {"issuer", "cd-a"},
                      {"sender_origin", "cd-a/archive"}, {"sender_tree_size", std::to_string(k)},
                      {"sender_root", std::string(64, 'b')}};
          break;
        case 2:
          e.kind = storage::EntryKind::kDeliveryReceipt;
          e.refers_to = seq - 1;
          e.fields = {{"id", Uuid(k - 1)}, {"receipt_type", "delivery-receipt"},
                      {"recipient", kUnion}, {"sender", "cd-a"}};
          break;
        case 3:
          e.kind = storage::EntryKind::kDeliveryReceipt;
          e.refers_to = seq - 3;
          e.fields = {{"id", Uuid(k - 3)}, {"receipt_type", "read-notice"}, {"recipient", "cd-b"}};
          break;
        default:
          e.kind = storage::EntryKind::kDeliveryAttempts;
          e.fields = {{"last_attempt_id", std::to_string(k * 10)}};
          break;
      }
      e.files = {{"note", "entry " + std::to_string(k)}};
      batch.push_back(std::move(e));
    }
    for (auto& r : archive_->AppendMany(std::move(batch))) ASSERT_TRUE(r.has_value()) << r.error().message();
  }

  std::unique_ptr<storage::ArchiveReader> Reader() {
    auto r = storage::ArchiveReader::Open(dir());
    EXPECT_TRUE(r.has_value()) << r.error().message();
    return r ? std::move(*r) : nullptr;
  }

  TempDir tmp_;
  std::unique_ptr<crypto::SoftwareKeySigner> signer_;
  std::unique_ptr<storage::Archive> archive_;
};

TEST_F(StartupScanTest, EachConsumerGetsTheEntriesAfterItsCoveredOnceInOrder) {
  AppendMixed(0, 9);
  const uint64_t size = archive_->size();
  ASSERT_GE(size, 10u);
  Recorder all, later(4), done(size);
  auto reader = Reader();
  ASSERT_NE(reader, nullptr);
  FeedStats stats;
  ASSERT_TRUE(FeedManifests(*reader, {&all, &later, &done}, &stats).ok());
  std::vector<uint64_t> want_all, want_later;
  for (uint64_t s = 1; s <= size; ++s) want_all.push_back(s);
  for (uint64_t s = 5; s <= size; ++s) want_later.push_back(s);
  EXPECT_EQ(all.seqs, want_all);
  EXPECT_EQ(later.seqs, want_later);
  EXPECT_TRUE(done.seqs.empty());
  EXPECT_EQ(stats.first, 1u);  // each manifest read once for all three
  EXPECT_EQ(stats.last, size);
  // Nothing new: nothing read.
  ASSERT_TRUE(FeedManifests(*reader, {&all, &later}, &stats).ok());
  EXPECT_EQ(stats.first, 0u);
  EXPECT_EQ(all.seqs.size(), size);
}

TEST_F(StartupScanTest, ConsumerAheadOfTheArchiveIsRefusedAndGetsNothing) {
  AppendMixed(0, 3);
  Recorder fine, ahead(archive_->size() + 5);
  auto reader = Reader();
  ASSERT_NE(reader, nullptr);
  Status s = FeedManifests(*reader, {&fine, &ahead});
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.message();
  EXPECT_NE(s.message().find(dir()), std::string::npos) << s.message();
  EXPECT_TRUE(fine.seqs.empty());
  EXPECT_TRUE(ahead.seqs.empty());
}

TEST_F(StartupScanTest, OnePassCaughtUpLaterEqualsAFreshFullPassOfEveryPart) {
  AppendMixed(0, 23);
  auto early = ScanArchiveAtStart(dir(), kUnion);
  ASSERT_TRUE(early.has_value()) << early.error().message();
  EXPECT_EQ((*early)->entries, archive_->size());
  AppendMixed(23, 17);  // appended after the pass, before the parts catch up
  auto reader = Reader();
  ASSERT_NE(reader, nullptr);
  StartupScans& a = **early;
  ASSERT_TRUE(FeedManifests(*reader, {&a.policy, a.sent.get(), a.leaves.get(), a.inbox.get(),
                                      a.delivery.get()})
                  .ok());
  auto fresh = ScanArchiveAtStart(dir(), kUnion);
  ASSERT_TRUE(fresh.has_value()) << fresh.error().message();
  StartupScans& b = **fresh;
  const uint64_t size = archive_->size();
  for (const ManifestConsumer* c : std::vector<const ManifestConsumer*>{
           &a.policy, a.sent.get(), a.leaves.get(), a.inbox.get(), a.delivery.get()}) {
    EXPECT_EQ(c->covered(), size);
  }
  EXPECT_EQ(a.delivery->receipts, b.delivery->receipts);
  EXPECT_EQ(a.delivery->notices, b.delivery->notices);
  EXPECT_EQ(a.delivery->received, b.delivery->received);
  EXPECT_EQ(a.delivery->attempts_cursor, b.delivery->attempts_cursor);
  EXPECT_EQ(a.delivery->receipts.size(), 8u);  // entries 2, 7, ... of 40
  EXPECT_EQ(a.delivery->attempts_cursor, 390);
  ASSERT_EQ(a.policy.documents().size(), b.policy.documents().size());
  EXPECT_EQ(a.policy.documents().size(), 4u);  // k = 0, 10, 20, 30
  for (size_t i = 0; i < a.policy.documents().size(); ++i) {
    EXPECT_EQ(a.policy.documents()[i].seq, b.policy.documents()[i].seq);
    EXPECT_EQ(a.policy.documents()[i].id, b.policy.documents()[i].id);
  }
  // The leaves give the signed checkpoint's root.
  ASSERT_EQ(a.leaves->nodes().size(), size);
  EXPECT_EQ(a.leaves->nodes().Root(size), reader->checkpoint().root);
}

TEST_F(StartupScanTest, NoArchiveYetGivesEmptyScans) {
  auto scans = ScanArchiveAtStart(tmp_.file("none"), kUnion);
  ASSERT_TRUE(scans.has_value()) << scans.error().message();
  EXPECT_EQ((*scans)->entries, 0u);
  EXPECT_EQ((*scans)->sent->covered(), 0u);
  EXPECT_EQ((*scans)->delivery->covered(), 0u);
}

}  // namespace
}  // namespace sealpost::daemon
