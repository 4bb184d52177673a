// Opening a token-backed Signer from a PKCS#11 URI: the one entry point the
// CLI (and later the signer process) uses. Implemented in pkcs11/open.cc.
#ifndef SEALPOST_PKCS11_OPEN_H_
#define SEALPOST_PKCS11_OPEN_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "base/lang.h"
#include "base/status.h"
#include "crypto/signer.h"

namespace sealpost::pkcs11 {

struct OpenOptions {
  // --pin-file. PIN sources, first that applies: this file; the URI's
  // pin-source=file:...; the systemd credential in $CREDENTIALS_DIRECTORY;
  // a prompt without echo on the terminal (if `interactive`).
  std::optional<std::string> pin_file;
  bool interactive = true;
  // Every token call is bounded by this; a call that does not return in time
  // makes the operation fail with kUnavailable ("token unavailable").
  std::chrono::milliseconds call_timeout = std::chrono::seconds(20);
  // Language of the messages a person reads (errors, warnings, the prompt).
  Lang lang = Lang::kEn;
  // Open read/write sessions (needed only to store objects, e.g. a
  // certificate); signing needs none.
  bool read_write = false;
};

// Loads the module named by `key_uri` (allowlisted real path only), finds the
// token, logs in once, and returns a Signer. The Signer's Sign/Certificate
// take KeyRef{key_uri} (or another key URI on the same token).
// Errors: kInvalidArgument (bad URI), kPermissionDenied (module not allowed,
// wrong/locked PIN), kNotFound (no such token/key), kUnavailable (token
// absent or not answering).
Result<std::unique_ptr<crypto::Signer>> OpenTokenSigner(const std::string& key_uri,
                                                        const OpenOptions& opts);

// True once a token call in this process did not answer within its bound and
// was abandoned. Its thread cannot be joined: a short-lived process should
// flush its output and leave with _exit()/quick_exit() instead of running
// destructors and atexit handlers that may wait on the module.
bool TokenCallAbandoned();

}  // namespace sealpost::pkcs11

#endif  // SEALPOST_PKCS11_OPEN_H_
