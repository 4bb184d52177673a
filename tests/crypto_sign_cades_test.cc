// CAdES B-B signing in the library (crypto/cades_sign.h) with a software key:
// structure, algorithms, attributes, chain, append; every signature is also
// checked by `openssl cms -verify`.
#include "crypto/cades_sign.h"

#include <openssl/cms.h>
#include <openssl/rand.h>

#include <gtest/gtest.h>

#include "crypto/certs.h"
#include "crypto/digest.h"
#include "crypto/software_signer.h"
#include "tests/support/cms_peers.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

using testing::CertSpec;
using testing::KeyType;
using testing::TempDir;
using testing::TestCa;

// OPENSSL_free is a macro; this is the function it stands for.
void FreeOpenSsl(void* p) { OPENSSL_free(p); }

CmsPtr ParseDer(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  return CmsPtr(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
}

std::unique_ptr<SoftwareKeySigner> MakeSigner(const std::string& label, testing::Issued issued) {
  auto s = SoftwareKeySigner::CreateForTesting(label, std::move(issued.key), std::move(issued.cert));
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().ToString());
  return s ? std::move(*s) : nullptr;
}

std::string RandomBytes(size_t n) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  return s;
}

// Signs with a certificate whose key is not the one it signs with.
class MismatchedSigner : public Signer {
 public:
  MismatchedSigner(X509Ptr cert, std::unique_ptr<SoftwareKeySigner> other)
      : cert_(std::move(cert)), other_(std::move(other)) {}
  Result<X509Ptr> Certificate(const KeyRef&) override {
    X509_up_ref(cert_.get());
    return X509Ptr(cert_.get());
  }
  Result<std::string> Sign(const KeyRef&, DigestAlg alg, std::string_view digest) override {
    return other_->Sign(KeyRef{"other"}, alg, digest);
  }

 private:
  X509Ptr cert_;
  std::unique_ptr<SoftwareKeySigner> other_;
};

class CadesSignTest : public ::testing::Test {
 protected:
  CadesSignTest() : ca_(TestCa::CreateRoot("/CN=Test Root CA/O=Test Federation/C=VN")) {
    ca_pem_ = dir_.file("ca.pem");
    testing::WriteTestFile(ca_pem_, testing::CertToPem(ca_.cert()));
    content_ = dir_.file("report.pdf");
    testing::WriteTestFile(content_, "Báo cáo tài chính quý III\n" + RandomBytes(5000));
  }

  std::unique_ptr<SoftwareKeySigner> Signer(KeyType type, const std::string& label = "k",
                                            CertSpec spec = CertSpec()) {
    return MakeSigner(label, ca_.Issue(spec, type));
  }

  // Signs content_ and writes the signature to `name`; returns its DER.
  std::string SignTo(crypto::Signer& s, const std::string& label, const std::string& name,
                     const CadesSignOptions& opts = {}) {
    auto der = SignFile(s, KeyRef{label}, content_, opts);
    EXPECT_TRUE(der.has_value()) << (der ? "" : der.error().ToString());
    if (!der) return "";
    testing::WriteTestFile(dir_.file(name), *der);
    return *der;
  }

  TempDir dir_;
  TestCa ca_;
  std::string ca_pem_;
  std::string content_;
};

class CadesSignKeyTest : public CadesSignTest, public ::testing::WithParamInterface<KeyType> {};

TEST_P(CadesSignKeyTest, SignFileWithKeyTypeVerifiesWithOpensslCades) {
  auto signer = Signer(GetParam());
  ASSERT_TRUE(signer);
  std::string der = SignTo(*signer, "k", "s.p7s");
  ASSERT_FALSE(der.empty());
  EXPECT_EQ(signer->sign_count(), 1);
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("s.p7s"), content_, ca_pem_));
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("s.p7s"), content_, ca_pem_, "-cades"));
}

TEST_P(CadesSignKeyTest, SignFileWithKeyTypeUsesMatchingAlgorithms) {
  KeyType type = GetParam();
  auto signer = Signer(type);
  ASSERT_TRUE(signer);
  std::string der = SignTo(*signer, "k", "s.p7s");
  CmsPtr cms = ParseDer(der);
  ASSERT_TRUE(cms);
  STACK_OF(CMS_SignerInfo)* sis = CMS_get0_SignerInfos(cms.get());
  ASSERT_EQ(sk_CMS_SignerInfo_num(sis), 1);
  X509_ALGOR* dig = nullptr;
  X509_ALGOR* sig = nullptr;
  CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sis, 0), nullptr, nullptr, &dig, &sig);
  int dig_nid = OBJ_obj2nid(dig->algorithm);
  int sig_nid = OBJ_obj2nid(sig->algorithm);
  switch (type) {
    case KeyType::kRsa2048:
    case KeyType::kRsa3072:
      EXPECT_EQ(dig_nid, NID_sha256);
      EXPECT_EQ(sig_nid, NID_rsaEncryption);
      break;
    case KeyType::kP256:
      EXPECT_EQ(dig_nid, NID_sha256);
      EXPECT_EQ(sig_nid, NID_ecdsa_with_SHA256);
      break;
    case KeyType::kP384:
      EXPECT_EQ(dig_nid, NID_sha384);
      EXPECT_EQ(sig_nid, NID_ecdsa_with_SHA384);
      break;
  }
  // The digest also appears in SignedData.digestAlgorithms (openssl checks
  // that too, but say it here).
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("s.p7s"), content_, ca_pem_));
}

INSTANTIATE_TEST_SUITE_P(Keys, CadesSignKeyTest,
                         ::testing::Values(KeyType::kRsa2048, KeyType::kRsa3072, KeyType::kP256,
                                           KeyType::kP384),
                         [](const auto& info) { return std::string(testing::KeyTypeName(info.param)); });

TEST_F(CadesSignTest, SignFileCarriesExactlyTheFourBbAttributes) {
  auto signer = Signer(KeyType::kP256);
  std::string der = SignTo(*signer, "k", "s.p7s");
  CmsPtr cms = ParseDer(der);
  ASSERT_TRUE(cms);
  EXPECT_EQ(CMS_is_detached(cms.get()), 1);
  EXPECT_EQ(OBJ_obj2nid(CMS_get0_eContentType(cms.get())), NID_pkcs7_data);
  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms.get()), 0);
  ASSERT_EQ(CMS_signed_get_attr_count(si), 4);
  std::set<int> nids;
  for (int i = 0; i < 4; ++i) {
    nids.insert(OBJ_obj2nid(X509_ATTRIBUTE_get0_object(CMS_signed_get_attr(si, i))));
  }
  EXPECT_EQ(nids, (std::set<int>{NID_pkcs9_contentType, NID_pkcs9_messageDigest,
                                 NID_pkcs9_signingTime, NID_id_smime_aa_signingCertificateV2}));
  EXPECT_EQ(CMS_unsigned_get_attr_count(si), -1);
  // message-digest is the file's SHA-256.
  auto digest = DigestFile(content_, {EVP_sha256()});
  ASSERT_TRUE(digest);
  const auto* md = static_cast<const ASN1_OCTET_STRING*>(CMS_signed_get0_data_by_OBJ(
      si, OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING));
  ASSERT_NE(md, nullptr);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(md)),
                        ASN1_STRING_length(md)),
            (*digest)[0]);
  // The signed attributes are DER: OpenSSL's own parser accepts the result
  // with the attribute order as received (CMS_Attributes_Verify).
  X509Ptr cert = std::move(*signer->Certificate(KeyRef{"k"}));
  CMS_SignerInfo_set1_signer_cert(si, cert.get());
  EXPECT_EQ(CMS_SignerInfo_verify(si), 1);
}

TEST_F(CadesSignTest, SignFileEmbedsOnlySignerCertificateWithoutChain) {
  auto signer = Signer(KeyType::kP256);
  CmsPtr cms = ParseDer(SignTo(*signer, "k", "s.p7s"));
  ASSERT_TRUE(cms);
  X509StackPtr certs(CMS_get1_certs(cms.get()));
  ASSERT_TRUE(certs);
  EXPECT_EQ(sk_X509_num(certs.get()), 1);
}

TEST_F(CadesSignTest, SignFileWithIntermediateEmbedsItAndVerifiesWithRootOnly) {
  TestCa inter = ca_.CreateIntermediate("/CN=Công đoàn tỉnh Quảng Ninh CA/O=Test Federation/C=VN");
  auto signer = MakeSigner("k", inter.Issue(CertSpec(), KeyType::kRsa2048));
  CadesSignOptions opts;
  opts.chain = {inter.cert(), ca_.cert()};
  CmsPtr cms = ParseDer(SignTo(*signer, "k", "s.p7s", opts));
  ASSERT_TRUE(cms);
  X509StackPtr certs(CMS_get1_certs(cms.get()));
  ASSERT_TRUE(certs);
  bool has_inter = false;
  for (int i = 0; i < sk_X509_num(certs.get()); ++i) {
    if (X509_cmp(sk_X509_value(certs.get(), i), inter.cert()) == 0) has_inter = true;
  }
  EXPECT_TRUE(has_inter);
  EXPECT_EQ(sk_X509_num(certs.get()), 3);
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("s.p7s"), content_, ca_pem_, "-cades"));

  // Without the chain the root alone cannot build the path: the option is
  // what makes the difference.
  auto plain = SignFile(*signer, KeyRef{"k"}, content_, {});
  ASSERT_TRUE(plain);
  testing::WriteTestFile(dir_.file("plain.p7s"), *plain);
  EXPECT_FALSE(testing::OpensslCmsVerifies(dir_.file("plain.p7s"), content_, ca_pem_));
}

TEST_F(CadesSignTest, SignFileWithVietnameseSubjectKeepsUtf8Name) {
  CertSpec spec;
  spec.subject = "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN";
  auto signer = Signer(KeyType::kP256, "k", spec);
  CmsPtr cms = ParseDer(SignTo(*signer, "k", "s.p7s"));
  ASSERT_TRUE(cms);
  X509StackPtr certs(CMS_get1_certs(cms.get()));
  ASSERT_EQ(sk_X509_num(certs.get()), 1);
  EXPECT_EQ(DisplayName(sk_X509_value(certs.get(), 0)), "Nguyễn Thị Duyên");
  EXPECT_NE(NameToUtf8(X509_get_subject_name(sk_X509_value(certs.get(), 0))).find("Công đoàn Bãi Cháy"),
            std::string::npos);
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("s.p7s"), content_, ca_pem_, "-cades"));
}

TEST_F(CadesSignTest, SignFileModifiedContentIsRejectedByOpenssl) {
  auto signer = Signer(KeyType::kP256);
  SignTo(*signer, "k", "s.p7s");
  std::string data = testing::ReadTestFile(content_);
  data[data.size() / 2] ^= 0x01;
  testing::WriteTestFile(dir_.file("tampered"), data);
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("s.p7s"), content_, ca_pem_));
  EXPECT_FALSE(testing::OpensslCmsVerifies(dir_.file("s.p7s"), dir_.file("tampered"), ca_pem_));
}

TEST_F(CadesSignTest, SignFileEmptyFileVerifies) {
  auto signer = Signer(KeyType::kRsa2048);
  testing::WriteTestFile(dir_.file("empty"), "");
  auto der = SignFile(*signer, KeyRef{"k"}, dir_.file("empty"), {});
  ASSERT_TRUE(der) << der.error().ToString();
  testing::WriteTestFile(dir_.file("e.p7s"), *der);
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("e.p7s"), dir_.file("empty"), ca_pem_));
}

TEST_F(CadesSignTest, SignFileMultiMegabyteFileVerifies) {
  auto signer = Signer(KeyType::kP384);
  // 9 MiB + 7 bytes: several 1 MiB reads and a partial one.
  testing::WriteTestFile(dir_.file("big"), RandomBytes((9u << 20) + 7));
  auto der = SignFile(*signer, KeyRef{"k"}, dir_.file("big"), {});
  ASSERT_TRUE(der) << der.error().ToString();
  testing::WriteTestFile(dir_.file("big.p7s"), *der);
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("big.p7s"), dir_.file("big"), ca_pem_));
}

TEST_F(CadesSignTest, SignFileSigningTimeBefore2050IsUtcTimeAfterIsGeneralizedTime) {
  CertSpec spec;
  spec.not_after_offset = 40L * 365 * 86400;
  auto signer = Signer(KeyType::kP256, "k", spec);
  X509Ptr cert = std::move(*signer->Certificate(KeyRef{"k"}));
  auto time_type = [&](std::time_t t) {
    CadesSignOptions opts;
    opts.signing_time = t;
    auto der = SignFile(*signer, KeyRef{"k"}, content_, opts);
    EXPECT_TRUE(der) << der.error().ToString();
    if (!der) return -1;
    CmsPtr cms = ParseDer(*der);
    CMS_SignerInfo* si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms.get()), 0);
    X509_ATTRIBUTE* a = CMS_signed_get_attr(si, CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1));
    return ASN1_TYPE_get(X509_ATTRIBUTE_get0_type(a, 0));
  };
  std::time_t now = std::time(nullptr);
  EXPECT_EQ(time_type(now), V_ASN1_UTCTIME);
  // 2050-01-01T00:00:00Z.
  EXPECT_EQ(time_type(2524608000), V_ASN1_GENERALIZEDTIME);
}

TEST_F(CadesSignTest, BuildWithSignerOfOtherKeyFailsWithoutOutput) {
  testing::Issued claimed = ca_.Issue(CertSpec(), KeyType::kP256);
  auto other = Signer(KeyType::kP256, "other");
  MismatchedSigner broken(std::move(claimed.cert), std::move(other));
  auto der = SignFile(broken, KeyRef{"k"}, content_, {});
  ASSERT_FALSE(der);
  EXPECT_EQ(der.error().code(), Code::kInternal);
  EXPECT_NE(der.error().message().find("does not verify"), std::string::npos) << der.error().message();
}

TEST_F(CadesSignTest, BuildWithWrongDigestLengthFails) {
  auto signer = Signer(KeyType::kP256);
  X509Ptr cert = std::move(*signer->Certificate(KeyRef{"k"}));
  auto der = BuildDetachedSignature(*signer, KeyRef{"k"}, cert.get(), DigestAlg::kSha256,
                                    std::string(20, 'x'), {});
  ASSERT_FALSE(der);
  EXPECT_EQ(der.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(signer->sign_count(), 0);
}

TEST_F(CadesSignTest, SignFileWithEncipherOnlyCertificateFails) {
  CertSpec spec;
  spec.key_usage = "critical,keyEncipherment";
  auto signer = Signer(KeyType::kRsa2048, "k", spec);
  auto der = SignFile(*signer, KeyRef{"k"}, content_, {});
  ASSERT_FALSE(der);
  EXPECT_EQ(der.error().code(), Code::kInvalidArgument);
  EXPECT_NE(der.error().message().find("key usage"), std::string::npos);
  EXPECT_EQ(signer->sign_count(), 0);
}

TEST_F(CadesSignTest, SignFileWithExpiredCertificateFails) {
  CertSpec spec;
  spec.not_before_offset = -10L * 86400;
  spec.not_after_offset = -86400;
  auto signer = Signer(KeyType::kP256, "k", spec);
  auto der = SignFile(*signer, KeyRef{"k"}, content_, {});
  ASSERT_FALSE(der);
  EXPECT_NE(der.error().message().find("expired"), std::string::npos);
}

TEST_F(CadesSignTest, SignFileMissingFileFailsNotFound) {
  auto signer = Signer(KeyType::kP256);
  auto der = SignFile(*signer, KeyRef{"k"}, dir_.file("nope"), {});
  ASSERT_FALSE(der);
  EXPECT_EQ(der.error().code(), Code::kNotFound);
  EXPECT_NE(der.error().message().find("nope"), std::string::npos);
}

// ---- Co-signing.

TEST_F(CadesSignTest, AppendSecondSignerBothVerifyWithOpenssl) {
  CertSpec officer_spec;
  officer_spec.subject = "/CN=Trần Văn Hùng/O=Công đoàn Bãi Cháy/C=VN";
  auto officer = Signer(KeyType::kP256, "officer", officer_spec);
  auto seal = Signer(KeyType::kRsa2048, "seal");
  std::string first = SignTo(*officer, "officer", "first.p7s");
  auto existing = ExistingSignature::Parse(first, "first.p7s");
  ASSERT_TRUE(existing) << existing.error().ToString();
  auto both = AppendSignatureForFile(*seal, KeyRef{"seal"}, *existing, content_, {});
  ASSERT_TRUE(both) << both.error().ToString();
  testing::WriteTestFile(dir_.file("both.p7s"), *both);

  CmsPtr cms = ParseDer(*both);
  ASSERT_TRUE(cms);
  EXPECT_EQ(sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(cms.get())), 2);
  X509StackPtr certs(CMS_get1_certs(cms.get()));
  EXPECT_EQ(sk_X509_num(certs.get()), 2);
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("both.p7s"), content_, ca_pem_, "-cades"));
  // The merged output is DER all the way: OpenSSL re-encodes it unchanged.
  unsigned char* out = nullptr;
  int len = i2d_CMS_ContentInfo(cms.get(), &out);
  ASSERT_GT(len, 0);
  std::unique_ptr<unsigned char, OsslDeleter<FreeOpenSsl>> owned(out);
  std::string reencoded(reinterpret_cast<char*>(out), len);
  EXPECT_EQ(reencoded, *both);
}

TEST_F(CadesSignTest, AppendKeepsExistingSignerInfoBytes) {
  auto officer = Signer(KeyType::kP256, "officer");
  auto seal = Signer(KeyType::kP384, "seal");
  std::string first = SignTo(*officer, "officer", "first.p7s");
  auto existing = ExistingSignature::Parse(first, "first.p7s");
  ASSERT_TRUE(existing);
  auto both = AppendSignatureForFile(*seal, KeyRef{"seal"}, *existing, content_, {});
  ASSERT_TRUE(both) << both.error().ToString();
  // The first signature's SignerInfo is its last element: find its bytes.
  CmsPtr cms = ParseDer(first);
  std::string sig = [&] {
    CMS_SignerInfo* si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms.get()), 0);
    ASN1_OCTET_STRING* s = CMS_SignerInfo_get0_signature(si);
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s));
  }();
  EXPECT_NE(both->find(sig), std::string::npos);
  // A new digest algorithm (SHA-384) is listed next to SHA-256.
  CmsPtr merged = ParseDer(*both);
  ASSERT_TRUE(merged);
  testing::WriteTestFile(dir_.file("both.p7s"), *both);
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("both.p7s"), content_, ca_pem_, "-cades"));
  std::string text;
  ASSERT_EQ(testing::RunCommand("openssl cms -cmsout -print -inform DER -in " +
                                    testing::ShellQuote(dir_.file("both.p7s")),
                                &text),
            0);
  size_t algs = text.find("digestAlgorithms:");
  size_t encap = text.find("encapContentInfo:");
  ASSERT_NE(algs, std::string::npos);
  std::string alg_block = text.substr(algs, encap - algs);
  EXPECT_NE(alg_block.find("sha256"), std::string::npos) << alg_block;
  EXPECT_NE(alg_block.find("sha384"), std::string::npos) << alg_block;
}

TEST_F(CadesSignTest, AppendWithSharedIntermediateEmbedsItOnce) {
  TestCa inter = ca_.CreateIntermediate("/CN=Công đoàn tỉnh CA/O=Test Federation/C=VN");
  auto officer = MakeSigner("officer", inter.Issue(CertSpec(), KeyType::kP256));
  auto seal = MakeSigner("seal", inter.Issue(CertSpec(), KeyType::kRsa2048));
  CadesSignOptions opts;
  opts.chain = {inter.cert()};
  std::string first = SignTo(*officer, "officer", "first.p7s", opts);
  auto existing = ExistingSignature::Parse(first, "first.p7s");
  ASSERT_TRUE(existing);
  auto both = AppendSignatureForFile(*seal, KeyRef{"seal"}, *existing, content_, opts);
  ASSERT_TRUE(both) << both.error().ToString();
  CmsPtr cms = ParseDer(*both);
  ASSERT_TRUE(cms);
  X509StackPtr certs(CMS_get1_certs(cms.get()));
  ASSERT_TRUE(certs);
  EXPECT_EQ(sk_X509_num(certs.get()), 3);  // intermediate, officer, seal
  int inter_count = 0;
  for (int i = 0; i < sk_X509_num(certs.get()); ++i) {
    if (X509_cmp(sk_X509_value(certs.get(), i), inter.cert()) == 0) ++inter_count;
  }
  EXPECT_EQ(inter_count, 1);
  testing::WriteTestFile(dir_.file("both.p7s"), *both);
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("both.p7s"), content_, ca_pem_, "-cades"));
}

TEST_F(CadesSignTest, AppendToSignatureOfOtherFileFailsDataError) {
  auto officer = Signer(KeyType::kP256, "officer");
  auto seal = Signer(KeyType::kRsa2048, "seal");
  std::string first = SignTo(*officer, "officer", "first.p7s");
  testing::WriteTestFile(dir_.file("other"), "another document\n");
  auto existing = ExistingSignature::Parse(first, "first.p7s");
  ASSERT_TRUE(existing);
  auto both = AppendSignatureForFile(*seal, KeyRef{"seal"}, *existing, dir_.file("other"), {});
  ASSERT_FALSE(both);
  EXPECT_EQ(both.error().code(), Code::kDataError);
  EXPECT_NE(both.error().message().find("other content"), std::string::npos) << both.error().message();
  EXPECT_EQ(seal->sign_count(), 0);
}

TEST_F(CadesSignTest, AppendBySameCertificateTwiceFails) {
  auto officer = Signer(KeyType::kP256, "officer");
  std::string first = SignTo(*officer, "officer", "first.p7s");
  auto existing = ExistingSignature::Parse(first, "first.p7s");
  ASSERT_TRUE(existing);
  auto again = AppendSignatureForFile(*officer, KeyRef{"officer"}, *existing, content_, {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(again.error().message().find("already signed"), std::string::npos);
}

TEST_F(CadesSignTest, ParseExistingRejectsGarbageAndTrailingBytes) {
  auto garbage = ExistingSignature::Parse("this is not CMS", "x.p7s");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code(), Code::kDataError);
  EXPECT_NE(garbage.error().message().find("x.p7s"), std::string::npos);

  auto signer = Signer(KeyType::kP256);
  std::string der = SignTo(*signer, "k", "s.p7s");
  auto trailing = ExistingSignature::Parse(der + "junk", "y.p7s");
  ASSERT_FALSE(trailing);
  EXPECT_NE(trailing.error().message().find("trailing"), std::string::npos);
  auto truncated = ExistingSignature::Parse(der.substr(0, der.size() - 10), "z.p7s");
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().code(), Code::kDataError);
}

TEST_F(CadesSignTest, ParseExistingRejectsAttachedSignature) {
  testing::Issued id = ca_.Issue(CertSpec(), KeyType::kP256);
  testing::WriteTestFile(dir_.file("c.pem"), testing::CertToPem(id.cert.get()));
  testing::WriteTestFile(dir_.file("k.pem"), testing::KeyToPkcs8Pem(id.key.get()));
  ASSERT_TRUE(testing::OpensslCmsSign(content_, dir_.file("att.p7s"), dir_.file("c.pem"),
                                      dir_.file("k.pem"), "-nodetach"));
  auto parsed = ExistingSignature::Parse(testing::ReadTestFile(dir_.file("att.p7s")), "att.p7s");
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message().find("detached"), std::string::npos);
}

TEST(DigestAlgForKeyTest, CurveOrRsaPicksDigest) {
  auto rsa = testing::GenerateKey(KeyType::kRsa3072);
  auto p256 = testing::GenerateKey(KeyType::kP256);
  auto p384 = testing::GenerateKey(KeyType::kP384);
  EXPECT_EQ(*DigestAlgForKey(rsa.get()), DigestAlg::kSha256);
  EXPECT_EQ(*DigestAlgForKey(p256.get()), DigestAlg::kSha256);
  EXPECT_EQ(*DigestAlgForKey(p384.get()), DigestAlg::kSha384);
  EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  ASSERT_TRUE(ed);
  EXPECT_FALSE(DigestAlgForKey(ed.get()));
}

}  // namespace
}  // namespace sealpost::crypto
