// The HTTP API's request target, parsed without PoCo (pure functions, so a
// libFuzzer target can run them: tests/fuzz/request_target_fuzz.cc): the
// origin-form "/path?query" of RFC 9112 section 3.2.1 (absolute-form
// "https://host/path?query" is accepted too, its authority ignored), and the
// matcher of route patterns such as "/api/v1/documents/{id}/content".
//
// Strict, because the path picks the handler and the role check:
//   - the path starts with '/'; a fragment ('#') is refused;
//   - each segment is percent-decoded on its own, after the split at '/',
//     so "%2F" can never create a segment ("a%2Fcontent" is refused, not
//     read as "a/content");
//   - refused in a segment or a query name or value: a bad escape ("%G1",
//     "%4"), an encoded NUL ("%00") or any control character, ill-formed
//     UTF-8; refused as a segment: "." and ".." (also encoded: "%2e%2E");
//   - empty segments ("//", a trailing '/') are kept: they match no route
//     (404), so "/api/v1/health/" is not "/api/v1/health";
//   - the query is split at '&' (empty pieces skipped), each piece at its
//     first '=' (none: the value is ""); '+' is a space; every parameter is
//     kept in order, repeats included (QueryMap refuses repeats);
//   - at most kMaxQueryParameters parameters and kMaxTargetBytes bytes.
// Errors are 400 bad-request problems (English and Vietnamese) naming what
// and where (the segment or parameter), never the decoded value itself.
#ifndef SEALPOST_DAEMON_REQUEST_TARGET_H_
#define SEALPOST_DAEMON_REQUEST_TARGET_H_

#include <cstddef>
#include <expected>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "daemon/problem.h"

namespace sealpost::daemon {

inline constexpr size_t kMaxQueryParameters = 64;
inline constexpr size_t kMaxTargetBytes = 64u << 10;

struct RequestTarget {
  std::vector<std::string> segments;  // decoded, between the '/'s ("/" -> {""})
  std::string path;                   // the segments joined by '/', with a leading '/'
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
};

// See the file comment.
[[nodiscard]] std::expected<RequestTarget, Problem> ParseRequestTarget(std::string_view target);

// Percent-decoding of one path segment (plus_is_space false) or one query
// name or value (true), with the refusals of the file comment. `what` names
// the piece in the error, in English and in Vietnamese ("path segment 3",
// "đoạn đường dẫn 3").
[[nodiscard]] std::expected<std::string, Problem> PercentDecode(std::string_view in,
                                                                bool plus_is_space,
                                                                const std::string& what_en,
                                                                const std::string& what_vi);

// Whether `target` matches the route `pattern` (literal segments, and
// "{name}" segments that match any non-empty segment); fills `params` with
// the "{...}" segments in order (cleared first). Segment by segment: the
// same number of segments, so a trailing '/' or an extra segment never
// matches.
bool MatchRoute(std::string_view pattern, const RequestTarget& target,
                std::vector<std::string>* params);

// The query as a map: a 400 problem for a name not in `allowed` ("Unknown
// query parameter") or a name given twice ("...is repeated").
[[nodiscard]] std::expected<std::map<std::string, std::string>, Problem> QueryMap(
    const RequestTarget& target, const std::set<std::string>& allowed);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_REQUEST_TARGET_H_
