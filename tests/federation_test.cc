// End-to-end tests of a federation of real appliances on 127.0.0.1
// (tests/support/federation.h): one district union and three grassroots
// unions, each with its own SoftHSM2 token, sealpost-signer and sealpostd,
// one shared policy. The federation is started once per suite (start-up
// costs a few seconds of token and TLS work per appliance).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/support/federation.h"

namespace sealpost::testing {
namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class FederationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { fed_ = Federation::Start().release(); }
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

  // A text file in the federation's directory.
  std::string Document(const std::string& name, const std::string& text) {
    std::string path = fed_->file(name);
    WriteTestFile(path, text);
    return path;
  }

  static Federation* fed_;
};

Federation* FederationTest::fed_ = nullptr;

TEST_F(FederationTest, EveryApplianceIsReadyAndHealthy) {
  ASSERT_EQ(fed_->appliances().size(), 4u);
  for (const auto& a : fed_->appliances()) {
    SCOPED_TRACE(a->id());
    EXPECT_TRUE(a->running());
    HttpAnswer h = a->Get("/api/v1/health", "");
    EXPECT_EQ(h.status, 200) << h.error;
    EXPECT_TRUE(Contains(h.body, "\"status\":\"ok\"")) << h.body;
    EXPECT_TRUE(Contains(h.body, "\"union\":\"" + a->id() + "\"")) << h.body;
    EXPECT_TRUE(Contains(h.body, "\"signer\":\"reachable\"")) << h.body;
    EXPECT_TRUE(Contains(h.body, "\"archive\":\"present\"")) << h.body;
  }
}

// `from`'s TLS client certificate on `to`'s peer listener: curl's output
// with the HTTP status on its last line.
std::string PeerCurl(const Federation& fed, const Appliance& from, const Appliance& to,
                     const std::string& path) {
  std::string cmd = "curl -sS --max-time 20 -w '\\n%{http_code}' --cacert " +
                    ShellQuote(fed.ca_pem()) + " --cert " + ShellQuote(from.file("tls.pem")) +
                    " --key " + ShellQuote(from.file("tls-key.pem")) + " https://127.0.0.1:" +
                    std::to_string(to.peer_port()) + path;
  std::string out;
  RunCommand(cmd, &out);
  return out;
}

TEST_F(FederationTest, PeersAreMappedToTheirUnionsByTheSharedRegistry) {
  Appliance& district = fed_->district();
  for (size_t i = 0; i < fed_->grassroots_count(); ++i) {
    Appliance& g = fed_->grassroots(i);
    std::string up = PeerCurl(*fed_, g, district, "/api/v1/whoami");
    EXPECT_TRUE(up.ends_with("\n200")) << up;
    EXPECT_TRUE(Contains(up, "\"union\":\"" + g.id() + "\"")) << up;
    std::string down = PeerCurl(*fed_, district, g, "/api/v1/whoami");
    EXPECT_TRUE(down.ends_with("\n200")) << down;
    EXPECT_TRUE(Contains(down, "\"union\":\"" + std::string(Federation::kDistrict) + "\"")) << down;
  }
}

TEST_F(FederationTest, PeerWithoutClientCertificateIsRefusedByTls) {
  Appliance& d = fed_->district();
  std::string cmd = "curl -sS --max-time 20 --cacert " + ShellQuote(fed_->ca_pem()) +
                    " https://127.0.0.1:" + std::to_string(d.peer_port()) + "/api/v1/inbox" +
                    " -X POST -H 'Content-Type: application/vnd.etsi.asic-s+zip' --data-binary x";
  std::string out;
  int rc = RunCommand(cmd, &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_FALSE(Contains(out, "HTTP/")) << out;
  EXPECT_FALSE(Contains(out, "problem")) << "an HTTP answer without a client certificate: " << out;
}

TEST_F(FederationTest, PeerCertificateNotInTheRegistryGets403) {
  Appliance& d = fed_->district();
  std::string cmd = "curl -sS --max-time 20 -w '\\n%{http_code}' --cacert " +
                    ShellQuote(fed_->ca_pem()) + " --cert " + ShellQuote(fed_->file("stranger.pem")) +
                    " --key " + ShellQuote(fed_->file("stranger-key.pem")) + " https://127.0.0.1:" +
                    std::to_string(d.peer_port()) + "/api/v1/whoami";
  std::string out;
  EXPECT_EQ(RunCommand(cmd, &out), 0) << out;
  EXPECT_TRUE(out.ends_with("\n403")) << out;
  EXPECT_TRUE(Contains(out, "application/problem+json") || Contains(out, "\"status\":403")) << out;
}

TEST_F(FederationTest, DirectiveSignedByTheChairIsSealedAndArchivedOnTheDistrict) {
  Appliance& d = fed_->district();
  size_t sent_before = fed_->CountEntries(d, "document-sent");
  std::string doc = Document("chi-thi-accepted.txt",
                             "LIÊN ĐOÀN LAO ĐỘNG THÀNH PHỐ HẠ LONG\nCHỈ THỊ về Đại hội Công đoàn cơ sở\n");
  std::string sig = fed_->SignAsChair(doc);
  ASSERT_FALSE(sig.empty());
  SubmitSpec s;
  s.file = doc;
  s.type = "directive";
  s.subject = "Chỉ thị về Đại hội Công đoàn cơ sở nhiệm kỳ 2027–2032";
  s.recipients = fed_->grassroots_ids();
  s.signature = sig;
  HttpAnswer a = d.Submit(s);
  ASSERT_EQ(a.status, 201) << a.body << a.error;
  EXPECT_TRUE(Contains(a.body, "/CT-" + std::string(Federation::kDistrict))) << a.body;
  EXPECT_TRUE(Contains(a.body, "Liên đoàn Lao động thành phố Hạ Long")) << a.body;  // seal subject

  auto entries = fed_->ArchiveEntries(d);
  EXPECT_EQ(fed_->CountEntries(d, "document-sent"), sent_before + 1);
  ASSERT_FALSE(entries.empty());
  const storage::Manifest& last = entries.back();
  EXPECT_EQ(storage::EntryKindName(last.kind), "document-sent");
  EXPECT_EQ(last.Field("type"), "directive");
  EXPECT_EQ(last.Field("issuer"), Federation::kDistrict);
  EXPECT_TRUE(Contains(a.body, last.Field("id"))) << a.body;
}

TEST_F(FederationTest, DirectiveWithoutTheChairsSignatureIsRefusedAndNothingIsArchived) {
  Appliance& d = fed_->district();
  size_t before = fed_->ArchiveEntries(d).size();
  SubmitSpec s;
  s.file = Document("chi-thi-unsigned.txt", "CHỈ THỊ không có chữ ký của Chủ tịch\n");
  s.type = "directive";
  s.recipients = fed_->grassroots_ids();
  HttpAnswer a = d.Submit(s);
  EXPECT_EQ(a.status, 403) << a.body;
  EXPECT_TRUE(Contains(a.body, "policy-refused")) << a.body;
  EXPECT_EQ(fed_->ArchiveEntries(d).size(), before);
}

TEST_F(FederationTest, GrassrootsUnionMayNotIssueADirective) {
  Appliance& g = fed_->grassroots(0);
  size_t before = fed_->ArchiveEntries(g).size();
  SubmitSpec s;
  s.file = Document("chi-thi-from-grassroots.txt", "CHỈ THỊ của một công đoàn cơ sở\n");
  s.type = "directive";
  s.recipients = {fed_->grassroots(1).id()};
  HttpAnswer a = g.Submit(s);
  EXPECT_EQ(a.status, 403) << a.body;
  EXPECT_TRUE(Contains(a.body, "policy-refused")) << a.body;
  EXPECT_EQ(fed_->ArchiveEntries(g).size(), before);
}

TEST_F(FederationTest, ReportFromAGrassrootsUnionToItsParentIsAccepted) {
  Appliance& g = fed_->grassroots(1);
  SubmitSpec s;
  s.file = Document("bao-cao-tai-chinh.txt", "BÁO CÁO TÀI CHÍNH QUÝ IV/2026\nThu: 120.000.000 đ\n");
  s.type = "report";
  s.subject = "Báo cáo tài chính quý IV/2026";
  s.recipients = {Federation::kDistrict};
  HttpAnswer a = g.Submit(s);
  ASSERT_EQ(a.status, 201) << a.body << a.error;
  EXPECT_TRUE(Contains(a.body, "/BC-" + g.id())) << a.body;
}

TEST_F(FederationTest, EveryArchiveAuditsClean) {
  for (const auto& a : fed_->appliances()) {
    SCOPED_TRACE(a->id());
    std::string out;
    EXPECT_EQ(fed_->Audit(*a, &out), 0) << out;
  }
}

}  // namespace
}  // namespace sealpost::testing
