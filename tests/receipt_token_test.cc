// A delivery receipt and a read notice sealed by a real SoftHSM2 token
// through pkcs11::OpenTokenSigner, verified by our verifier and by
// `openssl cms -verify`; and a receipt of the token's seal refused when
// another certificate is expected.
#include <gtest/gtest.h>

#include <ctime>

#include "crypto/checkpoint.h"
#include "crypto/receipt.h"
#include "pkcs11/open.h"
#include "tests/support/cms_peers.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

TEST(ReceiptTokenTest, IssueThroughSoftHsmVerifiesHereAndWithOpenssl) {
  testing::SoftHsm hsm;
  testing::TestCa ca = testing::TestCa::CreateRoot("/CN=Token Receipt Root/O=Test/C=VN");
  ASSERT_TRUE(hsm.InitToken("union-seal", "5678", "1234"));
  testing::CertSpec spec;
  spec.subject = "/CN=Con dấu/O=Công đoàn Bãi Cháy/C=VN";
  auto issued = hsm.AddKeyWithCert("union-seal", "1234", ca, testing::KeyType::kP256, "01",
                                   "seal", spec);
  ASSERT_TRUE(issued.has_value());
  pkcs11::OpenOptions opts;
  opts.pin_file = hsm.WritePinFile("1234\n");
  opts.interactive = false;
  const std::string uri = hsm.KeyUri("union-seal", "seal");
  auto signer = pkcs11::OpenTokenSigner(uri, opts);
  ASSERT_TRUE(signer) << signer.error().ToString();

  Checkpoint cp;
  cp.origin = "cd-baichay.vn/archive";
  cp.size = 7;
  cp.root.fill(0x11);
  auto body = SerializeCheckpoint(cp);
  ASSERT_TRUE(body.has_value());
  auto cp_sig = SignCheckpoint(**signer, KeyRef{uri}, *body);
  ASSERT_TRUE(cp_sig.has_value()) << cp_sig.error().ToString();

  DeliveryReceipt r;
  r.document_id = "cd-quangninh/2026/0007";
  r.content_sha256 = std::string(64, 'a');
  r.recipient = "cd-baichay";
  r.received_at = std::time(nullptr);
  r.checkpoint = *body;
  r.checkpoint_signature = *cp_sig;
  auto s = IssueDeliveryReceipt(**signer, KeyRef{uri}, r, std::nullopt);
  ASSERT_TRUE(s.has_value()) << s.error().ToString();

  ReceiptExpectation e{r.document_id, r.content_sha256, "cd-baichay", issued->cert.get()};
  auto v = VerifyDeliveryReceipt(*s, e, "receipt");
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  EXPECT_EQ(*v, r);

  std::string json = hsm.file("receipt.json");
  std::string p7s = hsm.file("receipt.json.p7s");
  std::string ca_pem = hsm.file("ca.pem");
  testing::WriteTestFile(json, s->json);
  testing::WriteTestFile(p7s, s->signature);
  testing::WriteTestFile(ca_pem, testing::CertToPem(ca.cert()));
  EXPECT_TRUE(testing::OpensslCmsVerifies(p7s, json, ca_pem, "-cades"));

  ReadNotice n{r.document_id, "cd-baichay", "clerk", std::time(nullptr)};
  auto notice = SignReadNotice(**signer, KeyRef{uri}, n);
  ASSERT_TRUE(notice.has_value()) << notice.error().ToString();
  EXPECT_TRUE(VerifyReadNotice(*notice, e, "notice").has_value());

  // Expecting another union's seal: refused, naming the token's seal.
  testing::Issued other = ca.Issue(testing::CertSpec());
  e.seal = other.cert.get();
  auto refused = VerifyDeliveryReceipt(*s, e, "receipt");
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message().find("not by the seal"), std::string::npos)
      << refused.error().message();
}

}  // namespace
}  // namespace sealpost::crypto
