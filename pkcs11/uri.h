// PKCS#11 URIs (RFC 7512): parsing, matching helpers and formatting.
//
// Strict by design (the URI selects which key signs): every attribute may
// appear once; values are percent-decoded; characters outside the RFC's
// allowed set (spaces, raw non-ASCII bytes, '%' without two hex digits) are
// errors naming the attribute; textual attributes must decode to valid UTF-8;
// unknown attribute names are errors (a typo must not silently widen the
// match). `pin-value` is refused: a PIN never comes from a command line.
#ifndef SEALPOST_PKCS11_URI_H_
#define SEALPOST_PKCS11_URI_H_

#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "base/utf8.h"  // IsValidUtf8, used by URI and subject parsing

namespace sealpost::pkcs11 {

enum class ObjectType { kPrivate, kPublic, kCert, kSecretKey, kData };
std::string_view ObjectTypeName(ObjectType t);  // "private", "cert", ...

struct Uri {
  // Path attributes (all values percent-decoded; UTF-8 except `id`).
  std::optional<std::string> token;         // CKA token label, <= 32 bytes
  std::optional<std::string> manufacturer;  // token manufacturer
  std::optional<std::string> serial;        // token serial number
  std::optional<std::string> model;         // token model
  std::optional<std::string> object;        // CKA_LABEL
  std::optional<ObjectType> type;
  std::optional<std::string> id;            // CKA_ID, raw bytes
  std::optional<std::string> library_manufacturer;
  std::optional<std::string> library_description;
  std::optional<std::string> library_version;  // "M" or "M.N"
  std::optional<std::string> slot_description;
  std::optional<std::string> slot_manufacturer;
  std::optional<unsigned long> slot_id;
  // Query attributes.
  std::optional<std::string> module_path;  // absolute path
  std::optional<std::string> module_name;  // a module's file name without "lib"/".so"
  std::optional<std::string> pin_source;   // "file:/path" or "/path"

  // True when any token-selecting attribute (token, manufacturer, serial,
  // model, slot-*) is present.
  bool SelectsToken() const;
};

// Parses `text`. InvalidArgument on any error, the message naming the
// attribute and what is wrong ("PKCS#11 URI: attribute 'id': bad
// percent-encoding \"%4\""). Never echoes a pin-value.
Result<Uri> ParseUri(std::string_view text);

// Formats a URI: path attributes in RFC order, values percent-encoded
// (unreserved characters stay as they are). Round-trips through ParseUri.
std::string FormatUri(const Uri& uri);

// Percent-encodes one attribute value.
std::string PercentEncode(std::string_view value);

}  // namespace sealpost::pkcs11

#endif  // SEALPOST_PKCS11_URI_H_
