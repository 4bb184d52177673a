// Signed delivery receipts and read notices (DESIGN.md "Exchange"; see
// docs/receipts.md).
//
// Each is a small canonical JSON document (keys sorted by bytes, no white
// space, only strings and one integer, the JSON string escaping of
// base/json.h) and a detached CAdES B-B CMS SignedData over those exact
// bytes, made by the recipient union's seal through crypto::Signer. In the
// archive they are the files receipt.json + receipt.json.p7s (or
// notice.json + notice.json.p7s).
//
// Delivery receipt (recipient -> sender, answer to a delivered bundle):
//   {"checkpoint":"<C2SP checkpoint body of the recipient's archive>",
//    "checkpoint_p7s":"<base64 of the detached CMS of the seal over it>",
//    "content_sha256":"<64 lower-case hex>","document_id":"...",
//    "received_at":"YYYY-MM-DDTHH:MM:SSZ","recipient":"<union id>",
//    "type":"delivery-receipt","version":1}
// Read notice (recipient -> sender, when a clerk of the recipient opened it):
//   {"document_id":"...","read_at":"YYYY-MM-DDTHH:MM:SSZ",
//    "reader_role":"clerk","recipient":"<union id>","type":"read-notice",
//    "version":1}
//
// Parsing is strict: the input must be exactly the canonical serialisation of
// what it parses to (so there is one byte string per receipt, and a signed
// receipt cannot be re-encoded), within the limits below. Errors name the
// source and the field.
//
// Idempotence: the recipient signs a receipt once per delivered document,
// stores it, and answers every redelivery with the stored bytes
// (IssueDeliveryReceipt with `stored` set returns it unchanged). A new
// signature would carry a new signing time and be a different receipt.
//
// Thread-safety: all functions are reentrant; a Signer is used by one call at
// a time.
#ifndef SEALPOST_CRYPTO_RECEIPT_H_
#define SEALPOST_CRYPTO_RECEIPT_H_

#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/signer.h"

namespace sealpost::crypto {

inline constexpr size_t kReceiptMaxBytes = 64 * 1024;         // receipt.json
inline constexpr size_t kReceiptSignatureMaxBytes = 64 * 1024;  // receipt.json.p7s
inline constexpr size_t kReceiptMaxIdBytes = 512;             // document id, union id
inline constexpr size_t kReceiptMaxRoleBytes = 64;
inline constexpr size_t kReceiptCheckpointSignatureMaxBytes = 16 * 1024;
inline constexpr int kReceiptVersion = 1;

struct DeliveryReceipt {
  std::string document_id;     // one line of UTF-8, 1..512 bytes
  std::string content_sha256;  // 64 lower-case hex digits
  std::string recipient;       // the receipting union's id, 1..512 bytes
  std::time_t received_at = 0;  // whole seconds, 1970..9999
  std::string checkpoint;      // C2SP checkpoint body (crypto/checkpoint.h)
  std::string checkpoint_signature;  // DER detached CMS over `checkpoint`
  friend bool operator==(const DeliveryReceipt&, const DeliveryReceipt&) = default;
};

struct ReadNotice {
  std::string document_id;
  std::string recipient;    // the reading union's id
  std::string reader_role;  // [a-z][a-z0-9_-]*, 1..64 bytes ("clerk", "officer", ...)
  std::time_t read_at = 0;
  friend bool operator==(const ReadNotice&, const ReadNotice&) = default;
};

// The two files that travel and are archived.
struct SignedReceipt {
  std::string json;       // the canonical bytes
  std::string signature;  // DER detached CMS over `json`
  friend bool operator==(const SignedReceipt&, const SignedReceipt&) = default;
};

// Canonical bytes. InvalidArgument naming the field if a value is out of its
// range (the result would not parse back to the same value), including a
// checkpoint that does not parse.
Result<std::string> SerializeDeliveryReceipt(const DeliveryReceipt& r);
Result<std::string> SerializeReadNotice(const ReadNotice& n);

// Strict parsers. DataError naming `source` and what is wrong: not JSON,
// over the limits, nesting, duplicate/unknown/missing keys, wrong type or
// version, a value out of range, a checkpoint that does not parse, or bytes
// that are not the canonical form.
Result<DeliveryReceipt> ParseDeliveryReceipt(std::string_view json, std::string_view source);
Result<ReadNotice> ParseReadNotice(std::string_view json, std::string_view source);

// Signs a new receipt with the seal `key` (signing-time = received_at), or,
// when `stored` is given, returns it unchanged after checking that it is a
// receipt for the same document, content and recipient
// (FailedPrecondition otherwise, nothing signed). Errors: those of
// SerializeDeliveryReceipt and crypto::BuildDetachedSignature.
Result<SignedReceipt> IssueDeliveryReceipt(Signer& signer, const KeyRef& key,
                                           const DeliveryReceipt& receipt,
                                           const std::optional<SignedReceipt>& stored);

// Signs a read notice (signing-time = read_at).
Result<SignedReceipt> SignReadNotice(Signer& signer, const KeyRef& key, const ReadNotice& notice);

// What the sender expects of a receipt. `seal` is the certificate of the
// recipient union's seal (from the policy registry), borrowed. Its path is
// NOT validated here: the caller has established that it is that union's
// seal.
struct ReceiptExpectation {
  std::string document_id;
  std::string content_sha256;  // lower-case hex (ignored for read notices)
  std::string recipient;       // union id the receipt must name
  X509* seal = nullptr;
};

// Verifies a delivery receipt, in this order, each failure with its reason:
//  1. the JSON parses strictly                                  (DataError)
//  2. the signature is a detached CMS SignedData with exactly one
//     SignerInfo                                                 (DataError)
//  3. it verifies over the exact JSON bytes with `seal`'s key and its
//     signer is `seal` itself ("signed by ..., not by the seal of ...")
//                                                       (FailedPrecondition)
//  4. document id, content hash and recipient equal the expectation
//     ("names document X, expected Y")                  (FailedPrecondition)
//  5. the embedded checkpoint's signature verifies with the same seal
//                                                       (FailedPrecondition)
// Returns the parsed receipt.
Result<DeliveryReceipt> VerifyDeliveryReceipt(const SignedReceipt& signed_receipt,
                                              const ReceiptExpectation& expected,
                                              std::string_view source);

// The same for a read notice (steps 1-4; document id and recipient).
Result<ReadNotice> VerifyReadNotice(const SignedReceipt& signed_notice,
                                    const ReceiptExpectation& expected, std::string_view source);

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_RECEIPT_H_
