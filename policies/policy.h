// Loading a policy: one or more YAML files merged into one validated,
// indexed, immutable Policy with a canonical hash (its version).
//
//   auto policy = LoadPolicyFiles({"registry.yaml", "rules.yaml"});
//   if (!policy) { print policy.error().message(); }   // every error, one per line
//
// Thread-safety: a Policy is immutable; share it as shared_ptr<const Policy>.
#ifndef SEALPOST_POLICIES_POLICY_H_
#define SEALPOST_POLICIES_POLICY_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "policies/model.h"
#include "policies/yaml_tree.h"

namespace sealpost::policies {

// One policy file's name (used in error positions) and text.
struct PolicySource {
  std::string name;
  std::string text;
};

// Hash maps keyed by id that can be searched with a string_view (no
// allocation per lookup: decisions must stay within microseconds).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
using IdIndex = std::unordered_map<std::string, size_t, StringHash, std::equal_to<>>;

struct Policy {
  std::string federation_id;
  std::string federation_name;
  // federation.version (0 when absent): a policy update (a `policy`
  // document, docs/policy.md "Policy updates") must carry a greater one.
  uint64_t version = 0;
  std::vector<TrustAnchor> anchors;
  std::vector<CrlSource> crl_sources;
  std::vector<Union> unions;               // sorted by id
  std::vector<Group> groups;               // sorted by id
  std::vector<Officer> officers;           // sorted by id
  std::vector<DocumentType> document_types;  // sorted by id

  // Canonical JSON of the merged model (sorted keys and lists, normalised
  // values) and its SHA-256 in lower-case hex: the policy's version. Equal for
  // the same rules however they are split across files or ordered inside
  // them; different for any change in meaning.
  std::string canonical_json;
  std::string sha256;

  // Indexes built at load time (values are positions in the vectors above).
  IdIndex union_index;
  IdIndex group_index;
  IdIndex officer_index;
  IdIndex type_index;
  IdIndex anchor_index;
  IdIndex anchor_by_sha256;  // certificate SHA-256 -> anchor
  std::vector<int> parent_of;                      // union position -> parent position or -1
  std::vector<std::vector<size_t>> groups_of;      // union position -> sorted group positions
  std::vector<size_t> officer_union;               // officer position -> union position
  IdIndex officer_by_identity;  // CertIdentity::Key()
  IdIndex seal_by_identity;     // CertIdentity::Key() -> union

  const Union* FindUnion(std::string_view id) const;
  const DocumentType* FindType(std::string_view id) const;
  const Officer* FindOfficer(std::string_view id) const;
  // True if union at position `a` is a strict ancestor of union at `b`.
  bool IsAncestor(size_t a, size_t b) const;
  bool InGroup(size_t union_pos, size_t group_pos) const;
};

// Merges and validates `sources` in order. On success the Policy; otherwise
// a DataError whose message lists every error found, one per line, each
// "file:line:column: message", in file order (the order of `sources`, then
// line, then column). `diagnostics`, if given, receives the same errors.
[[nodiscard]] Result<std::shared_ptr<const Policy>> LoadPolicy(
    const std::vector<PolicySource>& sources, std::vector<Diagnostic>* diagnostics = nullptr);

// Reads the files (NotFound naming the file if one cannot be read; at most
// 64 MiB each), then LoadPolicy.
[[nodiscard]] Result<std::shared_ptr<const Policy>> LoadPolicyFiles(
    const std::vector<std::string>& paths, std::vector<Diagnostic>* diagnostics = nullptr);

// Normalises a distinguished name written as "CN=Nguyễn Thị Duyên, O=Công
// đoàn Bãi Cháy, C=VN" (the form crypto::NameToUtf8 prints): spaces around
// unescaped ',' and '=' removed, attribute types upper-cased, RDNs joined
// with ", ". Values are kept byte for byte (UTF-8, case-sensitive).
std::string NormalizeName(std::string_view name);

}  // namespace sealpost::policies

#endif  // SEALPOST_POLICIES_POLICY_H_
