// The token layer against a real SoftHSM2 token.
#include <cctype>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "pkcs11/allowlist.h"
#include "pkcs11/open.h"
#include "pkcs11/token.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost::pkcs11 {
namespace {

using testing::KeyType;
using testing::SoftHsm;
using testing::TestCa;

constexpr char kToken[] = "union-seal";
constexpr char kSoPin[] = "87654321";
constexpr char kPin[] = "123456";

class TokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv(kAllowlistEnv);
    ASSERT_TRUE(hsm_.InitToken(kToken, kSoPin, kPin));
  }
  OpenOptions Options(const std::string& pin_content = std::string(kPin) + "\n") {
    OpenOptions o;
    o.pin_file = hsm_.WritePinFile(pin_content);
    o.interactive = false;
    o.call_timeout = std::chrono::seconds(10);
    return o;
  }
  std::string Digest(crypto::DigestAlg alg, const std::string& data) {
    std::string out(EVP_MAX_MD_SIZE, '\0');
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &len,
               crypto::DigestAlgMd(alg), nullptr);
    out.resize(len);
    return out;
  }
  // Verifies a digest signature with the certificate's public key, the way
  // a CMS verifier would (RSA PKCS#1 v1.5 over DigestInfo, or DER ECDSA).
  bool Verify(X509* cert, crypto::DigestAlg alg, const std::string& digest, const std::string& sig) {
    EVP_PKEY* pub = X509_get0_pubkey(cert);
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(pub, nullptr));
    if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) return false;
    if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA) {
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING);
    }
    EVP_PKEY_CTX_set_signature_md(ctx.get(), crypto::DigestAlgMd(alg));
    return EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                           reinterpret_cast<const unsigned char*>(digest.data()), digest.size()) == 1;
  }

  SoftHsm hsm_;
  TestCa ca_ = TestCa::CreateRoot("/CN=Test Root/O=Công đoàn Test/C=VN");
};

struct KeyCase {
  KeyType type;
  crypto::DigestAlg alg;
};

class TokenKeyTypeTest : public TokenTest, public ::testing::WithParamInterface<KeyCase> {};

TEST_P(TokenKeyTypeTest, SignDigestWithTokenKeyVerifiesWithCertificate) {
  auto issued = hsm_.AddKeyWithCert(kToken, kPin, ca_, GetParam().type, "a1", "seal");
  ASSERT_TRUE(issued.has_value());
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal"), Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  crypto::KeyRef key{hsm_.KeyUri(kToken, "seal")};

  auto cert = (*signer)->Certificate(key);
  ASSERT_TRUE(cert.has_value()) << cert.error().message();
  EXPECT_EQ(X509_cmp(cert->get(), issued->cert.get()), 0) << "Certificate() is not the imported one";

  std::string digest = Digest(GetParam().alg, "Công văn số 12/CĐ");
  auto sig = (*signer)->Sign(key, GetParam().alg, digest);
  ASSERT_TRUE(sig.has_value()) << sig.error().message();
  EXPECT_TRUE(Verify(issued->cert.get(), GetParam().alg, digest, *sig));
  // A different digest must not verify (the check can fail).
  std::string other = Digest(GetParam().alg, "something else");
  EXPECT_FALSE(Verify(issued->cert.get(), GetParam().alg, other, *sig));
}

INSTANTIATE_TEST_SUITE_P(
    AllKeyTypes, TokenKeyTypeTest,
    ::testing::Values(KeyCase{KeyType::kRsa2048, crypto::DigestAlg::kSha256},
                      KeyCase{KeyType::kRsa3072, crypto::DigestAlg::kSha384},
                      KeyCase{KeyType::kP256, crypto::DigestAlg::kSha256},
                      KeyCase{KeyType::kP384, crypto::DigestAlg::kSha384}),
    [](const auto& info) {
      std::string name;
      for (char c : std::string(testing::KeyTypeName(info.param.type))) {
        if (std::isalnum(static_cast<unsigned char>(c))) name += c;
      }
      return name;
    });
TEST_F(TokenTest, SignWithWrongDigestSizeFails) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal").has_value());
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal"), Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  auto sig = (*signer)->Sign(crypto::KeyRef{hsm_.KeyUri(kToken, "seal")}, crypto::DigestAlg::kSha256,
                             std::string(20, 'x'));
  ASSERT_FALSE(sig.has_value());
  EXPECT_EQ(sig.error().code(), Code::kInvalidArgument);
}

TEST_F(TokenTest, OpenSelectsTokenByLabelAmongSeveral) {
  ASSERT_TRUE(hsm_.InitToken("officer-duyen", kSoPin, "999999"));
  auto a = hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "key");
  auto b = hsm_.AddKeyWithCert("officer-duyen", "999999", ca_, KeyType::kP256, "01", "key");
  ASSERT_TRUE(a.has_value() && b.has_value());
  auto signer = OpenTokenSigner(hsm_.KeyUri("officer-duyen", "key"), Options("999999\n"));
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  auto cert = (*signer)->Certificate(crypto::KeyRef{hsm_.KeyUri("officer-duyen", "key")});
  ASSERT_TRUE(cert.has_value()) << cert.error().message();
  EXPECT_EQ(X509_cmp(cert->get(), b->cert.get()), 0);
  EXPECT_NE(X509_cmp(cert->get(), a->cert.get()), 0);
}

TEST_F(TokenTest, OpenWithUnknownTokenLabelFailsNotFound) {
  auto signer = OpenTokenSigner(hsm_.KeyUri("no-such-token", "seal"), Options());
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kNotFound);
  EXPECT_NE(signer.error().message().find("no-such-token"), std::string::npos) << signer.error().message();
  EXPECT_NE(signer.error().message().find(kToken), std::string::npos) << "should list tokens present";
}

TEST_F(TokenTest, OpenWithUnknownObjectFailsNotFound) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal").has_value());
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "nope"), Options());
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kNotFound);
  EXPECT_NE(signer.error().message().find("object=nope"), std::string::npos) << signer.error().message();
}

TEST_F(TokenTest, OpenSelectsKeyById) {
  auto a = hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "0a0b", "first");
  auto b = hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "0c0d", "second");
  ASSERT_TRUE(a.has_value() && b.has_value());
  std::string uri = "pkcs11:token=union-seal;id=%0c%0d?module-path=/usr/lib/softhsm/libsofthsm2.so";
  auto signer = OpenTokenSigner(uri, Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  auto cert = (*signer)->Certificate(crypto::KeyRef{uri});
  ASSERT_TRUE(cert.has_value()) << cert.error().message();
  EXPECT_EQ(X509_cmp(cert->get(), b->cert.get()), 0);
}

TEST_F(TokenTest, OpenModuleNotInAllowlistIsRefused) {
  hsm_.UseAllowlist({"/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"});
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal"), Options());
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kPermissionDenied);
  // Names the real path, not the symlink.
  EXPECT_NE(signer.error().message().find("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
            std::string::npos)
      << signer.error().message();
}

TEST_F(TokenTest, OpenModuleAllowedThroughSymlinkIsAccepted) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal").has_value());
  // The allowlist names the real file; the URI names a symlink of our own.
  std::string link = hsm_.file("my-softhsm.so");
  ASSERT_EQ(::symlink(testing::kSoftHsmModule, link.c_str()), 0);
  hsm_.UseAllowlist({"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"});
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal", link), Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
}

TEST_F(TokenTest, OpenModuleByNameResolvesThroughAllowlist) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal").has_value());
  auto signer = OpenTokenSigner("pkcs11:token=union-seal;object=seal?module-name=softhsm2", Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  auto bad = OpenTokenSigner("pkcs11:token=union-seal;object=seal?module-name=evil", Options());
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kPermissionDenied);
}

TEST_F(TokenTest, OpenWithPinFileEndingInLfOrCrlfWorks) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal").has_value());
  for (const std::string& content : {std::string(kPin) + "\n", std::string(kPin) + "\r\n",
                                     std::string(kPin)}) {
    auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal"), Options(content));
    EXPECT_TRUE(signer.has_value()) << signer.error().message();
  }
}

TEST_F(TokenTest, OpenWithPinSourceInUriWorks) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal").has_value());
  std::string pin = hsm_.WritePinFile(std::string(kPin) + "\n");
  OpenOptions o;
  o.interactive = false;
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal") + "&pin-source=file:" + pin, o);
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
}

TEST_F(TokenTest, OpenWithSystemdCredentialWorks) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal").has_value());
  std::string dir = hsm_.file("creds");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  testing::WriteTestFile(dir + "/sealpost-token-pin", std::string(kPin) + "\n");
  ::setenv("CREDENTIALS_DIRECTORY", dir.c_str(), 1);
  OpenOptions o;
  o.interactive = false;
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal"), o);
  ::unsetenv("CREDENTIALS_DIRECTORY");
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
}

TEST_F(TokenTest, OpenWithUnreadablePinFileFailsClearly) {
  OpenOptions o = Options();
  o.pin_file = hsm_.file("does-not-exist");
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal"), o);
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kNotFound);
  EXPECT_NE(signer.error().message().find("PIN file"), std::string::npos) << signer.error().message();
  EXPECT_NE(signer.error().message().find("does-not-exist"), std::string::npos);
}

TEST_F(TokenTest, OpenWithoutAnyPinSourceFailsWhenNotInteractive) {
  OpenOptions o;
  o.interactive = false;
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal"), o);
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kInvalidArgument);
  EXPECT_NE(signer.error().message().find("--pin-file"), std::string::npos);
}

TEST_F(TokenTest, OpenWithPinValueInUriIsRefused) {
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal") + "&pin-value=123456", Options());
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kInvalidArgument);
  EXPECT_NE(signer.error().message().find("pin-value"), std::string::npos);
  EXPECT_EQ(signer.error().message().find("123456"), std::string::npos);
}

TEST_F(TokenTest, OpenWithWrongPinFailsPermissionDenied) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal").has_value());
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal"), Options("000000\n"));
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kPermissionDenied);
  EXPECT_NE(signer.error().message().find("PIN incorrect"), std::string::npos) << signer.error().message();
  EXPECT_EQ(signer.error().message().find("000000"), std::string::npos);
}

TEST_F(TokenTest, ListModuleShowsTokenWithLabelAndSerial) {
  auto listing = ListModule(testing::kSoftHsmModule, Options());
  ASSERT_TRUE(listing.has_value()) << listing.error().message();
  EXPECT_EQ(listing->path, "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so");
  bool found = false;
  for (const auto& s : listing->slots) {
    if (s.token_present && s.token.label == kToken) {
      found = true;
      EXPECT_FALSE(s.token.serial.empty());
      EXPECT_NE(TokenFlagNames(s.token.flags).find("token-initialized"), std::string::npos);
      EXPECT_NE(s.token.uri.find("token=union-seal"), std::string::npos);
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(TokenTest, ListObjectsShowsKeyAndCertificateWithUris) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kRsa2048, "01", "seal").has_value());
  auto token = Token::Open(hsm_.KeyUri(kToken, "seal"), Options());
  ASSERT_TRUE(token.has_value()) << token.error().message();
  auto objects = (*token)->ListObjects();
  ASSERT_TRUE(objects.has_value()) << objects.error().message();
  int priv = 0, certs = 0;
  for (const auto& o : *objects) {
    if (o.kind == ObjectInfo::Kind::kPrivateKey) {
      ++priv;
      EXPECT_EQ(o.label, "seal");
      EXPECT_EQ(o.algorithm, "RSA-2048");
      // The listed URI opens the same key.
      auto again = (*token)->PublicKey(crypto::KeyRef{o.uri});
      EXPECT_TRUE(again.has_value()) << o.uri;
    }
    if (o.kind == ObjectInfo::Kind::kCertificate) {
      ++certs;
      EXPECT_NE(o.subject.find("Test Signer"), std::string::npos) << o.subject;
    }
  }
  EXPECT_EQ(priv, 1);
  EXPECT_EQ(certs, 1);
}

TEST_F(TokenTest, StoreCertificateThenCertificateReturnsIt) {
  EvpPkeyPtr key = testing::GenerateKey(KeyType::kP256);
  ASSERT_TRUE(hsm_.ImportKey(kToken, kPin, key.get(), "05", "officer"));
  OpenOptions o = Options();
  o.read_write = true;
  auto token = Token::Open(hsm_.KeyUri(kToken, "officer"), o);
  ASSERT_TRUE(token.has_value()) << token.error().message();
  crypto::KeyRef ref{hsm_.KeyUri(kToken, "officer")};
  auto none = (*token)->Certificate(ref);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code(), Code::kNotFound);

  // A certificate for another key is refused.
  auto other = ca_.Issue(testing::CertSpec(), KeyType::kP256);
  Status wrong = (*token)->StoreCertificate(ref, other.cert.get());
  EXPECT_EQ(wrong.code(), Code::kFailedPrecondition) << wrong.message();

  X509Ptr cert = ca_.IssueFor(testing::CertSpec(), key.get());
  Status s = (*token)->StoreCertificate(ref, cert.get());
  ASSERT_TRUE(s.ok()) << s.message();
  auto got = (*token)->Certificate(ref);
  ASSERT_TRUE(got.has_value()) << got.error().message();
  EXPECT_EQ(X509_cmp(got->get(), cert.get()), 0);
  // Storing the same one again changes nothing and succeeds.
  EXPECT_TRUE((*token)->StoreCertificate(ref, cert.get()).ok());
}

TEST_F(TokenTest, KeyUriForAnotherTokenIsRejected) {
  ASSERT_TRUE(hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal").has_value());
  auto signer = OpenTokenSigner(hsm_.KeyUri(kToken, "seal"), Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  auto cert = (*signer)->Certificate(crypto::KeyRef{hsm_.KeyUri("other-token", "seal")});
  ASSERT_FALSE(cert.has_value());
  EXPECT_EQ(cert.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace sealpost::pkcs11
