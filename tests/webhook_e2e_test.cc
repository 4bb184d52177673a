// Channel webhook with real processes: sealpostd + sealpost-signer (a P-256
// seal on a SoftHSM2 token, tests/support/daemon_harness.h) and a receiver
// written in Python (tests/webhook_receiver.py: HTTPS on 127.0.0.1 with its
// own test CA, checks the timestamp window and the HMAC with the shared
// secret in constant time, records every request). The peer union's policy
// entry lists `channels: [webhook]` with the receiver's URL.
//   - A submitted document: the receiver answers 500 to the first valid
//     request, so the outbox retries; then exactly one valid notification
//     of the document was accepted, with the expected fields; the job is
//     delivered ("webhook:200") after two attempts (retry, delivered), and
//     both attempts are archived in delivery-attempts entries.
//   - The receiver holding another secret: it answers 401, the job is
//     refused (final) after one attempt, and no request was accepted.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include "storage/entry.h"
#include "storage/outbox.h"
#include "storage/reader.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/test_pki.h"
#include "tests/support/wait.h"

namespace sealpost::testing {
namespace {

constexpr const char* kSecret = "4f1c0e9a7b2d6c3e8f5a1b0c9d2e7f60a1b2c3d4e5f60718293a4b5c6d7e8f90";

struct Request {
  int status = 0;
  bool valid = false;
  std::string why;
  std::string timestamp;
  std::string path;
  std::string content_type;
  std::string notification_id;
  Poco::JSON::Object::Ptr body;  // null when the body is not a JSON object
};

class WebhookE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    // The receiver's own PKI: the daemon trusts only this CA for webhooks.
    TestCa ca = TestCa::CreateRoot("/CN=Webhook Receiver CA/O=Bridge/C=VN");
    CertSpec spec;
    spec.subject = "/CN=127.0.0.1/O=Bridge/C=VN";
    spec.key_usage = "critical,digitalSignature";
    spec.ext_key_usage = "serverAuth";
    spec.subject_alt_name = "IP:127.0.0.1";
    Issued server = ca.Issue(spec);
    WriteTestFile(tmp_->file("receiver-ca.pem"), CertToPem(ca.cert()));
    WriteTestFile(tmp_->file("receiver.pem"), CertToPem(server.cert.get()));
    WriteTestFile(tmp_->file("receiver-key.pem"), KeyToPkcs8Pem(server.key.get()));
    // The daemon's copy of the secret (mode 0600) and the receiver's.
    WriteTestFile(tmp_->file("daemon.secret"), std::string(kSecret) + "\n");
    ::chmod(tmp_->file("daemon.secret").c_str(), 0600);
    WriteTestFile(tmp_->file("receiver.secret"), std::string(kSecret) + "\n");
    if (!StartReceiver()) return;

    DaemonOptions o;
    o.seal = true;
    o.peer_union_extra = ",\n     webhook: \"https://127.0.0.1:" + std::to_string(receiver_port_) +
                         "/hooks/sealpost?union=cd-ban-thu\", channels: [webhook]";
    o.config_extra =
        "webhook:\n"
        "  public_base_url: \"https://sealpost.ldld-thu-nghiem.example.vn:9443\"\n"
        "  ca: " + tmp_->file("receiver-ca.pem") + "\n"
        "  timeout_seconds: 10\n"
        "  secrets:\n"
        "    cd-ban-thu: " + tmp_->file("daemon.secret") + "\n"
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
    if (receiver_pid_ > 0) {
      ::kill(receiver_pid_, SIGKILL);
      ::waitpid(receiver_pid_, nullptr, 0);
      receiver_pid_ = -1;
    }
    delete tmp_;
    tmp_ = nullptr;
  }

  void SetUp() override {
    ASSERT_GT(receiver_pid_, 0);
    ASSERT_NE(daemon_, nullptr);
  }

  static bool StartReceiver() {
    const std::string script = std::string(SEALPOST_SOURCE_DIR) + "/tests/webhook_receiver.py";
    std::vector<std::string> args = {"python3",       script,
                                     "--cert",        tmp_->file("receiver.pem"),
                                     "--key",         tmp_->file("receiver-key.pem"),
                                     "--secret-file", tmp_->file("receiver.secret"),
                                     "--port-file",   tmp_->file("receiver.port"),
                                     "--log",         tmp_->file("receiver.log"),
                                     "--fail-first",  "1"};
    pid_t parent = ::getpid();
    receiver_pid_ = ::fork();
    if (receiver_pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) _exit(127);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("python3", argv.data());
      _exit(127);
    }
    if (receiver_pid_ < 0) {
      ADD_FAILURE() << "fork failed";
      return false;
    }
    if (!WaitFor([] { return ::access(tmp_->file("receiver.port").c_str(), F_OK) == 0; }, 20)) {
      ADD_FAILURE() << "the webhook receiver did not start";
      return false;
    }
    receiver_port_ = std::atoi(ReadTestFile(tmp_->file("receiver.port")).c_str());
    return receiver_port_ > 0;
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

  // Every request the receiver recorded for document `id`, in order.
  static std::vector<Request> Requests(const std::string& id) {
    std::vector<Request> out;
    std::ifstream in(tmp_->file("receiver.log"));
    std::string line;
    while (std::getline(in, line)) {
      Poco::JSON::Parser p;
      auto rec = p.parse(line).extract<Poco::JSON::Object::Ptr>();
      Request r;
      r.status = rec->getValue<int>("status");
      r.valid = rec->getValue<bool>("valid");
      r.why = rec->optValue<std::string>("why", "");
      r.timestamp = rec->optValue<std::string>("timestamp", "");
      r.path = rec->optValue<std::string>("path", "");
      r.content_type = rec->optValue<std::string>("content_type", "");
      r.notification_id = rec->optValue<std::string>("notification_id", "");
      try {
        Poco::JSON::Parser bp;
        auto v = bp.parse(rec->getValue<std::string>("body"));
        if (v.type() == typeid(Poco::JSON::Object::Ptr)) r.body = v.extract<Poco::JSON::Object::Ptr>();
      } catch (...) {
      }
      if (r.body && r.body->optValue<std::string>("id", "") == id) out.push_back(std::move(r));
    }
    return out;
  }

  static storage::DeliveryState StateOf(const std::string& id) {
    storage::OutboxOptions o;
    o.path = daemon_->state_dir() + "/outbox.sqlite";
    auto ob = storage::Outbox::Open(o);
    EXPECT_TRUE(ob.has_value()) << ob.error().message();
    if (!ob) return {};
    auto st = (*ob)->State({id, DaemonHarness::kPeerUnion, storage::Channel::kWebhook});
    EXPECT_TRUE(st.has_value()) << st.error().message();
    return st ? *st : storage::DeliveryState{};
  }

  static std::vector<storage::Attempt> AttemptsOf(const std::string& id) {
    storage::OutboxOptions o;
    o.path = daemon_->state_dir() + "/outbox.sqlite";
    auto ob = storage::Outbox::Open(o);
    if (!ob) return {};
    auto a = (*ob)->Attempts({id, DaemonHarness::kPeerUnion, storage::Channel::kWebhook});
    return a ? *a : std::vector<storage::Attempt>{};
  }

  // The archived attempts (attempts.json of delivery-attempts entries) of
  // document `id`, as their JSON objects.
  static std::vector<Poco::JSON::Object::Ptr> ArchivedAttempts(const std::string& id) {
    std::vector<Poco::JSON::Object::Ptr> out;
    auto reader = storage::ArchiveReader::Open(daemon_->state_dir() + "/archive");
    if (!reader) return out;
    for (uint64_t seq = 1; seq <= (*reader)->size(); ++seq) {
      auto m = (*reader)->ReadManifest(seq);
      if (!m || m->kind != storage::EntryKind::kDeliveryAttempts) continue;
      auto json = (*reader)->ReadEntryFile(seq, "attempts.json");
      if (!json) continue;
      Poco::JSON::Parser p;
      auto arr = p.parse(*json).extract<Poco::JSON::Array::Ptr>();
      for (size_t i = 0; i < arr->size(); ++i) {
        auto a = arr->getObject(static_cast<unsigned>(i));
        if (a->getValue<std::string>("document_id") == id) out.push_back(a);
      }
    }
    return out;
  }

  static TempDir* tmp_;
  static DaemonHarness* daemon_;
  static pid_t receiver_pid_;
  static int receiver_port_;
  static int submitted_;
};
TempDir* WebhookE2eTest::tmp_ = nullptr;
DaemonHarness* WebhookE2eTest::daemon_ = nullptr;
pid_t WebhookE2eTest::receiver_pid_ = -1;
int WebhookE2eTest::receiver_port_ = 0;
int WebhookE2eTest::submitted_ = 0;

TEST_F(WebhookE2eTest, SubmittedDocumentNotifiesReceiverExactlyOnceAfterARetry) {
  const std::string id = Submit("Họp ban chấp hành quý IV");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return StateOf(id).state == storage::JobState::kDelivered; }, 60))
      << daemon_->Log();

  std::vector<Request> reqs = Requests(id);
  ASSERT_EQ(reqs.size(), 2u);
  // First: valid, answered 500 (the receiver's planned failure); then the
  // retry, valid and accepted: exactly one accepted notification.
  EXPECT_TRUE(reqs[0].valid) << reqs[0].why;
  EXPECT_EQ(reqs[0].status, 500);
  EXPECT_TRUE(reqs[1].valid) << reqs[1].why;
  EXPECT_EQ(reqs[1].status, 200);
  EXPECT_NE(reqs[0].timestamp, "");
  const Request& r = reqs[1];
  EXPECT_EQ(r.path, "/hooks/sealpost?union=cd-ban-thu");
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.notification_id, id + "/cd-ban-thu");
  ASSERT_TRUE(r.body);
  EXPECT_EQ(r.body->getValue<std::string>("event"), "document.issued");
  EXPECT_EQ(r.body->getValue<std::string>("type"), "notice");
  EXPECT_EQ(r.body->getValue<std::string>("type_name"), "Thông báo");
  EXPECT_EQ(r.body->getValue<std::string>("subject"), "Họp ban chấp hành quý IV");
  EXPECT_EQ(r.body->getValue<std::string>("issuer"), "ldld-thu-nghiem");
  EXPECT_EQ(r.body->getValue<std::string>("issuer_name"), "Liên đoàn Lao động thử nghiệm");
  EXPECT_EQ(r.body->getValue<std::string>("recipient"), "cd-ban-thu");
  EXPECT_EQ(r.body->getValue<std::string>("reference"), "");
  EXPECT_TRUE(std::regex_match(r.body->getValue<std::string>("issued_at"),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
  EXPECT_EQ(r.body->getValue<std::string>("verification_url"),
            "https://sealpost.ldld-thu-nghiem.example.vn:9443/api/v1/verify");
  EXPECT_EQ(r.body->getValue<std::string>("document_url"),
            "https://sealpost.ldld-thu-nghiem.example.vn:9443/api/v1/documents/" + id);

  storage::DeliveryState st = StateOf(id);
  EXPECT_EQ(st.receipt_ref, "webhook:200");
  EXPECT_EQ(st.attempts, 2);
  // The documents API: no signed receipt for a webhook (receipt_seq null),
  // the receiver's acknowledgement as delivery_ref.
  std::string hdr = daemon_->file("clerk.hdr");
  WriteTestFile(hdr, "Authorization: Bearer " + ReadTestFile(daemon_->file("clerk.token")));
  std::string api;
  ASSERT_EQ(RunCommand(daemon_->Curl("/api/v1/documents/" + id, "-H @" + ShellQuote(hdr)), &api), 0) << api;
  EXPECT_NE(api.find("\"channel\":\"webhook\",\"state\":\"delivered\""), std::string::npos) << api;
  EXPECT_NE(api.find("\"receipt_seq\":null,\"delivery_ref\":\"webhook:200\""), std::string::npos) << api;
  std::vector<storage::Attempt> atts = AttemptsOf(id);
  ASSERT_EQ(atts.size(), 2u);
  EXPECT_EQ(atts[0].result, "retry");
  EXPECT_NE(atts[0].error.find("answered HTTP 500"), std::string::npos) << atts[0].error;
  EXPECT_EQ(atts[1].result, "delivered");

  // Both attempts end up in the archive (flushed every second).
  std::vector<Poco::JSON::Object::Ptr> archived;
  ASSERT_TRUE(WaitFor([&] { return (archived = ArchivedAttempts(id)).size() >= 2; }, 30))
      << daemon_->Log();
  ASSERT_EQ(archived.size(), 2u);
  EXPECT_EQ(archived[0]->getValue<std::string>("channel"), "webhook");
  EXPECT_EQ(archived[0]->getValue<std::string>("result"), "retry");
  EXPECT_EQ(archived[1]->getValue<std::string>("result"), "delivered");
  // Only a webhook job was queued for this recipient (channels: [webhook]).
  storage::OutboxOptions o;
  o.path = daemon_->state_dir() + "/outbox.sqlite";
  auto ob = storage::Outbox::Open(o);
  ASSERT_TRUE(ob.has_value());
  auto all = (*ob)->States(id);
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].key.channel, storage::Channel::kWebhook);
  // The secret never reaches the log.
  EXPECT_EQ(daemon_->Log().find(kSecret), std::string::npos);
}

TEST_F(WebhookE2eTest, ReceiverWithAnotherSecretRejectsAndTheJobIsRefused) {
  // The planned 500 comes after the signature check, so this receiver
  // answers 401 at once.
  WriteTestFile(tmp_->file("receiver.secret"), "another-secret-another-secret-another-secret\n");
  const std::string id = Submit("Thông báo khẩn");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return StateOf(id).state == storage::JobState::kRefused; }, 60))
      << daemon_->Log();
  std::vector<Request> reqs = Requests(id);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_FALSE(reqs[0].valid);
  EXPECT_EQ(reqs[0].why, "bad signature");
  EXPECT_EQ(reqs[0].status, 401);
  storage::DeliveryState st = StateOf(id);
  EXPECT_EQ(st.attempts, 1);
  EXPECT_NE(st.last_error.find("answered HTTP 401"), std::string::npos) << st.last_error;
  EXPECT_EQ(st.receipt_ref, "");
  WriteTestFile(tmp_->file("receiver.secret"), std::string(kSecret) + "\n");
}

}  // namespace
}  // namespace sealpost::testing
