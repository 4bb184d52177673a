// Signing through a real SoftHSM2 token: pkcs11::OpenTokenSigner gives the
// crypto::Signer, crypto::SignFile builds the CAdES B-B signature, openssl
// (and certtool) verify it. One key type per test, all on one token.
#include <gtest/gtest.h>

#include "crypto/cades_sign.h"
#include "pkcs11/open.h"
#include "tests/support/cms_peers.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

using testing::KeyType;

class TokenSignTest : public ::testing::TestWithParam<KeyType> {
 protected:
  TokenSignTest() : ca_(testing::TestCa::CreateRoot("/CN=Token Test Root/O=Test/C=VN")) {}

  testing::SoftHsm hsm_;
  testing::TestCa ca_;
};

TEST_P(TokenSignTest, SignFileThroughSoftHsmVerifiesWithOpensslAndCerttool) {
  ASSERT_TRUE(hsm_.InitToken("union-seal", "5678", "1234"));
  testing::CertSpec spec;
  spec.subject = "/CN=Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN";
  auto issued = hsm_.AddKeyWithCert("union-seal", "1234", ca_, GetParam(), "01", "seal", spec);
  ASSERT_TRUE(issued.has_value());
  pkcs11::OpenOptions opts;
  opts.pin_file = hsm_.WritePinFile("1234\n");
  opts.interactive = false;
  std::string uri = hsm_.KeyUri("union-seal", "seal");
  auto signer = pkcs11::OpenTokenSigner(uri, opts);
  ASSERT_TRUE(signer) << signer.error().ToString();

  std::string content = hsm_.file("minutes.txt");
  testing::WriteTestFile(content, "Biên bản họp ban chấp hành\n");
  auto der = SignFile(**signer, KeyRef{uri}, content, {});
  ASSERT_TRUE(der) << der.error().ToString();
  std::string sig = hsm_.file("minutes.txt.p7s");
  testing::WriteTestFile(sig, *der);
  std::string ca_pem = hsm_.file("ca.pem");
  testing::WriteTestFile(ca_pem, testing::CertToPem(ca_.cert()));
  EXPECT_TRUE(testing::OpensslCmsVerifies(sig, content, ca_pem, "-cades"));
  EXPECT_TRUE(testing::CerttoolVerifiesAll(sig, content, ca_pem, 1));
  testing::WriteTestFile(content, "Biên bản họp ban chấp hành.\n");
  EXPECT_FALSE(testing::OpensslCmsVerifies(sig, content, ca_pem));
}

INSTANTIATE_TEST_SUITE_P(Keys, TokenSignTest,
                         ::testing::Values(KeyType::kRsa2048, KeyType::kRsa3072, KeyType::kP256,
                                           KeyType::kP384),
                         [](const auto& info) { return std::string(testing::KeyTypeName(info.param)); });

}  // namespace
}  // namespace sealpost::crypto
