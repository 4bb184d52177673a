#include "cli/args.h"

namespace sealpost::cli {

Result<Args> Args::Parse(const std::vector<std::string>& argv, const FlagSpec& spec) {
  Args a;
  bool flags_done = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      a.positional_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> inline_value;
    if (auto eq = arg.find('='); eq != std::string::npos && arg.starts_with("--")) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    if (spec.boolean.count(name)) {
      if (inline_value) return Err(Status::InvalidArgument(name + " takes no value"));
      a.values_[name].push_back("");
    } else if (spec.with_value.count(name)) {
      if (inline_value) {
        a.values_[name].push_back(*inline_value);
      } else {
        if (i + 1 >= argv.size()) return Err(Status::InvalidArgument(name + " needs a value"));
        a.values_[name].push_back(argv[++i]);
      }
    } else {
      return Err(Status::InvalidArgument("unknown option " + name));
    }
  }
  return a;
}

std::optional<std::string> Args::Get(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Args::GetAll(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return {};
  return it->second;
}

}  // namespace sealpost::cli
