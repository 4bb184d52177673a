// libFuzzer target for the HTTP API's request-target parser and route
// matcher (daemon/request_target.h): any bytes parse or fail with a 400
// problem, never crash, hang or leak. What parses keeps the parser's
// promises (a '/'-rooted path of clean UTF-8 segments, none "." or "..",
// none holding '/'; at most kMaxQueryParameters parameters), matches the
// API's route patterns without surprises, and parses again to the same
// result when re-encoded.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/utf8.h"
#include "daemon/request_target.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

std::string Encode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

const char* const kPatterns[] = {
    "/api/v1/health",           "/api/v1/documents",
    "/api/v1/documents/bundle", "/api/v1/documents/{id}",
    "/api/v1/documents/{id}/content", "/api/v1/documents/{id}/receipts",
    "/metrics",                 "/",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sealpost::daemon;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto t = ParseRequestTarget(in);
  if (!t) {
    Check(t.error().status == 400 && !t.error().detail_en.empty() &&
          !t.error().detail_vi.empty());
    return 0;
  }
  Check(!t->segments.empty());
  Check(t->query.size() <= kMaxQueryParameters);
  std::string joined;
  std::string reencoded;
  for (const std::string& s : t->segments) {
    Check(s.find('/') == std::string::npos && s != "." && s != "..");
    Check(sealpost::IsCleanUtf8Text(s));
    joined += "/" + s;
    reencoded += "/" + Encode(s);
  }
  Check(joined == t->path);
  for (const auto& [k, v] : t->query) {
    Check(sealpost::IsCleanUtf8Text(k) && sealpost::IsCleanUtf8Text(v));
  }
  for (const char* p : kPatterns) {
    std::vector<std::string> params;
    bool m = MatchRoute(p, *t, &params);
    if (!m) Check(params.empty());
    if (m && std::string_view(p).find('{') == std::string_view::npos) {
      Check(t->path == p && params.empty());
    }
    for (const std::string& s : params) Check(!s.empty());
  }
  auto q = QueryMap(*t, {"type", "subject", "recipients", "id"});
  if (q) Check(q->size() == t->query.size());
  // Re-encoded, it parses to the same segments and parameters.
  if (!t->query.empty()) {
    reencoded += '?';
    for (const auto& [k, v] : t->query) reencoded += Encode(k) + "=" + Encode(v) + "&";
  }
  if (reencoded.size() <= kMaxTargetBytes) {
    auto again = ParseRequestTarget(reencoded);
    Check(again.has_value());
    Check(again->segments == t->segments && again->query == t->query);
  }
  return 0;
}
