// Starts and stops real sealpostd processes for tests: a throwaway PKI (a
// TLS CA with the server's and peers' certificates, a document-signing CA
// for the verification desk), a policy whose registry knows one peer
// union, a configuration with ports chosen by the OS, and a NOTIFY_SOCKET
// of its own so the test sees READY=1 (with the ports) and STOPPING=1 the
// way systemd would.
//
//   auto d = DaemonHarness::Start();          // fails the test (nullptr) on error
//   std::string out;
//   RunCommand(d->Curl("/api/v1/health"), &out);
//   EXPECT_EQ(d->Terminate(), 0);
//
// Files (all under dir()): tls-ca.pem (trust this to reach either
// listener), server.pem/-key.pem, peer.pem/-key.pem (registered as the
// TLS identity of union kPeerUnion), stranger.pem/-key.pem (same CA, not
// registered), foreign.pem/-key.pem (another CA), sign-ca.pem (the
// verification desk's anchor), signer.pem/-key.pem (a document signer
// under it), policy.yaml, sealpostd.yaml, state/, sealpostd.log.
// With DaemonOptions::seal: a SoftHSM2 token holding the union's seal (P-256,
// certificate seal.pem under sign-ca.pem), a sealpost-signer process serving
// it (signer.sock, signer.log), `seal_key` in the configuration, the seal
// registered in the policy; and a seal for the peer union (software key:
// peer-seal.pem/-key.pem) registered too, so a test can build the peer's
// bundles in-process. The policy's `report` type lets the peer (grassroots)
// send to this union (its parent); an officer `chair` of this union
// (signer.pem) and the types `directive` (district -> children, chair +
// seal, reference "{seq}/{year}/CT-{union}") and `notice` (district ->
// children, seal only) let tests submit from this union.
#ifndef SEALPOST_TESTS_SUPPORT_DAEMON_HARNESS_H_
#define SEALPOST_TESTS_SUPPORT_DAEMON_HARNESS_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace sealpost::testing {

struct DaemonOptions {
  std::string union_id = "ldld-thu-nghiem";
  uint64_t max_body_bytes = 1u << 20;
  int read_timeout_seconds = 5;
  int keepalive_timeout_seconds = 5;
  int max_connections = 8;
  int max_queued = 16;
  bool user_client_ca = true;  // the user listener asks for (optional) client certificates
  std::string language = "en";
  // Extra client certificates of the user listener: "sha256: ..., role: R,
  // name: N" entries are added for user.pem (role `user_cert_role`) when set.
  std::string user_cert_role;
  // A seal on a SoftHSM2 token served by a sealpost-signer process (see above).
  bool seal = false;
  // > 0: WATCHDOG_USEC for sealpostd, as systemd sets it for WatchdogSec=.
  uint64_t watchdog_usec = 0;
  // Text added inside the peer union's flow mapping in policy.yaml, e.g.
  // ", webhook: \"https://127.0.0.1:1/h\", channels: [webhook]".
  std::string peer_union_extra;
  // Top-level YAML appended to sealpostd.yaml (e.g. a `webhook:` or
  // `delivery:` section).
  std::string config_extra;
  // With seal: max_size_bytes of the `notice` type (large-upload benches).
  uint64_t max_notice_bytes = 1u << 20;
  // With seal: the signer reaches the token through the fault-injecting
  // module (tests/fault_pkcs11; DaemonHarness::fault() controls it), whose
  // control file holds `fault_control` before the signer starts.
  bool fault_module = false;
  std::string fault_control;
  // sealpost-signer --call-timeout, seconds.
  int signer_call_timeout_seconds = 10;
  // The harness supervises the signer like its systemd unit (docs/signer.md:
  // Restart=on-failure, RestartPreventExitStatus=64 66 74 77): restarted
  // this long after it exits with any other status.
  int signer_restart_ms = 200;
  // Start() waits until the signer listens (and fails if it exits first);
  // false: it does not wait (a signer expected to stop, e.g. wrong PIN).
  bool wait_for_signer = true;
};

class DaemonHarness {
 public:
  static constexpr const char* kPeerUnion = "cd-ban-thu";
  // The address of this union's seal (rfc822Name, with emailProtection):
  // the `from` of its S/MIME mail (docs/email.md).
  static constexpr const char* kSealEmail = "van-thu@ldld-thu-nghiem.example";

  // Builds everything and starts sealpostd; waits (up to 30 s) for READY=1.
  // On failure records a test failure (with the daemon's log) and returns null.
  static std::unique_ptr<DaemonHarness> Start(const DaemonOptions& options = DaemonOptions());
  ~DaemonHarness();  // SIGKILLs the daemon (and the signer) if still running

  const std::string& dir() const { return tmp_.path(); }
  std::string file(const std::string& name) const { return tmp_.file(name); }
  std::string state_dir() const { return tmp_.file("state"); }
  int peer_port() const { return peer_port_; }
  int user_port() const { return user_port_; }
  pid_t pid() const { return pid_; }
  std::string Log() const;
  // With fault_module: the fault-injecting module's control and counters.
  FaultModule* fault() const { return fault_.get(); }
  // The signer under supervision: its pid (-1 while not running), how many
  // times it was started, its exit statuses so far (128+signal when killed),
  // its log.
  pid_t signer_pid() const;
  int signer_starts() const;
  std::vector<int> signer_exits() const;
  std::string SignerLog() const;

  // "curl -sS --cacert tls-ca.pem [extra] https://127.0.0.1:<user port><path>"
  // (or the peer port with `peer`), ready for RunCommand.
  std::string Curl(const std::string& path, const std::string& extra = "", bool peer = false) const;

  // `sealpost admin token create --state <state> --role R --name N`; the
  // token, or "" (and a test failure).
  std::string CreateToken(const std::string& role, const std::string& name) const;

  // SIGTERM, then waits up to `timeout_seconds` for the exit. Returns the
  // exit status (128+signal if killed by one), -1 on timeout (then SIGKILL).
  // Sets stopping_seen() when STOPPING=1 arrived.
  int Terminate(int timeout_seconds = 30);
  bool stopping_seen() const { return stopping_seen_; }
  // WATCHDOG=1 messages received (counted while waiting in Terminate()).
  int watchdog_pings() const { return watchdog_pings_; }

  DaemonHarness(const DaemonHarness&) = delete;
  DaemonHarness& operator=(const DaemonHarness&) = delete;

 private:
  DaemonHarness() = default;
  bool Launch(const DaemonOptions& o);
  bool LaunchSigner(bool wait);
  pid_t SpawnSignerLocked();
  void Supervise();
  void StopSigner();
  TempDir tmp_;
  std::unique_ptr<SoftHsm> hsm_;  // with options.seal
  std::unique_ptr<FaultModule> fault_;  // with options.fault_module
  std::vector<std::string> signer_argv_;
  int signer_restart_ms_ = 200;
  mutable std::mutex signer_mu_;
  pid_t signer_pid_ = -1;        // guarded by signer_mu_
  int signer_starts_ = 0;        // guarded by signer_mu_
  std::vector<int> signer_exits_;  // guarded by signer_mu_
  std::atomic<bool> stop_supervisor_{false};
  std::thread supervisor_;
  pid_t pid_ = -1;
  int notify_fd_ = -1;
  int peer_port_ = 0;
  int user_port_ = 0;
  bool stopping_seen_ = false;
  int watchdog_pings_ = 0;
};

// A TLS connection to 127.0.0.1 driven byte by byte (slow clients,
// smuggling attempts, several requests on one connection): OpenSSL over a
// plain socket, server certificate checked against `ca_file`.
class RawTls {
 public:
  // Connects and completes the handshake (optionally with a client
  // certificate). Null (and a test failure) when the TCP connect fails;
  // handshake_ok() says whether TLS came up.
  static std::unique_ptr<RawTls> Connect(int port, const std::string& ca_file,
                                         const std::string& cert_file = "",
                                         const std::string& key_file = "");
  ~RawTls();
  bool handshake_ok() const { return handshake_ok_; }
  // Writes all of `data`; false when the connection is gone.
  bool Write(const std::string& data);
  // Reads until the peer closes, `timeout_ms` passes, or (when
  // `until` is non-empty) the data read so far contains `until`. Returns what
  // was read; closed() tells whether the peer closed the connection.
  std::string Read(int timeout_ms, const std::string& until = "");
  bool closed() const { return closed_; }

  RawTls(const RawTls&) = delete;
  RawTls& operator=(const RawTls&) = delete;

 private:
  RawTls() = default;
  int fd_ = -1;
  void* ctx_ = nullptr;  // SSL_CTX*
  void* ssl_ = nullptr;  // SSL*
  bool handshake_ok_ = false;
  bool closed_ = false;
};

}  // namespace sealpost::testing

#endif  // SEALPOST_TESTS_SUPPORT_DAEMON_HARNESS_H_
