// daemon/delivery: the worker's logic with a real Exchange (archive, outbox,
// bundles, software seals), real receipts and read notices signed by the
// recipients' seals, and a fake PeerTransport standing in for the network:
// receipt verified and archived once, the 409 consistency dance, final
// refusals vs retries, a receipt archived before a lost completion, read
// notices on both sides, the global cap on deliveries in progress. The
// real two-appliance runs are in
// tests/delivery_e2e_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/encoding.h"
#include "crypto/cades_sign.h"
#include "crypto/checkpoint.h"
#include "crypto/merkle.h"
#include "crypto/receipt.h"
#include "crypto/software_signer.h"
#include "crypto/verify.h"
#include "daemon/delivery.h"
#include "daemon/exchange.h"
#include "policies/holder.h"
#include "policies/verdict.h"
#include "storage/audit.h"
#include "storage/reader.h"
#include "tests/support/test_pki.h"
#include "tests/support/wait.h"

namespace sealpost::daemon {
namespace {

using testing::CertSha256Hex;
using testing::CertSpec;
using testing::CertToPem;
using testing::CrlToPem;
using testing::Issued;
using testing::SpkiSha256Hex;
using testing::TempDir;
using testing::TestCa;
using testing::WriteTestFile;

class FakeClock final : public storage::OutboxClock {
 public:
  int64_t NowMillis() override { return now; }
  int64_t now = 1'800'000'000'000;
};

class ZeroRandom final : public storage::OutboxRandom {
 public:
  uint64_t UniformUpTo(uint64_t) override { return 0; }
};

struct Call {
  std::string endpoint, path, content_type, body, file;
  client::Headers headers;
};

// A transport for the threaded worker: holds every call until Release(),
// counts the calls in progress, answers from a table made beforehand
// (bundle path + endpoint -> response).
class GateTransport final : public PeerTransport {
 public:
  explicit GateTransport(std::map<std::string, client::Response> answers)
      : answers_(std::move(answers)) {}
  Result<client::Response> Post(const std::string& endpoint, const std::string&,
                                const std::string&, const std::string&,
                                const std::string& file_path, const client::Headers&) override {
    std::unique_lock lock(mu_);
    ++calls_;
    max_in_flight_ = std::max(max_in_flight_, ++in_flight_);
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
    --in_flight_;
    auto it = answers_.find(file_path + " " + endpoint);
    if (it == answers_.end()) return Err(Status::Unavailable("no answer for " + endpoint));
    return it->second;
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  // Waits up to 10 s until `n` calls are in progress.
  bool WaitInFlight(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return in_flight_ >= n; });
  }
  int calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  int max_in_flight() {
    std::lock_guard lock(mu_);
    return max_in_flight_;
  }

 private:
  std::map<std::string, client::Response> answers_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  int in_flight_ = 0, max_in_flight_ = 0, calls_ = 0;
};

class FakeTransport final : public PeerTransport {
 public:
  using Handler = std::function<Result<client::Response>(const Call&)>;
  explicit FakeTransport(Handler* h, std::vector<Call>* calls) : handler_(h), calls_(calls) {}
  Result<client::Response> Post(const std::string& endpoint, const std::string& path,
                                const std::string& content_type, const std::string& body,
                                const std::string& file_path,
                                const client::Headers& headers) override {
    Call c{endpoint, path, content_type, body, file_path, headers};
    calls_->push_back(c);
    return (*handler_)(c);
  }

 private:
  Handler* handler_;
  std::vector<Call>* calls_;
};

client::Response Json(int status, std::string body) {
  client::Response r;
  r.status = status;
  r.content_type = status == 200 ? "application/json" : "application/problem+json";
  r.body = std::move(body);
  return r;
}

client::Response ProblemResponse(int status, const std::string& slug, const std::string& detail,
                                 const std::string& extra = "") {
  return Json(status, "{\"type\":\"https://sealpost.invalid/problems/" + slug +
                          "\",\"title\":\"" + slug + "\",\"status\":" + std::to_string(status) +
                          ",\"detail\":\"" + detail + "\"" + extra + "}");
}

struct Seal {
  std::unique_ptr<crypto::SoftwareKeySigner> signer;
  X509Ptr cert;
  EvpPkeyPtr key;  // another reference to the signer's key
};

class DeliveryWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Delivery Test CA/O=Test/C=VN"));
    district_ = MakeSeal("/CN=Con dấu LĐLĐ Thử/O=LĐLĐ Thử/C=VN", "seal");
    seal_a_ = MakeSeal("/CN=Con dấu CĐ A/O=CĐ A/C=VN", "seal-a");
    seal_b_ = MakeSeal("/CN=Con dấu CĐ B/O=CĐ B/C=VN", "seal-b");
    CertSpec chair_spec;
    chair_spec.subject = "/CN=Nguyễn Văn Chủ Tịch/O=LĐLĐ Thử/C=VN";
    Issued chair = ca_->Issue(chair_spec);
    std::string chair_spki = SpkiSha256Hex(chair.cert.get());
    auto c = crypto::SoftwareKeySigner::CreateForTesting("chair", std::move(chair.key),
                                                         std::move(chair.cert));
    ASSERT_TRUE(c.has_value());
    chair_ = std::move(*c);

    WriteTestFile(tmp_.file("ca.pem"), CertToPem(ca_->cert()));
    std::string policy =
        "federation: {id: thu, name: \"Liên đoàn thử\"}\n"
        "trust:\n  anchors:\n    - {id: test-ca, name: \"Test CA\", sha256: \"" +
        CertSha256Hex(ca_->cert()) +
        "\"}\n"
        "unions:\n"
        "  - {id: ldld-thu, name: \"LĐLĐ Thử\", code: \"LĐLĐ-T\", level: district,\n"
        "     endpoint: \"https://127.0.0.1:7001\",\n"
        "     seal: {spki_sha256: \"" + SpkiSha256Hex(district_.cert.get()) + "\"}}\n"
        "  - {id: cd-a, name: \"Công đoàn A\", level: grassroots, parent: ldld-thu,\n"
        "     endpoint: \"https://127.0.0.1:7002\",\n"
        "     seal: {spki_sha256: \"" + SpkiSha256Hex(seal_a_.cert.get()) + "\"}}\n"
        "  - {id: cd-b, name: \"Công đoàn B\", level: grassroots, parent: ldld-thu,\n"
        "     endpoint: \"https://127.0.0.1:7003\",\n"
        "     seal: {spki_sha256: \"" + SpkiSha256Hex(seal_b_.cert.get()) + "\"}}\n" +
        testing::ChairAndDirectiveYaml(chair_spki);
    WriteTestFile(tmp_.file("policy.yaml"), policy);
    auto holder = policies::PolicyHolder::Open({tmp_.file("policy.yaml")});
    ASSERT_TRUE(holder.has_value()) << holder.error().message();
    policy_ = std::move(*holder);
    auto v = testing::VerifierForAnchor(tmp_.file("ca.pem"));
    ASSERT_TRUE(v.has_value()) << v.error().message();
    verifier_.emplace(std::move(*v));
    sender_ = OpenExchange("ldld-thu", district_, "sender");
    ASSERT_TRUE(sender_);
    worker_ = MakeWorker("ldld-thu", sender_.get(), &handler_, &calls_);
    ASSERT_TRUE(worker_);
    WriteTestFile(tmp_.file("directive.txt"), "Chỉ thị số 1: họp ban chấp hành ngày 5.\n");
  }

  Seal MakeSeal(const std::string& subject, const std::string& label) {
    CertSpec spec;
    spec.subject = subject;
    Issued is = ca_->Issue(spec);
    Seal s;
    s.cert.reset(X509_dup(is.cert.get()));
    EVP_PKEY_up_ref(is.key.get());
    s.key.reset(is.key.get());
    auto signer = crypto::SoftwareKeySigner::CreateForTesting(label, std::move(is.key),
                                                              std::move(is.cert));
    EXPECT_TRUE(signer.has_value());
    s.signer = std::move(*signer);
    return s;
  }

  std::unique_ptr<Exchange> OpenExchange(const std::string& union_id, Seal& seal,
                                         const std::string& dir) {
    ExchangeOptions o;
    o.union_id = union_id;
    o.state_dir = tmp_.file(dir);
    o.signer = seal.signer.get();
    o.seal_key = crypto::KeyRef{seal.signer.get() == district_.signer.get() ? "seal"
                                : seal.signer.get() == seal_a_.signer.get() ? "seal-a"
                                                                            : "seal-b"};
    o.policy = policy_.get();
    o.verifier = &*verifier_;
    o.outbox.clock = &clock_;
    o.outbox.random = &random_;
    o.outbox.lease_millis = 10'000;
    auto ex = Exchange::Create(o);
    EXPECT_TRUE(ex.has_value()) << ex.error().message();
    return ex ? std::move(*ex) : nullptr;
  }

  std::unique_ptr<DeliveryWorker> MakeWorker(const std::string& union_id, Exchange* ex,
                                             FakeTransport::Handler* handler,
                                             std::vector<Call>* calls,
                                             const SharedTrust* trust = nullptr,
                                             std::unique_ptr<PeerTransport> transport = nullptr,
                                             int threads = 32) {
    DeliveryOptions d;
    d.union_id = union_id;
    d.policy = policy_.get();
    d.trust = trust;
    d.trust_anchor_files = {tmp_.file("ca.pem")};
    d.threads = threads;
    d.poll_millis = 5;
    d.keep_delivered_millis = keep_delivered_millis_;
    d.prune_interval_millis = 10;
    if (!transport) transport = std::make_unique<FakeTransport>(handler, calls);
    auto w = DeliveryWorker::Create(d, [ex]() -> Result<Exchange*> { return ex; },
                                    std::move(transport));
    EXPECT_TRUE(w.has_value()) << w.error().message();
    return w ? std::move(*w) : nullptr;
  }

  Submitted SubmitDirective() {
    SubmitRequest r;
    r.content_path = tmp_.file("directive.txt");
    r.content_name = "Chỉ thị 1.txt";
    r.media_type = "text/plain";
    r.type = "directive";
    r.subject = "Họp ban chấp hành";
    r.recipients = {"cd-a", "cd-b"};
    auto der = crypto::SignFile(*chair_, crypto::KeyRef{"chair"}, r.content_path, {});
    EXPECT_TRUE(der.has_value());
    r.officer_signature = der.value_or("");
    auto sub = sender_->Submit(r);
    EXPECT_TRUE(sub.has_value()) << (sub ? "" : sub.error().detail_en);
    return sub.value_or(Submitted{});
  }

  // The receipt `union_id` would answer with, signed by `seal`.
  // Dated `received_at` (0: now), which is also its CMS signing-time.
  client::Response ReceiptFrom(const std::string& union_id, Seal& seal, const std::string& label,
                               const std::string& doc, const std::string& sha,
                               std::time_t received_at = 0) {
    crypto::Checkpoint cp;
    cp.origin = union_id + "/archive";
    cp.size = 7;
    cp.root.fill(0x42);
    auto body = crypto::SerializeCheckpoint(cp);
    EXPECT_TRUE(body.has_value());
    auto sig = crypto::SignCheckpoint(*seal.signer, crypto::KeyRef{label}, *body);
    EXPECT_TRUE(sig.has_value());
    crypto::DeliveryReceipt r;
    r.document_id = doc;
    r.content_sha256 = sha;
    r.recipient = union_id;
    r.received_at = received_at != 0 ? received_at : std::time(nullptr);
    r.checkpoint = *body;
    r.checkpoint_signature = *sig;
    auto signed_receipt =
        crypto::IssueDeliveryReceipt(*seal.signer, crypto::KeyRef{label}, r, std::nullopt);
    EXPECT_TRUE(signed_receipt.has_value()) << signed_receipt.error().message();
    return Json(200, "{\"receipt\":\"" + Base64Encode(signed_receipt->json) +
                         "\",\"signature\":\"" + Base64Encode(signed_receipt->signature) + "\"}");
  }

  // Answers each recipient with its own valid receipt.
  void AnswerWithReceipts(const Submitted& sub) {
    handler_ = [this, sub](const Call& c) -> Result<client::Response> {
      if (c.endpoint == "https://127.0.0.1:7002") {
        return ReceiptFrom("cd-a", seal_a_, "seal-a", sub.id, sub.content_sha256);
      }
      return ReceiptFrom("cd-b", seal_b_, "seal-b", sub.id, sub.content_sha256);
    };
  }

  std::vector<storage::Manifest> Entries(Exchange& ex, storage::EntryKind kind) {
    std::vector<storage::Manifest> out;
    auto reader = storage::ArchiveReader::Open(ex.archive_dir());
    EXPECT_TRUE(reader.has_value());
    if (!reader) return out;
    for (uint64_t seq = 1; seq <= (*reader)->size(); ++seq) {
      auto m = (*reader)->ReadManifest(seq);
      EXPECT_TRUE(m.has_value());
      if (m && m->kind == kind) out.push_back(*m);
    }
    return out;
  }

  // The archive audits clean (storage/audit.h, as `sealpost audit` does).
  void ExpectAuditClean(Exchange& ex) {
    storage::AuditOptions o;
    o.trust_files = {tmp_.file("ca.pem")};
    auto report = storage::Audit(ex.archive_dir(), o);
    ASSERT_TRUE(report.has_value()) << report.error().message();
    for (const storage::AuditProblem& p : report->problems) {
      ADD_FAILURE() << "entry " << p.seq << ": " << p.code << " " << p.detail;
    }
  }

  storage::DeliveryState StateOf(const std::string& doc, const std::string& rcpt,
                                 storage::Channel ch = storage::Channel::kAppliance) {
    auto s = sender_->outbox().State({doc, rcpt, ch});
    EXPECT_TRUE(s.has_value()) << s.error().message();
    return s.value_or(storage::DeliveryState{});
  }

  TempDir tmp_;
  FakeClock clock_;
  ZeroRandom random_;
  std::unique_ptr<TestCa> ca_;
  Seal district_, seal_a_, seal_b_;
  std::unique_ptr<crypto::SoftwareKeySigner> chair_;
  std::unique_ptr<policies::PolicyHolder> policy_;
  std::optional<crypto::Verifier> verifier_;
  std::unique_ptr<Exchange> sender_;
  FakeTransport::Handler handler_;
  std::vector<Call> calls_;
  std::unique_ptr<DeliveryWorker> worker_;
  int64_t keep_delivered_millis_ = 30LL * 86'400'000;  // as in DeliveryOptions
};

TEST_F(DeliveryWorkerTest, DeliverVerifiesAndArchivesEachReceiptOnce) {
  Submitted sub = SubmitDirective();
  AnswerWithReceipts(sub);
  auto n = worker_->RunOnce();
  ASSERT_TRUE(n.has_value()) << n.error().message();
  EXPECT_EQ(*n, 2u);
  ASSERT_EQ(calls_.size(), 2u);
  for (const Call& c : calls_) {
    EXPECT_EQ(c.path, "/api/v1/inbox");
    EXPECT_EQ(c.content_type, "application/vnd.etsi.asic-s+zip");
    EXPECT_EQ(c.file, sub.bundle_path);
    EXPECT_TRUE(c.headers.empty());
  }
  auto receipts = Entries(*sender_, storage::EntryKind::kDeliveryReceipt);
  ASSERT_EQ(receipts.size(), 2u);
  for (const storage::Manifest& m : receipts) {
    EXPECT_EQ(m.Field("id"), sub.id);
    EXPECT_EQ(m.Field("receipt_type"), "delivery-receipt");
    EXPECT_EQ(m.refers_to, sub.seq);
    ASSERT_EQ(m.files.size(), 2u);
    EXPECT_EQ(m.files[0].name, "receipt.json");
    EXPECT_EQ(m.files[1].name, "receipt.json.p7s");
    storage::DeliveryState st = StateOf(sub.id, m.Field("recipient"));
    EXPECT_EQ(st.state, storage::JobState::kDelivered);
    EXPECT_EQ(st.receipt_ref, std::to_string(m.seq));
  }
  // Both attempts are archived in one delivery-attempts entry.
  auto attempts = Entries(*sender_, storage::EntryKind::kDeliveryAttempts);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].Field("count"), "2");
  auto again = worker_->RunOnce();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, 0u);
  EXPECT_EQ(calls_.size(), 2u);
  EXPECT_EQ(Entries(*sender_, storage::EntryKind::kDeliveryAttempts).size(), 1u);
  DeliveryStatus s = worker_->Snapshot();
  EXPECT_EQ(s.delivered, 2u);
  EXPECT_EQ(s.outbox.delivered, 2);
  ExpectAuditClean(*sender_);
}

TEST_F(DeliveryWorkerTest, ReceiptArchivedBeforeLostCompletionIsNotArchivedAgain) {
  Submitted sub = SubmitDirective();
  // The receipt arrives, but the lease ran out meanwhile (as if the worker
  // had died after archiving): the outbox refuses the completion.
  handler_ = [&](const Call& c) -> Result<client::Response> {
    clock_.now += 20'000;
    if (c.endpoint == "https://127.0.0.1:7002") {
      return ReceiptFrom("cd-a", seal_a_, "seal-a", sub.id, sub.content_sha256);
    }
    return ReceiptFrom("cd-b", seal_b_, "seal-b", sub.id, sub.content_sha256);
  };
  ASSERT_TRUE(worker_->RunOnce(false).has_value());
  EXPECT_EQ(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).size(), 2u);
  EXPECT_NE(StateOf(sub.id, "cd-a").state, storage::JobState::kDelivered);
  // A fresh worker (a restart) leases the jobs again: it finds the receipts
  // in the archive, sends nothing and archives nothing new.
  size_t calls_before = calls_.size();
  worker_ = MakeWorker("ldld-thu", sender_.get(), &handler_, &calls_);
  auto n = worker_->RunOnce();
  ASSERT_TRUE(n.has_value()) << n.error().message();
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(calls_.size(), calls_before);
  EXPECT_EQ(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).size(), 2u);
  EXPECT_EQ(StateOf(sub.id, "cd-a").state, storage::JobState::kDelivered);
  EXPECT_EQ(StateOf(sub.id, "cd-b").state, storage::JobState::kDelivered);
  EXPECT_TRUE(sender_->outbox().CheckConsistency().ok());
}

TEST_F(DeliveryWorkerTest, ConsistencyProofRequiredIsAnsweredWithAProofOnce) {
  Submitted sub = SubmitDirective();
  // Grow the log so a proof from 1 to the current size is not empty.
  Submitted sub2 = SubmitDirective();
  const uint64_t size = sender_->archive().size();
  ASSERT_GE(size, 3u);
  std::string proof_header;
  handler_ = [&](const Call& c) -> Result<client::Response> {
    if (c.endpoint != "https://127.0.0.1:7002") return Err(Status::Unavailable("cd-b is down"));
    if (c.headers.empty()) {
      return ProblemResponse(409, "consistency-proof-required", "prove it",
                             ",\"from_size\":1,\"to_size\":" + std::to_string(size));
    }
    proof_header = c.headers[0].second;
    EXPECT_EQ(c.headers[0].first, "Sealpost-Consistency-Proof");
    std::string doc = c.file == sub.bundle_path ? sub.id : sub2.id;
    return ReceiptFrom("cd-a", seal_a_, "seal-a", doc, sub.content_sha256);
  };
  ASSERT_TRUE(worker_->RunOnce().has_value());
  EXPECT_EQ(StateOf(sub.id, "cd-a").state, storage::JobState::kDelivered);
  EXPECT_EQ(StateOf(sub2.id, "cd-a").state, storage::JobState::kDelivered);
  // "<from>:<to>:<base64 of the 32-byte hashes>", and the hashes are the
  // RFC 6962 proof between those sizes of our archive.
  std::string prefix = "1:" + std::to_string(size) + ":";
  ASSERT_EQ(proof_header.rfind(prefix, 0), 0u) << proof_header;
  auto raw = Base64Decode(proof_header.substr(prefix.size()));
  ASSERT_TRUE(raw.has_value());
  auto expected = sender_->archive().ConsistencyProof(1, size);
  ASSERT_TRUE(expected.has_value());
  ASSERT_EQ(raw->size(), expected->size() * 32);
  EXPECT_GT(raw->size(), 0u);
  for (size_t i = 0; i < expected->size(); ++i) {
    EXPECT_EQ(raw->substr(i * 32, 32),
              std::string(reinterpret_cast<const char*>((*expected)[i].data()), 32));
  }
  // cd-b was down: queued again with the reason, nothing archived for it.
  storage::DeliveryState b = StateOf(sub.id, "cd-b");
  EXPECT_EQ(b.state, storage::JobState::kQueued);
  EXPECT_NE(b.last_error.find("cd-b is down"), std::string::npos) << b.last_error;
}

TEST_F(DeliveryWorkerTest, FinalRefusalsAreRefusedAndOtherFailuresRetried) {
  Submitted sub = SubmitDirective();
  handler_ = [&](const Call& c) -> Result<client::Response> {
    if (c.endpoint == "https://127.0.0.1:7002") {
      return ProblemResponse(403, "policy-refused", "cd-a does not take directives from you");
    }
    return ProblemResponse(503, "signer-unavailable", "seal out");
  };
  ASSERT_TRUE(worker_->RunOnce().has_value());
  storage::DeliveryState a = StateOf(sub.id, "cd-a");
  EXPECT_EQ(a.state, storage::JobState::kRefused);
  EXPECT_NE(a.last_error.find("cd-a does not take directives from you"), std::string::npos)
      << a.last_error;
  storage::DeliveryState b = StateOf(sub.id, "cd-b");
  EXPECT_EQ(b.state, storage::JobState::kQueued);
  EXPECT_NE(b.last_error.find("503"), std::string::npos) << b.last_error;
  EXPECT_TRUE(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).empty());

  // A 422 is final too; a 200 whose receipt is signed by another union's
  // seal is not accepted (retried, nothing archived).
  Submitted sub2 = SubmitDirective();
  handler_ = [&](const Call& c) -> Result<client::Response> {
    if (c.endpoint == "https://127.0.0.1:7002") {
      return ProblemResponse(422, "bundle-invalid", "manifest does not match");
    }
    return ReceiptFrom("cd-b", seal_a_, "seal-a", c.file == sub.bundle_path ? sub.id : sub2.id,
                       sub.content_sha256);
  };
  ASSERT_TRUE(worker_->RunOnce().has_value());
  EXPECT_EQ(StateOf(sub2.id, "cd-a").state, storage::JobState::kRefused);
  storage::DeliveryState b2 = StateOf(sub2.id, "cd-b");
  EXPECT_EQ(b2.state, storage::JobState::kQueued);
  EXPECT_NE(b2.last_error.find("not the seal of cd-b"), std::string::npos) << b2.last_error;
  EXPECT_TRUE(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).empty());

  // cd-b recovers: delivered on the next pass.
  AnswerWithReceipts(sub);
  ASSERT_TRUE(worker_->RunOnce().has_value());
  EXPECT_EQ(StateOf(sub.id, "cd-b").state, storage::JobState::kDelivered);
  // Every attempt is in the archive: 2 in the first pass, 3 in the second
  // (sub/cd-b, sub2/cd-a, sub2/cd-b), 2 in the last (sub/cd-b; sub2/cd-b gets
  // a receipt for another document and stays queued).
  size_t archived = 0;
  for (const storage::Manifest& m : Entries(*sender_, storage::EntryKind::kDeliveryAttempts)) {
    archived += std::stoul(m.Field("count"));
  }
  EXPECT_EQ(archived, 7u);
}

// A recipient whose appliance cannot be reached (connection refused) is
// marked down: its other jobs, old and new, are deferred (not attempted, not
// recorded), one job probes it per backoff period, and once it answers the
// backlog is delivered, each document once.
TEST_F(DeliveryWorkerTest, UnreachableRecipientIsProbedOncePerBackoffNotOncePerJob) {
  std::map<std::string, Submitted> by_bundle;
  bool b_up = false;
  std::map<std::string, int> b_calls_after_up;  // bundle -> calls once cd-b is up
  handler_ = [&](const Call& c) -> Result<client::Response> {
    const Submitted& sub = by_bundle.at(c.file);
    if (c.endpoint == "https://127.0.0.1:7002") {
      return ReceiptFrom("cd-a", seal_a_, "seal-a", sub.id, sub.content_sha256);
    }
    if (!b_up) return Err(Status::Unavailable("POST /api/v1/inbox: Connection refused"));
    ++b_calls_after_up[c.file];
    return ReceiptFrom("cd-b", seal_b_, "seal-b", sub.id, sub.content_sha256);
  };
  auto b_calls = [&] {
    return std::count_if(calls_.begin(), calls_.end(),
                         [](const Call& c) { return c.endpoint == "https://127.0.0.1:7003"; });
  };
  std::vector<Submitted> subs;
  for (int i = 0; i < 3; ++i) {
    subs.push_back(SubmitDirective());
    by_bundle[subs.back().bundle_path] = subs.back();
  }
  // The first pass tries all three (leased before cd-b was known down).
  ASSERT_TRUE(worker_->RunOnce().has_value());
  EXPECT_EQ(b_calls(), 3);
  for (int i = 0; i < 3; ++i) {
    subs.push_back(SubmitDirective());
    by_bundle[subs.back().bundle_path] = subs.back();
  }
  // cd-a gets the new ones; nothing goes to cd-b while it is down.
  ASSERT_TRUE(worker_->RunOnce().has_value());
  EXPECT_EQ(b_calls(), 3);
  for (const Submitted& sub : subs) {
    EXPECT_EQ(StateOf(sub.id, "cd-a").state, storage::JobState::kDelivered);
  }
  EXPECT_EQ(StateOf(subs[5].id, "cd-b").attempts, 0);
  DeliveryStatus st = worker_->Snapshot();
  EXPECT_EQ(st.unreachable, 3u);
  EXPECT_EQ(st.outbox.peers_down, 1);
  EXPECT_EQ(st.outbox.deferred, 6);
  EXPECT_NE(DeliveryHealthJson(st).find("\"deferred\":6,\"peers_down\":1"), std::string::npos)
      << DeliveryHealthJson(st);
  EXPECT_NE(DeliveryMetricsText(st).find("sealpost_outbox_deferred_jobs 6"), std::string::npos);
  // The probe time (half the first 1 s window; the random source draws 0):
  // one attempt, which fails again.
  clock_.now += 499;
  ASSERT_TRUE(worker_->RunOnce().has_value());
  EXPECT_EQ(b_calls(), 3);
  clock_.now += 1;
  ASSERT_TRUE(worker_->RunOnce().has_value());
  EXPECT_EQ(b_calls(), 4);
  ASSERT_TRUE(worker_->RunOnce().has_value());
  EXPECT_EQ(b_calls(), 4);
  // cd-b is back: the next probe reaches it and the backlog drains.
  b_up = true;
  clock_.now += 1'000;
  for (int pass = 0; pass < 6; ++pass) ASSERT_TRUE(worker_->RunOnce().has_value());
  for (const Submitted& sub : subs) {
    EXPECT_EQ(StateOf(sub.id, "cd-b").state, storage::JobState::kDelivered) << sub.id;
    EXPECT_EQ(b_calls_after_up[sub.bundle_path], 1) << sub.id;
  }
  auto receipts = Entries(*sender_, storage::EntryKind::kDeliveryReceipt);
  EXPECT_EQ(receipts.size(), 12u);
  // Archived attempts: 6 to cd-a, 4 failed ones and 6 deliveries to cd-b;
  // the deferrals are not attempts.
  size_t archived = 0;
  for (const storage::Manifest& m : Entries(*sender_, storage::EntryKind::kDeliveryAttempts)) {
    archived += std::stoul(m.Field("count"));
  }
  EXPECT_EQ(archived, 16u);
  EXPECT_EQ(worker_->Snapshot().outbox.peers_down, 0);
  EXPECT_TRUE(sender_->outbox().CheckConsistency().ok());
  ExpectAuditClean(*sender_);
}

TEST_F(DeliveryWorkerTest, ReadNoticeQueuedOnceByReaderAndRecordedBySender) {
  Submitted sub = SubmitDirective();
  AnswerWithReceipts(sub);
  ASSERT_TRUE(worker_->RunOnce().has_value());

  // The reader's appliance (cd-a) with the document received.
  auto reader = OpenExchange("cd-a", seal_a_, "reader");
  ASSERT_TRUE(reader);
  storage::EntryInput received;
  received.kind = storage::EntryKind::kDocumentReceived;
  received.fields = {{"id", sub.id}, {"issuer", "ldld-thu"}, {"type", "directive"}};
  received.files = {{"content", "x"}};
  ASSERT_TRUE(reader->archive().Append(received).has_value());
  FakeTransport::Handler reader_handler;
  std::vector<Call> reader_calls;
  auto reader_worker = MakeWorker("cd-a", reader.get(), &reader_handler, &reader_calls);
  ASSERT_TRUE(reader_worker);

  EXPECT_EQ(reader_worker->NoteOpened("no-such-document", "clerk").code(), Code::kNotFound);
  ASSERT_TRUE(reader_worker->NoteOpened(sub.id, "clerk").ok());
  ASSERT_TRUE(reader_worker->NoteOpened(sub.id, "officer").ok());  // not the first open
  auto notices = Entries(*reader, storage::EntryKind::kDeliveryReceipt);
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0].Field("receipt_type"), "read-notice");
  EXPECT_EQ(notices[0].Field("reader_role"), "clerk");

  // Delivered to the sender's worker as its peer route would.
  reader_handler = [&](const Call& c) -> Result<client::Response> {
    EXPECT_EQ(c.endpoint, "https://127.0.0.1:7001");
    EXPECT_EQ(c.path, "/api/v1/notices");
    auto r = worker_->ReceiveNotice("cd-a", c.body);
    if (!r) return ProblemResponse(r.error().status, r.error().slug, r.error().detail_en);
    return Json(200, *r);
  };
  ASSERT_TRUE(reader_worker->RunOnce().has_value());
  ASSERT_EQ(reader_calls.size(), 1u);
  auto job = reader->outbox().State({sub.id, "ldld-thu", storage::Channel::kNotice});
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->state, storage::JobState::kDelivered);
  storage::DeliveryState a = StateOf(sub.id, "cd-a");
  EXPECT_EQ(a.state, storage::JobState::kRead);
  EXPECT_GT(a.read_at, 0);
  EXPECT_EQ(StateOf(sub.id, "cd-b").state, storage::JobState::kDelivered);

  // The sender archived it once; a repeat is 200 and archives nothing.
  auto count_notices = [&] {
    size_t n = 0;
    for (const storage::Manifest& m : Entries(*sender_, storage::EntryKind::kDeliveryReceipt)) {
      if (m.Field("receipt_type") == "read-notice") {
        ++n;
        EXPECT_EQ(m.refers_to, sub.seq);
        EXPECT_EQ(m.Field("recipient"), "cd-a");
      }
    }
    return n;
  };
  EXPECT_EQ(count_notices(), 1u);
  auto repeat = worker_->ReceiveNotice("cd-a", reader_calls[0].body);
  ASSERT_TRUE(repeat.has_value());
  EXPECT_EQ(count_notices(), 1u);

  // The same notice presented by cd-b (its seal is not the signer, and the
  // notice names cd-a): 422. Garbage: 422. Unknown document: 404.
  auto wrong = worker_->ReceiveNotice("cd-b", reader_calls[0].body);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().status, 422);
  auto garbage = worker_->ReceiveNotice("cd-a", "{\"notice\":\"eA==\",\"signature\":\"eA==\"}");
  ASSERT_FALSE(garbage.has_value());
  EXPECT_EQ(garbage.error().status, 422);
  crypto::ReadNotice other{"other-document", "cd-a", "clerk", 1'800'000'000};
  auto signed_other = crypto::SignReadNotice(*seal_a_.signer, crypto::KeyRef{"seal-a"}, other);
  ASSERT_TRUE(signed_other.has_value());
  auto unknown = worker_->ReceiveNotice(
      "cd-a", "{\"notice\":\"" + Base64Encode(signed_other->json) + "\",\"signature\":\"" +
                  Base64Encode(signed_other->signature) + "\"}");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().status, 404);
  EXPECT_EQ(count_notices(), 1u);
  ExpectAuditClean(*sender_);
}

// Issue 5: a receipt or read notice is judged with the daemon's trust
// (anchors + CRLs) at its time; a revoked or expired seal is refused with
// the reason, nothing archived.
TEST_F(DeliveryWorkerTest, ReceiptOrNoticeByRevokedOrExpiredSealIsRefusedWithTheReason) {
  const long serial_a = ASN1_INTEGER_get(X509_get0_serialNumber(seal_a_.cert.get()));
  WriteTestFile(tmp_.file("revoked-a.crl.pem"), CrlToPem(ca_->MakeCrl({serial_a}).get()));
  auto trust = SharedTrust::Create({tmp_.file("ca.pem")}, {tmp_.file("revoked-a.crl.pem")});
  ASSERT_TRUE(trust.has_value()) << trust.error().message();
  worker_ = MakeWorker("ldld-thu", sender_.get(), &handler_, &calls_, trust->get());
  ASSERT_TRUE(worker_);

  // cd-b answers with a receipt signed by its own key under a certificate
  // (same SPKI as the registry names) that expired before the receipt's
  // time. Our signers refuse an expired certificate: plain CMS_sign here.
  CertSpec old_spec;
  old_spec.subject = "/CN=Con dấu CĐ B/O=CĐ B/C=VN";
  old_spec.not_before_offset = -7200;
  old_spec.not_after_offset = -60;
  X509Ptr old_b = ca_->IssueFor(old_spec, seal_b_.key.get());
  ASSERT_NE(old_b, nullptr);
  auto sign_expired = [&](const std::string& data) {
    BioPtr in(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    CmsPtr cms(CMS_sign(old_b.get(), seal_b_.key.get(), nullptr, in.get(),
                        CMS_DETACHED | CMS_BINARY));
    EXPECT_NE(cms, nullptr);
    BioPtr out(BIO_new(BIO_s_mem()));
    EXPECT_EQ(i2d_CMS_bio(out.get(), cms.get()), 1);
    char* p = nullptr;
    long n = BIO_get_mem_data(out.get(), &p);
    return std::string(p, static_cast<size_t>(n));
  };
  auto expired_receipt = [&](const std::string& doc, const std::string& sha) {
    crypto::Checkpoint cp;
    cp.origin = "cd-b/archive";
    cp.size = 7;
    cp.root.fill(0x42);
    auto body = crypto::SerializeCheckpoint(cp);
    EXPECT_TRUE(body.has_value());
    crypto::DeliveryReceipt r;
    r.document_id = doc;
    r.content_sha256 = sha;
    r.recipient = "cd-b";
    r.received_at = std::time(nullptr);
    r.checkpoint = *body;
    r.checkpoint_signature = sign_expired(*body);
    auto json = crypto::SerializeDeliveryReceipt(r);
    EXPECT_TRUE(json.has_value());
    return Json(200, "{\"receipt\":\"" + Base64Encode(*json) + "\",\"signature\":\"" +
                         Base64Encode(sign_expired(*json)) + "\"}");
  };

  Submitted sub = SubmitDirective();
  handler_ = [&](const Call& c) -> Result<client::Response> {
    if (c.endpoint == "https://127.0.0.1:7002") {
      return ReceiptFrom("cd-a", seal_a_, "seal-a", sub.id, sub.content_sha256);
    }
    return expired_receipt(sub.id, sub.content_sha256);
  };
  ASSERT_TRUE(worker_->RunOnce().has_value());
  storage::DeliveryState a = StateOf(sub.id, "cd-a");
  EXPECT_EQ(a.state, storage::JobState::kRefused);
  EXPECT_NE(a.last_error.find("REVOKED"), std::string::npos) << a.last_error;
  EXPECT_NE(a.last_error.find("of cd-a"), std::string::npos) << a.last_error;
  storage::DeliveryState b = StateOf(sub.id, "cd-b");
  EXPECT_EQ(b.state, storage::JobState::kRefused);
  EXPECT_NE(b.last_error.find("OUT_OF_BOUNDS_NO_POE"), std::string::npos) << b.last_error;
  EXPECT_NE(b.last_error.find("expired"), std::string::npos) << b.last_error;
  EXPECT_TRUE(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).empty());

  // The same seals on read notices: 422 naming the reason; nothing archived.
  auto notice_body = [](const std::string& json, const std::string& signature) {
    return "{\"notice\":\"" + Base64Encode(json) + "\",\"signature\":\"" +
           Base64Encode(signature) + "\"}";
  };
  crypto::ReadNotice na{sub.id, "cd-a", "clerk", std::time(nullptr)};
  auto signed_a = crypto::SignReadNotice(*seal_a_.signer, crypto::KeyRef{"seal-a"}, na);
  ASSERT_TRUE(signed_a.has_value());
  auto revoked = worker_->ReceiveNotice("cd-a", notice_body(signed_a->json, signed_a->signature));
  ASSERT_FALSE(revoked.has_value());
  EXPECT_EQ(revoked.error().status, 422);
  EXPECT_NE(revoked.error().detail_en.find("REVOKED"), std::string::npos)
      << revoked.error().detail_en;
  auto nb = crypto::SerializeReadNotice({sub.id, "cd-b", "clerk", std::time(nullptr)});
  ASSERT_TRUE(nb.has_value());
  auto expired = worker_->ReceiveNotice("cd-b", notice_body(*nb, sign_expired(*nb)));
  ASSERT_FALSE(expired.has_value());
  EXPECT_EQ(expired.error().status, 422);
  EXPECT_NE(expired.error().detail_en.find("expired"), std::string::npos)
      << expired.error().detail_en;
  EXPECT_TRUE(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).empty());

  // Without the CRL (the default trust of anchors alone) cd-a's receipt of
  // a second document passes: the refusal above came from the CRL.
  worker_ = MakeWorker("ldld-thu", sender_.get(), &handler_, &calls_);
  Submitted sub2 = SubmitDirective();
  handler_ = [&](const Call&) -> Result<client::Response> {
    return ReceiptFrom("cd-a", seal_a_, "seal-a", sub2.id, sub2.content_sha256);
  };
  ASSERT_TRUE(worker_->RunOnce().has_value());
  EXPECT_EQ(StateOf(sub2.id, "cd-a").state, storage::JobState::kDelivered);
}

}  // namespace
}  // namespace sealpost::daemon

namespace sealpost::daemon {
namespace {

// Six deliveries (three directives to two unions) through a worker with two
// threads: never more than two in progress, two reached, every receipt
// archived once when the peers answer; Stop() returns with nothing leased.
TEST_F(DeliveryWorkerTest, ConcurrentDeliveriesNeverExceedTheThreadCap) {
  std::map<std::string, client::Response> answers;
  std::vector<Submitted> subs;
  for (int i = 0; i < 3; ++i) {
    Submitted sub = SubmitDirective();
    ASSERT_FALSE(sub.id.empty());
    answers[sub.bundle_path + " https://127.0.0.1:7002"] =
        ReceiptFrom("cd-a", seal_a_, "seal-a", sub.id, sub.content_sha256);
    answers[sub.bundle_path + " https://127.0.0.1:7003"] =
        ReceiptFrom("cd-b", seal_b_, "seal-b", sub.id, sub.content_sha256);
    subs.push_back(sub);
  }
  auto gate = std::make_unique<GateTransport>(answers);
  GateTransport* g = gate.get();
  auto worker = MakeWorker("ldld-thu", sender_.get(), nullptr, nullptr, nullptr, std::move(gate), 2);
  ASSERT_TRUE(worker);
  worker->Start();
  ASSERT_TRUE(g->WaitInFlight(2));
  // The dispatcher polls every 5 ms: time enough to overshoot, if it could.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(g->max_in_flight(), 2);
  EXPECT_EQ(g->calls(), 2);
  auto m = sender_->outbox().Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->delivering, 2);
  g->Release();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  size_t delivered = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    delivered = 0;
    for (const Submitted& sub : subs) {
      for (const char* r : {"cd-a", "cd-b"}) {
        if (StateOf(sub.id, r).state == storage::JobState::kDelivered) ++delivered;
      }
    }
    if (delivered == 6) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(delivered, 6u);
  worker->Stop();
  EXPECT_EQ(g->max_in_flight(), 2);
  EXPECT_EQ(g->calls(), 6);
  EXPECT_EQ(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).size(), 6u);
  m = sender_->outbox().Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->delivering, 0);
  EXPECT_EQ(m->delivered, 6);
  ExpectAuditClean(*sender_);
}

// Stop() while deliveries are in progress waits for them: they complete
// (the receipt archived, the job delivered), nothing is left leased.
TEST_F(DeliveryWorkerTest, StopLetsDeliveriesInProgressFinish) {
  Submitted sub = SubmitDirective();
  std::map<std::string, client::Response> answers;
  answers[sub.bundle_path + " https://127.0.0.1:7002"] =
      ReceiptFrom("cd-a", seal_a_, "seal-a", sub.id, sub.content_sha256);
  answers[sub.bundle_path + " https://127.0.0.1:7003"] =
      ReceiptFrom("cd-b", seal_b_, "seal-b", sub.id, sub.content_sha256);
  auto gate = std::make_unique<GateTransport>(answers);
  GateTransport* g = gate.get();
  auto worker = MakeWorker("ldld-thu", sender_.get(), nullptr, nullptr, nullptr, std::move(gate), 4);
  ASSERT_TRUE(worker);
  worker->Start();
  ASSERT_TRUE(g->WaitInFlight(2));
  std::thread stopper([&] { worker->Stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  g->Release();
  stopper.join();
  EXPECT_EQ(StateOf(sub.id, "cd-a").state, storage::JobState::kDelivered);
  EXPECT_EQ(StateOf(sub.id, "cd-b").state, storage::JobState::kDelivered);
  auto m = sender_->outbox().Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->delivering, 0);
  EXPECT_EQ(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).size(), 2u);
}

}  // namespace
}  // namespace sealpost::daemon

namespace sealpost::daemon {
namespace {

// A detached CMS over `data` by `cert`/`key` carrying `extra` certificates
// (plain CMS_sign: signing-time now).
std::string SignWithChain(X509* cert, EVP_PKEY* key, STACK_OF(X509)* extra,
                          const std::string& data) {
  BioPtr in(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  CmsPtr cms(CMS_sign(cert, key, extra, in.get(), CMS_DETACHED | CMS_BINARY));
  EXPECT_NE(cms, nullptr);
  if (!cms) return "";
  BioPtr out(BIO_new(BIO_s_mem()));
  EXPECT_EQ(i2d_CMS_bio(out.get(), cms.get()), 1);
  char* p = nullptr;
  long n = BIO_get_mem_data(out.get(), &p);
  return std::string(p, static_cast<size_t>(n));
}

// cd-a's receipt signed under a seal certificate (the registry's key) issued
// by an intermediate CA that is not a trust anchor: the intermediate comes
// only from the receipt's CMS. Used as an untrusted intermediate, the path
// reaches the anchor and the receipt is archived; an "intermediate" that is
// a self-signed CA of its own is never taken as an anchor.
TEST_F(DeliveryWorkerTest, ReceiptSealUnderAnIntermediateValidatesWithTheEmbeddedCertificates) {
  TestCa inter = ca_->CreateIntermediate("/CN=CA tỉnh Thử/O=Test/C=VN");
  CertSpec spec;
  spec.subject = "/CN=Con dấu CĐ A/O=CĐ A/C=VN";
  X509Ptr a_under_inter = inter.IssueFor(spec, seal_a_.key.get());
  ASSERT_NE(a_under_inter, nullptr);
  TestCa rogue = TestCa::CreateRoot("/CN=CA tỉnh Thử/O=Test/C=VN");
  X509Ptr a_under_rogue = rogue.IssueFor(spec, seal_a_.key.get());
  ASSERT_NE(a_under_rogue, nullptr);

  auto receipt = [&](X509* cert, X509* ca_cert, const std::string& doc, const std::string& sha) {
    X509StackPtr chain(sk_X509_new_null());
    X509_up_ref(ca_cert);
    sk_X509_push(chain.get(), ca_cert);
    crypto::Checkpoint cp;
    cp.origin = "cd-a/archive";
    cp.size = 7;
    cp.root.fill(0x42);
    auto body = crypto::SerializeCheckpoint(cp);
    EXPECT_TRUE(body.has_value());
    crypto::DeliveryReceipt r;
    r.document_id = doc;
    r.content_sha256 = sha;
    r.recipient = "cd-a";
    r.received_at = std::time(nullptr);
    r.checkpoint = *body;
    r.checkpoint_signature = SignWithChain(cert, seal_a_.key.get(), chain.get(), *body);
    auto json = crypto::SerializeDeliveryReceipt(r);
    EXPECT_TRUE(json.has_value());
    return Json(200, "{\"receipt\":\"" + Base64Encode(*json) + "\",\"signature\":\"" +
                         Base64Encode(SignWithChain(cert, seal_a_.key.get(), chain.get(), *json)) +
                         "\"}");
  };

  Submitted sub = SubmitDirective();
  handler_ = [&](const Call& c) -> Result<client::Response> {
    if (c.endpoint == "https://127.0.0.1:7002") {
      return receipt(a_under_inter.get(), inter.cert(), sub.id, sub.content_sha256);
    }
    return receipt(a_under_rogue.get(), rogue.cert(), sub.id, sub.content_sha256);
  };
  ASSERT_TRUE(worker_->RunOnce().has_value());
  storage::DeliveryState a = StateOf(sub.id, "cd-a");
  EXPECT_EQ(a.state, storage::JobState::kDelivered) << a.last_error;
  // cd-b's answer names cd-a's seal; whatever else, the rogue CA is no anchor.
  storage::DeliveryState b = StateOf(sub.id, "cd-b");
  EXPECT_EQ(b.state, storage::JobState::kRefused) << b.last_error;
  EXPECT_NE(b.last_error.find("NO_CERTIFICATE_CHAIN_FOUND"), std::string::npos) << b.last_error;
  EXPECT_EQ(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).size(), 1u);
}

}  // namespace
}  // namespace sealpost::daemon

namespace sealpost::daemon {
namespace {

// A receipt dated (received_at = CMS signing-time) before the document was
// sent, or further ahead of our clock than the allowed skew, is refused with
// the reason, nothing archived; one a minute ahead (within the skew) is fine.
TEST_F(DeliveryWorkerTest, ReceiptDatedBeforeSendingOrInTheFarFutureIsRefused) {
  Submitted sub = SubmitDirective();
  const std::time_t now = std::time(nullptr);
  handler_ = [&](const Call& c) -> Result<client::Response> {
    if (c.endpoint == "https://127.0.0.1:7002") {
      return ReceiptFrom("cd-a", seal_a_, "seal-a", sub.id, sub.content_sha256, now - 1800);
    }
    return ReceiptFrom("cd-b", seal_b_, "seal-b", sub.id, sub.content_sha256, now + 1800);
  };
  ASSERT_TRUE(worker_->RunOnce().has_value());
  storage::DeliveryState a = StateOf(sub.id, "cd-a");
  EXPECT_EQ(a.state, storage::JobState::kRefused);
  EXPECT_NE(a.last_error.find("receipt from cd-a refused"), std::string::npos) << a.last_error;
  EXPECT_NE(a.last_error.find("before the document was sent"), std::string::npos) << a.last_error;
  storage::DeliveryState b = StateOf(sub.id, "cd-b");
  EXPECT_EQ(b.state, storage::JobState::kRefused);
  EXPECT_NE(b.last_error.find("in the future"), std::string::npos) << b.last_error;
  EXPECT_TRUE(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).empty());

  Submitted sub2 = SubmitDirective();
  handler_ = [&](const Call&) -> Result<client::Response> {
    return ReceiptFrom("cd-a", seal_a_, "seal-a", sub2.id, sub2.content_sha256,
                       std::time(nullptr) + 60);
  };
  ASSERT_TRUE(worker_->RunOnce().has_value());
  EXPECT_EQ(StateOf(sub2.id, "cd-a").state, storage::JobState::kDelivered)
      << StateOf(sub2.id, "cd-a").last_error;

  // A read notice dated before the sending: 422 naming it, nothing archived.
  const size_t notices_before = Entries(*sender_, storage::EntryKind::kDeliveryReceipt).size();
  crypto::ReadNotice early{sub2.id, "cd-a", "clerk", now - 1800};
  auto signed_early = crypto::SignReadNotice(*seal_a_.signer, crypto::KeyRef{"seal-a"}, early);
  ASSERT_TRUE(signed_early.has_value());
  auto refused = worker_->ReceiveNotice(
      "cd-a", "{\"notice\":\"" + Base64Encode(signed_early->json) + "\",\"signature\":\"" +
                  Base64Encode(signed_early->signature) + "\"}");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().status, 422);
  EXPECT_NE(refused.error().detail_en.find("before the document was sent"), std::string::npos)
      << refused.error().detail_en;
  EXPECT_EQ(Entries(*sender_, storage::EntryKind::kDeliveryReceipt).size(), notices_before);
  ExpectAuditClean(*sender_);
}

}  // namespace
}  // namespace sealpost::daemon

namespace sealpost::daemon {
namespace {

int64_t RealNowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Issue 5: delivered jobs are pruned some time after delivery once their
// attempts are archived; a read notice for a pruned delivery is still
// recorded (the archived receipt proves the delivery), and the reader does
// not send its notice again once its own notice job was pruned.
TEST_F(DeliveryWorkerTest, PrunedDeliveriesStillTakeTheirReadNoticeAndNoticesAreNotResent) {
  clock_.now = RealNowMillis() - 10LL * 86'400'000;  // the outbox's times: 10 days ago
  keep_delivered_millis_ = 1;
  worker_ = MakeWorker("ldld-thu", sender_.get(), &handler_, &calls_);
  ASSERT_TRUE(worker_);
  Submitted sub = SubmitDirective();
  AnswerWithReceipts(sub);
  ASSERT_TRUE(worker_->RunOnce().has_value());  // delivered, attempts archived
  // cd-a's job goes; cd-b's has the highest id and stays (ids never reused).
  auto pruned = worker_->PruneDelivered();
  ASSERT_TRUE(pruned.has_value()) << pruned.error().message();
  EXPECT_EQ(*pruned, 1u);
  EXPECT_EQ(sender_->outbox().State({sub.id, "cd-a", storage::Channel::kAppliance}).error().code(),
            Code::kNotFound);
  EXPECT_EQ(worker_->Snapshot().pruned, 1u);
  EXPECT_NE(DeliveryHealthJson(worker_->Snapshot()).find("\"pruned\":1"), std::string::npos);
  EXPECT_NE(DeliveryMetricsText(worker_->Snapshot()).find("sealpost_outbox_pruned_total 1"),
            std::string::npos);

  // cd-a's clerk opens it: the notice goes back and the sender records it.
  auto reader = OpenExchange("cd-a", seal_a_, "reader");
  ASSERT_TRUE(reader);
  storage::EntryInput received;
  received.kind = storage::EntryKind::kDocumentReceived;
  received.fields = {{"id", sub.id}, {"issuer", "ldld-thu"}, {"type", "directive"}};
  received.files = {{"content", "x"}};
  ASSERT_TRUE(reader->archive().Append(received).has_value());
  FakeTransport::Handler reader_handler = [&](const Call& c) -> Result<client::Response> {
    auto r = worker_->ReceiveNotice("cd-a", c.body);
    if (!r) return ProblemResponse(r.error().status, r.error().slug, r.error().detail_en);
    return Json(200, *r);
  };
  std::vector<Call> reader_calls;
  auto reader_worker = MakeWorker("cd-a", reader.get(), &reader_handler, &reader_calls);
  ASSERT_TRUE(reader_worker);
  ASSERT_TRUE(reader_worker->NoteOpened(sub.id, "clerk").ok());
  ASSERT_TRUE(reader_worker->RunOnce().has_value());
  ASSERT_EQ(reader_calls.size(), 1u);
  const storage::JobKey notice_key{sub.id, "ldld-thu", storage::Channel::kNotice};
  auto job = reader->outbox().State(notice_key);
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->state, storage::JobState::kDelivered) << job->last_error;
  size_t notices = 0;
  for (const storage::Manifest& m : Entries(*sender_, storage::EntryKind::kDeliveryReceipt)) {
    notices += m.Field("receipt_type") == "read-notice" && m.Field("recipient") == "cd-a";
  }
  EXPECT_EQ(notices, 1u);

  // The reader prunes its notice job (a later job keeps the highest id);
  // opening the document again sends nothing.
  ASSERT_TRUE(reader->outbox().Enqueue({"later", "cd-b", storage::Channel::kNotice}, "{}").has_value());
  auto reader_pruned = reader_worker->PruneDelivered();
  ASSERT_TRUE(reader_pruned.has_value()) << reader_pruned.error().message();
  EXPECT_EQ(*reader_pruned, 1u);
  ASSERT_EQ(reader->outbox().State(notice_key).error().code(), Code::kNotFound);
  ASSERT_TRUE(reader_worker->NoteOpened(sub.id, "officer").ok());
  EXPECT_EQ(reader->outbox().State(notice_key).error().code(), Code::kNotFound);
  ExpectAuditClean(*sender_);
}

// The dispatcher prunes by itself, at start and every prune_interval.
TEST_F(DeliveryWorkerTest, TheDispatcherPrunesDeliveredJobsByItself) {
  clock_.now = RealNowMillis() - 10LL * 86'400'000;
  keep_delivered_millis_ = 86'400'000;  // one day: the 10-day-old jobs go
  worker_ = MakeWorker("ldld-thu", sender_.get(), &handler_, &calls_);
  ASSERT_TRUE(worker_);
  Submitted first = SubmitDirective();
  AnswerWithReceipts(first);
  ASSERT_TRUE(worker_->RunOnce().has_value());
  clock_.now = RealNowMillis();  // a recent delivery is kept
  Submitted second = SubmitDirective();
  AnswerWithReceipts(second);
  ASSERT_TRUE(worker_->RunOnce().has_value());
  worker_->Start();
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return !sender_->outbox()
                    .State({first.id, "cd-b", storage::Channel::kAppliance})
                    .has_value();
      },
      10));
  worker_->Stop();
  EXPECT_FALSE(sender_->outbox().State({first.id, "cd-a", storage::Channel::kAppliance}).has_value());
  EXPECT_TRUE(sender_->outbox().State({second.id, "cd-a", storage::Channel::kAppliance}).has_value());
  EXPECT_TRUE(sender_->outbox().State({second.id, "cd-b", storage::Channel::kAppliance}).has_value());
  EXPECT_EQ(worker_->Snapshot().pruned, 2u);
}

}  // namespace
}  // namespace sealpost::daemon
