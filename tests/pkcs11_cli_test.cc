// `sealpost token ...` through the real binary, a real SoftHSM2 token and
// openssl as the independent checker of the CSRs.
#include <sys/stat.h>

#include <chrono>

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost {
namespace {

using testing::FaultModule;
using testing::KeyType;
using testing::RunCommand;
using testing::ShellQuote;
using testing::SoftHsm;
using testing::TestCa;

constexpr char kToken[] = "union-seal";
constexpr char kPin[] = "123456";

class TokenCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("SEALPOST_PKCS11_ALLOWLIST");
    ASSERT_TRUE(hsm_.InitToken(kToken, "87654321", kPin));
    pin_file_ = hsm_.WritePinFile(std::string(kPin) + "\n");
  }
  int Sealpost(const std::string& args, std::string* out) {
    return RunCommand(std::string(SEALPOST_CLI_PATH) + " " + args + " </dev/null", out);
  }
  bool Exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }

  SoftHsm hsm_;
  TestCa ca_ = TestCa::CreateRoot("/CN=CLI Root/O=Công đoàn Việt Nam/C=VN");
  std::string pin_file_;
};

TEST_F(TokenCliTest, ListShowsTokenLabelSerialAndUri) {
  std::string out;
  ASSERT_EQ(Sealpost("token list --module " + std::string(testing::kSoftHsmModule), &out), 0) << out;
  EXPECT_NE(out.find("Token: union-seal"), std::string::npos) << out;
  EXPECT_NE(out.find("Serial: "), std::string::npos) << out;
  EXPECT_NE(out.find("login-required"), std::string::npos) << out;
  EXPECT_NE(out.find("URI: pkcs11:serial="), std::string::npos) << out;
  ASSERT_EQ(Sealpost("--lang vi token list --module " + std::string(testing::kSoftHsmModule), &out), 0);
  EXPECT_NE(out.find("Số sê-ri: "), std::string::npos) << out;
}

TEST_F(TokenCliTest, ListWithModuleNotAllowedExits77) {
  hsm_.UseAllowlist({"/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"});
  std::string out;
  EXPECT_EQ(Sealpost("token list --module " + std::string(testing::kSoftHsmModule), &out), 77) << out;
  EXPECT_NE(out.find("not in the module allowlist"), std::string::npos) << out;
}

TEST_F(TokenCliTest, KeysShowsKeyAndCertificateWithUris) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal").has_value());
  std::string out;
  ASSERT_EQ(Sealpost("token keys " + ShellQuote(hsm_.KeyUri(kToken, "seal")) + " --pin-file " +
                         ShellQuote(pin_file_),
                     &out),
            0)
      << out;
  EXPECT_NE(out.find("Private key: seal  id=01  EC P-256"), std::string::npos) << out;
  EXPECT_NE(out.find("Certificate: seal  id=01"), std::string::npos) << out;
  EXPECT_NE(out.find("URI: pkcs11:serial="), std::string::npos) << out;
  EXPECT_NE(out.find("type=private"), std::string::npos) << out;
  EXPECT_EQ(out.find(kPin), std::string::npos) << "the PIN must never be printed";
}

TEST_F(TokenCliTest, KeysWithPinValueInUriExits64) {
  std::string out;
  EXPECT_EQ(Sealpost("token keys " + ShellQuote(hsm_.KeyUri(kToken, "seal") + "&pin-value=123456"), &out), 64)
      << out;
  EXPECT_NE(out.find("pin-value"), std::string::npos) << out;
  EXPECT_EQ(out.find("123456"), std::string::npos) << out;
}

TEST_F(TokenCliTest, KeysWithWrongPinExits77) {
  std::string wrong = hsm_.WritePinFile("000000\n");
  std::string out;
  EXPECT_EQ(Sealpost("token keys " + ShellQuote(hsm_.KeyUri(kToken, "seal")) + " --pin-file " +
                         ShellQuote(wrong),
                     &out),
            77)
      << out;
  EXPECT_NE(out.find("PIN incorrect"), std::string::npos) << out;
}

TEST_F(TokenCliTest, KeysWithUnknownTokenExits66) {
  std::string out;
  EXPECT_EQ(Sealpost("token keys " + ShellQuote(hsm_.KeyUri("nope", "seal")) + " --pin-file " +
                         ShellQuote(pin_file_),
                     &out),
            66)
      << out;
  EXPECT_NE(out.find("no token matches"), std::string::npos) << out;
}

class TokenCliCsrTest : public TokenCliTest, public ::testing::WithParamInterface<KeyType> {};

TEST_P(TokenCliCsrTest, CsrWithVietnameseSubjectAndEmailVerifiesWithOpenssl) {
  EvpPkeyPtr key = testing::GenerateKey(GetParam());
  ASSERT_TRUE(hsm_.ImportKey(kToken, kPin, key.get(), "0a", "officer"));
  std::string req = hsm_.file("req.pem");
  std::string out;
  ASSERT_EQ(Sealpost("token csr " + ShellQuote(hsm_.KeyUri(kToken, "officer")) +
                         " --subject " + ShellQuote("/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN") +
                         " --email duyen@congdoan.vn -o " + ShellQuote(req) + " --pin-file " +
                         ShellQuote(pin_file_),
                     &out),
            0)
      << out;
  std::string text;
  ASSERT_EQ(RunCommand("openssl req -in " + ShellQuote(req) + " -verify -noout -text -nameopt utf8", &text), 0)
      << text;
  EXPECT_NE(text.find("verify OK"), std::string::npos) << text;
  EXPECT_NE(text.find("CN=Nguyễn Thị Duyên"), std::string::npos) << text;
  EXPECT_NE(text.find("O=Công đoàn Bãi Cháy"), std::string::npos) << text;
  EXPECT_NE(text.find("email:duyen@congdoan.vn"), std::string::npos) << text;
  std::string asn1;
  ASSERT_EQ(RunCommand("openssl asn1parse -in " + ShellQuote(req), &asn1), 0) << asn1;
  EXPECT_NE(asn1.find("UTF8STRING        :Nguyễn Thị Duyên"), std::string::npos) << asn1;
  EXPECT_EQ(asn1.find("T61STRING"), std::string::npos) << asn1;
  EXPECT_EQ(asn1.find("BMPSTRING"), std::string::npos) << asn1;
  // The request carries the token key's public key.
  X509ReqPtr parsed;
  {
    BioPtr bio(BIO_new_file(req.c_str(), "r"));
    ASSERT_TRUE(bio);
    parsed.reset(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  }
  ASSERT_TRUE(parsed);
  EXPECT_EQ(EVP_PKEY_eq(X509_REQ_get0_pubkey(parsed.get()), key.get()), 1);
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, TokenCliCsrTest,
                         ::testing::Values(KeyType::kRsa2048, KeyType::kP256, KeyType::kP384),
                         [](const auto& info) { return std::string(testing::KeyTypeName(info.param)); });

TEST_F(TokenCliTest, CsrWithBadSubjectExits64AndWritesNothing) {
  std::string req = hsm_.file("req.pem");
  std::string out;
  EXPECT_EQ(Sealpost("token csr " + ShellQuote(hsm_.KeyUri(kToken, "officer")) +
                         " --subject " + ShellQuote("/XX=foo") + " -o " + ShellQuote(req) +
                         " --pin-file " + ShellQuote(pin_file_),
                     &out),
            64)
      << out;
  EXPECT_NE(out.find("unknown attribute 'XX'"), std::string::npos) << out;
  EXPECT_FALSE(Exists(req));
}

TEST_F(TokenCliTest, ImportCertThenKeysShowsCertificate) {
  EvpPkeyPtr key = testing::GenerateKey(KeyType::kP256);
  ASSERT_TRUE(hsm_.ImportKey(kToken, kPin, key.get(), "0b", "officer"));
  testing::CertSpec spec;
  spec.subject = "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN";
  X509Ptr cert = ca_.IssueFor(spec, key.get());
  std::string cert_path = hsm_.file("officer.pem");
  testing::WriteTestFile(cert_path, testing::CertToPem(cert.get()));
  std::string uri = hsm_.KeyUri(kToken, "officer");
  std::string out;
  ASSERT_EQ(Sealpost("token import-cert " + ShellQuote(uri) + " " + ShellQuote(cert_path) +
                         " --pin-file " + ShellQuote(pin_file_),
                     &out),
            0)
      << out;
  ASSERT_EQ(Sealpost("token keys " + ShellQuote(uri) + " --pin-file " + ShellQuote(pin_file_), &out), 0)
      << out;
  EXPECT_NE(out.find("Certificate: officer  id=0b"), std::string::npos) << out;
  EXPECT_NE(out.find("Nguyễn Thị Duyên"), std::string::npos) << out;
  // The certificate object is readable by a stock tool, with the key's id.
  std::string objs;
  ASSERT_EQ(RunCommand(std::string("pkcs11-tool --module ") + testing::kSoftHsmModule +
                           " --token-label union-seal --list-objects --type cert",
                       &objs),
            0)
      << objs;
  EXPECT_NE(objs.find("ID:         0b"), std::string::npos) << objs;
  EXPECT_NE(objs.find("label:      officer"), std::string::npos) << objs;
}

TEST_F(TokenCliTest, ImportCertForAnotherKeyExits65) {
  EvpPkeyPtr key = testing::GenerateKey(KeyType::kP256);
  ASSERT_TRUE(hsm_.ImportKey(kToken, kPin, key.get(), "0c", "officer"));
  auto other = ca_.Issue(testing::CertSpec(), KeyType::kP256);
  std::string cert_path = hsm_.file("other.pem");
  testing::WriteTestFile(cert_path, testing::CertToPem(other.cert.get()));
  std::string out;
  EXPECT_EQ(Sealpost("token import-cert " + ShellQuote(hsm_.KeyUri(kToken, "officer")) + " " +
                         ShellQuote(cert_path) + " --pin-file " + ShellQuote(pin_file_),
                     &out),
            65)
      << out;
  EXPECT_NE(out.find("does not match"), std::string::npos) << out;
}

TEST_F(TokenCliTest, ImportCertWithMissingFileExits66BeforeAskingForPin) {
  std::string out;
  EXPECT_EQ(Sealpost("token import-cert " + ShellQuote(hsm_.KeyUri(kToken, "officer")) + " " +
                         ShellQuote(hsm_.file("missing.pem")),
                     &out),
            66)
      << out;
}

TEST_F(TokenCliTest, HangThroughCliExits69WithinBound) {
  if (!FaultModule::Available()) GTEST_SKIP() << "built without tests/fault_pkcs11";
  EvpPkeyPtr key = testing::GenerateKey(KeyType::kP256);
  ASSERT_TRUE(hsm_.ImportKey(kToken, kPin, key.get(), "0d", "officer"));
  FaultModule fault(hsm_);
  fault.Set("hang.C_Sign=60\n");
  std::string out;
  auto t0 = std::chrono::steady_clock::now();
  int rc = Sealpost("token csr " + ShellQuote(hsm_.KeyUri(kToken, "officer", fault.module_path())) +
                        " --subject /CN=x -o " + ShellQuote(hsm_.file("req.pem")) + " --timeout 2 --pin-file " +
                        ShellQuote(pin_file_),
                    &out);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(rc, 69) << out;
  EXPECT_NE(out.find("sealpost: token unavailable: C_Sign did not answer within 2 s"), std::string::npos)
      << out;
  EXPECT_LT(elapsed, 4.0) << "the CLI must exit promptly, not wait for the hung call";
  RecordProperty("cli_exit_after_seconds", std::to_string(elapsed));
  EXPECT_FALSE(Exists(hsm_.file("req.pem")));
}

}  // namespace
}  // namespace sealpost
