// S/MIME signed mail (RFC 8551, RFC 1847): the message that carries a bundle
// to a union without an appliance. See docs/email.md.
//
//   multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256
//     1. multipart/mixed           <- the signed entity, in canonical (CRLF) form
//          text/plain; charset=UTF-8 (base64)   the Vietnamese + English text
//          application/vnd.etsi.asic-s+zip (base64)  the bundle
//     2. application/pkcs7-signature; name=smime.p7s (base64)
//        a detached CMS SignedData (CAdES B-B, crypto/cades_sign.h) over the
//        exact bytes of part 1, made through the Signer
//
// Every line of the result ends in CRLF and is at most 78 characters; all
// bodies are base64, so no transfer can change the signed bytes.
//
// Thread-safety: reentrant; a Signer is used by one call at a time.
#ifndef SEALPOST_CRYPTO_SMIME_H_
#define SEALPOST_CRYPTO_SMIME_H_

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/cades_sign.h"
#include "crypto/signer.h"

namespace sealpost::crypto {

// True for an address we are willing to put in a header: local@domain, ASCII
// letters, digits and !#$%&'*+-/=?^_`{|}~. in the local part, a dotted
// domain of letters, digits and '-'; at most 254 bytes.
bool IsMailAddress(std::string_view address);

// The seal certificate may sign mail for `address`: it carries `address` as
// an rfc822Name subjectAltName (compared case-insensitively) and an extended
// key usage that includes emailProtection. kInvalidArgument naming what is
// missing.
Status CheckMailSigningCertificate(X509* cert, std::string_view address);

// RFC 2047 "B" encoded-words for a UTF-8 header value (any length; words of
// at most 75 characters, folded with CRLF SP, never splitting a UTF-8
// sequence). ASCII text without controls is returned as it is.
std::string EncodeHeaderText(std::string_view utf8);

// Every line ending (LF, CR, CRLF) as CRLF.
std::string CanonicalCrlf(std::string_view text);

// What a document mail says. Strings are UTF-8.
struct DocumentMail {
  std::string from;        // the union's address (the seal's rfc822Name)
  std::string from_name;   // the union's name; may be empty
  std::vector<std::string> to;  // at least one
  std::string document_id;
  std::string type;        // document type as the registry names it
  std::string subject;     // the document's subject
  std::string reference;   // reference number; may be empty
  std::string issuer;      // the issuing union (name or id)
  std::string issued_at;   // RFC 3339
  std::string verify_url;  // the verification desk; may be empty
  std::string bundle;      // the .asics bytes
  std::time_t date = 0;    // Date header; 0: now
  std::string message_id;  // without <>; empty: <random@domain of from>
};

// The bilingual text/plain body (LF line ends; UTF-8).
std::string DocumentMailText(const DocumentMail& mail);
// The Subject header's text (UTF-8, before encoding).
std::string DocumentMailSubject(const DocumentMail& mail);

struct SignedMail {
  std::string message;     // the whole message, headers first, CRLF lines
  std::string message_id;  // as in the Message-ID header, without <>
};

// Builds and signs the message with `key` (whose certificate must pass
// CheckMailSigningCertificate for mail.from). kInvalidArgument for a bad
// address, an empty bundle or recipient list, or an unfit certificate;
// the Signer's errors unchanged.
Result<SignedMail> BuildDocumentMail(Signer& signer, const KeyRef& key, const DocumentMail& mail,
                                     const CadesSignOptions& opts = {});

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_SMIME_H_
