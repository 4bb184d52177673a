// CRLs of intermediate CAs in the daemon's trust (daemon/trust.h,
// daemon/crls.h): root -> intermediate (not a trust anchor) -> officer. The
// policy's CRL sources give the root's CRL and the intermediate's CRL; the
// intermediate reaches the daemon only as an untrusted certificate
// (verify.intermediates) and in the signature's CMS. Real PKI, real files,
// file:/// sources; no network.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include <openssl/cms.h>
#include <openssl/x509.h>

#include "base/openssl.h"
#include "crypto/report.h"
#include "crypto/verify.h"
#include "daemon/crls.h"
#include "daemon/trust.h"
#include "policies/holder.h"
#include "tests/support/test_pki.h"

namespace sealpost::daemon {
namespace {

using testing::CertSha256Hex;
using testing::CertSpec;
using testing::CertToPem;
using testing::CrlToDer;
using testing::Issued;
using testing::TempDir;
using testing::TestCa;
using testing::WriteTestFile;

long SerialOf(X509* cert) { return ASN1_INTEGER_get(X509_get0_serialNumber(cert)); }

// A detached CMS over `data` by `signer`, carrying `chain` too.
std::string SignWithChain(const Issued& signer, X509* chain, const std::string& data) {
  X509StackPtr extra(sk_X509_new_null());
  X509_up_ref(chain);
  sk_X509_push(extra.get(), chain);
  BioPtr in(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  CmsPtr cms(CMS_sign(signer.cert.get(), signer.key.get(), extra.get(), in.get(),
                      CMS_DETACHED | CMS_BINARY));
  EXPECT_NE(cms, nullptr);
  BioPtr out(BIO_new(BIO_s_mem()));
  EXPECT_EQ(i2d_CMS_bio(out.get(), cms.get()), 1);
  char* p = nullptr;
  long n = BIO_get_mem_data(out.get(), &p);
  return std::string(p, static_cast<size_t>(n));
}

class CrlIntermediateTest : public ::testing::Test {
 protected:
  CrlIntermediateTest()
      : root_(TestCa::CreateRoot("/CN=Test Root/O=Test Federation/C=VN")),
        inter_(root_.CreateIntermediate("/CN=CA tỉnh Quảng Ninh/O=Test Federation/C=VN")) {}

  void SetUp() override {
    WriteTestFile(tmp_.file("root.pem"), CertToPem(root_.cert()));
    WriteTestFile(tmp_.file("inter.pem"), CertToPem(inter_.cert()));
    std::string policy =
        "federation: {id: thu, name: \"Liên đoàn thử\"}\n"
        "trust:\n  anchors:\n    - {id: root, name: \"Test Root\", sha256: \"" +
        CertSha256Hex(root_.cert()) +
        "\"}\n"
        "  crl_sources:\n"
        "    - {anchor: root, url: \"file://" + tmp_.file("root.crl") + "\"}\n"
        "    - {anchor: root, url: \"file://" + tmp_.file("inter.crl") + "\"}\n"
        "unions:\n"
        "  - {id: ldld-thu, name: \"LĐLĐ Thử\", level: district}\n";
    WriteTestFile(tmp_.file("policy.yaml"), policy);
    auto holder = policies::PolicyHolder::Open({tmp_.file("policy.yaml")});
    ASSERT_TRUE(holder.has_value()) << holder.error().message();
    policy_ = std::move(*holder);
  }

  // The trust and a CRL manager over it; `intermediates` as verify.intermediates.
  void Start(const std::vector<std::string>& intermediates) {
    auto t = SharedTrust::Create({tmp_.file("root.pem")}, {}, intermediates);
    ASSERT_TRUE(t.has_value()) << t.error().message();
    trust_ = std::move(*t);
    CrlManagerOptions o;
    o.state_dir = tmp_.path();
    o.policy = policy_.get();
    o.trust = trust_.get();
    auto m = CrlManager::Create(std::move(o));
    ASSERT_TRUE(m.has_value()) << m.error().message();
    manager_ = std::move(*m);
    manager_->RefreshAll();
  }

  CrlSourceStatus SourceOf(const std::string& file) {
    for (const CrlSourceStatus& s : manager_->Snapshot()) {
      if (s.url == "file://" + tmp_.file(file)) return s;
    }
    ADD_FAILURE() << "no source " << file;
    return {};
  }

  crypto::Report Verify(const std::string& sig) {
    auto snap = trust_->Current();
    auto report = snap->verifier->VerifyBytes(content_, sig);
    EXPECT_TRUE(report.has_value()) << report.error().message();
    return report.value_or(crypto::Report{});
  }

  TempDir tmp_;
  TestCa root_, inter_;
  std::unique_ptr<policies::PolicyHolder> policy_;
  std::unique_ptr<SharedTrust> trust_;
  std::unique_ptr<CrlManager> manager_;
  const std::string content_ = "Công văn số 7/CĐ: lịch họp quý IV.\n";
};

// The intermediate revokes the officer: its CRL (a policy CRL source,
// signed by a CA that is not an anchor) is taken, and the officer's
// signature is refused as REVOKED; another officer of the same
// intermediate still passes, revocation checked good for the whole path.
TEST_F(CrlIntermediateTest, LeafRevokedByAnIntermediateIsRefused) {
  CertSpec spec;
  spec.subject = "/CN=Nguyễn Văn Bị Thu Hồi/O=CĐ A/C=VN";
  Issued revoked = inter_.Issue(spec);
  spec.subject = "/CN=Trần Thị Còn Hiệu Lực/O=CĐ A/C=VN";
  Issued good = inter_.Issue(spec);
  WriteTestFile(tmp_.file("root.crl"), CrlToDer(root_.MakeCrl({}).get()));
  WriteTestFile(tmp_.file("inter.crl"),
                CrlToDer(inter_.MakeCrl({SerialOf(revoked.cert.get())}).get()));
  Start({tmp_.file("inter.pem")});

  CrlSourceStatus is = SourceOf("inter.crl");
  EXPECT_EQ(is.state, "fresh") << is.last_error;
  EXPECT_EQ(is.revoked, 1u);
  EXPECT_EQ(SourceOf("root.crl").state, "fresh") << SourceOf("root.crl").last_error;

  crypto::Report r = Verify(SignWithChain(revoked, inter_.cert(), content_));
  ASSERT_EQ(r.signers.size(), 1u);
  EXPECT_EQ(r.signers[0].sub_indication, crypto::SubIndication::kRevoked)
      << crypto::SubIndicationName(r.signers[0].sub_indication) << " " << r.signers[0].detail;
  EXPECT_EQ(r.signers[0].revocation, crypto::Revocation::kRevoked);

  crypto::Report g = Verify(SignWithChain(good, inter_.cert(), content_));
  ASSERT_EQ(g.signers.size(), 1u);
  EXPECT_EQ(g.signers[0].indication, crypto::Indication::kPassed) << g.signers[0].detail;
  EXPECT_EQ(g.signers[0].revocation, crypto::Revocation::kGood);
}

// The root revokes the intermediate: every officer under it is refused.
TEST_F(CrlIntermediateTest, RevokedIntermediateRefusesItsLeaves) {
  Issued officer = inter_.Issue(CertSpec{});
  WriteTestFile(tmp_.file("root.crl"),
                CrlToDer(root_.MakeCrl({SerialOf(inter_.cert())}).get()));
  WriteTestFile(tmp_.file("inter.crl"), CrlToDer(inter_.MakeCrl({}).get()));
  Start({tmp_.file("inter.pem")});
  crypto::Report r = Verify(SignWithChain(officer, inter_.cert(), content_));
  ASSERT_EQ(r.signers.size(), 1u);
  EXPECT_EQ(r.signers[0].sub_indication, crypto::SubIndication::kRevoked) << r.signers[0].detail;
  EXPECT_NE(r.signers[0].detail.find("depth 1"), std::string::npos) << r.signers[0].detail;
}

// Without verify.intermediates the daemon cannot check who signed the
// intermediate's CRL: it is refused with the issuer named, nothing taken;
// an officer whose certificate names a CRL distribution point is then
// INDETERMINATE/TRY_LATER (crl-missing), naming the issuer whose CRL is
// missing. A CRL under the intermediate's name signed by another key is
// refused as well.
TEST_F(CrlIntermediateTest, IntermediateCrlThatCannotBeVerifiedIsRefusedAndItsLeavesWait) {
  CertSpec spec;
  spec.crl_dp = "URI:http://127.0.0.1/inter.crl";
  Issued officer = inter_.Issue(spec);
  WriteTestFile(tmp_.file("root.crl"), CrlToDer(root_.MakeCrl({}).get()));
  WriteTestFile(tmp_.file("inter.crl"),
                CrlToDer(inter_.MakeCrl({SerialOf(officer.cert.get())}).get()));
  Start({});
  CrlSourceStatus is = SourceOf("inter.crl");
  EXPECT_EQ(is.state, "error");
  EXPECT_NE(is.last_error.find("CN=CA tỉnh Quảng Ninh\", which is not trust anchor"), std::string::npos)
      << is.last_error;
  EXPECT_NE(is.last_error.find("verify.intermediates"), std::string::npos) << is.last_error;
  crypto::Report r = Verify(SignWithChain(officer, inter_.cert(), content_));
  ASSERT_EQ(r.signers.size(), 1u);
  EXPECT_EQ(r.signers[0].sub_indication, crypto::SubIndication::kTryLater) << r.signers[0].detail;
  EXPECT_EQ(r.signers[0].reason, crypto::Reason::kCrlMissing);
  EXPECT_NE(r.signers[0].detail.find("no CRL of \"CA tỉnh Quảng Ninh\""), std::string::npos)
      << r.signers[0].detail;

  // A look-alike intermediate (same name, another key, not under the root).
  TestCa fake = TestCa::CreateRoot("/CN=CA tỉnh Quảng Ninh/O=Test Federation/C=VN");
  WriteTestFile(tmp_.file("fake.pem"), CertToPem(fake.cert()));
  WriteTestFile(tmp_.file("inter.crl"), CrlToDer(fake.MakeCrl({}).get()));
  Start({tmp_.file("fake.pem")});
  EXPECT_EQ(SourceOf("inter.crl").state, "error");
  EXPECT_NE(SourceOf("inter.crl").last_error.find("issued by"), std::string::npos)
      << SourceOf("inter.crl").last_error;
}

}  // namespace
}  // namespace sealpost::daemon
