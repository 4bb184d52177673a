#include "crypto/checkpoint.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/encoding.h"
#include "crypto/software_signer.h"
#include "tests/support/cms_peers.h"
#include "tests/support/test_pki.h"

namespace sealpost::crypto {
namespace {

using sealpost::testing::CertSpec;
using sealpost::testing::CertToPem;
using sealpost::testing::TempDir;
using sealpost::testing::TestCa;
using sealpost::testing::WriteTestFile;

merkle::Hash SomeRoot() { return merkle::LeafHash("some root"); }

TEST(CheckpointTest, SerializeEmptyTreeMatchesKnownBody) {
  Checkpoint cp{"example.com/log", 0, merkle::EmptyRoot(), {}};
  auto body = SerializeCheckpoint(cp);
  ASSERT_TRUE(body.has_value()) << body.error().ToString();
  EXPECT_EQ(*body, "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n");
}

TEST(CheckpointTest, SerializeThenParseRoundTripsWithUtf8OriginAndExtensions) {
  Checkpoint cp{"cdcs-baichay.vn/lưu trữ", 18446744073709551615ull, SomeRoot(),
                {"— ext one", "seq 12"}};
  auto body = SerializeCheckpoint(cp);
  ASSERT_TRUE(body.has_value()) << body.error().ToString();
  auto back = ParseCheckpoint(*body, "cp");
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(*back, cp);
}

TEST(CheckpointTest, SerializeWithNewlineInOriginOrEmptyExtensionFails) {
  EXPECT_FALSE(SerializeCheckpoint({"a\nb", 1, SomeRoot(), {}}).has_value());
  EXPECT_FALSE(SerializeCheckpoint({"", 1, SomeRoot(), {}}).has_value());
  EXPECT_FALSE(SerializeCheckpoint({"o", 1, SomeRoot(), {""}}).has_value());
  EXPECT_FALSE(SerializeCheckpoint({"o\r", 1, SomeRoot(), {}}).has_value());
}

TEST(CheckpointTest, ParseMalformedBodiesFailsWithDataErrorNamingTheLine) {
  const std::string root = Base64Encode(std::string(32, 'r'));
  const std::string ok = "log\n5\n" + root + "\n";
  ASSERT_TRUE(ParseCheckpoint(ok, "cp").has_value());
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "empty"},
      {"log\n5\n" + root, "no final newline"},
      {"log\r\n5\r\n" + root + "\r\n", "CRLF"},
      {"log\n05\n" + root + "\n", "leading zero"},
      {"log\n+5\n" + root + "\n", "plus sign"},
      {"log\n-1\n" + root + "\n", "negative"},
      {"log\n 5\n" + root + "\n", "space"},
      {"log\n18446744073709551616\n" + root + "\n", "overflow"},
      {"log\n5\n" + Base64Encode(std::string(31, 'r')) + "\n", "short root"},
      {"log\n5\n" + Base64Encode(std::string(33, 'r')) + "\n", "long root"},
      {"log\n5\n" + root.substr(0, 43) + "\n", "unpadded base64"},
      {"log\n5\n" + root.substr(0, 42) + "J=\n", "non-canonical base64"},
      {"log\n5\n\n", "empty root"},
      {"log\n5\n", "two lines"},
      {"\n5\n" + root + "\n", "empty origin"},
      {"log\n5\n" + root + "\n\n", "empty extension"},
      {"l\x01g\n5\n" + root + "\n", "control character"},
      {"l\xc3g\n5\n" + root + "\n", "invalid UTF-8"},
      {"l\xc0\xafg\n5\n" + root + "\n", "overlong UTF-8"},
      {ok + std::string(kCheckpointMaxBytes, 'x') + "\n", "too large"},
  };
  for (const auto& [body, why] : bad) {
    auto r = ParseCheckpoint(body, "peer.cp");
    ASSERT_FALSE(r.has_value()) << why;
    EXPECT_EQ(r.error().code(), Code::kDataError) << why;
    EXPECT_NE(r.error().message().find("peer.cp"), std::string::npos) << r.error().message();
  }
  std::string many = ok;
  for (size_t i = 0; i <= kCheckpointMaxExtensions; ++i) many += "e\n";
  EXPECT_FALSE(ParseCheckpoint(many, "cp").has_value());
}

class CheckpointSignatureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Test Root/O=Test Federation/C=VN"));
    CertSpec spec;
    spec.subject = "/CN=Con dấu Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN";
    auto seal = ca_->Issue(spec);
    seal_cert_ = X509Ptr(X509_dup(seal.cert.get()));
    auto signer = SoftwareKeySigner::CreateForTesting("seal", std::move(seal.key),
                                                      std::move(seal.cert));
    ASSERT_TRUE(signer.has_value()) << signer.error().ToString();
    signer_ = std::move(*signer);
    body_ = *SerializeCheckpoint({"cd-baichay.vn/archive", 42, SomeRoot(), {}});
  }

  std::unique_ptr<TestCa> ca_;
  X509Ptr seal_cert_;
  std::unique_ptr<SoftwareKeySigner> signer_;
  std::string body_;
};

TEST_F(CheckpointSignatureTest, SignThenVerifyWithSealSucceedsAndGoesThroughSigner) {
  auto sig = SignCheckpoint(*signer_, KeyRef{"seal"}, body_);
  ASSERT_TRUE(sig.has_value()) << sig.error().ToString();
  EXPECT_EQ(signer_->sign_count(), 1);
  Status s = VerifyCheckpointSignature(body_, *sig, seal_cert_.get(), "cp.p7s");
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(CheckpointSignatureTest, SignatureVerifiesWithOpensslCms) {
  auto sig = SignCheckpoint(*signer_, KeyRef{"seal"}, body_);
  ASSERT_TRUE(sig.has_value());
  TempDir dir;
  WriteTestFile(dir.file("cp"), body_);
  WriteTestFile(dir.file("cp.p7s"), *sig);
  WriteTestFile(dir.file("ca.pem"), CertToPem(ca_->cert()));
  EXPECT_TRUE(sealpost::testing::OpensslCmsVerifies(dir.file("cp.p7s"), dir.file("cp"),
                                                    dir.file("ca.pem")));
}

TEST_F(CheckpointSignatureTest, VerifyWithAlteredBodyFails) {
  auto sig = SignCheckpoint(*signer_, KeyRef{"seal"}, body_);
  ASSERT_TRUE(sig.has_value());
  std::string forged = *SerializeCheckpoint({"cd-baichay.vn/archive", 43, SomeRoot(), {}});
  Status s = VerifyCheckpointSignature(forged, *sig, seal_cert_.get(), "cp.p7s");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
}

TEST_F(CheckpointSignatureTest, VerifySignedByAnotherCertificateOfSameCaFails) {
  CertSpec spec;
  spec.subject = "/CN=Con dấu Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN";  // same name
  auto other = ca_->Issue(spec);
  auto other_signer = SoftwareKeySigner::CreateForTesting("other", std::move(other.key),
                                                          std::move(other.cert));
  ASSERT_TRUE(other_signer.has_value());
  auto sig = SignCheckpoint(**other_signer, KeyRef{"other"}, body_);
  ASSERT_TRUE(sig.has_value()) << sig.error().ToString();
  Status s = VerifyCheckpointSignature(body_, *sig, seal_cert_.get(), "cp.p7s");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
}

TEST_F(CheckpointSignatureTest, VerifyGarbageOrTruncatedSignatureFailsWithDataError) {
  auto sig = SignCheckpoint(*signer_, KeyRef{"seal"}, body_);
  ASSERT_TRUE(sig.has_value());
  EXPECT_EQ(VerifyCheckpointSignature(body_, "not cms", seal_cert_.get(), "x").code(),
            Code::kDataError);
  EXPECT_EQ(VerifyCheckpointSignature(body_, sig->substr(0, sig->size() / 2), seal_cert_.get(),
                                      "x")
                .code(),
            Code::kDataError);
  EXPECT_EQ(VerifyCheckpointSignature(body_, *sig + "x", seal_cert_.get(), "x").code(),
            Code::kDataError);
}

}  // namespace
}  // namespace sealpost::crypto
