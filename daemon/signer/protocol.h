// The wire protocol between sealpostd (daemon::RemoteSigner) and
// sealpost-signer, over a Unix stream socket. See
// docs/decisions/0006-processes.md.
//
// A frame is a 4-byte big-endian length followed by that many bytes of
// payload; 0 < length <= kMaxFrame. A payload is
//   version (1 byte, kProtocolVersion) | type (1 byte) | field count (1 byte)
//   | fields: each a 4-byte big-endian length and that many bytes
// and nothing after the last field. Each message type has a fixed field
// layout (or, for the status answer, a bounded list of key entries) and a
// size limit per field; integers are 8-byte big-endian fields. Decoding is
// strict: anything else (unknown version or type, wrong field count, a field
// too long or of the wrong size, trailing bytes) is a kDataError naming what
// was wrong and where. The server treats any framing or decoding error as
// fatal for the connection (it answers once with an error, then closes).
//
// Requests and answers are named in pairs:
//   StatusRequest       -> StatusAnswer       token present? logged in? keys
//   CertificateRequest  -> CertificateAnswer  the key's certificate (DER)
//   SignAttributesRequest -> SignatureAnswer  sign DER signed attributes
//   SignDigestRequest   -> (always refused)   a bare digest; kept so that a
//                                             refusal is explicit
// Any request may get an ErrorAnswer instead.
//
// Thread-safety: pure functions, reentrant.
#ifndef SEALPOST_DAEMON_SIGNER_PROTOCOL_H_
#define SEALPOST_DAEMON_SIGNER_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"
#include "crypto/signer.h"

namespace sealpost::signer {

inline constexpr uint8_t kProtocolVersion = 1;
// Largest payload of one frame (the length prefix not counted).
inline constexpr size_t kMaxFrame = 64 * 1024;
// Limits per field.
inline constexpr size_t kMaxKeyRef = 2048;          // a PKCS#11 URI
inline constexpr size_t kMaxSignedAttributes = 8192;
inline constexpr size_t kMaxCertificate = 32 * 1024;
inline constexpr size_t kMaxSignature = 2048;       // RSA-16384 fits
inline constexpr size_t kMaxMessage = 1024;         // error / detail text
inline constexpr size_t kMaxStatusKeys = 16;

enum class MessageType : uint8_t {
  kStatusRequest = 0x01,
  kCertificateRequest = 0x02,
  kSignAttributesRequest = 0x03,
  kSignDigestRequest = 0x04,
  kErrorAnswer = 0x80,
  kStatusAnswer = 0x81,
  kCertificateAnswer = 0x82,
  kSignatureAnswer = 0x83,
};

struct StatusRequest {};
struct CertificateRequest {
  std::string key;
};
// `payload` is the DER of the signed attributes (attributes == true) or a
// bare digest (attributes == false, SignDigestRequest).
struct SignRequest {
  std::string key;
  crypto::DigestAlg alg = crypto::DigestAlg::kSha256;
  std::string payload;
  bool attributes = true;
};
using Request = std::variant<StatusRequest, CertificateRequest, SignRequest>;

struct KeyStatus {
  std::string key;           // the key URI as configured
  bool certificate = false;  // certificate known (read from the token)
  int64_t not_after = 0;     // certificate expiry, seconds since the epoch
};
struct StatusAnswer {
  bool token_present = false;
  bool logged_in = false;
  std::string detail;  // one line, English; empty when all is well
  std::vector<KeyStatus> keys;
};
struct CertificateAnswer {
  std::string der;
};
struct SignatureAnswer {
  std::string signature;
};
struct ErrorAnswer {
  Code code = Code::kInternal;
  std::string message;
};
using Answer = std::variant<ErrorAnswer, StatusAnswer, CertificateAnswer, SignatureAnswer>;

// Payload encoders. Fields longer than their limit are truncated (texts) or
// make the encoder return kInvalidArgument (binary fields).
Result<std::string> EncodeRequest(const Request& request);
Result<std::string> EncodeAnswer(const Answer& answer);

// Strict payload decoders (see the file comment). kDataError on any
// deviation; the message names the field.
Result<Request> DecodeRequest(std::string_view payload);
Result<Answer> DecodeAnswer(std::string_view payload);

// The frame for `payload`: 4-byte big-endian length + payload.
// REQUIRES: 0 < payload.size() <= kMaxFrame.
std::string Frame(std::string_view payload);

// Reads the 4-byte length prefix: kDataError if 0 or above kMaxFrame.
Result<size_t> DecodeFrameLength(std::string_view prefix4);

}  // namespace sealpost::signer

#endif  // SEALPOST_DAEMON_SIGNER_PROTOCOL_H_
