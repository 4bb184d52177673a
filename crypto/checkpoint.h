// Checkpoints of a Merkle log: the body in the C2SP tlog-checkpoint format
// (https://c2sp.org/tlog-checkpoint) and its signature, a detached CMS
// SignedData (CAdES B-B, DER) made by the seal key through crypto::Signer.
//
// Body, byte for byte (every line ends in "\n", no "\r", no empty line):
//   <origin>\n                 unique name of the log, e.g. "cd-baichay.vn/archive"
//   <tree size>\n              ASCII decimal, no sign, no leading zeros
//   <root hash>\n              standard base64 (with padding) of the 32-byte root
//   [<extension line>\n ...]   optional, each non-empty
//
// The C2SP signed-note signature lines are NOT used: the signature travels
// beside the body as CMS (the body is the signed content), so stock
// `openssl cms -verify` can check it.
//
// Thread-safety: all functions are reentrant.
#ifndef SEALPOST_CRYPTO_CHECKPOINT_H_
#define SEALPOST_CRYPTO_CHECKPOINT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/merkle.h"
#include "crypto/signer.h"

namespace sealpost::crypto {

// Limits of the strict parser (a checkpoint comes from peers, too).
inline constexpr size_t kCheckpointMaxBytes = 16 * 1024;
inline constexpr size_t kCheckpointMaxExtensions = 32;

struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  merkle::Hash root{};
  std::vector<std::string> extensions;  // without their "\n"

  friend bool operator==(const Checkpoint&, const Checkpoint&) = default;
};

// The body bytes. Errors: InvalidArgument if the origin or an extension is
// empty, contains a control character (including "\n", "\r") or is not
// valid UTF-8, or there are too many extensions — i.e. if the result would
// not parse back to `cp`.
Result<std::string> SerializeCheckpoint(const Checkpoint& cp);

// Strict parse of a body. DataError naming `source` and the line on any
// deviation: missing/extra/empty lines, missing final "\n", "\r", leading
// zeros, overflow, non-canonical base64, a root that is not 32 bytes,
// invalid UTF-8, control characters, over the limits above.
Result<Checkpoint> ParseCheckpoint(std::string_view body, std::string_view source);

// Signs `body` (the exact bytes of a serialized checkpoint) with `key`:
// a detached CAdES B-B SignedData in DER, the seal certificate embedded.
// Errors: those of crypto::BuildDetachedSignature and the Signer.
Result<std::string> SignCheckpoint(Signer& signer, const KeyRef& key, std::string_view body);

// Checks that `signature_der` is a detached CMS SignedData with exactly one
// SignerInfo, whose signature over `body` verifies with the public key of
// `seal` (borrowed) and whose signer is `seal` itself (same certificate, not
// merely the same name). The certificate path of `seal` is NOT validated
// here (that is the caller's business, e.g. crypto/verify.h).
// Errors: DataError (not CMS / not detached / several signers, naming
// `source`), FailedPrecondition (bad signature, signed by another
// certificate, body altered).
Status VerifyCheckpointSignature(std::string_view body, std::string_view signature_der,
                                 X509* seal, std::string_view source);

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_CHECKPOINT_H_
