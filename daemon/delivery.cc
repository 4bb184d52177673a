#include "daemon/delivery.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <list>
#include <set>

#include <openssl/x509_vfy.h>

#include <Poco/Exception.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/URI.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"
#include "base/log.h"
#include "crypto/cades_sign.h"
#include "crypto/certs.h"
#include "crypto/digest.h"
#include "crypto/receipt.h"
#include "crypto/report.h"
#include "crypto/smime.h"
#include "daemon/metrics.h"
#include "policies/verdict.h"
#include "storage/entry.h"
#include "storage/reader.h"

namespace sealpost::daemon {

namespace {

constexpr size_t kMaxNoticeBody = 256 * 1024;
constexpr const char* kBundleType = "application/vnd.etsi.asic-s+zip";

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool IsFinalRefusal(int status) {
  // 408 and 429 say "later", not "never".
  return status >= 400 && status < 500 && status != 408 && status != 429;
}

// The transport's Unavailable: the appliance could not be reached at all.
// Anything else (a bad endpoint, ...) is an ordinary retry.
template <typename O>
O TransportOutcomeOf(const Status& s) {
  return s.code() == Code::kUnavailable ? O::kUnreachable : O::kRetry;
}

std::string ProblemText(const client::Response& r) {
  return client::StatusFromProblem(r).message();
}

// A JSON object of string members only, exactly `keys`; DataError otherwise.
Result<std::map<std::string, std::string>> StringObject(std::string_view json,
                                                        std::initializer_list<const char*> keys,
                                                        const std::string& what) {
  Poco::JSON::Object::Ptr obj;
  try {
    Poco::JSON::Parser parser;
    auto v = parser.parse(std::string(json));
    if (v.type() != typeid(Poco::JSON::Object::Ptr)) {
      return Err(Status::DataError(what + " is not a JSON object"));
    }
    obj = v.extract<Poco::JSON::Object::Ptr>();
  } catch (const Poco::Exception& e) {
    return Err(Status::DataError(what + " is not JSON: " + e.displayText()));
  } catch (const std::exception& e) {
    return Err(Status::DataError(what + " is not JSON: " + e.what()));
  }
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : *obj) {
    if (std::find_if(keys.begin(), keys.end(), [&](const char* x) { return k == x; }) ==
        keys.end()) {
      return Err(Status::DataError(what + " has an unknown member \"" + k + "\""));
    }
    if (!v.isString()) return Err(Status::DataError(what + ": \"" + k + "\" is not a string"));
    out[k] = v.extract<std::string>();
  }
  for (const char* k : keys) {
    if (out.find(k) == out.end()) {
      return Err(Status::DataError(what + " lacks \"" + std::string(k) + "\""));
    }
  }
  return out;
}

// The integer member `name` of a problem+json body, if present.
std::optional<uint64_t> ProblemInteger(const std::string& body, const std::string& name) {
  try {
    Poco::JSON::Parser parser;
    auto v = parser.parse(body);
    if (v.type() != typeid(Poco::JSON::Object::Ptr)) return std::nullopt;
    auto obj = v.extract<Poco::JSON::Object::Ptr>();
    if (!obj->has(name)) return std::nullopt;
    auto m = obj->get(name);
    if (!m.isInteger()) return std::nullopt;
    int64_t n = m.convert<Poco::Int64>();
    if (n < 0) return std::nullopt;
    return static_cast<uint64_t>(n);
  } catch (...) {
    return std::nullopt;
  }
}

bool IdentityMatches(const policies::CertIdentity& t, const policies::SignerIdentity& id,
                     const policies::Policy& policy) {
  switch (t.kind) {
    case policies::CertIdentity::Kind::kIssuerSerial:
      return t.issuer == id.issuer && t.serial == id.serial;
    case policies::CertIdentity::Kind::kSpkiSha256:
      return t.spki_sha256 == id.spki_sha256;
    case policies::CertIdentity::Kind::kSubjectUnderCa: {
      auto it = policy.anchor_index.find(t.ca);
      return t.subject == id.subject && it != policy.anchor_index.end() &&
             std::find(id.chain_sha256.begin(), id.chain_sha256.end(),
                       policy.anchors[it->second].sha256) != id.chain_sha256.end();
    }
  }
  return false;
}

bool IsRole(std::string_view r) {
  if (r.empty() || r.size() > crypto::kReceiptMaxRoleBytes || r[0] < 'a' || r[0] > 'z') {
    return false;
  }
  return std::all_of(r.begin(), r.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::string NoticeBody(const crypto::SignedReceipt& n) {
  return "{\"notice\":" + JsonString(Base64Encode(n.json)) +
         ",\"signature\":" + JsonString(Base64Encode(n.signature)) + "}";
}

Problem BadNotice(const std::string& why) {
  return Problem{422, "notice-invalid", "Read notice not valid", "Thông báo đã đọc không hợp lệ",
                 why, "Thông báo đã đọc không hợp lệ: " + why};
}

// ---- the HTTPS transport -------------------------------------------------

class HttpsTransport final : public PeerTransport {
 public:
  explicit HttpsTransport(PeerTlsFiles files) : files_(std::move(files)) {}

  Result<client::Response> Post(const std::string& endpoint, const std::string& path,
                                const std::string& content_type, const std::string& body,
                                const std::string& file_path,
                                const client::Headers& headers) override {
    std::string host, base;
    int port = 443;
    try {
      Poco::URI uri(endpoint);
      if (uri.getScheme() != "https" || uri.getHost().empty()) {
        return Err(Status::InvalidArgument("endpoint " + endpoint + " is not an https URL"));
      }
      host = uri.getHost();
      port = uri.getPort();
      base = uri.getPath();
      while (!base.empty() && base.back() == '/') base.pop_back();
    } catch (const Poco::Exception& e) {
      return Err(Status::InvalidArgument("endpoint " + endpoint + ": " + e.displayText()));
    }
    std::string key = host + ":" + std::to_string(port);
    std::unique_ptr<client::HttpsClient> c;
    {
      std::lock_guard lock(mu_);
      auto it = std::find_if(idle_.begin(), idle_.end(), [&](const auto& e) { return e.first == key; });
      if (it != idle_.end()) {
        c = std::move(it->second);
        idle_.erase(it);
      }
    }
    const bool reused = c != nullptr;
    for (int round = 0;; ++round) {
      if (!c) {
        client::ClientOptions o;
        o.host = host;
        o.port = port;
        o.ca_file = files_.ca;
        o.cert_file = files_.certificate;
        o.key_file = files_.key;
        o.verify_host = true;
        o.connect_timeout_seconds = files_.connect_timeout_seconds;
        o.timeout_seconds = files_.timeout_seconds;
        o.max_response_bytes = 1u << 20;
        auto made = client::HttpsClient::Create(o);
        if (!made) return Err(made.error());
        c = std::move(*made);
      }
      auto r = file_path.empty() ? c->Post(base + path, content_type, body, headers)
                                 : c->PostFile(base + path, content_type, file_path, headers);
      if (r) {
        // Kept for the next delivery to this endpoint: most recent first, at
        // most kIdlePerEndpoint per endpoint and kIdleTotal in all (a
        // fan-out to 128 appliances does not keep 128 connections open).
        std::lock_guard lock(mu_);
        size_t same = static_cast<size_t>(std::count_if(
            idle_.begin(), idle_.end(), [&](const auto& e) { return e.first == key; }));
        if (same < kIdlePerEndpoint) {
          idle_.emplace_front(key, std::move(c));
          if (idle_.size() > kIdleTotal) idle_.pop_back();
        }
        return r;
      }
      // A kept-alive connection the peer closed meanwhile fails the first
      // request on it: once, on a new connection (both POSTs are idempotent).
      if (!reused || round > 0 || r.error().code() != Code::kUnavailable) return r;
      c.reset();
    }
  }

 private:
  static constexpr size_t kIdlePerEndpoint = 8;
  static constexpr size_t kIdleTotal = 64;
  PeerTlsFiles files_;
  std::mutex mu_;
  // "host:port" -> an idle keep-alive connection, most recently used first.
  std::list<std::pair<std::string, std::unique_ptr<client::HttpsClient>>> idle_;  // guarded by mu_
};

// How far a receipt's time may lie ahead of our clock or before the
// document was sent (clocks of two appliances disagree a little).
constexpr std::time_t kReceiptClockSkew = 300;

// The signing-time attribute of the one SignerInfo of `cms_der`, if any.
std::optional<std::time_t> CmsSigningTime(std::string_view cms_der) {
  const auto* p = reinterpret_cast<const unsigned char*>(cms_der.data());
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(cms_der.size())));
  if (!cms) return std::nullopt;
  STACK_OF(CMS_SignerInfo)* infos = CMS_get0_SignerInfos(cms.get());
  if (sk_CMS_SignerInfo_num(infos) != 1) return std::nullopt;
  CMS_SignerInfo* si = sk_CMS_SignerInfo_value(infos, 0);
  int idx = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
  if (idx < 0) return std::nullopt;
  X509_ATTRIBUTE* attr = CMS_signed_get_attr(si, idx);
  ASN1_TYPE* t = attr ? X509_ATTRIBUTE_get0_type(attr, 0) : nullptr;
  if (t == nullptr || (t->type != V_ASN1_UTCTIME && t->type != V_ASN1_GENERALIZEDTIME)) {
    return std::nullopt;
  }
  struct tm tm {};
  if (ASN1_TIME_to_tm(t->value.utctime, &tm) != 1) return std::nullopt;
  return timegm(&tm);
}

// "" when `t` (the receipt's `what`) lies between the document's sending
// (`sent`, less the skew) and now (plus the skew); else why not.
std::string ReceiptTimeProblem(std::string_view what, std::time_t t, std::time_t sent,
                               std::time_t now) {
  if (t + kReceiptClockSkew < sent) {
    return std::string(what) + " " + storage::Rfc3339Utc(t) +
           " is before the document was sent at " + storage::Rfc3339Utc(sent);
  }
  if (t > now + kReceiptClockSkew) {
    return std::string(what) + " " + storage::Rfc3339Utc(t) + " is in the future (now " +
           storage::Rfc3339Utc(now) + ", " + std::to_string(kReceiptClockSkew) +
           " s of clock skew allowed)";
  }
  return "";
}

// The manifest of `doc`'s document-sent entry. FailedPrecondition when the
// document was not sent from this appliance (final); Unavailable, with
// "archive: ...", when the archive cannot be read (retried).
Result<storage::Manifest> SentManifest(Exchange& ex, const std::string& doc) {
  auto sent = ex.SentSeq(doc);
  if (!sent) {
    return Err(Status::FailedPrecondition("document " + doc + " was not sent from this appliance"));
  }
  auto mtext = ex.archive().ReadEntryFile(*sent, "manifest.json");
  if (!mtext) return Err(Status::Unavailable("archive: " + mtext.error().message()));
  auto manifest = storage::ParseManifest(*mtext, "entry " + std::to_string(*sent));
  if (!manifest) return Err(Status::Unavailable("archive: " + manifest.error().message()));
  return manifest;
}

}  // namespace

std::unique_ptr<PeerTransport> MakeHttpsTransport(PeerTlsFiles files) {
  return std::make_unique<HttpsTransport>(std::move(files));
}

// ---- the worker ------------------------------------------------------------

Status DeliveryIndex::Consume(uint64_t seq, std::string_view, const storage::Manifest& m) {
  const std::string id = m.Field("id");
  switch (m.kind) {
    case storage::EntryKind::kDocumentReceived:
      received.emplace(id, std::make_pair(seq, m.Field("issuer")));
      break;
    case storage::EntryKind::kDeliveryReceipt:
      if (m.Field("receipt_type") == "read-notice") {
        notices.emplace(std::make_pair(id, m.Field("recipient")), seq);
      } else if (m.Field("receipt_type") == "delivery-receipt") {
        receipts.emplace(std::make_pair(id, m.Field("recipient")), seq);
      }
      break;
    case storage::EntryKind::kDeliveryAttempts: {
      int64_t last = std::strtoll(m.Field("last_attempt_id").c_str(), nullptr, 10);
      attempts_cursor = std::max(attempts_cursor, last);
      break;
    }
    default:
      break;
  }
  scanned = seq;
  return Status::Ok();
}

Result<std::unique_ptr<DeliveryWorker>> DeliveryWorker::Create(
    DeliveryOptions options, ExchangeProvider exchange, std::unique_ptr<PeerTransport> transport) {
  if (options.union_id.empty() || options.policy == nullptr || !exchange || !transport ||
      options.threads < 1 || options.poll_millis < 1) {
    return Err(Status::InvalidArgument(
        "delivery: union_id, policy, an exchange provider, a transport, threads >= 1 and "
        "poll_millis >= 1 are required"));
  }
  std::unique_ptr<DeliveryWorker> w(new DeliveryWorker());
  if (options.trust != nullptr) {
    w->trust_ = options.trust;
  } else {
    auto own = SharedTrust::Create(options.trust_anchor_files, {});
    if (!own) return Err(own.error().WithContext("delivery trust anchors"));
    w->own_trust_ = std::move(*own);
    w->trust_ = w->own_trust_.get();
  }
  ClearOpenSslErrors();
  w->options_ = std::move(options);
  w->provider_ = std::move(exchange);
  w->transport_ = std::move(transport);
  w->index_ = std::make_unique<Index>();
  return w;
}

DeliveryWorker::~DeliveryWorker() { Stop(); }

void DeliveryWorker::SeedIndex(std::unique_ptr<DeliveryIndex> index) {
  std::lock_guard lock(index_mu_);
  if (index) index_ = std::move(index);
}

void DeliveryWorker::Start() {
  std::lock_guard lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  threads_.emplace_back([this] { Dispatch(); });
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { Work(); });
}

void DeliveryWorker::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  // The dispatcher first (it may be queueing what it just leased), then the
  // workers: they finish what was leased (at most one job each, since the
  // dispatcher leases only for free workers) and exit.
  if (!threads_.empty()) threads_.front().join();
  {
    std::lock_guard lock(mu_);
    workers_stop_ = true;
  }
  work_cv_.notify_all();
  for (size_t i = 1; i < threads_.size(); ++i) threads_[i].join();
  threads_.clear();
  if (Exchange* ex = exchange_.load()) {
    Status s = FlushAttempts(*ex, true);
    if (!s.ok()) Log(LogLevel::kWarn, "delivery attempts not archived", "error=" + JsonString(s.message()));
  }
  Log(LogLevel::kInfo, "delivery stopped");
}

void DeliveryWorker::Wake() {
  {
    std::lock_guard lock(mu_);
    ++wake_seq_;
  }
  cv_.notify_all();
}

void DeliveryWorker::NoteError(const std::string& e) {
  std::lock_guard lock(error_mu_);
  last_error_ = e;
}

Result<Exchange*> DeliveryWorker::GetExchange() {
  if (Exchange* ex = exchange_.load()) return ex;
  auto ex = provider_();
  if (!ex) return Err(ex.error());
  exchange_.store(*ex);
  return *ex;
}

Result<size_t> DeliveryWorker::PruneDelivered() {
  if (options_.keep_delivered_millis <= 0) return size_t{0};
  auto ex = GetExchange();
  if (!ex) return Err(ex.error());
  int64_t cursor;
  {
    std::lock_guard lock(index_mu_);
    if (Status s = RefreshLocked(**ex); !s.ok()) return Err(s);
    cursor = index_->attempts_cursor;
  }
  auto n = (*ex)->outbox().PruneDelivered(NowMillis() - options_.keep_delivered_millis, cursor,
                                          kPruneBatch);
  if (n && *n > 0) pruned_ += *n;
  return n;
}

void DeliveryWorker::Dispatch() {
  int64_t last_flush_check = 0;
  int64_t last_prune = 0;
  bool prune_more = false;  // the last prune batch was full
  for (;;) {
    uint64_t seen;
    int free;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      seen = wake_seq_;
      free = options_.threads - busy_;
    }
    bool more = false;  // every free worker got a job: more may be due
    auto ex = GetExchange();
    if (ex && free > 0) {
      auto jobs = (*ex)->outbox().Lease(static_cast<size_t>(free), options_.worker_name);
      if (!jobs) {
        NoteError("outbox: " + jobs.error().message());
        Log(LogLevel::kWarn, "delivery lease failed", "error=" + JsonString(jobs.error().message()));
      } else if (!jobs->empty()) {
        more = jobs->size() == static_cast<size_t>(free);
        {
          std::lock_guard lock(mu_);
          busy_ += static_cast<int>(jobs->size());
          for (storage::Job& j : *jobs) queue_.push_back(std::move(j));
        }
        work_cv_.notify_all();
      }
    }
    if (ex) {
      int64_t now = NowMillis();
      if (now - last_flush_check >= 1000) {
        last_flush_check = now;
        Status s = FlushAttempts(**ex, false);
        if (!s.ok()) NoteError("attempts: " + s.message());
      }
      // One short prune transaction per round at most: leases and
      // submissions go on between batches.
      if (options_.keep_delivered_millis > 0 &&
          (prune_more || now - last_prune >= options_.prune_interval_millis)) {
        last_prune = now;
        auto n = PruneDelivered();
        prune_more = n && *n == kPruneBatch;
        if (!n) {
          NoteError("outbox prune: " + n.error().message());
          Log(LogLevel::kWarn, "outbox prune failed", "error=" + JsonString(n.error().message()));
        }
        more = more || prune_more;
      }
    }
    std::unique_lock lock(mu_);
    if (busy_ >= options_.threads) {
      // Every worker is busy: lease again when one is free (or a flush is due).
      cv_.wait_for(lock, std::chrono::milliseconds(1000),
                   [&] { return stopping_ || busy_ < options_.threads; });
    } else if (!more) {
      // Without an Exchange (signer down at start) look again less often.
      int wait = ex ? options_.poll_millis : std::max(options_.poll_millis, 1000);
      cv_.wait_for(lock, std::chrono::milliseconds(wait),
                   [&] { return stopping_ || wake_seq_ != seen; });
    }
  }
}

void DeliveryWorker::Work() {
  for (;;) {
    storage::Job job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return workers_stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing leased is left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    // Jobs are queued only after the dispatcher got the Exchange.
    Handle(*exchange_.load(), job);
    {
      std::lock_guard lock(mu_);
      --busy_;
    }
    cv_.notify_all();
  }
}

Result<size_t> DeliveryWorker::RunOnce(bool flush_attempts) {
  auto ex = GetExchange();
  if (!ex) return Err(ex.error());
  auto jobs = (*ex)->outbox().Lease(1000, options_.worker_name + "-once");
  if (!jobs) return Err(jobs.error());
  for (const storage::Job& j : *jobs) Handle(**ex, j);
  if (flush_attempts) {
    Status s = FlushAttempts(**ex, true);
    if (!s.ok()) return Err(s);
  }
  return jobs->size();
}

void DeliveryWorker::Handle(Exchange& ex, const storage::Job& job) {
  std::pair<Outcome, std::string> r;
  switch (job.key.channel) {
    case storage::Channel::kAppliance:
      r = DeliverBundle(ex, job);
      break;
    case storage::Channel::kNotice:
      r = SendNotice(ex, job);
      break;
    case storage::Channel::kEmail:
      r = SendMail(ex, job);
      break;
    case storage::Channel::kWebhook: {
      if (!options_.webhook) {
        r = {Outcome::kRetry, "webhook notifications are not configured on this appliance"};
        break;
      }
      WebhookResult w = options_.webhook->Deliver(*options_.policy->Current(), job, NowMillis() / 1000);
      r = {w.outcome == WebhookOutcome::kDelivered ? Outcome::kDelivered
           : w.outcome == WebhookOutcome::kRefused ? Outcome::kRefused
                                                   : Outcome::kRetry,
           std::move(w.detail)};
      break;
    }
    default:
      r = {Outcome::kRefused, "channel " + std::string(storage::ChannelName(job.key.channel)) +
                                  " is not delivered by this appliance"};
  }
  Status s;
  std::string kv = "document=" + JsonString(job.key.document_id) +
                   " recipient=" + JsonString(job.key.recipient) + " channel=" +
                   std::string(storage::ChannelName(job.key.channel)) +
                   " attempt=" + std::to_string(job.attempt);
  switch (r.first) {
    case Outcome::kDelivered:
      s = ex.outbox().Succeeded(job, r.second);
      if (job.key.channel == storage::Channel::kNotice) ++notices_sent_;
      else ++delivered_;
      if (job.key.channel == storage::Channel::kAppliance) CountReceipt("received");
      Log(LogLevel::kInfo, "delivered", kv + " receipt=" + JsonString(r.second));
      break;
    case Outcome::kRefused:
      s = ex.outbox().Failed(job, r.second, false);
      ++refused_;
      NoteError(r.second);
      Log(LogLevel::kWarn, "delivery refused", kv + " error=" + JsonString(r.second));
      break;
    case Outcome::kRetry:
      s = ex.outbox().Failed(job, r.second, true);
      ++retries_;
      NoteError(r.second);
      Log(LogLevel::kWarn, "delivery will be retried", kv + " error=" + JsonString(r.second));
      break;
    case Outcome::kUnreachable:
      s = ex.outbox().Unreachable(job, r.second);
      ++retries_;
      ++unreachable_;
      NoteError(r.second);
      Log(LogLevel::kWarn, "recipient unreachable: its jobs wait for the next probe",
          kv + " error=" + JsonString(r.second));
      break;
  }
  if (!s.ok()) {
    // The lease expired meanwhile (another attempt owns the job now): the
    // receipt, if any, is archived and the next attempt finds it.
    NoteError("outbox: " + s.message());
    Log(LogLevel::kWarn, "delivery outcome not recorded", kv + " error=" + JsonString(s.message()));
  }
}

Status DeliveryWorker::RefreshLocked(Exchange& ex) {
  Index& ix = *index_;
  const uint64_t size = ex.archive().size();
  for (uint64_t seq = ix.scanned + 1; seq <= size; ++seq) {
    auto text = ex.archive().ReadEntryFile(seq, "manifest.json");
    if (!text) return text.error().WithContext("entry " + std::to_string(seq));
    auto m = storage::ParseManifest(*text, "entry " + std::to_string(seq));
    if (!m) return m.error();
    if (Status s = ix.Consume(seq, *text, *m); !s.ok()) return s;
  }
  return Status::Ok();
}

Result<X509Ptr> DeliveryWorker::PeerSeal(const std::string& union_id, const std::string& cms_der,
                                         std::time_t at) {
  auto policy = options_.policy->Current();
  const policies::Union* u = policy->FindUnion(union_id);
  if (u == nullptr) {
    return Err(Status::FailedPrecondition("union " + union_id + " is not in the registry"));
  }
  if (!u->has_seal) {
    return Err(Status::FailedPrecondition("the registry names no seal for union " + union_id));
  }
  auto parsed = crypto::ExistingSignature::Parse(cms_der, "signature of " + union_id);
  if (!parsed) return Err(parsed.error());
  if (parsed->signers().size() != 1 || !parsed->signers()[0].cert) {
    return Err(Status::DataError("the signature of " + union_id +
                                 " must have one signer and carry its certificate"));
  }
  X509* cert = parsed->signers()[0].cert.get();
  // The certificates the CMS carries (the seal's intermediates) are offered
  // for path building as untrusted certificates, never as anchors: a seal
  // under an intermediate CA validates through it to verify.trust_anchors.
  X509StackPtr embedded;
  {
    const auto* p = reinterpret_cast<const unsigned char*>(cms_der.data());
    CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(cms_der.size())));
    if (cms) embedded.reset(CMS_get1_certs(cms.get()));  // null when there are none
  }
  // A receipt dated ahead of our clock is judged now, not at its claim.
  const std::time_t now = std::time(nullptr);
  if (at > now) at = now;
  std::shared_ptr<const TrustSnapshot> snap = trust_->Current();
  const crypto::TrustStore& store = snap->verifier->trust();
  crypto::PathResult path =
      store.Validate(cert, embedded.get(), at, crypto::Usage::kDocumentSigning);
  if (!path.ok() && path.reason == crypto::Reason::kCrlOutdated && at < now) {
    // The CRL held may be newer than the receipt (a redelivered stored
    // receipt): then revocation is judged with it now, and the seal's own
    // validity period at the receipt's time.
    crypto::PathResult later =
        store.Validate(cert, embedded.get(), now, crypto::Usage::kDocumentSigning);
    if (later.ok()) {
      if (X509_cmp_time(X509_get0_notBefore(cert), &at) > 0) {
        path.sub_indication = crypto::SubIndication::kNotYetValid;
        path.reason = crypto::Reason::kCertNotYetValid;
        path.detail = "certificate is not yet valid at the receipt's time";
      } else if (X509_cmp_time(X509_get0_notAfter(cert), &at) < 0) {
        path.sub_indication = crypto::SubIndication::kOutOfBoundsNoPoe;
        path.reason = crypto::Reason::kCertExpired;
        path.detail = "certificate has expired at the receipt's time";
      } else {
        path = std::move(later);
      }
    }
  }
  ClearOpenSslErrors();
  if (!path.ok()) {
    std::string why = "the seal certificate \"" + crypto::DisplayName(cert) + "\" of " +
                      union_id + " is not valid at " + storage::Rfc3339Utc(at) + ": " +
                      std::string(crypto::SubIndicationName(path.sub_indication)) + " (" +
                      std::string(crypto::ReasonName(path.reason)) + ": " + path.detail + ")";
    if (path.sub_indication == crypto::SubIndication::kTryLater) {
      return Err(Status::Unavailable(why));
    }
    return Err(Status::PermissionDenied(why));
  }
  auto id = policies::IdentityFromCertificate(cert, path.chain.get());
  if (!id) return Err(id.error());
  if (!IdentityMatches(u->seal, *id, *policy)) {
    return Err(Status::FailedPrecondition("signed by \"" + id->display_name +
                                          "\", which is not the seal of " + union_id +
                                          " in the registry"));
  }
  return X509Ptr(X509_dup(cert));
}

std::pair<DeliveryWorker::Outcome, std::string> DeliveryWorker::DeliverBundle(
    Exchange& ex, const storage::Job& job) {
  const std::string& doc = job.key.document_id;
  const std::string& rcpt = job.key.recipient;
  auto manifest = SentManifest(ex, doc);
  if (!manifest) {
    return {manifest.error().code() == Code::kFailedPrecondition ? Outcome::kRefused
                                                                  : Outcome::kRetry,
            manifest.error().message()};
  }
  const std::string sha = manifest->Field("content_sha256");
  {
    // Archived by an earlier attempt whose completion was lost (crash,
    // expired lease): done, nothing is sent again.
    std::lock_guard lock(index_mu_);
    if (Status s = RefreshLocked(ex); !s.ok()) return {Outcome::kRetry, "archive: " + s.message()};
    auto it = index_->receipts.find({doc, rcpt});
    if (it != index_->receipts.end()) return {Outcome::kDelivered, std::to_string(it->second)};
  }
  auto policy = options_.policy->Current();
  const policies::Union* u = policy->FindUnion(rcpt);
  if (u == nullptr) return {Outcome::kRefused, "union " + rcpt + " is not in the registry"};
  if (u->endpoint.empty()) {
    // No way to reach it until a policy update names one: like a peer that
    // is down, one probe per backoff period, the rest deferred.
    return {Outcome::kUnreachable, "the registry names no endpoint for union " + rcpt};
  }
  // The bundle: its bytes from the cache of small bundles, or its file,
  // made again from the archive when it is missing or not complete
  // (daemon/bundle_rebuild.h). Posted from memory or streamed from the file.
  auto bundle = ex.Bundle(doc);
  if (!bundle) return {Outcome::kRetry, "bundle of " + doc + ": " + bundle.error().message()};
  static const std::string kNoBody;
  const std::string& bundle_body = bundle->bytes ? *bundle->bytes : kNoBody;

  auto resp = transport_->Post(u->endpoint, "/api/v1/inbox", kBundleType, bundle_body,
                               bundle->path, {});
  if (!resp) return {TransportOutcomeOf<Outcome>(resp.error()), resp.error().message()};
  if (resp->status == 409) {
    // The recipient holds another checkpoint of ours: prove that both are
    // states of one log, then send again (once).
    auto from = ProblemInteger(resp->body, "from_size");
    auto to = ProblemInteger(resp->body, "to_size");
    if (!from || !to || *from == 0 || *from >= *to || *to > ex.archive().size()) {
      return {Outcome::kRetry, "409 without a usable from_size/to_size: " + ProblemText(*resp)};
    }
    auto proof = ex.archive().ConsistencyProof(*from, *to);
    if (!proof) return {Outcome::kRetry, "consistency proof: " + proof.error().message()};
    std::string raw;
    for (const crypto::merkle::Hash& h : *proof) {
      raw.append(reinterpret_cast<const char*>(h.data()), h.size());
    }
    client::Headers h = {{"Sealpost-Consistency-Proof", std::to_string(*from) + ":" +
                                                            std::to_string(*to) + ":" +
                                                            Base64Encode(raw)}};
    resp = transport_->Post(u->endpoint, "/api/v1/inbox", kBundleType, bundle_body,
                            bundle->path, h);
    if (!resp) return {TransportOutcomeOf<Outcome>(resp.error()), resp.error().message()};
    if (resp->status == 409) {
      return {Outcome::kRetry, "409 again after the consistency proof: " + ProblemText(*resp)};
    }
  }
  if (resp->status != 200) {
    std::string why = "HTTP " + std::to_string(resp->status) + ": " + ProblemText(*resp);
    return {IsFinalRefusal(resp->status) ? Outcome::kRefused : Outcome::kRetry, why};
  }

  // The receipt: verified against the recipient's seal of the registry.
  const std::string source = "receipt from " + rcpt;
  auto members = StringObject(resp->body, {"receipt", "signature"}, source);
  if (!members) return {Outcome::kRetry, members.error().message()};
  auto json = Base64Decode((*members)["receipt"]);
  auto sig = Base64Decode((*members)["signature"]);
  if (!json || !sig || json->size() > crypto::kReceiptMaxBytes ||
      sig->size() > crypto::kReceiptSignatureMaxBytes) {
    return {Outcome::kRetry, source + ": receipt or signature is not base64 within the limits"};
  }
  crypto::SignedReceipt signed_receipt{std::move(*json), std::move(*sig)};
  auto claimed = crypto::ParseDeliveryReceipt(signed_receipt.json, source);
  if (!claimed) return {Outcome::kRetry, claimed.error().message()};
  auto seal = PeerSeal(rcpt, signed_receipt.signature, claimed->received_at);
  if (!seal) {
    // A seal that is revoked, expired or without a path will not become
    // valid by asking again (a redelivery answers with the stored receipt).
    return {seal.error().code() == Code::kPermissionDenied ? Outcome::kRefused : Outcome::kRetry,
            source + " refused: " + seal.error().message()};
  }
  crypto::ReceiptExpectation expect{doc, sha, rcpt, seal->get()};
  auto receipt = crypto::VerifyDeliveryReceipt(signed_receipt, expect, source);
  if (!receipt) return {Outcome::kRetry, receipt.error().message()};
  // Its time (received_at and the CMS signing-time) must lie between our
  // sending and now: a receipt dated before we sent the document, or far
  // ahead of our clock, is refused like a receipt of a revoked seal (final:
  // a redelivery gets the same stored receipt).
  {
    auto sent = crypto::ParseRfc3339(manifest->time);
    if (!sent) return {Outcome::kRetry, "archive: entry " + std::to_string(manifest->seq) +
                                            " has no readable time"};
    const std::time_t now = std::time(nullptr);
    std::string why = ReceiptTimeProblem("its received_at", receipt->received_at, *sent, now);
    if (std::optional<std::time_t> st = CmsSigningTime(signed_receipt.signature);
        why.empty() && st) {
      why = ReceiptTimeProblem("its signing-time", *st, *sent, now);
    }
    if (!why.empty()) return {Outcome::kRefused, source + " refused: " + why};
  }

  // Archive it once per (document, recipient). The index lock is not held
  // across the append, so receipts of several threads share a commit.
  const std::pair<std::string, std::string> pair{doc, rcpt};
  {
    std::lock_guard lock(index_mu_);
    if (Status s = RefreshLocked(ex); !s.ok()) return {Outcome::kRetry, "archive: " + s.message()};
    auto it = index_->receipts.find(pair);
    if (it != index_->receipts.end()) return {Outcome::kDelivered, std::to_string(it->second)};
    if (!index_->archiving.insert(pair).second) {
      return {Outcome::kRetry, "a receipt of this delivery is being archived by another attempt"};
    }
  }
  storage::EntryInput e;
  e.kind = storage::EntryKind::kDeliveryReceipt;
  e.refers_to = manifest->seq;
  e.fields = {{"id", doc},
              {"receipt_type", "delivery-receipt"},
              {"recipient", rcpt},
              {"received_at", storage::Rfc3339Utc(receipt->received_at)}};
  // (No content_sha256 field: the audit takes it as describing a `content`
  // file of this entry. The hash is in receipt.json.)
  e.files = {{"receipt.json", signed_receipt.json}, {"receipt.json.p7s", signed_receipt.signature}};
  auto appended = ex.archive().Append(std::move(e));
  std::lock_guard lock(index_mu_);
  index_->archiving.erase(pair);
  if (!appended) return {Outcome::kRetry, "archive: " + appended.error().message()};
  index_->receipts.emplace(pair, appended->seq);
  return {Outcome::kDelivered, std::to_string(appended->seq)};
}

std::pair<DeliveryWorker::Outcome, std::string> DeliveryWorker::SendMail(Exchange& ex,
                                                                        const storage::Job& job) {
  const std::string& doc = job.key.document_id;
  const std::string& rcpt = job.key.recipient;
  if (!options_.email) {
    return {Outcome::kRetry, "no email section in the configuration: mail cannot be sent"};
  }
  const EmailDeliveryOptions& mo = *options_.email;
  auto manifest = SentManifest(ex, doc);
  if (!manifest) {
    return {manifest.error().code() == Code::kFailedPrecondition ? Outcome::kRefused
                                                                  : Outcome::kRetry,
            manifest.error().message()};
  }

  auto policy = options_.policy->Current();
  std::string to;
  if (const policies::Union* u = policy->FindUnion(rcpt)) {
    if (u->email.empty()) return {Outcome::kRetry, "the registry names no email for union " + rcpt};
    to = u->email;
  } else if (crypto::IsMailAddress(rcpt)) {
    to = rcpt;
  } else {
    return {Outcome::kRefused, "union " + rcpt + " is not in the registry"};
  }
  if (!crypto::IsMailAddress(to)) {
    return {Outcome::kRefused, "the email address of " + rcpt + " is not valid: " + to};
  }

  crypto::DocumentMail mail;
  mail.from = mo.from;
  mail.to = {to};
  mail.document_id = doc;
  const std::string issuer = manifest->Field("issuer");
  const policies::Union* self = policy->FindUnion(issuer);
  mail.from_name = self != nullptr ? self->name : "";
  mail.issuer = self != nullptr ? self->name + " (" + issuer + ")" : issuer;
  const std::string type = manifest->Field("type");
  const policies::DocumentType* t = policy->FindType(type);
  mail.type = t != nullptr ? t->name : type;
  mail.subject = manifest->Field("subject");
  mail.reference = manifest->Field("reference");
  mail.issued_at = manifest->Field("issued_at");
  mail.verify_url = mo.verify_url;
  auto source = ex.Bundle(doc);
  if (!source) return {Outcome::kRetry, "bundle of " + doc + ": " + source.error().message()};
  if (source->bytes) {
    mail.bundle = *source->bytes;
  } else {
    auto bundle = ReadFile(source->path, 1ull << 31);
    if (!bundle) {
      return {Outcome::kRetry, "bundle " + source->path + ": " + bundle.error().message()};
    }
    mail.bundle = std::move(*bundle);
  }
  // One Message-ID per (document, recipient): a resent mail is the same
  // message to the recipient's client.
  auto rh = crypto::DigestBytes(EVP_sha256(), rcpt);
  mail.message_id = doc + "." + (rh ? HexEncode(*rh).substr(0, 12) : std::string("0")) + "@" +
                    mo.from.substr(mo.from.rfind('@') + 1);

  const ExchangeOptions& eo = ex.options();
  auto built = crypto::BuildDocumentMail(*eo.signer, eo.seal_key, mail);
  if (!built) return {Outcome::kRetry, "mail: " + built.error().message()};
  auto accepted = client::SendMail(mo.smtp, mo.from, mail.to, built->message);
  if (!accepted) {
    if (accepted.error().code() == Code::kPermissionDenied) {
      return {Outcome::kRefused, accepted.error().message()};
    }
    return {Outcome::kRetry, accepted.error().message()};
  }
  return {Outcome::kDelivered,
          "smtp:" + (accepted->queue_id.empty() ? built->message_id : accepted->queue_id)};
}

std::pair<DeliveryWorker::Outcome, std::string> DeliveryWorker::SendNotice(
    Exchange&, const storage::Job& job) {
  auto policy = options_.policy->Current();
  const policies::Union* u = policy->FindUnion(job.key.recipient);
  if (u == nullptr) {
    return {Outcome::kRefused, "union " + job.key.recipient + " is not in the registry"};
  }
  if (u->endpoint.empty()) {
    return {Outcome::kUnreachable, "the registry names no endpoint for union " + job.key.recipient};
  }
  auto resp = transport_->Post(u->endpoint, "/api/v1/notices", "application/json", job.payload,
                               "", {});
  if (!resp) return {TransportOutcomeOf<Outcome>(resp.error()), resp.error().message()};
  if (resp->status == 200) return {Outcome::kDelivered, ""};
  std::string why = "HTTP " + std::to_string(resp->status) + ": " + ProblemText(*resp);
  return {IsFinalRefusal(resp->status) ? Outcome::kRefused : Outcome::kRetry, why};
}

Status DeliveryWorker::FlushAttempts(Exchange& ex, bool force) {
  std::lock_guard flush(flush_mu_);
  int64_t cursor;
  {
    std::lock_guard lock(index_mu_);
    if (Status s = RefreshLocked(ex); !s.ok()) return s;
    cursor = index_->attempts_cursor;
  }
  for (;;) {
    auto atts = ex.outbox().FinishedAttemptsAfter(cursor, kAttemptsPerEntry);
    if (!atts) return atts.error();
    if (atts->empty()) return Status::Ok();
    if (!force && atts->size() < kAttemptsPerEntry &&
        NowMillis() - atts->front().finished_at < options_.attempts_flush_millis) {
      return Status::Ok();
    }
    std::string json = "[";
    for (const storage::Attempt& a : *atts) {
      if (json.size() > 1) json += ",\n";
      json += "{\"attempt\":" + std::to_string(a.id) + ",\"channel\":" +
              JsonString(storage::ChannelName(a.key.channel)) +
              ",\"document_id\":" + JsonString(a.key.document_id) +
              ",\"error\":" + JsonString(a.error) +
              ",\"finished_at_ms\":" + std::to_string(a.finished_at) +
              ",\"number\":" + std::to_string(a.number) +
              ",\"recipient\":" + JsonString(a.key.recipient) +
              ",\"result\":" + JsonString(a.result) +
              ",\"started_at_ms\":" + std::to_string(a.started_at) +
              ",\"worker\":" + JsonString(a.worker) + "}";
    }
    json += "]\n";
    storage::EntryInput e;
    e.kind = storage::EntryKind::kDeliveryAttempts;
    e.fields = {{"first_attempt_id", std::to_string(atts->front().id)},
                {"last_attempt_id", std::to_string(atts->back().id)},
                {"count", std::to_string(atts->size())}};
    e.files = {{"attempts.json", json}};
    auto appended = ex.archive().Append(std::move(e));
    if (!appended) return appended.error().WithContext("delivery-attempts entry");
    ++attempt_entries_;
    cursor = atts->back().id;
    {
      std::lock_guard lock(index_mu_);
      index_->attempts_cursor = std::max(index_->attempts_cursor, cursor);
    }
    if (atts->size() < kAttemptsPerEntry) return Status::Ok();
  }
}

Status DeliveryWorker::NoteOpened(const std::string& document_id, const std::string& role) {
  if (!IsRole(role)) return Status::InvalidArgument("reader role '" + role + "' is not valid");
  auto ex = GetExchange();
  if (!ex) return ex.error();
  std::lock_guard serial(notice_mu_);
  uint64_t received_seq = 0, notice_seq = 0;
  std::string sender;
  {
    std::lock_guard lock(index_mu_);
    if (Status s = RefreshLocked(**ex); !s.ok()) return s;
    auto it = index_->received.find(document_id);
    if (it == index_->received.end()) {
      return Status::NotFound("no document " + document_id + " was received here");
    }
    received_seq = it->second.first;
    sender = it->second.second;
    auto n = index_->notices.find({document_id, options_.union_id});
    if (n != index_->notices.end()) notice_seq = n->second;
  }
  storage::JobKey key{document_id, sender, storage::Channel::kNotice};
  auto state = (*ex)->outbox().State(key);
  if (state) return Status::Ok();  // already queued or sent: first open only
  if (state.error().code() != Code::kNotFound) return state.error();
  if (notice_seq != 0) {
    // Archived, no job: either queued and since pruned (delivered before
    // the prune's cutoff, so archived before it too) or archived by a call
    // that did not get to queue it. Only the latter is queued now.
    auto pruned_before = (*ex)->outbox().PrunedBefore();
    if (!pruned_before) return pruned_before.error();
    if (*pruned_before > 0) {
      auto m = (*ex)->archive().ReadEntryFile(notice_seq, "manifest.json");
      if (!m) return m.error();
      auto manifest = storage::ParseManifest(*m, "entry " + std::to_string(notice_seq));
      if (!manifest) return manifest.error();
      auto at = crypto::ParseRfc3339(manifest->time);
      if (!at) return at.error().WithContext("entry " + std::to_string(notice_seq));
      if (static_cast<int64_t>(*at) * 1000 < *pruned_before) return Status::Ok();
    }
  }

  crypto::SignedReceipt notice;
  if (notice_seq != 0) {
    // Archived by an earlier call that did not get to queue it.
    auto j = (*ex)->archive().ReadEntryFile(notice_seq, "notice.json");
    if (!j) return j.error();
    auto s = (*ex)->archive().ReadEntryFile(notice_seq, "notice.json.p7s");
    if (!s) return s.error();
    notice = {std::move(*j), std::move(*s)};
  } else {
    const ExchangeOptions& eo = (*ex)->options();
    crypto::ReadNotice n;
    n.document_id = document_id;
    n.recipient = options_.union_id;
    n.reader_role = role;
    n.read_at = std::time(nullptr);
    auto signed_notice = crypto::SignReadNotice(*eo.signer, eo.seal_key, n);
    if (!signed_notice) return signed_notice.error().WithContext("read notice");
    notice = std::move(*signed_notice);
    storage::EntryInput e;
    e.kind = storage::EntryKind::kDeliveryReceipt;
    e.refers_to = received_seq;
    e.fields = {{"id", document_id},
                {"receipt_type", "read-notice"},
                {"recipient", options_.union_id},
                {"sender", sender},
                {"reader_role", role},
                {"read_at", storage::Rfc3339Utc(n.read_at)}};
    e.files = {{"notice.json", notice.json}, {"notice.json.p7s", notice.signature}};
    auto appended = (*ex)->archive().Append(std::move(e));
    if (!appended) return appended.error().WithContext("read notice");
    std::lock_guard lock(index_mu_);
    index_->notices.emplace(std::make_pair(document_id, options_.union_id), appended->seq);
  }
  auto queued = (*ex)->outbox().Enqueue(key, NoticeBody(notice));
  if (!queued) return queued.error();
  Log(LogLevel::kInfo, "read notice queued",
      "document=" + JsonString(document_id) + " sender=" + JsonString(sender) +
          " role=" + JsonString(role));
  Wake();
  return Status::Ok();
}

std::expected<std::string, Problem> DeliveryWorker::ReceiveNotice(const std::string& peer,
                                                                   std::string_view body) {
  const std::string source = "read notice from " + peer;
  if (body.size() > kMaxNoticeBody) return std::unexpected(BadNotice(source + " is too large"));
  auto members = StringObject(body, {"notice", "signature"}, source);
  if (!members) return std::unexpected(BadNotice(members.error().message()));
  auto json = Base64Decode((*members)["notice"]);
  auto sig = Base64Decode((*members)["signature"]);
  if (!json || !sig || json->size() > crypto::kReceiptMaxBytes ||
      sig->size() > crypto::kReceiptSignatureMaxBytes) {
    return std::unexpected(BadNotice(source + ": notice or signature is not base64 within the limits"));
  }
  crypto::SignedReceipt signed_notice{std::move(*json), std::move(*sig)};
  auto parsed = crypto::ParseReadNotice(signed_notice.json, source);
  if (!parsed) return std::unexpected(BadNotice(parsed.error().message()));
  auto seal = PeerSeal(peer, signed_notice.signature, parsed->read_at);
  if (!seal) {
    Log(LogLevel::kWarn, "read notice refused",
        "peer=" + JsonString(peer) + " document=" + JsonString(parsed->document_id) +
            " reason=" + JsonString(seal.error().message()));
    if (seal.error().code() == Code::kUnavailable) {
      return std::unexpected(Problem{503, "unavailable", "Revocation cannot be checked now",
                                     "Chưa kiểm tra được tình trạng thu hồi",
                                     source + ": " + seal.error().message(),
                                     source + ": " + seal.error().message()});
    }
    return std::unexpected(BadNotice(source + ": " + seal.error().message()));
  }
  crypto::ReceiptExpectation expect{parsed->document_id, "", peer, seal->get()};
  auto notice = crypto::VerifyReadNotice(signed_notice, expect, source);
  if (!notice) return std::unexpected(BadNotice(notice.error().message()));

  auto ex = GetExchange();
  if (!ex) {
    return std::unexpected(Problem{503, "unavailable", "Archive unavailable",
                                   "Kho lưu trữ tạm thời không dùng được", ex.error().message(),
                                   ex.error().message()});
  }
  const std::string& doc = notice->document_id;
  storage::JobKey key{doc, peer, storage::Channel::kAppliance};
  auto state = (*ex)->outbox().State(key);
  bool pruned = false;  // delivered, then pruned: the archived receipt says so
  if (!state && state.error().code() == Code::kNotFound) {
    std::lock_guard lock(index_mu_);
    if (Status s = RefreshLocked(**ex); !s.ok()) {
      return std::unexpected(Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                                     s.message(), "Lỗi đọc kho lưu trữ."});
    }
    pruned = index_->receipts.count({doc, peer}) > 0;
  }
  if (!state && !pruned) {
    if (state.error().code() == Code::kNotFound) {
      return std::unexpected(Problem{404, "not-found", "No such delivery",
                                     "Không có lần gửi này",
                                     "No document " + doc + " was sent from here to " + peer + ".",
                                     "Không có văn bản " + doc + " nào được gửi từ đây tới " +
                                         peer + "."});
    }
    return std::unexpected(Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                                   state.error().message(), "Lỗi hàng đợi gửi."});
  }
  // Its time (read_at and the CMS signing-time) within the same bounds as a
  // delivery receipt's: not before we sent the document, not after now.
  {
    auto manifest = SentManifest(**ex, doc);
    if (!manifest) {
      return std::unexpected(Problem{503, "unavailable", "Archive unavailable",
                                     "Kho lưu trữ tạm thời không dùng được",
                                     manifest.error().message(), manifest.error().message()});
    }
    auto sent = crypto::ParseRfc3339(manifest->time);
    const std::time_t now = std::time(nullptr);
    std::string why = sent ? ReceiptTimeProblem("its read_at", notice->read_at, *sent, now)
                           : "the document-sent entry has no readable time";
    if (std::optional<std::time_t> st = CmsSigningTime(signed_notice.signature);
        why.empty() && st) {
      why = ReceiptTimeProblem("its signing-time", *st, *sent, now);
    }
    if (!why.empty()) {
      Log(LogLevel::kWarn, "read notice refused",
          "peer=" + JsonString(peer) + " document=" + JsonString(doc) +
              " reason=" + JsonString(why));
      return std::unexpected(BadNotice(source + " refused: " + why));
    }
  }
  std::lock_guard serial(notice_mu_);
  bool known = false;
  {
    std::lock_guard lock(index_mu_);
    if (Status s = RefreshLocked(**ex); !s.ok()) {
      return std::unexpected(Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                                     s.message(), "Lỗi đọc kho lưu trữ."});
    }
    known = index_->notices.count({doc, peer}) > 0;
  }
  if (!known) {
    auto sent = (*ex)->SentSeq(doc);
    storage::EntryInput e;
    e.kind = storage::EntryKind::kDeliveryReceipt;
    e.refers_to = sent ? *sent : 0;
    e.fields = {{"id", doc},
                {"receipt_type", "read-notice"},
                {"recipient", peer},
                {"sender", options_.union_id},
                {"reader_role", notice->reader_role},
                {"read_at", storage::Rfc3339Utc(notice->read_at)}};
    e.files = {{"notice.json", signed_notice.json}, {"notice.json.p7s", signed_notice.signature}};
    auto appended = (*ex)->archive().Append(std::move(e));
    if (!appended) {
      return std::unexpected(Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                                     appended.error().message(), "Không lưu được thông báo."});
    }
    std::lock_guard lock(index_mu_);
    index_->notices.emplace(std::make_pair(doc, peer), appended->seq);
    ++notices_received_;
  }
  Status marked = (*ex)->outbox().MarkRead(key, static_cast<int64_t>(notice->read_at) * 1000);
  // A job pruned meanwhile: the archived notice is the record.
  if (!marked.ok() && !(pruned && marked.code() == Code::kNotFound)) {
    return std::unexpected(Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                                   marked.message(), "Lỗi hàng đợi gửi."});
  }
  Log(LogLevel::kInfo, "read notice recorded",
      "document=" + JsonString(doc) + " reader=" + JsonString(peer) + (known ? " repeat=1" : ""));
  return std::string("{\"status\":\"recorded\"}\n");
}

DeliveryStatus DeliveryWorker::Snapshot() {
  DeliveryStatus s;
  {
    std::lock_guard lock(mu_);
    s.state = stopping_ ? "stopped" : (exchange_.load() == nullptr ? "starting" : "running");
  }
  s.delivered = delivered_;
  s.refused = refused_;
  s.retries = retries_;
  s.unreachable = unreachable_;
  s.notices_sent = notices_sent_;
  s.notices_received = notices_received_;
  s.attempt_entries = attempt_entries_;
  s.pruned = pruned_;
  {
    std::lock_guard lock(error_mu_);
    s.last_error = last_error_;
  }
  if (Exchange* ex = exchange_.load()) {
    auto m = ex->outbox().Metrics();
    if (m) {
      s.outbox_ok = true;
      s.outbox = *m;
    }
  }
  return s;
}

std::string DeliveryHealthJson(const DeliveryStatus& s) {
  std::string o = "{\"state\":" + JsonString(s.state);
  o += ",\"outbox\":";
  if (s.outbox_ok) {
    o += "{\"queued\":" + std::to_string(s.outbox.queued) +
         ",\"due\":" + std::to_string(s.outbox.due) +
         ",\"delivering\":" + std::to_string(s.outbox.delivering) +
         ",\"delivered\":" + std::to_string(s.outbox.delivered) +
         ",\"refused\":" + std::to_string(s.outbox.refused) +
         ",\"failed\":" + std::to_string(s.outbox.failed) +
         ",\"oldest_due_age_seconds\":" + std::to_string(s.outbox.oldest_due_age_millis / 1000) +
         ",\"deferred\":" + std::to_string(s.outbox.deferred) +
         ",\"peers_down\":" + std::to_string(s.outbox.peers_down) +
         ",\"pruned\":" + std::to_string(s.pruned) + "}";
  } else {
    o += "null";
  }
  o += ",\"last_error\":" + JsonString(s.last_error) + "}";
  return o;
}

std::string DeliveryMetricsText(const DeliveryStatus& s) {
  std::string out;
  auto gauge = [&](const char* name, const char* type, const char* help, const std::string& v,
                   const std::string& labels = "") {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    out += std::string(name) + labels + " " + v + "\n";
  };
  gauge("sealpost_delivery_running", "gauge", "1 while the delivery worker runs.",
        s.state == "running" ? "1" : "0");
  gauge("sealpost_delivery_receipts_total", "counter", "Deliveries completed with a verified receipt.",
        std::to_string(s.delivered));
  gauge("sealpost_delivery_refused_total", "counter", "Deliveries refused (final).",
        std::to_string(s.refused));
  gauge("sealpost_delivery_retries_total", "counter", "Delivery attempts to be retried.",
        std::to_string(s.retries));
  gauge("sealpost_delivery_unreachable_total", "counter",
        "Delivery attempts that could not reach the recipient (it is then marked down).",
        std::to_string(s.unreachable));
  gauge("sealpost_read_notices_sent_total", "counter", "Read notices delivered to senders.",
        std::to_string(s.notices_sent));
  gauge("sealpost_read_notices_received_total", "counter", "Read notices archived from recipients.",
        std::to_string(s.notices_received));
  gauge("sealpost_outbox_pruned_total", "counter",
        "Delivered outbox jobs forgotten after delivery.keep_delivered_days (since start).",
        std::to_string(s.pruned));
  if (s.outbox_ok) {
    out += "# HELP sealpost_outbox_jobs Outbox jobs by state.\n# TYPE sealpost_outbox_jobs gauge\n";
    for (auto [state, v] : {std::pair{"queued", s.outbox.queued}, std::pair{"due", s.outbox.due},
                            std::pair{"delivering", s.outbox.delivering},
                            std::pair{"delivered", s.outbox.delivered},
                            std::pair{"refused", s.outbox.refused},
                            std::pair{"failed", s.outbox.failed}}) {
      out += std::string("sealpost_outbox_jobs{state=\"") + state + "\"} " + std::to_string(v) + "\n";
    }
    gauge("sealpost_outbox_deferred_jobs", "gauge",
          "Queued jobs of recipients that are down (deferred, not attempted).",
          std::to_string(s.outbox.deferred));
    gauge("sealpost_outbox_peers_down", "gauge", "Recipients marked down (unreachable).",
          std::to_string(s.outbox.peers_down));
    gauge("sealpost_outbox_oldest_due_age_seconds", "gauge",
          "Age of the oldest due outbox job (0 when none).",
          std::to_string(static_cast<double>(s.outbox.oldest_due_age_millis) / 1000.0));
  }
  return out;
}

}  // namespace sealpost::daemon
