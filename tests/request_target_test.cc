// The request-target parser and route matcher of the HTTP API
// (daemon/request_target.h): percent-decoding, %00 and other controls,
// repeated keys, overlong targets and values, dot segments, %2F, trailing
// slashes. Pure functions: no server here (the daemon tests send such
// requests end to end).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "daemon/request_target.h"

namespace sealpost::daemon {
namespace {

using Params = std::vector<std::string>;

bool Refused(std::string_view target) {
  auto t = ParseRequestTarget(target);
  if (t) return false;
  EXPECT_EQ(t.error().status, 400);
  EXPECT_EQ(t.error().slug, "bad-request");
  EXPECT_FALSE(t.error().detail_en.empty());
  EXPECT_FALSE(t.error().detail_vi.empty());
  return true;
}

TEST(RequestTargetTest, PathAndQueryAreDecoded) {
  auto t = ParseRequestTarget(
      "/api/v1/documents?type=directive&subject=C%C3%B4ng+%C4%91o%C3%A0n%20B%C3%A3i&limit=5");
  ASSERT_TRUE(t) << t.error().detail_en;
  EXPECT_EQ(t->path, "/api/v1/documents");
  EXPECT_EQ(t->segments, (Params{"api", "v1", "documents"}));
  ASSERT_EQ(t->query.size(), 3u);
  EXPECT_EQ(t->query[0], (std::pair<std::string, std::string>{"type", "directive"}));
  EXPECT_EQ(t->query[1].second, "Công đoàn Bãi");
  EXPECT_EQ(t->query[2].second, "5");

  auto root = ParseRequestTarget("/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->path, "/");
  EXPECT_EQ(root->segments, (Params{""}));

  // A literal '+' is %2B; a key without '=' has an empty value; empty
  // pieces are skipped; '=' inside a value stays.
  auto q = ParseRequestTarget("/x?a=1%2B1&&flag&b=c=d&");
  ASSERT_TRUE(q);
  ASSERT_EQ(q->query.size(), 3u);
  EXPECT_EQ(q->query[0].second, "1+1");
  EXPECT_EQ(q->query[1], (std::pair<std::string, std::string>{"flag", ""}));
  EXPECT_EQ(q->query[2].second, "c=d");
  // Encoded path characters other than '/' decode ('+' in a path is a '+').
  auto p = ParseRequestTarget("/api/v1/documents/a%2Db+c");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->segments.back(), "a-b+c");
}

TEST(RequestTargetTest, BadEscapesNulAndControlsAreRefused) {
  EXPECT_TRUE(Refused("/api/v1/documents/%G1"));
  EXPECT_TRUE(Refused("/api/v1/documents/abc%4"));
  EXPECT_TRUE(Refused("/api/v1/documents/abc%"));
  EXPECT_TRUE(Refused("/api/v1/documents/a%00b"));
  EXPECT_TRUE(Refused("/api/v1/documents?type=a%00b"));
  EXPECT_TRUE(Refused("/api/v1/documents?ty%00pe=a"));
  EXPECT_TRUE(Refused("/api/v1/documents?subject=line%0Abreak"));
  EXPECT_TRUE(Refused("/api/v1/documents?subject=%C3"));      // truncated UTF-8
  EXPECT_TRUE(Refused("/api/v1/documents?subject=%C0%AF"));   // overlong '/'
  EXPECT_TRUE(Refused("/api/v1/documents?subject=%ED%A0%80"));  // surrogate
  // The message names the place, not the value.
  auto t = ParseRequestTarget("/api/v1/documents?type=secret%00value");
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().detail_en.find("'type'"), std::string::npos) << t.error().detail_en;
  EXPECT_EQ(t.error().detail_en.find("secret"), std::string::npos) << t.error().detail_en;
}

TEST(RequestTargetTest, DotSegmentsEncodedSlashesAndFragmentsAreRefused) {
  EXPECT_TRUE(Refused("/api/v1/documents/.."));
  EXPECT_TRUE(Refused("/api/v1/documents/../health"));
  EXPECT_TRUE(Refused("/api/v1/./health"));
  EXPECT_TRUE(Refused("/api/v1/documents/%2e%2E"));
  EXPECT_TRUE(Refused("/api/v1/documents/%2E"));
  EXPECT_TRUE(Refused("/api/v1/documents/x%2Fcontent"));
  EXPECT_TRUE(Refused("/api/v1/documents/x%2fcontent"));
  EXPECT_TRUE(Refused("/api/v1/health#frag"));
  EXPECT_TRUE(Refused("api/v1/health"));
  EXPECT_TRUE(Refused(""));
  EXPECT_TRUE(Refused("*"));
  // Three dots, or dots inside a segment, are ordinary ids.
  EXPECT_TRUE(ParseRequestTarget("/api/v1/documents/..."));
  EXPECT_TRUE(ParseRequestTarget("/api/v1/documents/a..b"));
}

TEST(RequestTargetTest, AbsoluteFormKeepsPathAndQuery) {
  auto t = ParseRequestTarget("https://127.0.0.1:8443/api/v1/health?x=1");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->path, "/api/v1/health");
  ASSERT_EQ(t->query.size(), 1u);
  auto bare = ParseRequestTarget("HTTP://example.invalid");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->path, "/");
  auto q = ParseRequestTarget("http://h?a=b");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->path, "/");
  ASSERT_EQ(q->query.size(), 1u);
  EXPECT_EQ(q->query[0].second, "b");
}

TEST(RequestTargetTest, OverlongTargetsAndTooManyParametersAreRefused) {
  std::string big_value = "/api/v1/documents?subject=" + std::string(kMaxTargetBytes, 'a');
  EXPECT_TRUE(Refused(big_value));
  // Just under the limit: a long value is fine (the header limit bounds it
  // before this parser runs).
  std::string long_ok = "/x?subject=" + std::string(kMaxTargetBytes - 11, 'a');
  ASSERT_EQ(long_ok.size(), kMaxTargetBytes);
  auto t = ParseRequestTarget(long_ok);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->query[0].second.size(), kMaxTargetBytes - 11);

  std::string many = "/x?";
  for (size_t i = 0; i < kMaxQueryParameters; ++i) many += "k" + std::to_string(i) + "=v&";
  EXPECT_TRUE(ParseRequestTarget(many));
  EXPECT_TRUE(Refused(many + "one=more"));
}

TEST(RequestTargetTest, RepeatedAndUnknownKeysAreRefusedByQueryMap) {
  auto t = ParseRequestTarget("/x?type=a&type=b");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->query.size(), 2u);  // the parser keeps both
  auto m = QueryMap(*t, {"type"});
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().status, 400);
  EXPECT_NE(m.error().detail_en.find("repeated"), std::string::npos);
  // Encoded the same name is the same name.
  auto enc = ParseRequestTarget("/x?type=a&t%79pe=b");
  ASSERT_TRUE(enc);
  EXPECT_FALSE(QueryMap(*enc, {"type"}));

  auto u = ParseRequestTarget("/x?type=a&colour=red");
  ASSERT_TRUE(u);
  auto um = QueryMap(*u, {"type"});
  ASSERT_FALSE(um);
  EXPECT_NE(um.error().detail_en.find("Unknown query parameter 'colour'"), std::string::npos);

  auto ok = ParseRequestTarget("/x?type=a&subject=");
  ASSERT_TRUE(ok);
  auto om = QueryMap(*ok, {"type", "subject"});
  ASSERT_TRUE(om);
  EXPECT_EQ(om->at("type"), "a");
  EXPECT_EQ(om->at("subject"), "");
}

TEST(RequestTargetTest, RoutesMatchSegmentBySegment) {
  auto match = [](std::string_view pattern, std::string_view target, Params* p) {
    auto t = ParseRequestTarget(target);
    EXPECT_TRUE(t) << target;
    return t && MatchRoute(pattern, *t, p);
  };
  Params p;
  EXPECT_TRUE(match("/api/v1/documents/{id}/content", "/api/v1/documents/abc-1/content?x=1", &p));
  EXPECT_EQ(p, (Params{"abc-1"}));
  EXPECT_TRUE(match("/api/v1/documents/{id}", "/api/v1/documents/%61bc", &p));
  EXPECT_EQ(p, (Params{"abc"}));
  // Trailing slash, empty segment, extra or missing segments: no match.
  EXPECT_FALSE(match("/api/v1/health", "/api/v1/health/", &p));
  EXPECT_FALSE(match("/api/v1/documents/{id}", "/api/v1/documents/", &p));
  EXPECT_FALSE(match("/api/v1/documents/{id}", "/api/v1/documents//", &p));
  EXPECT_FALSE(match("/api/v1/documents/{id}/content", "/api/v1/documents//content", &p));
  EXPECT_FALSE(match("/api/v1/documents/{id}", "/api/v1/documents/a/b", &p));
  EXPECT_FALSE(match("/api/v1/documents/{id}/content", "/api/v1/documents/a", &p));
  EXPECT_FALSE(match("/api/v1/health", "/api//v1/health", &p));
  EXPECT_FALSE(match("/api/v1/health", "/API/v1/health", &p));
  EXPECT_TRUE(match("/api/v1/health", "/api/v1/health", &p));
  EXPECT_TRUE(p.empty());
  // A failed match leaves no parameters behind.
  p = {"stale"};
  EXPECT_FALSE(match("/api/v1/documents/{id}/content", "/api/v1/documents/a/bundle", &p));
  EXPECT_TRUE(p.empty());
}

}  // namespace
}  // namespace sealpost::daemon
