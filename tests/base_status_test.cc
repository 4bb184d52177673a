#include "base/status.h"

#include <gtest/gtest.h>

#include "base/encoding.h"
#include "base/secret.h"

namespace sealpost {
namespace {

TEST(StatusTest, ExitCodesFollowSysexits) {
  EXPECT_EQ(ExitCodeFor(Status::Ok()), 0);
  EXPECT_EQ(ExitCodeFor(Status::InvalidArgument("x")), 64);
  EXPECT_EQ(ExitCodeFor(Status::DataError("x")), 65);
  EXPECT_EQ(ExitCodeFor(Status::NotFound("x")), 66);
  EXPECT_EQ(ExitCodeFor(Status::Unavailable("x")), 69);
  EXPECT_EQ(ExitCodeFor(Status::Internal("x")), 70);
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsCode) {
  Status s = Status::NotFound("no such file").WithContext("key.pem");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), "key.pem: no such file");
}

TEST(EncodingTest, HexRoundTrips) {
  EXPECT_EQ(HexEncode(std::string("\x01\xab", 2)), "01ab");
  EXPECT_EQ(*HexDecode("01AB"), std::string("\x01\xab", 2));
  EXPECT_FALSE(HexDecode("0g").has_value());
  EXPECT_FALSE(HexDecode("012").has_value());
}

TEST(EncodingTest, Base64RoundTrips) {
  for (std::string s : {"", "a", "ab", "abc", "abcd"}) {
    EXPECT_EQ(*Base64Decode(Base64Encode(s)), s);
  }
  EXPECT_FALSE(Base64Decode("abc").has_value());
}

TEST(SecretBytesTest, StripsExactlyOneTrailingNewline) {
  SecretBytes a("1234\n");
  a.StripOneTrailingNewline();
  EXPECT_EQ(a.view(), "1234");
  SecretBytes b("1234\r\n");
  b.StripOneTrailingNewline();
  EXPECT_EQ(b.view(), "1234");
  SecretBytes c("1234\n\n");
  c.StripOneTrailingNewline();
  EXPECT_EQ(c.view(), "1234\n");
}

TEST(SecretBytesTest, EqualsComparesContent) {
  EXPECT_TRUE(SecretBytes("abc").Equals(SecretBytes("abc")));
  EXPECT_FALSE(SecretBytes("abc").Equals(SecretBytes("abd")));
  EXPECT_FALSE(SecretBytes("abc").Equals(SecretBytes("ab")));
}

}  // namespace
}  // namespace sealpost
