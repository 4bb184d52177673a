#include "daemon/crls.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"
#include "base/log.h"
#include "client/http_fetch.h"
#include "crypto/certs.h"
#include "storage/entry.h"

namespace sealpost::daemon {

struct CrlManager::Source {
  CrlSourceStatus st;
  std::string base;  // <dir>/<anchor>-<16 hex of sha256(url)>
  std::string der;   // the CRL held
  X509CrlPtr crl;
  BignumPtr number;  // null: no CRL number
  std::string archived_sha256;
  std::time_t next_fetch = 0;
};

namespace {

constexpr std::time_t kClockSkew = 300;

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr) != 1) return "";
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), n));
}

std::time_t Asn1ToTime(const ASN1_TIME* t) {
  if (t == nullptr) return 0;
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

BignumPtr CrlNumber(X509_CRL* crl) {
  int crit = 0;
  auto* n = static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, nullptr));
  if (n == nullptr) return nullptr;
  BignumPtr bn(ASN1_INTEGER_to_BN(n, nullptr));
  ASN1_INTEGER_free(n);
  return bn;
}

std::string BnHex(const BIGNUM* bn) {
  if (bn == nullptr) return "";
  char* h = BN_bn2hex(bn);
  std::string s = h ? h : "";
  OPENSSL_free(h);
  return s;
}

std::string TimeJson(std::time_t t) {
  return t == 0 ? "null" : JsonString(storage::Rfc3339Utc(t));
}

std::string Labels(const CrlSourceStatus& s) {
  auto esc = [](const std::string& v) {
    std::string o;
    for (char c : v) {
      if (c == '\\' || c == '"') o += '\\';
      if (c == '\n') { o += "\\n"; continue; }
      o += c;
    }
    return o;
  };
  return "{anchor=\"" + esc(s.anchor) + "\",url=\"" + esc(s.url) + "\"}";
}

}  // namespace

CrlManager::~CrlManager() { Stop(); }

std::time_t CrlManager::Now() const { return options_.now ? options_.now() : std::time(nullptr); }

Result<std::unique_ptr<CrlManager>> CrlManager::Create(CrlManagerOptions options) {
  if (options.policy == nullptr || options.trust == nullptr || options.state_dir.empty() ||
      options.interval_seconds <= 0 || options.retry_seconds <= 0) {
    return Err(Status::InvalidArgument("CRL manager: policy, trust, state_dir and positive intervals are required"));
  }
  std::unique_ptr<CrlManager> m(new CrlManager());
  m->options_ = std::move(options);
  m->dir_ = m->options_.state_dir + "/crls";
  if (::mkdir(m->dir_.c_str(), 0750) != 0 && errno != EEXIST) {
    return Err(Status::IoError("cannot create directory " + m->dir_ + ": " + std::strerror(errno)));
  }
  std::lock_guard<std::mutex> lock(m->mu_);
  m->SyncSources();
  for (auto& [key, s] : m->sources_) {
    auto cached = ReadFile(s->base + ".der", m->options_.max_bytes);
    if (!cached) continue;
    auto archived = ReadFile(s->base + ".archived", 1024);
    if (archived) {
      s->archived_sha256 = *archived;
      while (!s->archived_sha256.empty() && s->archived_sha256.back() == '\n') s->archived_sha256.pop_back();
    }
    // The cache is checked as a fetch would be; a bad one is ignored.
    Status st = m->Accept(*s, std::move(*cached), nullptr);
    s->st.changed = 0;
    if (!st.ok()) {
      Log(LogLevel::kWarn, "cached CRL ignored",
          "anchor=" + JsonString(s->st.anchor) + " url=" + JsonString(s->st.url) +
              " error=" + JsonString(st.message()));
    }
  }
  SP_RETURN_IF_ERROR(m->PushTrust());
  return m;
}

void CrlManager::SyncSources() {
  auto policy = options_.policy->Current();
  std::map<std::string, std::unique_ptr<Source>> next;
  for (const policies::CrlSource& c : policy->crl_sources) {
    std::string key = c.anchor + "\n" + c.url;
    auto it = sources_.find(key);
    if (it != sources_.end()) {
      next.emplace(key, std::move(it->second));
      continue;
    }
    auto s = std::make_unique<Source>();
    s->st.anchor = c.anchor;
    s->st.url = c.url;
    s->st.state = "missing";
    s->base = dir_ + "/" + c.anchor + "-" + Sha256Hex(c.url).substr(0, 16);
    next.emplace(key, std::move(s));
  }
  sources_ = std::move(next);
}

// Parses and verifies `der` for source `s` and takes it when it is newer
// than the one held. `crl` may be given already parsed (null: parse here).
// mu_ held.
Status CrlManager::Accept(Source& s, std::string body, X509CrlPtr crl) {
  const std::string what = "CRL of " + s.st.url;
  if (!crl) {
    auto crls = crypto::ParseCrls(body, what);
    if (!crls) return crls.error();
    if (sk_X509_CRL_num(crls->get()) != 1) {
      return Status::DataError(what + ": " + std::to_string(sk_X509_CRL_num(crls->get())) +
                               " CRLs where one is expected");
    }
    crl.reset(sk_X509_CRL_shift(crls->get()));
  }
  // Store the DER, whatever form was served.
  unsigned char* p = nullptr;
  int n = i2d_X509_CRL(crl.get(), &p);
  if (n <= 0) return OpenSslStatus(Code::kDataError, what + ": cannot encode");
  std::string der(reinterpret_cast<char*>(p), static_cast<size_t>(n));
  OPENSSL_free(p);

  // 2. The signature, by the anchor or a CA of the trust anchors under it.
  auto policy = options_.policy->Current();
  auto ai = policy->anchor_index.find(s.st.anchor);
  if (ai == policy->anchor_index.end()) {
    return Status::DataError(what + ": the policy has no trust anchor '" + s.st.anchor + "'");
  }
  X509* anchor = options_.trust->AnchorBySha256(policy->anchors[ai->second].sha256);
  if (anchor == nullptr) {
    return Status::DataError(what + ": trust anchor '" + s.st.anchor +
                             "' (sha256 " + policy->anchors[ai->second].sha256 +
                             ") is not among verify.trust_anchors");
  }
  const X509_NAME* iname = X509_CRL_get_issuer(crl.get());
  X509* issuer = options_.trust->CrlIssuerUnder(anchor, iname);
  if (issuer == nullptr) {
    return Status::DataError(what + ": issued by \"" + crypto::NameToUtf8(iname) +
                             "\", which is not trust anchor '" + s.st.anchor +
                             "' nor a CA under it in verify.trust_anchors or verify.intermediates");
  }
  if (X509_CRL_verify(crl.get(), X509_get0_pubkey(issuer)) != 1) {
    return Status::DataError(what + ": the signature does not verify with the key of \"" +
                             crypto::NameToUtf8(X509_get_subject_name(issuer)) + "\"");
  }
  const std::time_t this_update = Asn1ToTime(X509_CRL_get0_lastUpdate(crl.get()));
  const std::time_t next_update = Asn1ToTime(X509_CRL_get0_nextUpdate(crl.get()));
  if (this_update == 0) return Status::DataError(what + ": no readable thisUpdate");
  if (this_update > Now() + kClockSkew) {
    return Status::DataError(what + ": thisUpdate " + storage::Rfc3339Utc(this_update) +
                             " is in the future");
  }
  BignumPtr number = CrlNumber(crl.get());

  // 3. Never go back to an older CRL.
  if (s.crl) {
    if (der == s.der) {
      ++s.st.unchanged;
      return Status::Ok();
    }
    if (number && s.number) {
      int cmp = BN_cmp(number.get(), s.number.get());
      if (cmp <= 0) {
        ++s.st.refused;
        return Status::FailedPrecondition(
            what + ": CRL number " + BnHex(number.get()) +
            (cmp == 0 ? " is the number of the CRL held, with other content"
                      : " is lower than " + BnHex(s.number.get()) + " of the CRL held") +
            "; the CRL held is kept");
      }
    } else if (this_update < s.st.this_update) {
      ++s.st.refused;
      return Status::FailedPrecondition(what + ": thisUpdate " + storage::Rfc3339Utc(this_update) +
                                        " is older than " + storage::Rfc3339Utc(s.st.this_update) +
                                        " of the CRL held; the CRL held is kept");
    }
  }

  // 4. Cache and hold it.
  if (Status w = WriteFileAtomic(s.base + ".der", der, 0644); !w.ok()) return w;
  s.der = std::move(der);
  s.crl = std::move(crl);
  s.number = std::move(number);
  s.st.this_update = this_update;
  s.st.next_update = next_update;
  s.st.crl_number = BnHex(s.number.get());
  s.st.sha256 = Sha256Hex(s.der);
  STACK_OF(X509_REVOKED)* rev = X509_CRL_get_REVOKED(s.crl.get());
  s.st.revoked = rev ? static_cast<size_t>(sk_X509_REVOKED_num(rev)) : 0;
  s.st.archived_seq = 0;
  ++s.st.changed;
  return Status::Ok();
}

Status CrlManager::PushTrust() {
  std::vector<X509_CRL*> crls;
  for (auto& [key, s] : sources_) {
    if (s->crl) crls.push_back(s->crl.get());
  }
  return options_.trust->SetFetched(crls);
}

std::time_t CrlManager::NextFetch(const Source& s, std::time_t now, bool failed) const {
  std::time_t next = now + options_.interval_seconds;
  if (failed) next = std::min<std::time_t>(next, now + options_.retry_seconds);
  if (s.crl && s.st.next_update != 0) {
    std::time_t validity = std::max<std::time_t>(0, s.st.next_update - s.st.this_update);
    std::time_t before = s.st.next_update - std::min<std::time_t>(kClockSkew, validity / 10);
    if (before <= now) before = now + options_.retry_seconds;
    next = std::min(next, before);
  }
  return next;
}

void CrlManager::FetchOne(Source& s) {
  std::string url;
  {
    std::lock_guard<std::mutex> lock(mu_);
    url = s.st.url;
  }
  const std::time_t now = Now();
  Result<std::string> body = Err(Status::Internal("unset"));
  if (url.starts_with("http://")) {
    client::FetchOptions fo;
    fo.timeout_seconds = options_.timeout_seconds;
    fo.max_bytes = options_.max_bytes;
    body = client::FetchHttp(url, fo);
  } else if (url.starts_with("https://")) {
    client::FetchOptions fo;
    fo.timeout_seconds = options_.timeout_seconds;
    fo.max_bytes = options_.max_bytes;
    fo.https_ca = options_.https_ca;
    body = client::FetchHttps(url, fo);
  } else if (url.starts_with("file:///")) {
    body = ReadFile(url.substr(7), options_.max_bytes);
  } else {
    body = Err(Status::InvalidArgument(url + ": only http://, https:// and file:/// CRL sources "
                                       "are fetched"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  s.st.last_fetch = now;
  ++s.st.fetched;
  const std::string before = s.st.sha256;
  Status st = body ? Accept(s, std::move(*body), nullptr) : body.error();
  if (!st.ok()) {
    if (st.code() != Code::kFailedPrecondition) ++s.st.failed;
    s.st.last_error = st.message();
    s.next_fetch = NextFetch(s, now, true);
    Log(LogLevel::kWarn, "CRL fetch failed",
        "anchor=" + JsonString(s.st.anchor) + " url=" + JsonString(url) +
            " error=" + JsonString(st.message()));
    return;
  }
  s.st.last_success = now;
  s.st.last_error.clear();
  s.next_fetch = NextFetch(s, now, false);
  if (s.st.sha256 != before) {
    Log(LogLevel::kInfo, "CRL updated",
        "anchor=" + JsonString(s.st.anchor) + " url=" + JsonString(url) + " crl_number=" +
            JsonString(s.st.crl_number) + " this_update=" + storage::Rfc3339Utc(s.st.this_update) +
            " revoked=" + std::to_string(s.st.revoked));
    if (Status p = PushTrust(); !p.ok()) {
      Log(LogLevel::kError, "CRL not swapped into the trust", "error=" + JsonString(p.message()));
    }
  }
}

void CrlManager::ArchivePending(Source& s) {
  if (!options_.archive) return;
  storage::EntryInput e;
  std::string sha;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!s.crl || s.archived_sha256 == s.st.sha256) return;
    sha = s.st.sha256;
    e.kind = storage::EntryKind::kCrl;
    e.fields = {{"anchor", s.st.anchor},
                {"url", s.st.url},
                {"issuer", crypto::NameToUtf8(X509_CRL_get_issuer(s.crl.get()))},
                {"this_update", storage::Rfc3339Utc(s.st.this_update)},
                {"crl_sha256", sha},
                {"revoked_count", std::to_string(s.st.revoked)}};
    if (s.st.next_update != 0) e.fields["next_update"] = storage::Rfc3339Utc(s.st.next_update);
    if (!s.st.crl_number.empty()) e.fields["crl_number"] = s.st.crl_number;
    e.files = {{"crl.der", s.der}};
  }
  auto archive = options_.archive();
  if (!archive) {
    Log(LogLevel::kWarn, "CRL not archived yet (retried next round)",
        "url=" + JsonString(s.st.url) + " error=" + JsonString(archive.error().message()));
    return;
  }
  auto appended = (*archive)->Append(std::move(e));
  if (!appended) {
    Log(LogLevel::kWarn, "CRL not archived yet (retried next round)",
        "url=" + JsonString(s.st.url) + " error=" + JsonString(appended.error().message()));
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (Status w = WriteFileAtomic(s.base + ".archived", sha + "\n", 0644); !w.ok()) {
    Log(LogLevel::kWarn, "CRL archive mark not written", "error=" + JsonString(w.message()));
  }
  if (s.st.sha256 == sha) s.st.archived_seq = appended->seq;
  s.archived_sha256 = sha;
  Log(LogLevel::kInfo, "CRL archived",
      "url=" + JsonString(s.st.url) + " seq=" + std::to_string(appended->seq));
}

void CrlManager::RefreshAll() {
  std::lock_guard<std::mutex> round(fetch_mu_);
  std::vector<Source*> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SyncSources();
    if (Status p = PushTrust(); !p.ok()) {
      Log(LogLevel::kError, "CRLs not swapped into the trust", "error=" + JsonString(p.message()));
    }
    for (auto& [k, s] : sources_) all.push_back(s.get());
  }
  for (Source* s : all) FetchOne(*s);
  for (Source* s : all) ArchivePending(*s);
}

void CrlManager::Loop() {
  RefreshAll();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    std::time_t next = Now() + options_.interval_seconds;
    for (auto& [k, s] : sources_) next = std::min(next, s->next_fetch);
    std::time_t wait = std::max<std::time_t>(0, next - Now());
    if (wait > 0) cv_.wait_for(lock, std::chrono::seconds(wait), [&] { return stop_; });
    if (stop_) break;
    if (Now() < next) continue;
    lock.unlock();
    {
      std::lock_guard<std::mutex> round(fetch_mu_);
      std::vector<Source*> due;
      {
        std::lock_guard<std::mutex> l(mu_);
        SyncSources();
        if (Status p = PushTrust(); !p.ok()) {
          Log(LogLevel::kError, "CRLs not swapped into the trust", "error=" + JsonString(p.message()));
        }
        const std::time_t now = Now();
        for (auto& [k, s] : sources_) {
          if (s->next_fetch <= now) due.push_back(s.get());
        }
      }
      for (Source* s : due) FetchOne(*s);
      std::vector<Source*> all;
      {
        std::lock_guard<std::mutex> l(mu_);
        for (auto& [k, s] : sources_) all.push_back(s.get());
      }
      for (Source* s : all) ArchivePending(*s);
    }
    lock.lock();
  }
}

void CrlManager::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void CrlManager::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<CrlSourceStatus> CrlManager::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<CrlSourceStatus> out;
  const std::time_t now = Now();
  for (const auto& [k, s] : sources_) {
    CrlSourceStatus st = s->st;
    if (!s->crl) st.state = st.last_fetch == 0 ? "missing" : "error";
    else if (st.next_update != 0 && now >= st.next_update) st.state = "stale";
    else if (!st.last_error.empty()) st.state = "error";
    else st.state = "fresh";
    out.push_back(std::move(st));
  }
  return out;
}

bool CrlManager::Degraded() const {
  for (const CrlSourceStatus& s : Snapshot()) {
    if (s.state != "fresh") return true;
  }
  return false;
}

std::string CrlManager::HealthJson() const {
  std::string out = "[";
  for (const CrlSourceStatus& s : Snapshot()) {
    if (out.size() > 1) out += ",";
    out += "{\"anchor\":" + JsonString(s.anchor) + ",\"url\":" + JsonString(s.url) +
           ",\"state\":" + JsonString(s.state) + ",\"last_fetch\":" + TimeJson(s.last_fetch) +
           ",\"last_success\":" + TimeJson(s.last_success) +
           ",\"this_update\":" + TimeJson(s.this_update) +
           ",\"next_update\":" + TimeJson(s.next_update) + ",\"crl_number\":" +
           (s.crl_number.empty() ? "null" : JsonString(s.crl_number)) +
           ",\"sha256\":" + (s.sha256.empty() ? "null" : JsonString(s.sha256)) +
           ",\"revoked\":" + std::to_string(s.revoked) +
           ",\"error\":" + (s.last_error.empty() ? "null" : JsonString(s.last_error)) + "}";
  }
  return out + "]";
}

std::string CrlManager::MetricsText() const {
  auto snap = Snapshot();
  if (snap.empty()) return "";
  std::string out;
  out += "# HELP sealpost_crl_fetches_total CRL fetches by outcome.\n"
         "# TYPE sealpost_crl_fetches_total counter\n";
  for (const CrlSourceStatus& s : snap) {
    std::string l = Labels(s);
    l.pop_back();
    out += "sealpost_crl_fetches_total" + l + ",result=\"changed\"} " + std::to_string(s.changed) + "\n";
    out += "sealpost_crl_fetches_total" + l + ",result=\"unchanged\"} " + std::to_string(s.unchanged) + "\n";
    out += "sealpost_crl_fetches_total" + l + ",result=\"refused\"} " + std::to_string(s.refused) + "\n";
    out += "sealpost_crl_fetches_total" + l + ",result=\"failed\"} " + std::to_string(s.failed) + "\n";
  }
  auto gauge = [&](const char* name, const char* help, auto value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n";
    for (const CrlSourceStatus& s : snap) out += name + Labels(s) + " " + value(s) + "\n";
  };
  gauge("sealpost_crl_this_update_seconds", "thisUpdate of the CRL held (Unix time; 0 none).",
        [](const CrlSourceStatus& s) { return std::to_string(s.this_update); });
  gauge("sealpost_crl_next_update_seconds", "nextUpdate of the CRL held (Unix time; 0 none).",
        [](const CrlSourceStatus& s) { return std::to_string(s.next_update); });
  gauge("sealpost_crl_last_success_seconds", "Last fetch that gave a usable CRL (Unix time).",
        [](const CrlSourceStatus& s) { return std::to_string(s.last_success); });
  gauge("sealpost_crl_fresh", "1 when the CRL held is fresh and the last fetch succeeded.",
        [](const CrlSourceStatus& s) { return std::string(s.state == "fresh" ? "1" : "0"); });
  return out;
}

}  // namespace sealpost::daemon
