#include "daemon/signer/remote_signer.h"

#include <poll.h>
#include <sys/socket.h>

#include <openssl/x509.h>

namespace sealpost::signer {
namespace {

// The signer never sends unsolicited bytes: a kept connection that is
// readable (EOF or stray data) or hung up is no longer usable.
bool StillUsable(int fd) {
  pollfd p{fd, POLLIN, 0};
  int r = ::poll(&p, 1, 0);
  return r == 0;
}

Status FromError(const ErrorAnswer& e) { return Status(e.code, "sealpost-signer: " + e.message); }

}  // namespace

void RemoteSigner::NotePeer(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (last_peer_pid_ != 0 && cred.pid != last_peer_pid_) {
    ++restarts_;
    ++epoch_;
  }
  last_peer_pid_ = cred.pid;
}

void RemoteSigner::NoteOutcome(bool unavailable) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unavailable || last_unavailable_) ++epoch_;
  last_unavailable_ = unavailable;
}

uint64_t RemoteSigner::restarts_seen() const {
  std::lock_guard<std::mutex> lock(mu_);
  return restarts_;
}

Result<Answer> RemoteSigner::Call(const Request& request, std::chrono::milliseconds timeout) {
  struct Outcome {
    RemoteSigner* self;
    bool unavailable = true;
    ~Outcome() { self->NoteOutcome(unavailable); }
  } outcome{this};
  auto result = [&](Result<Answer> r) {
    outcome.unavailable = !r ? r.error().code() == Code::kUnavailable
                             : std::holds_alternative<ErrorAnswer>(*r) &&
                                   std::get<ErrorAnswer>(*r).code == Code::kUnavailable;
    return r;
  };
  return result(CallOnce(request, timeout));
}

Result<Answer> RemoteSigner::CallOnce(const Request& request, std::chrono::milliseconds timeout) {
  auto payload = EncodeRequest(request);
  if (!payload) return Err(payload.error());
  Deadline deadline = std::chrono::steady_clock::now() + timeout;
  UniqueFd conn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!idle_.empty() && !conn.valid()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
      if (!StillUsable(conn.get())) conn.reset();
    }
  }
  if (!conn.valid()) {
    auto fd = ConnectUnix(opts_.socket_path, deadline);
    if (!fd) return Err(fd.error());
    conn = std::move(*fd);
    NotePeer(conn.get());
  }
  Status w = WriteFrame(conn.get(), *payload, deadline);
  if (!w.ok()) {
    // The signer may have refused the connection (uid not allowed) with an
    // answer and closed it before our request arrived: report its answer.
    auto early = ReadFrame(conn.get(), std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
    if (early) {
      auto answer = DecodeAnswer(*early);
      if (answer && std::holds_alternative<ErrorAnswer>(*answer)) return answer;
    }
    return Err(Status::Unavailable("signer unavailable (" + opts_.socket_path + "): " + w.message()));
  }
  auto reply = ReadFrame(conn.get(), deadline);
  if (!reply) {
    Status s = reply.error();
    if (s.code() == Code::kUnavailable) {
      return Err(Status::Unavailable("signer unavailable (" + opts_.socket_path + "): " + s.message()));
    }
    return Err(s);
  }
  auto answer = DecodeAnswer(*reply);
  if (!answer) return Err(answer.error());
  // After an error the server may close the connection; otherwise keep it.
  if (!std::holds_alternative<ErrorAnswer>(*answer)) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < kMaxIdleConnections) idle_.push_back(std::move(conn));
  }
  return answer;
}

Result<X509Ptr> RemoteSigner::Certificate(const crypto::KeyRef& key) {
  uint64_t epoch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A kept connection the signer closed means it may have restarted (with
    // another certificate): ask. (A new connection would notice the new pid.)
    if (std::erase_if(idle_, [](const UniqueFd& fd) { return !StillUsable(fd.get()); }) > 0) {
      ++epoch_;
    }
    epoch = epoch_;
    for (const KeptCertificate& k : certs_) {
      if (k.key_id == key.id && k.epoch == epoch && X509_up_ref(k.cert.get()) == 1) {
        return X509Ptr(k.cert.get());
      }
    }
    ++certificate_requests_;
  }
  auto a = Call(CertificateRequest{key.id}, opts_.timeout);
  if (!a) return Err(a.error());
  if (const auto* e = std::get_if<ErrorAnswer>(&*a)) return Err(FromError(*e));
  const auto* c = std::get_if<CertificateAnswer>(&*a);
  if (!c) return Err(Status::DataError("sealpost-signer answered a certificate request with another type"));
  const auto* p = reinterpret_cast<const unsigned char*>(c->der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(c->der.size())));
  if (!cert || p != reinterpret_cast<const unsigned char*>(c->der.data()) + c->der.size()) {
    return Err(OpenSslStatus(Code::kDataError, "sealpost-signer sent a certificate that does not parse"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Kept under the epoch seen before asking: if anything changed meanwhile,
  // the next call asks again.
  if (X509_up_ref(cert.get()) == 1) {
    std::erase_if(certs_, [&](const KeptCertificate& k) { return k.key_id == key.id; });
    certs_.push_back(KeptCertificate{key.id, X509Ptr(cert.get()), epoch});
  }
  return cert;
}

uint64_t RemoteSigner::certificate_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return certificate_requests_;
}

void RemoteSigner::ForgetCertificates() {
  std::lock_guard<std::mutex> lock(mu_);
  certs_.clear();
}

Result<std::string> RemoteSigner::Sign(const crypto::KeyRef& key, crypto::DigestAlg alg,
                                       std::string_view digest) {
  auto a = Call(SignRequest{key.id, alg, std::string(digest), /*attributes=*/false}, opts_.timeout);
  if (!a) return Err(a.error());
  if (const auto* e = std::get_if<ErrorAnswer>(&*a)) return Err(FromError(*e));
  const auto* s = std::get_if<SignatureAnswer>(&*a);
  if (!s) return Err(Status::DataError("sealpost-signer answered a sign request with another type"));
  return s->signature;
}

Result<std::string> RemoteSigner::SignSignedAttributes(const crypto::KeyRef& key, crypto::DigestAlg alg,
                                                       std::string_view der) {
  auto a = Call(SignRequest{key.id, alg, std::string(der), /*attributes=*/true}, opts_.timeout);
  if (!a) return Err(a.error());
  if (const auto* e = std::get_if<ErrorAnswer>(&*a)) {
    // Refused attributes may name a certificate the signer no longer has.
    if (e->code == Code::kPermissionDenied) ForgetCertificates();
    return Err(FromError(*e));
  }
  const auto* s = std::get_if<SignatureAnswer>(&*a);
  if (!s) return Err(Status::DataError("sealpost-signer answered a sign request with another type"));
  return s->signature;
}

Result<StatusAnswer> RemoteSigner::QueryStatus() { return QueryStatus(opts_.timeout); }

Result<StatusAnswer> RemoteSigner::CachedStatus(std::chrono::milliseconds timeout,
                                                std::chrono::milliseconds max_age) {
  std::lock_guard<std::mutex> status_lock(status_mu_);
  const auto now = std::chrono::steady_clock::now();
  uint64_t epoch;
  bool alive = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    epoch = epoch_;
    // A signer that went away closes the kept connections: then (or with
    // none kept to tell) ask again instead of answering from the cache.
    alive = !idle_.empty();
    for (const UniqueFd& fd : idle_) alive = alive && StillUsable(fd.get());
  }
  if (alive && cached_ && epoch == cached_epoch_ && now - cached_at_ < max_age) {
    return cached_status_;
  }
  auto st = QueryStatus(timeout);
  {
    // Kept only when nothing changed during the query (its own failure, or
    // its success after a failure, counts as a change: asked again).
    std::lock_guard<std::mutex> lock(mu_);
    cached_ = epoch == epoch_;
    cached_epoch_ = epoch;
  }
  cached_at_ = now;
  cached_status_ = st;
  return st;
}

Result<StatusAnswer> RemoteSigner::QueryStatus(std::chrono::milliseconds timeout) {
  auto a = Call(StatusRequest{}, timeout);
  if (!a) return Err(a.error());
  if (const auto* e = std::get_if<ErrorAnswer>(&*a)) return Err(FromError(*e));
  auto* s = std::get_if<StatusAnswer>(&*a);
  if (!s) return Err(Status::DataError("sealpost-signer answered a status request with another type"));
  return std::move(*s);
}

}  // namespace sealpost::signer
