// The document API and the CLI client commands across two real appliances
// (tests/support/federation.h): the district submits a chair-signed
// directive with `sealpost submit`, it is delivered, the grassroots clerk
// sees it unread in `sealpost inbox`, fetches the content (equal to the
// original) — which sends the signed read notice — and the district's
// `sealpost status` then shows the recipient as read, with the receipt and
// the notice among the document's archived receipts. Audits clean after.
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "base/zip.h"
#include "tests/support/federation.h"
#include "tests/support/test_pki.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

class DocumentsE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FederationOptions o;
    o.grassroots = 1;
    o.extra_config =
        "delivery: {backoff_base_millis: 200, backoff_cap_millis: 1000, poll_millis: 50,\n"
        "  lease_seconds: 10, attempts_flush_seconds: 1, max_attempts: 1000}\n";
    fed_ = Federation::Start(o).release();
  }
  static void TearDownTestSuite() {
    if (fed_ != nullptr) {
      EXPECT_TRUE(fed_->StopAll());
      delete fed_;
      fed_ = nullptr;
    }
  }
  void SetUp() override {
    if (fed_ == nullptr) GTEST_FAIL() << "the federation did not start";
  }

  // `sealpost ARGS` against appliance `a` as its clerk.
  static int Cli(const Appliance& a, const std::string& args, std::string* out) {
    const std::string token_file = a.file("clerk.token");
    WriteTestFile(token_file, a.clerk_token() + "\n");
    return RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " " + args + " --server https://127.0.0.1:" +
                          std::to_string(a.user_port()) + " --ca " + ShellQuote(fed_->ca_pem()) +
                          " --token-file " + ShellQuote(token_file),
                      out);
  }

  static Federation* fed_;
};
Federation* DocumentsE2eTest::fed_ = nullptr;

TEST_F(DocumentsE2eTest, SubmitDeliverInboxFetchReadNoticeStatus) {
  Appliance& d = fed_->district();
  Appliance& g = fed_->grassroots(0);
  const std::string file = fed_->file("chi-thi.txt");
  WriteTestFile(file, "Chỉ thị: tổ chức đại hội công đoàn cơ sở trước ngày 30.\n");
  const std::string sig = fed_->SignAsChair(file);
  ASSERT_FALSE(sig.empty());

  std::string out;
  ASSERT_EQ(Cli(d, "submit " + ShellQuote(file) + " " + ShellQuote(sig) +
                       " --type directive --to " + g.id() + " --subject 'Đại hội' --json",
                &out),
            0)
      << out << d.Log();
  size_t at = out.find("\"id\":\"");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string id = out.substr(at + 6, out.find('"', at + 6) - at - 6);

  ASSERT_TRUE(WaitFor([&] {
    std::string s;
    return Cli(d, "status " + id + " --json", &s) == 0 &&
           s.find("\"state\":\"delivered\"") != std::string::npos;
  }, 30))
      << d.Log();

  // The recipient: unread in the inbox, then opened by fetching the content.
  ASSERT_EQ(Cli(g, "inbox --json", &out), 0) << out;
  EXPECT_NE(out.find("\"id\":\"" + id + "\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"opened\":null"), std::string::npos) << out;
  EXPECT_NE(out.find("\"unread\":1"), std::string::npos) << out;
  ASSERT_EQ(Cli(g, "status " + id + " --json", &out), 0) << out;
  EXPECT_NE(out.find("\"direction\":\"received\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"issuer\":\"" + std::string(Federation::kDistrict) + "\""),
            std::string::npos)
      << out;

  const std::string got = fed_->file("chi-thi-received.txt");
  ASSERT_EQ(Cli(g, "fetch " + id + " --content -o " + ShellQuote(got), &out), 0) << out << g.Log();
  EXPECT_EQ(RunCommand("cmp " + ShellQuote(file) + " " + ShellQuote(got)), 0);
  const std::string got_sig = fed_->file("chi-thi-received.p7s");
  ASSERT_EQ(Cli(g, "fetch " + id + " --signature -o " + ShellQuote(got_sig), &out), 0) << out;
  EXPECT_EQ(RunCommand("openssl cms -verify -binary -inform DER -in " + ShellQuote(got_sig) +
                           " -content " + ShellQuote(got) + " -CAfile " +
                           ShellQuote(fed_->ca_pem()) + " -purpose any -out /dev/null",
                       &out),
            0)
      << out;
  // The recipient keeps no bundle file of what it received: its bundle is
  // made from the archive entry, with the signature fetched above
  // (tests/bundle_rebuild_e2e_test.cc compares every member and verifies).
  const std::string got_bundle = fed_->file("chi-thi-received.asics");
  ASSERT_EQ(Cli(g, "fetch " + id + " --bundle -o " + ShellQuote(got_bundle), &out), 0)
      << out << g.Log();
  {
    auto zip = ZipReader::Open(got_bundle);
    ASSERT_TRUE(zip.has_value()) << zip.error().ToString();
    const ZipEntry* member = zip->Find("META-INF/signature.p7s");
    ASSERT_NE(member, nullptr);
    auto bytes = zip->ExtractToString(*member, 1u << 20);
    ASSERT_TRUE(bytes.has_value());
    EXPECT_EQ(*bytes, ReadTestFile(got_sig));
  }

  ASSERT_EQ(Cli(g, "inbox --json", &out), 0) << out;
  EXPECT_NE(out.find("\"unread\":0"), std::string::npos) << out;
  EXPECT_NE(out.find("\"role\":\"clerk\""), std::string::npos) << out;

  // The sender sees the read notice.
  ASSERT_TRUE(WaitFor([&] {
    std::string s;
    return Cli(d, "status " + id + " --json", &s) == 0 &&
           s.find("\"state\":\"read\"") != std::string::npos;
  }, 30))
      << d.Log() << g.Log();
  ASSERT_EQ(Cli(d, "status " + id, &out), 0) << out;
  EXPECT_NE(out.find(g.id() + "  read"), std::string::npos) << out;
  EXPECT_NE(out.find("read at "), std::string::npos) << out;
  HttpAnswer receipts = d.Get("/api/v1/documents/" + id + "/receipts");
  EXPECT_EQ(receipts.status, 200) << receipts.body;
  EXPECT_NE(receipts.body.find("\"kind\":\"delivery-receipt\""), std::string::npos)
      << receipts.body;
  EXPECT_NE(receipts.body.find("read-notice"), std::string::npos) << receipts.body;

  EXPECT_EQ(fed_->Audit(d, &out), 0) << out;
  EXPECT_EQ(fed_->Audit(g, &out), 0) << out;
}

}  // namespace
}  // namespace sealpost::testing
