// The algorithm policy of the verifier: which digests and keys are strong
// enough, and readable names for them.
//
// Refused unless legacy algorithms are explicitly allowed: MD5 and SHA-1
// digests (in signatures and certificate signatures), RSA keys under 2048
// bits, EC keys under 256 bits, and DSA keys of any size.
#ifndef SEALPOST_CRYPTO_ALGORITHMS_H_
#define SEALPOST_CRYPTO_ALGORITHMS_H_

#include <string>

#include <openssl/evp.h>

#include "crypto/report.h"

namespace sealpost::crypto {

// A refusal by the policy: the reason (kWeakDigest, kWeakKey, kDsaRefused,
// kUnsupportedAlgorithm) and a language-neutral detail ("SHA-1", "RSA 1024").
struct AlgorithmRefusal {
  Reason reason = Reason::kNone;
  std::string detail;
  bool refused() const { return reason != Reason::kNone; }
};

// "SHA-256", "SHA-1", ... for a digest NID; the OpenSSL short name otherwise.
std::string DigestNameForNid(int md_nid);
// "ECDSA P-256", "RSA 2048", "DSA 1024", "Ed25519", ...
std::string KeyDescription(EVP_PKEY* key);

// Checks a digest algorithm (by NID) against the policy.
AlgorithmRefusal CheckDigestNid(int md_nid);
// Checks a public key against the policy.
AlgorithmRefusal CheckKey(EVP_PKEY* key);

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_ALGORITHMS_H_
