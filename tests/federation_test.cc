// End-to-end tests of a federation of real appliances on 127.0.0.1
// (tests/support/federation.h): one district union and three grassroots
// unions, each with its own SoftHSM2 token, sealpost-signer and sealpostd,
// one shared policy. The federation is started once per suite (start-up
// costs a few seconds of token and TLS work per appliance).
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "base/strings.h"
#include "tests/support/federation.h"

namespace sealpost::testing {
namespace {

// Delivery state per recipient of a document sent from `a`: from the
// documents API (GET /api/v1/documents/{id}: "deliveries":[{"recipient",
// "state"}]) when the daemon serves it, else from what the sender archived
// (delivery-receipt entries: delivered; read-notice entries: read) and
// logged ("delivery refused"): queued until then.
std::map<std::string, std::string> States(const Federation& fed, const Appliance& a,
                                          const std::string& id) {
  std::map<std::string, std::string> out;
  HttpAnswer r = a.Get("/api/v1/documents/" + id);
  size_t p = r.status == 200 ? r.body.find("\"deliveries\":[") : std::string::npos;
  if (p != std::string::npos) {
    while (true) {
      size_t at = 0;
      std::string who = JsonField(r.body, "recipient", p, &at);
      if (who.empty()) break;
      out[who] = JsonField(r.body, "state", at);
      p = at;
    }
    return out;
  }
  auto entries = fed.ArchiveEntries(a);
  for (const auto& m : entries) {
    if (storage::EntryKindName(m.kind) == "document-sent" && m.Field("id") == id) {
      for (const std::string& rcpt : SplitComma(m.Field("recipients"))) out[rcpt] = "queued";
    }
  }
  std::string log = a.Log();
  for (auto& [rcpt, state] : out) {
    if (Contains(log, "msg=\"delivery refused\" document=\"" + id + "\" recipient=\"" + rcpt + "\"")) {
      state = "refused";
    }
  }
  for (const auto& m : entries) {
    if (storage::EntryKindName(m.kind) != "delivery-receipt" || m.Field("id") != id) continue;
    std::string& state = out[m.Field("recipient")];
    if (m.Field("receipt_type") == "read-notice") state = "read";
    else if (state != "read") state = "delivered";
  }
  return out;
}

// Whether `a` serves the documents read API (GET /api/v1/documents/{id}) for
// a document it sent.
bool HasDocumentsApi(const Appliance& a, const std::string& id) {
  return a.Get("/api/v1/documents/" + id).status == 200;
}

std::string Describe(const std::map<std::string, std::string>& states) {
  std::string s;
  for (const auto& [k, v] : states) s += k + "=" + v + " ";
  return s.empty() ? "(no delivery states)" : s;
}

// Waits (up to `seconds`) until `n` recipients of `id` are in one of `want`.
bool WaitStates(const Federation& fed, const Appliance& a, const std::string& id, const std::set<std::string>& want,
                size_t n, double seconds, std::map<std::string, std::string>* last) {
  auto t0 = std::chrono::steady_clock::now();
  while (true) {
    *last = States(fed, a, id);
    size_t k = 0;
    for (const auto& [r, st] : *last) k += want.count(st);
    if (k >= n) return true;
    if (std::chrono::steady_clock::now() - t0 > std::chrono::duration<double>(seconds)) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// Entries of `kind` about document `id` (field id), optionally of one
// receipt_type, in the archive of `a`.
std::vector<storage::Manifest> EntriesAbout(const Federation& fed, const Appliance& a,
                                            const std::string& kind, const std::string& id,
                                            const std::string& receipt_type = "") {
  std::vector<storage::Manifest> out;
  for (auto& m : fed.ArchiveEntries(a)) {
    if (storage::EntryKindName(m.kind) != kind || m.Field("id") != id) continue;
    if (!receipt_type.empty() && m.Field("receipt_type") != receipt_type) continue;
    out.push_back(std::move(m));
  }
  return out;
}

class FederationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FederationOptions o;
    o.extra_config = kFastDeliveryShortLeaseConfig;
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

  // A text file in the federation's directory.
  std::string Document(const std::string& name, const std::string& text) {
    std::string path = fed_->file(name);
    WriteTestFile(path, text);
    return path;
  }

  // The chair-signed directive from the district to `to`; its id ("" and a
  // failure if refused).
  std::string SendDirective(const std::string& name, const std::vector<std::string>& to) {
    std::string doc = Document(name, "CHỈ THỊ " + name + "\nCác Công đoàn cơ sở thực hiện.\n");
    std::string sig = fed_->SignAsChair(doc);
    SubmitSpec s;
    s.file = doc;
    s.type = "directive";
    s.subject = "Chỉ thị " + name;
    s.recipients = to;
    s.signature = sig;
    HttpAnswer a = fed_->district().Submit(s);
    EXPECT_EQ(a.status, 201) << a.body << a.error;
    return a.status == 201 ? JsonField(a.body, "id") : "";
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
  // (receipts of earlier tests may still arrive: count documents only)
  size_t before = fed_->CountEntries(d, "document-sent");
  SubmitSpec s;
  s.file = Document("chi-thi-unsigned.txt", "CHỈ THỊ không có chữ ký của Chủ tịch\n");
  s.type = "directive";
  s.recipients = fed_->grassroots_ids();
  HttpAnswer a = d.Submit(s);
  EXPECT_EQ(a.status, 403) << a.body;
  EXPECT_TRUE(Contains(a.body, "policy-refused")) << a.body;
  EXPECT_EQ(fed_->CountEntries(d, "document-sent"), before);
}

TEST_F(FederationTest, GrassrootsUnionMayNotIssueADirective) {
  Appliance& g = fed_->grassroots(0);
  size_t before = fed_->CountEntries(g, "document-sent");
  SubmitSpec s;
  s.file = Document("chi-thi-from-grassroots.txt", "CHỈ THỊ của một công đoàn cơ sở\n");
  s.type = "directive";
  s.recipients = {fed_->grassroots(1).id()};
  HttpAnswer a = g.Submit(s);
  EXPECT_EQ(a.status, 403) << a.body;
  EXPECT_TRUE(Contains(a.body, "policy-refused")) << a.body;
  EXPECT_EQ(fed_->CountEntries(g, "document-sent"), before);
}

TEST_F(FederationTest, ReportFromAGrassrootsUnionGoesUpToTheDistrictWithItsReceipt) {
  Appliance& g = fed_->grassroots(1);
  SubmitSpec s;
  s.file = Document("bao-cao-tai-chinh.txt", "BÁO CÁO TÀI CHÍNH QUÝ IV/2026\nThu: 120.000.000 đ\n");
  s.type = "report";
  s.subject = "Báo cáo tài chính quý IV/2026";
  s.recipients = {Federation::kDistrict};
  HttpAnswer a = g.Submit(s);
  ASSERT_EQ(a.status, 201) << a.body << a.error;
  EXPECT_TRUE(Contains(a.body, "/BC-" + g.id())) << a.body;
  std::string id = JsonField(a.body, "id");
  std::map<std::string, std::string> st;
  ASSERT_TRUE(WaitStates(*fed_, g, id, {"delivered", "read"}, 1, 30, &st)) << Describe(st);
  EXPECT_EQ(EntriesAbout(*fed_, g, "delivery-receipt", id, "delivery-receipt").size(), 1u);
  auto got = EntriesAbout(*fed_, fed_->district(), "document-received", id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].Field("issuer"), g.id());
  EXPECT_EQ(got[0].Field("type"), "report");
}

TEST_F(FederationTest, DirectiveFansOutToEveryGrassrootsUnionWithReceiptsArchived) {
  Appliance& d = fed_->district();
  std::string id = SendDirective("chi-thi-fan-out.txt", fed_->grassroots_ids());
  ASSERT_FALSE(id.empty());
  std::map<std::string, std::string> st;
  ASSERT_TRUE(WaitStates(*fed_, d, id, {"delivered", "read"}, 3, 30, &st)) << Describe(st);

  // The sender: one delivery-receipt entry per recipient, referring to the
  // document-sent entry.
  auto sent = EntriesAbout(*fed_, d, "document-sent", id);
  ASSERT_EQ(sent.size(), 1u);
  auto receipts = EntriesAbout(*fed_, d, "delivery-receipt", id, "delivery-receipt");
  std::set<std::string> recipients;
  for (const auto& r : receipts) {
    recipients.insert(r.Field("recipient"));
    EXPECT_EQ(r.refers_to, sent[0].seq);
  }
  EXPECT_EQ(receipts.size(), 3u);
  std::vector<std::string> all = fed_->grassroots_ids();
  EXPECT_EQ(recipients, std::set<std::string>(all.begin(), all.end()));
  // Every recipient: exactly one document-received entry, issuer = the district.
  for (size_t i = 0; i < fed_->grassroots_count(); ++i) {
    Appliance& g = fed_->grassroots(i);
    auto got = EntriesAbout(*fed_, g, "document-received", id);
    ASSERT_EQ(got.size(), 1u) << g.id();
    EXPECT_EQ(got[0].Field("issuer"), Federation::kDistrict);
    EXPECT_EQ(got[0].Field("content_sha256"), sent[0].Field("content_sha256"));
  }
}

TEST_F(FederationTest, ReadNoticeComesBackWhenTheRecipientOpensTheDirective) {
  Appliance& d = fed_->district();
  Appliance& g = fed_->grassroots(0);
  std::string id = SendDirective("chi-thi-read.txt", {g.id()});
  ASSERT_FALSE(id.empty());
  std::map<std::string, std::string> st;
  ASSERT_TRUE(WaitStates(*fed_, d, id, {"delivered", "read"}, 1, 30, &st)) << Describe(st);
  if (!HasDocumentsApi(d, id)) {
    GTEST_SKIP() << "GET /api/v1/documents/{id}/content (which sends the read notice) is not in this build";
  }
  HttpAnswer content = g.Get("/api/v1/documents/" + id + "/content");
  ASSERT_EQ(content.status, 200) << content.body;
  EXPECT_EQ(content.body, ReadTestFile(fed_->file("chi-thi-read.txt")));
  ASSERT_TRUE(WaitStates(*fed_, d, id, {"read"}, 1, 30, &st)) << Describe(st);
  // Archived on both sides: the reader's notice, and the sender's copy.
  EXPECT_EQ(EntriesAbout(*fed_, g, "delivery-receipt", id, "read-notice").size(), 1u);
  EXPECT_EQ(EntriesAbout(*fed_, d, "delivery-receipt", id, "read-notice").size(), 1u);
  // Opening it again sends nothing new.
  EXPECT_EQ(g.Get("/api/v1/documents/" + id + "/content").status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(EntriesAbout(*fed_, g, "delivery-receipt", id, "read-notice").size(), 1u);
  EXPECT_EQ(EntriesAbout(*fed_, d, "delivery-receipt", id, "read-notice").size(), 1u);
}

TEST_F(FederationTest, RecipientDownThenUpIsDeliveredAfterBackoff) {
  Appliance& d = fed_->district();
  Appliance& down = fed_->grassroots(2);
  ASSERT_EQ(down.Stop(), 0);
  std::string id = SendDirective("chi-thi-down-up.txt", fed_->grassroots_ids());
  ASSERT_FALSE(id.empty());
  std::map<std::string, std::string> st;
  ASSERT_TRUE(WaitStates(*fed_, d, id, {"delivered", "read"}, 2, 30, &st)) << Describe(st);
  // Some retries against the closed port.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  st = States(*fed_, d, id);
  EXPECT_NE(st[down.id()], "delivered") << Describe(st);
  EXPECT_NE(st[down.id()], "refused") << Describe(st);
  ASSERT_TRUE(down.Start());
  ASSERT_TRUE(WaitStates(*fed_, d, id, {"delivered", "read"}, 3, 30, &st)) << Describe(st);
  EXPECT_EQ(EntriesAbout(*fed_, down, "document-received", id).size(), 1u);
  EXPECT_EQ(EntriesAbout(*fed_, d, "delivery-receipt", id, "delivery-receipt").size(), 3u);
}

TEST_F(FederationTest, SenderKilledMidQueueAndRestartedDeliversEverythingOnce) {
  Appliance& d = fed_->district();
  Appliance& late = fed_->grassroots(1);
  ASSERT_EQ(late.Stop(), 0);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(SendDirective("chi-thi-crash-" + std::to_string(i) + ".txt", fed_->grassroots_ids()));
    ASSERT_FALSE(ids.back().empty());
  }
  d.Kill();  // SIGKILL with jobs queued for `late` (and maybe in flight to the others)
  ASSERT_TRUE(late.Start());
  ASSERT_TRUE(d.Restart());
  for (const std::string& id : ids) {
    std::map<std::string, std::string> st;
    ASSERT_TRUE(WaitStates(*fed_, d, id, {"delivered", "read"}, 3, 45, &st)) << id << ": " << Describe(st);
    EXPECT_EQ(EntriesAbout(*fed_, d, "delivery-receipt", id, "delivery-receipt").size(), 3u) << id;
    for (size_t i = 0; i < fed_->grassroots_count(); ++i) {
      EXPECT_EQ(EntriesAbout(*fed_, fed_->grassroots(i), "document-received", id).size(), 1u)
          << id << " on " << fed_->grassroots(i).id();
    }
  }
}

TEST_F(FederationTest, EveryArchiveAuditsClean) {
  for (const auto& a : fed_->appliances()) {
    SCOPED_TRACE(a->id());
    std::string out;
    EXPECT_EQ(fed_->Audit(*a, &out), 0) << out;
  }
}

// Senders whose own policy is wrong (policy-lenient.yaml: anyone may send
// anything with only a seal): their appliance accepts and seals, the
// recipient's appliance refuses, the sender's job ends refused.
class FederationRefusalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    FederationOptions o;
    o.grassroots = 2;
    o.extra_config = kFastDeliveryShortLeaseConfig;
    o.lenient = {Federation::kDistrict, "cd-than-ha-tu"};
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
  // Submits on `from` (its lenient policy accepts), waits for the refusal.
  void ExpectRefusedByRecipient(Appliance& from, Appliance& to, const std::string& type,
                                const std::string& name) {
    std::string doc = fed_->file(name);
    WriteTestFile(doc, "Văn bản " + name + "\n");
    SubmitSpec s;
    s.file = doc;
    s.type = type;
    s.recipients = {to.id()};
    HttpAnswer a = from.Submit(s);
    ASSERT_EQ(a.status, 201) << a.body << a.error;
    std::string id = JsonField(a.body, "id");
    std::map<std::string, std::string> st;
    ASSERT_TRUE(WaitStates(*fed_, from, id, {"refused"}, 1, 30, &st)) << Describe(st);
    // The recipient's reason reaches the sender.
    if (HasDocumentsApi(from, id)) {
      HttpAnswer doc_state = from.Get("/api/v1/documents/" + id);
      EXPECT_TRUE(Contains(doc_state.body, "policy")) << doc_state.body;
    }
    EXPECT_TRUE(Contains(from.Log(), "HTTP 403: Refused by the policy")) << from.Log();
    EXPECT_TRUE(EntriesAbout(*fed_, to, "document-received", id).empty());
    EXPECT_TRUE(EntriesAbout(*fed_, from, "delivery-receipt", id).empty());
    EXPECT_TRUE(Contains(to.Log(), "inbox refused")) << to.Log();
  }
  static Federation* fed_;
};

Federation* FederationRefusalTest::fed_ = nullptr;

TEST_F(FederationRefusalTest, DirectiveWithoutTheRequiredOfficerIsRefusedByTheRecipient) {
  ExpectRefusedByRecipient(fed_->district(), fed_->grassroots(0), "directive",
                           "chi-thi-khong-chu-tich.txt");
}

TEST_F(FederationRefusalTest, UnionNotAllowedToIssueTheTypeIsRefusedByTheRecipient) {
  // cd-than-ha-tu (a grassroots union) sends a directive to its sibling.
  ExpectRefusedByRecipient(fed_->grassroots(1), fed_->grassroots(0), "directive",
                           "chi-thi-cua-co-so.txt");
}

TEST_F(FederationRefusalTest, EveryArchiveAuditsClean) {
  for (const auto& a : fed_->appliances()) {
    SCOPED_TRACE(a->id());
    std::string out;
    EXPECT_EQ(fed_->Audit(*a, &out), 0) << out;
  }
}

}  // namespace
}  // namespace sealpost::testing
