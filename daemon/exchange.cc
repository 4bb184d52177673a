#include "daemon/exchange.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"
#include "base/log.h"
#include "base/strings.h"
#include "crypto/bundle.h"
#include "crypto/cades_sign.h"
#include "crypto/certs.h"
#include "crypto/digest.h"
#include "crypto/path.h"
#include "daemon/bundle_cache.h"
#include "daemon/bundle_rebuild.h"
#include "daemon/metrics.h"
#include "daemon/webhook.h"
#include "daemon/policy_update.h"
#include "policies/reference.h"
#include "policies/verdict.h"
#include "storage/entry.h"
#include "storage/reader.h"

namespace sealpost::daemon {

namespace {

Problem Internal(const std::string& what) {
  return Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                 "The submission could not be completed: " + what,
                 "Không hoàn tất được việc gửi văn bản: " + what};
}

Problem SignerUnavailable(const std::string& what) {
  return Problem{503, "signer-unavailable", "Seal unavailable", "Con dấu tạm thời không dùng được",
                 "The union seal cannot be used now (" + what + "); try again later.",
                 "Hiện không dùng được con dấu của công đoàn (" + what + "); hãy thử lại sau."};
}

Problem SignatureInvalid(const std::string& en, const std::string& vi) {
  return Problem{422, "officer-signature-invalid", "Officers' signature not valid",
                 "Chữ ký của cán bộ không hợp lệ", en, vi};
}

// The Signer's failure as the problem to answer with: the seal is out of
// reach (signer process gone, token out) -> 503, anything else -> 500.
Problem SignerProblem(const Status& s) {
  if (s.code() == Code::kUnavailable) return SignerUnavailable(s.message());
  return Internal("seal: " + s.message());
}

Result<std::string> NewUuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return Err(OpenSslStatus(Code::kInternal, "RAND_bytes"));
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  std::string hex = HexEncode(std::string_view(reinterpret_cast<const char*>(b), sizeof b));
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

std::string Join(const std::vector<std::string>& v, char sep) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : std::string(1, sep)) + s;
  return out;
}

int YearOf(std::string_view rfc3339) {
  if (rfc3339.size() < 4) return 0;
  int y = 0;
  for (char c : rfc3339.substr(0, 4)) {
    if (c < '0' || c > '9') return 0;
    y = y * 10 + (c - '0');
  }
  return y;
}

// Appends `cert` as PEM to `out` unless its DER was already added.
void AddPem(X509* cert, std::vector<std::string>* seen_der, std::string* out) {
  if (cert == nullptr) return;
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len <= 0) return;
  OpenSslBytesPtr owned(der);
  std::string d(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  for (const std::string& s : *seen_der) {
    if (s == d) return;
  }
  seen_der->push_back(d);
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return;
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  if (n > 0) out->append(data, static_cast<size_t>(n));
}

bool IsSelfSigned(X509* cert) {
  return X509_check_issued(cert, cert) == X509_V_OK;
}

// Every CRL of `files` (DER or PEM each) as one PEM text; "" for none.
Result<std::string> CrlsPem(const std::vector<std::string>& files) {
  std::string out;
  for (const std::string& f : files) {
    auto data = ReadFile(f, 64u << 20);
    if (!data) return Err(data.error().WithContext("CRL " + f));
    auto crls = crypto::ParseCrls(*data, f);
    if (!crls) return Err(crls.error());
    for (int i = 0; i < sk_X509_CRL_num(crls->get()); ++i) {
      BioPtr bio(BIO_new(BIO_s_mem()));
      if (!bio || PEM_write_bio_X509_CRL(bio.get(), sk_X509_CRL_value(crls->get(), i)) != 1) {
        return Err(OpenSslStatus(Code::kInternal, "PEM_write_bio_X509_CRL"));
      }
      char* p = nullptr;
      long n = BIO_get_mem_data(bio.get(), &p);
      if (n > 0) out.append(p, static_cast<size_t>(n));
    }
  }
  return out;
}

// One delivery job per recipient and channel (the union's `channels` in
// the policy). A recipient with no channel at all gets an appliance job: it
// waits (retried) until the registry names an endpoint, visibly, instead of
// being dropped. Appliance and email jobs carry the bundle's path, webhook
// jobs the document's facts (daemon/webhook.h).
std::vector<storage::Outbox::NewJob> JobsFor(const policies::Policy& policy,
                                             const WebhookDocument& note,
                                             const std::vector<std::string>& recipients,
                                             const std::string& bundle_path) {
  const std::string note_payload = WebhookPayload(note);
  std::vector<storage::Outbox::NewJob> jobs;
  for (const std::string& r : recipients) {
    const policies::Union* u = policy.FindUnion(r);
    std::vector<policies::Channel> channels;
    if (u != nullptr) channels = u->channels;
    if (channels.empty()) channels.push_back(policies::Channel::kAppliance);
    for (policies::Channel c : channels) {
      switch (c) {
        case policies::Channel::kAppliance:
          jobs.push_back({storage::JobKey{note.id, r, storage::Channel::kAppliance}, bundle_path});
          break;
        case policies::Channel::kEmail:
          jobs.push_back({storage::JobKey{note.id, r, storage::Channel::kEmail}, bundle_path});
          break;
        case policies::Channel::kWebhook:
          jobs.push_back({storage::JobKey{note.id, r, storage::Channel::kWebhook}, note_payload});
          break;
      }
    }
  }
  return jobs;
}

bool NotBefore(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec >= b.tv_nsec;
}

}  // namespace

Exchange::~Exchange() {
  if (archive_) AdvanceQueuedMark(true);
  const StepTimes t = step_times();
  if (t.submissions == 0) return;
  auto avg = [&](uint64_t ns) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(ns) / 1e6 / static_cast<double>(t.submissions));
    return std::string(buf);
  };
  Log(LogLevel::kInfo, "submission step times (mean ms per submission)",
      "submissions=" + std::to_string(t.submissions) + " verify_ms=" + avg(t.verify_ns) +
          " seal_ms=" + avg(t.seal_ns) + " append_ms=" + avg(t.append_ns) +
          " bundle_ms=" + avg(t.bundle_ns) + " outbox_ms=" + avg(t.outbox_ns));
  if (bundle_cache_) {
    const BundleCache::Stats c = bundle_cache_->stats();
    Log(LogLevel::kInfo, "bundle cache",
        "entries=" + std::to_string(c.entries) + " bytes=" + std::to_string(c.bytes) +
            " hits=" + std::to_string(c.hits) + " misses=" + std::to_string(c.misses) +
            " evictions=" + std::to_string(c.evictions));
  }
}

Result<std::unique_ptr<Exchange>> Exchange::Create(ExchangeOptions options) {
  if (options.signer == nullptr || options.policy == nullptr ||
      (options.verifier == nullptr && options.trust == nullptr) ||
      options.union_id.empty() || options.state_dir.empty() || options.seal_key.id.empty()) {
    return Err(Status::InvalidArgument(
        "exchange: union_id, state_dir, signer, seal_key, policy and trust (or verifier) are "
        "required"));
  }
  if (options.origin.empty()) options.origin = options.union_id + "/archive";
  std::unique_ptr<Exchange> ex(new Exchange());
  ::clock_gettime(CLOCK_REALTIME, &ex->started_);
  ex->options_ = std::move(options);
  const ExchangeOptions& o = ex->options_;
  if (::mkdir(o.state_dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return Err(Status::IoError("cannot create state directory " + o.state_dir + ": " +
                               std::strerror(errno)));
  }
  ex->bundle_dir_ = o.state_dir + "/bundles";
  if (o.memory_bundle_max_bytes > 0 && o.bundle_cache_bytes > 0) {
    ex->bundle_cache_ = std::make_unique<BundleCache>(o.bundle_cache_bytes);
  }
  if (::mkdir(ex->bundle_dir_.c_str(), 0750) != 0 && errno != EEXIST) {
    return Err(Status::IoError("cannot create bundle directory " + ex->bundle_dir_ + ": " +
                               std::strerror(errno)));
  }
  if (o.owns_state_dir) {
    // Temporary files of bundles being written when a process ended.
    if (DIR* d = ::opendir(ex->bundle_dir_.c_str())) {
      while (struct dirent* e = ::readdir(d)) {
        std::string_view n = e->d_name;
        if (n.find(".asics.tmp-") != std::string_view::npos || n.starts_with(".rebuild-")) {
          ::unlinkat(::dirfd(d), e->d_name, 0);
        }
      }
      ::closedir(d);
    }
  }
  ex->archive_dir_ = o.state_dir + "/archive";
  storage::ArchiveOptions ao;
  ao.origin = o.origin;
  ao.signer = o.signer;
  ao.seal_key = o.seal_key;
  struct stat st {};
  bool exists = ::stat((ex->archive_dir_ + "/HEAD").c_str(), &st) == 0;
  auto archive = exists ? storage::Archive::Open(ex->archive_dir_, ao)
                        : storage::Archive::Create(ex->archive_dir_, ao);
  if (!archive) return Err(archive.error().WithContext("archive " + ex->archive_dir_));
  ex->archive_ = std::move(*archive);
  storage::OutboxOptions oo = o.outbox;
  oo.path = o.state_dir + "/outbox.sqlite";
  auto outbox = storage::Outbox::Open(oo);
  if (!outbox) return Err(outbox.error().WithContext("outbox " + oo.path));
  ex->outbox_ = std::move(*outbox);
  if (o.owns_state_dir) {
    auto ended = ex->outbox_->EndLeasesOfPreviousProcess(
        "abandoned: the process that held the lease ended");
    if (!ended) return Err(ended.error().WithContext("outbox " + oo.path));
    if (*ended > 0) {
      Log(LogLevel::kInfo, "outbox leases of a previous process ended",
          "jobs=" + std::to_string(*ended));
    }
  }
  // The documents sent and the reference counters, the Merkle leaves: from
  // the start-up pass when given, caught up here with the entries after it
  // (one reading of each manifest either way).
  {
    auto reader = storage::ArchiveReader::Open(ex->archive_dir_);
    if (!reader) return Err(reader.error().WithContext("reference counters"));
    std::shared_ptr<SentDocumentsScan> sent =
        o.sent_scan ? o.sent_scan : std::make_shared<SentDocumentsScan>(o.union_id);
    std::shared_ptr<LeafHashesScan> leaves =
        o.leaves_scan ? o.leaves_scan : std::make_shared<LeafHashesScan>();
    if (Status s = FeedManifests(**reader, {sent.get(), leaves.get()}); !s.ok()) {
      return Err(s.WithContext("reference counters"));
    }
    if (Status s = ex->LoadCounters(*sent); !s.ok()) return Err(s);
    // Fed by the archive's commits from here on (no reading back per
    // submission); declared after archive_, so it is destroyed first.
    auto evidence = ArchiveEvidence::Create(ex->archive_dir_, leaves->nodes(), ex->archive_.get());
    if (!evidence) return Err(evidence.error());
    ex->evidence_ = std::move(*evidence);
    if (o.owns_state_dir) {
      // Documents archived as sent whose jobs a crash left out (Submit
      // steps 9-11): queued now, before any new submission.
      if (Status s = ex->RecoverUnqueued(sent->covered()); !s.ok()) {
        Log(LogLevel::kError, "sent documents not checked for delivery jobs (next start tries again)",
            "error=" + JsonString(s.message()));
      }
    }
  }
  ex->options_.sent_scan.reset();
  ex->options_.leaves_scan.reset();
  return ex;
}

Status SentDocumentsScan::Consume(uint64_t seq, std::string_view, const storage::Manifest& m) {
  covered_ = seq;
  if (m.kind != storage::EntryKind::kDocumentSent) return Status::Ok();
  if (m.Field("issuer") != union_id_) return Status::Ok();
  sent_[m.Field("id")] = seq;
  if (m.Field("reference").empty()) return Status::Ok();
  CounterKey key{m.Field("type"), YearOf(m.Field("issued_at"))};
  const std::string n = m.Field("reference_number");
  if (n.empty()) {
    ++legacy_[key];
    return Status::Ok();
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
  if (ec != std::errc() || end != n.data() + n.size() || v == 0) {
    return Status::DataError("reference counters: entry " + std::to_string(seq) +
                             " has reference_number '" + n + "', not a positive number");
  }
  if (!numbered_[key].insert(v).second) {
    return Status::DataError("reference counters: entry " + std::to_string(seq) +
                             " repeats reference number " + n + " of type " + key.first + " in " +
                             std::to_string(key.second));
  }
  return Status::Ok();
}

Status Exchange::LoadCounters(const SentDocumentsScan& scan) {
  {
    std::lock_guard<std::mutex> lock(ids_mu_);
    sent_ = scan.sent_;
  }
  std::lock_guard<std::mutex> lock(counters_mu_);
  counters_.clear();
  const auto& legacy = scan.legacy_;
  const auto& numbered = scan.numbered_;
  for (const auto& [key, count] : legacy) counters_[key].last = count;
  for (const auto& [key, numbers] : numbered) {
    Counter& c = counters_[key];
    const uint64_t legacy_last = c.last;
    c.last = std::max(c.last, *numbers.rbegin());
    // Numbers taken by a process that ended before their entries were
    // archived: handed out again first.
    for (uint64_t v = legacy_last + 1; v < c.last; ++v) {
      if (!numbers.count(v)) c.freed.insert(v);
    }
    if (!c.freed.empty()) {
      Log(LogLevel::kInfo, "reference numbers not archived are handed out again",
          "type=" + JsonString(key.first) + " year=" + std::to_string(key.second) +
              " count=" + std::to_string(c.freed.size()) +
              " first=" + std::to_string(*c.freed.begin()));
    }
  }
  return Status::Ok();
}

uint64_t Exchange::TakeNumber(const CounterKey& key) {
  std::lock_guard<std::mutex> lock(counters_mu_);
  Counter& c = counters_[key];
  if (!c.freed.empty()) {
    uint64_t n = *c.freed.begin();
    c.freed.erase(c.freed.begin());
    return n;
  }
  return ++c.last;
}

void Exchange::ReturnNumber(const CounterKey& key, uint64_t number) {
  std::lock_guard<std::mutex> lock(counters_mu_);
  Counter& c = counters_[key];
  if (number == c.last) {
    // The newest number: simply not handed out (and any freed numbers
    // just below it go with it, so `last` stays the largest one in use).
    --c.last;
    while (c.last > 0 && c.freed.count(c.last)) c.freed.erase(c.last--);
  } else {
    c.freed.insert(number);
  }
}

// A number taken for one submission: returned unless Keep() was called
// (its entry is durable).
class Exchange::Reservation {
 public:
  Reservation(Exchange* ex, CounterKey key) : ex_(ex), key_(std::move(key)) {
    number_ = ex_->TakeNumber(key_);
  }
  ~Reservation() {
    if (!kept_) ex_->ReturnNumber(key_, number_);
  }
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  uint64_t number() const { return number_; }
  void Keep() { kept_ = true; }

 private:
  Exchange* ex_;
  CounterKey key_;
  uint64_t number_ = 0;
  bool kept_ = false;
};

Exchange::StepTimes Exchange::step_times() const {
  StepTimes t;
  t.submissions = t_count_.load();
  t.verify_ns = t_verify_.load();
  t.seal_ns = t_seal_.load();
  t.append_ns = t_append_.load();
  t.bundle_ns = t_bundle_.load();
  t.outbox_ns = t_outbox_.load();
  return t;
}

Result<std::string> Exchange::BundlePath(const std::string& id) const {
  std::lock_guard<std::mutex> lock(ids_mu_);
  if (sent_.find(id) == sent_.end()) return Err(Status::NotFound("no document " + id));
  return bundle_dir_ + "/" + id + ".asics";
}

Result<uint64_t> Exchange::SentSeq(const std::string& id) const {
  std::lock_guard<std::mutex> lock(ids_mu_);
  auto it = sent_.find(id);
  if (it == sent_.end()) return Err(Status::NotFound("no document " + id));
  return it->second;
}

crypto::PathResult Exchange::SealPath(const std::shared_ptr<const TrustSnapshot>& trust,
                                      const crypto::Verifier* verifier, X509* seal,
                                      std::time_t at) {
  // The same inputs give the same result: reused within the second it was
  // made for, with the same trust snapshot (held, so its address cannot be
  // reused by another) and the same seal certificate.
  std::lock_guard<std::mutex> lock(seal_path_mu_);
  if (seal_path_ && seal_path_->verifier == verifier && seal_path_->at == at &&
      X509_cmp(seal_path_->seal.get(), seal) == 0) {
    return seal_path_->result;
  }
  crypto::PathResult r =
      verifier->trust().Validate(seal, nullptr, at, crypto::Usage::kDocumentSigning);
  if (X509_up_ref(seal) == 1) {
    seal_path_ = KeptSealPath{trust, verifier, X509Ptr(seal), at, r};
  }
  return r;
}

// A submission between its archive append and its jobs' commit (see
// Submit): the archive's size before the append, held in floors_.
class Exchange::QueueFloor {
 public:
  explicit QueueFloor(Exchange* ex) : ex_(ex) {
    std::lock_guard<std::mutex> lock(ex_->mark_mu_);
    it_ = ex_->floors_.insert(ex_->archive_->size());
  }
  ~QueueFloor() {
    if (kept_) return;
    std::lock_guard<std::mutex> lock(ex_->mark_mu_);
    ex_->floors_.erase(it_);
  }
  QueueFloor(const QueueFloor&) = delete;
  QueueFloor& operator=(const QueueFloor&) = delete;
  // The jobs were not committed: the floor stays until the process ends.
  void Keep() { kept_ = true; }

 private:
  Exchange* ex_;
  std::multiset<uint64_t>::iterator it_;
  bool kept_ = false;
};

void Exchange::AdvanceQueuedMark(bool force) {
  uint64_t mark = 0;
  {
    std::lock_guard<std::mutex> lock(mark_mu_);
    if (!mark_known_) return;  // RecoverUnqueued has not run (or failed)
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - mark_written_at_ < std::chrono::seconds(60)) return;
    mark = archive_->size();
    if (!floors_.empty()) mark = std::min(mark, *floors_.begin());
    if (mark <= mark_written_) return;
    mark_written_at_ = now;
    mark_written_ = mark;
  }
  // Documents up to `mark` all had their jobs committed.
  if (Status s = WriteFileAtomic(options_.state_dir + "/sent-queued-through",
                                 std::to_string(mark) + "\n", 0640);
      !s.ok()) {
    Log(LogLevel::kWarn, "unqueued-document mark not written (checked again next start)",
        "error=" + JsonString(s.message()));
  }
}

Status Exchange::BuildSubmittedBundle(uint64_t seq, const std::string& id,
                                      const std::string& content_path,
                                      const std::string& doc_json, const std::string& doc_p7s,
                                      const std::string& content_p7s, const std::string& certs_pem,
                                      const std::string& crls_pem, const std::string& bundle_path,
                                      std::time_t now, bool in_memory) {
  auto evidence = evidence_->Get(seq);
  if (!evidence) return evidence.error().WithContext("archive evidence");
  crypto::BundleParts parts;
  parts.content_path = content_path;
  parts.document_json = doc_json;
  parts.document_json_p7s = doc_p7s;
  parts.content_p7s = content_p7s;
  parts.certs_pem = certs_pem;
  parts.crls_pem = crls_pem;
  SetArchiveEvidence(seq, std::move(*evidence), &parts);
  if (!in_memory) return crypto::BuildBundle(parts, bundle_path, now, bundle_sync_);
  auto bytes = crypto::BuildBundleInMemory(parts, now);
  if (!bytes) return bytes.error();
  if (!bundle_cache_->Put(id, std::make_shared<const std::string>(std::move(*bytes)))) {
    // Larger than the whole cache: not kept; EnsureBundle makes the file
    // from the archive when a delivery needs it.
    Log(LogLevel::kWarn, "bundle larger than the bundle cache; made from the archive when needed",
        "id=" + id);
  }
  return Status::Ok();
}

Result<BundleSource> Exchange::Bundle(const std::string& id) {
  if (bundle_cache_) {
    if (auto bytes = bundle_cache_->Get(id)) {
      BundleSource b;
      b.bytes = std::move(bytes);
      return b;
    }
  }
  auto path = EnsureBundle(id);
  if (!path) return Err(path.error());
  BundleSource b;
  b.path = std::move(*path);
  return b;
}

Result<std::string> Exchange::EnsureBundle(const std::string& id) {
  auto seq = SentSeq(id);
  if (!seq) return Err(seq.error());
  const std::string path = bundle_dir_ + "/" + id + ".asics";
  auto current = [&]() -> Result<bool> {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return false;
      return Err(Status::IoError(path + ": " + std::strerror(errno)));
    }
    // Put in place (renamed: complete) by this process, which a power loss
    // would have ended: the bytes written are the bytes read.
    if (NotBefore(st.st_ctim, started_)) return true;
    {
      std::lock_guard<std::mutex> lock(rebuild_mu_);
      if (checked_.count(id)) return true;
    }
    Status c = CheckBundleFile(path);
    if (c.ok()) {
      std::lock_guard<std::mutex> lock(rebuild_mu_);
      checked_.insert(id);
      return true;
    }
    Log(LogLevel::kWarn, "bundle file not readable; rebuilding it from the archive",
        "id=" + id + " error=" + JsonString(c.message()));
    return false;
  };
  auto ok = current();
  if (!ok) return Err(ok.error());
  if (*ok) return path;
  std::lock_guard<std::mutex> lock(rebuild_mu_);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && NotBefore(st.st_ctim, started_)) return path;  // meanwhile
  if (Status s = RebuildBundle(archive_dir_, evidence_.get(), *seq, path, bundle_dir_); !s.ok()) {
    return Err(s);
  }
  checked_.erase(id);
  Log(LogLevel::kInfo, "bundle rebuilt from the archive",
      "id=" + id + " seq=" + std::to_string(*seq));
  return path;
}

Status Exchange::RecoverUnqueued(uint64_t covered) {
  // Documents up to the mark were all seen with their jobs queued (jobs
  // disappear only when the outbox prunes finished ones): only the entries
  // after it are looked at.
  const std::string mark_path = options_.state_dir + "/sent-queued-through";
  uint64_t from = 0;
  if (auto mark = ReadFile(mark_path, 64)) {
    std::string_view t = *mark;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.remove_suffix(1);
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), from);
    if (ec != std::errc() || end != t.data() + t.size() || from > covered) {
      Log(LogLevel::kWarn, "unqueued-document mark not usable; every sent document is checked",
          "file=" + JsonString(mark_path));
      from = 0;
    }
  } else if (mark.error().code() != Code::kNotFound) {
    Log(LogLevel::kWarn, "unqueued-document mark not readable; every sent document is checked",
        "error=" + JsonString(mark.error().message()));
  }
  std::vector<std::pair<uint64_t, std::string>> candidates;
  {
    std::lock_guard<std::mutex> lock(ids_mu_);
    for (const auto& [id, seq] : sent_) {
      if (seq > from && seq <= covered) candidates.emplace_back(seq, id);
    }
  }
  std::sort(candidates.begin(), candidates.end());
  bool all = true;
  size_t queued_docs = 0;
  std::unique_ptr<storage::ArchiveReader> reader;
  auto policy = options_.policy->Current();
  for (const auto& [seq, id] : candidates) {
    auto states = outbox_->States(id);
    if (!states) return states.error().WithContext("unqueued documents");
    if (!states->empty()) continue;
    if (!reader) {
      auto r = storage::ArchiveReader::Open(archive_dir_);
      if (!r) return r.error().WithContext("unqueued documents");
      reader = std::move(*r);
    }
    auto m = reader->ReadManifest(seq);
    if (!m) return m.error().WithContext("unqueued documents");
    const policies::DocumentType* type = policy->FindType(m->Field("type"));
    const policies::Union* self = policy->FindUnion(options_.union_id);
    WebhookDocument note;
    note.id = id;
    note.type = m->Field("type");
    note.type_name = type != nullptr ? type->name : note.type;
    note.subject = m->Field("subject");
    note.issuer = m->Field("issuer");
    note.issuer_name = self != nullptr ? self->name : note.issuer;
    note.reference = m->Field("reference");
    note.issued_at = m->Field("issued_at");
    const std::vector<std::string> recipients = SplitComma(m->Field("recipients"));
    // The bundle first (a crash may have come before it, or left it partial).
    auto bundle = EnsureBundle(id);
    if (!bundle) {
      // Queued all the same: the delivery worker tries the rebuild again.
      Log(LogLevel::kError, "bundle of an unqueued document not rebuilt",
          "id=" + id + " seq=" + std::to_string(seq) +
              " error=" + JsonString(bundle.error().message()));
    }
    const std::string bundle_path = bundle_dir_ + "/" + id + ".asics";
    auto q = outbox_->EnqueueBatch(JobsFor(*policy, note, recipients, bundle_path));
    if (!q) {
      Log(LogLevel::kError, "unqueued document not queued",
          "id=" + id + " seq=" + std::to_string(seq) +
              " error=" + JsonString(q.error().message()));
      all = false;
      continue;
    }
    ++queued_docs;
    Log(LogLevel::kWarn, "document archived as sent but not queued (the process ended); queued now",
        "id=" + id + " seq=" + std::to_string(seq) + " jobs=" + std::to_string(*q));
  }
  if (all) {
    {
      std::lock_guard<std::mutex> lock(mark_mu_);
      mark_known_ = true;
      mark_written_ = from;
    }
    AdvanceQueuedMark(true);
  }
  if (!candidates.empty()) {
    Log(LogLevel::kInfo, "sent documents checked for delivery jobs",
        "checked=" + std::to_string(candidates.size()) + " queued=" + std::to_string(queued_docs));
  }
  return Status::Ok();
}

std::expected<Submitted, Problem> Exchange::Submit(const SubmitRequest& req) {
  const ExchangeOptions& o = options_;
  using Clock = std::chrono::steady_clock;
  auto ns_since = [](Clock::time_point t) {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count());
  };
  const Clock::time_point t_start = Clock::now();
  auto policy = o.policy->Current();
  // One trust for the whole submission (CRLs fetched meanwhile apply to the next).
  std::shared_ptr<const TrustSnapshot> trust = o.trust ? o.trust->Current() : nullptr;
  const crypto::Verifier* verifier = trust ? &*trust->verifier : o.verifier;

  // 1. The content: size and SHA-256 (one pass).
  auto sha = crypto::DigestFile(req.content_path, {EVP_sha256()});
  if (!sha) return std::unexpected(Internal("content: " + sha.error().message()));
  struct stat cst {};
  if (::stat(req.content_path.c_str(), &cst) != 0) {
    return std::unexpected(Internal("content: " + std::string(std::strerror(errno))));
  }
  const std::string content_sha256 = HexEncode((*sha)[0]);
  const uint64_t content_size = static_cast<uint64_t>(cst.st_size);

  // 2. The officers' signature, verified against our trust (and CRLs).
  std::optional<crypto::ExistingSignature> officers;
  crypto::Report officer_report;
  if (!req.officer_signature.empty()) {
    auto der = crypto::DecodeSignature(req.officer_signature, "officers' signature");
    if (!der) {
      return std::unexpected(SignatureInvalid(der.error().message(),
                                              "Không đọc được chữ ký: " + der.error().message()));
    }
    auto report = verifier->VerifyFile(req.content_path, *der);
    if (report) CountVerification("submission", report->indication, report->sub_indication);
    if (!report) {
      return std::unexpected(SignatureInvalid(report.error().message(),
                                              "Không kiểm tra được chữ ký: " +
                                                  report.error().message()));
    }
    if (report->indication != crypto::Indication::kPassed) {
      std::string why;
      for (const crypto::SignerReport& s : report->signers) {
        if (s.indication != crypto::Indication::kPassed) {
          why = crypto::SignerSentence(s, Lang::kEn);
          break;
        }
      }
      std::string why_vi;
      for (const crypto::SignerReport& s : report->signers) {
        if (s.indication != crypto::Indication::kPassed) {
          why_vi = crypto::SignerSentence(s, Lang::kVi);
          break;
        }
      }
      return std::unexpected(SignatureInvalid("An officer's signature did not pass: " + why,
                                              "Chữ ký của một cán bộ không đạt: " + why_vi));
    }
    officer_report = std::move(*report);
    auto parsed = crypto::ExistingSignature::Parse(*der, "officers' signature");
    if (!parsed) {
      return std::unexpected(SignatureInvalid(parsed.error().message(),
                                              "Không đọc được chữ ký: " + parsed.error().message()));
    }
    officers.emplace(std::move(*parsed));
  }

  // 3. The seal certificate (the signer must be reachable).
  auto seal = o.signer->Certificate(o.seal_key);
  if (!seal) return std::unexpected(SignerProblem(seal.error()));

  // 4. The policy: issuer = this union, every officer who signed, and the
  // seal that is about to sign.
  const std::time_t now = o.now.value_or(std::time(nullptr));
  policies::DocumentFacts facts;
  facts.issuer = o.union_id;
  facts.type = req.type;
  facts.recipients = req.recipients;
  facts.size = content_size;
  facts.media_type = req.media_type;
  facts.time = static_cast<int64_t>(now);
  std::vector<policies::VerifiedSigner> signers;
  for (const crypto::SignerReport& s : officer_report.signers) {
    signers.push_back({s.certificate.get(), s.chain.get()});
  }
  // The seal's chain under our trust, so that a registry naming the seal by
  // subject under a trust anchor matches it (SPKI and issuer+serial do not
  // need it); a seal that does not chain keeps no chain and matches only
  // those forms.
  crypto::PathResult seal_path = SealPath(trust, verifier, seal->get(), now);
  signers.push_back({seal->get(), seal_path.ok() ? seal_path.chain.get() : nullptr});
  auto decision = policies::EvaluateVerifiedDocument(*policy, facts, signers);
  if (!decision) return std::unexpected(Internal("policy: " + decision.error().message()));
  if (!decision->allowed) {
    const policies::RuleResult* f = decision->FirstFailure();
    return std::unexpected(Problem{403, "policy-refused", "Refused by the federation policy",
                                   "Chính sách của liên đoàn không cho phép",
                                   f != nullptr ? f->en : "denied",
                                   f != nullptr ? f->vi : "bị từ chối"});
  }
  // 4b. A policy update (daemon/policy_update.h): checked before anything
  // is sealed or archived; applied here once the document is archived.
  std::shared_ptr<const policies::Policy> policy_update;
  if (req.type == kPolicyDocumentType) {
    auto next = CheckPolicyUpdate(*policy, o.union_id, req.content_path, o.union_id);
    if (!next) return std::unexpected(next.error());
    policy_update = std::move(*next);
  }
  const policies::DocumentType* type = policy->FindType(req.type);
  const policies::Union* self = policy->FindUnion(o.union_id);

  auto digest_alg = crypto::DigestAlgForKey(X509_get0_pubkey(seal->get()));
  if (!digest_alg) return std::unexpected(Internal("seal key: " + digest_alg.error().message()));

  const uint64_t verify_ns = ns_since(t_start);
  const Clock::time_point t_seal = Clock::now();

  // 5. The seal over the content (appended to the officers' SignedData):
  // it does not depend on the reference number, so it is made first.
  crypto::CadesSignOptions copts;
  copts.signing_time = now;
  // A SHA-256 seal (P-256) signs the digest step 1 made: the content is not
  // read a second time.
  auto md = *digest_alg == crypto::DigestAlg::kSha256
                ? std::move(sha)
                : crypto::DigestFile(req.content_path, {crypto::DigestAlgMd(*digest_alg)});
  if (!md) return std::unexpected(Internal("content: " + md.error().message()));
  Result<std::string> content_p7s =
      officers ? crypto::AppendSignature(*o.signer, o.seal_key, seal->get(), *digest_alg, (*md)[0],
                                         *officers, copts)
               : crypto::BuildDetachedSignature(*o.signer, o.seal_key, seal->get(), *digest_alg,
                                                (*md)[0], copts);
  if (!content_p7s) return std::unexpected(SignerProblem(content_p7s.error()));

  // 6. Reference number: reserved now, kept once the entry is durable,
  // handed out again first if this submission fails before that.
  const std::string issued_at = storage::Rfc3339Utc(now);
  const int year = YearOf(issued_at);
  std::string reference;
  std::optional<Reservation> number;
  if (type != nullptr && !type->reference_pattern.empty()) {
    number.emplace(this, CounterKey{req.type, year});
    auto ref = policies::FormatReference(type->reference_pattern, number->number(), year,
                                         self != nullptr ? self->code : o.union_id, req.type);
    if (!ref) return std::unexpected(Internal("reference: " + ref.error().message()));
    reference = std::move(*ref);
  }
  auto id = NewUuid();
  if (!id) return std::unexpected(Internal(id.error().message()));

  // 7. document.json and the seal over it.
  crypto::DocumentInfo info;
  info.id = *id;
  info.type = req.type;
  info.reference = reference;
  info.subject = req.subject;
  info.issuer = o.union_id;
  info.recipients = req.recipients;
  info.issued_at = issued_at;
  info.content_name = req.content_name;
  info.content_media_type = req.media_type;
  info.content_size = content_size;
  info.content_sha256 = content_sha256;
  info.policy_sha256 = policy->sha256;
  auto doc_json = crypto::SerializeDocumentJson(info);
  if (!doc_json) {
    return std::unexpected(Problem{400, "bad-metadata", "Bad document metadata",
                                   "Thông tin văn bản không hợp lệ", doc_json.error().message(),
                                   "Thông tin văn bản không hợp lệ: " + doc_json.error().message()});
  }
  auto doc_digest = crypto::DigestBytes(crypto::DigestAlgMd(*digest_alg), *doc_json);
  if (!doc_digest) return std::unexpected(Internal(doc_digest.error().message()));
  auto doc_p7s = crypto::BuildDetachedSignature(*o.signer, o.seal_key, seal->get(), *digest_alg,
                                                *doc_digest, copts);
  if (!doc_p7s) return std::unexpected(SignerProblem(doc_p7s.error()));
  const uint64_t seal_ns = ns_since(t_seal);

  // 8. certs.pem: the seal, every officer and their chains (not the anchors).
  std::string certs_pem;
  std::vector<std::string> seen;
  AddPem(seal->get(), &seen, &certs_pem);
  for (const crypto::SignerReport& s : officer_report.signers) {
    AddPem(s.certificate.get(), &seen, &certs_pem);
    if (s.chain) {
      for (int i = 0; i < sk_X509_num(s.chain.get()); ++i) {
        X509* c = sk_X509_value(s.chain.get(), i);
        if (!IsSelfSigned(c)) AddPem(c, &seen, &certs_pem);
      }
    }
  }

  // The CRLs the officers' signatures were checked with (the evidence an
  // audit needs for certificates that name a distribution point).
  auto crls_pem = trust ? Result<std::string>(trust->crls_pem) : CrlsPem(o.crl_files);
  if (!crls_pem) return std::unexpected(Internal(crls_pem.error().message()));

  // 9. The archive entry; the content goes from the spooled file into the
  // pack in pieces (never whole in memory).
  auto content_sha256_raw = HexDecode(content_sha256);
  if (!content_sha256_raw) {
    return std::unexpected(Internal("content sha256: " + content_sha256_raw.error().message()));
  }
  storage::EntryInput entry;
  entry.kind = storage::EntryKind::kDocumentSent;
  entry.fields = {{"id", info.id},
                  {"type", info.type},
                  {"reference", info.reference},
                  {"subject", info.subject},
                  {"issuer", info.issuer},
                  {"recipients", Join(info.recipients, ',')},
                  {"issued_at", info.issued_at},
                  {"content_name", info.content_name},
                  {"content_media_type", info.content_media_type},
                  {"content_size", std::to_string(info.content_size)},
                  {"content_sha256", info.content_sha256},
                  {"policy_sha256", info.policy_sha256}};
  // The number behind the reference, so that the counters (and numbers
  // freed by a process that ended mid-submission) are rebuilt exactly.
  if (number) entry.fields.emplace("reference_number", std::to_string(number->number()));
  entry.files = {{"certs.pem", certs_pem},
                 storage::EntryFile::FromPath("content", req.content_path, content_size,
                                              std::move(*content_sha256_raw)),
                 {"content.p7s", *content_p7s},
                 {"document.json", *doc_json},
                 {"document.json.p7s", *doc_p7s}};
  if (!crls_pem->empty()) {
    entry.files.push_back({"crls.pem", *crls_pem});
    std::sort(entry.files.begin(), entry.files.end(),
              [](const storage::EntryFile& a, const storage::EntryFile& b) { return a.name < b.name; });
  }
  if (Status v = storage::ValidateEntry(entry); !v.ok()) {
    return std::unexpected(Problem{400, "bad-metadata", "Bad document metadata",
                                   "Thông tin văn bản không hợp lệ", v.message(),
                                   "Thông tin văn bản không hợp lệ: " + v.message()});
  }
  // Entries after `floor` may be this document's, archived but not yet
  // queued: the mark (RecoverUnqueued) stays at or below it until the jobs
  // are committed (for good when they never are: the next start repairs).
  std::optional<QueueFloor> floor;
  floor.emplace(this);
  const Clock::time_point t_append = Clock::now();
  auto appended = archive_->Append(std::move(entry));
  const uint64_t append_ns = ns_since(t_append);
  if (!appended) {
    if (appended.error().code() == Code::kUnavailable) {
      return std::unexpected(SignerProblem(appended.error()));
    }
    return std::unexpected(Internal("archive: " + appended.error().message()));
  }
  if (number) number->Keep();
  {
    std::lock_guard<std::mutex> lock(ids_mu_);
    sent_[info.id] = appended->seq;
  }
  Log(LogLevel::kInfo, "document sealed",
      "id=" + info.id + " seq=" + std::to_string(appended->seq) +
          " reference=" + JsonString(reference) + " type=" + JsonString(info.type));

  TestKillPoint("sent-archived");

  // 10. The bundle: the entry, the archive's checkpoint at head and the
  // entry's inclusion proof in it. From here on the document is archived;
  // a failure is reported (500) and the entry stays: the bundle is rebuilt
  // from the archive when it is needed (EnsureBundle), the jobs are queued
  // at the next start (RecoverUnqueued).
  const Clock::time_point t_bundle = Clock::now();
  const std::string bundle_path = bundle_dir_ + "/" + info.id + ".asics";
  // A small bundle is made in memory and kept in the cache: no file, no
  // inode on the submission path (docs/decisions/0014). The estimate
  // counts every member but the few hundred bytes of evidence and headers.
  const uint64_t estimate = content_size + doc_json->size() + doc_p7s->size() +
                            content_p7s->size() + certs_pem.size() + crls_pem->size() + 4096;
  const bool in_memory = bundle_cache_ != nullptr && estimate <= o.memory_bundle_max_bytes &&
                         estimate <= bundle_cache_->max_bytes();
  if (Status b = BuildSubmittedBundle(appended->seq, info.id, req.content_path, *doc_json, *doc_p7s,
                                      *content_p7s, certs_pem, *crls_pem, bundle_path, now,
                                      in_memory);
      !b.ok()) {
    // The document is archived: its jobs are queued all the same, and the
    // delivery worker rebuilds the bundle from the archive (EnsureBundle).
    Log(LogLevel::kError, "bundle not built at submission; rebuilt when needed",
        "id=" + info.id + " error=" + JsonString(b.message()));
  }
  const uint64_t bundle_ns = ns_since(t_bundle);

  TestKillPoint("sent-bundled");

  // 11. One delivery job per recipient and channel, all in one transaction
  // (JobsFor). A crash before it commits is repaired at the next start
  // (RecoverUnqueued).
  WebhookDocument note;
  note.id = info.id;
  note.type = info.type;
  note.type_name = type != nullptr ? type->name : info.type;
  note.subject = info.subject;
  note.issuer = info.issuer;
  note.issuer_name = self != nullptr ? self->name : info.issuer;
  note.reference = info.reference;
  note.issued_at = info.issued_at;
  std::vector<storage::Outbox::NewJob> jobs = JobsFor(*policy, note, req.recipients, bundle_path);
  const Clock::time_point t_outbox = Clock::now();
  auto q = outbox_->EnqueueBatch(jobs);
  if (!q) {
    floor->Keep();
    return std::unexpected(Internal("outbox: " + q.error().message()));
  }
  floor.reset();
  AdvanceQueuedMark(false);
  const uint64_t outbox_ns = ns_since(t_outbox);

  if (policy_update) {
    TestKillPoint("policy-archived");
    auto applied = ApplyPolicyUpdate(o.policy, policy_update, req.content_path, o.state_dir,
                                     archive_.get(), info.id, appended->seq);
    if (!applied) {
      Log(LogLevel::kError, "policy document sent but not applied here",
          "id=" + info.id + " error=" + JsonString(applied.error().message()));
      return std::unexpected(Internal("the policy document " + info.id +
                                      " was archived and queued, but the new policy could not be "
                                      "put in force here: " + applied.error().message()));
    }
  }

  ++t_count_;
  t_verify_ += verify_ns;
  t_seal_ += seal_ns;
  t_append_ += append_ns;
  t_bundle_ += bundle_ns;
  t_outbox_ += outbox_ns;

  Submitted out;
  out.id = info.id;
  out.reference = reference;
  out.seq = appended->seq;
  out.issued_at = issued_at;
  out.content_sha256 = content_sha256;
  out.seal_subject = crypto::NameToUtf8(X509_get_subject_name(seal->get()));
  out.seal_serial = crypto::SerialHex(seal->get());
  if (!in_memory) out.bundle_path = bundle_path;
  out.recipients = req.recipients;
  return out;
}

}  // namespace sealpost::daemon
