// sealpost-signer's server: holds the token (pkcs11/), listens on a Unix
// socket, answers protocol.h requests from allowed uids, checks signed
// attributes (attributes.h) and journals every signature. Internal to the
// sealpost-signer executable; see docs/signer.md for the operator's view.
#ifndef SEALPOST_DAEMON_SIGNER_SERVER_H_
#define SEALPOST_DAEMON_SIGNER_SERVER_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/lang.h"
#include "base/status.h"

namespace sealpost::signer {

struct ServerOptions {
  std::vector<std::string> keys;      // --key URI (at least one), all on one token
  std::string socket_path;            // --socket
  std::optional<std::string> pin_file;  // --pin-file
  std::optional<std::string> journal;   // --journal (append-only JSON lines)
  std::vector<uid_t> allowed_uids;    // --allow-uid; empty: only our own uid
  std::chrono::milliseconds call_timeout = std::chrono::seconds(10);  // --call-timeout
  std::chrono::seconds max_skew = std::chrono::seconds(300);          // --max-skew
  Lang lang = Lang::kEn;
};

// Exit statuses of sealpost-signer (also in docs/signer.md). kExitRefused
// must be in the unit's RestartPreventExitStatus=: restarting would try the
// PIN again.
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;
inline constexpr int kExitHung = 69;      // a token call did not answer in time
inline constexpr int kExitRefused = 77;   // PIN refused/locked, module not allowed

// Runs until SIGTERM/SIGINT (returns kExitOk) or a fatal condition (returns
// or _exit()s with the status above, after logging why). Logs go to stderr.
int RunServer(const ServerOptions& opts);

}  // namespace sealpost::signer

#endif  // SEALPOST_DAEMON_SIGNER_SERVER_H_
