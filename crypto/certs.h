// Loading certificates and CRLs from files, PEM or DER, one or many.
#ifndef SEALPOST_CRYPTO_CERTS_H_
#define SEALPOST_CRYPTO_CERTS_H_

#include <string>
#include <string_view>

#include "base/openssl.h"
#include "base/status.h"

namespace sealpost::crypto {

// All certificates in `data` (PEM with one or more CERTIFICATE blocks, or one
// DER certificate). DataError if there is none or the data is malformed;
// `source` names the input in messages.
Result<X509StackPtr> ParseCertificates(std::string_view data, std::string_view source);
Result<X509StackPtr> LoadCertificates(const std::string& path);

// All CRLs in `data` (PEM X509 CRL blocks or one DER CRL). Vietnamese CAs
// serve some CRLs as PEM: both are read.
Result<X509CrlStackPtr> ParseCrls(std::string_view data, std::string_view source);
Result<X509CrlStackPtr> LoadCrls(const std::string& path);

// One certificate from PEM or DER; DataError if not exactly one is found.
Result<X509Ptr> LoadCertificate(const std::string& path);

// Subject/issuer as one UTF-8 line (RFC 2253 order reversed for reading:
// "CN=Nguyễn Thị Duyên, O=Công đoàn Bãi Cháy, C=VN").
std::string NameToUtf8(const X509_NAME* name);
// The text of an ASN1_STRING as UTF-8 ("" if it cannot be converted).
std::string Asn1StringToUtf8(const ASN1_STRING* s);
// Serial number as upper-case hex.
std::string SerialHex(const X509* cert);
// Common name (UTF-8) or, failing that, the whole subject line.
std::string DisplayName(const X509* cert);

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_CERTS_H_
