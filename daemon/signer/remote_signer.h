// The daemon's Signer: a client of sealpost-signer over its Unix socket.
// sealpostd never loads a PKCS#11 module; it signs through this class.
//
// Connections are kept and reused (one per concurrent call, up to
// kMaxIdleConnections kept idle); before each call a connection the signer
// closed (restart, idle) is noticed and replaced, so a call made after a new
// signer process started listening works. A call is never re-sent
// after its request was written: if the connection breaks mid-call the call
// fails with kUnavailable (the signer may or may not have signed; its journal
// says which).
//
// Errors: kUnavailable (nothing listening, connection broken, timeout, token
// absent or not answering: the daemon answers 503), kPermissionDenied (the
// signer refused: uid not allowed, attributes refused, bare digest),
// kNotFound (unknown key), kDataError (a malformed answer), and the signer's
// other errors with its message.
//
// Thread-safety: every method may be called from any thread; concurrent
// calls use separate connections (the signer serialises token access).
#ifndef SEALPOST_DAEMON_SIGNER_REMOTE_SIGNER_H_
#define SEALPOST_DAEMON_SIGNER_REMOTE_SIGNER_H_

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/openssl.h"
#include "base/status.h"
#include "crypto/signer.h"
#include "daemon/signer/protocol.h"
#include "daemon/signer/socket_io.h"

namespace sealpost::signer {

struct RemoteSignerOptions {
  std::string socket_path;
  // Bound on one whole call (connect, request, answer). Should exceed the
  // signer's own --call-timeout so that a hung token is reported by the
  // signer (or by its exit) rather than by this timeout.
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
};

class RemoteSigner final : public crypto::Signer {
 public:
  // Connects lazily: constructing never fails.
  explicit RemoteSigner(RemoteSignerOptions opts) : opts_(std::move(opts)) {}

  // CertificateRequest -> the key's certificate. The answer is kept per
  // key and handed out again (shared, X509_up_ref) without asking the
  // signer while nothing was seen to change: no signer restart (another
  // peer pid), no call failed as unavailable or recovered from that, no
  // kept connection found closed, no signature refused (kPermissionDenied:
  // e.g. the attributes named a certificate the signer no longer has).
  // A certificate that did change on the token without any of these is
  // still never signed under: the signer checks that the attributes name
  // its own certificate, and crypto/cades_sign.h checks each signature
  // against the certificate it was built for.
  Result<X509Ptr> Certificate(const crypto::KeyRef& key) override;
  // How many Certificate() calls asked the signer (tests: the cache).
  uint64_t certificate_requests() const;
  // SignDigestRequest: sealpost-signer refuses bare digests
  // (kPermissionDenied); use SignSignedAttributes (crypto/cades_sign.h does).
  Result<std::string> Sign(const crypto::KeyRef& key, crypto::DigestAlg alg,
                           std::string_view digest) override;
  // SignAttributesRequest: the signer checks the attributes, signs them and
  // journals the signature before answering.
  Result<std::string> SignSignedAttributes(const crypto::KeyRef& key, crypto::DigestAlg alg,
                                           std::string_view der) override;
  // StatusRequest: token present, logged in, certificate expiry per key.
  Result<StatusAnswer> QueryStatus();
  // The same within `timeout` (health and metrics must not wait 30 s).
  Result<StatusAnswer> QueryStatus(std::chrono::milliseconds timeout);
  // For health and metrics, which may be asked often: the last status
  // answer (or error) while it is younger than `max_age` and nothing was
  // seen to change since it was asked (no call failed as unavailable, no
  // call succeeded after one had, no signer restart); otherwise a new
  // QueryStatus(timeout). Concurrent callers share one query.
  Result<StatusAnswer> CachedStatus(std::chrono::milliseconds timeout,
                                    std::chrono::milliseconds max_age = std::chrono::seconds(1));

  // How many times a new connection found another signer process (peer pid,
  // SO_PEERCRED) than the previous connection did: signer restarts seen by
  // this client. A restart is noticed at the next connection made after it.
  uint64_t restarts_seen() const;

 private:
  Result<Answer> Call(const Request& request, std::chrono::milliseconds timeout);
  Result<Answer> CallOnce(const Request& request, std::chrono::milliseconds timeout);
  void NotePeer(int fd);
  // Counts what may change the signer's status (see CachedStatus).
  void NoteOutcome(bool unavailable);
  // Forgets the kept certificates (the next Certificate() asks).
  void ForgetCertificates();

  static constexpr size_t kMaxIdleConnections = 16;

  const RemoteSignerOptions opts_;
  mutable std::mutex mu_;
  std::vector<UniqueFd> idle_;  // guarded by mu_
  int last_peer_pid_ = 0;       // guarded by mu_
  uint64_t restarts_ = 0;       // guarded by mu_
  uint64_t epoch_ = 0;          // guarded by mu_; bumped by NoteOutcome / restarts
  bool last_unavailable_ = false;  // guarded by mu_

  struct KeptCertificate {
    std::string key_id;
    X509Ptr cert;
    uint64_t epoch = 0;  // epoch_ when it was asked for
  };
  std::vector<KeptCertificate> certs_;  // guarded by mu_
  uint64_t certificate_requests_ = 0;   // guarded by mu_

  std::mutex status_mu_;  // one status query at a time; guards the cache below
  bool cached_ = false;
  uint64_t cached_epoch_ = 0;
  std::chrono::steady_clock::time_point cached_at_{};
  Result<StatusAnswer> cached_status_ = StatusAnswer{};
};

}  // namespace sealpost::signer

#endif  // SEALPOST_DAEMON_SIGNER_REMOTE_SIGNER_H_
