// CAdES baseline B-B signing: detached CMS SignedData (RFC 5652), DER, with
// the signed attributes content-type, message-digest, signing-time and
// signing-certificate-v2, and nothing else. See docs/signing.md.
//
// The private key never comes near this code: the CMS structure is built
// around the signer's certificate and public key, and the DER SET OF signed
// attributes goes to Signer::SignSignedAttributes() (which digests it and
// calls Signer::Sign() unless the signer checks the attributes itself).
// Every SignerInfo built here is re-read from the encoded output and its
// signature verified with the certificate's key before it is returned, so a
// broken Signer (wrong key, wrong padding) is an error, never a file. (A new
// signature is re-read with the DER reader of this file, checking that the
// signed attributes in the file are the bytes signed; a merged one with
// OpenSSL's decoder and CMS_SignerInfo_verify.)
//
// Co-signing: AppendSignature() adds one SignerInfo to an existing detached
// signature over the same content. The existing SignerInfos and certificates
// are copied byte for byte (the outer SignedData is re-assembled at the DER
// level, never re-encoded by OpenSSL), so signatures made by other tools keep
// verifying.
//
// Thread-safety: the functions are reentrant; a Signer is used by one call
// at a time.
#ifndef SEALPOST_CRYPTO_CADES_SIGN_H_
#define SEALPOST_CRYPTO_CADES_SIGN_H_

#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/signer.h"

namespace sealpost::crypto {

// The digest used with a signer key: SHA-256 for RSA (every size) and P-256,
// SHA-384 for P-384, SHA-512 for P-521 (the hash matches the curve's
// strength, as RFC 5753/NIST SP 800-57 pair them). kInvalidArgument for any
// other key type (Ed25519, DSA, other curves).
Result<DigestAlg> DigestAlgForKey(const EVP_PKEY* public_key);

struct CadesSignOptions {
  // Certificates embedded besides the signer's (intermediate CAs), borrowed
  // for the duration of the call. Duplicates (and the signer's own
  // certificate) are embedded once.
  std::vector<X509*> chain;
  // Value of the signing-time attribute; the current time if unset. UTCTime
  // for 1950..2049, GeneralizedTime from 2050 on (RFC 5652, 11.3).
  std::optional<std::time_t> signing_time;
};

// Builds a detached SignedData with one SignerInfo for `key` over content
// whose digest under `alg` is `content_digest` (e.g. from DigestFile).
// `cert` is the key's certificate (borrowed). Returns the DER encoding.
// Errors: kInvalidArgument (digest length, certificate unusable for signing:
// key usage without digitalSignature/nonRepudiation, outside its validity
// period, unsupported key type), the Signer's own errors unchanged, and
// kInternal if the signature the Signer returned does not verify.
Result<std::string> BuildDetachedSignature(Signer& signer, const KeyRef& key, X509* cert,
                                           DigestAlg alg, std::string_view content_digest,
                                           const CadesSignOptions& opts);

// Signs the file at `content_path`: fetches the key's certificate, chooses
// the digest with DigestAlgForKey, digests the file in one streaming pass
// (constant memory) and calls BuildDetachedSignature. kNotFound if the file
// cannot be read.
Result<std::string> SignFile(Signer& signer, const KeyRef& key, const std::string& content_path,
                             const CadesSignOptions& opts);

// What one SignerInfo of an existing signature says it signed.
struct SignedDigest {
  const EVP_MD* md = nullptr;    // static OpenSSL digest, never freed
  std::string digest_name;       // "SHA256"
  std::string message_digest;    // raw value of the message-digest attribute
  std::string signer;            // display name of the signer (UTF-8), or "signer #N"
  X509Ptr cert;                  // the signer's certificate if embedded, else null
};

// An existing detached signature, parsed and checked enough to append to.
class ExistingSignature {
 public:
  // kDataError (naming `source`) if `der` is not a DER/BER CMS SignedData,
  // carries its content (not detached), has a content type other than
  // id-data, has no SignerInfo, or has a SignerInfo without signed
  // attributes / message-digest / a known digest algorithm.
  static Result<ExistingSignature> Parse(std::string der, std::string source);

  const std::string& der() const { return der_; }
  const std::string& source() const { return source_; }
  const std::vector<SignedDigest>& signers() const { return signers_; }

  // The distinct digest algorithms the signers used, in first-use order.
  std::vector<const EVP_MD*> DigestMds() const;

  // Checks that every signer signed the content whose digests are
  // `digests[i]` under `mds[i]` (every md of DigestMds() must be in `mds`).
  // kDataError naming the first signer that does not match and
  // `content_name` otherwise.
  Status CheckCovers(const std::vector<const EVP_MD*>& mds, const std::vector<std::string>& digests,
                     std::string_view content_name) const;

  // kFailedPrecondition if `cert` already signed (same certificate).
  Status CheckNotSignedBy(X509* cert) const;

 private:
  ExistingSignature() = default;
  std::string der_;
  std::string source_;
  std::vector<SignedDigest> signers_;
};

// Adds the SignerInfos, certificates and digest algorithms of `addition`
// (a detached SignedData, e.g. from BuildDetachedSignature) to `existing`.
// The SignerInfos, certificates and CRLs of both are copied unchanged;
// certificates present in both are kept once; the SETs are put in DER order.
// kDataError (naming `existing_source`) if `existing` is not a SignedData
// this function can take apart or the content types differ.
Result<std::string> MergeSignedData(std::string_view existing, std::string_view existing_source,
                                    std::string_view addition);

// The whole co-signing step: checks `existing` covers the file at
// `content_path` (one streaming pass over the file computing every digest
// needed), refuses a second signature by the same certificate, signs, merges,
// and re-checks the merged output. Errors as above; kDataError if
// the existing signature is over other content.
Result<std::string> AppendSignatureForFile(Signer& signer, const KeyRef& key,
                                           const ExistingSignature& existing,
                                           const std::string& content_path,
                                           const CadesSignOptions& opts);

// Lower half of AppendSignatureForFile for callers that already hold the
// digests and the certificate (the CLI checks the file before asking for a
// PIN): `content_digest` under `alg` must have been computed from the same
// bytes that `existing` was checked against.
Result<std::string> AppendSignature(Signer& signer, const KeyRef& key, X509* cert,
                                    DigestAlg alg, std::string_view content_digest,
                                    const ExistingSignature& existing,
                                    const CadesSignOptions& opts);

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_CADES_SIGN_H_
