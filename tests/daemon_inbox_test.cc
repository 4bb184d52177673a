// POST /api/v1/inbox on a real sealpostd process: mutual TLS on the peer
// listener, the union's seal on a SoftHSM2 token behind a real
// sealpost-signer process, bundles built by a real Exchange of the peer
// union (in this process, software seal). Receipts verify against the seal
// certificate and with `openssl cms`; redelivery, the 409 consistency dance,
// refusals as problem+json, metrics and health, and a clean audit of the
// daemon's archive after a graceful stop.
#include <gtest/gtest.h>

#include <openssl/pem.h>

#include <iostream>
#include <memory>
#include <string>

#include "base/encoding.h"
#include "base/file.h"
#include "crypto/certs.h"
#include "crypto/receipt.h"
#include "crypto/software_signer.h"
#include "crypto/verify.h"
#include "daemon/exchange.h"
#include "daemon/inbox.h"
#include "policies/holder.h"
#include "storage/audit.h"
#include "storage/reader.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/test_pki.h"

namespace sealpost::daemon {
namespace {

using testing::DaemonHarness;
using testing::DaemonOptions;
using testing::JsonField;
using testing::ReadTestFile;
using testing::RunCommand;
using testing::ShellQuote;
using testing::WriteTestFile;

struct Answer {
  int status = 0;
  std::string body;
};

class DaemonInboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DaemonOptions o;
    o.seal = true;
    d_ = DaemonHarness::Start(o);
    ASSERT_TRUE(d_);
    // The peer union's appliance, in this process.
    auto key_pem = ReadFile(d_->file("peer-seal-key.pem"));
    ASSERT_TRUE(key_pem.has_value());
    BioPtr bio(BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size())));
    EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    ASSERT_TRUE(key);
    auto cert = crypto::LoadCertificate(d_->file("peer-seal.pem"));
    ASSERT_TRUE(cert.has_value());
    auto signer = crypto::SoftwareKeySigner::CreateForTesting("peer-seal", std::move(key),
                                                              std::move(*cert));
    ASSERT_TRUE(signer.has_value());
    peer_signer_ = std::move(*signer);
    auto policy = policies::PolicyHolder::Open({d_->file("policy.yaml")});
    ASSERT_TRUE(policy.has_value()) << policy.error().message();
    policy_ = std::move(*policy);
    auto v = testing::VerifierForAnchor(d_->file("sign-ca.pem"));
    ASSERT_TRUE(v.has_value()) << v.error().message();
    verifier_.emplace(std::move(*v));
    ExchangeOptions eo;
    eo.union_id = DaemonHarness::kPeerUnion;
    eo.state_dir = d_->file("peer-state");
    eo.signer = peer_signer_.get();
    eo.seal_key = crypto::KeyRef{"peer-seal"};
    eo.policy = policy_.get();
    eo.verifier = &*verifier_;
    auto ex = Exchange::Create(eo);
    ASSERT_TRUE(ex.has_value()) << ex.error().message();
    peer_ = std::move(*ex);
    WriteTestFile(d_->file("report.txt"), "Báo cáo tài chính quý 4: thu 12.000.000 đồng.\n");
  }

  Submitted Report() {
    SubmitRequest r;
    r.content_path = d_->file("report.txt");
    r.content_name = "Báo cáo quý 4.txt";
    r.media_type = "text/plain";
    r.type = "report";
    r.subject = "Báo cáo tài chính quý 4";
    r.recipients = {"ldld-thu-nghiem"};
    auto sub = peer_->Submit(r);
    EXPECT_TRUE(sub.has_value()) << (sub ? "" : sub.error().detail_en);
    return sub.value_or(Submitted{});
  }

  Answer Post(const std::string& bundle, const std::string& extra = "",
              const std::string& type = "application/vnd.etsi.asic-s+zip") {
    std::string out_file = d_->file("answer-" + std::to_string(++posts_));
    std::string cmd = d_->Curl("/api/v1/inbox",
                               "--cert " + ShellQuote(d_->file("peer.pem")) + " --key " +
                                   ShellQuote(d_->file("peer-key.pem")) + " -H " +
                                   ShellQuote("Content-Type: " + type) + " " + extra +
                                   " --data-binary @" + ShellQuote(bundle) + " -o " +
                                   ShellQuote(out_file) + " -w '%{http_code}'",
                               true);
    std::string out;
    int rc = RunCommand(cmd, &out);
    EXPECT_EQ(rc, 0) << cmd << "\n" << out;
    Answer a;
    a.status = std::atoi(out.c_str());
    a.body = ReadTestFile(out_file);
    return a;
  }

  std::string ProofHeader(uint64_t from, uint64_t to, bool corrupt = false) {
    auto p = peer_->archive().ConsistencyProof(from, to);
    EXPECT_TRUE(p.has_value());
    ConsistencyProofHeader h{from, to, p.value_or(std::vector<crypto::merkle::Hash>{})};
    if (corrupt && !h.hashes.empty()) h.hashes.back()[5] ^= 0x40;
    return "-H " + ShellQuote(std::string(kConsistencyProofHeader) + ": " +
                              FormatConsistencyProofHeader(h));
  }

  void ExpectReceipt(const Answer& a, const Submitted& sent) {
    ASSERT_EQ(a.status, 200) << a.body;
    auto json = Base64Decode(JsonField(a.body, "receipt"));
    auto sig = Base64Decode(JsonField(a.body, "signature"));
    ASSERT_TRUE(json.has_value() && sig.has_value()) << a.body;
    auto seal = crypto::LoadCertificate(d_->file("seal.pem"));
    ASSERT_TRUE(seal.has_value());
    auto r = crypto::VerifyDeliveryReceipt(
        crypto::SignedReceipt{*json, *sig},
        {sent.id, sent.content_sha256, "ldld-thu-nghiem", seal->get()}, "receipt");
    ASSERT_TRUE(r.has_value()) << r.error().message();
    WriteTestFile(d_->file("r.json"), *json);
    WriteTestFile(d_->file("r.json.p7s"), *sig);
    std::string out;
    EXPECT_EQ(RunCommand("openssl cms -verify -binary -inform DER -in " +
                             ShellQuote(d_->file("r.json.p7s")) + " -content " +
                             ShellQuote(d_->file("r.json")) + " -CAfile " +
                             ShellQuote(d_->file("sign-ca.pem")) +
                             " -purpose any -cades -out /dev/null",
                         &out),
              0)
        << out;
  }

  static bool IsProblem(const Answer& a, int status, const std::string& slug) {
    return a.status == status &&
           a.body.find("\"type\":\"https://sealpost.invalid/problems/" + slug + "\"") !=
               std::string::npos;
  }

  std::unique_ptr<DaemonHarness> d_;
  std::unique_ptr<crypto::SoftwareKeySigner> peer_signer_;
  std::unique_ptr<policies::PolicyHolder> policy_;
  std::optional<crypto::Verifier> verifier_;
  std::unique_ptr<Exchange> peer_;
  int posts_ = 0;
};

TEST_F(DaemonInboxTest, PeerDeliversOverMtlsGetsReceiptsAndTheConsistencyDance) {
  Submitted r1 = Report();  // the peer's checkpoint: size 2
  Answer a1 = Post(r1.bundle_path);
  ExpectReceipt(a1, r1);
  Answer again = Post(r1.bundle_path);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.body, a1.body) << "a redelivery must get the same receipt";

  Submitted r2 = Report();  // 3
  Submitted r3 = Report();  // 4
  Answer need = Post(r3.bundle_path);
  EXPECT_TRUE(IsProblem(need, 409, "consistency-proof-required")) << need.body;
  EXPECT_NE(need.body.find("\"from_size\":2,\"to_size\":4"), std::string::npos) << need.body;
  ExpectReceipt(Post(r3.bundle_path, ProofHeader(2, 4)), r3);
  Answer older = Post(r2.bundle_path);
  EXPECT_TRUE(IsProblem(older, 409, "consistency-proof-required")) << older.body;
  EXPECT_NE(older.body.find("\"from_size\":3,\"to_size\":4"), std::string::npos) << older.body;
  Answer bad = Post(r2.bundle_path, ProofHeader(3, 4, true));
  EXPECT_TRUE(IsProblem(bad, 422, "checkpoint-inconsistent")) << bad.body;
  ExpectReceipt(Post(r2.bundle_path, ProofHeader(3, 4)), r2);

  // Refusals.
  auto bytes = ReadFile(r1.bundle_path);
  ASSERT_TRUE(bytes.has_value());
  std::string flipped = *bytes;
  flipped[flipped.size() / 3] ^= 0x01;
  WriteTestFile(d_->file("flipped.asics"), flipped);
  EXPECT_TRUE(IsProblem(Post(d_->file("flipped.asics")), 422, "bundle-invalid"));
  EXPECT_EQ(Post(r1.bundle_path, "", "application/zip").status, 415);
  EXPECT_TRUE(IsProblem(Post(r1.bundle_path, "-H 'Sealpost-Consistency-Proof: 4:2:'"), 400,
                        "bad-request"));

  // Health and metrics show the alarm and the counts.
  std::string token = d_->CreateToken("admin", "ops");
  std::string metrics;
  ASSERT_EQ(RunCommand(d_->Curl("/metrics", "-H " + ShellQuote("Authorization: Bearer " + token)),
                       &metrics),
            0);
  EXPECT_NE(metrics.find("sealpost_inbox_accepted_total 3\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("sealpost_inbox_redeliveries_total 1\n"), std::string::npos);
  EXPECT_NE(metrics.find("sealpost_inbox_refused_total{reason=\"consistency-proof-required\"} 2"),
            std::string::npos);
  EXPECT_NE(metrics.find("sealpost_inbox_checkpoint_alarms 1\n"), std::string::npos);
  std::string health;
  ASSERT_EQ(RunCommand(d_->Curl("/api/v1/health"), &health), 0);
  EXPECT_NE(health.find("\"inbox\":{\"checkpoint_alarms\":1}"), std::string::npos) << health;

  EXPECT_EQ(d_->Terminate(), 0);
  // Where a reception's time went (read_ms, verify_ms, append_ms, receipt_ms).
  std::string log = d_->Log();
  for (size_t p = log.find("document received"); p != std::string::npos;
       p = log.find("document received", p + 1)) {
    std::cout << log.substr(p, log.find('\n', p) - p) << "\n";
  }
  // Three document-received entries, and the archive audits clean.
  auto reader = storage::ArchiveReader::Open(d_->state_dir() + "/archive");
  ASSERT_TRUE(reader.has_value()) << reader.error().message();
  int received = 0;
  for (uint64_t seq = 1; seq <= (*reader)->size(); ++seq) {
    auto m = (*reader)->ReadManifest(seq);
    ASSERT_TRUE(m.has_value());
    if (m->kind == storage::EntryKind::kDocumentReceived) ++received;
  }
  EXPECT_EQ(received, 3);
  storage::AuditOptions ao;
  ao.trust_files = {d_->file("sign-ca.pem")};
  auto audit = storage::Audit(d_->state_dir() + "/archive", ao);
  ASSERT_TRUE(audit.has_value()) << audit.error().message();
  for (const storage::AuditProblem& p : audit->problems) {
    ADD_FAILURE() << "audit: " << p.code << " seq " << p.seq << ": " << p.detail;
  }
}

}  // namespace
}  // namespace sealpost::daemon
