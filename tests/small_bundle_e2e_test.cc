// Small bundles made in memory (docs/decisions/0014-small-bundles-in-memory.md)
// with real appliances on 127.0.0.1 (tests/support/federation.h: SoftHSM2
// seal tokens, sealpost-signer and sealpostd processes, mutual TLS):
//  - a submitted small document is delivered to a real peer and no bundle
//    file is written for it; GET .../bundle serves the bundle from memory and
//    it passes a recipient's verification (crypto::VerifyBundle);
//  - after a restart (the cache is empty) GET .../bundle makes the bundle
//    from the archive (a file then) and it verifies; the next submission is
//    again delivered without a file;
//  - under a tiny cache bound, bundles are evicted before their delivery
//    (the recipient is down): every document is still delivered exactly
//    once (one document-received at the peer, one delivery receipt here),
//    the evicted ones from bundles made again from the archive, and every
//    bundle served verifies.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>
#include <set>
#include <string>
#include <vector>

#include "crypto/bundle.h"
#include "crypto/certs.h"
#include "storage/outbox.h"
#include "tests/support/federation.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

// The names in `dir` (no "." / "..").
std::set<std::string> Files(const std::string& dir) {
  std::set<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.insert(n);
    }
    ::closedir(d);
  }
  return out;
}

bool HasBundleFile(const Appliance& a, const std::string& id) {
  return ::access(a.file("state/bundles/" + id + ".asics").c_str(), F_OK) == 0;
}

// GET .../bundle of `id` from the district, checked the way a recipient
// checks it: the form (crypto::ReadBundle) and every signature and proof
// (crypto::VerifyBundle under the federation's CA, the district's log).
void ExpectServedBundleVerifies(Federation& fed, const std::string& id) {
  SCOPED_TRACE("bundle of " + id);
  Appliance& d = fed.district();
  HttpAnswer got = d.Curl("/api/v1/documents/" + id + "/bundle", "", "clerk", false);
  ASSERT_EQ(got.status, 200) << got.body << got.error;
  const std::string path = fed.file("served-" + id + ".asics");
  WriteTestFile(path, got.body);
  auto parsed = crypto::ReadBundle(path, fed.dir());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
  EXPECT_EQ(parsed->document.id, id);
  auto anchors = crypto::LoadCertificates(fed.ca_pem());
  ASSERT_TRUE(anchors.has_value());
  crypto::BundleVerifyOptions vo;
  vo.anchors = anchors->get();
  vo.expected_origin = d.id() + "/archive";
  auto report = crypto::VerifyBundle(*parsed, vo);
  ASSERT_TRUE(report.has_value()) << report.error().ToString();
  EXPECT_EQ(report->indication, crypto::Indication::kPassed) << crypto::BundleReportToJson(*report);
}

TEST(SmallBundleE2eTest, SmallDocumentIsDeliveredWithoutBundleFileAlsoAfterRestart) {
  FederationOptions fo;
  fo.grassroots = 1;
  fo.extra_config = kFastDeliveryConfig;
  auto fed = Federation::Start(fo);
  ASSERT_NE(fed, nullptr);
  Appliance& d = fed->district();
  Appliance& peer = fed->grassroots(0);
  HttpAnswer a = SubmitDirective(*fed, "chi-thi-m.txt", "CHỈ THỊ số 9 về đoàn phí\n");
  ASSERT_EQ(a.status, 201) << a.body << a.error;
  const std::string id = IdOf(a.body);
  ASSERT_TRUE(WaitFor([&] { return AllDelivered(d, id, 1); }, 60)) << d.Log();
  EXPECT_EQ(CountDocumentEntries(*fed, peer, "document-received", id), 1u);
  EXPECT_EQ(CountDocumentEntries(*fed, d, "delivery-receipt", id, peer.id()), 1u);
  // Neither the submission nor the delivery wrote a bundle file.
  EXPECT_EQ(Files(d.file("state/bundles")), std::set<std::string>{});

  // GET .../bundle: from memory (still no file), and it verifies.
  ExpectServedBundleVerifies(*fed, id);
  EXPECT_FALSE(HasBundleFile(d, id));

  // After a restart the cache is empty: the bundle is made from the archive.
  ASSERT_TRUE(d.Restart());
  ExpectServedBundleVerifies(*fed, id);
  EXPECT_TRUE(HasBundleFile(d, id));
  EXPECT_TRUE(Contains(d.Log(), "bundle rebuilt from the archive")) << d.Log();

  // The restarted daemon makes the next small bundle in memory again.
  HttpAnswer b = SubmitDirective(*fed, "chi-thi-n.txt", "CHỈ THỊ số 10\n");
  ASSERT_EQ(b.status, 201) << b.body << b.error;
  const std::string id2 = IdOf(b.body);
  ASSERT_TRUE(WaitFor([&] { return AllDelivered(d, id2, 1); }, 60)) << d.Log();
  EXPECT_EQ(CountDocumentEntries(*fed, peer, "document-received", id2), 1u);
  EXPECT_FALSE(HasBundleFile(d, id2));
  ExpectServedBundleVerifies(*fed, id2);
  EXPECT_FALSE(HasBundleFile(d, id2));

  std::string out;
  for (const auto& app : fed->appliances()) EXPECT_EQ(fed->Audit(*app, &out), 0) << out;
  EXPECT_TRUE(fed->StopAll());
}

TEST(SmallBundleE2eTest, TinyCacheEvictsBeforeDeliveryAndEveryDocumentIsDeliveredOnce) {
  // A bundle here is 8-10 KiB (estimated a few KiB more): one or two fit.
  constexpr int kDocs = 6;
  FederationOptions fo;
  fo.grassroots = 1;
  fo.extra_config = std::string(kFastDeliveryConfig) + "bundles: {cache_bytes: 24576}\n";
  auto fed = Federation::Start(fo);
  ASSERT_NE(fed, nullptr);
  Appliance& d = fed->district();
  Appliance& peer = fed->grassroots(0);
  // The recipient is down: the bundles wait, and most are evicted.
  ASSERT_EQ(peer.Stop(), 0);
  std::vector<std::string> ids;
  for (int i = 0; i < kDocs; ++i) {
    HttpAnswer a = SubmitDirective(*fed, "chi-thi-e" + std::to_string(i) + ".txt",
                                   "CHỈ THỊ số " + std::to_string(100 + i) + "\n");
    ASSERT_EQ(a.status, 201) << a.body << a.error;
    ids.push_back(IdOf(a.body));
  }
  ASSERT_TRUE(peer.Start());
  for (const std::string& id : ids) {
    ASSERT_TRUE(WaitFor([&] { return AllDelivered(d, id, 1); }, 120)) << id << "\n" << d.Log();
  }
  size_t files = 0;
  for (const std::string& id : ids) {
    SCOPED_TRACE(id);
    EXPECT_EQ(CountDocumentEntries(*fed, peer, "document-received", id), 1u);
    EXPECT_EQ(CountDocumentEntries(*fed, d, "delivery-receipt", id, peer.id()), 1u);
    if (HasBundleFile(d, id)) ++files;
  }
  // At most two bundles stayed in memory; the others were made again from
  // the archive for their delivery.
  EXPECT_GE(files, static_cast<size_t>(kDocs - 2));
  EXPECT_LT(files, static_cast<size_t>(kDocs)) << "no bundle was kept in memory";
  EXPECT_TRUE(Contains(d.Log(), "bundle rebuilt from the archive")) << d.Log();
  for (const std::string& id : ids) ExpectServedBundleVerifies(*fed, id);

  std::string out;
  for (const auto& app : fed->appliances()) EXPECT_EQ(fed->Audit(*app, &out), 0) << out;
  EXPECT_TRUE(fed->StopAll());
}

}  // namespace
}  // namespace sealpost::testing
