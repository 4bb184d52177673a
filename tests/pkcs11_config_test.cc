// Module allowlist and PIN sources, without a token.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include <gtest/gtest.h>

#include "pkcs11/allowlist.h"
#include "pkcs11/pin.h"
#include "tests/support/test_pki.h"

namespace sealpost::pkcs11 {
namespace {

using testing::TempDir;
using testing::WriteTestFile;

constexpr char kSoftHsmLink[] = "/usr/lib/softhsm/libsofthsm2.so";
constexpr char kSoftHsmReal[] = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so";
constexpr char kOpenSc[] = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";

class AllowlistTest : public ::testing::Test {
 protected:
  void TearDown() override { ::unsetenv(kAllowlistEnv); }
  void Use(const std::string& text) {
    WriteTestFile(dir_.file("allow"), text);
    ::setenv(kAllowlistEnv, dir_.file("allow").c_str(), 1);
  }
  TempDir dir_;
};

TEST_F(AllowlistTest, LoadSkipsCommentsBlankLinesAndMissingFiles) {
  Use(std::string("# comment\n\n  ") + kSoftHsmLink + "  \n/nonexistent/module.so\n" + kSoftHsmReal + "\n");
  auto list = LoadAllowlist();
  ASSERT_TRUE(list.has_value()) << list.error().message();
  ASSERT_EQ(list->size(), 1u);  // both lines resolve to one real file
  EXPECT_EQ((*list)[0].real_path, kSoftHsmReal);
  EXPECT_EQ((*list)[0].listed, kSoftHsmLink);
}

TEST_F(AllowlistTest, LoadRelativePathFailsNamingFileAndLine) {
  Use(std::string(kSoftHsmLink) + "\nlibsofthsm2.so\n");
  auto list = LoadAllowlist();
  ASSERT_FALSE(list.has_value());
  EXPECT_EQ(list.error().code(), Code::kInvalidArgument);
  EXPECT_NE(list.error().message().find(dir_.file("allow") + ":2:"), std::string::npos)
      << list.error().message();
}

TEST_F(AllowlistTest, LoadUnreadableConfiguredFileFailsClosed) {
  ::setenv(kAllowlistEnv, dir_.file("missing").c_str(), 1);
  auto list = LoadAllowlist();
  ASSERT_FALSE(list.has_value());
  EXPECT_NE(list.error().message().find("allowlist"), std::string::npos);
  auto r = ResolveAllowedModule(std::string(kSoftHsmLink), std::nullopt);
  EXPECT_FALSE(r.has_value());
}

TEST_F(AllowlistTest, DefaultsAllowSoftHsmThroughItsSymlink) {
  ::unsetenv(kAllowlistEnv);
  auto r = ResolveAllowedModule(std::string(kSoftHsmLink), std::nullopt);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(*r, kSoftHsmReal);
}

TEST_F(AllowlistTest, SymlinkNamedLikeAllowedModuleButPointingElsewhereIsRefused) {
  Use(std::string(kSoftHsmReal) + "\n");
  std::string fake = dir_.file("libsofthsm2.so");
  ASSERT_EQ(::symlink(kOpenSc, fake.c_str()), 0);
  auto r = ResolveAllowedModule(fake, std::nullopt);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kPermissionDenied);
  EXPECT_NE(r.error().message().find(kOpenSc), std::string::npos) << r.error().message();
}

TEST_F(AllowlistTest, ModuleThatDoesNotExistIsNotFound) {
  auto r = ResolveAllowedModule(dir_.file("nothing.so"), std::nullopt);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
}

TEST_F(AllowlistTest, ModuleNameMatchesAllowlistedFileNames) {
  Use(std::string(kSoftHsmLink) + "\n" + kOpenSc + "\n");
  for (const char* name : {"softhsm2", "libsofthsm2", "libsofthsm2.so"}) {
    auto r = ResolveAllowedModule(std::nullopt, std::string(name));
    ASSERT_TRUE(r.has_value()) << name << ": " << r.error().message();
    EXPECT_EQ(*r, kSoftHsmReal);
  }
  auto o = ResolveAllowedModule(std::nullopt, std::string("opensc"));
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(*o, kOpenSc);
  EXPECT_FALSE(ResolveAllowedModule(std::nullopt, std::string("p11-kit-client")).has_value());
}

TEST_F(AllowlistTest, NoModuleGivenFailsWithHint) {
  auto r = ResolveAllowedModule(std::nullopt, std::nullopt);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().message().find("module-path"), std::string::npos);
}

class PinTest : public ::testing::Test {
 protected:
  void TearDown() override { ::unsetenv("CREDENTIALS_DIRECTORY"); }
  PinRequest Request() {
    PinRequest r;
    r.interactive = false;
    r.token_label = "t";
    return r;
  }
  TempDir dir_;
};

TEST_F(PinTest, PinFileStripsExactlyOneLineEnd) {
  WriteTestFile(dir_.file("lf"), "1234\n");
  WriteTestFile(dir_.file("crlf"), "1234\r\n");
  WriteTestFile(dir_.file("two"), "1234\n\n");
  PinRequest r = Request();
  r.pin_file = dir_.file("lf");
  EXPECT_EQ(ObtainPin(r)->view(), "1234");
  r.pin_file = dir_.file("crlf");
  EXPECT_EQ(ObtainPin(r)->view(), "1234");
  r.pin_file = dir_.file("two");
  EXPECT_EQ(ObtainPin(r)->view(), "1234\n");
}

TEST_F(PinTest, PinSourceAcceptsFileUriForms) {
  WriteTestFile(dir_.file("pin"), "4321\n");
  for (const std::string& src : {"file:" + dir_.file("pin"), "file://" + dir_.file("pin"), dir_.file("pin")}) {
    PinRequest r = Request();
    r.pin_source = src;
    auto pin = ObtainPin(r);
    ASSERT_TRUE(pin.has_value()) << src << ": " << pin.error().message();
    EXPECT_EQ(pin->view(), "4321");
  }
}

TEST_F(PinTest, PinSourceOtherThanFileIsRefused) {
  for (const char* src : {"|/bin/echo 1234", "env:PIN", "file:relative/pin", "https://x/pin"}) {
    PinRequest r = Request();
    r.pin_source = src;
    auto pin = ObtainPin(r);
    ASSERT_FALSE(pin.has_value()) << src;
    EXPECT_EQ(pin.error().code(), Code::kInvalidArgument) << src;
  }
}

TEST_F(PinTest, PinFileWinsOverUriAndCredential) {
  WriteTestFile(dir_.file("a"), "1111\n");
  WriteTestFile(dir_.file("b"), "2222\n");
  ASSERT_EQ(::mkdir(dir_.file("creds").c_str(), 0700), 0);
  WriteTestFile(dir_.file("creds/sealpost-token-pin"), "3333\n");
  ::setenv("CREDENTIALS_DIRECTORY", dir_.file("creds").c_str(), 1);
  PinRequest r = Request();
  EXPECT_EQ(ObtainPin(r)->view(), "3333");
  r.pin_source = "file:" + dir_.file("b");
  EXPECT_EQ(ObtainPin(r)->view(), "2222");
  r.pin_file = dir_.file("a");
  EXPECT_EQ(ObtainPin(r)->view(), "1111");
}

TEST_F(PinTest, EmptyPinFileIsDataError) {
  WriteTestFile(dir_.file("empty"), "\n");
  PinRequest r = Request();
  r.pin_file = dir_.file("empty");
  auto pin = ObtainPin(r);
  ASSERT_FALSE(pin.has_value());
  EXPECT_EQ(pin.error().code(), Code::kDataError);
}

TEST_F(PinTest, UnreadablePinFileIsNotFoundInVietnameseToo) {
  PinRequest r = Request();
  r.pin_file = dir_.file("missing");
  r.lang = Lang::kVi;
  auto pin = ObtainPin(r);
  ASSERT_FALSE(pin.has_value());
  EXPECT_EQ(pin.error().code(), Code::kNotFound);
  EXPECT_NE(pin.error().message().find("không đọc được tệp PIN"), std::string::npos) << pin.error().message();
}

}  // namespace
}  // namespace sealpost::pkcs11
