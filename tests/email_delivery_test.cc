// Channel email end to end below the HTTP layer: a real Exchange (archive,
// outbox, bundle) sealed by a SoftHSM2 token behind a real sealpost-signer
// process (RemoteSigner), the DeliveryWorker building the S/MIME mail and
// sending it to a real SMTP server (aiosmtpd on 127.0.0.1). The received
// message verifies with `openssl smime -verify` and carries the bundle;
// server down -> retried after backoff -> delivered; 5xx -> refused.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/encoding.h"
#include "crypto/cades_sign.h"
#include "crypto/software_signer.h"
#include "crypto/verify.h"
#include "daemon/delivery.h"
#include "daemon/exchange.h"
#include "daemon/signer/remote_signer.h"
#include "policies/holder.h"
#include "policies/verdict.h"
#include "tests/support/signer_process.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost::daemon {
namespace {

using testing::CertSha256Hex;
using testing::CertSpec;
using testing::CertToPem;
using testing::Issued;
using testing::ReadTestFile;
using testing::RunCommand;
using testing::ShellQuote;
using testing::SmtpSink;
using testing::SpkiSha256Hex;
using testing::TestCa;
using testing::WriteTestFile;

constexpr char kToken[] = "union-seal";
constexpr char kPin[] = "246810";
constexpr char kFrom[] = "ldld-thu@congdoan.example";

class FakeClock final : public storage::OutboxClock {
 public:
  int64_t NowMillis() override { return now; }
  int64_t now = 1'800'000'000'000;
};

class ZeroRandom final : public storage::OutboxRandom {
 public:
  uint64_t UniformUpTo(uint64_t max) override { return max; }  // the longest backoff
};

class NoTransport final : public PeerTransport {
 public:
  Result<client::Response> Post(const std::string&, const std::string&, const std::string&,
                                const std::string&, const std::string&,
                                const client::Headers&) override {
    return Err(Status::Unavailable("no appliance in this test"));
  }
};

class EmailDeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv(testing::kAllowlistEnv);
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Mail Delivery CA/O=Test/C=VN"));
    WriteTestFile(hsm_.file("ca.pem"), CertToPem(ca_->cert()));
    ASSERT_TRUE(hsm_.InitToken(kToken, "13579135", kPin));
    CertSpec spec;
    spec.subject = "/CN=Con dấu LĐLĐ Thử/O=LĐLĐ Thử/C=VN";
    spec.email = kFrom;
    spec.ext_key_usage = "emailProtection";
    auto seal = hsm_.AddKeyWithCert(kToken, kPin, *ca_, testing::KeyType::kP256, "01", "seal", spec);
    ASSERT_TRUE(seal.has_value());
    seal_cert_.reset(X509_dup(seal->cert.get()));
    socket_ = hsm_.file("signer.sock");
    signer_proc_ = std::make_unique<testing::SignerProcess>(
        std::vector<std::string>{"--key", hsm_.KeyUri(kToken, "seal"), "--socket", socket_,
                                 "--pin-file", hsm_.WritePinFile(kPin), "--journal",
                                 hsm_.file("journal.jsonl")},
        hsm_.file("signer.log"));
    ASSERT_TRUE(signer_proc_->WaitListening(socket_)) << ReadTestFile(hsm_.file("signer.log"));
    remote_ = std::make_unique<signer::RemoteSigner>(signer::RemoteSignerOptions{socket_});

    CertSpec chair_spec;
    chair_spec.subject = "/CN=Nguyễn Văn Chủ Tịch/O=LĐLĐ Thử/C=VN";
    Issued chair = ca_->Issue(chair_spec);
    std::string chair_spki = SpkiSha256Hex(chair.cert.get());
    auto c = crypto::SoftwareKeySigner::CreateForTesting("chair", std::move(chair.key),
                                                         std::move(chair.cert));
    ASSERT_TRUE(c.has_value());
    chair_ = std::move(*c);

    std::string policy =
        "federation: {id: thu, name: \"Liên đoàn thử\"}\n"
        "trust:\n  anchors:\n    - {id: test-ca, name: \"Test CA\", sha256: \"" +
        CertSha256Hex(ca_->cert()) +
        "\"}\n"
        "unions:\n"
        "  - {id: ldld-thu, name: \"LĐLĐ Thử\", code: \"LĐLĐ-T\", level: district,\n"
        "     endpoint: \"https://127.0.0.1:7001\", email: \"" + std::string(kFrom) + "\",\n"
        "     seal: {spki_sha256: \"" + SpkiSha256Hex(seal_cert_.get()) + "\"}}\n"
        "  - {id: cd-c, name: \"Công đoàn C\", level: grassroots, parent: ldld-thu,\n"
        "     email: \"cd-c@example.org\"}\n"
        "  - {id: cd-d, name: \"Công đoàn D\", level: grassroots, parent: ldld-thu}\n" +
        testing::ChairAndDirectiveYaml(chair_spki);
    WriteTestFile(hsm_.file("policy.yaml"), policy);
    auto holder = policies::PolicyHolder::Open({hsm_.file("policy.yaml")});
    ASSERT_TRUE(holder.has_value()) << holder.error().message();
    policy_ = std::move(*holder);
    auto v = testing::VerifierForAnchor(hsm_.file("ca.pem"));
    ASSERT_TRUE(v.has_value()) << v.error().message();
    verifier_.emplace(std::move(*v));

    ExchangeOptions o;
    o.union_id = "ldld-thu";
    o.state_dir = hsm_.file("state");
    o.signer = remote_.get();
    o.seal_key = crypto::KeyRef{hsm_.KeyUri(kToken, "seal")};
    o.policy = policy_.get();
    o.verifier = &*verifier_;
    o.outbox.clock = &clock_;
    o.outbox.random = &random_;
    o.outbox.lease_millis = 10'000;
    o.outbox.backoff_base_millis = 1000;
    o.outbox.max_attempts = 5;
    auto ex = Exchange::Create(o);
    ASSERT_TRUE(ex.has_value()) << ex.error().message();
    ex_ = std::move(*ex);
    WriteTestFile(hsm_.file("directive.txt"), "Chỉ thị số 1: họp ban chấp hành ngày 5.\n");
  }

  std::unique_ptr<DeliveryWorker> MakeWorker(int port) {
    DeliveryOptions d;
    d.union_id = "ldld-thu";
    d.policy = policy_.get();
    d.trust_anchor_files = {hsm_.file("ca.pem")};
    EmailDeliveryOptions e;
    e.smtp.host = "127.0.0.1";
    e.smtp.port = port;
    e.smtp.timeout_seconds = 10;
    e.from = kFrom;
    e.verify_url = "https://127.0.0.1:8443/verify";
    d.email = e;
    Exchange* ex = ex_.get();
    auto w = DeliveryWorker::Create(d, [ex]() -> Result<Exchange*> { return ex; },
                                    std::make_unique<NoTransport>());
    EXPECT_TRUE(w.has_value()) << w.error().message();
    return w ? std::move(*w) : nullptr;
  }

  // Submits a directive to cd-c (no appliance) and queues its email job as
  // the Exchange does for a union whose channel is email.
  Submitted SubmitByMail(const std::vector<std::string>& to = {"cd-c"}) {
    SubmitRequest r;
    r.content_path = hsm_.file("directive.txt");
    r.content_name = "Chỉ thị 1.txt";
    r.media_type = "text/plain";
    r.type = "directive";
    r.subject = "Họp ban chấp hành quý IV";
    r.recipients = to;
    auto der = crypto::SignFile(*chair_, crypto::KeyRef{"chair"}, r.content_path, {});
    EXPECT_TRUE(der.has_value());
    r.officer_signature = der.value_or("");
    auto sub = ex_->Submit(r);
    EXPECT_TRUE(sub.has_value()) << (sub ? "" : sub.error().detail_en);
    if (!sub) return Submitted{};
    for (const std::string& u : to) {
      auto q = ex_->outbox().Enqueue({sub->id, u, storage::Channel::kEmail}, sub->bundle_path);
      EXPECT_TRUE(q.has_value()) << q.error().message();
    }
    return *sub;
  }

  storage::DeliveryState StateOf(const std::string& doc, const std::string& rcpt = "cd-c") {
    auto s = ex_->outbox().State({doc, rcpt, storage::Channel::kEmail});
    EXPECT_TRUE(s.has_value()) << s.error().message();
    return s.value_or(storage::DeliveryState{});
  }

  void ExpectVerifiedMail(const std::string& msg, const Submitted& sub) {
    WriteTestFile(hsm_.file("got.eml"), msg);
    std::string out;
    EXPECT_EQ(RunCommand("openssl smime -verify -CAfile " + ShellQuote(hsm_.file("ca.pem")) +
                             " -in " + ShellQuote(hsm_.file("got.eml")) + " -out " +
                             ShellQuote(hsm_.file("signed.txt")),
                         &out),
              0)
        << out;
    // The attachment, extracted as a mail program would (Python's email
    // package, independent of our builder), equals the bundle file.
    std::string py =
        "import email,sys\n"
        "m=email.message_from_binary_file(open(sys.argv[1],'rb'))\n"
        "for p in m.walk():\n"
        "  if p.get_content_type()=='application/vnd.etsi.asic-s+zip':\n"
        "    open(sys.argv[2],'wb').write(p.get_payload(decode=True))\n";
    WriteTestFile(hsm_.file("extract.py"), py);
    ASSERT_EQ(RunCommand("/usr/bin/python3 " + ShellQuote(hsm_.file("extract.py")) + " " +
                             ShellQuote(hsm_.file("got.eml")) + " " +
                             ShellQuote(hsm_.file("attachment.asics")),
                         &out),
              0)
        << out;
    EXPECT_EQ(ReadTestFile(hsm_.file("attachment.asics")), ReadTestFile(sub.bundle_path));
    EXPECT_NE(msg.find("\r\nTo: cd-c@example.org\r\n"), std::string::npos);
    EXPECT_EQ(msg.rfind("From: ", 0), 0u);
    EXPECT_NE(msg.find("<" + std::string(kFrom) + ">\r\n"), std::string::npos);
  }

  testing::SoftHsm hsm_;
  std::unique_ptr<TestCa> ca_;
  X509Ptr seal_cert_;
  std::string socket_;
  std::unique_ptr<testing::SignerProcess> signer_proc_;
  std::unique_ptr<signer::RemoteSigner> remote_;
  std::unique_ptr<crypto::SoftwareKeySigner> chair_;
  std::unique_ptr<policies::PolicyHolder> policy_;
  std::optional<crypto::Verifier> verifier_;
  FakeClock clock_;
  ZeroRandom random_;
  std::unique_ptr<Exchange> ex_;
};

TEST_F(EmailDeliveryTest, MailSealedThroughTheSignerIsDeliveredAndVerifies) {
  auto sink = SmtpSink::Start(hsm_.file("sink"));
  ASSERT_TRUE(sink);
  auto worker = MakeWorker(sink->port());
  ASSERT_TRUE(worker);
  Submitted sub = SubmitByMail();
  ASSERT_FALSE(sub.id.empty());
  auto n = worker->RunOnce();
  ASSERT_TRUE(n.has_value()) << n.error().message();
  storage::DeliveryState st = StateOf(sub.id);
  EXPECT_EQ(st.state, storage::JobState::kDelivered) << st.last_error;
  EXPECT_EQ(st.receipt_ref, "smtp:SINK1");
  auto msgs = sink->Messages();
  ASSERT_EQ(msgs.size(), 1u);
  ExpectVerifiedMail(msgs[0], sub);
  EXPECT_EQ(sink->Envelopes()[0], std::string(kFrom) + "\ncd-c@example.org\n");
  // The signer journaled the mail signature like any other.
  std::string journal = ReadTestFile(hsm_.file("journal.jsonl"));
  EXPECT_NE(journal.find("\"digest_alg\":\"SHA-256\""), std::string::npos);
}

TEST_F(EmailDeliveryTest, ServerDownIsRetriedAfterBackoffThenDelivered) {
  auto sink = SmtpSink::Start(hsm_.file("sink"));
  ASSERT_TRUE(sink);
  int port = sink->port();
  sink->Stop();
  auto worker = MakeWorker(port);
  ASSERT_TRUE(worker);
  Submitted sub = SubmitByMail();
  ASSERT_TRUE(worker->RunOnce().has_value());
  storage::DeliveryState st = StateOf(sub.id);
  EXPECT_EQ(st.state, storage::JobState::kQueued);
  EXPECT_EQ(st.attempts, 1);
  EXPECT_NE(st.last_error.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << st.last_error;
  EXPECT_EQ(st.next_attempt_at, clock_.now + 1000);  // base backoff, full jitter at its max

  sink = SmtpSink::Start(hsm_.file("sink"), port);
  ASSERT_TRUE(sink);
  // Not due yet: nothing is sent.
  ASSERT_TRUE(worker->RunOnce().has_value());
  EXPECT_TRUE(sink->Messages().empty());
  clock_.now += 1000;
  ASSERT_TRUE(worker->RunOnce().has_value());
  st = StateOf(sub.id);
  EXPECT_EQ(st.state, storage::JobState::kDelivered) << st.last_error;
  EXPECT_EQ(st.attempts, 2);
  auto msgs = sink->Messages();
  ASSERT_EQ(msgs.size(), 1u);
  ExpectVerifiedMail(msgs[0], sub);
}

TEST_F(EmailDeliveryTest, PermanentRefusalIsFinalAndTemporaryIsRetried) {
  auto sink = SmtpSink::Start(hsm_.file("sink"));
  ASSERT_TRUE(sink);
  auto worker = MakeWorker(sink->port());
  ASSERT_TRUE(worker);
  sink->SetReply("451 4.3.0 mailbox busy");
  Submitted sub = SubmitByMail();
  ASSERT_TRUE(worker->RunOnce().has_value());
  EXPECT_EQ(StateOf(sub.id).state, storage::JobState::kQueued);
  EXPECT_NE(StateOf(sub.id).last_error.find("451 4.3.0 mailbox busy"), std::string::npos);
  sink->SetReply("550 5.1.1 no such user");
  clock_.now += 10'000;
  ASSERT_TRUE(worker->RunOnce().has_value());
  storage::DeliveryState st = StateOf(sub.id);
  EXPECT_EQ(st.state, storage::JobState::kRefused);
  EXPECT_NE(st.last_error.find("550 5.1.1 no such user"), std::string::npos) << st.last_error;
  EXPECT_TRUE(sink->Messages().empty());
}

TEST_F(EmailDeliveryTest, UnionWithoutAddressWaitsWithTheReason) {
  auto sink = SmtpSink::Start(hsm_.file("sink"));
  ASSERT_TRUE(sink);
  auto worker = MakeWorker(sink->port());
  ASSERT_TRUE(worker);
  Submitted sub = SubmitByMail({"cd-d"});
  ASSERT_TRUE(worker->RunOnce().has_value());
  storage::DeliveryState st = StateOf(sub.id, "cd-d");
  EXPECT_EQ(st.state, storage::JobState::kQueued);
  EXPECT_NE(st.last_error.find("no email for union cd-d"), std::string::npos) << st.last_error;
  EXPECT_TRUE(sink->Messages().empty());
}

}  // namespace
}  // namespace sealpost::daemon
