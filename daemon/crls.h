// The CRL manager: fetches the CRL of every CRL source of the policy in
// force (trust.crl_sources: http:// and https:// through
// client/http_fetch.h, the https server checked against
// CrlManagerOptions::https_ca or else the system's CA store; file:/// from
// the local disk) at start and on a schedule, and keeps the daemon's shared
// trust (daemon/trust.h) up to date.
//
// For each source, on each fetch:
//   1. the body must be exactly one CRL, DER or PEM, of at most max_bytes;
//   2. its signature must verify with the source's trust anchor (the policy
//      anchor's certificate, found by its SHA-256 among verify.trust_anchors),
//      a CA certificate of verify.trust_anchors issued by that anchor, or an
//      intermediate CA of verify.intermediates under it
//      (SharedTrust::CrlIssuerUnder);
//      its thisUpdate may not be in the future (5 minutes of clock skew);
//   3. an older CRL than the one held is refused (lower CRL number; without
//      numbers, an earlier thisUpdate; the same number with other bytes);
//      the same bytes are "unchanged";
//   4. a new CRL is written to <state_dir>/crls/<anchor>-<hash of url>.der
//      (atomically), swapped into the shared trust, and archived as a `crl`
//      entry (docs/archive.md); the sha256 of the last archived CRL is kept in
//      <name>.archived so a restart does not archive it again. When the
//      archive is unavailable (signer down) archiving is retried each round.
// A failed fetch keeps the CRL held (from the cache at start). Past its
// nextUpdate a CRL is "stale" and stays in the trust: crypto/ then reports
// INDETERMINATE/TRY_LATER (crl-outdated) for the certificates it covers.
//
// Schedule: every interval_seconds, and before nextUpdate (at nextUpdate
// minus a tenth of the CRL's validity, at most 5 minutes); after a failure
// or past nextUpdate, again after retry_seconds.
//
// Thread-safety: every method may be called from any thread.
#ifndef SEALPOST_DAEMON_CRLS_H_
#define SEALPOST_DAEMON_CRLS_H_

#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/openssl.h"
#include "base/status.h"
#include "daemon/trust.h"
#include "policies/holder.h"
#include "storage/archive.h"

namespace sealpost::daemon {

struct CrlManagerOptions {
  std::string state_dir;                     // <state_dir>/crls holds the cache
  policies::PolicyHolder* policy = nullptr;  // borrowed: the sources
  SharedTrust* trust = nullptr;              // borrowed: where CRLs go
  // The archive for `crl` entries; an error (e.g. the signer is down) defers
  // archiving to the next round. Unset: nothing is archived.
  std::function<Result<storage::Archive*>()> archive;
  int interval_seconds = 3600;
  int retry_seconds = 300;
  int timeout_seconds = 15;
  uint64_t max_bytes = 16u << 20;
  // https:// sources: the PEM bundle their servers' certificates must chain
  // to (crl_fetch.https_ca); empty: the system's CA store.
  std::string https_ca;
  std::function<std::time_t()> now;  // tests; default time(nullptr)
};

// One source's state as health and metrics show it.
struct CrlSourceStatus {
  std::string anchor, url;
  std::string state;  // "fresh", "stale" (past nextUpdate), "error" (last fetch failed), "missing"
  std::time_t last_fetch = 0;    // last attempt (0: never)
  std::time_t last_success = 0;  // last attempt that gave a usable CRL (new or unchanged)
  std::time_t this_update = 0, next_update = 0;  // of the CRL held (0: none / no nextUpdate)
  std::string crl_number;  // hex, "" when none
  std::string sha256;      // of the CRL held
  size_t revoked = 0;
  std::string last_error;  // of the last attempt, "" when it succeeded
  uint64_t archived_seq = 0;  // the crl entry of the CRL held (0: not archived by this run)
  uint64_t fetched = 0, changed = 0, unchanged = 0, refused = 0, failed = 0;
};

class CrlManager {
 public:
  // Loads the cached CRLs of the current policy's sources (each verified
  // again as in step 2) into the trust. No network. Errors: InvalidArgument,
  // IoError for <state_dir>/crls.
  [[nodiscard]] static Result<std::unique_ptr<CrlManager>> Create(CrlManagerOptions options);
  ~CrlManager();  // Stop()
  CrlManager(const CrlManager&) = delete;
  CrlManager& operator=(const CrlManager&) = delete;

  // Starts the background thread (first round at once). Idempotent.
  void Start();
  void Stop();
  // One round now, in the caller's thread: every source of the current
  // policy is fetched (tests, and the thread itself).
  void RefreshAll();

  std::vector<CrlSourceStatus> Snapshot() const;
  // ,"crls":[...] is added to /api/v1/health by the caller; true when any
  // source is stale, in error or missing.
  std::string HealthJson() const;
  bool Degraded() const;
  std::string MetricsText() const;

 private:
  struct Source;
  CrlManager() = default;
  std::time_t Now() const;
  void FetchOne(Source& s);
  [[nodiscard]] Status Accept(Source& s, std::string der, X509CrlPtr crl);
  void ArchivePending(Source& s);
  [[nodiscard]] Status PushTrust();  // mu_ held
  void SyncSources();                // mu_ held: sources of the current policy
  std::time_t NextFetch(const Source& s, std::time_t now, bool failed) const;
  void Loop();

  CrlManagerOptions options_;
  std::string dir_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Source>> sources_;  // by anchor + "\n" + url
  std::mutex fetch_mu_;  // one round at a time
  std::condition_variable cv_;
  bool stop_ = false;
  bool started_ = false;
  std::thread thread_;
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_CRLS_H_
