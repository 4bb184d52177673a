// Verification of CMS SignedData signatures (RFC 5652; CAdES B-B attributes)
// over a file or bytes, with every SignerInfo checked and reported.
//
// For each SignerInfo: the signed attributes (content-type exactly once and
// id-data, message-digest exactly once, signing-time well-formed and signed,
// signing-certificate-v2 / signing-certificate matching the signer's
// certificate when present), the message digest against the content
// (streamed: one pass over a file for all digest algorithms used), the
// signature over the signed attributes (or over the content when there are
// none), the algorithm policy (crypto/algorithms.h), the certificate path,
// revocation, key usage and validity (crypto/path.h).
//
// Usage:
//   auto store = TrustStore::Create(anchors, untrusted, crls, options);
//   auto verifier = Verifier::Create(std::move(*store));
//   auto report = verifier->VerifyFile("doc.pdf", der, std::nullopt);
#ifndef SEALPOST_CRYPTO_VERIFY_H_
#define SEALPOST_CRYPTO_VERIFY_H_

#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/path.h"
#include "crypto/report.h"

namespace sealpost::crypto {

// Where the trust comes from, as files (PEM or DER, several per file).
struct TrustFiles {
  std::vector<std::string> anchors;    // at least one
  std::vector<std::string> untrusted;  // intermediates offered for path building
  std::vector<std::string> crls;
};

// Loads the files and builds a TrustStore. NotFound naming the path for an
// unreadable file, DataError naming it for one without certificates/CRLs,
// InvalidArgument if no anchor file is given.
Result<TrustStore> LoadTrustStore(const TrustFiles& files, const TrustOptions& options);

// Accepts a signature file as DER, or PEM ("-----BEGIN CMS-----",
// "PKCS7", "SIGNED MESSAGE"); returns the DER. DataError naming `source`
// when it is neither.
Result<std::string> DecodeSignature(std::string_view data, std::string_view source);

class Verifier {
 public:
  // Takes a prepared trust context; it is reused by every call.
  static Result<Verifier> Create(TrustStore trust);

  // Verifies a detached signature `cms_der` over the file at `content_path`
  // (read once, streamed, constant memory). `at` is the validation time
  // (default: now). Errors (not reports): DataError if `cms_der` is not a
  // CMS SignedData, is truncated, has no SignerInfo, or carries embedded
  // content (not a detached signature); NotFound if the file cannot be read.
  // Thread-safe: a const Verifier may be used from several threads.
  Result<Report> VerifyFile(const std::string& content_path, std::string_view cms_der,
                            std::optional<std::time_t> at = std::nullopt) const;

  // The same over content held in memory.
  Result<Report> VerifyBytes(std::string_view content, std::string_view cms_der,
                             std::optional<std::time_t> at = std::nullopt) const;

  // Verifies a SignedData that carries its content (encapsulated, e.g. the
  // RFC 4134 samples). DataError if it has no embedded content.
  Result<Report> VerifyEmbedded(std::string_view cms_der,
                                std::optional<std::time_t> at = std::nullopt) const;

  const TrustStore& trust() const { return trust_; }

 private:
  explicit Verifier(TrustStore trust) : trust_(std::move(trust)) {}
  TrustStore trust_;
};

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_VERIFY_H_
