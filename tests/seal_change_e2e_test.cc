// Replacing the seal of a running appliance, as an operator does it
// (docs/operator-guide.md, "Replace a token or a certificate"): real
// sealpostd + sealpost-signer processes of a district and a grassroots
// union (tests/support/federation.h), SoftHSM2 tokens, the real CLI.
// The district's seal moves to a new token (a new key, a certificate of the
// same subject from the same CA): stop, `sealpost archive change-seal`, the
// new key in the configuration, start. The registry names seals by subject
// under the CA, so the peers need no policy update; documents sealed with
// the new seal are accepted, receipts the district seals with it verify at
// the grassroots union, and both archives audit clean.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/federation.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

// Entries of `kind` about document `id` in `a`'s archive.
size_t EntriesAbout(const Federation& fed, const Appliance& a, const std::string& kind,
                    const std::string& id) {
  size_t n = 0;
  for (const auto& m : fed.ArchiveEntries(a)) {
    if (storage::EntryKindName(m.kind) == kind && m.Field("id") == id) ++n;
  }
  return n;
}

class SealChangeE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FederationOptions o;
    o.grassroots = 1;
    o.extra_config = kFastDeliveryShortLeaseConfig;
    o.seal_by_subject = true;
    fed_ = Federation::Start(o);
    ASSERT_NE(fed_, nullptr);
  }

  // A chair-signed directive from the district to the grassroots union.
  HttpAnswer SendDirective(const std::string& name) {
    std::string doc = fed_->file(name);
    WriteTestFile(doc, "CHỈ THỊ " + name + "\nCác Công đoàn cơ sở thực hiện.\n");
    SubmitSpec s;
    s.file = doc;
    s.type = "directive";
    s.subject = "Chỉ thị " + name;
    s.recipients = {fed_->grassroots(0).id()};
    s.signature = fed_->SignAsChair(doc);
    return fed_->district().Submit(s);
  }
  // A seal-only report from the grassroots union to the district.
  HttpAnswer SendReport(const std::string& name) {
    std::string doc = fed_->file(name);
    WriteTestFile(doc, "BÁO CÁO " + name + "\n");
    SubmitSpec s;
    s.file = doc;
    s.type = "report";
    s.subject = "Báo cáo " + name;
    s.recipients = {Federation::kDistrict};
    return fed_->grassroots(0).Submit(s);
  }
  // Until `from` archived the receipt of `to` for `id` (delivered).
  bool Delivered(const Appliance& from, const Appliance& to, const std::string& id) {
    return WaitFor([&] { return EntriesAbout(*fed_, from, "delivery-receipt", id) >= 1 &&
                                EntriesAbout(*fed_, to, "document-received", id) == 1; },
                   60);
  }

  std::unique_ptr<Federation> fed_;
};

TEST_F(SealChangeE2eTest, RotatedSealOfARunningApplianceKeepsTheExchangeWorkingAndAuditsClean) {
  Appliance& d = fed_->district();
  Appliance& g = fed_->grassroots(0);
  HttpAnswer before = SendDirective("truoc-khi-doi.txt");
  ASSERT_EQ(before.status, 201) << before.body << before.error;
  const std::string id_before = JsonField(before.body, "id");
  ASSERT_TRUE(Delivered(d, g, id_before));
  const std::string old_key = d.seal_key();
  const std::string old_pin = d.file("signer.pin.old");
  WriteTestFile(old_pin, ReadTestFile(d.file("signer.pin")));

  // The new token, plugged in; the appliance stopped.
  ASSERT_EQ(d.Stop(), 0) << d.Log();
  ASSERT_EQ(d.StopSigner(), 0) << d.SignerLog();
  const std::string new_pin = "97531864";
  const std::string new_key = fed_->NewSealToken(d, "seal2-district", new_pin);
  ASSERT_FALSE(new_key.empty());
  ASSERT_TRUE(d.UseSealKey(new_key, new_pin));

  // Started with the new key before the change: the archive is refused.
  ASSERT_TRUE(d.StartSigner());
  ASSERT_TRUE(d.Start());
  HttpAnswer refused = SendDirective("chua-doi.txt");
  EXPECT_NE(refused.status, 201) << refused.body;
  EXPECT_TRUE(Contains(refused.body + d.Log(), "not the archive's seal")) << refused.body;
  ASSERT_EQ(d.Stop(), 0) << d.Log();

  // The change, with both tokens present.
  std::string out;
  ASSERT_EQ(fed_->Sealpost("archive change-seal " + ShellQuote(d.archive_dir()) + " --key " +
                               ShellQuote(old_key) + " --pin-file " + ShellQuote(old_pin) +
                               " --new-key " + ShellQuote(new_key) + " --new-pin-file " +
                               ShellQuote(d.file("signer.pin")) + " --trust " +
                               ShellQuote(fed_->ca_pem()),
                           &out, &d),
            0)
      << out;
  EXPECT_TRUE(Contains(out, "rotate")) << out;
  ASSERT_TRUE(d.Start());
  HttpAnswer health = d.Get("/api/v1/health", "");
  EXPECT_TRUE(Contains(health.body, "\"status\":\"ok\"")) << health.body;

  // Sealed with the new seal: accepted by the peer, its receipt verified.
  HttpAnswer after = SendDirective("sau-khi-doi.txt");
  ASSERT_EQ(after.status, 201) << after.body << after.error;
  const std::string id_after = JsonField(after.body, "id");
  ASSERT_TRUE(Delivered(d, g, id_after)) << d.Log() << g.Log();
  // The peer's receipts sealed by the district's new seal verify there.
  HttpAnswer report = SendReport("bao-cao-sau-khi-doi.txt");
  ASSERT_EQ(report.status, 201) << report.body << report.error;
  ASSERT_TRUE(Delivered(g, d, JsonField(report.body, "id"))) << g.Log() << d.Log();

  size_t changes = 0;
  for (const auto& m : fed_->ArchiveEntries(d)) {
    if (storage::EntryKindName(m.kind) == "key-change" && m.Field("change") == "rotate") ++changes;
  }
  EXPECT_EQ(changes, 1u);
  EXPECT_EQ(fed_->Audit(d, &out), 0) << out;
  EXPECT_EQ(fed_->Audit(g, &out), 0) << out;
  EXPECT_TRUE(fed_->StopAll());
}

}  // namespace
}  // namespace sealpost::testing
