// `sealpost sign` as a user runs it: the real binary (SEALPOST_CLI_PATH), a
// real SoftHSM2 token, openssl/certtool checking the output. Bad input must
// give one clear message, the documented exit status, and no output file.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/support/cms_peers.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost {
namespace {

using testing::KeyType;
using testing::ShellQuote;

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Files in `dir` whose name contains ".tmp." (WriteFileAtomic's leftovers).
int TempLeftovers(const std::string& dir) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos) ++n;
  }
  return n;
}

class SignCliTest : public ::testing::Test {
 protected:
  SignCliTest() : ca_(testing::TestCa::CreateRoot("/CN=CLI Test Root/O=Test/C=VN")) {}

  void SetUp() override {
    // A FaultModule of an earlier test in this process points these at its
    // (now removed) files.
    ::unsetenv(testing::kAllowlistEnv);
    ::unsetenv("SEALPOST_FAULT_CONTROL");
    ::unsetenv("SEALPOST_FAULT_COUNTERS");
    ASSERT_TRUE(hsm_.InitToken("officer", "5678", "1234"));
    testing::CertSpec officer;
    officer.subject = "/CN=Nguyễn Thị Duyên/O=Công đoàn Bãi Cháy/C=VN";
    ASSERT_TRUE(hsm_.AddKeyWithCert("officer", "1234", ca_, KeyType::kP256, "01", "sign", officer));
    ASSERT_TRUE(hsm_.InitToken("seal", "5678", "4321"));
    testing::CertSpec seal;
    seal.subject = "/CN=Công đoàn Bãi Cháy/O=Công đoàn Bãi Cháy/C=VN";
    ASSERT_TRUE(hsm_.AddKeyWithCert("seal", "4321", ca_, KeyType::kRsa2048, "02", "seal", seal));
    officer_uri_ = hsm_.KeyUri("officer", "sign");
    seal_uri_ = hsm_.KeyUri("seal", "seal");
    officer_pin_ = hsm_.WritePinFile("1234\n");
    seal_pin_ = hsm_.WritePinFile("4321\n");
    ca_pem_ = dir_.file("ca.pem");
    testing::WriteTestFile(ca_pem_, testing::CertToPem(ca_.cert()));
    content_ = dir_.file("Quyết định 15.pdf");
    testing::WriteTestFile(content_, "%PDF-1.4 quyết định khen thưởng\n");
  }

  // Runs `sealpost sign <args>`; returns the exit status.
  int Sign(const std::string& args, std::string* out = nullptr) {
    std::string text;
    int rc = testing::RunCommand(std::string(ShellQuote(SEALPOST_CLI_PATH)) + " sign " + args +
                                     " </dev/null",
                                 &text);
    if (out) *out = text;
    return rc;
  }

  std::string OfficerArgs() { return "--key " + ShellQuote(officer_uri_) + " --pin-file " + ShellQuote(officer_pin_); }
  std::string SealArgs() { return "--key " + ShellQuote(seal_uri_) + " --pin-file " + ShellQuote(seal_pin_); }

  testing::SoftHsm hsm_;
  testing::TempDir dir_;
  testing::TestCa ca_;
  std::string officer_uri_, seal_uri_, officer_pin_, seal_pin_, ca_pem_, content_;
};

TEST_F(SignCliTest, SignWritesFileDotP7sThatPeersVerify) {
  std::string out;
  ASSERT_EQ(Sign(OfficerArgs() + " " + ShellQuote(content_), &out), 0) << out;
  EXPECT_NE(out.find("Nguyễn Thị Duyên"), std::string::npos) << out;
  std::string sig = content_ + ".p7s";
  ASSERT_TRUE(Exists(sig));
  EXPECT_TRUE(testing::OpensslCmsVerifies(sig, content_, ca_pem_, "-cades"));
  EXPECT_TRUE(testing::CerttoolVerifiesAll(sig, content_, ca_pem_, 1));
  // The PIN never shows up in what the command prints.
  EXPECT_EQ(out.find("1234"), std::string::npos) << out;
}

TEST_F(SignCliTest, SignEmptyFileVerifies) {
  std::string empty = dir_.file("empty.txt");
  testing::WriteTestFile(empty, "");
  std::string out;
  ASSERT_EQ(Sign(OfficerArgs() + " " + ShellQuote(empty) + " -o " + ShellQuote(dir_.file("e.p7s")), &out), 0) << out;
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("e.p7s"), empty, ca_pem_));
}

TEST_F(SignCliTest, AppendSealInPlaceKeepsOfficerAndAddsSeal) {
  std::string sig = dir_.file("q.p7s");
  std::string out;
  ASSERT_EQ(Sign(OfficerArgs() + " " + ShellQuote(content_) + " -o " + ShellQuote(sig), &out), 0) << out;
  ASSERT_EQ(Sign(SealArgs() + " --append " + ShellQuote(sig) + " " + ShellQuote(content_), &out), 0) << out;
  EXPECT_NE(out.find("2"), std::string::npos) << out;
  EXPECT_TRUE(testing::OpensslCmsVerifies(sig, content_, ca_pem_, "-cades"));
  EXPECT_TRUE(testing::CerttoolVerifiesAll(sig, content_, ca_pem_, 2));
  EXPECT_EQ(TempLeftovers(dir_.path()), 0);
}

TEST_F(SignCliTest, AppendWithOutputLeavesExistingUnchanged) {
  std::string sig = dir_.file("q.p7s");
  std::string out;
  ASSERT_EQ(Sign(OfficerArgs() + " " + ShellQuote(content_) + " -o " + ShellQuote(sig), &out), 0) << out;
  std::string before = testing::ReadTestFile(sig);
  ASSERT_EQ(Sign(SealArgs() + " --append " + ShellQuote(sig) + " " + ShellQuote(content_) +
                     " -o " + ShellQuote(dir_.file("both.p7s")),
                 &out),
            0)
      << out;
  EXPECT_EQ(testing::ReadTestFile(sig), before);
  EXPECT_TRUE(testing::CerttoolVerifiesAll(dir_.file("both.p7s"), content_, ca_pem_, 2));
}

TEST_F(SignCliTest, AppendToSignatureOfOtherFileExits65AndChangesNothing) {
  std::string other = dir_.file("other.txt");
  testing::WriteTestFile(other, "a different document\n");
  std::string sig = dir_.file("other.p7s");
  std::string out;
  ASSERT_EQ(Sign(OfficerArgs() + " " + ShellQuote(other) + " -o " + ShellQuote(sig), &out), 0) << out;
  std::string before = testing::ReadTestFile(sig);
  EXPECT_EQ(Sign(SealArgs() + " --append " + ShellQuote(sig) + " " + ShellQuote(content_), &out), 65);
  EXPECT_NE(out.find("not a signature of"), std::string::npos) << out;
  EXPECT_NE(out.find("Nguyễn Thị Duyên"), std::string::npos) << out;
  EXPECT_EQ(testing::ReadTestFile(sig), before);
  EXPECT_EQ(TempLeftovers(dir_.path()), 0);
}

TEST_F(SignCliTest, AppendToGarbageExits65) {
  std::string junk = dir_.file("junk.p7s");
  testing::WriteTestFile(junk, "-----BEGIN PKCS7-----\nnot really\n");
  std::string out;
  EXPECT_EQ(Sign(SealArgs() + " --append " + ShellQuote(junk) + " " + ShellQuote(content_), &out), 65);
  EXPECT_NE(out.find("junk.p7s"), std::string::npos) << out;
  EXPECT_EQ(testing::ReadTestFile(junk), "-----BEGIN PKCS7-----\nnot really\n");
}

TEST_F(SignCliTest, AppendMissingSignatureExits66) {
  std::string out;
  EXPECT_EQ(Sign(SealArgs() + " --append " + ShellQuote(dir_.file("none.p7s")) + " " + ShellQuote(content_), &out), 66);
  EXPECT_FALSE(Exists(dir_.file("none.p7s")));
}

TEST_F(SignCliTest, ChainOptionEmbedsIntermediateSoRootAloneVerifies) {
  testing::TestCa inter = ca_.CreateIntermediate("/CN=Công đoàn tỉnh CA/O=Test/C=VN");
  ASSERT_TRUE(hsm_.InitToken("chained", "5678", "1111"));
  ASSERT_TRUE(hsm_.AddKeyWithCert("chained", "1111", inter, KeyType::kP384, "03", "k"));
  std::string chain = dir_.file("chain.pem");
  testing::WriteTestFile(chain, testing::CertToPem(inter.cert()));
  std::string args = "--key " + ShellQuote(hsm_.KeyUri("chained", "k")) + " --pin-file " +
                     ShellQuote(hsm_.WritePinFile("1111"));
  std::string out;
  ASSERT_EQ(Sign(args + " --chain " + ShellQuote(chain) + " " + ShellQuote(content_) + " -o " +
                     ShellQuote(dir_.file("c.p7s")),
                 &out),
            0)
      << out;
  EXPECT_TRUE(testing::OpensslCmsVerifies(dir_.file("c.p7s"), content_, ca_pem_, "-cades"));
  ASSERT_EQ(Sign(args + " " + ShellQuote(content_) + " -o " + ShellQuote(dir_.file("n.p7s")), &out), 0) << out;
  EXPECT_FALSE(testing::OpensslCmsVerifies(dir_.file("n.p7s"), content_, ca_pem_));
}

TEST_F(SignCliTest, BadChainFileExits65WithoutOutput) {
  std::string chain = dir_.file("chain.pem");
  testing::WriteTestFile(chain, "not a certificate");
  std::string out;
  EXPECT_EQ(Sign(OfficerArgs() + " --chain " + ShellQuote(chain) + " " + ShellQuote(content_), &out), 65);
  EXPECT_NE(out.find("--chain"), std::string::npos) << out;
  EXPECT_FALSE(Exists(content_ + ".p7s"));
}

TEST_F(SignCliTest, UnreadableInputExits66WithoutOutput) {
  std::string out;
  EXPECT_EQ(Sign(OfficerArgs() + " " + ShellQuote(dir_.file("missing.pdf")), &out), 66);
  EXPECT_NE(out.find("missing.pdf"), std::string::npos) << out;
  EXPECT_FALSE(Exists(dir_.file("missing.pdf.p7s")));
  std::string subdir = dir_.file("adir");
  ::mkdir(subdir.c_str(), 0700);
  EXPECT_EQ(Sign(OfficerArgs() + " " + ShellQuote(subdir), &out), 66);
  EXPECT_NE(out.find("not a regular file"), std::string::npos) << out;
  EXPECT_FALSE(Exists(subdir + ".p7s"));
}

TEST_F(SignCliTest, UnwritableOutputDirectoryFailsWithoutOutput) {
  std::string out;
  std::string target = dir_.file("no-such-dir/q.p7s");
  int rc = Sign(OfficerArgs() + " " + ShellQuote(content_) + " -o " + ShellQuote(target), &out);
  EXPECT_EQ(rc, 74) << out;
  EXPECT_NE(out.find("no-such-dir"), std::string::npos) << out;
  EXPECT_FALSE(Exists(target));
  EXPECT_EQ(TempLeftovers(dir_.path()), 0);
  // An output path that is a directory is refused before the token is used.
  std::string adir = dir_.file("out-dir");
  ::mkdir(adir.c_str(), 0700);
  EXPECT_EQ(Sign(OfficerArgs() + " " + ShellQuote(content_) + " -o " + ShellQuote(adir), &out), 74) << out;
  EXPECT_NE(out.find("is a directory"), std::string::npos) << out;
  EXPECT_EQ(TempLeftovers(dir_.path()), 0);
}

TEST_F(SignCliTest, OutputOverInputIsUsageError) {
  std::string out;
  std::string before = testing::ReadTestFile(content_);
  EXPECT_EQ(Sign(OfficerArgs() + " " + ShellQuote(content_) + " -o " + ShellQuote(content_), &out), 64);
  EXPECT_EQ(testing::ReadTestFile(content_), before);
}

TEST_F(SignCliTest, WrongPinExits77WithoutOutput) {
  std::string out;
  std::string args = "--key " + ShellQuote(officer_uri_) + " --pin-file " + ShellQuote(hsm_.WritePinFile("9999\n"));
  EXPECT_EQ(Sign(args + " " + ShellQuote(content_), &out), 77) << out;
  EXPECT_FALSE(Exists(content_ + ".p7s"));
  EXPECT_EQ(out.find("9999"), std::string::npos) << out;
}

TEST_F(SignCliTest, NoSuchTokenFailsWithoutOutput) {
  std::string out;
  std::string args = "--key " + ShellQuote(hsm_.KeyUri("absent", "sign")) + " --pin-file " + ShellQuote(officer_pin_);
  int rc = Sign(args + " " + ShellQuote(content_), &out);
  EXPECT_TRUE(rc == 66 || rc == 69) << rc << " " << out;
  EXPECT_NE(out.find("absent"), std::string::npos) << out;
  EXPECT_FALSE(Exists(content_ + ".p7s"));
}

TEST_F(SignCliTest, TokenDeviceErrorAtLoginExits69WithoutOutput) {
  if (!testing::FaultModule::Available()) GTEST_SKIP() << "no fault module in this build";
  testing::FaultModule fault(hsm_);
  fault.Set("fail.C_Login=CKR_DEVICE_ERROR\n");
  std::string uri = hsm_.KeyUri("officer", "sign", fault.module_path());
  std::string out;
  EXPECT_EQ(Sign("--key " + ShellQuote(uri) + " --pin-file " + ShellQuote(officer_pin_) + " " +
                     ShellQuote(content_),
                 &out),
            69)
      << out;
  EXPECT_FALSE(Exists(content_ + ".p7s"));
  EXPECT_EQ(TempLeftovers(dir_.path()), 0);
}

TEST_F(SignCliTest, TokenRemovedWhileSigningExits69WithoutOutput) {
  if (!testing::FaultModule::Available()) GTEST_SKIP() << "no fault module in this build";
  testing::FaultModule fault(hsm_);
  fault.Set("fail.C_Sign=CKR_DEVICE_REMOVED\n");
  std::string uri = hsm_.KeyUri("officer", "sign", fault.module_path());
  std::string out;
  EXPECT_EQ(Sign("--key " + ShellQuote(uri) + " --pin-file " + ShellQuote(officer_pin_) + " " +
                     ShellQuote(content_),
                 &out),
            69)
      << out;
  EXPECT_GE(fault.Count("C_Sign"), 1);
  EXPECT_FALSE(Exists(content_ + ".p7s"));
  EXPECT_EQ(TempLeftovers(dir_.path()), 0);

  // The same in co-signing: the existing signature stays as it was.
  std::string sig = dir_.file("q.p7s");
  ASSERT_EQ(Sign(SealArgs() + " " + ShellQuote(content_) + " -o " + ShellQuote(sig), &out), 0) << out;
  std::string before = testing::ReadTestFile(sig);
  EXPECT_EQ(Sign("--key " + ShellQuote(uri) + " --pin-file " + ShellQuote(officer_pin_) +
                     " --append " + ShellQuote(sig) + " " + ShellQuote(content_),
                 &out),
            69)
      << out;
  EXPECT_EQ(testing::ReadTestFile(sig), before);
  EXPECT_EQ(TempLeftovers(dir_.path()), 0);
}

TEST_F(SignCliTest, TokenHangingInSignTimesOutExits69WithoutOutput) {
  if (!testing::FaultModule::Available()) GTEST_SKIP() << "no fault module in this build";
  testing::FaultModule fault(hsm_);
  fault.Set("hang.C_Sign=30\n");
  std::string uri = hsm_.KeyUri("officer", "sign", fault.module_path());
  std::string out;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Sign("--timeout 2 --key " + ShellQuote(uri) + " --pin-file " + ShellQuote(officer_pin_) +
                     " " + ShellQuote(content_),
                 &out),
            69)
      << out;
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start);
  EXPECT_LT(secs.count(), 20) << "the command waited for the hanging token";
  EXPECT_FALSE(Exists(content_ + ".p7s"));
  EXPECT_EQ(TempLeftovers(dir_.path()), 0);
}

TEST_F(SignCliTest, MissingKeyOrFileIsUsageError) {
  std::string out;
  EXPECT_EQ(Sign(ShellQuote(content_), &out), 64);
  EXPECT_NE(out.find("--key"), std::string::npos) << out;
  EXPECT_EQ(Sign(OfficerArgs(), &out), 64);
  EXPECT_EQ(Sign(OfficerArgs() + " --bogus " + ShellQuote(content_), &out), 64);
  EXPECT_NE(out.find("--bogus"), std::string::npos) << out;
}

TEST_F(SignCliTest, MessagesInVietnameseWithLangVi) {
  std::string out;
  EXPECT_EQ(Sign("--lang vi " + OfficerArgs() + " " + ShellQuote(dir_.file("missing.pdf")), &out), 66);
  EXPECT_NE(out.find("không đọc được tệp cần ký"), std::string::npos) << out;
  ASSERT_EQ(Sign("--lang vi " + OfficerArgs() + " " + ShellQuote(content_), &out), 0) << out;
  EXPECT_NE(out.find("đã ký"), std::string::npos) << out;
  EXPECT_NE(out.find("người ký: Nguyễn Thị Duyên"), std::string::npos) << out;
}

}  // namespace
}  // namespace sealpost
