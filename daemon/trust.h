// The daemon's one verification trust: the trust anchors of
// verify.trust_anchors, the untrusted intermediate CA certificates of
// verify.intermediates (offered for path building, never anchors), the CRLs
// of verify.crls and the CRLs fetched from the policy's CRL sources
// (daemon/crls.h). Built once at start and rebuilt
// only when a fetched CRL changes; every user (officers' signatures at
// submission, the peer inbox, the verification desk) takes a snapshot with
// Current() and uses it for the whole request, so no request reloads files
// and one request always sees one trust.
//
// Thread-safety: every method may be called from any thread; a snapshot is
// immutable (the Verifier in it is thread-safe for concurrent use).
#ifndef SEALPOST_DAEMON_TRUST_H_
#define SEALPOST_DAEMON_TRUST_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/verify.h"

namespace sealpost::daemon {

struct TrustSnapshot {
  X509StackPtr anchors;     // the trust anchors
  X509CrlStackPtr crls;     // verify.crls, then every fetched CRL
  std::string crls_pem;     // the same CRLs as PEM ("" for none): archived with submissions
  std::optional<crypto::Verifier> verifier;  // over anchors + crls, default TrustOptions
  uint64_t generation = 0;  // 0 for the first; +1 at each rebuild
};

class SharedTrust {
 public:
  // Loads the anchor files (at least one), the static CRL files and the
  // intermediate CA files (untrusted: offered for path building and for
  // finding the issuer of a CRL signed by a CA under an anchor); errors name
  // the file (NotFound/DataError) as crypto::LoadTrustStore does.
  [[nodiscard]] static Result<std::unique_ptr<SharedTrust>> Create(
      const std::vector<std::string>& anchor_files, const std::vector<std::string>& crl_files,
      const std::vector<std::string>& intermediate_files = {});
  SharedTrust(const SharedTrust&) = delete;
  SharedTrust& operator=(const SharedTrust&) = delete;

  // The trust in force (never null).
  std::shared_ptr<const TrustSnapshot> Current() const;

  // Replaces the fetched CRLs (the static ones stay) and swaps in a new
  // snapshot. Borrowed pointers; each CRL is up-referenced.
  [[nodiscard]] Status SetFetched(const std::vector<X509_CRL*>& fetched);

  // The anchor certificate whose DER has this SHA-256 (lower-case hex), or
  // null. The certificates of the anchor files that it issued, for CRLs
  // signed by a CA under the anchor (borrowed, alive as long as this).
  X509* AnchorBySha256(const std::string& sha256_hex) const;
  std::vector<X509*> IssuedBy(X509* anchor) const;

  // The CA certificate named `issuer` that may sign CRLs under `anchor`:
  // the anchor itself, a certificate of the anchor files it issued, or an
  // intermediate of verify.intermediates whose path to `anchor` (and to no
  // other anchor) verifies now and that is a CA allowed to sign CRLs
  // (basicConstraints CA, keyUsage cRLSign when present). Null when none.
  // Borrowed, alive as long as this.
  X509* CrlIssuerUnder(X509* anchor, const X509_NAME* issuer) const;

 private:
  SharedTrust() = default;
  [[nodiscard]] Status Rebuild(const std::vector<X509_CRL*>& fetched);

  X509StackPtr anchors_;       // immutable after Create
  X509StackPtr intermediates_;  // immutable after Create (untrusted)
  X509CrlStackPtr static_crls_;  // immutable after Create
  mutable std::mutex mu_;
  std::shared_ptr<const TrustSnapshot> current_;  // guarded by mu_
  uint64_t generation_ = 0;                       // guarded by mu_
};

// SHA-256 of a certificate's DER, lower-case hex.
std::string CertSha256Hex(X509* cert);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_TRUST_H_
