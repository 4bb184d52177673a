// `sealpost verify` through the real binary: exit statuses, --json shape,
// --lang, messages naming what was wrong.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/cms_peers.h"
#include "tests/support/test_pki.h"

namespace sealpost {
namespace {

using testing::CertSpec;
using testing::Issued;
using testing::KeyType;
using testing::ShellQuote;
using testing::TempDir;
using testing::TestCa;

class VerifyCliTest : public ::testing::Test {
 protected:
  VerifyCliTest() : root_(TestCa::CreateRoot("/CN=Test Root/O=Test Federation/C=VN")) {
    testing::WriteTestFile(dir_.file("root.pem"), testing::CertToPem(root_.cert()));
    testing::WriteTestFile(dir_.file("doc.pdf"), "%PDF-1.7 báo cáo tài chính\n");
  }

  // Signs doc.pdf into doc.pdf.p7s with a new signer made from `spec`.
  Issued SignDoc(CertSpec spec = {}, const std::string& extra = "-cades") {
    Issued s = root_.Issue(spec, KeyType::kP256);
    testing::WriteTestFile(dir_.file("s.crt"), testing::CertToPem(s.cert.get()));
    testing::WriteTestFile(dir_.file("s.key"), testing::KeyToPkcs8Pem(s.key.get()));
    EXPECT_TRUE(testing::OpensslCmsSign(dir_.file("doc.pdf"), dir_.file("doc.pdf.p7s"),
                                        dir_.file("s.crt"), dir_.file("s.key"), extra));
    return s;
  }

  // Runs `sealpost <args>` in the test directory; returns the exit status.
  int Run(const std::string& args, std::string* out = nullptr) {
    std::string output;
    int rc = testing::RunCommand("cd " + ShellQuote(dir_.path()) + " && LANG=C " +
                                     ShellQuote(SEALPOST_CLI_PATH) + " " + args,
                                 &output);
    if (out) *out = output;
    return rc;
  }

  TempDir dir_;
  TestCa root_;
};

TEST_F(VerifyCliTest, VerifyGoodSignatureExitsZeroWithSentence) {
  CertSpec spec;
  spec.subject = "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN";
  SignDoc(spec);
  std::string out;
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem", &out), 0) << out;
  EXPECT_NE(out.find("Authentic: signed by Nguyễn Thị Duyên of Công đoàn Bãi Cháy at "),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("CAdES-B-B"), std::string::npos);
  // The signature path may be given explicitly too.
  EXPECT_EQ(Run("verify doc.pdf doc.pdf.p7s --trust root.pem"), 0);
}

TEST_F(VerifyCliTest, VerifyLangViPrintsVietnamese) {
  CertSpec spec;
  spec.subject = "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN";
  SignDoc(spec);
  std::string out;
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --lang vi", &out), 0);
  EXPECT_NE(out.find("Xác thực: ký bởi Nguyễn Thị Duyên thuộc Công đoàn Bãi Cháy lúc "),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("Kết quả: PASSED (hợp lệ)"), std::string::npos) << out;
  testing::WriteTestFile(dir_.file("doc.pdf"), "changed");
  EXPECT_EQ(Run("--lang vi verify doc.pdf --trust root.pem", &out), 1);
  EXPECT_NE(out.find("Không hợp lệ: tệp đã bị thay đổi sau khi được ký"), std::string::npos) << out;
}

TEST_F(VerifyCliTest, VerifyChangedFileExitsOne) {
  SignDoc();
  testing::WriteTestFile(dir_.file("doc.pdf"), "%PDF-1.7 báo cáo tài chính!\n");
  std::string out;
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --json", &out), 1);
  EXPECT_NE(out.find("\"indication\":\"FAILED\",\"subIndication\":\"HASH_FAILURE\""),
            std::string::npos)
      << out;
}

TEST_F(VerifyCliTest, VerifyMissingCrlForDistributionPointExitsTwoAndNoRevocationExitsZero) {
  CertSpec spec;
  spec.crl_dp = "URI:http://127.0.0.1/root.crl";
  Issued s = SignDoc(spec);
  std::string out;
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --json", &out), 2);
  EXPECT_NE(out.find("\"subIndication\":\"TRY_LATER\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"revocation\":\"no-crl-available\""), std::string::npos) << out;
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --no-revocation --json", &out), 0);
  EXPECT_NE(out.find("\"revocation\":\"disabled\""), std::string::npos) << out;
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --no-revocation", &out), 0);
  EXPECT_NE(out.find("disabled"), std::string::npos) << out;

  // A PEM CRL that revokes the signer: exit 1, REVOKED.
  X509CrlPtr crl = root_.MakeCrl({ASN1_INTEGER_get(X509_get0_serialNumber(s.cert.get()))});
  testing::WriteTestFile(dir_.file("root.crl.pem"), testing::CrlToPem(crl.get()));
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --crl root.crl.pem --json", &out), 1);
  EXPECT_NE(out.find("\"subIndication\":\"REVOKED\""), std::string::npos) << out;
  // A DER CRL that does not list it: exit 0, checked.
  X509CrlPtr empty = root_.MakeCrl({});
  testing::WriteTestFile(dir_.file("root.crl"), testing::CrlToDer(empty.get()));
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --crl root.crl --json", &out), 0);
  EXPECT_NE(out.find("\"revocation\":\"good\""), std::string::npos) << out;
}

TEST_F(VerifyCliTest, VerifyAtTimeBeforeValidityExitsTwo) {
  SignDoc();
  std::string out;
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --at 2001-01-01T00:00:00Z --json", &out), 2);
  EXPECT_NE(out.find("\"validationTime\":\"2001-01-01T00:00:00Z\""), std::string::npos) << out;
  EXPECT_NE(out.find("NOT_YET_VALID"), std::string::npos) << out;
}

TEST_F(VerifyCliTest, VerifyUsageErrorsExitSixtyFour) {
  SignDoc();
  std::string out;
  EXPECT_EQ(Run("verify doc.pdf", &out), 64);
  EXPECT_NE(out.find("--trust"), std::string::npos) << out;
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --at yesterday", &out), 64);
  EXPECT_NE(out.find("yesterday"), std::string::npos) << out;
  EXPECT_EQ(Run("verify --trust root.pem", &out), 64);
  EXPECT_EQ(Run("verify a b c --trust root.pem", &out), 64);
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --bogus", &out), 64);
  EXPECT_NE(out.find("--bogus"), std::string::npos) << out;
}

TEST_F(VerifyCliTest, VerifyBadSignatureInputExitsSixtyFive) {
  SignDoc();
  std::string out;
  // Not CMS at all.
  EXPECT_EQ(Run("verify doc.pdf doc.pdf --trust root.pem", &out), 65);
  EXPECT_NE(out.find("not CMS"), std::string::npos) << out;
  // Truncated.
  std::string sig = testing::ReadTestFile(dir_.file("doc.pdf.p7s"));
  testing::WriteTestFile(dir_.file("cut.p7s"), sig.substr(0, sig.size() - 40));
  EXPECT_EQ(Run("verify doc.pdf cut.p7s --trust root.pem", &out), 65) << out;
  // Embedded content (not a detached signature).
  ASSERT_EQ(testing::RunCommand("openssl cms -sign -binary -nodetach -outform DER -in " +
                                ShellQuote(dir_.file("doc.pdf")) + " -signer " +
                                ShellQuote(dir_.file("s.crt")) + " -inkey " +
                                ShellQuote(dir_.file("s.key")) + " -out " +
                                ShellQuote(dir_.file("attached.p7m"))),
            0);
  EXPECT_EQ(Run("verify doc.pdf attached.p7m --trust root.pem", &out), 65);
  EXPECT_NE(out.find("detached"), std::string::npos) << out;
}

TEST_F(VerifyCliTest, VerifyPemSignatureIsAccepted) {
  SignDoc();
  ASSERT_EQ(testing::RunCommand("openssl cms -cmsout -inform DER -outform PEM -in " +
                                ShellQuote(dir_.file("doc.pdf.p7s")) + " -out " +
                                ShellQuote(dir_.file("doc.pem.p7s"))),
            0);
  std::string out;
  EXPECT_EQ(Run("verify doc.pdf doc.pem.p7s --trust root.pem", &out), 0) << out;
}

TEST_F(VerifyCliTest, VerifyUnreadableFilesExitSixtySixNamingThePath) {
  SignDoc();
  std::string out;
  EXPECT_EQ(Run("verify missing.pdf --trust root.pem", &out), 66);
  EXPECT_NE(out.find("missing.pdf"), std::string::npos) << out;
  EXPECT_EQ(Run("verify doc.pdf nosig.p7s --trust root.pem", &out), 66);
  EXPECT_NE(out.find("nosig.p7s"), std::string::npos) << out;
  EXPECT_EQ(Run("verify doc.pdf --trust roots-missing.pem", &out), 66);
  EXPECT_NE(out.find("roots-missing.pem"), std::string::npos) << out;
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --crl nocrl.crl", &out), 66);
  EXPECT_NE(out.find("nocrl.crl"), std::string::npos) << out;
  EXPECT_EQ(Run("verify doc.pdf --trust root.pem --untrusted nochain.pem", &out), 66);
  EXPECT_NE(out.find("nochain.pem"), std::string::npos) << out;
}

TEST_F(VerifyCliTest, VerifyJsonHasTheDocumentedShape) {
  CertSpec spec;
  spec.subject = "/CN=Nguyễn Thị \"Duyên\"/O=Công đoàn Bãi Cháy/C=VN";
  SignDoc(spec);
  std::string out;
  ASSERT_EQ(Run("verify doc.pdf --trust root.pem --json --lang vi", &out), 0) << out;
  EXPECT_EQ(out.rfind("{\"indication\":\"PASSED\",\"subIndication\":null,\"validationTime\":\"", 0),
            0u)
      << out;
  for (const char* key : {"\"signers\":[{", "\"indication\":", "\"subIndication\":",
                          "\"subject\":", "\"issuer\":", "\"serial\":", "\"signingTime\":\"",
                          "\"level\":\"CAdES-B-B\"", "\"revocation\":\"not-checked\""}) {
    EXPECT_NE(out.find(key), std::string::npos) << key << " in " << out;
  }
  // Language-neutral and correctly escaped UTF-8.
  EXPECT_NE(out.find("\"name\":\"Nguyễn Thị \\\"Duyên\\\"\""), std::string::npos) << out;
  EXPECT_EQ(out.find("Xác thực"), std::string::npos);
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(out.find('\n'), out.size() - 1) << "one line of JSON";
}

}  // namespace
}  // namespace sealpost
