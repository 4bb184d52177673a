// Channel email with real processes: sealpostd + sealpost-signer (a P-256
// seal on a SoftHSM2 token whose certificate carries the union's address
// and emailProtection, tests/support/daemon_harness.h) and a real SMTP
// server (aiosmtpd, tests/support/smtp_sink.py) on 127.0.0.1. The peer
// union's policy entry lists `channels: [email]` with its address.
//   - A document submitted through the CLI arrives as one S/MIME mail that
//     `openssl smime -verify` accepts against the seal's CA; the attachment
//     (extracted by Python's email package) is the document's bundle, which
//     `sealpost verify` accepts; the job is delivered ("smtp:SINK<n>").
//   - SMTP server down: the job is retried with backoff (connection
//     refused recorded), then delivered once the server is back.
#include <sys/stat.h>

#include <chrono>
#include <functional>
#include <regex>
#include <string>
#include <thread>

#include <unistd.h>

#include <gtest/gtest.h>

#include "storage/outbox.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/test_pki.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

constexpr char kPeerAddress[] = "van-thu@cd-ban-thu.example.org";

class EmailE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    sink_ = SmtpSink::Start(tmp_->file("sink")).release();
    if (sink_ == nullptr) return;
    DaemonOptions o;
    o.seal = true;
    o.peer_union_extra = ",\n     email: \"" + std::string(kPeerAddress) + "\", channels: [email]";
    o.config_extra =
        "email:\n"
        "  smtp_host: 127.0.0.1\n"
        "  smtp_port: " + std::to_string(sink_->port()) + "\n"
        "  from: " + std::string(DaemonHarness::kSealEmail) + "\n"
        "  verify_url: \"https://xacminh.thu-nghiem.example/\"\n"
        "  timeout_seconds: 10\n"
        "delivery:\n"
        "  poll_millis: 50\n"
        "  backoff_base_millis: 300\n"
        "  backoff_cap_millis: 600\n"
        "  attempts_flush_seconds: 1\n";
    daemon_ = DaemonHarness::Start(o).release();
    if (daemon_ == nullptr) return;
    WriteTestFile(daemon_->file("clerk.token"), daemon_->CreateToken("clerk", "test clerk") + "\n");
  }

  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
    delete sink_;
    sink_ = nullptr;
    delete tmp_;
    tmp_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(sink_, nullptr);
    ASSERT_NE(daemon_, nullptr);
  }

  // Submits a seal-only notice to the peer union through the CLI; its id.
  static std::string Submit(const std::string& subject) {
    std::string file = daemon_->file("content-" + std::to_string(++submitted_) + ".txt");
    WriteTestFile(file, "Nội dung thông báo " + subject + "\n");
    std::string out;
    int rc = RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " submit " + ShellQuote(file) +
                            " --type notice --to " + DaemonHarness::kPeerUnion + " --subject " +
                            ShellQuote(subject) +
                            " --media-type application/octet-stream --json --server https://127.0.0.1:" +
                            std::to_string(daemon_->user_port()) + " --ca " +
                            ShellQuote(daemon_->file("tls-ca.pem")) + " --token-file " +
                            ShellQuote(daemon_->file("clerk.token")),
                        &out);
    EXPECT_EQ(rc, 0) << out << "\n" << daemon_->Log();
    std::smatch m;
    if (std::regex_search(out, m, std::regex("\"id\":\"([0-9a-f-]{36})\""))) return m[1];
    ADD_FAILURE() << "no id in: " << out;
    return "";
  }

  static storage::DeliveryState StateOf(const std::string& id) {
    storage::OutboxOptions o;
    o.path = daemon_->state_dir() + "/outbox.sqlite";
    auto ob = storage::Outbox::Open(o);
    EXPECT_TRUE(ob.has_value()) << ob.error().message();
    if (!ob) return {};
    auto st = (*ob)->State({id, DaemonHarness::kPeerUnion, storage::Channel::kEmail});
    return st ? *st : storage::DeliveryState{};
  }

  // The received message that carries document `id` ("" if none).
  static std::string MailOf(const std::string& id, int* count = nullptr) {
    std::string found;
    int n = 0;
    for (const std::string& m : sink_->Messages()) {
      if (m.find("Message-ID: <" + id + ".") != std::string::npos) {
        found = m;
        ++n;
      }
    }
    if (count) *count = n;
    return found;
  }

  static void ExpectVerifiedMail(const std::string& id, const std::string& msg) {
    std::string eml = tmp_->file(id + ".eml");
    WriteTestFile(eml, msg);
    std::string out;
    EXPECT_EQ(RunCommand("openssl smime -verify -CAfile " + ShellQuote(daemon_->file("sign-ca.pem")) +
                             " -in " + ShellQuote(eml) + " -out /dev/null",
                         &out),
              0)
        << out;
    EXPECT_NE(msg.find("\r\nTo: " + std::string(kPeerAddress) + "\r\n"), std::string::npos);
    EXPECT_NE(msg.find("<" + std::string(DaemonHarness::kSealEmail) + ">\r\n"), std::string::npos);
    // The attachment as a mail program sees it, byte for byte the bundle.
    std::string py =
        "import email,sys\n"
        "m=email.message_from_binary_file(open(sys.argv[1],'rb'))\n"
        "for p in m.walk():\n"
        "  if p.get_content_type()=='application/vnd.etsi.asic-s+zip':\n"
        "    open(sys.argv[2],'wb').write(p.get_payload(decode=True))\n";
    WriteTestFile(tmp_->file("extract.py"), py);
    std::string att = tmp_->file(id + ".asics");
    ASSERT_EQ(RunCommand("/usr/bin/python3 " + ShellQuote(tmp_->file("extract.py")) + " " +
                             ShellQuote(eml) + " " + ShellQuote(att),
                         &out),
              0)
        << out;
    // The bundle as GET .../bundle serves it (from the cache of small
    // bundles: no file was written for it, docs/decisions/0014).
    std::string token = ReadTestFile(daemon_->file("clerk.token"));
    while (!token.empty() && token.back() == '\n') token.pop_back();
    WriteTestFile(tmp_->file("auth.headers"), "Authorization: Bearer " + token + "\n");
    const std::string served = tmp_->file(id + ".served.asics");
    ASSERT_EQ(RunCommand(daemon_->Curl("/api/v1/documents/" + id + "/bundle",
                                       "-f -H @" + ShellQuote(tmp_->file("auth.headers")) +
                                           " -o " + ShellQuote(served)),
                         &out),
              0)
        << out;
    EXPECT_EQ(ReadTestFile(att), ReadTestFile(served));
    EXPECT_NE(::access((daemon_->state_dir() + "/bundles/" + id + ".asics").c_str(), F_OK), 0)
        << "a bundle file was written for a small document";
    // What the text tells the recipient to do works: unzip the attachment,
    // give the document and META-INF/signature.p7s to the verification
    // desk (here its CLI).
    std::string dir = tmp_->file(id + ".d");
    ASSERT_EQ(RunCommand("mkdir -p " + ShellQuote(dir) + " && cd " + ShellQuote(dir) +
                             " && unzip -q " + ShellQuote(att) + " && ls",
                         &out),
              0)
        << out;
    std::string content = out.substr(0, out.find('\n'));
    if (content == "META-INF") content = out.substr(out.find('\n') + 1, out.find('\n', out.find('\n') + 1) - out.find('\n') - 1);
    EXPECT_EQ(RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " verify " + ShellQuote(dir + "/" + content) +
                             " " + ShellQuote(dir + "/META-INF/signature.p7s") + " --trust " +
                             ShellQuote(daemon_->file("sign-ca.pem")),
                         &out),
              0)
        << content << ": " << out;
  }

  static TempDir* tmp_;
  static SmtpSink* sink_;
  static DaemonHarness* daemon_;
  static int submitted_;
};
TempDir* EmailE2eTest::tmp_ = nullptr;
SmtpSink* EmailE2eTest::sink_ = nullptr;
DaemonHarness* EmailE2eTest::daemon_ = nullptr;
int EmailE2eTest::submitted_ = 0;

TEST_F(EmailE2eTest, SubmittedDocumentArrivesAsVerifiedSmimeMail) {
  const std::string id = Submit("Họp ban chấp hành quý IV");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return StateOf(id).state == storage::JobState::kDelivered; }, 60))
      << StateOf(id).last_error << "\n" << daemon_->Log();
  int count = 0;
  std::string msg = MailOf(id, &count);
  EXPECT_EQ(count, 1);
  ASSERT_FALSE(msg.empty());
  ExpectVerifiedMail(id, msg);
  EXPECT_EQ(StateOf(id).receipt_ref.rfind("smtp:SINK", 0), 0u) << StateOf(id).receipt_ref;
  EXPECT_EQ(StateOf(id).attempts, 1);
}

TEST_F(EmailE2eTest, SmtpServerDownIsRetriedAfterBackoffThenDelivered) {
  const int port = sink_->port();
  sink_->Stop();
  const std::string id = Submit("Thông báo lịch họp");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return StateOf(id).attempts >= 2; }, 60)) << daemon_->Log();
  storage::DeliveryState st = StateOf(id);
  EXPECT_NE(st.state, storage::JobState::kDelivered);
  EXPECT_NE(st.last_error.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << st.last_error;
  delete sink_;
  sink_ = SmtpSink::Start(tmp_->file("sink"), port).release();
  ASSERT_NE(sink_, nullptr);
  ASSERT_TRUE(WaitFor([&] { return StateOf(id).state == storage::JobState::kDelivered; }, 60))
      << StateOf(id).last_error << "\n" << daemon_->Log();
  EXPECT_GE(StateOf(id).attempts, 3);
  int count = 0;
  std::string msg = MailOf(id, &count);
  EXPECT_EQ(count, 1);
  ASSERT_FALSE(msg.empty());
  ExpectVerifiedMail(id, msg);
}

}  // namespace
}  // namespace sealpost::testing
