// A small, owned YAML node tree built from libyaml's event API, for the
// strict policy loader. It keeps what a strict schema walker needs and what
// yaml-cpp hides: every node's exact position, every scalar's style (plain or
// quoted), and every mapping key as it comes (so duplicates are caught).
// Choice and reasons: docs/decisions/0004-policy-yaml-parser.md.
#ifndef SEALPOST_POLICIES_YAML_TREE_H_
#define SEALPOST_POLICIES_YAML_TREE_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sealpost::policies {

// A position in a policy file; 1-based line and column (columns count
// characters, not bytes). {0, 0} means "the file as a whole".
struct Mark {
  int line = 0;
  int column = 0;
};

// One error found while loading a policy. ToString() gives the form every
// tool understands: "file:line:column: message".
struct Diagnostic {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  std::string ToString() const;
};

enum class ScalarStyle {
  kPlain,   // unquoted: subject to YAML 1.1's implicit typing traps
  kQuoted,  // single- or double-quoted, literal (|) or folded (>): always text
};

struct YamlMapEntry;

struct YamlNode {
  enum class Kind { kScalar, kMap, kSeq };
  Kind kind = Kind::kScalar;
  Mark mark;
  ScalarStyle style = ScalarStyle::kPlain;  // scalars only
  // Set on a node the parser already reported (an alias, a tagged node):
  // the schema walker skips it without a second error.
  bool reported = false;
  std::string value;                   // scalars only
  std::vector<YamlNode> items;         // sequences only
  std::vector<YamlMapEntry> entries;   // mappings only, in file order, no duplicate keys

  bool IsScalar() const { return kind == Kind::kScalar; }
  bool IsMap() const { return kind == Kind::kMap; }
  bool IsSeq() const { return kind == Kind::kSeq; }
  // A plain "", "~", "null", "Null" or "NULL" (YAML's null).
  bool IsNull() const;
};

struct YamlMapEntry {
  std::string key;
  Mark key_mark;
  YamlNode value;
};

// Bounds that keep a hostile or broken file from costing unbounded time or
// memory. The defaults fit a province-sized registry with a wide margin.
struct YamlLimits {
  size_t max_depth = 32;            // nesting of mappings/sequences
  size_t max_nodes = 4'000'000;     // all nodes of one file
  size_t max_scalar_bytes = 65536;  // one scalar
};

// Parses `text` (UTF-8) as exactly one YAML document. Refused, each with its
// own positioned error appended to `errors`: syntax errors, anchors and
// aliases, explicit tags, non-scalar or duplicate mapping keys, more than one
// document, an empty file, and anything over `limits`. Returns the tree when
// there was no syntax error (semantic errors above leave the offending node
// out or marked `reported`), nullopt otherwise. Never throws.
std::optional<YamlNode> ParseYaml(std::string_view text, const std::string& file,
                                  std::vector<Diagnostic>* errors,
                                  const YamlLimits& limits = YamlLimits());

}  // namespace sealpost::policies

#endif  // SEALPOST_POLICIES_YAML_TREE_H_
