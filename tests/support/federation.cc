#include "tests/support/federation.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/encoding.h"
#include "crypto/certs.h"
#include "policies/verdict.h"

extern char** environ;

namespace sealpost::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kSoPin[] = "87654321";

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string Quote(const std::string& s) {  // a YAML double-quoted scalar
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// `count` distinct free TCP ports on 127.0.0.1: all sockets are held open
// until every port is known, so no port is handed out twice.
std::vector<int> PickPorts(size_t count) {
  std::vector<int> fds, ports;
  for (size_t i = 0; i < count; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (fd >= 0) ::close(fd);
      break;
    }
    fds.push_back(fd);
    ports.push_back(ntohs(a.sin_port));
  }
  for (int fd : fds) ::close(fd);
  return ports;
}

// Spawns `argv` with stdin from /dev/null and stdout+stderr appended to
// `log`; `notify_socket` (if not empty) replaces NOTIFY_SOCKET in the
// environment, which is otherwise removed. `softhsm_conf` (if not empty)
// replaces SOFTHSM2_CONF. -1 on failure.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log,
            const std::string& notify_socket, const std::string& softhsm_conf = "") {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) == 0) continue;
    if (!softhsm_conf.empty() && std::strncmp(*e, "SOFTHSM2_CONF=", 14) == 0) continue;
    env.emplace_back(*e);
  }
  if (!notify_socket.empty()) env.push_back("NOTIFY_SOCKET=" + notify_socket);
  if (!softhsm_conf.empty()) env.push_back("SOFTHSM2_CONF=" + softhsm_conf);
  std::vector<char*> cargv, cenv;
  std::vector<std::string> args = argv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  // fork + exec rather than posix_spawn: the child asks to be SIGKILLed
  // when the test process dies (a crash or an ASan abort must not leave
  // daemons behind). Only async-signal-safe calls between fork and exec.
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
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  return pid;
}

// Sends `sig` and waits up to `limit` seconds; the exit status (128+signal
// when killed by one), -1 on timeout (then SIGKILLed and reaped).
int SignalAndWait(pid_t* pid, int sig, double limit) {
  if (*pid <= 0) return -1;
  ::kill(*pid, sig);
  auto t0 = Clock::now();
  int status = 0;
  while (true) {
    pid_t r = ::waitpid(*pid, &status, WNOHANG);
    if (r == *pid) break;
    if (r < 0) {
      *pid = -1;
      return -1;
    }
    if (Since(t0) > limit) {
      ::kill(*pid, SIGKILL);
      ::waitpid(*pid, &status, 0);
      *pid = -1;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  *pid = -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

bool SocketAccepts(const std::string& path) {
  sockaddr_un a{};
  if (path.size() >= sizeof a.sun_path) return false;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string Tail(const std::string& text, size_t lines) {
  size_t pos = text.size();
  for (size_t n = 0; n <= lines && pos > 0; ++n) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
    if (n == lines) return text.substr(pos + 1);
  }
  return text;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// The grassroots unions of the first three appliances (realistic names);
// more are numbered.
struct UnionName {
  std::string id, name;
};
UnionName GrassrootsName(int i) {
  static const UnionName kNames[] = {
      {"cd-mn-bai-chay", "Công đoàn cơ sở Trường Mầm non Bãi Cháy"},
      {"cd-than-ha-tu", "Công đoàn cơ sở Công ty CP Than Hà Tu"},
      {"cd-bv-bai-chay", "Công đoàn cơ sở Bệnh viện Bãi Cháy"},
  };
  if (i < 3) return kNames[i];
  return {"cd-co-so-" + std::to_string(i + 1), "Công đoàn cơ sở số " + std::to_string(i + 1)};
}

CertSpec TlsSpec(const std::string& subject) {
  CertSpec s;
  s.subject = subject;
  s.key_usage = "critical,digitalSignature";
  s.ext_key_usage = "serverAuth,clientAuth";
  s.subject_alt_name = "IP:127.0.0.1,DNS:localhost";
  return s;
}

// Runs fn(i) for every i in [0, n) on up to `threads` threads and returns
// true when every call did. After the first false no new call starts. fn
// must be thread-safe (GoogleTest's ADD_FAILURE is); it must not fork
// children that outlive it (popen is fine: it waits).
bool ParallelFor(size_t n, size_t threads, const std::function<bool(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::atomic<bool> ok{true};
  auto run = [&] {
    for (size_t i; ok && (i = next++) < n;) {
      if (!fn(i)) ok = false;
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < std::min(threads, n); ++t) pool.emplace_back(run);
  run();
  for (auto& t : pool) t.join();
  return ok;
}

// The SoftHSM2 token directory of one union: its own softhsm2.conf, so
// that every softhsm2-util / pkcs11-tool / sealpost-signer of that union
// opens one token instead of scanning every union's (with 129 unions each
// C_Initialize read every token of the federation).
std::string WriteSoftHsmConf(const std::string& dir) {
  ::mkdir(dir.c_str(), 0700);
  ::mkdir((dir + "/tokens").c_str(), 0700);
  std::string conf = dir + "/softhsm2.conf";
  WriteTestFile(conf, "directories.tokendir = " + dir +
                          "/tokens\nobjectstore.backend = file\nlog.level = ERROR\n");
  return conf;
}

// Initialises token `token` in the SoftHSM2 of `conf`, generates a P-256
// key ON it (pkcs11-tool --keypairgen, id 01, `label`) and reads its public
// key back (one shell, three commands). The key, or null (test failure).
EvpPkeyPtr NewTokenWithKey(const std::string& conf, const std::string& token,
                           const std::string& so_pin, const std::string& pin,
                           const std::string& label, const std::string& pub_path) {
  const std::string env = "SOFTHSM2_CONF=" + ShellQuote(conf) + " ";
  const std::string tool = env + "pkcs11-tool --module " + kSoftHsmModule + " --token-label " +
                           ShellQuote(token);
  std::string out;
  if (RunCommand(env + "softhsm2-util --init-token --free --label " + ShellQuote(token) +
                     " --so-pin " + ShellQuote(so_pin) + " --pin " + ShellQuote(pin) +
                     " >/dev/null && " + tool + " --login --pin " + ShellQuote(pin) +
                     " --keypairgen --key-type EC:prime256v1 --id 01 --label " + ShellQuote(label) +
                     " >/dev/null && " + tool + " --read-object --type pubkey --id 01 -o " +
                     ShellQuote(pub_path),
                 &out) != 0) {
    ADD_FAILURE() << "token " << token << " (init, keypairgen, public key): " << out;
    return nullptr;
  }
  std::string der = ReadTestFile(pub_path);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key) ADD_FAILURE() << "the public key of " << token << " does not parse";
  return key;
}

// Stores `cert` on the token next to its key (id 01, `label`).
bool StoreCert(const std::string& conf, const std::string& token, const std::string& pin,
               const std::string& label, X509* cert, const std::string& der_path) {
  WriteTestFile(der_path, CertToDer(cert));
  std::string out;
  int rc = RunCommand("SOFTHSM2_CONF=" + ShellQuote(conf) + " pkcs11-tool --module " +
                          kSoftHsmModule + " --token-label " + ShellQuote(token) +
                          " --login --pin " + ShellQuote(pin) + " --write-object " +
                          ShellQuote(der_path) + " --type cert --id 01 --label " +
                          ShellQuote(label),
                      &out);
  std::remove(der_path.c_str());
  if (rc != 0) ADD_FAILURE() << "storing the certificate on " << token << ": " << out;
  return rc == 0;
}

// A P-256 key generated ON the token (pkcs11-tool --keypairgen), its public
// key read back, a certificate issued for it by `ca` and stored on the token
// under the same id and label. The certificate, or null (test failure).
X509Ptr KeyOnToken(SoftHsm& hsm, const std::string& token, const std::string& pin,
                   const std::string& label, TestCa& ca, const CertSpec& spec) {
  std::string base = std::string("pkcs11-tool --module ") + kSoftHsmModule + " --token-label " +
                     ShellQuote(token);
  std::string out;
  if (RunCommand(base + " --login --pin " + ShellQuote(pin) +
                     " --keypairgen --key-type EC:prime256v1 --id 01 --label " + ShellQuote(label),
                 &out) != 0) {
    ADD_FAILURE() << "keypairgen on " << token << ": " << out;
    return nullptr;
  }
  std::string pub = hsm.file(token + "-pub.der");
  if (RunCommand(base + " --read-object --type pubkey --id 01 -o " + ShellQuote(pub), &out) != 0) {
    ADD_FAILURE() << "reading the public key of " << token << ": " << out;
    return nullptr;
  }
  std::string der = ReadTestFile(pub);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key) {
    ADD_FAILURE() << "the public key of " << token << " does not parse";
    return nullptr;
  }
  X509Ptr cert = ca.IssueFor(spec, key.get());
  if (!cert) {
    ADD_FAILURE() << "issuing the certificate of " << token;
    return nullptr;
  }
  auto stored = hsm.ImportCert(token, pin, cert.get(), "01", label);
  if (!stored) {
    ADD_FAILURE() << stored.message();
    return nullptr;
  }
  return cert;
}

}  // namespace

// ---------------------------------------------------------------- Appliance

Appliance::~Appliance() {
  for (pid_t* p : {&daemon_pid_, &signer_pid_}) {
    if (*p > 0) {
      ::kill(*p, SIGKILL);
      ::waitpid(*p, nullptr, 0);
      *p = -1;
    }
  }
  if (notify_fd_ >= 0) ::close(notify_fd_);
}

bool Appliance::StartSigner() { return SpawnSigner() && WaitSigner(30); }

bool Appliance::SpawnSigner() {
#ifndef SEALPOST_SIGNER_PATH
  ADD_FAILURE() << "sealpost-signer was not built";
  return false;
#else
  if (signer_pid_ > 0) KillSigner();
  signer_pid_ = Spawn({SEALPOST_SIGNER_PATH, "--key", seal_key_, "--socket", file("signer.sock"),
                       "--pin-file", file("signer.pin"), "--journal",
                       file("signer-journal.jsonl"), "--call-timeout", "10"},
                      file("signer.log"), "", softhsm_conf_);
  if (signer_pid_ <= 0) {
    ADD_FAILURE() << "cannot spawn sealpost-signer for " << id_;
    return false;
  }
  return true;
#endif
}

bool Appliance::WaitSigner(double limit_seconds) {
  auto t0 = Clock::now();
  while (Since(t0) < limit_seconds) {
    if (SocketAccepts(file("signer.sock"))) return true;
    int status = 0;
    if (signer_pid_ <= 0 || ::waitpid(signer_pid_, &status, WNOHANG) == signer_pid_) {
      signer_pid_ = -1;
      ADD_FAILURE() << "sealpost-signer of " << id_ << " exited (status " << status << "):\n"
                    << SignerLog();
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "sealpost-signer of " << id_ << " not listening within " << limit_seconds
                << " s:\n"
                << SignerLog();
  return false;
}

void Appliance::KillSigner() { SignalAndWait(&signer_pid_, SIGKILL, 10); }

int Appliance::StopSigner(int timeout_seconds) {
  return SignalAndWait(&signer_pid_, SIGTERM, timeout_seconds);
}

bool Appliance::Start() {
#ifndef SEALPOSTD_PATH
  ADD_FAILURE() << "sealpostd was not built";
  return false;
#else
  if (daemon_pid_ > 0) {
    ADD_FAILURE() << "sealpostd of " << id_ << " already runs";
    return false;
  }
  // Messages of an earlier run.
  char buf[1024];
  while (::recv(notify_fd_, buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
  daemon_pid_ = Spawn({SEALPOSTD_PATH, "--config", file("sealpostd.yaml"), "--log-level", "info"},
                      file("sealpostd.log"), file("notify.sock"));
  if (daemon_pid_ <= 0) {
    ADD_FAILURE() << "cannot spawn sealpostd for " << id_;
    return false;
  }
  return WaitReady(notify_fd_, 30);
#endif
}

bool Appliance::WaitReady(int notify_fd, double limit_seconds) {
  auto t0 = Clock::now();
  while (Since(t0) < limit_seconds) {
    pollfd p{notify_fd, POLLIN, 0};
    if (::poll(&p, 1, 100) == 1) {
      char buf[1024];
      ssize_t n = ::recv(notify_fd, buf, sizeof buf - 1, 0);
      if (n <= 0) continue;
      std::string msg(buf, static_cast<size_t>(n));
      if (msg.find("READY=1") == std::string::npos) continue;
      int peer = 0, user = 0;
      size_t at = msg.find("STATUS=");
      if (at != std::string::npos) {
        std::sscanf(msg.c_str() + at, "STATUS=peer_port=%d user_port=%d", &peer, &user);
      }
      if (peer == peer_port_ && user == user_port_) return true;
      ADD_FAILURE() << id_ << ": READY with other ports than configured: " << msg;
      return false;
    }
    int status = 0;
    if (::waitpid(daemon_pid_, &status, WNOHANG) == daemon_pid_) {
      daemon_pid_ = -1;
      ADD_FAILURE() << "sealpostd of " << id_ << " exited before READY (status " << status
                    << "):\n"
                    << Tail(Log(), 40);
      return false;
    }
  }
  ADD_FAILURE() << "sealpostd of " << id_ << " not READY within " << limit_seconds << " s:\n"
                << Tail(Log(), 40);
  return false;
}

int Appliance::Stop(int timeout_seconds) {
  return SignalAndWait(&daemon_pid_, SIGTERM, timeout_seconds);
}

void Appliance::Kill() { SignalAndWait(&daemon_pid_, SIGKILL, 10); }

bool Appliance::Restart() {
  if (daemon_pid_ > 0) Kill();
  return Start();
}

std::string Appliance::Log() const { return ReadTestFile(file("sealpostd.log")); }

bool Appliance::UseSealKey(const std::string& key_uri, const std::string& pin) {
  std::string cfg = ReadTestFile(file("sealpostd.yaml"));
  const std::string line = "seal_key: " + Quote(seal_key_) + "\n";
  size_t at = cfg.find(line);
  if (at == std::string::npos) {
    ADD_FAILURE() << "no seal_key line in " << file("sealpostd.yaml");
    return false;
  }
  cfg.replace(at, line.size(), "seal_key: " + Quote(key_uri) + "\n");
  WriteTestFile(file("sealpostd.yaml"), cfg);
  WriteTestFile(file("signer.pin"), pin + "\n");
  ::chmod(file("signer.pin").c_str(), 0600);
  seal_key_ = key_uri;
  return true;
}

std::string Federation::NewSealToken(const Appliance& a, const std::string& label,
                                     const std::string& pin) {
  EvpPkeyPtr pub = NewTokenWithKey(a.softhsm_conf(), label, kSoPin, pin, "seal",
                                   a.file("softhsm/" + label + "-pub.der"));
  if (!pub) return "";
  CertSpec spec;
  spec.subject = "/CN=" + a.name() + "/O=" + a.name() + "/C=VN";
  X509Ptr seal = ca_->IssueFor(spec, pub.get());
  if (!seal) {
    ADD_FAILURE() << "issuing the certificate of " << label;
    return "";
  }
  if (!StoreCert(a.softhsm_conf(), label, pin, "seal", seal.get(), a.file("softhsm/" + label + ".der"))) {
    return "";
  }
  return hsm_->KeyUri(label, "seal");
}
std::string Appliance::SignerLog() const { return ReadTestFile(file("signer.log")); }

std::string Appliance::TokenHeaderFile(const std::string& token) const {
  std::string path = file("curl-headers-" + std::to_string(++header_files_));
  WriteTestFile(path, token.empty() ? "" : "Authorization: Bearer " + token + "\n");
  ::chmod(path.c_str(), 0600);
  return path;
}

HttpAnswer Appliance::Curl(const std::string& path, const std::string& extra,
                           const std::string& token, bool peer) const {
  std::string tok = token == "clerk" ? clerk_token_ : token;
  std::string headers = TokenHeaderFile(tok);
  std::string body = file("curl-body-" + std::to_string(++header_files_));
  std::string cmd = "curl -sS --max-time 60 --cacert " + ShellQuote(fed_->ca_pem());
  if (peer) cmd += " --cert " + ShellQuote(file("tls.pem")) + " --key " + ShellQuote(file("tls-key.pem"));
  if (!tok.empty()) cmd += " -H @" + ShellQuote(headers);
  cmd += " " + extra + " -o " + ShellQuote(body) + " -w '\\n%{http_code}' " +
         ShellQuote("https://127.0.0.1:" + std::to_string(peer ? peer_port_ : user_port_) + path);
  std::string out;
  HttpAnswer a;
  a.curl_exit = RunCommand(cmd, &out);
  size_t nl = out.rfind('\n');
  std::string code = nl == std::string::npos ? out : out.substr(nl + 1);
  a.status = std::atoi(code.c_str());
  if (nl != std::string::npos) a.error = out.substr(0, nl);
  struct stat st {};
  if (::stat(body.c_str(), &st) == 0) a.body = ReadTestFile(body);
  std::remove(body.c_str());
  std::remove(headers.c_str());
  return a;
}

HttpAnswer Appliance::Get(const std::string& path, const std::string& token, bool peer) const {
  return Curl(path, "", token, peer);
}

HttpAnswer Appliance::Submit(const SubmitSpec& s) const {
  std::string name = s.name;
  if (name.empty()) {
    size_t slash = s.file.rfind('/');
    name = slash == std::string::npos ? s.file : s.file.substr(slash + 1);
  }
  std::string recipients;
  for (const auto& r : s.recipients) recipients += (recipients.empty() ? "" : ",") + UriEscape(r);
  std::string path = "/api/v1/documents?type=" + UriEscape(s.type) +
                     "&subject=" + UriEscape(s.subject) + "&recipients=" + recipients +
                     "&name=" + UriEscape(name) + "&media_type=" + UriEscape(s.media_type);
  std::string extra = "-X POST -H 'Content-Type: application/octet-stream' --data-binary @" +
                      ShellQuote(s.file);
  std::string sig_headers;
  if (!s.signature.empty()) {
    sig_headers = file("curl-signature-" + std::to_string(++header_files_));
    WriteTestFile(sig_headers,
                  "Sealpost-Signature: " + Base64Encode(ReadTestFile(s.signature)) + "\n");
    extra += " -H @" + ShellQuote(sig_headers);
  }
  HttpAnswer a = Curl(path, extra, s.token.empty() ? "clerk" : s.token, false);
  if (!sig_headers.empty()) std::remove(sig_headers.c_str());
  return a;
}

std::string Appliance::CreateToken(const std::string& role, const std::string& name) const {
  std::string out;
  int rc = fed_->Sealpost("admin token create --state " + ShellQuote(state_dir()) + " --role " +
                              ShellQuote(role) + " --name " + ShellQuote(name),
                          &out);
  out = Trim(out);
  // stdout and stderr are merged (the "shown once" notice): the token is
  // the line that starts with spt_.
  std::istringstream lines(out);
  std::string line, token;
  while (std::getline(lines, line)) {
    if (line.starts_with("spt_")) token = Trim(line);
  }
  if (rc != 0 || token.empty()) {
    ADD_FAILURE() << "token create on " << id_ << " failed (" << rc << "): " << out;
    return "";
  }
  return token;
}

// --------------------------------------------------------------- Federation

std::vector<std::string> Federation::grassroots_ids() const {
  std::vector<std::string> ids;
  for (size_t i = 1; i < appliances_.size(); ++i) ids.push_back(appliances_[i]->id());
  return ids;
}

Appliance* Federation::Find(const std::string& union_id) {
  for (auto& a : appliances_) {
    if (a->id() == union_id) return a.get();
  }
  return nullptr;
}

int Federation::Sealpost(const std::string& args, std::string* out,
                         const Appliance* tokens_of) const {
  std::string ignored;
  std::string env =
      tokens_of != nullptr ? "SOFTHSM2_CONF=" + ShellQuote(tokens_of->softhsm_conf()) + " " : "";
  return RunCommand(env + ShellQuote(SEALPOST_CLI_PATH) + " --lang " + language_ + " " + args,
                    out != nullptr ? out : &ignored);
}

std::string Federation::SignAsChair(const std::string& content_path) const {
  std::string out;
  std::remove((content_path + ".p7s").c_str());
  int rc = Sealpost("sign --key " + ShellQuote(chair_key_) + " " + ShellQuote(content_path), &out);
  if (rc != 0) {
    ADD_FAILURE() << "sealpost sign as the chair failed (" << rc << "): " << out;
    return "";
  }
  return content_path + ".p7s";
}

int Federation::Audit(const Appliance& a, std::string* out) const {
  return Sealpost("audit " + ShellQuote(a.archive_dir()) + " --trust " + ShellQuote(ca_pem()), out);
}

std::vector<storage::Manifest> Federation::ArchiveEntries(const Appliance& a) const {
  std::vector<storage::Manifest> out;
  auto reader = storage::ArchiveReader::Open(a.archive_dir());
  if (!reader) {
    ADD_FAILURE() << a.id() << ": archive: " << reader.error().ToString();
    return out;
  }
  for (uint64_t seq = 1; seq <= (*reader)->size(); ++seq) {
    auto m = (*reader)->ReadManifest(seq);
    if (!m) {
      ADD_FAILURE() << a.id() << ": entry " << seq << ": " << m.error().ToString();
      return {};
    }
    out.push_back(std::move(*m));
  }
  return out;
}

size_t Federation::CountEntries(const Appliance& a, const std::string& kind) const {
  size_t n = 0;
  for (const auto& m : ArchiveEntries(a)) {
    if (storage::EntryKindName(m.kind) == kind) ++n;
  }
  return n;
}

bool Federation::StopAll() {
  bool ok = true;
  for (auto& a : appliances_) {
    if (a->running()) {
      int rc = a->Stop();
      if (rc != 0) {
        ADD_FAILURE() << "sealpostd of " << a->id() << " exited " << rc;
        ok = false;
      }
    }
  }
  for (auto& a : appliances_) {
    if (a->signer_pid() > 0) {
      int rc = a->StopSigner();
      if (rc != 0) {
        ADD_FAILURE() << "sealpost-signer of " << a->id() << " exited " << rc;
        ok = false;
      }
    }
  }
  return ok;
}

void Federation::DumpLogs() const {
  for (const auto& a : appliances_) {
    std::fprintf(stderr, "----- %s: sealpostd.log (tail) -----\n%s\n", a->id().c_str(),
                 Tail(a->Log(), 60).c_str());
    std::fprintf(stderr, "----- %s: signer.log (tail) -----\n%s\n", a->id().c_str(),
                 Tail(a->SignerLog(), 20).c_str());
  }
}

Federation::~Federation() {
  auto* ut = ::testing::UnitTest::GetInstance();
  if (::testing::Test::HasFailure() || (ut != nullptr && ut->Failed())) DumpLogs();
  // Daemons before signers (each Appliance's destructor SIGKILLs both).
  for (auto& a : appliances_) a->Kill();
  appliances_.clear();
}

std::unique_ptr<Federation> Federation::Start(const FederationOptions& o) {
  std::unique_ptr<Federation> f(new Federation());
  if (!f->Build(o)) {
    f->DumpLogs();
    return nullptr;
  }
  return f;
}

bool Federation::Build(const FederationOptions& o) {
  language_ = o.language;
  auto mark_t0 = Clock::now();
  auto Mark = [&](const char* phase) {
    char line[160];
    std::snprintf(line, sizeof line, "%7.2f s  %s\n", Since(mark_t0), phase);
    setup_report_ += line;
    mark_t0 = Clock::now();
  };
  hsm_ = std::make_unique<SoftHsm>();
  // sealpost-signer and the CLI take SoftHSM2 from the default allowlist.
  ::unsetenv(kAllowlistEnv);
  ca_ = std::make_unique<TestCa>(
      TestCa::CreateRoot("/CN=CA Liên đoàn Lao động Thử nghiệm/O=Liên đoàn Lao động tỉnh Thử nghiệm/C=VN"));
  TestCa& ca = *ca_;
  WriteTestFile(ca_pem(), CertToPem(ca.cert()));

  const int n = o.grassroots;
  std::vector<int> ports = PickPorts(2 * static_cast<size_t>(n + 1));
  if (ports.size() != 2 * static_cast<size_t>(n + 1)) {
    ADD_FAILURE() << "cannot pick free ports";
    return false;
  }
  for (int i = 0; i <= n; ++i) {
    auto a = std::unique_ptr<Appliance>(new Appliance());
    a->fed_ = this;
    if (i == 0) {
      a->id_ = kDistrict;
      a->name_ = "Liên đoàn Lao động thành phố Hạ Long";
      a->level_ = "district";
    } else {
      UnionName u = GrassrootsName(i - 1);
      a->id_ = u.id;
      a->name_ = u.name;
      a->level_ = "grassroots";
    }
    a->lenient_ = o.lenient.count(a->id_) > 0;
    a->dir_ = file(a->id_);
    a->peer_port_ = ports[2 * i];
    a->user_port_ = ports[2 * i + 1];
    ::mkdir(a->dir_.c_str(), 0700);
    ::mkdir(a->state_dir().c_str(), 0700);
    appliances_.push_back(std::move(a));
  }

  // Seal tokens: one SoftHSM2 directory per union (see WriteSoftHsmConf),
  // the key generated on the token. The token commands wait mostly on the
  // disk (SoftHSM2 truncates and rewrites its object files), so the unions
  // are done in parallel.
  const size_t workers = 16;
  std::vector<EvpPkeyPtr> seal_pubs(appliances_.size());
  for (auto& a : appliances_) {
    a->softhsm_conf_ = WriteSoftHsmConf(a->file("softhsm"));
    a->seal_key_ = hsm_->KeyUri("seal-" + a->id_, "seal");
    WriteTestFile(a->file("signer.pin"), "1" + std::to_string(100000 + a->peer_port_) + "\n");
    ::chmod(a->file("signer.pin").c_str(), 0600);
  }
  auto pin_of = [](const Appliance& a) { return "1" + std::to_string(100000 + a.peer_port_); };
  if (!ParallelFor(appliances_.size(), workers, [&](size_t i) {
        Appliance& a = *appliances_[i];
        seal_pubs[i] = NewTokenWithKey(a.softhsm_conf_, "seal-" + a.id_, kSoPin, pin_of(a), "seal",
                                       a.file("softhsm/seal-pub.der"));
        return seal_pubs[i] != nullptr;
      })) {
    return false;
  }
  Mark("seal tokens: init + keypairgen");
  // Certificates (in this thread: TestCa is not shared across threads).
  std::vector<X509Ptr> seals(appliances_.size());
  for (size_t i = 0; i < appliances_.size(); ++i) {
    Appliance& a = *appliances_[i];
    CertSpec spec;
    spec.subject = "/CN=" + a.name_ + "/O=" + a.name_ + "/C=VN";
    seals[i] = ca.IssueFor(spec, seal_pubs[i].get());
    if (!seals[i]) {
      ADD_FAILURE() << "issuing the seal certificate of " << a.id_;
      return false;
    }
    WriteTestFile(a.file("seal.pem"), CertToPem(seals[i].get()));
    a.seal_spki_ = SpkiSha256Hex(seals[i].get());

    Issued tls = ca.Issue(TlsSpec("/CN=127.0.0.1/OU=" + a.id_ + " appliance/O=" + a.name_ + "/C=VN"));
    WriteTestFile(a.file("tls.pem"), CertToPem(tls.cert.get()));
    WriteTestFile(a.file("tls-key.pem"), KeyToPkcs8Pem(tls.key.get()));
    ::chmod(a.file("tls-key.pem").c_str(), 0600);
    a.tls_spki_ = SpkiSha256Hex(tls.cert.get());
  }
  Mark("certificates (seal, TLS)");
  // The seal certificates onto the tokens, and the clerks' API tokens.
  if (!ParallelFor(appliances_.size(), workers, [&](size_t i) {
        Appliance& a = *appliances_[i];
        if (!StoreCert(a.softhsm_conf_, "seal-" + a.id_, pin_of(a), "seal", seals[i].get(),
                       a.file("softhsm/seal.der"))) {
          return false;
        }
        a.clerk_token_ = a.CreateToken("clerk", "Văn thư " + a.id_);
        return !a.clerk_token_.empty();
      })) {
    return false;
  }
  Mark("seal certificates on the tokens + clerks' API tokens");
  // A TLS client certificate of the same CA that no union claims.
  Issued stranger = ca.Issue(TlsSpec("/CN=127.0.0.1/OU=stranger appliance/O=Không ai/C=VN"));
  WriteTestFile(file("stranger.pem"), CertToPem(stranger.cert.get()));
  WriteTestFile(file("stranger-key.pem"), KeyToPkcs8Pem(stranger.key.get()));
  ::chmod(file("stranger-key.pem").c_str(), 0600);

  // The chair's personal token.
  const std::string chair_pin = "246810";
  if (!hsm_->InitToken("chair-token", kSoPin, chair_pin)) return false;
  CertSpec chair_spec;
  chair_spec.subject = std::string("/CN=") + kChairName + "/title=Chủ tịch/O=" +
                       district().name() + "/C=VN";
  X509Ptr chair = KeyOnToken(*hsm_, "chair-token", chair_pin, "chair", ca, chair_spec);
  if (!chair) return false;
  WriteTestFile(file("chair.pem"), CertToPem(chair.get()));
  WriteTestFile(file("chair.pin"), chair_pin + "\n");
  ::chmod(file("chair.pin").c_str(), 0600);
  chair_key_ = hsm_->KeyUri("chair-token", "chair") + "&pin-source=" + UriEscape("file:" + file("chair.pin"));

  // The policies.
  auto policy = [&](bool lenient) {
    std::string p = "# written by tests/support/federation.cc\n"
                    "federation: {id: " + std::string(kDistrict) + ", name: " + Quote(district().name()) + "}\n"
                    "trust:\n  anchors:\n    - {id: test-ca, name: \"CA Thử nghiệm\", sha256: \"" +
                    CertSha256Hex(ca.cert()) + "\"}\n" + o.policy_trust_extra +
                    "unions:\n";
    for (auto& a : appliances_) {
      p += "  - id: " + a->id_ + "\n    name: " + Quote(a->name_) + "\n    level: " + a->level_ + "\n";
      if (a->level_ == "grassroots") p += "    parent: " + std::string(kDistrict) + "\n";
      p += "    endpoint: \"https://127.0.0.1:" + std::to_string(a->peer_port_) + "\"\n";
      p += "    tls_identity: {spki_sha256: \"" + a->tls_spki_ + "\"}\n";
      if (o.seal_by_subject) {
        auto seal = crypto::LoadCertificate(a->file("seal.pem"));
        p += "    seal: {subject: " +
             Quote(seal ? crypto::NameToUtf8(X509_get_subject_name(seal->get())) : "") +
             ", ca: test-ca}\n";
      } else {
        p += "    seal: {spki_sha256: \"" + a->seal_spki_ + "\"}\n";
      }
    }
    p += "officers:\n"
         "  - id: nguyen-thi-duyen\n    name: " + Quote(kChairName) + "\n    role: chair\n"
         "    union: " + std::string(kDistrict) + "\n    certificate: {spki_sha256: \"" +
         SpkiSha256Hex(chair.get()) + "\"}\n    mandate: {from: 2023-01-01}\n";
    p += "document_types:\n";
    if (!lenient) {
      p += "  - id: directive\n    name: \"Chỉ thị\"\n    name_en: \"Directive\"\n"
           "    issuers: {levels: [district]}\n    recipients: {relations: [children]}\n"
           "    signatures:\n      officers:\n        - {roles: [chair, vice-chair], count: 1}\n"
           "      seal: true\n"
           "    max_size_bytes: 10485760\n    media_types: [text/plain, application/pdf]\n"
           "    retention_years: 20\n    reference: \"{seq}/{year}/CT-{union}\"\n"
           "  - id: report\n    name: \"Báo cáo\"\n    name_en: \"Report\"\n"
           "    issuers: {levels: [grassroots]}\n    recipients: {relations: [parent]}\n"
           "    signatures: {seal: true}\n"
           "    max_size_bytes: 10485760\n    media_types: [text/plain, application/pdf]\n"
           "    retention_years: 10\n    reference: \"{seq}/{year}/BC-{union}\"\n";
    } else {
      for (const char* t : {"directive", "report"}) {
        p += "  - id: " + std::string(t) + "\n    name: \"" + t + "\"\n"
             "    issuers: {levels: [district, grassroots]}\n"
             "    recipients: {relations: [children, parent, siblings]}\n"
             "    signatures: {seal: true}\n"
             "    max_size_bytes: 10485760\n    media_types: [text/plain, application/pdf]\n"
             "    retention_years: 10\n";
      }
    }
    p += o.policy_types_extra;
    return p;
  };
  WriteTestFile(file("policy.yaml"), policy(false));
  if (!o.lenient.empty()) WriteTestFile(file("policy-lenient.yaml"), policy(true));

  for (auto& a : appliances_) {
    std::string cfg =
        "# written by tests/support/federation.cc\n"
        "union: " + a->id_ + "\n"
        "state_dir: " + Quote(a->state_dir()) + "\n"
        "language: " + o.language + "\n"
        "policy: [" + Quote(file(a->lenient_ ? "policy-lenient.yaml" : "policy.yaml")) + "]\n"
        "signer_socket: " + Quote(a->file("signer.sock")) + "\n"
        "seal_key: " + Quote(a->seal_key_) + "\n"
        "listeners:\n"
        "  peer:\n    address: 127.0.0.1\n    port: " + std::to_string(a->peer_port_) + "\n"
        "    certificate: " + Quote(a->file("tls.pem")) + "\n    key: " + Quote(a->file("tls-key.pem")) + "\n"
        "    client_ca: " + Quote(ca_pem()) + "\n"
        "  user:\n    address: 127.0.0.1\n    port: " + std::to_string(a->user_port_) + "\n"
        "    certificate: " + Quote(a->file("tls.pem")) + "\n    key: " + Quote(a->file("tls-key.pem")) + "\n"
        "verify:\n  trust_anchors: [" + Quote(ca_pem()) + "]\n" +
        o.extra_config;
    WriteTestFile(a->file("sealpostd.yaml"), cfg);

    // The notify socket (kept for the appliance's life: restarts reuse it).
    std::string sock_path = a->file("notify.sock");
    sockaddr_un addr{};
    if (sock_path.size() >= sizeof(addr.sun_path)) {
      ADD_FAILURE() << "notify socket path too long: " << sock_path;
      return false;
    }
    a->notify_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, sock_path.data(), sock_path.size());
    if (a->notify_fd_ < 0 ||
        ::bind(a->notify_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << "cannot bind " << sock_path << ": " << std::strerror(errno);
      return false;
    }
  }

  // Processes: every signer spawned, then awaited; then every daemon.
  for (auto& a : appliances_) {
    if (!a->SpawnSigner()) return false;
  }
  // Whoever is awaited last has waited longest: the limit grows with the
  // federation (129 signers logging in on 2 cores).
  const double limit = 30 + 0.25 * static_cast<double>(appliances_.size());
  for (auto& a : appliances_) {
    if (!a->WaitSigner(limit)) return false;
  }
  Mark("signers spawned and listening");
#ifdef SEALPOSTD_PATH
  for (auto& a : appliances_) {
    a->daemon_pid_ = Spawn({SEALPOSTD_PATH, "--config", a->file("sealpostd.yaml"), "--log-level", "info"},
                           a->file("sealpostd.log"), a->file("notify.sock"));
    if (a->daemon_pid_ <= 0) {
      ADD_FAILURE() << "cannot spawn sealpostd for " << a->id_;
      return false;
    }
  }
  for (auto& a : appliances_) {
    if (!a->WaitReady(a->notify_fd_, limit)) return false;
  }
#else
  ADD_FAILURE() << "sealpostd was not built";
  return false;
#endif
  Mark("daemons spawned and READY");
  // The archive is created by the daemon's Exchange, opened on the first
  // documents request: make every appliance open it now (an unknown id: 404).
  if (!ParallelFor(appliances_.size(), workers, [&](size_t i) {
        Appliance& a = *appliances_[i];
        HttpAnswer w = a.Get("/api/v1/documents/bundle?id=00000000-0000-4000-8000-000000000000");
        if (w.status != 404 && w.status != 400) {
          ADD_FAILURE() << a.id_ << ": opening the archive: HTTP " << w.status << " " << w.body
                        << w.error;
          return false;
        }
        return true;
      })) {
    return false;
  }
  Mark("archives opened");
  return true;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string IdOf(const std::string& body) {
  size_t at = body.find("\"id\":\"");
  if (at == std::string::npos) return "";
  at += 6;
  return body.substr(at, body.find('"', at) - at);
}

HttpAnswer SubmitDirective(Federation& fed, const std::string& name, const std::string& text,
                           const std::vector<std::string>& recipients) {
  std::string path = fed.file(name);
  WriteTestFile(path, text);
  std::string sig = fed.SignAsChair(path);
  EXPECT_FALSE(sig.empty());
  SubmitSpec s;
  s.file = path;
  s.type = "directive";
  s.subject = "Chỉ thị " + name;
  s.recipients = recipients.empty() ? fed.grassroots_ids() : recipients;
  s.signature = sig;
  return fed.district().Submit(s);
}

size_t CountDocumentEntries(const Federation& fed, const Appliance& a, const std::string& kind,
                            const std::string& id, const std::string& recipient) {
  size_t n = 0;
  for (const storage::Manifest& m : fed.ArchiveEntries(a)) {
    if (storage::EntryKindName(m.kind) != kind || m.Field("id") != id) continue;
    if (!recipient.empty() && m.Field("recipient") != recipient) continue;
    if (kind == "delivery-receipt" && m.Field("receipt_type") != "delivery-receipt") continue;
    ++n;
  }
  return n;
}

std::vector<storage::DeliveryState> DeliveryStates(const Appliance& a, const std::string& id) {
  storage::OutboxOptions o;
  o.path = a.file("state/outbox.sqlite");
  auto box = storage::Outbox::Open(o);
  if (!box) return {};
  return (*box)->States(id).value_or(std::vector<storage::DeliveryState>{});
}

bool AllDelivered(const Appliance& a, const std::string& id, size_t recipients) {
  auto states = DeliveryStates(a, id);
  if (states.size() != recipients) return false;
  for (const auto& d : states) {
    if (d.state != storage::JobState::kDelivered && d.state != storage::JobState::kRead) return false;
  }
  return true;
}

}  // namespace sealpost::testing
