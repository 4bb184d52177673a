// Internal to policies/: the strict typed readers the loader uses to walk a
// YamlNode tree. Each reader reports its own positioned error and returns
// nullopt, so the loader goes on and reports every error in one pass.
// Typing rules (docs/policy.md "Typing rules"):
//  - integer: plain decimal without sign or leading zeros ("010" is refused);
//  - boolean: plain true or false only ("yes", "on", quoted "true" refused);
//  - string: any scalar, but a plain scalar YAML 1.1 reads as something else
//    (yes/no/on/off/y/n/true/false, ~/null, 010, 0x1F, 1:30, 1.5, .inf) must
//    be quoted;
//  - null (~, null, empty) is never a value: leave the key out instead.
#ifndef SEALPOST_POLICIES_SCHEMA_H_
#define SEALPOST_POLICIES_SCHEMA_H_

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policies/yaml_tree.h"

namespace sealpost::policies::internal {

// Where a value came from: which source (by position in the load) and where.
struct Loc {
  size_t file = 0;
  Mark mark;
};

struct LocatedError {
  Loc loc;
  std::string message;
};

class Reporter {
 public:
  Reporter(size_t file, std::vector<LocatedError>* errors) : file_(file), errors_(errors) {}
  void Error(Mark m, std::string message) const {
    errors_->push_back(LocatedError{Loc{file_, m}, std::move(message)});
  }
  Loc At(Mark m) const { return Loc{file_, m}; }
  size_t file() const { return file_; }

 private:
  size_t file_;
  std::vector<LocatedError>* errors_;
};

// "a mapping", "a list", "a plain scalar 'yes'", ... for messages.
std::string Describe(const YamlNode& node);

// A YAML 1.1 reader would give this plain scalar a type other than string
// (bool, null, a number written other than plain decimal, ...); returns the
// kind ("a boolean", "null", "a number") or nullopt if it reads as text.
std::optional<std::string_view> Yaml11NonStringType(std::string_view plain);

// A mapping checked against its allowed keys. Unknown keys are reported at
// construction; a node that is not a mapping is reported and the view is
// empty (every Get returns nullptr, Require reports nothing more).
class MapView {
 public:
  MapView(const Reporter& r, const YamlNode& node, std::string_view what,
          std::initializer_list<std::string_view> allowed);
  bool ok() const { return map_ != nullptr; }
  const YamlNode* Get(std::string_view key) const;
  // Reports "<what> is missing required key 'key'" at the mapping's position.
  const YamlNode* Require(std::string_view key) const;
  Mark mark() const { return mark_; }

 private:
  const Reporter& r_;
  const YamlNode* map_ = nullptr;
  std::string what_;
  Mark mark_;
};

// Typed readers. `what` names the field in messages ("union.name").
std::optional<std::string> ReadString(const Reporter& r, const YamlNode& n, std::string_view what);
std::optional<std::string> ReadNonEmptyString(const Reporter& r, const YamlNode& n,
                                              std::string_view what, size_t max_bytes = 1024);
// Identifiers: 1-64 of [a-z0-9._-], starting with a letter or digit.
std::optional<std::string> ReadId(const Reporter& r, const YamlNode& n, std::string_view what);
std::optional<uint64_t> ReadUint(const Reporter& r, const YamlNode& n, std::string_view what,
                                 uint64_t min, uint64_t max);
std::optional<bool> ReadBool(const Reporter& r, const YamlNode& n, std::string_view what);
// One of `names`; returns its index.
std::optional<size_t> ReadEnum(const Reporter& r, const YamlNode& n, std::string_view what,
                               std::span<const std::string_view> names);
// A date YYYY-MM-DD (plain or quoted); returns days since 1970-01-01.
std::optional<int64_t> ReadDate(const Reporter& r, const YamlNode& n, std::string_view what);
// https://host[...] with no whitespace; `schemes` are the allowed prefixes.
std::optional<std::string> ReadUrl(const Reporter& r, const YamlNode& n, std::string_view what,
                                   std::initializer_list<std::string_view> schemes);
std::optional<std::string> ReadEmail(const Reporter& r, const YamlNode& n, std::string_view what);
// Hex (optionally with ':' separators); `bytes` exact length or 0 for any.
std::optional<std::string> ReadHex(const Reporter& r, const YamlNode& n, std::string_view what,
                                   size_t bytes);
// A media type "type/subtype", returned lower-case.
std::optional<std::string> ReadMediaType(const Reporter& r, const YamlNode& n,
                                         std::string_view what);

// A sequence whose items are read by `item` (called with each item node);
// reports a node that is not a sequence, an empty one if !allow_empty, and
// items listed twice (by the string key `item` returns).
struct ListItem {
  std::string key;
  Mark mark;
};
std::vector<ListItem> ReadList(
    const Reporter& r, const YamlNode& n, std::string_view what, bool allow_empty,
    const std::function<std::optional<std::string>(const YamlNode&)>& item);

}  // namespace sealpost::policies::internal

#endif  // SEALPOST_POLICIES_SCHEMA_H_
