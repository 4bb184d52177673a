// Issue 5: the seals on delivery receipts and read notices are judged with
// the daemon's shared trust (trust anchors + fetched CRLs) between real
// appliances (tests/support/federation.h). The federation's CA publishes a
// CRL (a file:/// CRL source of the policy) revoking the seal of one
// grassroots union; the district's deliveries to it stay not delivered
// (refused, the reason naming REVOKED in the outbox and the log, no receipt
// archived), its read notice is refused with 422, while the other union's
// receipt and read notice are accepted.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

#include <openssl/pem.h>

#include "base/openssl.h"
#include "storage/outbox.h"
#include "tests/support/federation.h"
#include "tests/support/test_pki.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

long SerialOf(const std::string& pem_path) {
  const std::string pem = ReadTestFile(pem_path);
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  return cert ? ASN1_INTEGER_get(X509_get0_serialNumber(cert.get())) : -1;
}

// The outbox state of a job on appliance `a` (read beside the daemon; a
// busy database is "not known yet").
storage::DeliveryState StateOn(const Appliance& a, const std::string& id,
                               const std::string& recipient, storage::Channel ch) {
  storage::OutboxOptions o;
  o.path = a.file("state/outbox.sqlite");
  auto box = storage::Outbox::Open(o);
  if (!box) return {};
  return (*box)->State({id, recipient, ch}).value_or(storage::DeliveryState{});
}

std::string CrlHealth(const Appliance& a) {
  HttpAnswer h = a.Get("/api/v1/health", "");
  size_t p = h.body.find("\"crls\":[");
  if (h.status != 200 || p == std::string::npos) return "";
  return h.body.substr(p, h.body.find(']', p) - p + 1);
}

TEST(ReceiptSealE2eTest, ReceiptAndNoticeOfARevokedSealAreRefusedWithTheReason) {
  TempDir www;
  const std::string url = "file://" + www.file("ca.crl");
  FederationOptions fo;
  fo.grassroots = 2;
  fo.policy_trust_extra = "  crl_sources:\n    - {anchor: test-ca, url: \"" + url + "\"}\n";
  fo.extra_config =
      "crl_fetch: {interval_seconds: 1, retry_seconds: 1, timeout_seconds: 2}\n"
      "delivery: {backoff_base_millis: 200, backoff_cap_millis: 1000, poll_millis: 50,\n"
      "  lease_seconds: 10, attempts_flush_seconds: 1, max_attempts: 1000}\n";
  auto fed = Federation::Start(fo);
  ASSERT_NE(fed, nullptr);
  Appliance& d = fed->district();
  Appliance& revoked = fed->grassroots(0);
  Appliance& good = fed->grassroots(1);

  // The CA revokes the seal of grassroots 0; the district takes the CRL.
  const long serial = SerialOf(revoked.file("seal.pem"));
  ASSERT_GT(serial, 0);
  WriteTestFile(www.file("ca.crl.tmp"), CrlToDer(fed->ca().MakeCrl({serial}).get()));
  ASSERT_EQ(std::rename(www.file("ca.crl.tmp").c_str(), www.file("ca.crl").c_str()), 0);
  ASSERT_TRUE(WaitFor([&] { return Contains(CrlHealth(d), "\"revoked\":1"); }, 30))
      << CrlHealth(d);

  WriteTestFile(fed->file("ct.txt"), "CHỈ THỊ: báo cáo quý\n");
  const std::string sig = fed->SignAsChair(fed->file("ct.txt"));
  ASSERT_FALSE(sig.empty());
  HttpAnswer a = d.Submit({.file = fed->file("ct.txt"), .type = "directive",
                           .recipients = fed->grassroots_ids(), .signature = sig});
  ASSERT_EQ(a.status, 201) << a.body << a.error;
  const std::string id = IdOf(a.body);
  ASSERT_FALSE(id.empty());

  const auto kApp = storage::Channel::kAppliance;
  ASSERT_TRUE(WaitFor([&] {
    return StateOn(d, id, good.id(), kApp).state == storage::JobState::kDelivered &&
           StateOn(d, id, revoked.id(), kApp).state == storage::JobState::kRefused;
  }, 60)) << d.Log();
  storage::DeliveryState st = StateOn(d, id, revoked.id(), kApp);
  EXPECT_TRUE(Contains(st.last_error, "REVOKED")) << st.last_error;
  EXPECT_TRUE(Contains(st.last_error, "receipt from " + revoked.id())) << st.last_error;
  EXPECT_TRUE(Contains(d.Log(), "delivery refused")) << d.Log();
  // The recipient did take the document; the district archived no receipt
  // of it, and the API shows the delivery refused with the reason.
  size_t receipts_revoked = 0, receipts_good = 0;
  for (const storage::Manifest& m : fed->ArchiveEntries(d)) {
    if (m.kind != storage::EntryKind::kDeliveryReceipt || m.Field("id") != id) continue;
    if (m.Field("recipient") == revoked.id()) ++receipts_revoked;
    if (m.Field("recipient") == good.id()) ++receipts_good;
  }
  EXPECT_EQ(receipts_revoked, 0u);
  EXPECT_EQ(receipts_good, 1u);
  HttpAnswer doc = d.Get("/api/v1/documents/" + id);
  EXPECT_TRUE(Contains(doc.body, "\"state\":\"refused\"")) << doc.body;
  EXPECT_TRUE(Contains(doc.body, "REVOKED")) << doc.body;

  // Read notices: the revoked seal's is refused (422, the reader's notice
  // job refused, the district logs why); the other one's is taken.
  ASSERT_EQ(revoked.Get("/api/v1/documents/" + id + "/content").status, 200);
  ASSERT_EQ(good.Get("/api/v1/documents/" + id + "/content").status, 200);
  ASSERT_TRUE(WaitFor([&] {
    return StateOn(d, id, good.id(), kApp).state == storage::JobState::kRead &&
           StateOn(revoked, id, d.id(), storage::Channel::kNotice).state ==
               storage::JobState::kRefused;
  }, 60)) << revoked.Log() << d.Log();
  storage::DeliveryState notice = StateOn(revoked, id, d.id(), storage::Channel::kNotice);
  EXPECT_TRUE(Contains(notice.last_error, "422")) << notice.last_error;
  EXPECT_TRUE(Contains(notice.last_error, "REVOKED")) << notice.last_error;
  EXPECT_TRUE(Contains(d.Log(), "read notice refused")) << d.Log();
  EXPECT_EQ(StateOn(d, id, revoked.id(), kApp).state, storage::JobState::kRefused);
  size_t notices = 0;
  for (const storage::Manifest& m : fed->ArchiveEntries(d)) {
    if (m.Field("receipt_type") == "read-notice" && m.Field("id") == id) {
      ++notices;
      EXPECT_EQ(m.Field("recipient"), good.id());
    }
  }
  EXPECT_EQ(notices, 1u);
  std::string out;
  EXPECT_EQ(fed->Audit(d, &out), 0) << out;
  EXPECT_TRUE(fed->StopAll());
}

}  // namespace
}  // namespace sealpost::testing
