// RFC 9457 problem details (application/problem+json) in the request's
// language, and the choice of that language from Accept-Language.
#ifndef SEALPOST_DAEMON_PROBLEM_H_
#define SEALPOST_DAEMON_PROBLEM_H_

#include <string>
#include <string_view>

#include "base/lang.h"

namespace sealpost::daemon {

// The `type` URIs of our problems: kProblemBase + a short slug, e.g.
// "https://sealpost.invalid/problems/body-too-large". Documented in
// docs/api/openapi.yaml.
inline constexpr std::string_view kProblemBase = "https://sealpost.invalid/problems/";

struct Problem {
  int status = 500;
  std::string slug;      // "body-too-large", ...
  std::string title_en;  // short, fixed per slug
  std::string title_vi;
  std::string detail_en;  // this occurrence
  std::string detail_vi;
  // Extension members (RFC 9457 section 3.2), already JSON: e.g.
  // "\"from_size\":3,\"to_size\":5" (no braces, no leading comma); "" for none.
  std::string extension_members = {};
};

// {"type","title","status","detail"} in `lang`, plus "request_id" when
// non-empty. UTF-8, escaped.
std::string ProblemJson(const Problem& p, Lang lang, std::string_view request_id);

// Vietnamese when the first language range of `accept_language` with a
// non-zero q-value that is "vi" or "en" (or a subtag of them) is "vi";
// English when it is "en"; `fallback` when neither appears.
Lang LangFromAcceptLanguage(std::string_view accept_language, Lang fallback);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_PROBLEM_H_
