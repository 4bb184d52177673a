// Our CAdES B-B signatures, single and co-signed, checked by the stock peers
// (openssl cms, gpgsm, GnuTLS certtool), and co-signing on top of signatures
// those peers made.
#include <gtest/gtest.h>

#include "crypto/cades_sign.h"
#include "crypto/software_signer.h"
#include "tests/support/cms_peers.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

using testing::CertSpec;
using testing::KeyType;
using testing::TestCa;

class InteropSignTest : public ::testing::Test {
 protected:
  InteropSignTest()
      : ca_(TestCa::CreateRoot("/CN=Liên đoàn Lao động Test CA/O=Test Federation/C=VN")),
        gpgsm_(dir_.path()) {
    ca_pem_ = dir_.file("ca.pem");
    testing::WriteTestFile(ca_pem_, testing::CertToPem(ca_.cert()));
    content_ = dir_.file("directive.txt");
    testing::WriteTestFile(content_, "Chỉ thị số 12/CT-CĐ về việc tổ chức đại hội\n");
    tampered_ = dir_.file("directive-tampered.txt");
    testing::WriteTestFile(tampered_, "Chỉ thị số 13/CT-CĐ về việc tổ chức đại hội\n");
    EXPECT_TRUE(gpgsm_.TrustCa(ca_.cert()));
  }

  std::unique_ptr<SoftwareKeySigner> MakeSigner(const std::string& label, KeyType type,
                                                const std::string& subject) {
    CertSpec spec;
    spec.subject = subject;
    auto issued = ca_.Issue(spec, type);
    auto s = SoftwareKeySigner::CreateForTesting(label, std::move(issued.key), std::move(issued.cert));
    EXPECT_TRUE(s) << (s ? "" : s.error().ToString());
    return s ? std::move(*s) : nullptr;
  }

  // Checks `sig` with all three peers for `signers` signers, and that a
  // one-byte change of the content is rejected by all three.
  void ExpectAllPeersAccept(const std::string& sig, int signers) {
    EXPECT_TRUE(testing::OpensslCmsVerifies(sig, content_, ca_pem_, "-cades"));
    EXPECT_TRUE(gpgsm_.Verifies(sig, content_, signers));
    EXPECT_TRUE(testing::CerttoolVerifiesAll(sig, content_, ca_pem_, signers));
    EXPECT_FALSE(testing::OpensslCmsVerifies(sig, tampered_, ca_pem_));
    EXPECT_FALSE(gpgsm_.Verifies(sig, tampered_, signers));
    EXPECT_FALSE(testing::CerttoolVerifiesAll(sig, tampered_, ca_pem_, signers));
    // Also none of the signers may pass on its own on the tampered file.
    std::string out;
    testing::RunCommand("certtool --p7-verify --inder --infile " + testing::ShellQuote(sig) +
                            " --load-data " + testing::ShellQuote(tampered_) +
                            " --load-ca-certificate " + testing::ShellQuote(ca_pem_),
                        &out);
    EXPECT_EQ(out.find("Signature status: ok"), std::string::npos) << out;
  }

  testing::TempDir dir_;
  TestCa ca_;
  testing::GpgsmHome gpgsm_;
  std::string ca_pem_;
  std::string content_;
  std::string tampered_;
};

class InteropSignKeyTest : public InteropSignTest, public ::testing::WithParamInterface<KeyType> {};

TEST_P(InteropSignKeyTest, SingleSignerVerifiesWithOpensslGpgsmCerttool) {
  auto signer = MakeSigner("k", GetParam(), "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN");
  ASSERT_TRUE(signer);
  auto der = SignFile(*signer, KeyRef{"k"}, content_, {});
  ASSERT_TRUE(der) << der.error().ToString();
  testing::WriteTestFile(dir_.file("s.p7s"), *der);
  ExpectAllPeersAccept(dir_.file("s.p7s"), 1);
}

INSTANTIATE_TEST_SUITE_P(Keys, InteropSignKeyTest,
                         ::testing::Values(KeyType::kRsa2048, KeyType::kRsa3072, KeyType::kP256,
                                           KeyType::kP384),
                         [](const auto& info) { return std::string(testing::KeyTypeName(info.param)); });

TEST_F(InteropSignTest, CoSignedOfficerAndSealVerifyWithAllPeers) {
  auto officer = MakeSigner("officer", KeyType::kP256, "/CN=Trần Văn Hùng/O=Công đoàn Bãi Cháy/C=VN");
  auto seal = MakeSigner("seal", KeyType::kRsa2048, "/CN=Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN");
  auto first = SignFile(*officer, KeyRef{"officer"}, content_, {});
  ASSERT_TRUE(first);
  auto existing = ExistingSignature::Parse(*first, "officer.p7s");
  ASSERT_TRUE(existing);
  auto both = AppendSignatureForFile(*seal, KeyRef{"seal"}, *existing, content_, {});
  ASSERT_TRUE(both) << both.error().ToString();
  testing::WriteTestFile(dir_.file("both.p7s"), *both);
  ExpectAllPeersAccept(dir_.file("both.p7s"), 2);
}

TEST_F(InteropSignTest, ThreeSignersMixedDigestsVerifyWithAllPeers) {
  auto a = MakeSigner("a", KeyType::kP384, "/CN=Chủ tịch/O=Công đoàn Bãi Cháy/C=VN");
  auto b = MakeSigner("b", KeyType::kP256, "/CN=Kế toán/O=Công đoàn Bãi Cháy/C=VN");
  auto c = MakeSigner("c", KeyType::kRsa3072, "/CN=Con dấu/O=Công đoàn Bãi Cháy/C=VN");
  auto sig = SignFile(*a, KeyRef{"a"}, content_, {});
  ASSERT_TRUE(sig);
  for (auto* s : {b.get(), c.get()}) {
    auto existing = ExistingSignature::Parse(*sig, "co.p7s");
    ASSERT_TRUE(existing) << existing.error().ToString();
    std::string label = s == b.get() ? "b" : "c";
    sig = AppendSignatureForFile(*s, KeyRef{label}, *existing, content_, {});
    ASSERT_TRUE(sig) << sig.error().ToString();
  }
  testing::WriteTestFile(dir_.file("three.p7s"), *sig);
  ExpectAllPeersAccept(dir_.file("three.p7s"), 3);
}

TEST_F(InteropSignTest, ChainWithIntermediateVerifiesWithRootOnlyEverywhere) {
  TestCa inter = ca_.CreateIntermediate("/CN=Công đoàn tỉnh CA/O=Test Federation/C=VN");
  auto issued = inter.Issue(CertSpec(), KeyType::kP256);
  auto signer = SoftwareKeySigner::CreateForTesting("k", std::move(issued.key), std::move(issued.cert));
  ASSERT_TRUE(signer);
  CadesSignOptions opts;
  opts.chain = {inter.cert()};
  auto der = SignFile(**signer, KeyRef{"k"}, content_, opts);
  ASSERT_TRUE(der);
  testing::WriteTestFile(dir_.file("s.p7s"), *der);
  ExpectAllPeersAccept(dir_.file("s.p7s"), 1);
}

// A foreign signature made by `make` (openssl, gpgsm, certtool), then our
// union seal appended: every signer must still verify, with every peer.
class InteropAppendTest : public InteropSignTest {
 protected:
  void AppendSealAndCheck(const std::string& foreign) {
    std::string der = testing::ReadTestFile(foreign);
    ASSERT_FALSE(der.empty());
    ASSERT_TRUE(testing::OpensslCmsVerifies(foreign, content_, ca_pem_));
    auto existing = ExistingSignature::Parse(der, foreign);
    ASSERT_TRUE(existing) << existing.error().ToString();
    auto seal = MakeSigner("seal", KeyType::kRsa2048, "/CN=Công đoàn Bãi Cháy/C=VN");
    auto both = AppendSignatureForFile(*seal, KeyRef{"seal"}, *existing, content_, {});
    ASSERT_TRUE(both) << both.error().ToString();
    std::string out = dir_.file("appended.p7s");
    testing::WriteTestFile(out, *both);
    // openssl checks every SignerInfo (it fails if any one does not verify).
    EXPECT_TRUE(testing::OpensslCmsVerifies(out, content_, ca_pem_));
    EXPECT_TRUE(testing::CerttoolVerifiesAll(out, content_, ca_pem_, 2));
    EXPECT_TRUE(gpgsm_.Verifies(out, content_, 2));
    EXPECT_FALSE(testing::OpensslCmsVerifies(out, tampered_, ca_pem_));

    // Appending the same seal onto a signature of another file is refused.
    auto wrong = AppendSignatureForFile(*seal, KeyRef{"seal"}, *existing, tampered_, {});
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().code(), Code::kDataError);
  }

  testing::Issued Officer(KeyType type) {
    CertSpec spec;
    spec.subject = "/CN=Phạm Thị Lan/O=Công đoàn Bãi Cháy/C=VN";
    testing::Issued id = ca_.Issue(spec, type);
    testing::WriteTestFile(dir_.file("officer.pem"), testing::CertToPem(id.cert.get()));
    testing::WriteTestFile(dir_.file("officer.key"), testing::KeyToPkcs8Pem(id.key.get()));
    return id;
  }
};

TEST_F(InteropAppendTest, AppendToOpensslSignatureKeepsEverySignerValid) {
  Officer(KeyType::kP256);
  ASSERT_TRUE(testing::OpensslCmsSign(content_, dir_.file("f.p7s"), dir_.file("officer.pem"),
                                      dir_.file("officer.key"), "-cades"));
  AppendSealAndCheck(dir_.file("f.p7s"));
}

TEST_F(InteropAppendTest, AppendToOpensslSha384SignatureWithSmimeCapsKeepsEverySignerValid) {
  Officer(KeyType::kRsa2048);
  // Default openssl attributes (SMIMECapabilities too) and another digest.
  ASSERT_TRUE(testing::OpensslCmsSign(content_, dir_.file("f.p7s"), dir_.file("officer.pem"),
                                      dir_.file("officer.key"), "-md sha384"));
  AppendSealAndCheck(dir_.file("f.p7s"));
}

TEST_F(InteropAppendTest, AppendToGpgsmSignatureKeepsEverySignerValid) {
  testing::Issued id = Officer(KeyType::kRsa2048);
  ASSERT_TRUE(gpgsm_.ImportIdentity(id.cert.get(), id.key.get()));
  ASSERT_TRUE(gpgsm_.DetachSign(content_, dir_.file("g.p7s"), id.cert.get()));
  // gpgsm writes BER with indefinite lengths: the merge must cope.
  std::string der = testing::ReadTestFile(dir_.file("g.p7s"));
  ASSERT_GE(der.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(der[1]), 0x80);
  AppendSealAndCheck(dir_.file("g.p7s"));
}

TEST_F(InteropAppendTest, AppendToCerttoolSignatureKeepsEverySignerValid) {
  Officer(KeyType::kP256);
  ASSERT_TRUE(testing::CerttoolSign(content_, dir_.file("c.p7s"), dir_.file("officer.pem"),
                                    dir_.file("officer.key")));
  AppendSealAndCheck(dir_.file("c.p7s"));
}

}  // namespace
}  // namespace sealpost::crypto
