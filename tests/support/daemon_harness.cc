#include "tests/support/daemon_harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "base/encoding.h"
#include "policies/verdict.h"

extern char** environ;

#ifdef SEALPOST_SIGNER_PATH
#define SEALPOST_SIGNER_PATH_OR_EMPTY SEALPOST_SIGNER_PATH
#else
#define SEALPOST_SIGNER_PATH_OR_EMPTY ""
#endif

namespace sealpost::testing {
namespace {

void WritePair(const TempDir& t, const std::string& name, const Issued& i) {
  WriteTestFile(t.file(name + ".pem"), CertToPem(i.cert.get()));
  WriteTestFile(t.file(name + "-key.pem"), KeyToPkcs8Pem(i.key.get()));
  ::chmod(t.file(name + "-key.pem").c_str(), 0600);
}

CertSpec TlsSpec(const std::string& subject, bool server) {
  CertSpec s;
  s.subject = subject;
  s.key_usage = "critical,digitalSignature";
  s.ext_key_usage = server ? "serverAuth" : "clientAuth";
  if (server) s.subject_alt_name = "IP:127.0.0.1,DNS:localhost";
  return s;
}

// fork + exec `argv` with stdin from /dev/null, stderr (and stdout when
// `also_stdout`) appended to `log`, `notify_socket` (if set) as
// NOTIFY_SOCKET, and `extra_env` ("NAME=value") added to the environment. The child asks to be SIGKILLed when the test process dies
// (PR_SET_PDEATHSIG: an aborted test must not leave sealpostd or the signer
// running). Only async-signal-safe calls between fork and exec. -1 on failure.
pid_t SpawnChild(const std::vector<std::string>& argv, const std::string& log, bool also_stdout,
                 const std::string& notify_socket, const std::vector<std::string>& extra_env = {}) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) == 0 || std::strncmp(*e, "WATCHDOG_USEC=", 14) == 0) continue;
    env.emplace_back(*e);
  }
  if (!notify_socket.empty()) env.push_back("NOTIFY_SOCKET=" + notify_socket);
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  std::vector<std::string> args = argv;
  std::vector<char*> cargv, cenv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in < 0 || out < 0) _exit(127);
    ::dup2(in, 0);
    if (also_stdout) ::dup2(out, 1);
    ::dup2(out, 2);
    ::execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  return pid;
}

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::unique_ptr<DaemonHarness> DaemonHarness::Start(const DaemonOptions& o) {
  std::unique_ptr<DaemonHarness> h(new DaemonHarness());
  const TempDir& t = h->tmp_;
  TestCa tls_ca = TestCa::CreateRoot("/CN=Sealpost Test TLS CA/O=Test/C=VN");
  TestCa other_ca = TestCa::CreateRoot("/CN=Unknown TLS CA/O=Elsewhere/C=VN");
  TestCa sign_ca = TestCa::CreateRoot("/CN=Sealpost Test Signing CA/O=Test/C=VN");
  WriteTestFile(t.file("tls-ca.pem"), CertToPem(tls_ca.cert()));
  WriteTestFile(t.file("sign-ca.pem"), CertToPem(sign_ca.cert()));
  Issued server = tls_ca.Issue(TlsSpec("/CN=127.0.0.1/O=Test/C=VN", true));
  Issued peer = tls_ca.Issue(TlsSpec("/CN=cd-ban-thu appliance/O=Công đoàn Bàn Thử/C=VN", false));
  Issued stranger = tls_ca.Issue(TlsSpec("/CN=stranger appliance/O=Nobody/C=VN", false));
  Issued foreign = other_ca.Issue(TlsSpec("/CN=cd-ban-thu appliance/O=Công đoàn Bàn Thử/C=VN", false));
  Issued user = tls_ca.Issue(TlsSpec("/CN=Nguyễn Thị Duyên/O=Công đoàn Bàn Thử/C=VN", false));
  CertSpec signer_spec;
  signer_spec.subject = "/CN=Nguyễn Thị Duyên/O=Liên đoàn Lao động thử nghiệm/C=VN";
  Issued signer = sign_ca.Issue(signer_spec);
  WritePair(t, "server", server);
  WritePair(t, "peer", peer);
  WritePair(t, "stranger", stranger);
  WritePair(t, "foreign", foreign);
  WritePair(t, "user", user);
  WritePair(t, "signer", signer);

  // The union's seal on a token, and the peer union's seal in software.
  std::string seal_key, our_seal, peer_seal, officers, seal_types;
  if (o.seal) {
    h->hsm_ = std::make_unique<SoftHsm>();
    constexpr char kToken[] = "harness-seal", kPin[] = "135790";
    if (!h->hsm_->InitToken(kToken, "97531975", kPin)) return nullptr;
    CertSpec seal_spec;
    seal_spec.subject = "/CN=Con dấu Liên đoàn Lao động thử nghiệm/O=Liên đoàn Lao động thử nghiệm/C=VN";
    seal_spec.email = kSealEmail;
    seal_spec.ext_key_usage = "emailProtection";
    auto seal = h->hsm_->AddKeyWithCert(kToken, kPin, sign_ca, KeyType::kP256, "01", "seal", seal_spec);
    if (!seal) return nullptr;
    WriteTestFile(t.file("seal.pem"), CertToPem(seal->cert.get()));
    CertSpec peer_spec;
    peer_spec.subject = "/CN=Con dấu Công đoàn Bàn Thử/O=Công đoàn Bàn Thử/C=VN";
    Issued peer_seal_cert = sign_ca.Issue(peer_spec);
    WritePair(t, "peer-seal", peer_seal_cert);
    if (o.fault_module) {
      if (!FaultModule::Available()) {
        ADD_FAILURE() << "built without tests/fault_pkcs11";
        return nullptr;
      }
      h->fault_ = std::make_unique<FaultModule>(*h->hsm_);
      h->fault_->Set(o.fault_control);
      h->fault_->ResetCounts();
    }
    seal_key = h->hsm_->KeyUri(kToken, "seal",
                               h->fault_ ? h->fault_->module_path() : std::string(kSoftHsmModule));
    our_seal = ",\n     seal: {spki_sha256: \"" + SpkiSha256Hex(seal->cert.get()) + "\"}";
    peer_seal = ",\n     seal: {spki_sha256: \"" + SpkiSha256Hex(peer_seal_cert.cert.get()) + "\"}";
    // For submissions from this union: its chair (signer.pem) and two types
    // it may send to its children.
    officers =
        "officers:\n"
        "  - {id: chair, name: \"Nguyễn Thị Duyên\", role: chair, union: " + o.union_id +
        ",\n     certificate: {spki_sha256: \"" + SpkiSha256Hex(signer.cert.get()) +
        "\"}, mandate: {from: 2020-01-01}}\n";
    seal_types =
        "  - {id: directive, name: \"Chỉ thị\", issuers: {levels: [district]},\n"
        "     recipients: {relations: [children]},\n"
        "     signatures: {officers: [{roles: [chair], count: 1}], seal: true},\n"
        "     max_size_bytes: 1048576, media_types: [text/plain, application/pdf],\n"
        "     retention_years: 20, reference: \"{seq}/{year}/CT-{union}\"}\n"
        "  - {id: notice, name: \"Thông báo\", issuers: {levels: [district]},\n"
        "     recipients: {relations: [children]}, signatures: {seal: true},\n"
        "     max_size_bytes: " + std::to_string(o.max_notice_bytes) +
        ", media_types: [text/plain, application/octet-stream],\n"
        "     retention_years: 10}\n";
    h->signer_argv_ = {SEALPOST_SIGNER_PATH_OR_EMPTY, "--key", seal_key, "--socket", t.file("signer.sock"),
                       "--pin-file", h->hsm_->WritePinFile(std::string(kPin) + "\n"),
                       "--journal", t.file("signer-journal.jsonl"),
                       "--call-timeout", std::to_string(o.signer_call_timeout_seconds)};
    h->signer_restart_ms_ = o.signer_restart_ms;
    if (!h->LaunchSigner(o.wait_for_signer)) return nullptr;
  }

  std::string policy =
      "federation: {id: test, name: \"Liên đoàn thử nghiệm\"}\n"
      "trust:\n  anchors:\n    - {id: tls-ca, name: \"Test TLS CA\", sha256: \"" +
      CertSha256Hex(tls_ca.cert()) +
      "\"}\n"
      "unions:\n"
      "  - {id: " + o.union_id + ", name: \"Liên đoàn Lao động thử nghiệm\", level: district" +
      our_seal + "}\n"
      "  - {id: " + std::string(kPeerUnion) + ", name: \"Công đoàn Bàn Thử\", level: grassroots, parent: " +
      o.union_id + ",\n     tls_identity: {spki_sha256: \"" + SpkiSha256Hex(peer.cert.get()) +
      "\"}" + peer_seal + o.peer_union_extra + "}\n" + officers +
      "document_types:\n"
      "  - {id: report, name: \"Báo cáo\", issuers: {levels: [grassroots]},\n"
      "     recipients: {relations: [parent]}, signatures: {seal: true},\n"
      "     max_size_bytes: 1048576, media_types: [text/plain], retention_years: 10}\n" +
      seal_types;
  WriteTestFile(t.file("policy.yaml"), policy);

  std::string user_certs;
  if (!o.user_cert_role.empty()) {
    user_certs = "    client_certificates:\n      - {sha256: \"" + CertSha256Hex(user.cert.get()) +
                 "\", role: " + o.user_cert_role + ", name: \"Nguyễn Thị Duyên\"}\n";
  }
  std::string config =
      "# written by tests/support/daemon_harness.cc\n"
      "union: " + o.union_id + "\n"
      "state_dir: state\n"
      "language: " + o.language + "\n"
      "policy: [policy.yaml]\n"
      "signer_socket: signer.sock\n" +
      (seal_key.empty() ? std::string() : "seal_key: \"" + seal_key + "\"\n") +
      "listeners:\n"
      "  peer:\n    address: 127.0.0.1\n    port: 0\n    certificate: server.pem\n"
      "    key: server-key.pem\n    client_ca: tls-ca.pem\n"
      "  user:\n    address: 127.0.0.1\n    port: 0\n    certificate: server.pem\n"
      "    key: server-key.pem\n" +
      (o.user_client_ca ? std::string("    client_ca: tls-ca.pem\n") : std::string()) + user_certs +
      "verify:\n  trust_anchors: [sign-ca.pem]\n"
      "limits:\n"
      "  max_body_bytes: " + std::to_string(o.max_body_bytes) + "\n"
      "  read_timeout_seconds: " + std::to_string(o.read_timeout_seconds) + "\n"
      "  keepalive_timeout_seconds: " + std::to_string(o.keepalive_timeout_seconds) + "\n"
      "  max_connections: " + std::to_string(o.max_connections) + "\n"
      "  max_queued: " + std::to_string(o.max_queued) + "\n" + o.config_extra;
  WriteTestFile(t.file("sealpostd.yaml"), config);
  if (!h->Launch(o)) return nullptr;
  return h;
}

bool DaemonHarness::Launch(const DaemonOptions& options) {
#ifndef SEALPOSTD_PATH
  ADD_FAILURE() << "sealpostd was not built";
  return false;
#else
  std::string sock_path = tmp_.file("notify.sock");
  sockaddr_un addr{};
  if (sock_path.size() >= sizeof(addr.sun_path)) {
    ADD_FAILURE() << "notify socket path too long: " << sock_path;
    return false;
  }
  notify_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, sock_path.data(), sock_path.size());
  if (notify_fd_ < 0 || ::bind(notify_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "cannot bind " << sock_path << ": " << std::strerror(errno);
    return false;
  }
  std::string log = tmp_.file("sealpostd.log");
  std::string cfg = tmp_.file("sealpostd.yaml");
  std::vector<std::string> env;
  if (options.watchdog_usec > 0) env.push_back("WATCHDOG_USEC=" + std::to_string(options.watchdog_usec));
  pid_ = SpawnChild({SEALPOSTD_PATH, "--config", cfg, "--log-level", "info"}, log, true, sock_path, env);
  if (pid_ <= 0) {
    ADD_FAILURE() << "cannot start sealpostd";
    return false;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{notify_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) == 1) {
      char buf[1024];
      ssize_t n = ::recv(notify_fd_, buf, sizeof buf - 1, 0);
      if (n <= 0) continue;
      std::string msg(buf, static_cast<size_t>(n));
      if (msg.find("READY=1") == std::string::npos) continue;
      std::sscanf(msg.c_str() + msg.find("STATUS="), "STATUS=peer_port=%d user_port=%d",
                  &peer_port_, &user_port_);
      if (peer_port_ > 0 && user_port_ > 0) return true;
      ADD_FAILURE() << "READY without ports: " << msg;
      return false;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      ADD_FAILURE() << "sealpostd exited before READY (status " << status << "):\n" << Log();
      return false;
    }
  }
  ADD_FAILURE() << "sealpostd not READY within 30 s:\n" << Log();
  return false;
#endif
}

pid_t DaemonHarness::SpawnSignerLocked() {
  pid_t pid = SpawnChild(signer_argv_, tmp_.file("signer.log"), false, "");
  if (pid > 0) {
    signer_pid_ = pid;
    ++signer_starts_;
  }
  return pid;
}

bool DaemonHarness::LaunchSigner(bool wait) {
  if (signer_argv_.empty() || signer_argv_[0].empty()) {
    ADD_FAILURE() << "sealpost-signer was not built";
    return false;
  }
  std::string socket = tmp_.file("signer.sock");
  std::string log = tmp_.file("signer.log");
  pid_t pid;
  {
    std::lock_guard<std::mutex> lock(signer_mu_);
    pid = SpawnSignerLocked();
  }
  if (pid <= 0) {
    ADD_FAILURE() << "cannot start sealpost-signer";
    return false;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (wait && std::chrono::steady_clock::now() < deadline) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket.data(), std::min(socket.size(), sizeof addr.sun_path - 1));
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (fd >= 0) ::close(fd);
    if (ok) break;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      std::lock_guard<std::mutex> lock(signer_mu_);
      signer_pid_ = -1;
      signer_exits_.push_back(ExitCode(status));
      ADD_FAILURE() << "sealpost-signer exited (status " << ExitCode(status) << "):\n" << ReadTestFile(log);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (wait && std::chrono::steady_clock::now() >= deadline) {
    ADD_FAILURE() << "sealpost-signer not listening within 20 s:\n" << ReadTestFile(log);
    return false;
  }
  supervisor_ = std::thread([this] { Supervise(); });
  return true;
}

// Reaps the signer and restarts it the way systemd would (see
// DaemonOptions::signer_restart_ms).
void DaemonHarness::Supervise() {
  bool restart_due = false;
  auto restart_at = std::chrono::steady_clock::now();
  while (!stop_supervisor_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::lock_guard<std::mutex> lock(signer_mu_);
    if (signer_pid_ > 0) {
      int status = 0;
      if (::waitpid(signer_pid_, &status, WNOHANG) != signer_pid_) continue;
      signer_pid_ = -1;
      int code = ExitCode(status);
      signer_exits_.push_back(code);
      bool prevent = code == 0 || code == 64 || code == 66 || code == 74 || code == 77;
      if (!prevent) {
        restart_due = true;
        restart_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(signer_restart_ms_);
      }
    } else if (restart_due && std::chrono::steady_clock::now() >= restart_at) {
      restart_due = false;
      SpawnSignerLocked();
    }
  }
}

void DaemonHarness::StopSigner() {
  stop_supervisor_ = true;
  if (supervisor_.joinable()) supervisor_.join();
  std::lock_guard<std::mutex> lock(signer_mu_);
  if (signer_pid_ > 0) {
    ::kill(signer_pid_, SIGKILL);
    ::waitpid(signer_pid_, nullptr, 0);
    signer_pid_ = -1;
  }
}

pid_t DaemonHarness::signer_pid() const {
  std::lock_guard<std::mutex> lock(signer_mu_);
  return signer_pid_;
}

int DaemonHarness::signer_starts() const {
  std::lock_guard<std::mutex> lock(signer_mu_);
  return signer_starts_;
}

std::vector<int> DaemonHarness::signer_exits() const {
  std::lock_guard<std::mutex> lock(signer_mu_);
  return signer_exits_;
}

std::string DaemonHarness::SignerLog() const { return ReadTestFile(tmp_.file("signer.log")); }

DaemonHarness::~DaemonHarness() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  StopSigner();
  if (notify_fd_ >= 0) ::close(notify_fd_);
}

std::string DaemonHarness::Log() const { return ReadTestFile(tmp_.file("sealpostd.log")); }

std::string DaemonHarness::Curl(const std::string& path, const std::string& extra, bool peer) const {
  return "curl -sS --max-time 20 --cacert " + ShellQuote(file("tls-ca.pem")) + " " + extra +
         " " + ShellQuote("https://127.0.0.1:" + std::to_string(peer ? peer_port_ : user_port_) +
                          path);
}

std::string DaemonHarness::CreateToken(const std::string& role, const std::string& name) const {
  std::string out;
  std::string cmd = ShellQuote(SEALPOST_CLI_PATH) + " admin token create --state " +
                    ShellQuote(state_dir()) + " --role " + ShellQuote(role) + " --name " +
                    ShellQuote(name);
  int rc = RunCommand(cmd, &out);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  // RunCommand merges stderr (the "shown once" notice): the token is the last line.
  if (size_t nl = out.rfind('\n'); nl != std::string::npos) out = out.substr(nl + 1);
  if (rc != 0 || !out.starts_with("spt_")) {
    ADD_FAILURE() << "token create failed (" << rc << "): " << out;
    return "";
  }
  return out;
}

int DaemonHarness::Terminate(int timeout_seconds) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  int status = 0;
  while (true) {
    pollfd p{notify_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) == 1) {
      char buf[512];
      ssize_t n = ::recv(notify_fd_, buf, sizeof buf - 1, 0);
      std::string msg = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
      if (msg.find("STOPPING=1") != std::string::npos) stopping_seen_ = true;
      if (msg.find("WATCHDOG=1") != std::string::npos) ++watchdog_pings_;
    }
    if (::waitpid(pid_, &status, WNOHANG) == pid_) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
  }
  pid_ = -1;
  // A STOPPING=1 that arrived just before the exit.
  char buf[512];
  ssize_t n;
  while ((n = ::recv(notify_fd_, buf, sizeof buf - 1, MSG_DONTWAIT)) > 0) {
    std::string msg(buf, static_cast<size_t>(n));
    if (msg.find("STOPPING=1") != std::string::npos) stopping_seen_ = true;
    if (msg.find("WATCHDOG=1") != std::string::npos) ++watchdog_pings_;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace sealpost::testing

namespace sealpost::testing {

std::unique_ptr<RawTls> RawTls::Connect(int port, const std::string& ca_file,
                                        const std::string& cert_file,
                                        const std::string& key_file) {
  std::unique_ptr<RawTls> c(new RawTls());
  c->fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (c->fd_ < 0 || ::connect(c->fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ADD_FAILURE() << "connect to 127.0.0.1:" << port << ": " << std::strerror(errno);
    return nullptr;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  c->ctx_ = ctx;
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr);
  if (!cert_file.empty()) {
    SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str());
    SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM);
  }
  SSL* ssl = SSL_new(ctx);
  c->ssl_ = ssl;
  SSL_set_fd(ssl, c->fd_);
  SSL_set1_host(ssl, "127.0.0.1");
  timeval tv{10, 0};
  ::setsockopt(c->fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  c->handshake_ok_ = SSL_connect(ssl) == 1;
  ERR_clear_error();
  return c;
}

RawTls::~RawTls() {
  if (ssl_ != nullptr) SSL_free(static_cast<SSL*>(ssl_));
  if (ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
  if (fd_ >= 0) ::close(fd_);
}

bool RawTls::Write(const std::string& data) {
  if (!handshake_ok_) return false;
  size_t off = 0;
  while (off < data.size()) {
    int n = SSL_write(static_cast<SSL*>(ssl_), data.data() + off, static_cast<int>(data.size() - off));
    if (n <= 0) {
      ERR_clear_error();
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string RawTls::Read(int timeout_ms, const std::string& until) {
  std::string out;
  if (!handshake_ok_) {
    closed_ = true;
    return out;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  SSL* ssl = static_cast<SSL*>(ssl_);
  while (true) {
    if (!until.empty() && out.find(until) != std::string::npos) return out;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return out;
    if (SSL_pending(ssl) == 0) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) != 1) continue;
    }
    char buf[4096];
    int n = SSL_read(ssl, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    int err = SSL_get_error(ssl, n);
    ERR_clear_error();
    if (err == SSL_ERROR_WANT_READ) continue;
    closed_ = true;
    return out;
  }
}

}  // namespace sealpost::testing
