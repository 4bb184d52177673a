// The validation report: what the verifier found, per signer and overall, in
// the manner of ETSI EN 319 102-1 (indication + sub-indication), with a plain
// sentence in Vietnamese or English and a language-neutral JSON form.
//
// All strings in a report are UTF-8. A Report is a plain value: copyable,
// no references into OpenSSL objects.
#ifndef SEALPOST_CRYPTO_REPORT_H_
#define SEALPOST_CRYPTO_REPORT_H_

#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/x509.h>

#include "base/json.h"
#include "base/lang.h"
#include "base/status.h"

namespace sealpost::crypto {

// Main indication. Order matters: a larger value is worse (Worst()).
enum class Indication { kPassed = 0, kIndeterminate = 1, kFailed = 2 };

// Sub-indications of EN 319 102-1 that this verifier can produce.
//  FAILED:        kFormatFailure, kHashFailure, kSigCryptoFailure, kRevoked,
//                 kNotAuthorizedByPolicy (set by the caller from a policy decision)
//  INDETERMINATE: kSigConstraintsFailure, kChainConstraintsFailure,
//                 kCertificateChainGeneralFailure, kCryptoConstraintsFailure,
//                 kNoSigningCertificateFound, kNoCertificateChainFound,
//                 kOutOfBoundsNoPoe, kNotYetValid, kTryLater
enum class SubIndication {
  kNone,
  kFormatFailure,
  kHashFailure,
  kSigCryptoFailure,
  kRevoked,
  kSigConstraintsFailure,
  kChainConstraintsFailure,
  kCertificateChainGeneralFailure,
  kCryptoConstraintsFailure,
  kNoSigningCertificateFound,
  kNoCertificateChainFound,
  kOutOfBoundsNoPoe,
  kNotYetValid,
  kTryLater,
  kNotAuthorizedByPolicy,
};

// Why a signer did not pass, more precisely than the sub-indication. Stable
// machine names (ReasonName) appear in JSON; sentences come from ReasonText.
enum class Reason {
  kNone,
  // Format of the SignerInfo (FAILED/FORMAT_FAILURE).
  kContentTypeMissing,
  kContentTypeDuplicate,
  kContentTypeNotData,
  kMessageDigestMissing,
  kMessageDigestDuplicate,
  kSigningTimeMalformed,
  kAttributeMalformed,
  kSigningCertificateMismatch,
  // Integrity.
  kDigestMismatch,      // FAILED/HASH_FAILURE
  kSignatureInvalid,    // FAILED/SIG_CRYPTO_FAILURE
  kSignerCertNotFound,  // INDETERMINATE/NO_SIGNING_CERTIFICATE_FOUND
  // Algorithm policy (INDETERMINATE/CRYPTO_CONSTRAINTS_FAILURE).
  kWeakDigest,
  kWeakKey,
  kDsaRefused,
  kUnsupportedAlgorithm,
  // Certificate path.
  kNoChain,            // INDETERMINATE/NO_CERTIFICATE_CHAIN_FOUND
  kCertExpired,        // INDETERMINATE/OUT_OF_BOUNDS_NO_POE
  kCertNotYetValid,    // INDETERMINATE/NOT_YET_VALID
  kRevoked,            // FAILED/REVOKED
  kCrlMissing,         // INDETERMINATE/TRY_LATER
  kCrlOutdated,        // INDETERMINATE/TRY_LATER
  kCrlInvalid,         // INDETERMINATE/CERTIFICATE_CHAIN_GENERAL_FAILURE
  kChainInvalid,       // INDETERMINATE/CHAIN_CONSTRAINTS_FAILURE or general
  kKeyUsageRefused,    // INDETERMINATE/CHAIN_CONSTRAINTS_FAILURE
  kExtKeyUsageRefused, // INDETERMINATE/CHAIN_CONSTRAINTS_FAILURE
};

// Revocation status of the signer's certificate path.
enum class Revocation {
  kGood,            // every certificate below the trust anchor was checked against a CRL
  kRevoked,         // a certificate of the path is revoked
  kNotChecked,      // some certificate has no CRL distribution point and no CRL was at hand
  kNoCrlAvailable,  // some certificate names a distribution point but no CRL was at hand
  kDisabled,        // checking was switched off (--no-revocation)
  kUnknown,         // not reached (the path could not be built or an earlier check failed)
};

enum class Level { kCms, kCadesBB };

std::string_view IndicationName(Indication i);        // "PASSED", "FAILED", "INDETERMINATE"
std::string_view SubIndicationName(SubIndication s);  // "HASH_FAILURE", ... ("" for kNone)
std::string_view ReasonName(Reason r);                // "digest-mismatch", ... ("" for kNone)
std::string_view RevocationName(Revocation r);        // "good", "revoked", "not-checked",
                                                      // "no-crl-available", "disabled", "unknown"
std::string_view LevelName(Level l);                  // "CMS", "CAdES-B-B"

// The main indication a sub-indication belongs to (kNone -> kPassed).
Indication IndicationOf(SubIndication s);

struct SignerReport {
  Indication indication = Indication::kPassed;
  SubIndication sub_indication = SubIndication::kNone;
  Reason reason = Reason::kNone;
  // Technical detail for the reason, language-neutral (algorithm names,
  // OpenSSL's verify error text); may be empty.
  std::string detail;
  std::string name;          // the signer's common name (UTF-8), else the subject
  std::string organization;  // O= of the signer's subject, may be empty
  std::string subject;       // UTF-8 one-line names, CN first
  std::string issuer;
  std::string serial;        // upper-case hex
  std::optional<std::time_t> signing_time;  // from the signing-time attribute
  Level level = Level::kCms;
  Revocation revocation = Revocation::kUnknown;
  std::string digest_algorithm;     // "SHA-256", ...
  std::string signature_algorithm;  // "ECDSA P-256", "RSA 2048", ...
  // The signer's certificate (null if it was not found) and, when the path
  // validated, the verified chain from the signer to the trust anchor. Shared
  // so a Report stays copyable; a policy decision reads identities from them.
  std::shared_ptr<X509> certificate;
  std::shared_ptr<STACK_OF(X509)> chain;
};

// The verdict of a policy on the document (policies/ decides; crypto/ only
// carries it so one report holds everything).
struct PolicyVerdict {
  bool allowed = false;
  std::string policy_version;  // hex SHA-256 of the effective policy
  std::string reason_en;       // first failed rule, empty when allowed
  std::string reason_vi;
  std::string explanation_en;  // every rule, one per line
  std::string explanation_vi;
  std::string decision_json;   // the decision as one JSON object
};

struct Report {
  Indication indication = Indication::kPassed;
  SubIndication sub_indication = SubIndication::kNone;
  std::time_t validation_time = 0;
  std::vector<SignerReport> signers;
  std::optional<PolicyVerdict> policy;
};

// Adds a policy verdict: a refusal makes the report FAILED /
// NOT_AUTHORIZED_BY_POLICY (whatever the signers' outcome was, FAILED is the
// worst); an allowance leaves the indication as it is.
void ApplyPolicyVerdict(Report& report, PolicyVerdict verdict);

// Sets report.indication/sub_indication to the worst signer's (FAILED beats
// INDETERMINATE beats PASSED; among equals the first signer's). A report
// without signers is FAILED/FORMAT_FAILURE.
void Summarize(Report& report);

// RFC 3339 UTC, "2026-11-28T10:00:00Z".
std::string FormatRfc3339(std::time_t t);
// Parses RFC 3339 ("2026-11-28T10:00:00Z", "...+07:00", fractional seconds
// allowed and dropped). InvalidArgument naming `text` if malformed.
Result<std::time_t> ParseRfc3339(std::string_view text);

// The reason as a short phrase in `lang` ("the file was changed after signing").
std::string ReasonText(Reason r, Lang lang);
// One human sentence for a signer, in `lang`: "Authentic: signed by X of Y
// at T." or "Not valid: ..." / "Cannot be confirmed: ...".
std::string SignerSentence(const SignerReport& s, Lang lang);
// Multi-line human report for the terminal, in `lang`.
std::string ReportToText(const Report& report, Lang lang);
// One JSON object (language-neutral, UTF-8, escaped), with a trailing newline:
// {"indication","subIndication","validationTime","signers":[{"indication",
//  "subIndication","reason","detail","name","organization","subject","issuer",
//  "serial","signingTime","level","revocation","digestAlgorithm",
//  "signatureAlgorithm"}]}. Absent values are null.
std::string ReportToJson(const Report& report);

// JSON string literals: base/json.h.
using ::sealpost::JsonString;

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_REPORT_H_
