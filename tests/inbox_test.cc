// daemon/inbox: bundles built by a real Exchange of another union (its own
// archive, seal and policy) received by the Inbox of a second union over
// that union's own real archive — verification, policy, the consistency
// dance, one entry per document, receipts that verify here and with
// `openssl cms`, refusals that archive nothing, alarms, the rebuild from the
// archive, and a clean audit afterwards. Seals are software keys here (the
// daemon test runs the same code with sealpost-signer).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <string>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/encoding.h"
#include "base/file.h"
#include "crypto/bundle.h"
#include "crypto/cades_sign.h"
#include "crypto/certs.h"
#include "crypto/receipt.h"
#include "crypto/software_signer.h"
#include "crypto/verify.h"
#include "daemon/crls.h"
#include "daemon/exchange.h"
#include "daemon/inbox.h"
#include "daemon/trust.h"
#include "policies/holder.h"
#include "policies/verdict.h"
#include "storage/audit.h"
#include "storage/reader.h"
#include "tests/support/test_pki.h"

namespace sealpost::daemon {
namespace {

using testing::CertSha256Hex;
using testing::CertSpec;
using testing::CertToPem;
using testing::CrlToPem;
using testing::Issued;
using testing::RunCommand;
using testing::ShellQuote;
using testing::SpkiSha256Hex;
using testing::TempDir;
using testing::TestCa;
using testing::WriteTestFile;

constexpr long kChairSerial = 424242;

// One union: its seal (software key) and certificate.
struct Seal {
  std::unique_ptr<crypto::SoftwareKeySigner> signer;
  std::string label;  // its KeyRef
  X509Ptr cert;
  std::string spki;
};

class InboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Inbox Test CA/O=Test/C=VN"));
    district_ = MakeSeal("seal-thu", "/CN=Con dấu LĐLĐ Thử/O=Liên đoàn Lao động Thử/C=VN");
    cd_a_ = MakeSeal("seal-a", "/CN=Con dấu Công đoàn A/O=Công đoàn A/C=VN");
    cd_b_ = MakeSeal("seal-b", "/CN=Con dấu Công đoàn B/O=Công đoàn B/C=VN");
    CertSpec chair_spec;
    chair_spec.subject = "/CN=Nguyễn Văn Chủ Tịch/O=Liên đoàn Lao động Thử/C=VN";
    chair_spec.serial = kChairSerial;
    Issued chair = ca_->Issue(chair_spec);
    chair_spki_ = SpkiSha256Hex(chair.cert.get());
    EVP_PKEY_up_ref(chair.key.get());
    chair_key_.reset(chair.key.get());
    auto c = crypto::SoftwareKeySigner::CreateForTesting("chair", std::move(chair.key),
                                                         std::move(chair.cert));
    ASSERT_TRUE(c.has_value());
    chair_signer_ = std::move(*c);

    WriteTestFile(tmp_.file("ca.pem"), CertToPem(ca_->cert()));
    // The sender's rules are lax; ours (the receiver's) require the chair on
    // directives and let only provinces issue circulars.
    WriteTestFile(tmp_.file("sender-policy.yaml"), PolicyText(false));
    WriteTestFile(tmp_.file("receiver-policy.yaml"), PolicyText(true));
    auto sp = policies::PolicyHolder::Open({tmp_.file("sender-policy.yaml")});
    ASSERT_TRUE(sp.has_value()) << sp.error().message();
    sender_policy_ = std::move(*sp);
    auto rp = policies::PolicyHolder::Open({tmp_.file("receiver-policy.yaml")});
    ASSERT_TRUE(rp.has_value()) << rp.error().message();
    receiver_policy_ = std::move(*rp);
    crypto::TrustFiles tf;
    tf.anchors = {tmp_.file("ca.pem")};
    auto trust = crypto::LoadTrustStore(tf, crypto::TrustOptions{});
    ASSERT_TRUE(trust.has_value()) << trust.error().message();
    auto v = crypto::Verifier::Create(std::move(*trust));
    ASSERT_TRUE(v.has_value());
    verifier_.emplace(std::move(*v));

    sender_ = OpenExchange("ldld-thu", "sender", district_, sender_policy_.get());
    receiver_ = OpenExchange("cd-a", "receiver", cd_a_, receiver_policy_.get());
    ASSERT_TRUE(sender_ && receiver_);
    OpenInbox({});
    WriteTestFile(tmp_.file("directive.txt"), "Chỉ thị số 1: họp ban chấp hành ngày 5.\n");
  }

  Seal MakeSeal(const std::string& label, const std::string& subject) {
    CertSpec spec;
    spec.subject = subject;
    Issued is = ca_->Issue(spec);
    Seal s;
    s.label = label;
    s.cert.reset(X509_dup(is.cert.get()));
    s.spki = SpkiSha256Hex(is.cert.get());
    auto signer = crypto::SoftwareKeySigner::CreateForTesting(label, std::move(is.key),
                                                              std::move(is.cert));
    EXPECT_TRUE(signer.has_value());
    if (signer) s.signer = std::move(*signer);
    return s;
  }

  std::string PolicyText(bool receiver) {
    return "federation: {id: thu, name: \"Liên đoàn thử\"}\n"
           "trust:\n  anchors:\n    - {id: test-ca, name: \"Test CA\", sha256: \"" +
           CertSha256Hex(ca_->cert()) +
           "\"}\n" +
           (receiver ? "  crl_sources:\n    - {anchor: test-ca, url: \"file://" +
                           tmp_.file("provincial.crl") + "\"}\n"
                     : std::string()) +
           "unions:\n"
           "  - {id: ldld-thu, name: \"Liên đoàn Lao động Thử\", code: \"LĐLĐ-T\", level: district,\n"
           "     seal: {spki_sha256: \"" + district_.spki + "\"}}\n"
           "  - {id: cd-a, name: \"Công đoàn A\", level: grassroots, parent: ldld-thu,\n"
           "     seal: {spki_sha256: \"" + cd_a_.spki + "\"}}\n"
           "  - {id: cd-b, name: \"Công đoàn B\", level: grassroots, parent: ldld-thu,\n"
           "     seal: {spki_sha256: \"" + cd_b_.spki + "\"}}\n"
           "officers:\n"
           "  - {id: chair, name: \"Nguyễn Văn Chủ Tịch\", role: chair, union: ldld-thu,\n"
           "     certificate: {spki_sha256: \"" + chair_spki_ + "\"}, mandate: {from: 2020-01-01}}\n"
           "document_types:\n"
           "  - {id: directive, name: \"Chỉ thị\", issuers: {levels: [district]},\n"
           "     recipients: {relations: [children]},\n" +
           (receiver ? "     signatures: {officers: [{roles: [chair], count: 1}], seal: true},\n"
                     : "     signatures: {seal: true},\n") +
           "     max_size_bytes: 1048576, media_types: [text/plain], retention_years: 20,\n"
           "     reference: \"{seq}/{year}/CT-{union}\"}\n"
           "  - {id: circular, name: \"Thông tri\", issuers: {levels: [" +
           (receiver ? "province" : "district") +
           "]},\n"
           "     recipients: {relations: [children]}, signatures: {seal: true},\n"
           "     max_size_bytes: 1048576, media_types: [text/plain], retention_years: 10}\n";
  }

  std::unique_ptr<Exchange> OpenExchange(const std::string& union_id, const std::string& dir,
                                         Seal& seal, policies::PolicyHolder* policy) {
    ExchangeOptions o;
    o.union_id = union_id;
    o.state_dir = tmp_.file(dir);
    o.signer = seal.signer.get();
    o.seal_key = crypto::KeyRef{seal.label};
    o.policy = policy;
    o.verifier = &*verifier_;
    auto ex = Exchange::Create(o);
    EXPECT_TRUE(ex.has_value()) << ex.error().message();
    return ex ? std::move(*ex) : nullptr;
  }

  void OpenInbox(const std::vector<std::string>& crls, const SharedTrust* trust = nullptr) {
    inbox_.reset();
    InboxOptions o;
    o.union_id = "cd-a";
    o.state_dir = tmp_.file("receiver");
    o.archive = &receiver_->archive();
    o.signer = receiver_->options().signer;
    o.seal_key = receiver_->options().seal_key;
    o.policy = receiver_policy_.get();
    o.trust_anchors = {tmp_.file("ca.pem")};
    o.crls = crls;
    o.trust = trust;
    auto in = Inbox::Create(o);
    ASSERT_TRUE(in.has_value()) << in.error().message();
    inbox_ = std::move(*in);
  }

  // A document submitted on `ex` (the sender's Exchange), its bundle path.
  Submitted Send(Exchange& ex, const std::string& type = "directive", bool chair = true,
                 std::vector<std::string> recipients = {"cd-a", "cd-b"}) {
    SubmitRequest r;
    r.content_path = tmp_.file("directive.txt");
    r.content_name = "Chỉ thị.txt";
    r.media_type = "text/plain";
    r.type = type;
    r.subject = "Họp ban chấp hành";
    r.recipients = std::move(recipients);
    if (chair) {
      crypto::CadesSignOptions so;
      so.chain = chair_chain_;
      auto der = crypto::SignFile(*chair_signer_, crypto::KeyRef{"chair"}, r.content_path, so);
      EXPECT_TRUE(der.has_value());
      r.officer_signature = der.value_or("");
    }
    auto sub = ex.Submit(r);
    EXPECT_TRUE(sub.has_value()) << (sub ? "" : sub.error().detail_en);
    return sub.value_or(Submitted{});
  }

  std::expected<InboxAccepted, Problem> Deliver(const std::string& bundle,
                                                const std::string& peer = "ldld-thu",
                                                std::optional<ConsistencyProofHeader> proof = {}) {
    return inbox_->Receive(Delivery{peer, bundle, std::move(proof)});
  }

  ConsistencyProofHeader ProofOf(Exchange& ex, uint64_t from, uint64_t to) {
    auto p = ex.archive().ConsistencyProof(from, to);
    EXPECT_TRUE(p.has_value());
    return ConsistencyProofHeader{from, to, p.value_or(std::vector<crypto::merkle::Hash>{})};
  }

  void ExpectRefused(const std::expected<InboxAccepted, Problem>& r, int status,
                     const std::string& slug, uint64_t archive_size) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().status, status) << r.error().detail_en;
    EXPECT_EQ(r.error().slug, slug) << r.error().detail_en;
    EXPECT_FALSE(r.error().detail_vi.empty());
    EXPECT_EQ(receiver_->archive().size(), archive_size) << "a refusal archived something";
  }

  void ExpectAuditClean(const std::string& archive_dir) {
    storage::AuditOptions ao;
    ao.trust_files = {tmp_.file("ca.pem")};
    auto report = storage::Audit(archive_dir, ao);
    ASSERT_TRUE(report.has_value()) << report.error().message();
    for (const storage::AuditProblem& p : report->problems) {
      ADD_FAILURE() << "audit: " << p.code << " seq " << p.seq << ": " << p.detail;
    }
    EXPECT_EQ(report->ExitCode(), 0);
  }

  TempDir tmp_;
  std::unique_ptr<TestCa> ca_;
  Seal district_, cd_a_, cd_b_;
  std::string chair_spki_;
  std::unique_ptr<crypto::SoftwareKeySigner> chair_signer_;
  EvpPkeyPtr chair_key_;
  std::vector<X509*> chair_chain_;  // intermediates embedded in the chair's signature
  std::unique_ptr<policies::PolicyHolder> sender_policy_, receiver_policy_;
  std::optional<crypto::Verifier> verifier_;
  std::unique_ptr<Exchange> sender_, receiver_;
  std::unique_ptr<Inbox> inbox_;
};

TEST_F(InboxTest, DirectiveAcceptedArchivedOnceAndReceiptVerifiesHereAndWithOpenssl) {
  Submitted sent = Send(*sender_);
  uint64_t before = receiver_->archive().size();
  auto r = Deliver(sent.bundle_path);
  ASSERT_TRUE(r.has_value()) << r.error().detail_en;
  EXPECT_FALSE(r->redelivery);
  EXPECT_EQ(r->document_id, sent.id);
  EXPECT_EQ(r->seq, before + 1);
  // The document, then the receipt we gave for it (both sides archive it).
  EXPECT_EQ(receiver_->archive().size(), before + 2);

  // The entry: kind, fields, files.
  auto reader = storage::ArchiveReader::Open(receiver_->archive_dir());
  ASSERT_TRUE(reader.has_value());
  auto m = (*reader)->ReadManifest(r->seq);
  ASSERT_TRUE(m.has_value()) << m.error().message();
  EXPECT_EQ(m->kind, storage::EntryKind::kDocumentReceived);
  EXPECT_EQ(m->Field("id"), sent.id);
  EXPECT_EQ(m->Field("issuer"), "ldld-thu");
  EXPECT_EQ(m->Field("recipients"), "cd-a,cd-b");
  EXPECT_EQ(m->Field("reference"), sent.reference);
  EXPECT_EQ(m->Field("content_sha256"), sent.content_sha256);
  EXPECT_EQ(m->Field("policy_sha256"), receiver_policy_->Current()->sha256);
  EXPECT_EQ(m->Field("sender_origin"), "ldld-thu/archive");
  EXPECT_EQ(m->Field("sender_seq"), std::to_string(sent.seq));
  std::vector<std::string> names;
  for (const auto& f : m->files) names.push_back(f.name);
  EXPECT_EQ(names, (std::vector<std::string>{"certs.pem", "content", "content.p7s", "document.json",
                                             "document.json.p7s", "sender-checkpoint",
                                             "sender-checkpoint.p7s", "sender-inclusion-proof.json",
                                             "sender-manifest.json"}));
  auto content = (*reader)->ReadEntryFile(r->seq, "content");
  ASSERT_TRUE(content.has_value());
  EXPECT_EQ(*content, "Chỉ thị số 1: họp ban chấp hành ngày 5.\n");

  // The receipt: by our seal, for this document, over our checkpoint
  // after the append.
  auto receipt = crypto::VerifyDeliveryReceipt(
      r->receipt, {sent.id, sent.content_sha256, "cd-a", cd_a_.cert.get()}, "receipt");
  ASSERT_TRUE(receipt.has_value()) << receipt.error().message();
  auto cp = crypto::ParseCheckpoint(receipt->checkpoint, "receipt checkpoint");
  ASSERT_TRUE(cp.has_value());
  EXPECT_EQ(cp->size, r->seq);
  EXPECT_EQ(cp->origin, "cd-a/archive");
  // Not the sender's seal:
  EXPECT_FALSE(crypto::VerifyDeliveryReceipt(
                   r->receipt, {sent.id, sent.content_sha256, "cd-a", district_.cert.get()}, "r")
                   .has_value());
  WriteTestFile(tmp_.file("receipt.json"), r->receipt.json);
  WriteTestFile(tmp_.file("receipt.json.p7s"), r->receipt.signature);
  std::string out;
  int rc = RunCommand("openssl cms -verify -binary -inform DER -in " +
                          ShellQuote(tmp_.file("receipt.json.p7s")) + " -content " +
                          ShellQuote(tmp_.file("receipt.json")) + " -CAfile " +
                          ShellQuote(tmp_.file("ca.pem")) + " -purpose any -cades -out /dev/null",
                      &out);
  EXPECT_EQ(rc, 0) << out;
  // ... and archived here, right after the document, before it was given.
  auto rm = (*reader)->ReadManifest(r->seq + 1);
  if (!rm) {  // the reader was opened before; reopen at the new head
    reader = storage::ArchiveReader::Open(receiver_->archive_dir());
    ASSERT_TRUE(reader.has_value());
    rm = (*reader)->ReadManifest(r->seq + 1);
  }
  ASSERT_TRUE(rm.has_value()) << rm.error().message();
  EXPECT_EQ(rm->kind, storage::EntryKind::kDeliveryReceipt);
  EXPECT_EQ(rm->refers_to, r->seq);
  EXPECT_EQ(rm->Field("id"), sent.id);
  EXPECT_EQ(rm->Field("receipt_type"), "delivery-receipt");
  EXPECT_EQ(rm->Field("recipient"), "cd-a");
  EXPECT_EQ(rm->Field("sender"), "ldld-thu");
  auto archived_json = (*reader)->ReadEntryFile(r->seq + 1, "receipt.json");
  auto archived_sig = (*reader)->ReadEntryFile(r->seq + 1, "receipt.json.p7s");
  ASSERT_TRUE(archived_json.has_value() && archived_sig.has_value());
  EXPECT_EQ(*archived_json, r->receipt.json);
  EXPECT_EQ(*archived_sig, r->receipt.signature);

  auto known = inbox_->Received(sent.id);
  ASSERT_TRUE(known.has_value());
  EXPECT_EQ(known->seq, r->seq);
  EXPECT_EQ(known->peer, "ldld-thu");
  EXPECT_EQ(inbox_->List().size(), 1u);
  EXPECT_NE(inbox_->MetricsText().find("sealpost_inbox_accepted_total 1\n"), std::string::npos);
  ExpectAuditClean(receiver_->archive_dir());
}

TEST_F(InboxTest, RedeliveryGetsTheSameReceiptAndArchivesNothingAlsoAfterRebuild) {
  Submitted sent = Send(*sender_);
  auto first = Deliver(sent.bundle_path);
  ASSERT_TRUE(first.has_value()) << first.error().detail_en;
  uint64_t size = receiver_->archive().size();
  auto again = Deliver(sent.bundle_path);
  ASSERT_TRUE(again.has_value()) << again.error().detail_en;
  EXPECT_TRUE(again->redelivery);
  EXPECT_EQ(again->seq, first->seq);
  EXPECT_EQ(again->receipt, first->receipt);
  EXPECT_EQ(receiver_->archive().size(), size);

  // A restart with the peer state files gone: rebuilt from the archive.
  auto cp = inbox_->PeerCheckpoint("ldld-thu");
  ASSERT_TRUE(cp.has_value());
  EXPECT_EQ(cp->size, sent.seq);
  std::string peer_file = tmp_.file("receiver/inbox/peers/ldld-thu.checkpoint");
  auto body = ReadFile(peer_file);
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(*body, *crypto::SerializeCheckpoint(*cp));
  ASSERT_EQ(std::remove(peer_file.c_str()), 0);
  OpenInbox({});
  auto rebuilt = inbox_->PeerCheckpoint("ldld-thu");
  ASSERT_TRUE(rebuilt.has_value());
  EXPECT_EQ(*rebuilt, *cp);
  EXPECT_TRUE(ReadFile(peer_file).has_value());
  auto third = Deliver(sent.bundle_path);
  ASSERT_TRUE(third.has_value()) << third.error().detail_en;
  EXPECT_EQ(third->receipt, first->receipt);
  EXPECT_EQ(receiver_->archive().size(), size);
  EXPECT_NE(inbox_->MetricsText().find("sealpost_inbox_redeliveries_total 1\n"), std::string::npos);
}

TEST_F(InboxTest, TamperedBundlesAreRefused422) {
  Submitted sent = Send(*sender_);
  uint64_t size = receiver_->archive().size();
  // A flipped byte in the container.
  auto bytes = ReadFile(sent.bundle_path);
  ASSERT_TRUE(bytes.has_value());
  std::string flipped = *bytes;
  flipped[flipped.size() / 2] ^= 0x20;
  WriteTestFile(tmp_.file("flipped.asics"), flipped);
  ExpectRefused(Deliver(tmp_.file("flipped.asics")), 422, "bundle-invalid", size);

  // A well-formed bundle whose description was changed after sealing.
  auto parsed = crypto::ReadBundle(sent.bundle_path, tmp_.path());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  crypto::DocumentInfo doc = parsed->document;
  doc.subject = "Hủy họp";
  crypto::BundleParts parts;
  parts.content_path = parsed->content_path();
  parts.document_json = *crypto::SerializeDocumentJson(doc);
  parts.document_json_p7s = parsed->document_json_p7s;
  parts.content_p7s = parsed->content_p7s;
  parts.certs_pem = parsed->certs_pem;
  parts.archive_manifest = parsed->archive_manifest;
  parts.checkpoint = parsed->checkpoint_body;
  parts.checkpoint_p7s = parsed->checkpoint_p7s;
  parts.proof = parsed->proof;
  ASSERT_TRUE(crypto::BuildBundle(parts, tmp_.file("altered.asics")).ok());
  auto r = Deliver(tmp_.file("altered.asics"));
  ExpectRefused(r, 422, "bundle-invalid", size);
  EXPECT_NE(r.error().detail_en.find("document-seal"), std::string::npos) << r.error().detail_en;
  EXPECT_FALSE(inbox_->Received(sent.id).has_value());
  // The genuine bundle is still accepted afterwards.
  EXPECT_TRUE(Deliver(sent.bundle_path).has_value());
  EXPECT_NE(inbox_->MetricsText().find("sealpost_inbox_refused_total{reason=\"bundle-form\"} 1"),
            std::string::npos);
}

TEST_F(InboxTest, BundleFromAnotherUnionThanThePeerIsRefused403) {
  Submitted sent = Send(*sender_);
  auto r = Deliver(sent.bundle_path, "cd-b");
  ExpectRefused(r, 403, "issuer-mismatch", receiver_->archive().size());
  EXPECT_NE(r.error().detail_en.find("ldld-thu"), std::string::npos);
}

TEST_F(InboxTest, TypeTheSenderMayNotIssueToUsIsRefused403) {
  Submitted sent = Send(*sender_, "circular", false);
  auto r = Deliver(sent.bundle_path);
  ExpectRefused(r, 403, "policy-refused", receiver_->archive().size());
  EXPECT_NE(r.error().detail_en.find("issuer"), std::string::npos) << r.error().detail_en;
}

TEST_F(InboxTest, DirectiveWithoutTheChairsSignatureIsRefused403) {
  Submitted sent = Send(*sender_, "directive", false);
  auto r = Deliver(sent.bundle_path);
  ExpectRefused(r, 403, "policy-refused", receiver_->archive().size());
  EXPECT_NE(r.error().detail_en.find("signatures"), std::string::npos) << r.error().detail_en;
}

TEST_F(InboxTest, DocumentNotAddressedToUsIsRefused403) {
  Submitted sent = Send(*sender_, "directive", true, {"cd-b"});
  auto r = Deliver(sent.bundle_path);
  ExpectRefused(r, 403, "policy-refused", receiver_->archive().size());
  EXPECT_NE(r.error().detail_en.find("not addressed"), std::string::npos);
}

TEST_F(InboxTest, RevokedOfficerIsRefused422) {
  Submitted sent = Send(*sender_);
  X509CrlPtr crl = ca_->MakeCrl({kChairSerial});
  WriteTestFile(tmp_.file("revoked.crl"), CrlToPem(crl.get()));
  OpenInbox({tmp_.file("revoked.crl")});
  auto r = Deliver(sent.bundle_path);
  ExpectRefused(r, 422, "bundle-invalid", receiver_->archive().size());
  EXPECT_NE(r.error().detail_en.find("content-signature"), std::string::npos) << r.error().detail_en;
  // With a CRL that revokes nothing, the same bundle passes.
  X509CrlPtr empty = ca_->MakeCrl({});
  WriteTestFile(tmp_.file("empty.crl"), CrlToPem(empty.get()));
  OpenInbox({tmp_.file("empty.crl")});
  EXPECT_TRUE(Deliver(sent.bundle_path).has_value());
}

// The chair's certificate (the registry's key) issued by a provincial CA
// that is not a trust anchor; the CA travels in the chair's CMS and the
// bundle, and is in the receiver's verify.intermediates. The provincial
// CA's CRL comes from the receiver policy's CRL source (file:///), fetched
// by the CRL manager into the shared trust: revoking the chair refuses the
// bundle (422, REVOKED); a later CRL that revokes nothing lets it in.
TEST_F(InboxTest, OfficerRevokedByAnIntermediateCaWhoseCrlIsFetchedIsRefused422) {
  TestCa provincial = ca_->CreateIntermediate("/CN=CA tỉnh Thử/O=Test/C=VN");
  CertSpec spec;
  spec.subject = "/CN=Nguyễn Văn Chủ Tịch/O=Liên đoàn Lao động Thử/C=VN";
  X509Ptr chair_cert = provincial.IssueFor(spec, chair_key_.get());
  const long serial = ASN1_INTEGER_get(X509_get0_serialNumber(chair_cert.get()));
  EVP_PKEY_up_ref(chair_key_.get());
  auto c = crypto::SoftwareKeySigner::CreateForTesting("chair", EvpPkeyPtr(chair_key_.get()),
                                                       std::move(chair_cert));
  ASSERT_TRUE(c.has_value());
  chair_signer_ = std::move(*c);
  chair_chain_ = {provincial.cert()};
  Submitted sent = Send(*sender_);
  ASSERT_FALSE(sent.bundle_path.empty());

  WriteTestFile(tmp_.file("provincial.pem"), CertToPem(provincial.cert()));
  WriteTestFile(tmp_.file("provincial.crl"), testing::CrlToDer(provincial.MakeCrl({serial}).get()));
  auto trust = SharedTrust::Create({tmp_.file("ca.pem")}, {}, {tmp_.file("provincial.pem")});
  ASSERT_TRUE(trust.has_value()) << trust.error().message();
  CrlManagerOptions mo;
  mo.state_dir = tmp_.file("receiver");
  mo.policy = receiver_policy_.get();
  mo.trust = trust->get();
  auto crls = CrlManager::Create(std::move(mo));
  ASSERT_TRUE(crls.has_value()) << crls.error().message();
  (*crls)->RefreshAll();
  ASSERT_EQ((*crls)->Snapshot().size(), 1u);
  EXPECT_EQ((*crls)->Snapshot()[0].state, "fresh") << (*crls)->Snapshot()[0].last_error;

  OpenInbox({}, trust->get());
  auto r = Deliver(sent.bundle_path);
  ExpectRefused(r, 422, "bundle-invalid", receiver_->archive().size());
  EXPECT_NE(r.error().detail_en.find("revoked (certificate revoked at depth 0"), std::string::npos)
      << r.error().detail_en;

  WriteTestFile(tmp_.file("provincial.crl"), testing::CrlToDer(provincial.MakeCrl({}).get()));
  (*crls)->RefreshAll();
  EXPECT_EQ((*crls)->Snapshot()[0].revoked, 0u) << (*crls)->Snapshot()[0].last_error;
  auto ok = Deliver(sent.bundle_path);
  EXPECT_TRUE(ok.has_value()) << (ok ? "" : ok.error().detail_en);
}

TEST_F(InboxTest, BundleSealedByAnUnregisteredKeyIsRefused422) {
  // An appliance claiming to be the district, with a seal of its own that
  // its (doctored) policy registers: everything verifies, but it is not the
  // district's seal in OUR registry.
  Seal rogue = MakeSeal("seal-rogue", "/CN=Con dấu giả/O=Liên đoàn Lao động Thử/C=VN");
  std::string text = PolicyText(false);
  text.replace(text.find(district_.spki), district_.spki.size(), rogue.spki);
  WriteTestFile(tmp_.file("rogue-policy.yaml"), text);
  auto rogue_policy = policies::PolicyHolder::Open({tmp_.file("rogue-policy.yaml")});
  ASSERT_TRUE(rogue_policy.has_value()) << rogue_policy.error().message();
  auto impostor = OpenExchange("ldld-thu", "impostor", rogue, rogue_policy->get());
  ASSERT_TRUE(impostor);
  Submitted sent = Send(*impostor);
  auto r = Deliver(sent.bundle_path);
  ExpectRefused(r, 422, "bundle-invalid", receiver_->archive().size());
  EXPECT_NE(r.error().detail_en.find("registered seal"), std::string::npos) << r.error().detail_en;
}

TEST_F(InboxTest, OlderOrNewerCheckpointNeedsAProof409ThenRightProofAcceptedWrongProof422) {
  Submitted d1 = Send(*sender_);  // checkpoint size 2
  Submitted d2 = Send(*sender_);  // 3
  Submitted d3 = Send(*sender_);  // 4
  ASSERT_TRUE(Deliver(d2.bundle_path).has_value());
  uint64_t size = receiver_->archive().size();

  // An older checkpoint: prove 2 -> 3.
  auto r = Deliver(d1.bundle_path);
  ExpectRefused(r, 409, "consistency-proof-required", size);
  EXPECT_EQ(r.error().extension_members, "\"from_size\":2,\"to_size\":3");
  // A proof for other sizes: asked again.
  ExpectRefused(Deliver(d1.bundle_path, "ldld-thu", ConsistencyProofHeader{1, 3, {}}), 409,
                "consistency-proof-required", size);
  ConsistencyProofHeader wrong = ProofOf(*sender_, 2, 3);
  ASSERT_FALSE(wrong.hashes.empty());
  wrong.hashes[0][0] ^= 1;
  ExpectRefused(Deliver(d1.bundle_path, "ldld-thu", wrong), 422, "checkpoint-inconsistent", size);
  ASSERT_EQ(inbox_->Alarms().size(), 1u);
  EXPECT_EQ(inbox_->Alarms()[0].peer, "ldld-thu");
  EXPECT_EQ(inbox_->Alarms()[0].document_id, d1.id);
  auto ok = Deliver(d1.bundle_path, "ldld-thu", ProofOf(*sender_, 2, 3));
  ASSERT_TRUE(ok.has_value()) << ok.error().detail_en;
  EXPECT_EQ(inbox_->PeerCheckpoint("ldld-thu")->size, 3u);  // the larger one is kept

  // A newer checkpoint: prove 3 -> 4.
  ExpectRefused(Deliver(d3.bundle_path), 409, "consistency-proof-required", size + 2);
  auto ok3 = Deliver(d3.bundle_path, "ldld-thu", ProofOf(*sender_, 3, 4));
  ASSERT_TRUE(ok3.has_value()) << ok3.error().detail_en;
  EXPECT_EQ(inbox_->PeerCheckpoint("ldld-thu")->size, 4u);
  EXPECT_EQ(receiver_->archive().size(), size + 4);  // two documents, two receipts

  // The alarm survives a restart.
  OpenInbox({});
  ASSERT_EQ(inbox_->Alarms().size(), 1u);
  EXPECT_EQ(inbox_->Alarms()[0].document_id, d1.id);
  EXPECT_NE(inbox_->MetricsText().find("sealpost_inbox_checkpoint_alarms 1\n"), std::string::npos);
  ExpectAuditClean(receiver_->archive_dir());
}

TEST_F(InboxTest, ForkedHistoryOfThePeerIsRefused422WithAnAlarm) {
  Submitted d1 = Send(*sender_);  // size 2 in the real history
  ASSERT_TRUE(Deliver(d1.bundle_path).has_value());
  uint64_t size = receiver_->archive().size();
  // The same union and seal, another history: same size, other root.
  auto fork = OpenExchange("ldld-thu", "fork", district_, sender_policy_.get());
  ASSERT_TRUE(fork);
  Submitted f1 = Send(*fork);
  auto r = Deliver(f1.bundle_path);
  ExpectRefused(r, 422, "checkpoint-inconsistent", size);
  EXPECT_NE(r.error().detail_en.find("forked"), std::string::npos) << r.error().detail_en;
  // A larger checkpoint of the fork with a proof from the fork's own log
  // does not extend what we saw.
  Submitted f2 = Send(*fork);
  ExpectRefused(Deliver(f2.bundle_path), 409, "consistency-proof-required", size);
  ExpectRefused(Deliver(f2.bundle_path, "ldld-thu", ProofOf(*fork, 2, 3)), 422,
                "checkpoint-inconsistent", size);
  EXPECT_EQ(inbox_->Alarms().size(), 2u);
  EXPECT_FALSE(inbox_->Received(f1.id).has_value());
  EXPECT_EQ(inbox_->PeerCheckpoint("ldld-thu")->size, 2u);
  ExpectAuditClean(receiver_->archive_dir());
}

TEST(ConsistencyProofHeaderTest, ParsesStrictlyAndRoundTrips) {
  ConsistencyProofHeader p{2, 5, {}};
  p.hashes.resize(2);
  p.hashes[0].fill(0xab);
  p.hashes[1].fill(0x01);
  std::string text = FormatConsistencyProofHeader(p);
  auto back = ParseConsistencyProofHeader(text);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  EXPECT_EQ(*back, p);
  auto empty = ParseConsistencyProofHeader("1:2:");
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->hashes.empty());
  for (const char* bad : {"", "1:2", "2:1:", "2:2:", "01:2:", "-1:2:", "1:2:AAAA", "1:2:!!!!",
                          "1:x:", "1:2: ", "99999999999999999999:2:"}) {
    auto r = ParseConsistencyProofHeader(bad);
    EXPECT_FALSE(r.has_value()) << "accepted '" << bad << "'";
    if (!r) {
      EXPECT_NE(r.error().message().find("Sealpost-Consistency-Proof"), std::string::npos);
    }
  }
}

TEST(ConsistencyProofHeaderTest, FuzzSeedsParseOrFailAsExpected) {
  const std::string dir =
      std::string(SEALPOST_SOURCE_DIR) + "/tests/fuzz/seeds/consistency_header_fuzz/";
  for (const char* good : {"empty-proof", "one-hash", "three-hashes"}) {
    auto text = ReadFile(dir + good);
    ASSERT_TRUE(text.has_value()) << good;
    auto p = ParseConsistencyProofHeader(*text);
    ASSERT_TRUE(p.has_value()) << good << ": " << p.error().message();
    EXPECT_EQ(FormatConsistencyProofHeader(*p), *text);
  }
  for (const char* bad : {"from-after-to", "leading-zero"}) {
    auto text = ReadFile(dir + bad);
    ASSERT_TRUE(text.has_value()) << bad;
    EXPECT_FALSE(ParseConsistencyProofHeader(*text).has_value()) << bad;
  }
}

}  // namespace
}  // namespace sealpost::daemon
