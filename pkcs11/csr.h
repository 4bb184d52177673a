// Certificate signing requests signed by a token key (through the Signer
// interface: the private key never leaves the token).
#ifndef SEALPOST_PKCS11_CSR_H_
#define SEALPOST_PKCS11_CSR_H_

#include <optional>
#include <string>
#include <string_view>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/signer.h"

namespace sealpost::pkcs11 {

// Parses an OpenSSL-style one-line subject, UTF-8: "/CN=Nguyễn Thị Duyên/O=Công
// đoàn Bãi Cháy/C=VN" ("\/" and "\\" escape). Text attributes become
// UTF8String (countryName PrintableString, as X.520 requires). InvalidArgument
// naming the component on: no leading '/', a component without '=', an
// unknown attribute name, an empty value, invalid UTF-8.
Result<X509NamePtr> ParseSubject(std::string_view subject);

struct CsrRequest {
  X509_NAME* subject = nullptr;  // borrowed
  std::optional<std::string> email;  // adds subjectAltName rfc822Name in the extension request
};

// Builds a PKCS#10 request for `public_key`, signs it with `key` through
// `signer` (SHA-384 for P-384 and P-521 keys, else SHA-256; RSA PKCS#1 v1.5
// or ECDSA), and checks the result verifies under `public_key`.
// Errors: InvalidArgument (bad e-mail), FailedPrecondition (unsupported key
// type, self-check failed), and whatever signer.Sign returns.
Result<X509ReqPtr> MakeCsr(crypto::Signer& signer, const crypto::KeyRef& key, EVP_PKEY* public_key,
                           const CsrRequest& req);

}  // namespace sealpost::pkcs11

#endif  // SEALPOST_PKCS11_CSR_H_
