// Bundles (crypto/bundle.h) end to end with a throwaway PKI, software keys,
// a real archive entry manifest (storage::BuildManifest), a real checkpoint
// and inclusion proof: build -> read -> verify passes; stock unzip and
// openssl check what we write; the form is enforced; and every tampered
// member is detected by VerifyBundle with the right reason.
#include "crypto/bundle.h"

#include <openssl/rand.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/encoding.h"
#include "crypto/cades_sign.h"
#include "crypto/certs.h"
#include "crypto/digest.h"
#include "crypto/software_signer.h"
#include "storage/entry.h"
#include "tests/support/cms_peers.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

using testing::CertSpec;
using testing::CertToPem;
using testing::CrlToPem;
using testing::ReadTestFile;
using testing::RunCommand;
using testing::ShellQuote;
using testing::TempDir;
using testing::TestCa;
using testing::WriteTestFile;

constexpr char kOrigin[] = "cd-baichay.vn/archive";

std::string RandomBytes(size_t n) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  return s;
}

std::unique_ptr<SoftwareKeySigner> MakeSigner(const std::string& label, testing::Issued issued) {
  auto s = SoftwareKeySigner::CreateForTesting(label, std::move(issued.key), std::move(issued.cert));
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().ToString());
  return s ? std::move(*s) : nullptr;
}

// What a sender's appliance has after submit -> seal -> archive: every part
// of a bundle, consistent with each other.
class BundleTest : public ::testing::Test {
 protected:
  BundleTest() : ca_(TestCa::CreateRoot("/CN=Root CA Liên đoàn/O=Liên đoàn Lao động/C=VN")) {
    CertSpec seal_spec;
    seal_spec.subject = "/CN=Con dấu Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN";
    seal_spec.serial = 1001;
    seal_ = MakeSigner("seal", ca_.Issue(seal_spec));
    CertSpec officer_spec;
    officer_spec.subject = "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN";
    officer_spec.serial = 1002;
    officer_ = MakeSigner("chair", ca_.Issue(officer_spec));
    ca_pem_ = dir_.file("ca.pem");
    WriteTestFile(ca_pem_, CertToPem(ca_.cert()));
    work_ = dir_.file("work");
    ::mkdir(work_.c_str(), 0700);

    content_path_ = dir_.file("spool-content");
    WriteTestFile(content_path_, "%PDF-1.7 Chỉ thị số 12\n" + RandomBytes(300 * 1024));
    std::string content = ReadTestFile(content_path_);

    doc_.id = "cd-baichay.vn/2026/000123";
    doc_.type = "directive";
    doc_.reference = "12/CT-CĐBC";
    doc_.subject = "Chỉ thị về đại hội công đoàn cơ sở";
    doc_.issuer = "cd-baichay";
    doc_.recipients = {"cd-hongha", "cd-hagiang"};
    doc_.issued_at = "2026-11-28T09:00:00Z";
    doc_.content_name = "Chỉ thị 12.PDF";
    doc_.content_media_type = "application/pdf";
    doc_.content_size = content.size();
    doc_.content_sha256 = HexEncode(*DigestBytes(EVP_sha256(), content));
    doc_.policy_sha256 = std::string(64, 'a');
    Sign();
  }

  // (Re)computes every signed part from doc_ and the current files.
  void Sign() {
    auto json = SerializeDocumentJson(doc_);
    ASSERT_TRUE(json.has_value()) << json.error().ToString();
    parts_.content_path = content_path_;
    parts_.document_json = *json;
    parts_.content_p7s = CoSign(content_path_);
    WriteTestFile(dir_.file("document.json"), parts_.document_json);
    auto seal_sig = SignFile(*seal_, KeyRef{"seal"}, dir_.file("document.json"), {});
    ASSERT_TRUE(seal_sig.has_value()) << seal_sig.error().ToString();
    parts_.document_json_p7s = *seal_sig;
    parts_.certs_pem = CertToPem(SealCert()) + CertToPem(OfficerCert());
    auto crl = ca_.MakeCrl({});
    parts_.crls_pem = CrlToPem(crl.get());
    Archive(storage::EntryKind::kDocumentSent, kOrigin, nullptr);
  }

  // Officer first, then the seal: one SignedData.
  std::string CoSign(const std::string& path) {
    auto first = SignFile(*officer_, KeyRef{"chair"}, path, {});
    EXPECT_TRUE(first.has_value()) << first.error().ToString();
    auto existing = ExistingSignature::Parse(*first, "officer.p7s");
    EXPECT_TRUE(existing.has_value());
    auto both = AppendSignatureForFile(*seal_, KeyRef{"seal"}, *existing, path, {});
    EXPECT_TRUE(both.has_value()) << both.error().ToString();
    return both ? *both : std::string();
  }

  X509* SealCert() {
    if (!seal_cert_) seal_cert_ = std::move(*seal_->Certificate(KeyRef{"seal"}));
    return seal_cert_.get();
  }
  X509* OfficerCert() {
    if (!officer_cert_) officer_cert_ = std::move(*officer_->Certificate(KeyRef{"chair"}));
    return officer_cert_.get();
  }

  // The archive entry (entry 3 of a 5-entry log), its checkpoint and proof.
  // `edit` may change the entry input before the manifest is built.
  void Archive(storage::EntryKind kind, const std::string& origin,
               const std::function<void(storage::EntryInput&)>& edit) {
    storage::EntryInput in;
    in.kind = kind;
    in.fields = {{"id", doc_.id},
                 {"type", doc_.type},
                 {"reference", doc_.reference},
                 {"subject", doc_.subject},
                 {"issuer", doc_.issuer},
                 {"recipients", "cd-hongha,cd-hagiang"},
                 {"issued_at", doc_.issued_at},
                 {"content_name", doc_.content_name},
                 {"content_media_type", doc_.content_media_type},
                 {"content_size", std::to_string(doc_.content_size)},
                 {"content_sha256", doc_.content_sha256},
                 {"policy_sha256", doc_.policy_sha256}};
    in.files = {{"content", ReadTestFile(content_path_)},
                {"content.p7s", parts_.content_p7s},
                {"certs.pem", parts_.certs_pem},
                {"crls.pem", parts_.crls_pem},
                {"document.json", parts_.document_json},
                {"document.json.p7s", parts_.document_json_p7s}};
    if (edit) edit(in);
    ASSERT_TRUE(storage::ValidateEntry(in).ok());
    parts_.archive_manifest = storage::BuildManifest(in, origin, 3, 1764320400);
    std::vector<merkle::Hash> leaves = {merkle::LeafHash("entry 1"), merkle::LeafHash("entry 2"),
                                        merkle::LeafHash(parts_.archive_manifest),
                                        merkle::LeafHash("entry 4"), merkle::LeafHash("entry 5")};
    Checkpoint cp{origin, leaves.size(), merkle::RootFromLeafHashes(leaves), {}};
    parts_.checkpoint = *SerializeCheckpoint(cp);
    auto cp_sig = SignCheckpoint(*seal_, KeyRef{"seal"}, parts_.checkpoint);
    ASSERT_TRUE(cp_sig.has_value()) << cp_sig.error().ToString();
    parts_.checkpoint_p7s = *cp_sig;
    parts_.proof.leaf_index = 2;
    parts_.proof.tree_size = leaves.size();
    parts_.proof.hashes = *merkle::InclusionProof(leaves, 2);
  }

  std::string Build(const std::string& name = "bundle.asics") {
    std::string path = dir_.file(name);
    Status s = BuildBundle(parts_, path);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return path;
  }

  // Writes a bundle member by member, bypassing BuildBundle's checks (the
  // way an attacker would), replacing members named in `replace`.
  std::string BuildRaw(const std::map<std::string, std::string>& replace,
                       const std::string& name = "raw.asics") {
    std::string path = dir_.file(name);
    auto w = ZipWriter::Create(path);
    EXPECT_TRUE(w.has_value());
    auto member = [&](std::string_view n, const std::string& data) {
      auto it = replace.find(std::string(n));
      EXPECT_TRUE(w->AddBytes(n, it == replace.end() ? data : it->second).ok());
    };
    member(kBundleMimetypeMember, std::string(kBundleMimetype));
    member(BundleContentName(doc_.content_name), ReadTestFile(content_path_));
    member(kBundleSignatureMember, parts_.content_p7s);
    member(kBundleDocumentMember, parts_.document_json);
    member(kBundleDocumentSealMember, parts_.document_json_p7s);
    member(kBundleCertsMember, parts_.certs_pem);
    member(kBundleCrlsMember, parts_.crls_pem);
    member(kBundleManifestMember, parts_.archive_manifest);
    member(kBundleCheckpointMember, parts_.checkpoint);
    member(kBundleCheckpointSigMember, parts_.checkpoint_p7s);
    member(kBundleProofMember, SerializeInclusionProof(parts_.proof));
    EXPECT_TRUE(w->Finish().ok());
    return path;
  }

  Result<BundleReport> Verify(const std::string& path, BundleVerifyOptions opts = {}) {
    auto parsed = ReadBundle(path, work_);
    if (!parsed) return Err(parsed.error());
    auto anchors = LoadCertificates(ca_pem_);
    if (!anchors) return Err(anchors.error());
    opts.anchors = anchors->get();
    return VerifyBundle(*parsed, opts);
  }

  // Expects the bundle to fail verification with `reason` on `check`.
  void ExpectFinding(const std::string& path, BundleCheck check, BundleReason reason,
                     BundleVerifyOptions opts = {}) {
    auto report = Verify(path, opts);
    ASSERT_TRUE(report.has_value()) << report.error().ToString();
    EXPECT_NE(report->indication, Indication::kPassed) << BundleReportToText(*report, Lang::kEn);
    bool found = false;
    for (const BundleFinding& f : report->findings) {
      if (f.check == check) {
        found = true;
        EXPECT_EQ(f.reason, reason) << BundleCheckName(check) << ": got "
                                    << BundleReasonName(f.reason) << " " << f.detail;
        EXPECT_NE(f.indication, Indication::kPassed);
      }
    }
    EXPECT_TRUE(found);
  }

  void ExpectReadFails(const std::string& path, const std::string& reason) {
    auto parsed = ReadBundle(path, work_);
    ASSERT_FALSE(parsed.has_value()) << "accepted; expected: " << reason;
    EXPECT_EQ(parsed.error().code(), Code::kDataError) << parsed.error().ToString();
    EXPECT_NE(parsed.error().message().find(reason), std::string::npos)
        << parsed.error().message() << "\nexpected: " << reason;
    EXPECT_TRUE(WorkDirEmpty());
  }

  bool WorkDirEmpty() {
    std::string out;
    RunCommand("ls -A " + ShellQuote(work_), &out);
    return out.empty();
  }

  TempDir dir_;
  TestCa ca_;
  std::unique_ptr<SoftwareKeySigner> seal_;
  std::unique_ptr<SoftwareKeySigner> officer_;
  X509Ptr seal_cert_;
  X509Ptr officer_cert_;
  std::string ca_pem_;
  std::string work_;
  std::string content_path_;
  DocumentInfo doc_;
  BundleParts parts_;
};

TEST_F(BundleTest, BuildReadVerifyRoundTripPasses) {
  std::string path = Build();
  auto parsed = ReadBundle(path, work_);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
  EXPECT_EQ(parsed->content_member, "document.pdf");
  EXPECT_EQ(parsed->document, doc_);
  EXPECT_EQ(parsed->content_sha256, doc_.content_sha256);
  EXPECT_EQ(ReadTestFile(parsed->content_path()), ReadTestFile(content_path_));
  EXPECT_EQ(parsed->manifest.seq, 3u);
  EXPECT_EQ(parsed->checkpoint.origin, kOrigin);

  auto anchors = LoadCertificates(ca_pem_);
  ASSERT_TRUE(anchors.has_value());
  BundleVerifyOptions opts;
  opts.anchors = anchors->get();
  opts.expected_origin = kOrigin;
  auto report = VerifyBundle(*parsed, opts);
  ASSERT_TRUE(report.has_value()) << report.error().ToString();
  EXPECT_EQ(report->indication, Indication::kPassed) << BundleReportToText(*report, Lang::kEn);
  EXPECT_EQ(report->findings.size(), 8u);
  EXPECT_EQ(report->FirstProblem(), nullptr);
  EXPECT_EQ(report->content.signers.size(), 2u);
  EXPECT_EQ(report->document_seal.signers.size(), 1u);
  EXPECT_EQ(report->seq, 3u);
  EXPECT_EQ(report->tree_size, 5u);
  std::string json = BundleReportToJson(*report);
  EXPECT_NE(json.find("\"indication\":\"PASSED\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"check\":\"inclusion\""), std::string::npos) << json;
  std::string vi = BundleReportToText(*report, Lang::kVi);
  EXPECT_NE(vi.find("Gói văn bản: ĐẠT"), std::string::npos) << vi;
  EXPECT_NE(vi.find("Nguyễn Thị Duyên"), std::string::npos) << vi;

  // The content file belongs to the ParsedBundle until released.
  std::string kept = parsed->ReleaseContent();
  std::string dropped;
  {
    auto again = ReadBundle(path, work_);
    ASSERT_TRUE(again.has_value());
    dropped = again->content_path();
  }
  struct stat st;
  EXPECT_EQ(::stat(kept.c_str(), &st), 0);
  EXPECT_NE(::stat(dropped.c_str(), &st), 0);
}

TEST_F(BundleTest, StockUnzipAndOpensslVerifyBundleMembers) {
  std::string path = Build();
  std::string out;
  ASSERT_EQ(RunCommand("unzip -t " + ShellQuote(path), &out), 0) << out;
  std::string x = dir_.file("x");
  ASSERT_EQ(RunCommand("mkdir " + ShellQuote(x) + " && cd " + ShellQuote(x) + " && unzip -q " +
                           ShellQuote(path), &out), 0) << out;
  EXPECT_EQ(ReadTestFile(x + "/mimetype"), kBundleMimetype);
  EXPECT_TRUE(testing::OpensslCmsVerifies(x + "/META-INF/signature.p7s", x + "/document.pdf",
                                          ca_pem_));
  EXPECT_TRUE(testing::OpensslCmsVerifies(x + "/META-INF/sealpost/document.json.p7s",
                                          x + "/META-INF/sealpost/document.json", ca_pem_));
  EXPECT_TRUE(testing::OpensslCmsVerifies(x + "/META-INF/sealpost/checkpoint.p7s",
                                          x + "/META-INF/sealpost/checkpoint", ca_pem_));
  // And the check fails for another content: the test can fail.
  WriteTestFile(x + "/other.pdf", "not the document");
  EXPECT_FALSE(testing::OpensslCmsVerifies(x + "/META-INF/signature.p7s", x + "/other.pdf",
                                           ca_pem_));
}

TEST_F(BundleTest, BuildWithContentOtherThanDeclaredFailsAndLeavesNothing) {
  WriteTestFile(content_path_, "another document");
  std::string path = dir_.file("bad.asics");
  Status s = BuildBundle(parts_, path);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("is not what document.json declares"), std::string::npos) << s.ToString();
  std::string out;
  RunCommand("ls " + ShellQuote(dir_.path()), &out);
  EXPECT_EQ(out.find("bad.asics"), std::string::npos) << out;
}

// The daemon's small bundles (docs/decisions/0014): the same bytes as the
// file for the same parts and time, and a content other than declared is
// refused the same way.
TEST_F(BundleTest, BuildInMemoryGivesTheFileBytesAndVerifies) {
  const std::time_t mtime = 1796601600;
  const std::string path = dir_.file("file.asics");
  ASSERT_TRUE(BuildBundle(parts_, path, mtime, false).ok());
  auto bytes = BuildBundleInMemory(parts_, mtime);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().ToString();
  EXPECT_TRUE(*bytes == ReadTestFile(path)) << "memory and file bundles differ";
  WriteTestFile(dir_.file("memory.asics"), *bytes);
  auto parsed = ReadBundle(dir_.file("memory.asics"), work_);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
  auto anchors = LoadCertificates(ca_pem_);
  ASSERT_TRUE(anchors.has_value());
  BundleVerifyOptions opts;
  opts.anchors = anchors->get();
  opts.expected_origin = kOrigin;
  auto report = VerifyBundle(*parsed, opts);
  ASSERT_TRUE(report.has_value()) << report.error().ToString();
  EXPECT_EQ(report->indication, Indication::kPassed) << BundleReportToText(*report, Lang::kEn);

  WriteTestFile(content_path_, "another document");
  auto bad = BuildBundleInMemory(parts_, mtime);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument) << bad.error().ToString();
  EXPECT_NE(bad.error().message().find("is not what document.json declares"), std::string::npos);
}

TEST_F(BundleTest, DocumentJsonIsCanonicalAndStrict) {
  auto json = SerializeDocumentJson(doc_);
  ASSERT_TRUE(json.has_value());
  auto back = ParseDocumentJson(*json, "d");
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(*back, doc_);
  std::string spaced = *json;
  spaced.insert(1, " ");
  EXPECT_FALSE(ParseDocumentJson(spaced, "d").has_value());
  std::string extra = json->substr(0, json->size() - 1) + ",\"zz\":\"x\"}";
  EXPECT_FALSE(ParseDocumentJson(extra, "d").has_value());
  std::string dup = "{\"id\":\"a\",\"id\":\"b\"}";
  auto d = ParseDocumentJson(dup, "d");
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message().find("duplicate key"), std::string::npos);
  DocumentInfo bad = doc_;
  bad.recipients = {"a,b"};
  EXPECT_FALSE(SerializeDocumentJson(bad).has_value());
  bad = doc_;
  bad.issued_at = "2026-11-28 09:00";
  EXPECT_FALSE(SerializeDocumentJson(bad).has_value());
  bad = doc_;
  bad.subject = "line\nbreak";
  EXPECT_FALSE(SerializeDocumentJson(bad).has_value());
  EXPECT_EQ(BundleContentName("Báo cáo quý 3.PDF"), "document.pdf");
  EXPECT_EQ(BundleContentName("notes"), "document");
  EXPECT_EQ(BundleContentName("x.tài"), "document");
  EXPECT_EQ(BundleContentName("../../etc/passwd.sh"), "document.sh");
}

TEST_F(BundleTest, ReadWithWrongFormFailsNamingTheProblem) {
  {
    std::map<std::string, std::string> r = {{std::string(kBundleMimetypeMember), "application/zip"}};
    ExpectReadFails(BuildRaw(r, "a.asics"), "is not application/vnd.etsi.asic-s+zip");
  }
  {
    // mimetype not first
    std::string path = dir_.file("b.asics");
    auto w = ZipWriter::Create(path);
    ASSERT_TRUE(w->AddBytes("document.pdf", "x").ok());
    ASSERT_TRUE(w->AddBytes("mimetype", std::string(kBundleMimetype)).ok());
    ASSERT_TRUE(w->Finish().ok());
    ExpectReadFails(path, "first member is not \"mimetype\"");
  }
  {
    std::string path = dir_.file("c.asics");
    auto w = ZipWriter::Create(path);
    ASSERT_TRUE(w->AddBytes("mimetype", std::string(kBundleMimetype), ZipMethod::kDeflate).ok());
    ASSERT_TRUE(w->Finish().ok());
    ExpectReadFails(path, "must be STORED");
  }
  std::string meta_extra = dir_.file("e.asics");
  {
    auto w = ZipWriter::Create(meta_extra);
    ASSERT_TRUE(w->AddBytes("mimetype", std::string(kBundleMimetype)).ok());
    ASSERT_TRUE(w->AddBytes("document.pdf", "x").ok());
    ASSERT_TRUE(w->AddBytes("META-INF/sealpost/evil.sh", "x").ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  ExpectReadFails(meta_extra, "unexpected member \"META-INF/sealpost/evil.sh\"");
  std::string two = dir_.file("f.asics");
  {
    auto w = ZipWriter::Create(two);
    ASSERT_TRUE(w->AddBytes("mimetype", std::string(kBundleMimetype)).ok());
    ASSERT_TRUE(w->AddBytes("document.pdf", "x").ok());
    ASSERT_TRUE(w->AddBytes("other.pdf", "y").ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  ExpectReadFails(two, "more than one data object");
  std::string missing = dir_.file("g.asics");
  {
    auto w = ZipWriter::Create(missing);
    ASSERT_TRUE(w->AddBytes("mimetype", std::string(kBundleMimetype)).ok());
    ASSERT_TRUE(w->AddBytes("document.pdf", "x").ok());
    ASSERT_TRUE(w->AddBytes(kBundleSignatureMember, "x").ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  ExpectReadFails(missing, "missing member");
  ExpectReadFails(BuildRaw({{std::string(kBundleDocumentMember), "{}"}}, "h.asics"), "document.json");
  ExpectReadFails(BuildRaw({{std::string(kBundleCheckpointMember), "x\n"}}, "i.asics"), "checkpoint");
  ExpectReadFails(BuildRaw({{std::string(kBundleProofMember), "{\"hashes\":[]}"}}, "j.asics"),
                  "inclusion-proof.json");
  ExpectReadFails(BuildRaw({{std::string(kBundleCertsMember), "no certificates"}}, "k.asics"),
                  "certs.pem");
  // Not a zip at all, and a missing file.
  WriteTestFile(dir_.file("l.asics"), "%PDF-1.7 just a PDF");
  ExpectReadFails(dir_.file("l.asics"), "not a ZIP file");
  auto none = ReadBundle(dir_.file("none.asics"), work_);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code(), Code::kNotFound);
}

TEST_F(BundleTest, BuildWithoutCrlsLeavesMemberOutAndPasses) {
  parts_.crls_pem.clear();
  Archive(storage::EntryKind::kDocumentSent, kOrigin, [](storage::EntryInput& in) {
    in.files.erase(in.files.begin() + 3);  // no crls.pem in the entry either
  });
  std::string path = Build();
  auto parsed = ReadBundle(path, work_);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().ToString();
  EXPECT_TRUE(parsed->crls_pem.empty());
  auto report = Verify(path);
  ASSERT_TRUE(report.has_value()) << report.error().ToString();
  EXPECT_EQ(report->indication, Indication::kPassed) << BundleReportToText(*report, Lang::kEn);
}

TEST_F(BundleTest, ReadWithRenamedContentMemberFails) {
  std::string path = dir_.file("renamed.asics");
  auto w = ZipWriter::Create(path);
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(w->AddBytes(kBundleMimetypeMember, std::string(kBundleMimetype)).ok());
  ASSERT_TRUE(w->AddFile("document.exe", content_path_).ok());
  for (auto [name, data] : {std::pair<std::string_view, std::string*>{kBundleSignatureMember, &parts_.content_p7s},
                            {kBundleDocumentMember, &parts_.document_json},
                            {kBundleDocumentSealMember, &parts_.document_json_p7s},
                            {kBundleCertsMember, &parts_.certs_pem},
                            {kBundleManifestMember, &parts_.archive_manifest},
                            {kBundleCheckpointMember, &parts_.checkpoint},
                            {kBundleCheckpointSigMember, &parts_.checkpoint_p7s}}) {
    ASSERT_TRUE(w->AddBytes(name, *data).ok());
  }
  ASSERT_TRUE(w->AddBytes(kBundleProofMember, SerializeInclusionProof(parts_.proof)).ok());
  ASSERT_TRUE(w->Finish().ok());
  ExpectReadFails(path, "should be named \"document.pdf\"");
}

TEST_F(BundleTest, VerifyTamperedContentFails) {
  std::string content = ReadTestFile(content_path_);
  content[100] ^= 1;
  std::string path = BuildRaw({{"document.pdf", content}});
  ExpectFinding(path, BundleCheck::kContentDigest, BundleReason::kContentHashMismatch);
  ExpectFinding(path, BundleCheck::kContentSignature, BundleReason::kSignatureFailed);
  auto report = Verify(path);
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->indication, Indication::kFailed);
  EXPECT_EQ(report->content.signers[0].reason, Reason::kDigestMismatch);
  // A shorter content: the size is named.
  ExpectFinding(BuildRaw({{"document.pdf", content.substr(1)}}, "short.asics"),
                BundleCheck::kContentDigest, BundleReason::kContentSizeMismatch);
}

TEST_F(BundleTest, VerifyTamperedDocumentJsonFails) {
  DocumentInfo other = doc_;
  other.recipients.push_back("cd-thanhhoa");
  std::string path = BuildRaw({{std::string(kBundleDocumentMember), *SerializeDocumentJson(other)}});
  ExpectFinding(path, BundleCheck::kDocumentSeal, BundleReason::kSignatureFailed);
  ExpectFinding(path, BundleCheck::kArchiveEntry, BundleReason::kEntryFileMismatch);
}

TEST_F(BundleTest, VerifyDocumentJsonSealedByAnotherKeyFails) {
  // The officer signs document.json instead of the seal: the checkpoint,
  // signed by the real seal, no longer matches the "seal".
  auto sig = SignFile(*officer_, KeyRef{"chair"}, dir_.file("document.json"), {});
  ASSERT_TRUE(sig.has_value());
  std::string path = BuildRaw({{std::string(kBundleDocumentSealMember), *sig}});
  ExpectFinding(path, BundleCheck::kCheckpointSignature, BundleReason::kCheckpointSignatureInvalid);
}

TEST_F(BundleTest, VerifyContentSignatureWithoutSealFails) {
  auto officer_only = SignFile(*officer_, KeyRef{"chair"}, content_path_, {});
  ASSERT_TRUE(officer_only.has_value());
  std::string path = BuildRaw({{std::string(kBundleSignatureMember), *officer_only}});
  ExpectFinding(path, BundleCheck::kContentSealed, BundleReason::kContentNotSealed);
  ExpectFinding(path, BundleCheck::kArchiveEntry, BundleReason::kEntryFileMismatch);
}

TEST_F(BundleTest, VerifySwappedChainFileFails) {
  std::string path = BuildRaw({{std::string(kBundleCertsMember), CertToPem(SealCert())}});
  ExpectFinding(path, BundleCheck::kArchiveEntry, BundleReason::kEntryFileMismatch);
}

TEST_F(BundleTest, VerifyEntryDescribingAnotherDocumentFails) {
  Archive(storage::EntryKind::kDocumentSent, kOrigin,
          [](storage::EntryInput& in) { in.fields["id"] = "cd-baichay.vn/2026/000999"; });
  ExpectFinding(Build(), BundleCheck::kArchiveEntry, BundleReason::kEntryFieldMismatch);
  Archive(storage::EntryKind::kDocumentReceived, kOrigin, nullptr);
  ExpectFinding(Build("received.asics"), BundleCheck::kArchiveEntry, BundleReason::kEntryKindWrong);
  Archive(storage::EntryKind::kDocumentSent, kOrigin, [](storage::EntryInput& in) {
    in.files.erase(in.files.begin() + 3);  // crls.pem not in the archive entry
  });
  ExpectFinding(Build("nocrl.asics"), BundleCheck::kArchiveEntry, BundleReason::kEntryFileMissing);
}

TEST_F(BundleTest, VerifyTamperedCheckpointOrProofFails) {
  Checkpoint cp = *ParseCheckpoint(parts_.checkpoint, "cp");
  cp.root[0] ^= 1;
  std::string path = BuildRaw({{std::string(kBundleCheckpointMember), *SerializeCheckpoint(cp)}});
  ExpectFinding(path, BundleCheck::kCheckpointSignature, BundleReason::kCheckpointSignatureInvalid);
  ExpectFinding(path, BundleCheck::kInclusion, BundleReason::kInclusionProofInvalid);

  InclusionProof bad = parts_.proof;
  bad.hashes[0][5] ^= 0x40;
  ExpectFinding(BuildRaw({{std::string(kBundleProofMember), SerializeInclusionProof(bad)}},
                         "proof.asics"),
                BundleCheck::kInclusion, BundleReason::kInclusionProofInvalid);
  bad = parts_.proof;
  bad.leaf_index = 1;
  ExpectFinding(BuildRaw({{std::string(kBundleProofMember), SerializeInclusionProof(bad)}},
                         "index.asics"),
                BundleCheck::kInclusion, BundleReason::kLeafIndexMismatch);
  bad = parts_.proof;
  bad.tree_size = 4;
  ExpectFinding(BuildRaw({{std::string(kBundleProofMember), SerializeInclusionProof(bad)}},
                         "size.asics"),
                BundleCheck::kInclusion, BundleReason::kTreeSizeMismatch);
}

TEST_F(BundleTest, VerifyOriginMismatchFails) {
  // Entry from one log, checkpoint of another (both honestly signed).
  std::string good_checkpoint = parts_.checkpoint;
  Archive(storage::EntryKind::kDocumentSent, "cd-other.vn/archive", nullptr);
  Checkpoint cp = *ParseCheckpoint(parts_.checkpoint, "cp");
  cp.origin = kOrigin;
  parts_.checkpoint = *SerializeCheckpoint(cp);
  parts_.checkpoint_p7s = *SignCheckpoint(*seal_, KeyRef{"seal"}, parts_.checkpoint);
  ExpectFinding(Build(), BundleCheck::kOrigin, BundleReason::kOriginMismatch);
  // A consistent bundle from a log the caller did not expect.
  Archive(storage::EntryKind::kDocumentSent, kOrigin, nullptr);
  BundleVerifyOptions opts;
  opts.expected_origin = "cd-hongha.vn/archive";
  ExpectFinding(Build("b2.asics"), BundleCheck::kOrigin, BundleReason::kUnexpectedOrigin, opts);
}

TEST_F(BundleTest, VerifyRevokedOfficerFails) {
  auto crl = ca_.MakeCrl({1002});
  parts_.crls_pem = CrlToPem(crl.get());
  Archive(storage::EntryKind::kDocumentSent, kOrigin, nullptr);
  std::string path = Build();
  ExpectFinding(path, BundleCheck::kContentSignature, BundleReason::kSignatureFailed);
  auto report = Verify(path);
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->sub_indication, SubIndication::kRevoked)
      << BundleReportToText(*report, Lang::kEn);
}

TEST_F(BundleTest, VerifyWithoutAnchorFails) {
  auto parsed = ReadBundle(Build(), work_);
  ASSERT_TRUE(parsed.has_value());
  auto r = VerifyBundle(*parsed, BundleVerifyOptions{});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace sealpost::crypto
