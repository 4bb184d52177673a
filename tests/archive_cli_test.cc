// `sealpost archive ...` as a user runs it: the real binary (SEALPOST_CLI_PATH),
// real SoftHSM2 tokens (the union's seal, an officer), real git repositories
// checked with stock git (fsck --strict, verify-commit with gpgsm) and
// openssl. Bad input must give a clear error, the documented exit status,
// and leave the archive's head where it was.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/support/cms_peers.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost {
namespace {

using testing::KeyType;
using testing::ShellQuote;

constexpr const char* kOrigin = "cd-baichay.vn/archive";

// The tokens (seal, officer) and the CA are made once for the suite: token
// set-up costs seconds, and each test works in its own directory.
struct SharedTokens {
  SharedTokens() : ca(testing::TestCa::CreateRoot("/CN=Archive CLI Root/O=Test/C=VN")) {}
  testing::SoftHsm hsm;
  testing::TestCa ca;
  std::string seal_pem;
  // For seal changes: a renewed certificate of the seal key (same CA, same
  // subject), a second token "seal2" with its key and certificate, a third
  // "seal3" with a key and no certificate (its certificate as a file), and
  // a certificate of seal3's key from a CA the archive does not trust.
  std::string seal_renewed_pem, seal2_pem, seal3_pem, seal3_foreign_pem;
  bool ok = false;
};

class ArchiveCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::unsetenv(testing::kAllowlistEnv);
    shared_ = new SharedTokens();
    SharedTokens& s = *shared_;
    if (!s.hsm.InitToken("seal", "5678", "4321")) return;
    testing::CertSpec seal;
    seal.subject = "/CN=Con dấu Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN";
    auto seal_issued = s.hsm.AddKeyWithCert("seal", "4321", s.ca, KeyType::kP256, "01", "seal", seal);
    if (!seal_issued) return;
    s.seal_pem = testing::CertToPem(seal_issued->cert.get());
    s.seal_renewed_pem = testing::CertToPem(s.ca.IssueFor(seal, seal_issued->key.get()).get());
    testing::CertSpec seal2 = seal;
    seal2.subject = "/CN=Con dấu mới Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN";
    if (!s.hsm.InitToken("seal2", "5678", "8765")) return;
    auto seal2_issued = s.hsm.AddKeyWithCert("seal2", "8765", s.ca, KeyType::kP256, "01", "seal", seal2);
    if (!seal2_issued) return;
    s.seal2_pem = testing::CertToPem(seal2_issued->cert.get());
    if (!s.hsm.InitToken("seal3", "5678", "1357")) return;
    EvpPkeyPtr key3 = testing::GenerateKey(KeyType::kP256);
    if (!s.hsm.ImportKey("seal3", "1357", key3.get(), "01", "seal")) return;
    s.seal3_pem = testing::CertToPem(s.ca.IssueFor(seal2, key3.get()).get());
    testing::TestCa foreign = testing::TestCa::CreateRoot("/CN=Foreign Root/O=Other/C=VN");
    s.seal3_foreign_pem = testing::CertToPem(foreign.IssueFor(seal2, key3.get()).get());
    if (!s.hsm.InitToken("officer", "5678", "1234")) return;
    testing::CertSpec officer;
    officer.subject = "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN";
    if (!s.hsm.AddKeyWithCert("officer", "1234", s.ca, KeyType::kP256, "02", "sign", officer)) return;
    s.ok = true;
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
  }

  ArchiveCliTest() : hsm_(shared_->hsm), ca_(shared_->ca) {}

  void SetUp() override {
    ASSERT_TRUE(shared_->ok) << "token set-up failed";
    seal_cert_ = dir_.file("seal.pem");
    testing::WriteTestFile(seal_cert_, shared_->seal_pem);
    seal_uri_ = hsm_.KeyUri("seal", "seal");
    officer_uri_ = hsm_.KeyUri("officer", "sign");
    seal_pin_ = dir_.file("seal.pin");
    testing::WriteTestFile(seal_pin_, "4321\n");
    ::chmod(seal_pin_.c_str(), 0600);
    officer_pin_ = dir_.file("officer.pin");
    testing::WriteTestFile(officer_pin_, "1234\n");
    ::chmod(officer_pin_.c_str(), 0600);
    ca_pem_ = dir_.file("ca.pem");
    testing::WriteTestFile(ca_pem_, testing::CertToPem(ca_.cert()));
    archive_ = dir_.file("archive.git");
  }

  int Run(const std::string& cmd, std::string* out = nullptr) {
    std::string text;
    int rc = testing::RunCommand(ShellQuote(SEALPOST_CLI_PATH) + " " + cmd + " </dev/null", &text);
    if (out) *out = text;
    return rc;
  }

  std::string SealArgs() { return "--pin-file " + ShellQuote(seal_pin_); }

  // A document signed by the officer with `sealpost sign`.
  std::string SignedDocument(const std::string& name, const std::string& body) {
    std::string path = dir_.file(name);
    testing::WriteTestFile(path, body);
    std::string out;
    EXPECT_EQ(Run("sign --key " + ShellQuote(officer_uri_) + " --pin-file " +
                      ShellQuote(officer_pin_) + " " + ShellQuote(path),
                  &out),
              0)
        << out;
    return path;
  }

  int Init(std::string* out, const std::string& extra = "") {
    return Run("archive init " + ShellQuote(archive_) + " --key " + ShellQuote(seal_uri_) +
                   " --origin " + kOrigin + " " + SealArgs() + " " + extra,
               out);
  }
  void InitWithTrust() {
    std::string out;
    ASSERT_EQ(Init(&out, "--trust " + ShellQuote(ca_pem_)), 0) << out;
  }

  int Append(const std::string& file, const std::string& extra, std::string* out) {
    return Run("archive append " + ShellQuote(archive_) + " " + ShellQuote(file) + " " + SealArgs() +
                   " " + extra,
               out);
  }

  std::string Git(const std::string& dir, const std::string& args, int* rc = nullptr) {
    std::string out;
    int r = testing::RunCommand("git -C " + ShellQuote(dir) + " " + args + " 2>&1", &out);
    if (rc) *rc = r;
    return out;
  }
  std::string Head(const std::string& dir) { return Git(dir, "rev-parse main"); }

  void ExpectStockGitAccepts(const std::string& dir) {
    int rc = 0;
    std::string out = Git(dir, "fsck --strict --no-dangling", &rc);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out.find("error"), std::string::npos) << out;
    EXPECT_EQ(out.find("warning"), std::string::npos) << out;
    testing::GpgsmHome gpg(dir_.path());
    ASSERT_TRUE(gpg.TrustCa(ca_.cert()));
    std::stringstream commits(Git(dir, "rev-list main"));
    std::string c;
    int n = 0;
    while (std::getline(commits, c)) {
      std::string vout;
      int vrc = testing::RunCommand("GNUPGHOME=" + ShellQuote(dir_.path() + "/gnupg") + " git -C " +
                                        ShellQuote(dir) + " -c gpg.format=x509 verify-commit " + c +
                                        " 2>&1",
                                    &vout);
      EXPECT_EQ(vrc, 0) << c << ": " << vout;
      EXPECT_NE(vout.find("Good signature"), std::string::npos) << c << ": " << vout;
      ++n;
    }
    EXPECT_GT(n, 0);
  }

  static SharedTokens* shared_;
  testing::SoftHsm& hsm_;
  testing::TestCa& ca_;
  testing::TempDir dir_;
  std::string seal_uri_, officer_uri_, seal_pin_, officer_pin_, ca_pem_, seal_cert_, archive_;
};

SharedTokens* ArchiveCliTest::shared_ = nullptr;

TEST_F(ArchiveCliTest, InitRecordsConfigurationAndStockGitAccepts) {
  std::string out;
  ASSERT_EQ(Init(&out, "--trust " + ShellQuote(ca_pem_)), 0) << out;
  EXPECT_NE(out.find("Con dấu Công đoàn Bãi Cháy"), std::string::npos) << out;
  EXPECT_EQ(Git(archive_, "config --local sealpost.origin"), std::string(kOrigin) + "\n");
  EXPECT_EQ(Git(archive_, "config --local sealpost.key"), seal_uri_ + "\n");
  EXPECT_EQ(Git(archive_, "config --local sealpost.trust"), ca_pem_ + "\n");
  // No PIN anywhere in the configuration or the output.
  EXPECT_EQ(testing::ReadTestFile(archive_ + "/config").find("4321"), std::string::npos);
  EXPECT_EQ(out.find("4321"), std::string::npos) << out;
  EXPECT_EQ(Git(archive_, "rev-list --count main"), "1\n");
  ExpectStockGitAccepts(archive_);
}

TEST_F(ArchiveCliTest, InitIntoNonEmptyDirectoryFailsBeforeTheToken) {
  std::filesystem::create_directories(archive_);
  testing::WriteTestFile(archive_ + "/keep.txt", "x");
  std::string out;
  EXPECT_EQ(Init(&out, "--pin-file /nonexistent/pin"), 65) << out;
  EXPECT_NE(out.find("not an empty directory"), std::string::npos) << out;
  EXPECT_EQ(testing::ReadTestFile(archive_ + "/keep.txt"), "x");
}

TEST_F(ArchiveCliTest, InitWithPinValueInUriIsRefused) {
  std::string out;
  EXPECT_EQ(Run("archive init " + ShellQuote(archive_) + " --key " +
                    ShellQuote(seal_uri_ + "&pin-value=4321") + " --origin " + kOrigin,
                &out),
            64)
      << out;
  EXPECT_FALSE(std::filesystem::exists(archive_));
}

TEST_F(ArchiveCliTest, AppendArchivesDocumentWithEvidenceAndVietnameseNames) {
  InitWithTrust();
  std::string doc = SignedDocument("Báo cáo tài chính quý 3.pdf", "%PDF-1.4 báo cáo\n");
  std::string out;
  ASSERT_EQ(Append(doc,
                   "--type bao-cao --subject 'Báo cáo tài chính quý 3/2026' --from cd-baichay "
                   "--to ld-quangninh,cd-hongai --reference 15/BC-CĐ",
                   &out),
            0)
      << out;
  EXPECT_NE(out.find("seq 2\n"), std::string::npos) << out;
  std::string head = Head(archive_);
  EXPECT_NE(out.find("commit " + head), std::string::npos) << out << head;
  const std::string dir = "main:entries/00/00/00/2/";
  EXPECT_EQ(Git(archive_, "cat-file blob " + dir + "content"), "%PDF-1.4 báo cáo\n");
  EXPECT_EQ(Git(archive_, "cat-file blob " + dir + "content.p7s"),
            testing::ReadTestFile(doc + ".p7s"));
  // Evidence: the officer's certificate (the root is the anchor, not kept).
  std::string certs = Git(archive_, "cat-file blob " + dir + "certs.pem");
  EXPECT_NE(certs.find("BEGIN CERTIFICATE"), std::string::npos) << certs;
  EXPECT_EQ(certs.find("BEGIN CERTIFICATE", 10), std::string::npos) << "one certificate expected";
  std::string manifest = Git(archive_, "cat-file blob " + dir + "manifest.json");
  EXPECT_NE(manifest.find("\"subject\":\"Báo cáo tài chính quý 3/2026\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"content_name\":\"Báo cáo tài chính quý 3.pdf\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"recipients\":\"ld-quangninh,cd-hongai\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"content_media_type\":\"application/pdf\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"kind\":\"document-sent\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"verification\":\"chain\""), std::string::npos) << manifest;

  // The stock verifier accepts the archived signature with the kept evidence.
  std::string got_content = dir_.file("got-content"), got_sig = dir_.file("got.p7s");
  testing::RunCommand("git -C " + ShellQuote(archive_) + " cat-file blob " + dir + "content > " +
                      ShellQuote(got_content));
  testing::RunCommand("git -C " + ShellQuote(archive_) + " cat-file blob " + dir + "content.p7s > " +
                      ShellQuote(got_sig));
  EXPECT_TRUE(testing::OpensslCmsVerifies(got_sig, got_content, ca_pem_));

  // show (by seq and by id) and list find it, names intact.
  ASSERT_EQ(Run("archive show " + ShellQuote(archive_) + " 2 --json", &out), 0) << out;
  EXPECT_NE(out.find("\"commit\":\"" + head.substr(0, 40) + "\""), std::string::npos) << out;
  EXPECT_NE(out.find("Báo cáo tài chính quý 3.pdf"), std::string::npos) << out;
  size_t at = manifest.find("\"id\":\"") + 6;
  std::string id = manifest.substr(at, manifest.find('"', at) - at);
  ASSERT_EQ(id.size(), 36u) << manifest;
  ASSERT_EQ(Run("archive show " + ShellQuote(archive_) + " " + id + " --lang vi", &out), 0) << out;
  EXPECT_NE(out.find("mục     #2"), std::string::npos) << out;
  EXPECT_NE(out.find("subject: Báo cáo tài chính quý 3/2026"), std::string::npos) << out;
  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --counterpart cd-hongai --json", &out), 0) << out;
  EXPECT_NE(out.find("\"seq\":2,"), std::string::npos) << out;
  EXPECT_EQ(out.find("\"seq\":1,"), std::string::npos) << out;
  ExpectStockGitAccepts(archive_);
}

TEST_F(ArchiveCliTest, AppendOfSignatureOverOtherContentIsRefusedAndHeadDoesNotMove) {
  InitWithTrust();
  std::string doc = SignedDocument("a.txt", "original\n");
  testing::WriteTestFile(doc, "altered\n");
  std::string before = Head(archive_);
  std::string out;
  EXPECT_EQ(Append(doc, "--type t --subject s", &out), 1) << out;
  EXPECT_NE(out.find("HASH_FAILURE"), std::string::npos) << out;
  EXPECT_NE(out.find("nothing was archived"), std::string::npos) << out;
  EXPECT_EQ(Head(archive_), before);
}

TEST_F(ArchiveCliTest, AppendOfSignerFromAnotherCaIsIndeterminateAndRefused) {
  InitWithTrust();
  testing::TestCa other = testing::TestCa::CreateRoot("/CN=Other Root/C=VN");
  auto issued = other.Issue(testing::CertSpec());
  std::string doc = dir_.file("x.txt");
  testing::WriteTestFile(doc, "x\n");
  testing::WriteTestFile(dir_.file("o.pem"), testing::CertToPem(issued.cert.get()));
  testing::WriteTestFile(dir_.file("o.key"), testing::KeyToPkcs8Pem(issued.key.get()));
  ASSERT_TRUE(testing::OpensslCmsSign(doc, doc + ".p7s", dir_.file("o.pem"), dir_.file("o.key")));
  std::string before = Head(archive_);
  std::string out;
  EXPECT_EQ(Append(doc, "--type t --subject s --lang vi", &out), 2) << out;
  EXPECT_NE(out.find("từ chối"), std::string::npos) << out;
  EXPECT_EQ(Head(archive_), before);
}

TEST_F(ArchiveCliTest, AppendWithoutTrustChecksIntegrityOnly) {
  std::string out;
  ASSERT_EQ(Init(&out, ""), 0) << out;
  testing::TestCa other = testing::TestCa::CreateRoot("/CN=Other Root/C=VN");
  auto issued = other.Issue(testing::CertSpec());
  std::string doc = dir_.file("x.txt");
  testing::WriteTestFile(doc, "x\n");
  testing::WriteTestFile(dir_.file("o.pem"), testing::CertToPem(issued.cert.get()));
  testing::WriteTestFile(dir_.file("o.key"), testing::KeyToPkcs8Pem(issued.key.get()));
  ASSERT_TRUE(testing::OpensslCmsSign(doc, doc + ".p7s", dir_.file("o.pem"), dir_.file("o.key")));
  ASSERT_EQ(Append(doc, "--type t --subject s", &out), 0) << out;
  std::string manifest = Git(archive_, "cat-file blob main:entries/00/00/00/2/manifest.json");
  EXPECT_NE(manifest.find("\"verification\":\"integrity-only\""), std::string::npos) << manifest;
  EXPECT_EQ(manifest.find("certs.pem"), std::string::npos) << manifest;
  // Integrity is still checked.
  testing::WriteTestFile(doc, "y\n");
  std::string before = Head(archive_);
  EXPECT_EQ(Append(doc, "--type t --subject s", &out), 1) << out;
  EXPECT_EQ(Head(archive_), before);
}

TEST_F(ArchiveCliTest, AppendBadInputGetsClearErrorAndChangesNothing) {
  InitWithTrust();
  std::string doc = SignedDocument("a.txt", "a\n");
  std::string before = Head(archive_);
  std::string out;
  // Not an archive.
  std::filesystem::create_directories(dir_.file("plain"));
  EXPECT_EQ(Run("archive append " + ShellQuote(dir_.file("plain")) + " " + ShellQuote(doc) +
                    " --type t --subject s",
                &out),
            65)
      << out;
  EXPECT_NE(out.find("not a git repository"), std::string::npos) << out;
  // An archive of another union.
  EXPECT_EQ(Append(doc, "--type t --subject s --origin cd-hongai.vn/archive", &out), 65) << out;
  EXPECT_NE(out.find("belongs to \"cd-baichay.vn/archive\""), std::string::npos) << out;
  // A missing file.
  EXPECT_EQ(Append(dir_.file("missing.txt"), "--type t --subject s", &out), 66) << out;
  EXPECT_NE(out.find("missing.txt"), std::string::npos) << out;
  // Not a signature.
  testing::WriteTestFile(dir_.file("junk.p7s"), "not a signature");
  EXPECT_EQ(Run("archive append " + ShellQuote(archive_) + " " + ShellQuote(doc) + " " +
                    ShellQuote(dir_.file("junk.p7s")) + " --type t --subject s",
                &out),
            65)
      << out;
  // Usage errors.
  EXPECT_EQ(Append(doc, "--subject s", &out), 64) << out;
  EXPECT_EQ(Append(doc, "--type t --subject s --kind sideways", &out), 64) << out;
  EXPECT_EQ(Head(archive_), before);
  EXPECT_EQ(Git(archive_, "rev-list --count main"), "1\n");
}

TEST_F(ArchiveCliTest, AppendOfSameIdTwiceIsRefused) {
  InitWithTrust();
  std::string doc = SignedDocument("a.txt", "a\n");
  std::string out;
  ASSERT_EQ(Append(doc, "--type t --subject s --id doc-1", &out), 0) << out;
  std::string before = Head(archive_);
  EXPECT_EQ(Append(doc, "--type t --subject s --id doc-1", &out), 65) << out;
  EXPECT_NE(out.find("already archived as #2"), std::string::npos) << out;
  EXPECT_EQ(Head(archive_), before);
  // The same document received (another kind) is a different entry.
  EXPECT_EQ(Append(doc, "--type t --subject s --id doc-1 --kind received", &out), 0) << out;
}

TEST_F(ArchiveCliTest, CorruptedHeadObjectIsReportedAndNothingChanges) {
  InitWithTrust();
  std::string doc = SignedDocument("a.txt", "a\n");
  std::string out;
  ASSERT_EQ(Append(doc, "--type t --subject s", &out), 0) << out;
  std::string before = Head(archive_);
  // Every pack of the archive is damaged in the middle: the head commit
  // or its tree cannot be read any more.
  for (const auto& e : std::filesystem::directory_iterator(archive_ + "/objects/pack")) {
    if (e.path().extension() != ".pack") continue;
    std::filesystem::permissions(e.path(), std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::add);
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.write("\xff\xff\xff\xff\xff\xff\xff\xff", 8);
  }
  EXPECT_EQ(Append(doc, "--type t --subject s2", &out), 65) << out;
  EXPECT_NE(out.find(archive_), std::string::npos) << out;
  EXPECT_EQ(Run("archive list " + ShellQuote(archive_), &out), 65) << out;
  EXPECT_EQ(Head(archive_), before);
}

TEST_F(ArchiveCliTest, CheckpointProveAndVerifyProofForAnAuditor) {
  InitWithTrust();
  std::string out;
  for (int i = 0; i < 4; ++i) {
    std::string doc = SignedDocument("d" + std::to_string(i) + ".txt", "doc " + std::to_string(i) + "\n");
    ASSERT_EQ(Append(doc, "--type t --subject s" + std::to_string(i), &out), 0) << out;
  }
  // A checkpoint the auditor keeps (5 entries), checked by stock openssl.
  std::string cp = dir_.file("cp5");
  ASSERT_EQ(Run("archive checkpoint " + ShellQuote(archive_) + " -o " + ShellQuote(cp), &out), 0) << out;
  EXPECT_EQ(testing::ReadTestFile(cp).substr(0, std::string(kOrigin).size() + 3),
            std::string(kOrigin) + "\n5\n");
  EXPECT_TRUE(testing::OpensslCmsVerifies(cp + ".p7s", cp, ca_pem_));
  // More entries after it.
  std::string doc = SignedDocument("late.txt", "late\n");
  ASSERT_EQ(Append(doc, "--type t --subject late", &out), 0) << out;

  // Against the latest checkpoint: verifiable with the seal certificate.
  std::string proof = dir_.file("proof3");
  ASSERT_EQ(Run("archive prove " + ShellQuote(archive_) + " 3 -o " + ShellQuote(proof), &out), 0) << out;
  std::string text = testing::ReadTestFile(proof);
  EXPECT_NE(text.find("tree-size 6\n"), std::string::npos) << text;
  EXPECT_EQ(Run("archive verify-proof " + ShellQuote(proof) + " --seal " + ShellQuote(seal_cert_), &out), 0) << out;
  EXPECT_NE(out.find("PASSED"), std::string::npos) << out;
  // Without a trusted root it is only consistent.
  EXPECT_EQ(Run("archive verify-proof " + ShellQuote(proof), &out), 2) << out;
  // Against the auditor's older checkpoint.
  std::string proof_old = dir_.file("proof3-old");
  ASSERT_EQ(Run("archive prove " + ShellQuote(archive_) + " 3 --checkpoint " + ShellQuote(cp) +
                    " -o " + ShellQuote(proof_old),
                &out),
            0)
      << out;
  EXPECT_NE(testing::ReadTestFile(proof_old).find("tree-size 5\n"), std::string::npos);
  EXPECT_EQ(Run("archive verify-proof " + ShellQuote(proof_old) + " --checkpoint " + ShellQuote(cp), &out), 0) << out;
  // The newer proof is not against the older checkpoint.
  EXPECT_EQ(Run("archive verify-proof " + ShellQuote(proof) + " --checkpoint " + ShellQuote(cp), &out), 1) << out;
  // An entry beyond the checkpoint cannot be proven against it.
  EXPECT_EQ(Run("archive prove " + ShellQuote(archive_) + " 6 --checkpoint " + ShellQuote(cp), &out), 64) << out;

  // A tampered proof fails: one hash changed.
  size_t at = text.find("\nhash ") + 6;
  std::string bad = text;
  bad[at] = bad[at] == '0' ? '1' : '0';
  testing::WriteTestFile(dir_.file("bad-proof"), bad);
  EXPECT_EQ(Run("archive verify-proof " + ShellQuote(dir_.file("bad-proof")) + " --seal " +
                    ShellQuote(seal_cert_),
                &out),
            1)
      << out;
  // A proof for another leaf with this root fails.
  std::string proof4 = dir_.file("proof4");
  ASSERT_EQ(Run("archive prove " + ShellQuote(archive_) + " 4 -o " + ShellQuote(proof4), &out), 0) << out;
  std::string p4 = testing::ReadTestFile(proof4);
  std::string swapped = text.substr(0, text.find("\nmanifest ")) + p4.substr(p4.find("\nmanifest "));
  testing::WriteTestFile(dir_.file("swapped"), swapped);
  EXPECT_EQ(Run("archive verify-proof " + ShellQuote(dir_.file("swapped")) + " --seal " +
                    ShellQuote(seal_cert_),
                &out),
            1)
      << out;
  // A checkpoint of a forged history: the archive does not match it.
  std::string forged = std::string(kOrigin) + "\n5\n" +
                       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
  testing::WriteTestFile(dir_.file("forged"), forged);
  EXPECT_EQ(Run("archive prove " + ShellQuote(archive_) + " 3 --checkpoint " +
                    ShellQuote(dir_.file("forged")),
                &out),
            65)
      << out;
  EXPECT_NE(out.find("do not match"), std::string::npos) << out;
}

TEST_F(ArchiveCliTest, MirrorToBareAndNonBareAndRefuseRewrittenRemote) {
  InitWithTrust();
  std::string out;
  std::string doc = SignedDocument("a.txt", "a\n");
  ASSERT_EQ(Append(doc, "--type t --subject s1", &out), 0) << out;
  // A fresh bare repository.
  std::string bare = dir_.file("mirror.git");
  ASSERT_EQ(testing::RunCommand("git init -q --bare " + ShellQuote(bare)), 0);
  ASSERT_EQ(Run("archive mirror " + ShellQuote(archive_) + " " + ShellQuote(bare), &out), 0) << out;
  EXPECT_EQ(Head(bare), Head(archive_));
  EXPECT_EQ(Git(bare, "symbolic-ref HEAD"), "refs/heads/main\n");
  ExpectStockGitAccepts(bare);
  // The mirror is an archive our reader accepts.
  ASSERT_EQ(Run("archive list " + ShellQuote(bare) + " --json", &out), 0) << out;
  EXPECT_NE(out.find("\"seq\":2,"), std::string::npos) << out;
  // A non-bare clone, then more entries, then mirror into the clone (file:// URL).
  std::string clone = dir_.file("clone");
  ASSERT_EQ(testing::RunCommand("git clone -q " + ShellQuote(archive_) + " " + ShellQuote(clone)), 0);
  ASSERT_EQ(Append(SignedDocument("b.txt", "b\n"), "--type t --subject s2", &out), 0) << out;
  ASSERT_EQ(Run("archive mirror " + ShellQuote(archive_) + " file://" + clone, &out), 0) << out;
  EXPECT_EQ(Head(clone), Head(archive_));
  // Its work tree followed (clean, with the new entry checked out).
  EXPECT_EQ(Git(clone, "status --porcelain"), "");
  EXPECT_EQ(testing::ReadTestFile(clone + "/entries/00/00/00/3/content"), "b\n");
  ASSERT_EQ(Run("archive mirror " + ShellQuote(archive_) + " " + ShellQuote(bare), &out), 0) << out;
  EXPECT_EQ(Head(bare), Head(archive_));
  // Up to date: nothing to do.
  ASSERT_EQ(Run("archive mirror " + ShellQuote(archive_) + " " + ShellQuote(bare), &out), 0) << out;
  EXPECT_NE(out.find("up to date"), std::string::npos) << out;

  // The mirror's history is rewritten (main reset to a new commit on top of
  // an older one): the next mirror is refused and the remote left as is.
  std::string parent = Git(bare, "rev-parse main~1");
  parent.pop_back();
  std::string forged = Git(bare, "commit-tree -p " + parent + " -m forged main^{tree}");
  forged.pop_back();
  Git(bare, "update-ref refs/heads/main " + forged);
  ASSERT_EQ(Append(SignedDocument("c.txt", "c\n"), "--type t --subject s3", &out), 0) << out;
  EXPECT_EQ(Run("archive mirror " + ShellQuote(archive_) + " " + ShellQuote(bare), &out), 65) << out;
  EXPECT_NE(out.find("not an ancestor"), std::string::npos) << out;
  EXPECT_EQ(Head(bare), forged + "\n");
  // Not a repository at all.
  std::filesystem::create_directories(dir_.file("empty"));
  EXPECT_EQ(Run("archive mirror " + ShellQuote(archive_) + " " + ShellQuote(dir_.file("empty")), &out), 66) << out;
}

TEST_F(ArchiveCliTest, ReindexEqualsIncrementalIndexAndListFilters) {
  InitWithTrust();
  std::string out;
  ASSERT_EQ(Append(SignedDocument("a.txt", "a\n"), "--type chi-thi --subject 'Chỉ thị số 12' --from cd-baichay --to cd-hongai", &out), 0) << out;
  ASSERT_EQ(Append(SignedDocument("b.txt", "b\n"), "--type bao-cao --subject 'Báo cáo' --from cd-hongai --to cd-baichay --kind received", &out), 0) << out;
  ASSERT_EQ(Append(SignedDocument("c.txt", "c\n"), "--type chi-thi --subject 'Chỉ thị số 13' --from cd-baichay --to ld-quangninh", &out), 0) << out;
  std::string incremental;
  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --json", &incremental), 0) << incremental;
  ASSERT_EQ(Run("archive reindex " + ShellQuote(archive_), &out), 0) << out;
  EXPECT_NE(out.find("4 entries"), std::string::npos) << out;
  std::string rebuilt;
  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --json", &rebuilt), 0) << rebuilt;
  EXPECT_EQ(rebuilt, incremental);
  // The index is a cache: deleting it loses nothing.
  std::filesystem::remove(archive_ + "/sealpost-index.sqlite");
  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --json", &out), 0) << out;
  EXPECT_EQ(out, incremental);
  // A damaged index file is rebuilt.
  testing::WriteTestFile(archive_ + "/sealpost-index.sqlite", "garbage garbage garbage garbage");
  std::filesystem::remove(archive_ + "/sealpost-index.sqlite-wal");
  std::filesystem::remove(archive_ + "/sealpost-index.sqlite-shm");
  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --json", &out), 0) << out;
  EXPECT_EQ(out, incremental);

  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --type chi-thi --json", &out), 0) << out;
  EXPECT_NE(out.find("Chỉ thị số 12"), std::string::npos) << out;
  EXPECT_NE(out.find("Chỉ thị số 13"), std::string::npos) << out;
  EXPECT_EQ(out.find("Báo cáo"), std::string::npos) << out;
  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --kind received --json", &out), 0) << out;
  EXPECT_NE(out.find("Báo cáo"), std::string::npos) << out;
  EXPECT_EQ(out.find("Chỉ thị"), std::string::npos) << out;
  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --counterpart ld-quangninh --json", &out), 0) << out;
  EXPECT_NE(out.find("Chỉ thị số 13"), std::string::npos) << out;
  EXPECT_EQ(out.find("Chỉ thị số 12"), std::string::npos) << out;
  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --kind key-change", &out), 0) << out;
  EXPECT_NE(out.find("#1 "), std::string::npos) << out;
  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --until 2000-01-01 --json", &out), 0) << out;
  EXPECT_EQ(out, "[]\n");
  ASSERT_EQ(Run("archive list " + ShellQuote(archive_) + " --since 2000-01-01 --json", &out), 0) << out;
  EXPECT_EQ(out, incremental);
  EXPECT_EQ(Run("archive list " + ShellQuote(archive_) + " --since yesterday", &out), 64) << out;
}

TEST_F(ArchiveCliTest, ShowOfMissingEntryOrArchiveFailsClearly) {
  InitWithTrust();
  std::string out;
  EXPECT_EQ(Run("archive show " + ShellQuote(archive_) + " 9", &out), 66) << out;
  EXPECT_NE(out.find("no entry #9"), std::string::npos) << out;
  EXPECT_EQ(Run("archive show " + ShellQuote(archive_) + " no-such-id", &out), 66) << out;
  EXPECT_EQ(Run("archive show " + ShellQuote(dir_.file("nowhere")) + " 1", &out), 66) << out;
  EXPECT_EQ(Run("archive frobnicate", &out), 64) << out;
}


// ------------------------------------------------------------ change-seal

class ArchiveChangeSealTest : public ArchiveCliTest {
 protected:
  void SetUp() override {
    ArchiveCliTest::SetUp();
    seal2_uri_ = hsm_.KeyUri("seal2", "seal");
    seal3_uri_ = hsm_.KeyUri("seal3", "seal");
    seal2_pin_ = dir_.file("seal2.pin");
    testing::WriteTestFile(seal2_pin_, "8765\n");
    ::chmod(seal2_pin_.c_str(), 0600);
    seal3_pin_ = dir_.file("seal3.pin");
    testing::WriteTestFile(seal3_pin_, "1357\n");
    ::chmod(seal3_pin_.c_str(), 0600);
    for (auto [name, pem] : {std::pair{"renewed.pem", &shared_->seal_renewed_pem},
                             std::pair{"seal2.pem", &shared_->seal2_pem},
                             std::pair{"seal3.pem", &shared_->seal3_pem},
                             std::pair{"seal3-foreign.pem", &shared_->seal3_foreign_pem}}) {
      testing::WriteTestFile(dir_.file(name), *pem);
    }
  }
  int ChangeSeal(const std::string& args, std::string* out) {
    return Run("archive change-seal " + ShellQuote(archive_) + " " + args, out);
  }
  std::string ConfigKey() {
    std::string v = Git(archive_, "config --get sealpost.key");
    while (!v.empty() && v.back() == '\n') v.pop_back();
    return v;
  }
  int AuditArchive(std::string* out) {
    return Run("audit " + ShellQuote(archive_) + " --trust " + ShellQuote(ca_pem_) + " --json", out);
  }
  std::string seal2_uri_, seal3_uri_, seal2_pin_, seal3_pin_;
};

TEST_F(ArchiveChangeSealTest, RotateToNewTokenKeepsAuditCleanAndLaterAppendsUseTheNewSeal) {
  InitWithTrust();
  std::string out;
  ASSERT_EQ(Append(SignedDocument("truoc.txt", "Trước khi đổi con dấu\n"), "--type bao-cao --subject T", &out), 0) << out;
  ASSERT_EQ(ChangeSeal("--new-key " + ShellQuote(seal2_uri_) + " --new-pin-file " + ShellQuote(seal2_pin_) +
                           " " + SealArgs(),
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("rotate"), std::string::npos) << out;
  EXPECT_NE(out.find("#3"), std::string::npos) << out;
  EXPECT_EQ(ConfigKey(), seal2_uri_);
  // The next append uses the remembered (new) key and its PIN.
  std::string doc = SignedDocument("sau.txt", "Sau khi đổi con dấu\n");
  ASSERT_EQ(Run("archive append " + ShellQuote(archive_) + " " + ShellQuote(doc) + " --pin-file " +
                    ShellQuote(seal2_pin_) + " --type bao-cao --subject S",
                &out),
            0)
      << out;
  // The old seal no longer writes.
  EXPECT_NE(Append(doc, "--key " + ShellQuote(seal_uri_) + " --type bao-cao --subject X --id again", &out), 0) << out;
  EXPECT_NE(out.find("not the archive's seal"), std::string::npos) << out;
  ASSERT_EQ(AuditArchive(&out), 0) << out;
  EXPECT_NE(out.find("\"entries\":4"), std::string::npos) << out;
  ASSERT_EQ(Run("archive show " + ShellQuote(archive_) + " 3 --json", &out), 0) << out;
  EXPECT_NE(out.find("key-change"), std::string::npos) << out;
  EXPECT_NE(out.find("Con dấu mới"), std::string::npos) << out;
  // openssl: the change is signed by both seals.
  std::string p7s = dir_.file("change.p7s"), pem = dir_.file("change.pem");
  ASSERT_EQ(testing::RunCommand("git -C " + ShellQuote(archive_) + " show main:entries/00/00/00/3/seal.pem.p7s > " +
                                    ShellQuote(p7s) + " && git -C " + ShellQuote(archive_) +
                                    " show main:entries/00/00/00/3/seal.pem > " + ShellQuote(pem)),
            0);
  std::string signers = dir_.file("signers.pem");
  ASSERT_EQ(testing::RunCommand("openssl cms -verify -binary -inform DER -in " + ShellQuote(p7s) + " -content " +
                                    ShellQuote(pem) + " -CAfile " + ShellQuote(ca_pem_) +
                                    " -purpose any -out /dev/null -signer " + ShellQuote(signers) + " 2>&1",
                                &out),
            0)
      << out;
  std::string both = testing::ReadTestFile(signers);
  EXPECT_NE(both.find(shared_->seal_pem), std::string::npos) << both;
  EXPECT_NE(both.find(shared_->seal2_pem), std::string::npos) << both;
  ExpectStockGitAccepts(archive_);
}

TEST_F(ArchiveChangeSealTest, NewCertificateFileIsUsedAndStoredOnTheNewToken) {
  InitWithTrust();
  std::string out;
  ASSERT_EQ(ChangeSeal("--new-key " + ShellQuote(seal3_uri_) + " --new-cert " + ShellQuote(dir_.file("seal3.pem")) +
                           " --new-pin-file " + ShellQuote(seal3_pin_) + " " + SealArgs(),
                       &out),
            0)
      << out;
  ASSERT_EQ(Run("token keys " + ShellQuote(seal3_uri_) + " --pin-file " + ShellQuote(seal3_pin_), &out), 0) << out;
  EXPECT_NE(out.find("Con dấu mới"), std::string::npos) << out;
  ASSERT_EQ(AuditArchive(&out), 0) << out;
}

TEST_F(ArchiveChangeSealTest, RenewalOfTheSameKeyIsAnnouncedAsRenew) {
  InitWithTrust();
  std::string out;
  // The token still holds the old certificate: the change is made with the
  // file; the command says the token's certificate must be replaced.
  ASSERT_EQ(ChangeSeal("--new-key " + ShellQuote(seal_uri_) + " --new-cert " + ShellQuote(dir_.file("renewed.pem")) +
                           " " + SealArgs(),
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("renew"), std::string::npos) << out;
  EXPECT_NE(out.find("token import-cert"), std::string::npos) << out;
  ASSERT_EQ(AuditArchive(&out), 0) << out;
}

TEST_F(ArchiveChangeSealTest, BadChangesFailClearlyAndChangeNothing) {
  InitWithTrust();
  const std::string head = Head(archive_);
  std::string out;
  const std::string new2 = " --new-pin-file " + ShellQuote(seal2_pin_) + " " + SealArgs();
  // No new key.
  EXPECT_EQ(ChangeSeal(SealArgs(), &out), 64) << out;
  // The new certificate is the one in force (the same key and its certificate).
  EXPECT_EQ(ChangeSeal("--new-key " + ShellQuote(seal_uri_) + " " + SealArgs(), &out), 65) << out;
  EXPECT_NE(out.find("seal certificate in force"), std::string::npos) << out;
  EXPECT_EQ(ChangeSeal("--new-key " + ShellQuote(seal2_uri_) + " --new-cert " + ShellQuote(seal_cert_) + new2, &out), 65) << out;
  EXPECT_NE(out.find("seal certificate in force"), std::string::npos) << out;
  // Not issued under the archive's trust anchors.
  EXPECT_EQ(ChangeSeal("--new-key " + ShellQuote(seal3_uri_) + " --new-cert " +
                           ShellQuote(dir_.file("seal3-foreign.pem")) + " --new-pin-file " +
                           ShellQuote(seal3_pin_) + " " + SealArgs(),
                       &out),
            65)
      << out;
  EXPECT_NE(out.find("not usable as the seal under the trust anchors"), std::string::npos) << out;
  EXPECT_NE(out.find("Foreign Root"), std::string::npos) << out;
  // The certificate is not the new key's.
  EXPECT_EQ(ChangeSeal("--new-key " + ShellQuote(seal2_uri_) + " --new-cert " + ShellQuote(dir_.file("seal3.pem")) + new2,
                       &out),
            65)
      << out;
  EXPECT_NE(out.find("is not a certificate of the new key"), std::string::npos) << out;
  // The old token is absent.
  std::string gone = hsm_.KeyUri("seal-lost", "seal");
  EXPECT_NE(ChangeSeal("--key " + ShellQuote(gone) + " --new-key " + ShellQuote(seal2_uri_) + new2, &out), 0) << out;
  EXPECT_NE(out.find("cannot use the seal in force"), std::string::npos) << out;
  // A key that is not the seal in force.
  EXPECT_EQ(ChangeSeal("--key " + ShellQuote(officer_uri_) + " --pin-file " + ShellQuote(officer_pin_) +
                           " --new-key " + ShellQuote(seal2_uri_) + " --new-pin-file " + ShellQuote(seal2_pin_),
                       &out),
            65)
      << out;
  EXPECT_NE(out.find("is not the key of the archive's seal in force"), std::string::npos) << out;
  // The new key's URI carries a PIN.
  EXPECT_EQ(ChangeSeal("--new-key " + ShellQuote(seal2_uri_ + "&pin-value=8765") + " " + SealArgs(), &out), 64) << out;
  // Nothing changed.
  EXPECT_EQ(Head(archive_), head);
  EXPECT_EQ(ConfigKey(), seal_uri_);
  ASSERT_EQ(AuditArchive(&out), 0) << out;
  EXPECT_NE(out.find("\"entries\":1"), std::string::npos) << out;
}


TEST_F(ArchiveChangeSealTest, RenewAfterReplacingTheTokensCertificateThenAppendsWithIt) {
  InitWithTrust();
  std::string out;
  // The operator's order for a renewal: the renewed certificate replaces
  // the old one on the token first; the archive still announces the old
  // one, which the same key keeps signing for until the change.
  // (p11tool matches the token label exactly; pkcs11-tool's --token-label
  // would also take "seal2".)
  ASSERT_EQ(testing::RunCommand(std::string("GNUTLS_PIN=4321 p11tool --provider ") + testing::kSoftHsmModule +
                                    " --login --batch --delete 'pkcs11:token=seal;id=%01;type=cert' 2>&1",
                                &out),
            0)
      << out;
  ASSERT_EQ(Run("token import-cert " + ShellQuote(seal_uri_) + " " + ShellQuote(dir_.file("renewed.pem")) + " " +
                    SealArgs(),
                &out),
            0)
      << out;
  ASSERT_EQ(ChangeSeal("--new-key " + ShellQuote(seal_uri_) + " " + SealArgs(), &out), 0) << out;
  EXPECT_NE(out.find("renew"), std::string::npos) << out;
  EXPECT_EQ(out.find("token import-cert"), std::string::npos) << out;
  ASSERT_EQ(Append(SignedDocument("sau.txt", "Sau khi gia hạn\n"), "--type bao-cao --subject S", &out), 0) << out;
  ASSERT_EQ(AuditArchive(&out), 0) << out;
  EXPECT_NE(out.find("\"entries\":3"), std::string::npos) << out;
  ExpectStockGitAccepts(archive_);
}

}  // namespace
}  // namespace sealpost
