// The policy decision: may this union issue this document, to these
// recipients, signed by these people? One pure function (no I/O, no clock,
// no global state) from a Policy and a request to a verdict with every rule
// that matched or failed, explained in Vietnamese and English.
#ifndef SEALPOST_POLICIES_DECISION_H_
#define SEALPOST_POLICIES_DECISION_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/lang.h"
#include "policies/policy.h"

namespace sealpost::policies {

// What the decision knows about one signer whose signature the verifier has
// already checked. Plain values, so decisions are testable without
// certificates; IdentityFromCertificate (policies/identity.h) fills it from
// an X509 and its verified chain.
struct SignerIdentity {
  std::string subject;      // NormalizeName form
  std::string issuer;       // NormalizeName form
  std::string serial;       // upper-case hex, no leading zeros
  std::string spki_sha256;  // lower-case hex
  // SHA-256 (lower-case hex, of the DER) of each CA certificate above the
  // signer in its verified chain, up to and including the trust anchor.
  std::vector<std::string> chain_sha256;
  std::string display_name;  // for messages: the CN, else the subject
};

struct DecisionRequest {
  std::string_view issuer;                 // union id
  std::string_view document_type;          // document type id
  std::span<const std::string> recipients;  // union ids
  std::span<const SignerIdentity> signers;
  // Content size in bytes and media type ("application/pdf", parameters
  // ignored). nullopt: not known; the size/media-type rules are then reported
  // as not checked and do not decide (`policy explain` without --size; a
  // verifier always knows both and must pass them).
  std::optional<uint64_t> size;
  std::optional<std::string_view> media_type;
  int64_t time = 0;              // seconds since the epoch: when it is issued/was signed
  bool timestamped = false;      // carries a trusted timestamp (CAdES B-T)
};

// Rule kinds; each RuleResult names one (machine-readable, in --json output).
enum class RuleKind {
  kIssuerKnown,      // the issuing union is in the registry
  kTypeKnown,        // the document type exists
  kIssuer,           // the union may issue this type (level, named, group)
  kRecipient,        // one recipient is known and allowed (relation, named, group)
  kSigner,           // one signer is an officer/seal of the issuing union, mandate in force
  kSignatures,       // one signature requirement (roles x count) is met
  kSeal,             // the issuing union's seal signed
  kSize,             // content size within the limit
  kMediaType,        // media type allowed
  kTimestamp,        // timestamp present when required
};
std::string_view RuleKindName(RuleKind kind);

struct RuleResult {
  RuleKind kind;
  bool passed = false;
  bool checked = true;  // false: not evaluated for lack of input; does not decide
  std::string en;
  std::string vi;
};

struct Decision {
  bool allowed = false;
  std::string policy_sha256;
  std::vector<RuleResult> rules;  // in evaluation order; failed ones included
  int retention_years = 0;        // of the document type, when known

  // First failed rule (nullptr when allowed).
  const RuleResult* FirstFailure() const;
  // "ALLOWED"/"DENIED" (or "ĐƯỢC PHÉP"/"KHÔNG ĐƯỢC PHÉP") and one line per
  // rule, "  [ok] ..." / "  [FAIL] ..." / "  [--] ..." (not checked), in `lang`.
  std::string Explain(Lang lang) const;
  // Language-neutral JSON: {"decision":"allow"|"deny","policy_sha256":...,
  // "rules":[{"rule":kind,"result":"pass"|"fail"|"not_checked","en":...,"vi":...}]}.
  std::string ToJson() const;
};

// Evaluates every rule that applies and returns the verdict: allowed exactly
// when every rule passed. Unknown issuer or type stop evaluation there.
// Cost: hash lookups and a few string formats (about 1-3 µs; bench/bench_policy).
Decision Decide(const Policy& policy, const DecisionRequest& request);

}  // namespace sealpost::policies

#endif  // SEALPOST_POLICIES_DECISION_H_
