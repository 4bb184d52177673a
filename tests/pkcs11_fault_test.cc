// PIN safety, token removal and hangs, through the fault-injecting module in
// front of a real SoftHSM2 token. Under ctest every case runs in its own
// process (a hung module stays hung for the rest of its process).
#include <chrono>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "pkcs11/allowlist.h"
#include "pkcs11/open.h"
#include "pkcs11/token.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost::pkcs11 {
namespace {

using testing::FaultModule;
using testing::KeyType;
using testing::SoftHsm;
using testing::TestCa;

constexpr char kToken[] = "union-seal";
constexpr char kPin[] = "123456";

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!FaultModule::Available()) GTEST_SKIP() << "built without tests/fault_pkcs11";
    ASSERT_TRUE(hsm_.InitToken(kToken, "87654321", kPin));
    issued_ = hsm_.AddKeyWithCert(kToken, kPin, ca_, KeyType::kP256, "01", "seal");
    ASSERT_TRUE(issued_.has_value());
    fault_ = std::make_unique<FaultModule>(hsm_);
    uri_ = hsm_.KeyUri(kToken, "seal", fault_->module_path());
    fault_->ResetCounts();
  }
  OpenOptions Options(const std::string& pin = kPin) {
    OpenOptions o;
    o.pin_file = hsm_.WritePinFile(pin + "\n");
    o.interactive = false;
    o.call_timeout = std::chrono::seconds(2);
    return o;
  }
  static std::string Digest() {
    std::string d(SHA256_DIGEST_LENGTH, '\0');
    SHA256(reinterpret_cast<const unsigned char*>("bien ban"), 8,
           reinterpret_cast<unsigned char*>(d.data()));
    return d;
  }
  bool Verifies(const std::string& sig) {
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(X509_get0_pubkey(issued_->cert.get()), nullptr));
    std::string d = Digest();
    return ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
           EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                           reinterpret_cast<const unsigned char*>(d.data()), d.size()) == 1;
  }

  SoftHsm hsm_;
  TestCa ca_ = TestCa::CreateRoot("/CN=Fault Root/C=VN");
  std::optional<testing::Issued> issued_;
  std::unique_ptr<FaultModule> fault_;
  std::string uri_;
};

TEST_F(FaultTest, OpenThroughFaultModuleSignsNormally) {
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  auto sig = (*signer)->Sign(crypto::KeyRef{uri_}, crypto::DigestAlg::kSha256, Digest());
  ASSERT_TRUE(sig.has_value()) << sig.error().message();
  EXPECT_TRUE(Verifies(*sig));
  EXPECT_EQ(fault_->Count("C_Login"), 1);
  EXPECT_GE(fault_->Count("C_Sign"), 1);
}

TEST_F(FaultTest, WrongPinCallsLoginExactlyOnceAndSaysSo) {
  auto signer = OpenTokenSigner(uri_, Options("999999"));
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kPermissionDenied);
  EXPECT_NE(signer.error().message().find("PIN incorrect"), std::string::npos) << signer.error().message();
  EXPECT_NE(signer.error().message().find("not be retried"), std::string::npos);
  EXPECT_EQ(fault_->Count("C_Login"), 1);
}

TEST_F(FaultTest, InjectedPinIncorrectCallsLoginExactlyOnce) {
  fault_->Set("fail.C_Login=CKR_PIN_INCORRECT\n");
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kPermissionDenied);
  EXPECT_NE(signer.error().message().find("CKR_PIN_INCORRECT"), std::string::npos);
  EXPECT_EQ(fault_->Count("C_Login"), 1);
}

TEST_F(FaultTest, PinFinalTryRefusesLoginWithoutCallingLogin) {
  fault_->Set("flags.add=CKF_USER_PIN_FINAL_TRY\n");
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kPermissionDenied);
  EXPECT_NE(signer.error().message().find("FINAL_TRY"), std::string::npos) << signer.error().message();
  EXPECT_GE(fault_->Count("C_GetTokenInfo"), 1) << "flags must be read fresh from the module";
  EXPECT_EQ(fault_->Count("C_Login"), 0);
}

TEST_F(FaultTest, PinLockedRefusesLoginWithoutCallingLogin) {
  fault_->Set("flags.add=CKF_USER_PIN_LOCKED\n");
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kPermissionDenied);
  EXPECT_NE(signer.error().message().find("locked"), std::string::npos) << signer.error().message();
  EXPECT_EQ(fault_->Count("C_Login"), 0);
}

TEST_F(FaultTest, PinLockedAfterReinsertionRefusesReloginWithoutCallingLogin) {
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  crypto::KeyRef key{uri_};
  fault_->Set("fail.C_Sign=CKR_DEVICE_REMOVED\n");
  ASSERT_FALSE((*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest()).has_value());
  fault_->Set("flags.add=CKF_USER_PIN_LOCKED\n");
  auto locked = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_FALSE(locked.has_value());
  EXPECT_EQ(locked.error().code(), Code::kPermissionDenied);
  EXPECT_NE(locked.error().message().find("CKF_USER_PIN_LOCKED"), std::string::npos)
      << locked.error().message();
  EXPECT_EQ(fault_->Count("C_Login"), 1);
}

TEST_F(FaultTest, PinCountLowLogsInAndWarns) {
  fault_->Set("flags.add=CKF_USER_PIN_COUNT_LOW\n");
  auto token = Token::Open(uri_, Options());
  ASSERT_TRUE(token.has_value()) << token.error().message();
  auto warnings = (*token)->TakeWarnings();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("COUNT_LOW"), std::string::npos) << warnings[0];
  EXPECT_EQ(fault_->Count("C_Login"), 1);
}

TEST_F(FaultTest, DeviceRemovedDuringSigningFailsThenNextSignatureWorks) {
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  crypto::KeyRef key{uri_};
  ASSERT_TRUE((*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest()).has_value());

  fault_->Set("removed=1\n");  // pulled out
  auto gone = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().code(), Code::kUnavailable);
  EXPECT_NE(gone.error().message().find("CKR_DEVICE_REMOVED"), std::string::npos) << gone.error().message();
  EXPECT_NE(gone.error().message().find("removed"), std::string::npos);

  // While it is out, the next attempt fails clearly too (no token).
  auto still = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_FALSE(still.has_value());
  EXPECT_EQ(still.error().code(), Code::kUnavailable);
  EXPECT_NE(still.error().message().find("no initialised token is present"), std::string::npos)
      << still.error().message();

  fault_->Set("");  // put back
  auto again = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_TRUE(again.has_value()) << again.error().message();
  EXPECT_TRUE(Verifies(*again));
  // Re-login used the PIN already given: one C_Login per context built.
  EXPECT_EQ(fault_->Count("C_Login"), 2);
  // Later signatures need no further login.
  ASSERT_TRUE((*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest()).has_value());
  EXPECT_EQ(fault_->Count("C_Login"), 2);
}

// Token::Sign keeps the key it looked up (C_FindObjects enumerates every
// private key, and SoftHSM2 re-reads its object files for it): repeated
// signatures do not look the key up each time, but removal and re-insertion
// empty that cache, so the key is found again on the re-inserted token.
TEST_F(FaultTest, SigningKeyLookupIsCachedAndRedoneAfterReinsertion) {
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  crypto::KeyRef key{uri_};
  ASSERT_TRUE((*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest()).has_value());
  fault_->ResetCounts();
  constexpr int kN = 20;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kN; ++i) {
    auto sig = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
    ASSERT_TRUE(sig.has_value()) << sig.error().message();
    EXPECT_TRUE(Verifies(*sig));
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(fault_->Count("C_Sign"), kN);
  // At most one lookup per second (the cache's recheck), not one per signature.
  int finds = fault_->Count("C_FindObjectsInit");
  EXPECT_LE(finds, 1 + static_cast<int>(elapsed)) << finds << " lookups in " << elapsed << " s";
#if !defined(__SANITIZE_ADDRESS__)
  // (Under the sanitizers signing may be too slow to tell a cache from none.)
  EXPECT_LT(elapsed, kN - 2) << "too slow to tell a cache from none";
#endif

  fault_->Set("removed=1\n");  // pulled out: the cached key is not used
  auto gone = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().code(), Code::kUnavailable);
  fault_->Set("");  // put back
  fault_->ResetCounts();
  auto again = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_TRUE(again.has_value()) << again.error().message();
  EXPECT_TRUE(Verifies(*again));
  // The new context logged in once and looked the key up again.
  EXPECT_EQ(fault_->Count("C_Login"), 1);
  EXPECT_GE(fault_->Count("C_FindObjectsInit"), 1);
}

// The key object behind the cached handle is deleted and a new key is
// stored under the same label and id (by another process, as an operator
// would with pkcs11-tool): no signature is ever made with the old key, the
// change is noticed at once (the module refuses the stale handle), and
// signing resumes with the new key.
TEST_F(FaultTest, ReplacedKeyObjectIsNeverSignedWithThroughTheCachedHandle) {
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  crypto::KeyRef key{uri_};
  auto first = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_TRUE(first.has_value()) << first.error().message();
  ASSERT_TRUE(Verifies(*first));

  std::string out;
  ASSERT_EQ(testing::RunCommand(std::string("pkcs11-tool --module ") + testing::kSoftHsmModule +
                                    " --token-label " + kToken + " --login --pin " + kPin +
                                    " --delete-object --type privkey --label seal",
                                &out),
            0)
      << out;
  testing::Issued replacement = ca_.Issue(testing::CertSpec(), KeyType::kP256);
  ASSERT_TRUE(hsm_.ImportKey(kToken, kPin, replacement.key.get(), "01", "seal"));
  auto verifies_with = [&](EVP_PKEY* pub, const std::string& sig) {
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(pub, nullptr));
    std::string d = Digest();
    return ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
           EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                           reinterpret_cast<const unsigned char*>(d.data()), d.size()) == 1;
  };

  // Immediately (well within the cache's recheck interval).
  auto next = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  if (next.has_value()) {
    EXPECT_FALSE(Verifies(*next)) << "signed with the deleted key";
    EXPECT_TRUE(verifies_with(replacement.key.get(), *next));
  } else {
    EXPECT_EQ(next.error().code(), Code::kUnavailable) << next.error().message();
  }
  // Then signing works with the new key.
  auto later = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_TRUE(later.has_value()) << later.error().message();
  EXPECT_FALSE(Verifies(*later)) << "signed with the deleted key";
  EXPECT_TRUE(verifies_with(replacement.key.get(), *later));
}

class RebuildCodeTest : public FaultTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(RebuildCodeTest, SessionLossDuringSigningRecoversOnNextSignature) {
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  crypto::KeyRef key{uri_};
  fault_->Set(std::string("fail.C_Sign=") + GetParam() + "\n");
  auto bad = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kUnavailable);
  EXPECT_NE(bad.error().message().find(GetParam()), std::string::npos) << bad.error().message();
  fault_->Set("");
  auto good = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_TRUE(good.has_value()) << good.error().message();
  EXPECT_TRUE(Verifies(*good));
}

INSTANTIATE_TEST_SUITE_P(Codes, RebuildCodeTest,
                         ::testing::Values("CKR_DEVICE_REMOVED", "CKR_SESSION_HANDLE_INVALID",
                                           "CKR_DEVICE_ERROR", "CKR_USER_NOT_LOGGED_IN"),
                         [](const auto& info) {
                           std::string name;
                           for (char c : std::string(info.param).substr(4)) {
                             if (c != '_') name += c;
                           }
                           return name;
                         });

TEST_F(FaultTest, PinIncorrectOnReloginAfterRemovalIsNeverRetried) {
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  crypto::KeyRef key{uri_};
  fault_->Set("fail.C_Sign=CKR_DEVICE_REMOVED\n");
  ASSERT_FALSE((*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest()).has_value());
  // The re-inserted token now rejects the PIN (say, it was changed).
  fault_->Set("fail.C_Login=CKR_PIN_INCORRECT\n");
  auto first = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_FALSE(first.has_value());
  EXPECT_EQ(first.error().code(), Code::kPermissionDenied);
  EXPECT_EQ(fault_->Count("C_Login"), 2);
  fault_->Set("");
  auto second = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), Code::kPermissionDenied);
  EXPECT_EQ(fault_->Count("C_Login"), 2) << "a refused PIN must not be tried again";
}

TEST_F(FaultTest, HangInSignIsAbandonedWithinBound) {
  auto signer = OpenTokenSigner(uri_, Options());
  ASSERT_TRUE(signer.has_value()) << signer.error().message();
  crypto::KeyRef key{uri_};
  fault_->Set("hang.C_Sign=60\n");
  auto t0 = std::chrono::steady_clock::now();
  auto sig = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(sig.has_value());
  EXPECT_EQ(sig.error().code(), Code::kUnavailable);
  EXPECT_NE(sig.error().message().find("token unavailable: C_Sign did not answer within 2 s"),
            std::string::npos)
      << sig.error().message();
  EXPECT_GE(elapsed, 1.9);
  EXPECT_LT(elapsed, 3.0) << "bound is 2 s";
  RecordProperty("abandoned_after_seconds", std::to_string(elapsed));
  EXPECT_TRUE(TokenCallAbandoned());

  // The module is stuck: later calls fail at once instead of queueing.
  t0 = std::chrono::steady_clock::now();
  auto next = (*signer)->Sign(key, crypto::DigestAlg::kSha256, Digest());
  elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(next.has_value());
  EXPECT_EQ(next.error().code(), Code::kUnavailable);
  EXPECT_LT(elapsed, 0.5);
  // So does opening it again in this process.
  auto reopen = OpenTokenSigner(uri_, Options());
  ASSERT_FALSE(reopen.has_value());
  EXPECT_EQ(reopen.error().code(), Code::kUnavailable);
}

TEST_F(FaultTest, HangInLoginIsAbandonedWithinBound) {
  fault_->Set("hang.C_Login=60\n");
  auto t0 = std::chrono::steady_clock::now();
  auto signer = OpenTokenSigner(uri_, Options());
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code(), Code::kUnavailable);
  EXPECT_NE(signer.error().message().find("C_Login did not answer within 2 s"), std::string::npos)
      << signer.error().message();
  EXPECT_LT(elapsed, 3.0);
}

}  // namespace
}  // namespace sealpost::pkcs11
