// crypto/verify.*, crypto/path.*, crypto/report.* with signatures made in
// process by OpenSSL's CMS_sign/CMS_add1_signer (a real peer library), over
// a throwaway PKI from tests/support/test_pki.h.
#include "crypto/verify.h"

#include <gtest/gtest.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "base/encoding.h"
#include "crypto/certs.h"
#include "crypto/report.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

using testing::CertSpec;
using testing::Issued;
using testing::KeyType;
using testing::TempDir;
using testing::TestCa;

struct SignerSpec {
  X509* cert = nullptr;
  EVP_PKEY* key = nullptr;
  const EVP_MD* md = EVP_sha256();
  bool cades = true;
  bool no_attributes = false;
};

std::string ToDer(CMS_ContentInfo* cms) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(i2d_CMS_bio(bio.get(), cms), 1);
  char* p = nullptr;
  long n = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, static_cast<size_t>(n));
}

// A detached CMS SignedData over `content` by each of `signers`, with the
// given extra certificates embedded.
CmsPtr SignCms(std::string_view content, const std::vector<SignerSpec>& signers,
               STACK_OF(X509)* extra_certs = nullptr, bool embed_signer_certs = true) {
  unsigned int flags = CMS_PARTIAL | CMS_DETACHED | CMS_BINARY;
  CmsPtr cms(CMS_sign(nullptr, nullptr, extra_certs, nullptr, flags));
  EXPECT_TRUE(cms) << DrainOpenSslErrors();
  for (const SignerSpec& s : signers) {
    unsigned int sflags = flags;
    if (s.cades) sflags |= CMS_CADES;
    if (s.no_attributes) sflags |= CMS_NOATTR;
    if (!embed_signer_certs) sflags |= CMS_NOCERTS;
    EXPECT_NE(CMS_add1_signer(cms.get(), s.cert, s.key, s.md, sflags), nullptr)
        << DrainOpenSslErrors();
  }
  BioPtr in(BIO_new_mem_buf(content.data(), static_cast<int>(content.size())));
  EXPECT_EQ(CMS_final(cms.get(), in.get(), nullptr, flags), 1) << DrainOpenSslErrors();
  return cms;
}

std::string Sign(std::string_view content, const std::vector<SignerSpec>& signers,
                 STACK_OF(X509)* extra_certs = nullptr, bool embed_signer_certs = true) {
  CmsPtr cms = SignCms(content, signers, extra_certs, embed_signer_certs);
  return ToDer(cms.get());
}

X509StackPtr Stack(std::initializer_list<X509*> certs) {
  X509StackPtr sk(sk_X509_new_null());
  for (X509* c : certs) {
    X509_up_ref(c);
    sk_X509_push(sk.get(), c);
  }
  return sk;
}

X509CrlStackPtr CrlStack(std::initializer_list<X509_CRL*> crls) {
  X509CrlStackPtr sk(sk_X509_CRL_new_null());
  for (X509_CRL* c : crls) {
    X509_CRL_up_ref(c);
    sk_X509_CRL_push(sk.get(), c);
  }
  return sk;
}

// Changes one byte of a signature value in place.
void FlipByte(ASN1_OCTET_STRING* value, int index) {
  std::string bytes(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                    static_cast<size_t>(ASN1_STRING_length(value)));
  bytes[static_cast<size_t>(index)] ^= 0x5a;
  ASSERT_EQ(ASN1_STRING_set(value, bytes.data(), static_cast<int>(bytes.size())), 1);
}

long SerialOf(X509* cert) { return ASN1_INTEGER_get(X509_get0_serialNumber(cert)); }

class VerifyTest : public ::testing::Test {
 protected:
  VerifyTest() : root_(TestCa::CreateRoot("/CN=Test Root CA/O=Test Federation/C=VN")) {}

  Verifier MakeVerifier(TrustOptions options = {}, X509CrlStackPtr crls = nullptr,
                        X509StackPtr untrusted = nullptr, X509* anchor = nullptr) {
    auto store = TrustStore::Create(Stack({anchor ? anchor : root_.cert()}), std::move(untrusted),
                                    std::move(crls), options);
    EXPECT_TRUE(store) << store.error().message();
    auto v = Verifier::Create(std::move(*store));
    EXPECT_TRUE(v);
    return std::move(*v);
  }

  Issued IssueSigner(CertSpec spec = {}) { return root_.Issue(spec, KeyType::kP256); }

  static void ExpectSigner(const Report& r, size_t i, Indication ind, SubIndication sub,
                           Reason reason = Reason::kNone) {
    ASSERT_GT(r.signers.size(), i);
    EXPECT_EQ(r.signers[i].indication, ind)
        << IndicationName(r.signers[i].indication) << " " << ReasonName(r.signers[i].reason) << " "
        << r.signers[i].detail;
    EXPECT_EQ(r.signers[i].sub_indication, sub) << SubIndicationName(r.signers[i].sub_indication);
    if (reason != Reason::kNone) {
      EXPECT_EQ(r.signers[i].reason, reason) << ReasonName(r.signers[i].reason);
    }
  }

  TestCa root_;
  const std::string content_ = "Công văn số 12/CĐ: báo cáo tài chính quý III.\n";
};

TEST_F(VerifyTest, VerifyPlainCmsSignaturePassesAsLevelCms) {
  Issued signer = IssueSigner();
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get(), EVP_sha256(), false}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->indication, Indication::kPassed);
  ExpectSigner(*report, 0, Indication::kPassed, SubIndication::kNone);
  EXPECT_EQ(report->signers[0].level, Level::kCms);
  EXPECT_EQ(report->signers[0].revocation, Revocation::kNotChecked);
  EXPECT_TRUE(report->signers[0].signing_time.has_value());
  EXPECT_EQ(report->signers[0].name, "Test Signer");
  EXPECT_EQ(report->signers[0].organization, "Test Union");
  EXPECT_EQ(report->signers[0].serial, SerialHex(signer.cert.get()));
  EXPECT_FALSE(report->signers[0].serial.empty());
  EXPECT_EQ(report->signers[0].digest_algorithm, "SHA-256");
  EXPECT_EQ(report->signers[0].signature_algorithm, "ECDSA P-256");
}

TEST_F(VerifyTest, VerifyCadesSignaturePassesAsLevelCadesBB) {
  Issued signer = IssueSigner();
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report) << report.error().message();
  ExpectSigner(*report, 0, Indication::kPassed, SubIndication::kNone);
  EXPECT_EQ(report->signers[0].level, Level::kCadesBB);
}

TEST_F(VerifyTest, VerifyFileStreamsContentAndAgreesWithBytes) {
  TempDir dir;
  Issued signer = IssueSigner();
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  testing::WriteTestFile(dir.file("doc.txt"), content_);
  Verifier v = MakeVerifier();
  auto report = v.VerifyFile(dir.file("doc.txt"), sig);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->indication, Indication::kPassed);
  auto missing = v.VerifyFile(dir.file("absent.txt"), sig);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  EXPECT_NE(missing.error().message().find("absent.txt"), std::string::npos);
}

TEST_F(VerifyTest, VerifyOneByteChangedFileFailsWithHashFailure) {
  Issued signer = IssueSigner();
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  std::string changed = content_;
  changed[5] ^= 0x01;
  auto report = MakeVerifier().VerifyBytes(changed, sig);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->indication, Indication::kFailed);
  EXPECT_EQ(report->sub_indication, SubIndication::kHashFailure);
  ExpectSigner(*report, 0, Indication::kFailed, SubIndication::kHashFailure,
               Reason::kDigestMismatch);
}

TEST_F(VerifyTest, VerifyCorruptedSignatureValueFailsWithSigCryptoFailure) {
  Issued signer = IssueSigner(CertSpec{});
  CmsPtr cms = SignCms(content_, {{signer.cert.get(), signer.key.get()}});
  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms.get()), 0);
  ASN1_OCTET_STRING* value = CMS_SignerInfo_get0_signature(si);
  FlipByte(value, ASN1_STRING_length(value) - 3);
  auto report = MakeVerifier().VerifyBytes(content_, ToDer(cms.get()));
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kFailed, SubIndication::kSigCryptoFailure,
               Reason::kSignatureInvalid);
}

TEST_F(VerifyTest, VerifyRsaSignatureWithSha384Passes) {
  Issued signer = root_.Issue(CertSpec{}, KeyType::kRsa2048);
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get(), EVP_sha384()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kPassed, SubIndication::kNone);
  EXPECT_EQ(report->signers[0].digest_algorithm, "SHA-384");
  EXPECT_EQ(report->signers[0].signature_algorithm, "RSA 2048");
}

// DER of SigningCertificateV2 { certs { ESSCertIDv2 { certHash } } } (SHA-256 by default).
std::string SigningCertV2For(X509* cert) {
  unsigned char h[32];
  unsigned int n = 0;
  X509_digest(cert, EVP_sha256(), h, &n);
  std::string id = std::string("\x04\x20", 2) + std::string(reinterpret_cast<char*>(h), 32);
  std::string ess_id = std::string("\x30") + static_cast<char>(id.size()) + id;
  std::string certs = std::string("\x30") + static_cast<char>(ess_id.size()) + ess_id;
  return std::string("\x30") + static_cast<char>(certs.size()) + certs;
}

TEST_F(VerifyTest, VerifySigningCertificateV2NamingAnotherCertificateFails) {
  Issued signer = IssueSigner();
  Issued other = IssueSigner();
  unsigned int flags = CMS_PARTIAL | CMS_DETACHED | CMS_BINARY;
  CmsPtr cms(CMS_sign(nullptr, nullptr, nullptr, nullptr, flags));
  CMS_SignerInfo* si = CMS_add1_signer(cms.get(), signer.cert.get(), signer.key.get(),
                                       EVP_sha256(), flags);
  ASSERT_NE(si, nullptr);
  std::string attr = SigningCertV2For(other.cert.get());
  ASSERT_EQ(CMS_signed_add1_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2,
                                        V_ASN1_SEQUENCE, attr.data(),
                                        static_cast<int>(attr.size())),
            1);
  BioPtr in(BIO_new_mem_buf(content_.data(), static_cast<int>(content_.size())));
  ASSERT_EQ(CMS_final(cms.get(), in.get(), nullptr, flags), 1);
  auto report = MakeVerifier().VerifyBytes(content_, ToDer(cms.get()));
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kFailed, SubIndication::kFormatFailure,
               Reason::kSigningCertificateMismatch);

  // Control: the same construction naming the signer's own certificate passes.
  CmsPtr good(CMS_sign(nullptr, nullptr, nullptr, nullptr, flags));
  si = CMS_add1_signer(good.get(), signer.cert.get(), signer.key.get(), EVP_sha256(), flags);
  attr = SigningCertV2For(signer.cert.get());
  CMS_signed_add1_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2, V_ASN1_SEQUENCE,
                              attr.data(), static_cast<int>(attr.size()));
  BioPtr in2(BIO_new_mem_buf(content_.data(), static_cast<int>(content_.size())));
  ASSERT_EQ(CMS_final(good.get(), in2.get(), nullptr, flags), 1);
  auto ok = MakeVerifier().VerifyBytes(content_, ToDer(good.get()));
  ASSERT_TRUE(ok);
  ExpectSigner(*ok, 0, Indication::kPassed, SubIndication::kNone);
  EXPECT_EQ(ok->signers[0].level, Level::kCadesBB);
}

TEST_F(VerifyTest, VerifyRevokedSignerFailsRevoked) {
  CertSpec spec;
  spec.crl_dp = "URI:http://127.0.0.1/root.crl";
  Issued signer = IssueSigner(spec);
  X509CrlPtr crl = root_.MakeCrl({SerialOf(signer.cert.get())});
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier({}, CrlStack({crl.get()})).VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->indication, Indication::kFailed);
  ExpectSigner(*report, 0, Indication::kFailed, SubIndication::kRevoked, Reason::kRevoked);
  EXPECT_EQ(report->signers[0].revocation, Revocation::kRevoked);
}

TEST_F(VerifyTest, VerifyWithCrlNotListingSignerPassesCheckedGood) {
  CertSpec spec;
  spec.crl_dp = "URI:http://127.0.0.1/root.crl";
  Issued signer = IssueSigner(spec);
  X509CrlPtr crl = root_.MakeCrl({SerialOf(signer.cert.get()) + 1});
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier({}, CrlStack({crl.get()})).VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kPassed, SubIndication::kNone);
  EXPECT_EQ(report->signers[0].revocation, Revocation::kGood);
}

TEST_F(VerifyTest, VerifyCertWithCrlDistributionPointAndNoCrlIsIndeterminate) {
  CertSpec spec;
  spec.crl_dp = "URI:http://127.0.0.1/root.crl";
  Issued signer = IssueSigner(spec);
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->indication, Indication::kIndeterminate);
  ExpectSigner(*report, 0, Indication::kIndeterminate, SubIndication::kTryLater,
               Reason::kCrlMissing);
  EXPECT_EQ(report->signers[0].revocation, Revocation::kNoCrlAvailable);
}

// The revocation rule gives the same answers whether or not OpenSSL's CRL
// machinery runs (it is skipped when no CRL at all is configured).
TEST_F(VerifyTest, VerifyRevocationRuleIsTheSameWithAndWithoutUnrelatedCrls) {
  TestCa stranger = TestCa::CreateRoot("/CN=Stranger Root/C=VN");
  X509CrlPtr unrelated = stranger.MakeCrl({});
  CertSpec with_dp;
  with_dp.crl_dp = "URI:http://127.0.0.1/root.crl";
  Issued a = IssueSigner(with_dp);
  Issued b = IssueSigner();
  std::string sig_a = Sign(content_, {{a.cert.get(), a.key.get()}});
  std::string sig_b = Sign(content_, {{b.cert.get(), b.key.get()}});
  for (bool with_unrelated : {false, true}) {
    SCOPED_TRACE(with_unrelated ? "unrelated CRL configured" : "no CRL configured");
    Verifier v = MakeVerifier({}, with_unrelated ? CrlStack({unrelated.get()}) : nullptr);
    auto ra = v.VerifyBytes(content_, sig_a);
    ASSERT_TRUE(ra);
    ExpectSigner(*ra, 0, Indication::kIndeterminate, SubIndication::kTryLater,
                 Reason::kCrlMissing);
    EXPECT_EQ(ra->signers[0].revocation, Revocation::kNoCrlAvailable);
    auto rb = v.VerifyBytes(content_, sig_b);
    ASSERT_TRUE(rb);
    ExpectSigner(*rb, 0, Indication::kPassed, SubIndication::kNone);
    EXPECT_EQ(rb->signers[0].revocation, Revocation::kNotChecked);
  }
}

TEST_F(VerifyTest, VerifyWithRevocationDisabledPassesAndSaysDisabled) {
  CertSpec spec;
  spec.crl_dp = "URI:http://127.0.0.1/root.crl";
  Issued signer = IssueSigner(spec);
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  TrustOptions options;
  options.check_revocation = false;
  auto report = MakeVerifier(options).VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kPassed, SubIndication::kNone);
  EXPECT_EQ(report->signers[0].revocation, Revocation::kDisabled);
  EXPECT_NE(ReportToJson(*report).find("\"revocation\":\"disabled\""), std::string::npos);
  EXPECT_NE(SignerSentence(report->signers[0], Lang::kEn).find("disabled"), std::string::npos);
}

TEST_F(VerifyTest, VerifyCertWithoutDistributionPointAndNoCrlPassesNotChecked) {
  Issued signer = IssueSigner();
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kPassed, SubIndication::kNone);
  EXPECT_EQ(report->signers[0].revocation, Revocation::kNotChecked);
  EXPECT_NE(SignerSentence(report->signers[0], Lang::kEn).find("not checked"), std::string::npos);
}

TEST_F(VerifyTest, LoadTrustStoreReadsPemCrlAndPemDerCertificates) {
  TempDir dir;
  CertSpec spec;
  spec.crl_dp = "URI:http://127.0.0.1/root.crl";
  Issued signer = IssueSigner(spec);
  X509CrlPtr crl = root_.MakeCrl({SerialOf(signer.cert.get())});
  testing::WriteTestFile(dir.file("root.der"), testing::CertToDer(root_.cert()));
  testing::WriteTestFile(dir.file("root.crl.pem"), testing::CrlToPem(crl.get()));
  auto store = LoadTrustStore({{dir.file("root.der")}, {}, {dir.file("root.crl.pem")}}, {});
  ASSERT_TRUE(store) << store.error().message();
  auto v = Verifier::Create(std::move(*store));
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = v->VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kFailed, SubIndication::kRevoked);

  auto missing = LoadTrustStore({{dir.file("nope.pem")}, {}, {}}, {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  EXPECT_NE(missing.error().message().find("nope.pem"), std::string::npos);
}

TEST_F(VerifyTest, VerifyServerAuthOnlyCertificateIsRefused) {
  CertSpec spec;
  spec.ext_key_usage = "serverAuth";
  Issued signer = IssueSigner(spec);
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kIndeterminate, SubIndication::kChainConstraintsFailure,
               Reason::kExtKeyUsageRefused);
}

TEST_F(VerifyTest, VerifyClientAuthAndMicrosoftDocumentSigningEkuIsAccepted) {
  for (const char* eku : {"clientAuth,1.3.6.1.4.1.311.10.3.12", "1.3.6.1.5.5.7.3.36",
                          "emailProtection", "anyExtendedKeyUsage"}) {
    CertSpec spec;
    spec.ext_key_usage = eku;
    Issued signer = IssueSigner(spec);
    std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
    auto report = MakeVerifier().VerifyBytes(content_, sig);
    ASSERT_TRUE(report);
    EXPECT_EQ(report->indication, Indication::kPassed) << eku;
  }
}

TEST_F(VerifyTest, VerifyKeyEnciphermentOnlyCertificateIsRefused) {
  CertSpec spec;
  spec.key_usage = "critical,keyEncipherment";
  Issued signer = root_.Issue(spec, KeyType::kRsa2048);
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kIndeterminate, SubIndication::kChainConstraintsFailure,
               Reason::kKeyUsageRefused);
}

TEST_F(VerifyTest, VerifyExpiredSignerIsIndeterminateOutOfBoundsNoPoe) {
  CertSpec spec;
  spec.not_before_offset = -20 * 3600;  // the root is valid from -24h
  spec.not_after_offset = -2 * 3600;
  Issued signer = IssueSigner(spec);
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kIndeterminate, SubIndication::kOutOfBoundsNoPoe,
               Reason::kCertExpired);
  // Validated at a time inside the certificate's validity, it passes.
  auto earlier = MakeVerifier().VerifyBytes(content_, sig, std::time(nullptr) - 10 * 3600);
  ASSERT_TRUE(earlier);
  ExpectSigner(*earlier, 0, Indication::kPassed, SubIndication::kNone);
}

TEST_F(VerifyTest, VerifyAtTimeBeforeValidityIsIndeterminateNotYetValid) {
  Issued signer = IssueSigner();
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig, std::time(nullptr) - 30 * 86400);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kIndeterminate, SubIndication::kNotYetValid,
               Reason::kCertNotYetValid);
  EXPECT_EQ(report->validation_time, std::time(nullptr) - 30 * 86400);
}

TEST_F(VerifyTest, VerifyUntrustedRootGivesNoCertificateChainFound) {
  TestCa stranger = TestCa::CreateRoot("/CN=Stranger Root/C=VN");
  Issued signer = stranger.Issue(CertSpec{}, KeyType::kP256);
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kIndeterminate, SubIndication::kNoCertificateChainFound,
               Reason::kNoChain);
}

TEST_F(VerifyTest, VerifyIntermediateSuppliedAsUntrustedBuildsThePath) {
  TestCa intermediate = root_.CreateIntermediate("/CN=Provincial CA/O=Test Federation/C=VN");
  Issued signer = intermediate.Issue(CertSpec{}, KeyType::kP256);
  // Only the signer's certificate is embedded.
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto without = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(without);
  ExpectSigner(*without, 0, Indication::kIndeterminate, SubIndication::kNoCertificateChainFound);
  auto with = MakeVerifier({}, nullptr, Stack({intermediate.cert()})).VerifyBytes(content_, sig);
  ASSERT_TRUE(with);
  ExpectSigner(*with, 0, Indication::kPassed, SubIndication::kNone);
  // Embedded in the CMS instead, it works too.
  X509StackPtr extra = Stack({intermediate.cert()});
  std::string sig2 = Sign(content_, {{signer.cert.get(), signer.key.get()}}, extra.get());
  auto embedded = MakeVerifier().VerifyBytes(content_, sig2);
  ASSERT_TRUE(embedded);
  ExpectSigner(*embedded, 0, Indication::kPassed, SubIndication::kNone);
}

// root -> intermediate (embedded in the CMS, not an anchor) -> signer:
// revocation is checked at every depth with the CRL of each certificate's
// own issuer. The intermediate's CRL revokes the signer -> REVOKED; without
// it, a signer naming a distribution point is TRY_LATER, the detail naming
// the CA whose CRL is missing.
TEST_F(VerifyTest, VerifySignerRevokedByItsIntermediateCaFailsRevoked) {
  TestCa intermediate = root_.CreateIntermediate("/CN=Provincial CA/O=Test Federation/C=VN");
  CertSpec spec;
  spec.crl_dp = "URI:http://127.0.0.1/provincial.crl";
  Issued signer = intermediate.Issue(spec, KeyType::kP256);
  X509StackPtr extra = Stack({intermediate.cert()});
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}}, extra.get());
  X509CrlPtr root_crl = root_.MakeCrl({});
  X509CrlPtr inter_crl = intermediate.MakeCrl({SerialOf(signer.cert.get())});
  auto revoked =
      MakeVerifier({}, CrlStack({root_crl.get(), inter_crl.get()})).VerifyBytes(content_, sig);
  ASSERT_TRUE(revoked);
  ExpectSigner(*revoked, 0, Indication::kFailed, SubIndication::kRevoked, Reason::kRevoked);
  EXPECT_NE(revoked->signers[0].detail.find("depth 0"), std::string::npos)
      << revoked->signers[0].detail;

  auto missing = MakeVerifier({}, CrlStack({root_crl.get()})).VerifyBytes(content_, sig);
  ASSERT_TRUE(missing);
  ExpectSigner(*missing, 0, Indication::kIndeterminate, SubIndication::kTryLater,
               Reason::kCrlMissing);
  EXPECT_NE(missing->signers[0].detail.find("no CRL of \"Provincial CA\""), std::string::npos)
      << missing->signers[0].detail;

  // The root revokes the intermediate: REVOKED at depth 1.
  X509CrlPtr root_revokes = root_.MakeCrl({SerialOf(intermediate.cert())});
  X509CrlPtr inter_empty = intermediate.MakeCrl({});
  auto by_root = MakeVerifier({}, CrlStack({root_revokes.get(), inter_empty.get()}))
                     .VerifyBytes(content_, sig);
  ASSERT_TRUE(by_root);
  ExpectSigner(*by_root, 0, Indication::kFailed, SubIndication::kRevoked, Reason::kRevoked);
  EXPECT_NE(by_root->signers[0].detail.find("depth 1"), std::string::npos)
      << by_root->signers[0].detail;
}

TEST_F(VerifyTest, VerifySignerCertificateNotEmbeddedButUntrustedIsFound) {
  Issued signer = IssueSigner();
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}}, nullptr,
                         /*embed_signer_certs=*/false);
  auto without = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(without);
  ExpectSigner(*without, 0, Indication::kIndeterminate, SubIndication::kNoSigningCertificateFound,
               Reason::kSignerCertNotFound);
  auto with = MakeVerifier({}, nullptr, Stack({signer.cert.get()})).VerifyBytes(content_, sig);
  ASSERT_TRUE(with);
  ExpectSigner(*with, 0, Indication::kPassed, SubIndication::kNone);
}

TEST_F(VerifyTest, VerifyCoSignedWithOneForgedSignerFailsOverallAndReportsGoodSigner) {
  Issued officer = IssueSigner();
  Issued seal = root_.Issue(CertSpec{.subject = "/CN=Seal/O=Test Union/C=VN"}, KeyType::kP384);
  CmsPtr cms = SignCms(content_, {{officer.cert.get(), officer.key.get()},
                                  {seal.cert.get(), seal.key.get(), EVP_sha384()}});
  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms.get()), 1);
  ASN1_OCTET_STRING* value = CMS_SignerInfo_get0_signature(si);
  FlipByte(value, 10);
  auto report = MakeVerifier().VerifyBytes(content_, ToDer(cms.get()));
  ASSERT_TRUE(report);
  ASSERT_EQ(report->signers.size(), 2u);
  EXPECT_EQ(report->indication, Indication::kFailed);
  EXPECT_EQ(report->sub_indication, SubIndication::kSigCryptoFailure);
  ExpectSigner(*report, 0, Indication::kPassed, SubIndication::kNone);
  ExpectSigner(*report, 1, Indication::kFailed, SubIndication::kSigCryptoFailure);
  EXPECT_EQ(report->signers[1].digest_algorithm, "SHA-384");
}

TEST_F(VerifyTest, VerifyCoSignedWithTwoDigestAlgorithmsPassesBoth) {
  Issued officer = IssueSigner();
  Issued seal = root_.Issue(CertSpec{.subject = "/CN=Seal/O=Test Union/C=VN"}, KeyType::kP384);
  std::string sig = Sign(content_, {{officer.cert.get(), officer.key.get()},
                                    {seal.cert.get(), seal.key.get(), EVP_sha512()}});
  TempDir dir;
  testing::WriteTestFile(dir.file("doc"), content_);
  auto report = MakeVerifier().VerifyFile(dir.file("doc"), sig);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->indication, Indication::kPassed);
  ASSERT_EQ(report->signers.size(), 2u);
  EXPECT_EQ(report->signers[1].digest_algorithm, "SHA-512");
}

TEST_F(VerifyTest, VerifyVietnameseNamesStayIntactInTextAndJson) {
  CertSpec spec;
  spec.subject = "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/UID=MST:0101234567/C=VN";
  Issued signer = IssueSigner(spec);
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->signers[0].name, "Nguyễn Thị Duyên");
  EXPECT_EQ(report->signers[0].organization, "Công đoàn Bãi Cháy");
  EXPECT_NE(report->signers[0].subject.find("UID=MST:0101234567"), std::string::npos);
  std::string json = ReportToJson(*report);
  EXPECT_NE(json.find("\"name\":\"Nguyễn Thị Duyên\""), std::string::npos) << json;
  EXPECT_NE(json.find("Công đoàn Bãi Cháy"), std::string::npos);
  std::string vi = ReportToText(*report, Lang::kVi);
  EXPECT_NE(vi.find("Xác thực: ký bởi Nguyễn Thị Duyên thuộc Công đoàn Bãi Cháy lúc "),
            std::string::npos)
      << vi;
  std::string en = ReportToText(*report, Lang::kEn);
  EXPECT_NE(en.find("Authentic: signed by Nguyễn Thị Duyên of Công đoàn Bãi Cháy at "),
            std::string::npos)
      << en;
}

TEST_F(VerifyTest, VerifyFailureSentencesExistInVietnameseAndEnglish) {
  Issued signer = IssueSigner();
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_ + "x", sig);
  ASSERT_TRUE(report);
  std::string vi = SignerSentence(report->signers[0], Lang::kVi);
  std::string en = SignerSentence(report->signers[0], Lang::kEn);
  EXPECT_EQ(vi.rfind("Không hợp lệ: tệp đã bị thay đổi sau khi được ký", 0), 0u) << vi;
  EXPECT_EQ(en.rfind("Not valid: the file was changed after it was signed", 0), 0u) << en;
  // Every reason has a sentence in both languages.
  for (int r = static_cast<int>(Reason::kContentTypeMissing);
       r <= static_cast<int>(Reason::kExtKeyUsageRefused); ++r) {
    Reason reason = static_cast<Reason>(r);
    EXPECT_FALSE(ReasonText(reason, Lang::kVi).empty()) << ReasonName(reason);
    EXPECT_FALSE(ReasonText(reason, Lang::kEn).empty()) << ReasonName(reason);
    EXPECT_NE(ReasonText(reason, Lang::kVi), ReasonText(reason, Lang::kEn)) << ReasonName(reason);
    EXPECT_FALSE(ReasonName(reason).empty());
  }
}

TEST_F(VerifyTest, VerifySha1SignatureIsRefusedByPolicyUnlessLegacyAllowed) {
  Issued signer = IssueSigner();
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get(), EVP_sha1(), false}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kIndeterminate, SubIndication::kCryptoConstraintsFailure,
               Reason::kWeakDigest);
  EXPECT_NE(report->signers[0].detail.find("SHA-1"), std::string::npos);
  TrustOptions legacy;
  legacy.allow_legacy = true;
  auto allowed = MakeVerifier(legacy).VerifyBytes(content_, sig);
  ASSERT_TRUE(allowed);
  ExpectSigner(*allowed, 0, Indication::kPassed, SubIndication::kNone);
}

TEST_F(VerifyTest, VerifyRsa1024SignerIsRefusedByPolicyUnlessLegacyAllowed) {
  EvpPkeyPtr key(EVP_RSA_gen(1024));
  ASSERT_TRUE(key);
  X509Ptr cert = root_.IssueFor(CertSpec{}, key.get());
  std::string sig = Sign(content_, {{cert.get(), key.get()}});
  auto report = MakeVerifier().VerifyBytes(content_, sig);
  ASSERT_TRUE(report);
  ExpectSigner(*report, 0, Indication::kIndeterminate, SubIndication::kCryptoConstraintsFailure,
               Reason::kWeakKey);
  EXPECT_NE(report->signers[0].detail.find("RSA 1024"), std::string::npos);
  TrustOptions legacy;
  legacy.allow_legacy = true;
  auto allowed = MakeVerifier(legacy).VerifyBytes(content_, sig);
  ASSERT_TRUE(allowed);
  ExpectSigner(*allowed, 0, Indication::kPassed, SubIndication::kNone);
}

TEST_F(VerifyTest, VerifyWithoutSignedAttributesChecksSignatureOverContent) {
  for (KeyType type : {KeyType::kP256, KeyType::kRsa2048}) {
    Issued signer = root_.Issue(CertSpec{}, type);
    SignerSpec s{signer.cert.get(), signer.key.get(), EVP_sha256(), false, true};
    std::string sig = Sign(content_, {s});
    auto report = MakeVerifier().VerifyBytes(content_, sig);
    ASSERT_TRUE(report);
    ExpectSigner(*report, 0, Indication::kPassed, SubIndication::kNone);
    EXPECT_FALSE(report->signers[0].signing_time.has_value());
    auto changed = MakeVerifier().VerifyBytes(content_ + ".", sig);
    ASSERT_TRUE(changed);
    ExpectSigner(*changed, 0, Indication::kFailed, SubIndication::kSigCryptoFailure);
  }
}

TEST_F(VerifyTest, VerifyNonCmsOrTruncatedSignatureIsDataError) {
  Issued signer = IssueSigner();
  std::string sig = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  Verifier v = MakeVerifier();
  for (const std::string& bad :
       {std::string("not a signature"), sig.substr(0, sig.size() / 2), sig + "junk",
        testing::CertToDer(signer.cert.get())}) {
    auto r = v.VerifyBytes(content_, bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), Code::kDataError) << r.error().message();
  }
}

TEST_F(VerifyTest, VerifyBytesRefusesEmbeddedContentAndVerifyEmbeddedAcceptsIt) {
  Issued signer = IssueSigner();
  BioPtr in(BIO_new_mem_buf(content_.data(), static_cast<int>(content_.size())));
  CmsPtr cms(CMS_sign(signer.cert.get(), signer.key.get(), nullptr, in.get(), CMS_BINARY));
  ASSERT_TRUE(cms);
  std::string der = ToDer(cms.get());
  Verifier v = MakeVerifier();
  auto detached = v.VerifyBytes(content_, der);
  ASSERT_FALSE(detached);
  EXPECT_EQ(detached.error().code(), Code::kDataError);
  auto embedded = v.VerifyEmbedded(der);
  ASSERT_TRUE(embedded) << embedded.error().message();
  EXPECT_EQ(embedded->indication, Indication::kPassed);
}

TEST_F(VerifyTest, DecodeSignatureAcceptsPemAndDer) {
  Issued signer = IssueSigner();
  std::string der = Sign(content_, {{signer.cert.get(), signer.key.get()}});
  std::string b64 = Base64Encode(der);
  std::string pem = "-----BEGIN CMS-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) pem += b64.substr(i, 64) + "\n";
  pem += "-----END CMS-----\n";
  auto from_pem = DecodeSignature(pem, "sig.pem");
  ASSERT_TRUE(from_pem) << from_pem.error().message();
  EXPECT_EQ(*from_pem, der);
  auto from_der = DecodeSignature(der, "sig.der");
  ASSERT_TRUE(from_der);
  EXPECT_EQ(*from_der, der);
  auto wrong = DecodeSignature("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                               "cert.pem");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), Code::kDataError);
  EXPECT_NE(wrong.error().message().find("cert.pem"), std::string::npos);
}

TEST(ReportTest, JsonHasRequiredShapeAndEscapes) {
  Report r;
  r.validation_time = 0;
  SignerReport s;
  s.name = "A \"quoted\" \\ name\n";
  s.indication = Indication::kFailed;
  s.sub_indication = SubIndication::kHashFailure;
  s.reason = Reason::kDigestMismatch;
  s.signing_time = 86400;
  r.signers.push_back(s);
  r.signers.push_back(SignerReport{});
  Summarize(r);
  std::string json = ReportToJson(r);
  EXPECT_EQ(json.rfind("{\"indication\":\"FAILED\",\"subIndication\":\"HASH_FAILURE\","
                       "\"validationTime\":\"1970-01-01T00:00:00Z\",\"signers\":[",
                       0),
            0u)
      << json;
  EXPECT_NE(json.find("\"name\":\"A \\\"quoted\\\" \\\\ name\\n\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"signingTime\":\"1970-01-02T00:00:00Z\""), std::string::npos);
  EXPECT_NE(json.find("\"subIndication\":null"), std::string::npos);
  EXPECT_EQ(JsonString("\xff"), "\"\xEF\xBF\xBD\"");
  EXPECT_EQ(JsonString("Bãi Cháy"), "\"Bãi Cháy\"");
}

TEST(ReportTest, SummarizeTakesFailedOverIndeterminateOverPassed) {
  Report r;
  SignerReport passed, indeterminate, failed;
  indeterminate.indication = Indication::kIndeterminate;
  indeterminate.sub_indication = SubIndication::kTryLater;
  failed.indication = Indication::kFailed;
  failed.sub_indication = SubIndication::kRevoked;
  r.signers = {passed, indeterminate};
  Summarize(r);
  EXPECT_EQ(r.indication, Indication::kIndeterminate);
  r.signers = {indeterminate, failed, passed};
  Summarize(r);
  EXPECT_EQ(r.indication, Indication::kFailed);
  EXPECT_EQ(r.sub_indication, SubIndication::kRevoked);
}

TEST(ReportTest, ParseRfc3339AcceptsOffsetsAndRejectsGarbage) {
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseRfc3339("2026-11-28T17:00:00+07:00"), *ParseRfc3339("2026-11-28T10:00:00Z"));
  EXPECT_EQ(*ParseRfc3339("2026-11-28T10:00:00.123Z"), *ParseRfc3339("2026-11-28T10:00:00Z"));
  EXPECT_EQ(FormatRfc3339(*ParseRfc3339("2024-02-29T23:59:59Z")), "2024-02-29T23:59:59Z");
  for (const char* bad : {"", "2026-11-28", "2026-13-01T00:00:00Z", "2025-02-29T00:00:00Z",
                          "2026-11-28T10:00:00", "2026-11-28T25:00:00Z", "yesterday",
                          "2026-11-28T10:00:00Zjunk"}) {
    auto r = ParseRfc3339(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    }
  }
}

}  // namespace
}  // namespace sealpost::crypto
