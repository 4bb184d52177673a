// What sealpost-signer is willing to sign: the DER SET OF signed attributes
// of a CAdES B-B SignerInfo (as crypto/cades_sign.cc builds it), checked
// before the key is used.
// Thread-safety: pure functions, reentrant.
#ifndef SEALPOST_DAEMON_SIGNER_ATTRIBUTES_H_
#define SEALPOST_DAEMON_SIGNER_ATTRIBUTES_H_

#include <chrono>
#include <ctime>
#include <string>
#include <string_view>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/signer.h"

namespace sealpost::signer {

struct SignedAttributes {
  std::string message_digest;         // raw value of the message-digest attribute
  std::time_t signing_time = 0;       // value of signing-time
  std::string signing_certificate_v2; // DER of the SigningCertificateV2 value
};

// Parses `der` strictly: a DER-encoded SET OF Attribute (re-encoding must give
// the same bytes) holding exactly content-type (id-data), message-digest
// (an OCTET STRING of the size of `alg`), signing-time (UTCTime or
// GeneralizedTime) and signing-certificate-v2, each once with one value, and
// nothing else. kDataError naming the first thing that is wrong.
Result<SignedAttributes> ParseSignedAttributes(std::string_view der, crypto::DigestAlg alg);

// Checks parsed attributes against the signer's own certificate `cert`
// (borrowed) and the time `now`: the signing-certificate-v2's first
// ESSCertIDv2 must name `cert`; signing-time must lie within `max_skew` of
// `now`. kPermissionDenied naming what was refused.
Status CheckSignedAttributes(const SignedAttributes& attrs, X509* cert, std::time_t now,
                             std::chrono::seconds max_skew);

}  // namespace sealpost::signer

#endif  // SEALPOST_DAEMON_SIGNER_ATTRIBUTES_H_
