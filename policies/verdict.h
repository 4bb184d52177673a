// The bridge from verification to policy: signer certificates (already
// verified by crypto/) plus the document's metadata -> the policy verdict.
// `sealpost verify --policy FILE` uses this (see docs/policy.md, "Wiring
// into verify"): when the decision denies, the verification result becomes
// NOT_AUTHORIZED_BY_POLICY with the first failed rule as the reason.
#ifndef SEALPOST_POLICIES_VERDICT_H_
#define SEALPOST_POLICIES_VERDICT_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/x509.h>

#include "base/status.h"
#include "policies/decision.h"
#include "policies/policy.h"

namespace sealpost::policies {

// The ETSI EN 319 102-1 style sub-indication for a policy refusal.
inline constexpr std::string_view kNotAuthorizedByPolicy = "NOT_AUTHORIZED_BY_POLICY";

// Identity of `cert`. `chain` (may be null) holds the CA certificates of its
// verified path (X509_STORE_CTX_get0_chain minus the leaf, or the whole
// chain: the leaf itself is skipped). Both are borrowed for the call only.
// Internal error only if OpenSSL cannot encode or hash a certificate.
[[nodiscard]] Result<SignerIdentity> IdentityFromCertificate(X509* cert, STACK_OF(X509)* chain);

// One verified signer: its certificate and verified chain, both borrowed.
struct VerifiedSigner {
  X509* cert = nullptr;
  STACK_OF(X509)* chain = nullptr;
};

// What the document claims about itself (from the CLI flags today, from the
// bundle's manifest later).
struct DocumentFacts {
  std::string issuer;                   // union id
  std::string type;                     // document type id
  std::vector<std::string> recipients;  // union ids
  uint64_t size = 0;        // content bytes (always known to a verifier)
  std::string media_type;   // always given; "" is checked as "no media type"
  int64_t time = 0;   // signing time (seconds since the epoch)
  bool timestamped = false;
};

// Decide() over the identities of `signers`. The caller reports
// kNotAuthorizedByPolicy and decision.FirstFailure()->en/vi when
// !decision.allowed.
[[nodiscard]] Result<Decision> EvaluateVerifiedDocument(const Policy& policy,
                                                        const DocumentFacts& facts,
                                                        std::span<const VerifiedSigner> signers);

}  // namespace sealpost::policies

#endif  // SEALPOST_POLICIES_VERDICT_H_
