#include "daemon/signer/server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/encoding.h"
#include "base/json.h"
#include "base/log.h"
#include "crypto/cades_sign.h"
#include "crypto/digest.h"
#include "daemon/signer/attributes.h"
#include "daemon/signer/protocol.h"
#include "daemon/signer/socket_io.h"
#include "pkcs11/open.h"
#include "pkcs11/token.h"

namespace sealpost::signer {
namespace {

constexpr unsigned long kCkfTokenInitialized = 0x00000400UL;  // CKF_TOKEN_INITIALIZED
constexpr unsigned long kCkfUserPinCountLow = 0x00010000UL;    // CKF_USER_PIN_COUNT_LOW
constexpr unsigned long kCkfUserPinFinalTry = 0x00020000UL;    // CKF_USER_PIN_FINAL_TRY
constexpr unsigned long kCkfUserPinLocked = 0x00040000UL;      // CKF_USER_PIN_LOCKED
constexpr size_t kMaxConnections = 64;
// A connection may stay idle this long between requests; once a frame has
// started it must be complete within the same bound.
constexpr std::chrono::minutes kIdleLimit{10};
constexpr std::chrono::seconds kAnswerWriteLimit{5};
constexpr std::chrono::seconds kReopenInterval{2};
// How long the journal's writer waits for signatures still being made
// before it syncs (Journal): a few token signatures (~0.15 ms each).
constexpr std::chrono::microseconds kGroupWait{1500};

std::string Q(std::string_view s) { return JsonString(s); }

// Where the reason of a fatal stop is left for sealpostd's health
// (<socket>.stopped, set by RunServer): "exit=N" and "error=..." lines.
// Removed once a signer listens again. The PIN never appears in it.
std::string g_stop_report;

void WriteStopReport(int code, const std::string& why) {
  if (g_stop_report.empty()) return;
  char when[32] = "";
  std::time_t now = std::time(nullptr);
  struct tm tm {};
  gmtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string text = "exit=" + std::to_string(code) + "\ntime=" + when + "\nerror=";
  for (char c : why.substr(0, 512)) text += (c == '\n' || c == '\r') ? ' ' : c;
  text += "\n";
  std::string tmp = g_stop_report + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) return;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), g_stop_report.c_str()) != 0) ::unlink(tmp.c_str());
}

// A token call was abandoned (hung module): its thread cannot be joined and
// the module cannot be used again in this process. Leave at once, so the
// supervisor starts a fresh signer.
[[noreturn]] void ExitHung(const std::string& why) {
  Log(LogLevel::kError, "a token call did not answer in time; exiting so that the supervisor restarts the signer",
      "error=" + Q(why) + " exit=" + std::to_string(kExitHung));
  WriteStopReport(kExitHung, why);
  sd_notify(0, "STOPPING=1");
  std::fflush(stderr);
  _exit(kExitHung);
}

[[noreturn]] void ExitRefused(const std::string& why) {
  Log(LogLevel::kError, "refused (PIN incorrect or locked, or module not allowed); not retrying, exiting",
      "error=" + Q(why) + " exit=" + std::to_string(kExitRefused));
  WriteStopReport(kExitRefused, why);
  sd_notify(0, "STOPPING=1");
  std::fflush(stderr);
  _exit(kExitRefused);
}

std::string UtcText(std::time_t t) {
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The append-only journal of signatures: one JSON line per signature,
// written and fdatasync'd before the signature is handed out. Concurrent
// appends are grouped: one writer writes every line pending and syncs once,
// the others wait for that sync (group commit), so throughput is not one
// fdatasync per signature when several requests are in flight.
//
// Token calls are serialised, so concurrent signatures reach the journal one
// after the other: a writer that started at once would mostly sync one line
// (an fdatasync costs ~150 us of CPU here, as much as the signature). So a
// request announces itself before its token call (Expect) and the writer
// waits, at most kGroupWait, while announced requests are still signing
// (Append or Forget ends an announcement), then writes them all with one
// sync. Alone, a request does not wait at all.
class Journal {
 public:
  static Result<std::unique_ptr<Journal>> Open(const std::optional<std::string>& path) {
    auto j = std::unique_ptr<Journal>(new Journal);
    if (!path) return j;
    j->path_ = *path;
    j->fd_.reset(::open(path->c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
    if (!j->fd_.valid()) {
      return Err(Status::IoError("cannot open journal " + *path + ": " + std::strerror(errno)));
    }
    return j;
  }

  // A signature that will be appended (or forgotten) soon: see the class
  // comment. Call before the token call; then exactly one Append or Forget.
  void Expect() {
    if (!fd_.valid()) return;
    std::lock_guard<std::mutex> lock(mu_);
    ++expected_;
  }
  // Lines written and syncs made so far, for the log line at
  // stop (bench/bench_signer reads it).
  std::string Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return "journal_lines=" + std::to_string(lines_) + " journal_syncs=" + std::to_string(syncs_);
  }

  void Forget() {
    if (!fd_.valid()) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (expected_ > 0) --expected_;
    if (expected_ == 0 && writer_waiting_) arrived_cv_.notify_one();
  }

  // Returns once `line` is durable (or with kIoError if it is not). Ends
  // this request's Expect, if it made one.
  Status Append(const std::string& line, bool expected = false) {
    if (!fd_.valid()) return Status::Ok();
    std::unique_lock<std::mutex> lock(mu_);
    if (expected && expected_ > 0) --expected_;
    uint64_t mine = ++queued_;
    pending_ += line;
    pending_ += '\n';
    if (expected_ == 0 && writer_waiting_) arrived_cv_.notify_one();
    while (processed_ < mine) {
      if (writing_) {
        cv_.wait(lock);
        continue;
      }
      writing_ = true;
      if (expected_ > 0) {
        // Others are signing: take their lines into this sync.
        auto until = std::chrono::steady_clock::now() + kGroupWait;
        writer_waiting_ = true;
        arrived_cv_.wait_until(lock, until, [&] { return expected_ == 0; });
        writer_waiting_ = false;
      }
      std::string text = std::move(pending_);
      pending_.clear();
      uint64_t from = processed_ + 1, upto = queued_;
      lock.unlock();
      Status s = WriteAndSync(text);
      lock.lock();
      ++syncs_;
      lines_ += upto - from + 1;
      writing_ = false;
      processed_ = upto;
      if (!s.ok()) failed_.push_back(Failure{from, upto, s});
      cv_.notify_all();
    }
    for (const auto& f : failed_) {
      if (mine >= f.from && mine <= f.upto) return f.status;
    }
    return Status::Ok();
  }

 private:
  struct Failure {
    uint64_t from, upto;
    Status status;
  };
  Journal() = default;

  Status WriteAndSync(const std::string& text) {
    off_t before = ::lseek(fd_.get(), 0, SEEK_END);
    ssize_t w = ::write(fd_.get(), text.data(), text.size());
    if (w != static_cast<ssize_t>(text.size()) || ::fdatasync(fd_.get()) != 0) {
      int e = w < 0 || w == static_cast<ssize_t>(text.size()) ? errno : ENOSPC;
      // Leave no half line behind: the journal stays a file of whole lines.
      if (before >= 0 && ::ftruncate(fd_.get(), before) != 0) {
        Log(LogLevel::kError, "cannot cut a partial journal line", "journal=" + Q(path_));
      }
      return Status::IoError("cannot write journal " + path_ + ": " + std::strerror(e));
    }
    return Status::Ok();
  }

  std::string path_;
  UniqueFd fd_;
  std::mutex mu_;
  std::condition_variable cv_;           // a sync finished
  std::condition_variable arrived_cv_;   // no announced signature is pending any more
  bool writer_waiting_ = false;          // on arrived_cv_, guarded by mu_
  std::string pending_;    // guarded by mu_
  uint64_t queued_ = 0;    // lines queued so far, guarded by mu_
  uint64_t processed_ = 0; // lines written (or failed) so far, guarded by mu_
  uint64_t expected_ = 0;  // announced signatures not yet appended, guarded by mu_
  uint64_t lines_ = 0, syncs_ = 0;  // written (or failed) so far, guarded by mu_
  bool writing_ = false;   // guarded by mu_
  std::vector<Failure> failed_;  // guarded by mu_
};

struct KeyInfo {
  X509Ptr cert;
  std::string cert_der;
  crypto::DigestAlg alg = crypto::DigestAlg::kSha256;
};

// The token and what was read from it. Thread-safety: all methods may be
// called from any thread (token calls are serialised by pkcs11/).
class TokenHolder {
 public:
  explicit TokenHolder(const ServerOptions& opts) : opts_(opts) {}

  // Opens the token and reads every key's certificate. Exits the process on
  // a refused PIN or a hung call; other errors are returned.
  Status Open() {
    std::lock_guard<std::mutex> lock(mu_);
    return OpenLocked();
  }

  // The key's certificate info, opening the token first if needed.
  Result<const KeyInfo*> Key(const std::string& key) {
    if (std::find(opts_.keys.begin(), opts_.keys.end(), key) == opts_.keys.end()) {
      return Err(Status::NotFound("key not served by this signer: " + key));
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!token_) {
      Status s = MaybeReopenLocked();
      if (!s.ok()) return Err(s);
    }
    return &keys_.at(key);
  }

  Result<std::string> Sign(const std::string& key, crypto::DigestAlg alg, const std::string& digest) {
    pkcs11::Token* token = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      token = token_.get();
    }
    if (token == nullptr) return Err(Status::Unavailable("token unavailable: not open"));
    auto sig = token->Sign(crypto::KeyRef{key}, alg, digest);
    if (!sig) CheckFatal(sig.error());
    return sig;
  }

  StatusAnswer Probe() {
    std::lock_guard<std::mutex> lock(mu_);
    StatusAnswer a;
    if (!token_) {
      Status s = MaybeReopenLocked();
      if (!s.ok()) a.detail = s.message();
    }
    if (token_) {
      auto cert = token_->Certificate(crypto::KeyRef{opts_.keys.front()});
      if (!cert) {
        CheckFatal(cert.error());
        a.detail = cert.error().message();
      } else {
        // libp11 answers from its snapshot: ask the module for fresh token
        // info as well (a pulled-out token fails C_GetTokenInfo).
        pkcs11::OpenOptions o = TokenOptions();
        auto listing = pkcs11::ListModule(token_->module_path(), o);
        if (!listing) {
          CheckFatal(listing.error());
          a.detail = listing.error().message();
        } else {
          for (const auto& slot : listing->slots) {
            if (slot.token_present && slot.token.label == token_->label() &&
                (slot.token.flags & kCkfTokenInitialized)) {
              a.token_present = true;
              // The PIN flags as the module reports them now (sealpost
              // doctor warns on them; the PIN itself is never involved).
              const unsigned long f = slot.token.flags;
              if (f & kCkfUserPinLocked) a.detail = "user PIN locked (CKF_USER_PIN_LOCKED)";
              else if (f & kCkfUserPinFinalTry) a.detail = "user PIN final try (CKF_USER_PIN_FINAL_TRY)";
              else if (f & kCkfUserPinCountLow) a.detail = "user PIN count low (CKF_USER_PIN_COUNT_LOW)";
            }
          }
          if (!a.token_present) a.detail = "token '" + token_->label() + "' is not present";
        }
      }
      a.logged_in = a.token_present;
    }
    for (const auto& k : opts_.keys) {
      KeyStatus ks{k, false, 0};
      auto it = keys_.find(k);
      if (it != keys_.end() && it->second.cert) {
        ks.certificate = true;
        std::time_t t = 0;
        struct tm tm {};
        if (ASN1_TIME_to_tm(X509_get0_notAfter(it->second.cert.get()), &tm) == 1) t = timegm(&tm);
        ks.not_after = t;
      }
      a.keys.push_back(std::move(ks));
    }
    return a;
  }

 private:
  pkcs11::OpenOptions TokenOptions() const {
    pkcs11::OpenOptions o;
    o.pin_file = opts_.pin_file;
    // Never prompt unless a person is at a terminal.
    o.interactive = ::isatty(STDIN_FILENO) == 1;
    o.call_timeout = opts_.call_timeout;
    o.lang = opts_.lang;
    return o;
  }

  // Refused PIN and hung calls end the process (see the brief in
  // docs/signer.md): never retry a PIN, never wait on a hung module.
  static void CheckFatal(const Status& s) {
    if (pkcs11::TokenCallAbandoned()) ExitHung(s.message());
    if (s.code() == Code::kPermissionDenied) ExitRefused(s.message());
  }

  Status MaybeReopenLocked() {
    auto now = std::chrono::steady_clock::now();
    if (now - last_attempt_ < kReopenInterval) {
      return last_error_.ok() ? Status::Unavailable("token unavailable") : last_error_;
    }
    return OpenLocked();
  }

  Status OpenLocked() {
    last_attempt_ = std::chrono::steady_clock::now();
    auto token = pkcs11::Token::Open(opts_.keys.front(), TokenOptions());
    if (!token) {
      CheckFatal(token.error());
      last_error_ = token.error();
      return last_error_;
    }
    for (const auto& w : (*token)->TakeWarnings()) Log(LogLevel::kWarn, w);
    std::map<std::string, KeyInfo> keys;
    for (const auto& k : opts_.keys) {
      auto cert = (*token)->Certificate(crypto::KeyRef{k});
      if (!cert) {
        CheckFatal(cert.error());
        last_error_ = cert.error().WithContext("key " + k);
        return last_error_;
      }
      auto alg = crypto::DigestAlgForKey(X509_get0_pubkey(cert->get()));
      if (!alg) {
        last_error_ = alg.error().WithContext("key " + k);
        return last_error_;
      }
      unsigned char* der = nullptr;
      int len = i2d_X509(cert->get(), &der);
      OpenSslBytesPtr owned(der);
      if (len <= 0) return OpenSslStatus(Code::kInternal, "cannot encode the certificate of " + k);
      KeyInfo info;
      info.cert = std::move(*cert);
      info.cert_der.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
      info.alg = *alg;
      keys.emplace(k, std::move(info));
    }
    keys_ = std::move(keys);
    token_ = std::move(*token);
    last_error_ = Status::Ok();
    Log(LogLevel::kInfo, "token open and logged in",
        "token=" + Q(token_->label()) + " keys=" + std::to_string(keys_.size()));
    return Status::Ok();
  }

  const ServerOptions& opts_;
  std::mutex mu_;
  std::unique_ptr<pkcs11::Token> token_;  // guarded by mu_; never reset once set
  std::map<std::string, KeyInfo> keys_;   // guarded by mu_; fixed once token_ is set
  std::chrono::steady_clock::time_point last_attempt_{};
  Status last_error_;
};

struct Peer {
  uid_t uid = 0;
  pid_t pid = 0;
};

class Server {
 public:
  Server(const ServerOptions& opts, TokenHolder& token, Journal& journal)
      : opts_(opts), token_(token), journal_(journal) {}

  // Serves one connection until it closes, idles out or breaks the protocol.
  void Serve(int conn, Peer peer) {
    for (;;) {
      auto frame = ReadFrame(conn, std::chrono::steady_clock::now() + kIdleLimit);
      if (!frame) {
        if (frame.error().code() == Code::kDataError) {
          Reply(conn, ErrorAnswer{Code::kDataError, frame.error().message()});
          Log(LogLevel::kWarn, "protocol error; connection closed",
              "uid=" + std::to_string(peer.uid) + " error=" + Q(frame.error().message()));
        }
        return;
      }
      auto request = DecodeRequest(*frame);
      if (!request) {
        Reply(conn, ErrorAnswer{Code::kDataError, request.error().message()});
        Log(LogLevel::kWarn, "malformed request; connection closed",
            "uid=" + std::to_string(peer.uid) + " error=" + Q(request.error().message()));
        return;
      }
      Answer answer = Handle(*request, peer);
      if (!Reply(conn, answer)) return;
    }
  }

 private:
  bool Reply(int fd, const Answer& answer) {
    auto payload = EncodeAnswer(answer);
    if (!payload) {
      payload = EncodeAnswer(ErrorAnswer{Code::kInternal, payload.error().message()});
      if (!payload) return false;
    }
    return WriteFrame(fd, *payload, std::chrono::steady_clock::now() + kAnswerWriteLimit).ok();
  }

  static ErrorAnswer ToError(const Status& s) { return ErrorAnswer{s.code(), s.message()}; }

  Answer Handle(const Request& request, const Peer& peer) {
    if (std::holds_alternative<StatusRequest>(request)) return token_.Probe();
    if (const auto* c = std::get_if<CertificateRequest>(&request)) {
      auto key = token_.Key(c->key);
      if (!key) return ToError(key.error());
      return CertificateAnswer{(*key)->cert_der};
    }
    const auto& s = std::get<SignRequest>(request);
    if (!s.attributes) {
      Log(LogLevel::kWarn, "refused a bare digest", "uid=" + std::to_string(peer.uid));
      return ErrorAnswer{Code::kPermissionDenied,
                         "refused: sealpost-signer signs only CMS signed attributes it can check, "
                         "never a bare digest"};
    }
    return SignAttributes(s, peer);
  }

  Answer SignAttributes(const SignRequest& s, const Peer& peer) {
    auto refuse = [&](const Status& st) -> Answer {
      Log(LogLevel::kWarn, "refused a signature request",
          "uid=" + std::to_string(peer.uid) + " key=" + Q(s.key) + " error=" + Q(st.message()));
      return ToError(st);
    };
    auto key = token_.Key(s.key);
    if (!key) return refuse(key.error());
    if (s.alg != (*key)->alg) {
      return refuse(Status::PermissionDenied(
          "refused: " + std::string(crypto::DigestAlgName(s.alg)) + " with this key; it signs with " +
          std::string(crypto::DigestAlgName((*key)->alg))));
    }
    auto attrs = ParseSignedAttributes(s.payload, s.alg);
    if (!attrs) return refuse(Status::PermissionDenied("refused: " + attrs.error().message()));
    std::time_t now = std::time(nullptr);
    Status checked = CheckSignedAttributes(*attrs, (*key)->cert.get(), now, opts_.max_skew);
    if (!checked.ok()) return refuse(checked);
    auto digest = crypto::DigestBytes(crypto::DigestAlgMd(s.alg), s.payload);
    if (!digest) return ToError(digest.error());
    // Announced to the journal until appended (or forgotten on any way out).
    struct Announced {
      Journal& journal;
      bool appended = false;
      ~Announced() {
        if (!appended) journal.Forget();
      }
    } announced{journal_};
    journal_.Expect();
    auto sig = token_.Sign(s.key, s.alg, *digest);
    if (!sig) {
      Log(LogLevel::kWarn, "token signature failed", "key=" + Q(s.key) + " error=" + Q(sig.error().message()));
      return ToError(sig.error());
    }
    auto sig_hash = crypto::DigestBytes(EVP_sha256(), *sig);
    std::string line = "{\"time\":" + Q(UtcText(now)) + ",\"uid\":" + std::to_string(peer.uid) +
                       ",\"pid\":" + std::to_string(peer.pid) + ",\"key\":" + Q(s.key) +
                       ",\"digest_alg\":" + Q(crypto::DigestAlgName(s.alg)) +
                       ",\"message_digest\":" + Q(HexEncode(attrs->message_digest)) +
                       ",\"signing_time\":" + Q(UtcText(attrs->signing_time)) +
                       ",\"signature_sha256\":" + Q(sig_hash ? HexEncode(*sig_hash) : "") + "}";
    announced.appended = true;
    Status j = journal_.Append(line, /*expected=*/true);
    if (!j.ok()) {
      Log(LogLevel::kError, "signature withheld: journal write failed", "error=" + Q(j.message()));
      return ErrorAnswer{Code::kUnavailable, "signature withheld: " + j.message()};
    }
    return SignatureAnswer{std::move(*sig)};
  }

  const ServerOptions& opts_;
  TokenHolder& token_;
  Journal& journal_;
};

Result<UniqueFd> Listen(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Err(Status::InvalidArgument("--socket path is empty or too long: " + path));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    // A socket left by an earlier signer is replaced; anything else is not
    // ours to remove.
    if (!S_ISSOCK(st.st_mode)) {
      return Err(Status::InvalidArgument("--socket " + path + " exists and is not a socket"));
    }
    ::unlink(path.c_str());
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Err(Status::Internal(std::string("socket: ") + std::strerror(errno)));
  // Owner and group only (the daemon's user joins the signer's group).
  mode_t old = ::umask(0117);
  int b = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int e = errno;
  ::umask(old);
  if (b != 0) return Err(Status::IoError("cannot bind " + path + ": " + std::strerror(e)));
  if (::listen(fd.get(), 64) != 0) {
    return Err(Status::IoError("cannot listen on " + path + ": " + std::strerror(errno)));
  }
  return fd;
}

}  // namespace

int RunServer(const ServerOptions& opts) {
  // SIGTERM/SIGINT arrive through a signalfd; threads inherit the mask.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  UniqueFd sigfd(::signalfd(-1, &mask, SFD_CLOEXEC));
  if (!sigfd.valid()) {
    Log(LogLevel::kError, "signalfd failed", "error=" + Q(std::strerror(errno)));
    return 70;
  }

  g_stop_report = opts.socket_path + ".stopped";
  auto journal = Journal::Open(opts.journal);
  if (!journal) {
    Log(LogLevel::kError, "cannot start", "error=" + Q(journal.error().message()));
    WriteStopReport(ExitCodeFor(journal.error()), journal.error().message());
    return ExitCodeFor(journal.error());
  }

  TokenHolder token(opts);
  Status opened = token.Open();
  if (!opened.ok()) {
    if (opened.code() != Code::kUnavailable) {
      Log(LogLevel::kError, "cannot open the token", "error=" + Q(opened.message()));
      WriteStopReport(ExitCodeFor(opened), opened.message());
      return ExitCodeFor(opened);
    }
    // Not plugged in (yet): serve status, answer "unavailable", and open it
    // when it appears.
    Log(LogLevel::kWarn, "token unavailable at start; will retry", "error=" + Q(opened.message()));
  }

  auto listener = Listen(opts.socket_path);
  if (!listener) {
    Log(LogLevel::kError, "cannot listen", "error=" + Q(listener.error().message()));
    WriteStopReport(ExitCodeFor(listener.error()), listener.error().message());
    return ExitCodeFor(listener.error());
  }
  ::unlink(g_stop_report.c_str());  // serving again: an earlier stop is over

  std::set<uid_t> allowed(opts.allowed_uids.begin(), opts.allowed_uids.end());
  if (allowed.empty()) allowed.insert(::geteuid());

  Server server(opts, token, **journal);
  // Shared with the connection threads, which may outlive this frame by a
  // few instructions after their last erase.
  struct Connections {
    std::mutex mu;
    std::condition_variable cv;
    std::set<int> fds;  // open connection fds, guarded by mu
  };
  auto conns = std::make_shared<Connections>();

  uint64_t watchdog_usec = 0;
  bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  int tick_ms = watchdog ? static_cast<int>(std::max<uint64_t>(watchdog_usec / 2000, 10)) : 1000;
  sd_notify(0, "READY=1");
  Log(LogLevel::kInfo, "listening", "socket=" + Q(opts.socket_path));

  for (;;) {
    pollfd fds[2] = {{listener->get(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, tick_ms);
    if (pkcs11::TokenCallAbandoned()) ExitHung("a token call was abandoned");
    if (watchdog) sd_notify(0, "WATCHDOG=1");
    if (r < 0 && errno != EINTR) {
      Log(LogLevel::kError, "poll failed", "error=" + Q(std::strerror(errno)));
      return 70;
    }
    if (r <= 0) continue;
    if (fds[1].revents & POLLIN) break;
    if (!(fds[0].revents & POLLIN)) continue;
    UniqueFd conn(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) continue;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) continue;
    auto deadline = std::chrono::steady_clock::now() + kAnswerWriteLimit;
    if (!allowed.count(cred.uid)) {
      Log(LogLevel::kWarn, "connection refused: uid not allowed",
          "uid=" + std::to_string(cred.uid) + " pid=" + std::to_string(cred.pid));
      auto p = EncodeAnswer(ErrorAnswer{Code::kPermissionDenied,
                                        "refused: uid " + std::to_string(cred.uid) +
                                            " is not allowed to use this signer"});
      if (p) (void)WriteFrame(conn.get(), *p, deadline);
      continue;
    }
    std::unique_lock<std::mutex> lock(conns->mu);
    if (conns->fds.size() >= kMaxConnections) {
      lock.unlock();
      Log(LogLevel::kWarn, "connection refused: too many connections");
      auto p = EncodeAnswer(ErrorAnswer{Code::kUnavailable, "too many connections to the signer"});
      if (p) (void)WriteFrame(conn.get(), *p, deadline);
      continue;
    }
    conns->fds.insert(conn.get());
    lock.unlock();
    std::thread([&server, conns, c = std::move(conn), peer = Peer{cred.uid, cred.pid}]() mutable {
      server.Serve(c.get(), peer);
      // Forget the fd before closing it, so the number is not reused while
      // still in the set.
      std::lock_guard<std::mutex> l(conns->mu);
      conns->fds.erase(c.get());
      c.reset();
      conns->cv.notify_all();
    }).detach();
  }

  sd_notify(0, "STOPPING=1");
  Log(LogLevel::kInfo, "stopping", opts.journal ? (*journal)->Stats() : std::string());
  listener->reset();
  ::unlink(opts.socket_path.c_str());
  {
    std::unique_lock<std::mutex> lock(conns->mu);
    // Idle connections end at once; a request in progress finishes first.
    for (int fd : conns->fds) ::shutdown(fd, SHUT_RD);
    bool done = conns->cv.wait_for(lock, opts.call_timeout + std::chrono::seconds(2),
                                   [&] { return conns->fds.empty(); });
    if (!done) {
      Log(LogLevel::kWarn, "connections still busy at stop; leaving");
      std::fflush(stderr);
      _exit(kExitOk);
    }
  }
  if (pkcs11::TokenCallAbandoned()) _exit(kExitHung);
  return kExitOk;
}

}  // namespace sealpost::signer
