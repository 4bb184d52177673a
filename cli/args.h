// A small, strict command-line parser shared by every `sealpost` command.
// Flags are "--name value", "--name=value" or boolean "--name"; a flag may
// repeat (GetAll). "--" ends the flags. Unknown flags are usage errors.
#ifndef SEALPOST_CLI_ARGS_H_
#define SEALPOST_CLI_ARGS_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"

namespace sealpost::cli {

struct FlagSpec {
  std::set<std::string> with_value;  // e.g. {"--key", "-o", "--chain"}
  std::set<std::string> boolean;     // e.g. {"--json", "--no-revocation"}
};

class Args {
 public:
  // InvalidArgument naming the flag on: an unknown flag, a missing value.
  static Result<Args> Parse(const std::vector<std::string>& argv, const FlagSpec& spec);

  bool Has(const std::string& flag) const { return values_.count(flag) > 0; }
  // The last value given for `flag`.
  std::optional<std::string> Get(const std::string& flag) const;
  std::vector<std::string> GetAll(const std::string& flag) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

}  // namespace sealpost::cli

#endif  // SEALPOST_CLI_ARGS_H_
