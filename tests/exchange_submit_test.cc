// daemon/exchange: a submission sealed, archived, bundled and queued, with a
// real archive (libgit2), a real policy, real CAdES signatures and the real
// bundle reader/verifier; refusals leave the archive and the outbox as they
// were. The seal is a software key here (in-process Signer); the same code
// runs with the daemon's RemoteSigner.
#include <gtest/gtest.h>

#include <atomic>
#include <ctime>
#include <memory>
#include <string>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/encoding.h"
#include "crypto/bundle.h"
#include "crypto/cades_sign.h"
#include "crypto/certs.h"
#include "crypto/software_signer.h"
#include "crypto/verify.h"
#include "daemon/exchange.h"
#include "daemon/webhook.h"
#include "policies/holder.h"
#include "policies/verdict.h"
#include "storage/reader.h"
#include "tests/support/test_pki.h"

namespace sealpost::daemon {
namespace {

using testing::CertSha256Hex;
using testing::CertSpec;
using testing::CertToPem;
using testing::Issued;
using testing::SpkiSha256Hex;
using testing::TempDir;
using testing::TestCa;
using testing::WriteTestFile;

X509Ptr Dup(X509* c) { return X509Ptr(X509_dup(c)); }

// A Signer that can be switched off, as the daemon sees sealpost-signer
// gone or its token pulled: every call is kUnavailable while down.
class SwitchableSigner final : public crypto::Signer {
 public:
  explicit SwitchableSigner(std::unique_ptr<crypto::Signer> inner) : inner_(std::move(inner)) {}
  Result<X509Ptr> Certificate(const crypto::KeyRef& key) override {
    if (down) return Err(Status::Unavailable("signer socket: connection refused"));
    return inner_->Certificate(key);
  }
  Result<std::string> Sign(const crypto::KeyRef& key, crypto::DigestAlg alg,
                           std::string_view digest) override {
    if (down) return Err(Status::Unavailable("signer socket: connection refused"));
    return inner_->Sign(key, alg, digest);
  }
  std::atomic<bool> down{false};

 private:
  std::unique_ptr<crypto::Signer> inner_;
};

class ExchangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Exchange Test CA/O=Test/C=VN"));
    CertSpec seal_spec;
    seal_spec.subject = "/CN=Con dấu LĐLĐ Thử/O=Liên đoàn Lao động Thử/C=VN";
    Issued seal = ca_->Issue(seal_spec);
    CertSpec chair_spec;
    chair_spec.subject = "/CN=Nguyễn Văn Chủ Tịch/O=Liên đoàn Lao động Thử/C=VN";
    Issued chair = ca_->Issue(chair_spec);
    CertSpec other_spec;
    other_spec.subject = "/CN=Người Ngoài/O=Nobody/C=VN";
    Issued other = ca_->Issue(other_spec);
    seal_cert_ = Dup(seal.cert.get());
    std::string seal_spki = SpkiSha256Hex(seal.cert.get());
    std::string chair_spki = SpkiSha256Hex(chair.cert.get());

    auto s = crypto::SoftwareKeySigner::CreateForTesting("seal", std::move(seal.key),
                                                         std::move(seal.cert));
    ASSERT_TRUE(s.has_value());
    seal_signer_ = std::make_unique<SwitchableSigner>(std::move(*s));
    auto c = crypto::SoftwareKeySigner::CreateForTesting("chair", std::move(chair.key),
                                                         std::move(chair.cert));
    ASSERT_TRUE(c.has_value());
    chair_signer_ = std::move(*c);
    auto x = crypto::SoftwareKeySigner::CreateForTesting("other", std::move(other.key),
                                                         std::move(other.cert));
    ASSERT_TRUE(x.has_value());
    other_signer_ = std::move(*x);

    WriteTestFile(tmp_.file("ca.pem"), CertToPem(ca_->cert()));
    std::string policy =
        "federation: {id: thu, name: \"Liên đoàn thử\"}\n"
        "trust:\n  anchors:\n    - {id: test-ca, name: \"Test CA\", sha256: \"" +
        CertSha256Hex(ca_->cert()) +
        "\"}\n"
        "unions:\n"
        "  - {id: ldld-thu, name: \"Liên đoàn Lao động Thử\", code: \"LĐLĐ-T\", level: district,\n"
        "     seal: {spki_sha256: \"" + seal_spki + "\"}}\n"
        "  - {id: cd-a, name: \"Công đoàn A\", level: grassroots, parent: ldld-thu}\n"
        "  - {id: cd-b, name: \"Công đoàn B\", level: grassroots, parent: ldld-thu,\n"
        "     email: vanthu@cd-b.example.vn, webhook: \"https://bridge.example.vn/cd-b\",\n"
        "     channels: [webhook, email]}\n" +
        testing::ChairAndDirectiveYaml(chair_spki) +
        "  - {id: report, name: \"Báo cáo\", issuers: {levels: [grassroots]},\n"
        "     recipients: {relations: [parent]}, signatures: {seal: true},\n"
        "     max_size_bytes: 1048576, media_types: [text/plain], retention_years: 10}\n";
    WriteTestFile(tmp_.file("policy.yaml"), policy);
    auto holder = policies::PolicyHolder::Open({tmp_.file("policy.yaml")});
    ASSERT_TRUE(holder.has_value()) << holder.error().message();
    policy_ = std::move(*holder);
    auto v = testing::VerifierForAnchor(tmp_.file("ca.pem"));
    ASSERT_TRUE(v.has_value()) << v.error().message();
    verifier_.emplace(std::move(*v));
    OpenExchange();
    WriteTestFile(tmp_.file("directive.txt"), "Chỉ thị số 1: họp ban chấp hành ngày 5.\n");
  }

  void OpenExchange() {
    exchange_.reset();
    ExchangeOptions o;
    o.union_id = "ldld-thu";
    o.state_dir = tmp_.file("state");
    o.signer = seal_signer_.get();
    o.seal_key = crypto::KeyRef{"seal"};
    o.policy = policy_.get();
    o.verifier = &*verifier_;
    o.crl_files = crl_files_;
    auto ex = Exchange::Create(o);
    ASSERT_TRUE(ex.has_value()) << ex.error().message();
    exchange_ = std::move(*ex);
  }

  std::string SignAs(crypto::Signer& signer, const std::string& label, const std::string& path) {
    auto der = crypto::SignFile(signer, crypto::KeyRef{label}, path, {});
    EXPECT_TRUE(der.has_value()) << der.error().message();
    return der.value_or("");
  }

  SubmitRequest Directive() {
    SubmitRequest r;
    r.content_path = tmp_.file("directive.txt");
    r.content_name = "Chỉ thị 1.txt";
    r.media_type = "text/plain";
    r.type = "directive";
    r.subject = "Họp ban chấp hành";
    r.recipients = {"cd-a", "cd-b"};
    r.officer_signature = SignAs(*chair_signer_, "chair", r.content_path);
    return r;
  }

  std::string Year() {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    return std::to_string(tm.tm_year + 1900);
  }

  TempDir tmp_;
  std::unique_ptr<TestCa> ca_;
  X509Ptr seal_cert_;
  std::unique_ptr<SwitchableSigner> seal_signer_;
  std::unique_ptr<crypto::SoftwareKeySigner> chair_signer_, other_signer_;
  std::unique_ptr<policies::PolicyHolder> policy_;
  std::optional<crypto::Verifier> verifier_;
  std::unique_ptr<Exchange> exchange_;
  std::vector<std::string> crl_files_;
};

TEST_F(ExchangeTest, SubmitDirectiveSignedByChairArchivesBundlesAndQueues) {
  auto sub = exchange_->Submit(Directive());
  ASSERT_TRUE(sub.has_value()) << sub.error().detail_en;
  EXPECT_EQ(sub->seq, 2u);  // after the archive's initial key-change entry
  EXPECT_EQ(sub->reference, "1/" + Year() + "/CT-LĐLĐ-T");
  EXPECT_EQ(exchange_->archive().size(), 2u);

  // The archive entry: kind, fields, files per conventions.md.
  auto reader = storage::ArchiveReader::Open(exchange_->archive_dir());
  ASSERT_TRUE(reader.has_value()) << reader.error().message();
  auto m = (*reader)->ReadManifest(2);
  ASSERT_TRUE(m.has_value()) << m.error().message();
  EXPECT_EQ(m->kind, storage::EntryKind::kDocumentSent);
  EXPECT_EQ(m->Field("id"), sub->id);
  EXPECT_EQ(m->Field("recipients"), "cd-a,cd-b");
  EXPECT_EQ(m->Field("content_sha256"), sub->content_sha256);
  EXPECT_EQ(m->Field("reference"), sub->reference);
  auto p7s = (*reader)->ReadEntryFile(2, "content.p7s");
  ASSERT_TRUE(p7s.has_value());
  auto report = verifier_->VerifyFile(tmp_.file("directive.txt"), *p7s);
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->indication, crypto::Indication::kPassed);
  EXPECT_EQ(report->signers.size(), 2u);  // the chair, then the seal

  // The bundle reads and verifies as a recipient would.
  auto bundle = crypto::ReadBundle(sub->bundle_path, tmp_.path());
  ASSERT_TRUE(bundle.has_value()) << bundle.error().message();
  EXPECT_EQ(bundle->document.id, sub->id);
  EXPECT_EQ(bundle->document.reference, sub->reference);
  X509StackPtr anchors(sk_X509_new_null());
  ASSERT_TRUE(anchors);
  sk_X509_push(anchors.get(), Dup(ca_->cert()).release());
  crypto::BundleVerifyOptions vo;
  vo.anchors = anchors.get();
  vo.expected_origin = "ldld-thu/archive";
  auto br = crypto::VerifyBundle(*bundle, vo);
  ASSERT_TRUE(br.has_value()) << br.error().message();
  EXPECT_EQ(br->indication, crypto::Indication::kPassed) << crypto::BundleReportToText(*br, Lang::kEn);

  // One queued job per recipient and channel: cd-a has none in the policy
  // (appliance, waiting for an endpoint), cd-b lists email and webhook.
  auto states = exchange_->outbox().States(sub->id);
  ASSERT_TRUE(states.has_value());
  ASSERT_EQ(states->size(), 3u);
  EXPECT_EQ((*states)[0].key.recipient, "cd-a");
  EXPECT_EQ((*states)[0].key.channel, storage::Channel::kAppliance);
  EXPECT_EQ((*states)[1].key.recipient, "cd-b");
  EXPECT_EQ((*states)[1].key.channel, storage::Channel::kEmail);
  EXPECT_EQ((*states)[2].key.recipient, "cd-b");
  EXPECT_EQ((*states)[2].key.channel, storage::Channel::kWebhook);
  for (const auto& s : *states) EXPECT_EQ(s.state, storage::JobState::kQueued);
  // Payloads: the bundle for appliance and email, the document's facts for
  // the webhook.
  auto jobs = exchange_->outbox().Lease(10, "test");
  ASSERT_TRUE(jobs.has_value());
  ASSERT_EQ(jobs->size(), 3u);
  for (const storage::Job& j : *jobs) {
    if (j.key.channel != storage::Channel::kWebhook) {
      EXPECT_EQ(j.payload, sub->bundle_path);
      continue;
    }
    auto note = daemon::ParseWebhookPayload(j.payload);
    ASSERT_TRUE(note.has_value()) << note.error().message();
    EXPECT_EQ(note->id, sub->id);
    EXPECT_EQ(note->type, "directive");
    EXPECT_EQ(note->type_name, "Chỉ thị");
    EXPECT_EQ(note->issuer, "ldld-thu");
    EXPECT_EQ(note->issuer_name, "Liên đoàn Lao động Thử");
    EXPECT_EQ(note->reference, sub->reference);
    EXPECT_EQ(note->issued_at, sub->issued_at);
  }
}

TEST_F(ExchangeTest, SubmitArchivesTheConfiguredCrlsWithTheEntryAndTheBundle) {
  // Without CRLs configured: no crls.pem.
  auto first = exchange_->Submit(Directive());
  ASSERT_TRUE(first.has_value()) << first.error().detail_en;
  {
    auto reader = storage::ArchiveReader::Open(exchange_->archive_dir());
    ASSERT_TRUE(reader.has_value());
    EXPECT_FALSE((*reader)->ReadEntryFile(first->seq, "crls.pem").has_value());
  }
  // One DER and one PEM CRL file: both archived, as PEM, and in the bundle.
  X509CrlPtr crl1 = ca_->MakeCrl({});
  X509CrlPtr crl2 = ca_->MakeCrl({4242});
  WriteTestFile(tmp_.file("ca.crl"), testing::CrlToDer(crl1.get()));
  WriteTestFile(tmp_.file("ca2.crl.pem"), testing::CrlToPem(crl2.get()));
  crl_files_ = {tmp_.file("ca.crl"), tmp_.file("ca2.crl.pem")};
  OpenExchange();
  auto sub = exchange_->Submit(Directive());
  ASSERT_TRUE(sub.has_value()) << sub.error().detail_en;
  auto reader = storage::ArchiveReader::Open(exchange_->archive_dir());
  ASSERT_TRUE(reader.has_value());
  auto crls = (*reader)->ReadEntryFile(sub->seq, "crls.pem");
  ASSERT_TRUE(crls.has_value()) << crls.error().message();
  EXPECT_EQ(*crls, testing::CrlToPem(crl1.get()) + testing::CrlToPem(crl2.get()));
  auto bundle = crypto::ReadBundle(sub->bundle_path, tmp_.path());
  ASSERT_TRUE(bundle.has_value()) << bundle.error().message();
  EXPECT_EQ(bundle->crls_pem, *crls);

  // An unreadable CRL file: 500, nothing archived, no reference number used.
  crl_files_ = {tmp_.file("missing.crl")};
  OpenExchange();
  uint64_t size = exchange_->archive().size();
  auto refused = exchange_->Submit(Directive());
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().status, 500);
  EXPECT_NE(refused.error().detail_en.find("missing.crl"), std::string::npos) << refused.error().detail_en;
  EXPECT_EQ(exchange_->archive().size(), size);
}

TEST_F(ExchangeTest, SubmitAfterReopenContinuesReferenceNumbersWithoutGap) {
  auto a = exchange_->Submit(Directive());
  ASSERT_TRUE(a.has_value()) << a.error().detail_en;
  auto b = exchange_->Submit(Directive());
  ASSERT_TRUE(b.has_value()) << b.error().detail_en;
  EXPECT_NE(a->id, b->id);
  EXPECT_EQ(b->reference, "2/" + Year() + "/CT-LĐLĐ-T");
  // A refusal in between does not use a number.
  SubmitRequest bad = Directive();
  bad.officer_signature.clear();
  ASSERT_FALSE(exchange_->Submit(bad).has_value());
  OpenExchange();  // counters rebuilt from the archive
  auto c = exchange_->Submit(Directive());
  ASSERT_TRUE(c.has_value()) << c.error().detail_en;
  EXPECT_EQ(c->reference, "3/" + Year() + "/CT-LĐLĐ-T");
  EXPECT_EQ(c->seq, 4u);
  ASSERT_TRUE(exchange_->BundlePath(a->id).has_value());
}

// Decision 0010: a number reserved by a process that ended before its entry
// was archived (here: #2, while #3 was archived) is handed out again first
// after the restart, then numbering continues after the largest.
TEST_F(ExchangeTest, SubmitAfterRestartHandsOutANumberLostMidSubmissionFirst) {
  auto a = exchange_->Submit(Directive());
  ASSERT_TRUE(a.has_value()) << a.error().detail_en;
  ASSERT_EQ(a->reference, "1/" + Year() + "/CT-LĐLĐ-T");
  storage::EntryInput lost;
  lost.kind = storage::EntryKind::kDocumentSent;
  lost.fields = {{"id", "00000000-0000-4000-8000-000000000003"},
                 {"type", "directive"},
                 {"reference", "3/" + Year() + "/CT-LĐLĐ-T"},
                 {"reference_number", "3"},
                 {"issuer", "ldld-thu"},
                 {"issued_at", a->issued_at}};
  lost.files = {{"document.json", "{}"}};
  ASSERT_TRUE(exchange_->archive().Append(std::move(lost)).has_value());
  OpenExchange();  // counters rebuilt: 1 and 3 archived, 2 freed
  auto b = exchange_->Submit(Directive());
  ASSERT_TRUE(b.has_value()) << b.error().detail_en;
  EXPECT_EQ(b->reference, "2/" + Year() + "/CT-LĐLĐ-T");
  auto c = exchange_->Submit(Directive());
  ASSERT_TRUE(c.has_value()) << c.error().detail_en;
  EXPECT_EQ(c->reference, "4/" + Year() + "/CT-LĐLĐ-T");
  auto m = storage::ArchiveReader::Open(exchange_->archive_dir());
  ASSERT_TRUE(m.has_value());
  auto manifest = (*m)->ReadManifest(c->seq);
  ASSERT_TRUE(manifest.has_value());
  EXPECT_EQ(manifest->Field("reference_number"), "4");
}

TEST_F(ExchangeTest, SubmitTypeNotAllowedForIssuerRefusedNothingArchived) {
  SubmitRequest r = Directive();
  r.type = "report";  // grassroots only
  r.recipients = {"cd-a"};
  auto sub = exchange_->Submit(r);
  ASSERT_FALSE(sub.has_value());
  EXPECT_EQ(sub.error().status, 403);
  EXPECT_EQ(sub.error().slug, "policy-refused");
  EXPECT_FALSE(sub.error().detail_vi.empty());
  EXPECT_EQ(exchange_->archive().size(), 1u);
  auto m = exchange_->outbox().Metrics();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->queued, 0);
}

TEST_F(ExchangeTest, SubmitWithoutRequiredOfficerRefusedNothingArchived) {
  SubmitRequest r = Directive();
  r.officer_signature = SignAs(*other_signer_, "other", r.content_path);  // not an officer
  auto sub = exchange_->Submit(r);
  ASSERT_FALSE(sub.has_value());
  EXPECT_EQ(sub.error().status, 403);
  r.officer_signature.clear();
  sub = exchange_->Submit(r);
  ASSERT_FALSE(sub.has_value());
  EXPECT_EQ(sub.error().status, 403);
  EXPECT_EQ(exchange_->archive().size(), 1u);
}

TEST_F(ExchangeTest, SubmitOfficerSignatureOverOtherContentRefused422) {
  SubmitRequest r = Directive();
  WriteTestFile(tmp_.file("other.txt"), "something else\n");
  r.officer_signature = SignAs(*chair_signer_, "chair", tmp_.file("other.txt"));
  auto sub = exchange_->Submit(r);
  ASSERT_FALSE(sub.has_value());
  EXPECT_EQ(sub.error().status, 422);
  EXPECT_EQ(sub.error().slug, "officer-signature-invalid");
  r.officer_signature = "not a signature";
  sub = exchange_->Submit(r);
  ASSERT_FALSE(sub.has_value());
  EXPECT_EQ(sub.error().status, 422);
  EXPECT_EQ(exchange_->archive().size(), 1u);
}

TEST_F(ExchangeTest, SubmitWhileSignerDownIs503ThenSucceedsWhenBack) {
  SubmitRequest r = Directive();
  seal_signer_->down = true;
  auto sub = exchange_->Submit(r);
  ASSERT_FALSE(sub.has_value());
  EXPECT_EQ(sub.error().status, 503);
  EXPECT_EQ(sub.error().slug, "signer-unavailable");
  seal_signer_->down = false;
  EXPECT_EQ(exchange_->archive().size(), 1u);
  sub = exchange_->Submit(r);
  ASSERT_TRUE(sub.has_value()) << sub.error().detail_en;
  EXPECT_EQ(sub->reference, "1/" + Year() + "/CT-LĐLĐ-T");
}

}  // namespace
}  // namespace sealpost::daemon
