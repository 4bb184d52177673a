// Certificate path validation against configured trust anchors and CRLs
// (RFC 5280 via OpenSSL's X509_STORE, with extended CRL support and delta
// CRLs), plus the project's own rules on top:
//  - revocation per certificate: a certificate that names a CRL distribution
//    point and has no CRL at hand makes the path INDETERMINATE/TRY_LATER; one
//    without a distribution point and without a CRL passes, reported as
//    Revocation::kNotChecked (unless TrustOptions::require_crl_for_every_cert);
//  - the signer's key usage and extended key usage must admit signing
//    (Usage::kDocumentSigning);
//  - the algorithm policy of crypto/algorithms.h on every certificate of the
//    path (unless TrustOptions::allow_legacy).
#ifndef SEALPOST_CRYPTO_PATH_H_
#define SEALPOST_CRYPTO_PATH_H_

#include <ctime>
#include <memory>
#include <string>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/report.h"

namespace sealpost::crypto {

struct TrustOptions {
  // Check CRLs (X509_V_FLAG_CRL_CHECK | CRL_CHECK_ALL). Off: every report
  // says Revocation::kDisabled.
  bool check_revocation = true;
  // Accept SHA-1/MD5, short RSA/EC keys and DSA (RFC 4134 samples, PKITS).
  bool allow_legacy = false;
  // Treat a certificate without a CRL as INDETERMINATE even when it names no
  // distribution point (what NIST PKITS assumes). Off by default: DESIGN.md
  // lets such certificates pass with "revocation not checked".
  bool require_crl_for_every_cert = false;
};

// What the signer's certificate must be good for.
enum class Usage {
  kAny,              // RFC 5280 path validation only (PKITS)
  kDocumentSigning,  // key usage digitalSignature or nonRepudiation when present;
                     // EKU, when present, admits anyExtendedKeyUsage,
                     // emailProtection, documentSigning (RFC 9336),
                     // Microsoft Document Signing or clientAuth
};

struct PathResult {
  SubIndication sub_indication = SubIndication::kNone;  // kNone: the path is valid
  Reason reason = Reason::kNone;
  std::string detail;  // language-neutral: OpenSSL's error text, depth, subject
  Revocation revocation = Revocation::kUnknown;
  // The path OpenSSL built, leaf first, trust anchor last (null when none
  // was built). Meaningful as "the verified chain" only when ok().
  std::shared_ptr<STACK_OF(X509)> chain;
  bool ok() const { return sub_indication == SubIndication::kNone; }
};

// A prepared trust context: the X509_STORE with anchors and CRLs is built
// once and reused for every validation. Thread-safe for concurrent
// Validate() calls once created (OpenSSL stores lock their lookups).
class TrustStore {
 public:
  // `anchors`: trusted certificates (at least one). `untrusted`: extra
  // certificates offered for path building (may be null). `crls`: CRLs for
  // any certificate of any path (may be null). InvalidArgument if no anchor.
  static Result<TrustStore> Create(X509StackPtr anchors, X509StackPtr untrusted,
                                   X509CrlStackPtr crls, const TrustOptions& options);

  // Validates the path from `leaf` to an anchor at time `at`. `extra` are
  // more untrusted certificates (e.g. those embedded in a CMS; may be null).
  // Never fails as a function: problems are in the result.
  PathResult Validate(X509* leaf, STACK_OF(X509)* extra, std::time_t at, Usage usage) const;

  const TrustOptions& options() const { return options_; }
  // Untrusted certificates given at creation (never null; may be empty).
  STACK_OF(X509)* untrusted() const { return untrusted_.get(); }

 private:
  TrustStore(X509StorePtr store, X509StackPtr untrusted, X509CrlStackPtr crls,
             const TrustOptions& options)
      : store_(std::move(store)), untrusted_(std::move(untrusted)), crls_(std::move(crls)),
        options_(options) {}

  X509StorePtr store_;
  X509StackPtr untrusted_;
  X509CrlStackPtr crls_;
  TrustOptions options_;
};

// The signer usage rule of Usage::kDocumentSigning on one certificate.
// Returns kNone when acceptable, else kKeyUsageRefused / kExtKeyUsageRefused.
Reason CheckSigningUsage(X509* cert);

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_PATH_H_
