// The verifier on external samples: OpenSSL's CMS files that a verifier
// must reject, and the RFC 4134 example signatures.
#include <gtest/gtest.h>

#include <string>

#include "crypto/report.h"
#include "crypto/verify.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

const std::string kTestData = SEALPOST_TESTDATA_DIR;
const std::string kRfc4134 = kTestData + "/rfc4134/";

std::string Read(const std::string& path) {
  std::string data = testing::ReadTestFile(path);
  EXPECT_FALSE(data.empty()) << "cannot read " << path;
  return data;
}

Verifier MakeVerifier(const TrustFiles& files, TrustOptions options) {
  auto store = LoadTrustStore(files, options);
  EXPECT_TRUE(store) << store.error().message();
  auto v = Verifier::Create(std::move(*store));
  EXPECT_TRUE(v);
  return std::move(*v);
}

struct RejectCase {
  const char* file;
  Reason reason;
};

TEST(RejectSamplesTest, VerifyOpensslRejectFilesFailsWithTheRightReason) {
  // Their signer does not chain to anything here; the format check must
  // decide before the path does.
  Verifier v = MakeVerifier({{kRfc4134 + "carl-both.pem"}, {}, {}}, {});
  for (const RejectCase& c : {RejectCase{"bad_signtime_attr.cms", Reason::kSigningTimeMalformed},
                              RejectCase{"no_ct_attr.cms", Reason::kContentTypeMissing},
                              RejectCase{"no_md_attr.cms", Reason::kMessageDigestMissing},
                              RejectCase{"ct_multiple_attr.cms", Reason::kContentTypeDuplicate}}) {
    SCOPED_TRACE(c.file);
    std::string der = Read(kTestData + "/openssl-cms-reject/" + c.file);
    auto report = v.VerifyEmbedded(der);
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_EQ(report->indication, Indication::kFailed);
    EXPECT_EQ(report->sub_indication, SubIndication::kFormatFailure);
    ASSERT_EQ(report->signers.size(), 1u);
    EXPECT_EQ(report->signers[0].reason, c.reason) << ReasonName(report->signers[0].reason);
  }
}

struct Sample {
  const char* name;
  bool detached;
  const char* signer;  // CN of the signer
  Reason default_reason;  // under the default algorithm policy
};

// RFC 4134 section 4 samples that OpenSSL verifies (4.6 needs DSA parameter
// inheritance, which OpenSSL does not support).
const Sample kSamples[] = {
    {"4.1.bin", false, "AliceDSS", Reason::kWeakDigest},
    {"4.2.bin", false, "AliceRSA", Reason::kWeakDigest},
    {"4.3.bin", true, "AliceDSS", Reason::kWeakDigest},
    {"4.4.bin", false, "AliceDSS", Reason::kWeakDigest},
    {"4.5.bin", false, "AliceRSA", Reason::kWeakDigest},
    {"4.7.bin", false, "AliceDSS", Reason::kWeakDigest},
    {"4.10.bin", false, "AliceDSS", Reason::kWeakDigest},
};

Result<Report> VerifySample(const Verifier& v, const Sample& s, std::optional<std::time_t> at = {}) {
  std::string der = Read(kRfc4134 + s.name);
  if (s.detached) return v.VerifyBytes(Read(kRfc4134 + "ExContent.bin"), der, at);
  return v.VerifyEmbedded(der, at);
}

TEST(Rfc4134Test, VerifySamplesRefusedByDefaultPolicyWithReason) {
  Verifier v = MakeVerifier({{kRfc4134 + "carl-both.pem"}, {}, {}}, {});
  for (const Sample& s : kSamples) {
    SCOPED_TRACE(s.name);
    auto report = VerifySample(v, s);
    ASSERT_TRUE(report) << report.error().message();
    ASSERT_FALSE(report->signers.empty());
    EXPECT_EQ(report->indication, Indication::kIndeterminate);
    EXPECT_EQ(report->sub_indication, SubIndication::kCryptoConstraintsFailure);
    EXPECT_EQ(report->signers[0].reason, s.default_reason) << ReasonName(report->signers[0].reason);
    EXPECT_NE(report->signers[0].detail.find("SHA-1"), std::string::npos)
        << report->signers[0].detail;
    std::string en = SignerSentence(report->signers[0], Lang::kEn);
    EXPECT_NE(en.find("hash algorithm that the policy refuses"), std::string::npos) << en;
  }
}

TEST(Rfc4134Test, VerifySamplesPassWithLegacyAllowed) {
  TrustOptions legacy;
  legacy.allow_legacy = true;
  Verifier v = MakeVerifier({{kRfc4134 + "carl-both.pem"}, {}, {}}, legacy);
  for (const Sample& s : kSamples) {
    SCOPED_TRACE(s.name);
    auto report = VerifySample(v, s);
    ASSERT_TRUE(report) << report.error().message();
    ASSERT_FALSE(report->signers.empty());
    EXPECT_EQ(report->indication, Indication::kPassed)
        << ReasonName(report->signers[0].reason) << " " << report->signers[0].detail;
    EXPECT_EQ(report->signers[0].name, s.signer);
    // Their certificates name no CRL distribution point.
    EXPECT_EQ(report->signers[0].revocation, Revocation::kNotChecked);
  }
}

TEST(Rfc4134Test, VerifySamplesRevokedWithCarlCrlForAll) {
  TrustOptions legacy;
  legacy.allow_legacy = true;
  Verifier v = MakeVerifier({{kRfc4134 + "carl-both.pem"},
                             {},
                             {kRfc4134 + "CarlRSACRLForAll.crl", kRfc4134 + "CarlDSSCRLForAll.crl"}},
                            legacy);
  for (const Sample& s : kSamples) {
    SCOPED_TRACE(s.name);
    auto report = VerifySample(v, s);
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_EQ(report->indication, Indication::kFailed);
    EXPECT_EQ(report->sub_indication, SubIndication::kRevoked);
    EXPECT_EQ(report->signers[0].revocation, Revocation::kRevoked);
  }
  // With the empty CRLs the same samples pass, checked.
  Verifier empty = MakeVerifier({{kRfc4134 + "carl-both.pem"},
                                 {},
                                 {kRfc4134 + "CarlRSACRLEmpty.crl", kRfc4134 + "CarlDSSCRLEmpty.crl"}},
                                legacy);
  for (const Sample& s : kSamples) {
    SCOPED_TRACE(s.name);
    auto report = VerifySample(empty, s);
    ASSERT_TRUE(report);
    EXPECT_EQ(report->indication, Indication::kPassed)
        << ReasonName(report->signers[0].reason) << " " << report->signers[0].detail;
    EXPECT_EQ(report->signers[0].revocation, Revocation::kGood);
  }
}

// 4.3 has no signed attributes: its signature covers the content digest
// directly, so a changed content shows as a signature failure.
TEST(Rfc4134Test, VerifyDetachedSampleWithChangedContentFails) {
  TrustOptions legacy;
  legacy.allow_legacy = true;
  Verifier v = MakeVerifier({{kRfc4134 + "carl-both.pem"}, {}, {}}, legacy);
  std::string content = Read(kRfc4134 + "ExContent.bin");
  content[0] ^= 1;
  auto report = v.VerifyBytes(content, Read(kRfc4134 + "4.3.bin"));
  ASSERT_TRUE(report);
  EXPECT_EQ(report->indication, Indication::kFailed);
  EXPECT_EQ(report->sub_indication, SubIndication::kSigCryptoFailure);
  EXPECT_FALSE(report->signers[0].signing_time.has_value());
}

TEST(Rfc4134Test, VerifyEmbeddedSampleAsDetachedIsDataError) {
  Verifier v = MakeVerifier({{kRfc4134 + "carl-both.pem"}, {}, {}}, {});
  auto r = v.VerifyBytes(Read(kRfc4134 + "ExContent.bin"), Read(kRfc4134 + "4.2.bin"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kDataError);
  EXPECT_NE(r.error().message().find("detached"), std::string::npos);
}

}  // namespace
}  // namespace sealpost::crypto
