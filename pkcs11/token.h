// A logged-in PKCS#11 token, and the listing of modules/slots/tokens. The
// full API behind OpenTokenSigner (pkcs11/open.h), for the `token` commands.
//
// Every operation runs on the module's own thread and is bounded by
// OpenOptions::call_timeout; when one does not answer in time it fails with
// kUnavailable ("token unavailable: <operation> did not answer within N s")
// and the module stays unusable in this process (see TokenCallAbandoned()).
// When the token was removed or reset (CKR_DEVICE_REMOVED, ...), the
// operation fails with kUnavailable and the next one rebuilds the libp11
// context and logs in again with the PIN already given.
#ifndef SEALPOST_PKCS11_TOKEN_H_
#define SEALPOST_PKCS11_TOKEN_H_

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/lang.h"
#include "base/openssl.h"
#include "base/status.h"
#include "crypto/signer.h"
#include "pkcs11/open.h"

namespace sealpost::pkcs11 {

struct TokenInfo {
  std::string label, manufacturer, model, serial;
  unsigned long flags = 0;  // CK_TOKEN_INFO.flags, read fresh from the module
  std::string uri;          // "pkcs11:...token=...?module-path=..."
};
struct SlotInfo {
  unsigned long slot_id = 0;
  std::string description, manufacturer;
  bool token_present = false;
  bool token_initialized = false;
  TokenInfo token;  // valid if token_present
};
struct ModuleListing {
  std::string path;  // real path
  std::string manufacturer, description;
  std::vector<SlotInfo> slots;
};

// Names of the CKF_* token flags set in `flags`, e.g. "login-required,rng,...".
std::string TokenFlagNames(unsigned long flags);

// Lists one module's slots and tokens, no login. `module_path` is checked
// against the allowlist.
Result<ModuleListing> ListModule(const std::string& module_path, const OpenOptions& opts);

struct ObjectInfo {
  enum class Kind { kPrivateKey, kPublicKey, kCertificate };
  Kind kind;
  std::string label;
  std::string id;         // raw bytes
  std::string algorithm;  // "RSA-2048", "EC P-256", "" if unknown
  std::string subject;    // certificates: UTF-8 one-line subject
  std::string uri;        // selects exactly this object
};

class Token {
 public:
  // Loads the allowlisted module named by `uri`, selects the one token the
  // URI's token attributes match (never by slot index alone), obtains the PIN
  // (pkcs11/pin.h) and logs in once, after reading fresh token flags:
  // CKF_USER_PIN_LOCKED / FINAL_TRY refuse login without calling C_Login;
  // COUNT_LOW adds a warning. A PIN the token rejected is never retried.
  // Errors: InvalidArgument (URI), PermissionDenied (module not allowed, PIN
  // wrong/locked/final try), NotFound (no such token, unreadable PIN file),
  // Unavailable (module failed, token absent, timeout).
  static Result<std::unique_ptr<Token>> Open(const std::string& uri, const OpenOptions& opts);
  ~Token();
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

  const std::string& label() const;
  const std::string& module_path() const;

  // Keys and certificates on the token, each with a URI selecting it.
  Result<std::vector<ObjectInfo>> ListObjects();

  // `key` is a PKCS#11 URI naming a private key on this token (object= and/or
  // id=; token attributes, if present, must match this token). A URI with no
  // object/id is accepted when the token holds exactly one private key.
  // A software copy of the key's public key.
  Result<EvpPkeyPtr> PublicKey(const crypto::KeyRef& key);
  // The certificate stored with the key's CKA_ID. NotFound if none.
  Result<X509Ptr> Certificate(const crypto::KeyRef& key);
  // As crypto::Signer::Sign.
  Result<std::string> Sign(const crypto::KeyRef& key, crypto::DigestAlg alg,
                           std::string_view digest);
  // Stores `cert` on the token with the key's CKA_ID and label.
  // FailedPrecondition if its public key is not the key's, or if a different
  // certificate already has that id; OK without change if the same one does.
  Status StoreCertificate(const crypto::KeyRef& key, X509* cert);

  // Warnings gathered so far (e.g. PIN count low), in the options' language;
  // each is also logged. Clears the list.
  std::vector<std::string> TakeWarnings();

  struct State;  // internal

 private:
  explicit Token(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace sealpost::pkcs11

#endif  // SEALPOST_PKCS11_TOKEN_H_
