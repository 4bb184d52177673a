// The federation registry and document rules, as loaded and validated from
// YAML (policies/loader.h). A Policy is immutable once built: it is shared
// between threads through std::shared_ptr<const Policy> and never changes.
// The full schema with examples: docs/policy.md.
#ifndef SEALPOST_POLICIES_MODEL_H_
#define SEALPOST_POLICIES_MODEL_H_

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sealpost::policies {

// Levels of the union hierarchy, top to bottom (Tổng Liên đoàn, Liên đoàn
// Lao động tỉnh/thành phố, công đoàn ngành, Liên đoàn Lao động quận/huyện,
// công đoàn cơ sở).
enum class Level { kCentral, kProvince, kSector, kDistrict, kGrassroots };
inline constexpr std::string_view kLevelNames[] = {"central", "province", "sector", "district",
                                                   "grassroots"};

// Officer roles a signature requirement can name.
enum class Role {
  kChair,
  kViceChair,
  kStandingMember,
  kAccountant,
  kTreasurer,
  kClerk,
  kInspector,
  kMember,
};
inline constexpr std::string_view kRoleNames[] = {
    "chair", "vice-chair", "standing-member", "accountant", "treasurer", "clerk", "inspector",
    "member"};
// Role names a clerk reads.
std::string_view RoleLabel(Role role, bool vietnamese);

// How a certificate is recognised: by issuer + serial number, by the SHA-256
// of its SubjectPublicKeyInfo, or by subject name under a CA the policy
// trusts (an entry of trust.anchors, found anywhere in the verified chain).
struct CertIdentity {
  enum class Kind { kIssuerSerial, kSpkiSha256, kSubjectUnderCa };
  Kind kind = Kind::kSpkiSha256;
  std::string issuer;       // normalised name (NormalizeName), kIssuerSerial
  std::string serial;       // upper-case hex, no leading zeros, kIssuerSerial
  std::string spki_sha256;  // 64 lower-case hex digits, kSpkiSha256
  std::string subject;      // normalised name, kSubjectUnderCa
  std::string ca;           // trust anchor id, kSubjectUnderCa
  // One string that is equal for two identities exactly when they claim the
  // same certificates; used to refuse an identity claimed twice.
  std::string Key() const;
};

struct TrustAnchor {
  std::string id;
  std::string name;
  std::string sha256;  // of the certificate's DER, lower-case hex
};

struct CrlSource {
  std::string anchor;  // trust anchor id whose hierarchy issues this CRL
  std::string url;
};

// How a union receives documents (docs/policy.md, "Channels"): its
// appliance (`endpoint`), S/MIME mail (`email`), a signed notification
// (`webhook`).
enum class Channel { kAppliance, kEmail, kWebhook };
inline constexpr std::string_view kChannelNames[] = {"appliance", "email", "webhook"};

struct Union {
  std::string id;
  std::string name;     // Vietnamese, UTF-8
  std::string code;     // used by {union} in reference numbers; defaults to id
  Level level = Level::kGrassroots;
  std::string parent;   // empty for a root
  std::string endpoint;  // https URL of its appliance, may be empty
  bool has_tls_identity = false;
  CertIdentity tls_identity;
  bool has_seal = false;
  CertIdentity seal;
  std::string email;
  std::string webhook;
  // The channels documents to this union go through: sorted, unique, each
  // with its address set. `channels` in the policy, else DefaultChannels().
  std::vector<Channel> channels;
};

// The channels of a union whose policy entry lists none: appliance if it
// has an endpoint, else email if it has an address; plus webhook if it has
// a webhook URL. Empty when it has none of these.
std::vector<Channel> DefaultChannels(const Union& u);

struct Group {
  std::string id;
  std::string name;
  std::vector<std::string> members;  // union ids, sorted, unique
};

// A mandate runs from `from` (inclusive) to `until` (exclusive); both are
// seconds since the epoch; until == INT64_MAX for an open-ended mandate.
struct Mandate {
  int64_t from = 0;
  int64_t until = INT64_MAX;
  std::string from_text;   // YYYY-MM-DD as written
  std::string until_text;  // YYYY-MM-DD as written, or empty
};

struct Officer {
  std::string id;
  std::string name;
  Role role = Role::kMember;
  std::string union_id;
  CertIdentity certificate;
  Mandate mandate;
};

// `count` different officers of the issuing union, each holding one of
// `roles` with a mandate in force, must have signed.
struct SignatureRequirement {
  std::vector<Role> roles;  // sorted, unique
  int count = 1;
};

enum class Relation { kChildren, kDescendants, kParent, kAncestors, kSiblings, kSelf };
inline constexpr std::string_view kRelationNames[] = {"children",  "descendants", "parent",
                                                      "ancestors", "siblings",    "self"};

struct DocumentType {
  std::string id;
  std::string name;     // Vietnamese
  std::string name_en;  // English; defaults to id
  // Who may issue: a union qualifies if its level is listed, or it is named,
  // or it belongs to a named group.
  std::vector<Level> issuer_levels;
  std::vector<std::string> issuer_unions;
  std::vector<std::string> issuer_groups;
  // Every recipient must be allowed by one of these (relative to the issuer,
  // or named, or in a named group).
  std::vector<Relation> recipient_relations;
  std::vector<std::string> recipient_unions;
  std::vector<std::string> recipient_groups;
  std::vector<SignatureRequirement> signatures;
  bool seal_required = false;
  uint64_t max_size_bytes = 0;            // 0: no limit
  std::vector<std::string> media_types;  // lower-case type/subtype; empty: any
  int retention_years = 0;
  bool timestamp_required = false;
  std::string reference_pattern;  // empty: none
};

struct Policy;  // policies/policy.h

}  // namespace sealpost::policies

#endif  // SEALPOST_POLICIES_MODEL_H_
