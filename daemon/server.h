// sealpostd's HTTPS front: two PoCo HTTPServers on SecureServerSockets.
//
//  - the peer listener (other appliances): mutual TLS, a client certificate
//    is required (VERIFY_STRICT, TLS >= 1.2, PoCo's extended host-name check
//    off) and must be the tls_identity of a union in the policy registry,
//    otherwise 403;
//  - the user listener (people, tools, the public verification desk): TLS,
//    client certificates optional; an API token (Authorization: Bearer) or
//    a configured client certificate gives a role; every route names the
//    roles it admits.
//
// Routes, limits and errors: docs/api/openapi.yaml and docs/daemon.md.
//
// Usage (daemon/main.cc):
//   auto server = Server::Create(config);   // loads policy, trust, tokens; binds
//   server->Start();                        // both listeners accept
//   ... wait for SIGTERM ...
//   server->Stop();                         // in-flight requests finish
#ifndef SEALPOST_DAEMON_SERVER_H_
#define SEALPOST_DAEMON_SERVER_H_

#include <memory>

#include "base/status.h"
#include "daemon/config.h"

namespace sealpost::daemon {

class Server {
 public:
  // Loads the policy files, the verification desk's trust anchors and CRLs,
  // opens the API token database (<state_dir>/api-tokens.sqlite), creates
  // <state_dir>/spool, builds both TLS contexts and binds both sockets (port
  // 0: a free one). Errors name the file or address that failed. Calls
  // Poco::Net::initializeSSL() once per process.
  [[nodiscard]] static Result<std::unique_ptr<Server>> Create(const Config& config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts accepting on both listeners.
  [[nodiscard]] Status Start();
  int peer_port() const;
  int user_port() const;
  // Stops accepting, lets requests in progress finish, closes idle
  // keep-alive connections, and waits for every worker thread. Idempotent.
  void Stop();

  struct State;  // defined in server.cc

 private:
  explicit Server(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_SERVER_H_
