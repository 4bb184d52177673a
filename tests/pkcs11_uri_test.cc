#include "pkcs11/uri.h"

#include <gtest/gtest.h>

namespace sealpost::pkcs11 {
namespace {

TEST(UriTest, ParseFullUriGivesEveryAttribute) {
  auto u = ParseUri(
      "pkcs11:token=union-seal;manufacturer=SoftHSM%20project;serial=abc123;model=SoftHSM%20v2;"
      "object=seal;type=private;id=%01%a0;slot-id=42;library-manufacturer=SoftHSM;"
      "library-description=Implementation%20of%20PKCS11;library-version=2.6;"
      "slot-description=SoftHSM%20slot;slot-manufacturer=SoftHSM"
      "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin");
  ASSERT_TRUE(u.has_value()) << u.error().message();
  EXPECT_EQ(u->token, "union-seal");
  EXPECT_EQ(u->manufacturer, "SoftHSM project");
  EXPECT_EQ(u->serial, "abc123");
  EXPECT_EQ(u->model, "SoftHSM v2");
  EXPECT_EQ(u->object, "seal");
  EXPECT_EQ(u->type, ObjectType::kPrivate);
  EXPECT_EQ(u->id, std::string("\x01\xa0", 2));
  EXPECT_EQ(u->slot_id, 42u);
  EXPECT_EQ(u->library_manufacturer, "SoftHSM");
  EXPECT_EQ(u->library_description, "Implementation of PKCS11");
  EXPECT_EQ(u->library_version, "2.6");
  EXPECT_EQ(u->slot_description, "SoftHSM slot");
  EXPECT_EQ(u->slot_manufacturer, "SoftHSM");
  EXPECT_EQ(u->module_path, "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(u->pin_source, "file:/run/pin");
  EXPECT_TRUE(u->SelectsToken());
}

TEST(UriTest, ParseUtf8LabelDecodesPercentEncodedBytes) {
  // "Công đoàn" percent-encoded as UTF-8.
  auto u = ParseUri("pkcs11:token=C%C3%B4ng%20%C4%91o%C3%A0n;object=seal");
  ASSERT_TRUE(u.has_value()) << u.error().message();
  EXPECT_EQ(*u->token, "Công đoàn");
}

TEST(UriTest, ParseInvalidUtf8LabelFailsNamingAttribute) {
  auto u = ParseUri("pkcs11:token=%C3%28");
  ASSERT_FALSE(u.has_value());
  EXPECT_EQ(u.error().code(), Code::kInvalidArgument);
  EXPECT_NE(u.error().message().find("'token'"), std::string::npos) << u.error().message();
  EXPECT_NE(u.error().message().find("UTF-8"), std::string::npos);
}

TEST(UriTest, ParseIdWithArbitraryBytesKeepsThem) {
  auto u = ParseUri("pkcs11:id=%00%FF%10");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(*u->id, std::string("\x00\xff\x10", 3));
}

TEST(UriTest, ParseBadPercentEncodingFailsNamingAttribute) {
  for (const char* text : {"pkcs11:id=%4", "pkcs11:id=%zz", "pkcs11:object=a%"}) {
    auto u = ParseUri(text);
    ASSERT_FALSE(u.has_value()) << text;
    EXPECT_NE(u.error().message().find("percent-encoding"), std::string::npos) << u.error().message();
  }
  auto u = ParseUri("pkcs11:id=%4");
  EXPECT_NE(u.error().message().find("'id'"), std::string::npos);
}

TEST(UriTest, ParseRawSpaceOrNonAsciiFailsAskingForPercentEncoding) {
  auto space = ParseUri("pkcs11:token=union seal");
  ASSERT_FALSE(space.has_value());
  EXPECT_NE(space.error().message().find("%20"), std::string::npos) << space.error().message();
  auto raw = ParseUri("pkcs11:token=Công");
  ASSERT_FALSE(raw.has_value());
  EXPECT_NE(raw.error().message().find("'token'"), std::string::npos);
}

TEST(UriTest, ParsePinValueIsRefusedWithoutEchoingIt) {
  auto u = ParseUri("pkcs11:token=t;object=o?pin-value=secret1234&module-path=/x.so");
  ASSERT_FALSE(u.has_value());
  EXPECT_EQ(u.error().code(), Code::kInvalidArgument);
  EXPECT_NE(u.error().message().find("pin-value"), std::string::npos);
  EXPECT_NE(u.error().message().find("refused"), std::string::npos);
  EXPECT_EQ(u.error().message().find("secret1234"), std::string::npos);
}

TEST(UriTest, ParseDuplicateAttributeFails) {
  auto u = ParseUri("pkcs11:token=a;token=b");
  ASSERT_FALSE(u.has_value());
  EXPECT_NE(u.error().message().find("more than once"), std::string::npos);
}

TEST(UriTest, ParseUnknownAttributeFailsNamingIt) {
  auto u = ParseUri("pkcs11:tokn=a");
  ASSERT_FALSE(u.has_value());
  EXPECT_NE(u.error().message().find("'tokn'"), std::string::npos);
  auto q = ParseUri("pkcs11:token=a?modul-path=/x.so");
  ASSERT_FALSE(q.has_value());
  EXPECT_NE(q.error().message().find("'modul-path'"), std::string::npos);
}

TEST(UriTest, ParseBadTypeAndSlotIdFail) {
  auto t = ParseUri("pkcs11:type=secret");
  ASSERT_FALSE(t.has_value());
  EXPECT_NE(t.error().message().find("'type'"), std::string::npos);
  auto s = ParseUri("pkcs11:slot-id=12a");
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message().find("'slot-id'"), std::string::npos);
  auto v = ParseUri("pkcs11:library-version=2.x");
  ASSERT_FALSE(v.has_value());
  EXPECT_NE(v.error().message().find("'library-version'"), std::string::npos);
}

TEST(UriTest, ParseWrongSchemeOrRelativeModulePathFails) {
  EXPECT_FALSE(ParseUri("pkcs12:token=a").has_value());
  EXPECT_FALSE(ParseUri("token=a").has_value());
  auto rel = ParseUri("pkcs11:token=a?module-path=lib/softhsm2.so");
  ASSERT_FALSE(rel.has_value());
  EXPECT_NE(rel.error().message().find("absolute"), std::string::npos);
  EXPECT_FALSE(ParseUri("pkcs11:token=a?module-path=/a.so&module-name=softhsm2").has_value());
}

TEST(UriTest, ParseQueryAttributeInPathFailsWithHint) {
  auto u = ParseUri("pkcs11:token=a;module-path=/x.so");
  ASSERT_FALSE(u.has_value());
  EXPECT_NE(u.error().message().find("after '?'"), std::string::npos);
}

TEST(UriTest, ParseTooLongTokenLabelFails) {
  auto u = ParseUri("pkcs11:token=" + std::string(33, 'a'));
  ASSERT_FALSE(u.has_value());
  EXPECT_NE(u.error().message().find("32"), std::string::npos);
}

TEST(UriTest, ParseEmptyPathAndSchemeCaseAreAccepted) {
  auto u = ParseUri("pkcs11:");
  ASSERT_TRUE(u.has_value());
  EXPECT_FALSE(u->SelectsToken());
  EXPECT_TRUE(ParseUri("PKCS11:token=a").has_value());
  EXPECT_TRUE(ParseUri("pkcs11:?module-name=softhsm2").has_value());
}

TEST(UriTest, FormatThenParseRoundTrips) {
  Uri u;
  u.token = "Công đoàn Bãi Cháy";
  u.object = "seal;key?&=";
  u.id = std::string("\x00\x01\xfe", 3);
  u.serial = "0123";
  u.type = ObjectType::kCert;
  u.module_path = "/usr/lib/softhsm/libsofthsm2.so";
  std::string text = FormatUri(u);
  EXPECT_EQ(text.find(' '), std::string::npos) << text;
  auto back = ParseUri(text);
  ASSERT_TRUE(back.has_value()) << back.error().message() << " in " << text;
  EXPECT_EQ(back->token, u.token);
  EXPECT_EQ(back->object, u.object);
  EXPECT_EQ(back->id, u.id);
  EXPECT_EQ(back->serial, u.serial);
  EXPECT_EQ(back->type, u.type);
  EXPECT_EQ(back->module_path, u.module_path);
}

TEST(UriTest, IsValidUtf8RejectsOverlongAndSurrogates) {
  EXPECT_TRUE(IsValidUtf8("Nguyễn Thị Duyên"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xe1\xbb"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // > U+10FFFF
}

}  // namespace
}  // namespace sealpost::pkcs11
