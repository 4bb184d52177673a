// SoftwareKeySigner: a crypto::Signer over a private key held in process
// memory. FOR TESTS AND BENCHMARKS ONLY — keys of sealpost users live on
// tokens and are reached through pkcs11::OpenTokenSigner. The `sealpost`
// CLI and the daemon never construct one; the factory's name says so, so a
// use outside tests/ and bench/ stands out in review (grep CreateForTesting).
#ifndef SEALPOST_CRYPTO_SOFTWARE_SIGNER_H_
#define SEALPOST_CRYPTO_SOFTWARE_SIGNER_H_

#include <memory>
#include <string>
#include <string_view>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/signer.h"

namespace sealpost::crypto {

class SoftwareKeySigner final : public Signer {
 public:
  // Takes ownership of `key` (RSA or EC private key) and `cert`. The signer
  // answers only for KeyRef{label}; other ids get kNotFound.
  // Errors: kInvalidArgument if a handle is null, the key is neither RSA nor
  // EC, or the key does not belong to the certificate.
  static Result<std::unique_ptr<SoftwareKeySigner>> CreateForTesting(std::string label,
                                                                     EvpPkeyPtr key,
                                                                     X509Ptr cert);

  // A copy of the certificate (caller owns it).
  Result<X509Ptr> Certificate(const KeyRef& key) override;

  // RSA: PKCS#1 v1.5 over DigestInfo(alg, digest); EC: DER ECDSA-Sig-Value.
  Result<std::string> Sign(const KeyRef& key, DigestAlg alg, std::string_view digest) override;

  // Number of successful Sign calls (tests check that signing went through
  // the Signer boundary). Not thread-safe, like the rest of this class.
  int sign_count() const { return sign_count_; }

 private:
  SoftwareKeySigner(std::string label, EvpPkeyPtr key, X509Ptr cert)
      : label_(std::move(label)), key_(std::move(key)), cert_(std::move(cert)) {}

  std::string label_;
  EvpPkeyPtr key_;
  X509Ptr cert_;
  int sign_count_ = 0;
};

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_SOFTWARE_SIGNER_H_
