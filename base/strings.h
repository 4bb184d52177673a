// Small string helpers shared by the CLI, the daemon and the tests.
#ifndef SEALPOST_BASE_STRINGS_H_
#define SEALPOST_BASE_STRINGS_H_

#include <string>
#include <string_view>
#include <vector>

namespace sealpost {

// The non-empty items of a comma-separated list ("a,,b," -> {"a", "b"}); no
// trimming, no quoting.
std::vector<std::string> SplitComma(std::string_view s);

}  // namespace sealpost

#endif  // SEALPOST_BASE_STRINGS_H_
