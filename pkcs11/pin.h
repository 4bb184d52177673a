// Where a token PIN comes from. Never from argv or an environment variable.
#ifndef SEALPOST_PKCS11_PIN_H_
#define SEALPOST_PKCS11_PIN_H_

#include <optional>
#include <string>

#include "base/lang.h"
#include "base/secret.h"
#include "base/status.h"

namespace sealpost::pkcs11 {

// Name of the systemd credential holding the PIN
// ($CREDENTIALS_DIRECTORY/sealpost-token-pin, e.g. LoadCredential= or
// LoadCredentialEncrypted=sealpost-token-pin:...).
inline constexpr char kPinCredentialName[] = "sealpost-token-pin";

struct PinRequest {
  std::optional<std::string> pin_file;    // --pin-file
  std::optional<std::string> pin_source;  // the URI's pin-source ("file:/p", "file:///p", "/p")
  bool interactive = true;                // may prompt on /dev/tty
  std::string token_label;                // for the prompt
  Lang lang = Lang::kEn;
};

// First that applies: pin_file; pin_source; the systemd credential (when
// $CREDENTIALS_DIRECTORY is set and holds the file); a prompt without echo on
// /dev/tty (when `interactive`). One trailing LF or CRLF is removed.
// Errors: NotFound naming an unreadable file; InvalidArgument for an
// unsupported pin-source or when no source applies; DataError for an empty
// PIN. The PIN is never part of a message.
Result<SecretBytes> ObtainPin(const PinRequest& req);

}  // namespace sealpost::pkcs11

#endif  // SEALPOST_PKCS11_PIN_H_
