// Our verifier on signatures made by the peers' own programs: `openssl cms
// -sign` (plain and -cades), gpgsm --detach-sign, certtool
// --p7-detached-sign --p7-time; and the reverse direction where it matters:
// a peer that refuses what we refuse.
#include <gtest/gtest.h>

#include <string>

#include "crypto/report.h"
#include "crypto/verify.h"
#include "tests/support/cms_peers.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

using testing::CertSpec;
using testing::Issued;
using testing::KeyType;
using testing::TempDir;
using testing::TestCa;

class InteropVerifyTest : public ::testing::Test {
 protected:
  InteropVerifyTest()
      : root_(TestCa::CreateRoot("/CN=Liên đoàn Lao động Tỉnh/O=Test Federation/C=VN")) {
    testing::WriteTestFile(dir_.file("root.pem"), testing::CertToPem(root_.cert()));
    testing::WriteTestFile(dir_.file("doc.txt"), content_);
  }

  // A signer whose certificate and key are also on disk (PEM) for the tools.
  Issued MakeSigner(const std::string& name, CertSpec spec = {},
                    KeyType type = KeyType::kP256) {
    if (spec.subject == CertSpec{}.subject) {
      spec.subject = "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/UID=MST:0101234567/C=VN";
    }
    Issued s = root_.Issue(spec, type);
    testing::WriteTestFile(dir_.file(name + ".crt"), testing::CertToPem(s.cert.get()));
    testing::WriteTestFile(dir_.file(name + ".key"), testing::KeyToPkcs8Pem(s.key.get()));
    return s;
  }

  Report Verify(const std::string& sig_path, TrustOptions options = {},
                std::vector<std::string> crls = {}) {
    auto store = LoadTrustStore({{dir_.file("root.pem")}, {}, crls}, options);
    EXPECT_TRUE(store) << store.error().message();
    auto v = Verifier::Create(std::move(*store));
    std::string sig = testing::ReadTestFile(sig_path);
    auto der = DecodeSignature(sig, sig_path);
    EXPECT_TRUE(der) << der.error().message();
    auto report = v->VerifyFile(dir_.file("doc.txt"), *der);
    EXPECT_TRUE(report) << report.error().message();
    return report ? *report : Report{};
  }

  void ChangeOneByte() {
    std::string changed = content_;
    changed[changed.size() / 2] ^= 0x20;
    testing::WriteTestFile(dir_.file("doc.txt"), changed);
  }

  TempDir dir_;
  TestCa root_;
  const std::string content_ = "Nghị quyết Đại hội Công đoàn cơ sở, nhiệm kỳ 2026–2031.\n";
};

TEST_F(InteropVerifyTest, VerifyOpensslPlainSignaturePassesAsCms) {
  MakeSigner("s");
  ASSERT_TRUE(testing::OpensslCmsSign(dir_.file("doc.txt"), dir_.file("doc.p7s"), dir_.file("s.crt"),
                                      dir_.file("s.key")));
  Report r = Verify(dir_.file("doc.p7s"));
  EXPECT_EQ(r.indication, Indication::kPassed);
  ASSERT_EQ(r.signers.size(), 1u);
  EXPECT_EQ(r.signers[0].level, Level::kCms);
  EXPECT_EQ(r.signers[0].name, "Nguyễn Thị Duyên");
  ChangeOneByte();
  Report changed = Verify(dir_.file("doc.p7s"));
  EXPECT_EQ(changed.indication, Indication::kFailed);
  EXPECT_EQ(changed.sub_indication, SubIndication::kHashFailure);
}

TEST_F(InteropVerifyTest, VerifyOpensslCadesSignaturePassesAsCadesBB) {
  MakeSigner("s", {}, KeyType::kRsa2048);
  ASSERT_TRUE(testing::OpensslCmsSign(dir_.file("doc.txt"), dir_.file("doc.p7s"), dir_.file("s.crt"),
                                      dir_.file("s.key"), "-cades -md sha384"));
  Report r = Verify(dir_.file("doc.p7s"));
  EXPECT_EQ(r.indication, Indication::kPassed);
  ASSERT_EQ(r.signers.size(), 1u);
  EXPECT_EQ(r.signers[0].level, Level::kCadesBB);
  EXPECT_EQ(r.signers[0].digest_algorithm, "SHA-384");
  ChangeOneByte();
  EXPECT_EQ(Verify(dir_.file("doc.p7s")).sub_indication, SubIndication::kHashFailure);
}

TEST_F(InteropVerifyTest, VerifyCerttoolSignaturePasses) {
  MakeSigner("s");
  ASSERT_TRUE(testing::CerttoolSign(dir_.file("doc.txt"), dir_.file("doc.p7s"), dir_.file("s.crt"),
                                    dir_.file("s.key")));
  Report r = Verify(dir_.file("doc.p7s"));
  EXPECT_EQ(r.indication, Indication::kPassed)
      << (r.signers.empty() ? "" : std::string(ReasonName(r.signers[0].reason)) + " " + r.signers[0].detail);
  ASSERT_EQ(r.signers.size(), 1u);
  EXPECT_TRUE(r.signers[0].signing_time.has_value());
  ChangeOneByte();
  EXPECT_EQ(Verify(dir_.file("doc.p7s")).sub_indication, SubIndication::kHashFailure);
}

TEST_F(InteropVerifyTest, VerifyGpgsmDetachedSignaturePasses) {
  Issued s = MakeSigner("s", {}, KeyType::kRsa2048);
  testing::GpgsmHome gpg(dir_.path());
  ASSERT_TRUE(gpg.TrustCa(root_.cert()));
  ASSERT_TRUE(gpg.ImportIdentity(s.cert.get(), s.key.get()));
  ASSERT_TRUE(gpg.DetachSign(dir_.file("doc.txt"), dir_.file("doc.p7s"), s.cert.get()));
  Report r = Verify(dir_.file("doc.p7s"));
  EXPECT_EQ(r.indication, Indication::kPassed)
      << (r.signers.empty() ? "" : std::string(ReasonName(r.signers[0].reason)) + " " + r.signers[0].detail);
  ASSERT_EQ(r.signers.size(), 1u);
  EXPECT_EQ(r.signers[0].name, "Nguyễn Thị Duyên");
  ChangeOneByte();
  EXPECT_EQ(Verify(dir_.file("doc.p7s")).sub_indication, SubIndication::kHashFailure);
}

TEST_F(InteropVerifyTest, VerifyOpensslSignatureOfRevokedSignerFailsRevoked) {
  CertSpec spec;
  spec.crl_dp = "URI:http://127.0.0.1/root.crl";
  Issued s = MakeSigner("s", spec);
  X509CrlPtr crl = root_.MakeCrl({ASN1_INTEGER_get(X509_get0_serialNumber(s.cert.get()))});
  testing::WriteTestFile(dir_.file("root.crl"), testing::CrlToDer(crl.get()));
  ASSERT_TRUE(testing::OpensslCmsSign(dir_.file("doc.txt"), dir_.file("doc.p7s"), dir_.file("s.crt"),
                                      dir_.file("s.key"), "-cades"));
  Report r = Verify(dir_.file("doc.p7s"), {}, {dir_.file("root.crl")});
  EXPECT_EQ(r.indication, Indication::kFailed);
  EXPECT_EQ(r.sub_indication, SubIndication::kRevoked);
  // openssl itself agrees that the signer is revoked.
  testing::WriteTestFile(dir_.file("root+crl.pem"),
                         testing::CertToPem(root_.cert()) + testing::CrlToPem(crl.get()));
  EXPECT_FALSE(testing::OpensslCmsVerifies(dir_.file("doc.p7s"), dir_.file("doc.txt"),
                                           dir_.file("root+crl.pem"), "-crl_check"));
}

}  // namespace
}  // namespace sealpost::crypto
