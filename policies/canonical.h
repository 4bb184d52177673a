// Canonical serialisation of a validated Policy and its hash: the policy's
// version. Internal to policies/ (Policy::canonical_json and ::sha256 carry
// the results).
//
// Canonical JSON here: UTF-8, no insignificant whitespace, object keys in
// byte order, every field present (empty string / empty list / null when
// unset), lists that are sets sorted (by id, or by value), enums by their
// schema name, hex lower-case (serials upper-case, as SerialHex prints them),
// names normalised (NormalizeName), defaults filled in (a union's code, a
// type's name_en). Strings escape only '"', '\\' and control characters.
#ifndef SEALPOST_POLICIES_CANONICAL_H_
#define SEALPOST_POLICIES_CANONICAL_H_

#include <string>
#include <string_view>

#include "policies/policy.h"

namespace sealpost::policies {

std::string CanonicalJson(const Policy& policy);
// SHA-256 of `data`, lower-case hex.
std::string Sha256Hex(std::string_view data);
// `s` as a JSON string literal (with the quotes).
std::string JsonString(std::string_view s);

}  // namespace sealpost::policies

#endif  // SEALPOST_POLICIES_CANONICAL_H_
