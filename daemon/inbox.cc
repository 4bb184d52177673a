#include "daemon/inbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <openssl/evp.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"
#include "base/log.h"
#include "crypto/certs.h"
#include "crypto/digest.h"
#include "crypto/report.h"
#include "daemon/metrics.h"
#include "daemon/policy_update.h"
#include "policies/verdict.h"
#include "storage/entry.h"
#include "storage/reader.h"

namespace sealpost::daemon {

namespace {

Problem Internal(const std::string& what) {
  return Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                 "The delivery could not be received: " + what,
                 "Không nhận được văn bản gửi đến: " + what};
}

Problem BundleInvalid(const std::string& en, const std::string& vi) {
  return Problem{422, "bundle-invalid", "Bundle not valid", "Gói văn bản không hợp lệ", en, vi};
}

Problem PolicyRefused(const std::string& en, const std::string& vi) {
  return Problem{403, "policy-refused", "Refused by the policy", "Bị chính sách từ chối", en, vi};
}

Problem SignerUnavailable(const std::string& what) {
  return Problem{503, "signer-unavailable", "Seal unavailable", "Con dấu tạm thời không dùng được",
                 "The receipt cannot be sealed now (" + what + "); deliver again later.",
                 "Hiện không đóng dấu được biên nhận (" + what + "); hãy gửi lại sau."};
}

Problem StoreProblem(const Status& s, const std::string& what) {
  if (s.code() == Code::kUnavailable) return SignerUnavailable(s.message());
  return Internal(what + ": " + s.message());
}

bool MkDir(const std::string& path) { return ::mkdir(path.c_str(), 0750) == 0 || errno == EEXIST; }

std::string Join(const std::vector<std::string>& v, char sep) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : std::string(1, sep)) + s;
  return out;
}

// A union id as a file name: itself when plainly safe, else hex.
std::string SafeName(const std::string& id) {
  bool safe = !id.empty() && id.size() <= 100 && id[0] != '.';
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.')) {
      safe = false;
    }
  }
  return safe ? id : "x" + HexEncode(id).substr(0, 200);
}

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

// Does `cert` (with its verified chain) carry the identity `want`?
bool HasIdentity(const policies::Policy& policy, const policies::CertIdentity& want, X509* cert,
                 STACK_OF(X509)* chain) {
  auto id = policies::IdentityFromCertificate(cert, chain);
  if (!id) return false;
  switch (want.kind) {
    case policies::CertIdentity::Kind::kIssuerSerial:
      return want.issuer == id->issuer && want.serial == id->serial;
    case policies::CertIdentity::Kind::kSpkiSha256:
      return want.spki_sha256 == id->spki_sha256;
    case policies::CertIdentity::Kind::kSubjectUnderCa: {
      auto it = policy.anchor_index.find(want.ca);
      return it != policy.anchor_index.end() && want.subject == id->subject &&
             std::find(id->chain_sha256.begin(), id->chain_sha256.end(),
                       policy.anchors[it->second].sha256) != id->chain_sha256.end();
    }
  }
  return false;
}

// The first signer sentence that did not pass, in `lang`.
std::string FailedSigner(const crypto::Report& r, Lang lang) {
  for (const crypto::SignerReport& s : r.signers) {
    if (s.indication != crypto::Indication::kPassed) return crypto::SignerSentence(s, lang);
  }
  return "";
}

// Milliseconds since `t0`, one decimal, for the log line of a reception.
std::string MsSince(std::chrono::steady_clock::time_point t0) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f",
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return buf;
}

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19 || (s.size() > 1 && s[0] == '0')) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

Result<ConsistencyProofHeader> ParseConsistencyProofHeader(std::string_view value) {
  auto bad = [](const std::string& why) {
    return Err(Status::DataError(std::string(kConsistencyProofHeader) + ": " + why));
  };
  size_t c1 = value.find(':');
  size_t c2 = c1 == std::string_view::npos ? c1 : value.find(':', c1 + 1);
  if (c2 == std::string_view::npos) return bad("expected <from>:<to>:<base64>");
  ConsistencyProofHeader out;
  if (!ParseU64(value.substr(0, c1), &out.from) ||
      !ParseU64(value.substr(c1 + 1, c2 - c1 - 1), &out.to)) {
    return bad("sizes must be decimal numbers without sign or leading zeros");
  }
  if (out.from >= out.to) return bad("from must be smaller than to");
  std::string_view b64 = value.substr(c2 + 1);
  if (b64.size() > (kMaxConsistencyProofHashes * 32 + 2) / 3 * 4) {
    return bad("more than " + std::to_string(kMaxConsistencyProofHashes) + " hashes");
  }
  auto raw = Base64Decode(b64);
  if (!raw || Base64Encode(*raw) != b64) return bad("the proof is not canonical base64");
  if (raw->size() % crypto::merkle::kHashSize != 0) {
    return bad("the proof is not a sequence of 32-byte hashes");
  }
  for (size_t i = 0; i < raw->size(); i += crypto::merkle::kHashSize) {
    crypto::merkle::Hash h;
    std::memcpy(h.data(), raw->data() + i, h.size());
    out.hashes.push_back(h);
  }
  return out;
}

std::string FormatConsistencyProofHeader(const ConsistencyProofHeader& proof) {
  std::string raw;
  for (const crypto::merkle::Hash& h : proof.hashes) {
    raw.append(reinterpret_cast<const char*>(h.data()), h.size());
  }
  return std::to_string(proof.from) + ":" + std::to_string(proof.to) + ":" + Base64Encode(raw);
}

Inbox::~Inbox() = default;

std::time_t Inbox::Now() const { return options_.now.value_or(std::time(nullptr)); }

Result<std::unique_ptr<Inbox>> Inbox::Create(InboxOptions options) {
  if (options.archive == nullptr || options.signer == nullptr || options.policy == nullptr ||
      options.union_id.empty() || options.state_dir.empty() || options.seal_key.id.empty() ||
      (options.trust == nullptr && options.trust_anchors.empty())) {
    return Err(Status::InvalidArgument(
        "inbox: union_id, state_dir, archive, signer, seal_key, policy and trust anchors are "
        "required"));
  }
  std::unique_ptr<Inbox> in(new Inbox());
  in->options_ = std::move(options);
  in->dir_ = in->options_.state_dir + "/inbox";
  for (const std::string& d : {in->options_.state_dir, in->dir_, in->dir_ + "/peers",
                               in->dir_ + "/receipts", in->dir_ + "/tmp"}) {
    if (!MkDir(d)) {
      return Err(Status::IoError("cannot create directory " + d + ": " + std::strerror(errno)));
    }
  }
  if (in->options_.work_dir.empty()) in->options_.work_dir = in->dir_ + "/tmp";
  // The archive takes an entry's files in memory, up to its limit.
  in->options_.limits.max_content_bytes =
      std::min<uint64_t>(in->options_.limits.max_content_bytes, storage::kMaxEntryBytes - (1u << 20));

  in->anchors_.reset(sk_X509_new_null());
  in->crls_.reset(sk_X509_CRL_new_null());
  if (!in->anchors_ || !in->crls_) return Err(OpenSslStatus(Code::kInternal, "stack"));
  const std::vector<std::string> no_files;
  const bool own = in->options_.trust == nullptr;
  for (const std::string& f : own ? in->options_.trust_anchors : no_files) {
    auto certs = crypto::LoadCertificates(f);
    if (!certs) return Err(certs.error().WithContext("inbox trust anchors"));
    while (sk_X509_num(certs->get()) > 0) {
      X509* c = sk_X509_shift(certs->get());
      if (!sk_X509_push(in->anchors_.get(), c)) {
        X509_free(c);
        return Err(OpenSslStatus(Code::kInternal, "sk_X509_push"));
      }
    }
  }
  for (const std::string& f : own ? in->options_.crls : no_files) {
    auto crls = crypto::LoadCrls(f);
    if (!crls) return Err(crls.error().WithContext("inbox CRLs"));
    while (sk_X509_CRL_num(crls->get()) > 0) {
      X509_CRL* c = sk_X509_CRL_shift(crls->get());
      if (!sk_X509_CRL_push(in->crls_.get(), c)) {
        X509_CRL_free(c);
        return Err(OpenSslStatus(Code::kInternal, "sk_X509_CRL_push"));
      }
    }
  }
  SP_RETURN_IF_ERROR(in->Rebuild());
  return in;
}

Status ReceivedDocumentsScan::Consume(uint64_t seq, std::string_view, const storage::Manifest& m) {
  covered_ = seq;
  if (m.kind == storage::EntryKind::kDeliveryReceipt &&
      m.Field("receipt_type") == "delivery-receipt" && m.Field("recipient") == union_id_ &&
      !m.Field("sender").empty()) {
    receipt_entries_.emplace(m.Field("id"), seq);  // a receipt we issued
    return Status::Ok();
  }
  if (m.kind != storage::EntryKind::kDocumentReceived) return Status::Ok();
  ReceivedDocument d;
  d.id = m.Field("id");
  d.peer = m.Field("issuer");
  d.seq = seq;
  d.type = m.Field("type");
  d.reference = m.Field("reference");
  d.subject = m.Field("subject");
  d.issued_at = m.Field("issued_at");
  d.received_at = m.time;
  d.content_name = m.Field("content_name");
  d.content_media_type = m.Field("content_media_type");
  d.content_sha256 = m.Field("content_sha256");
  ParseU64(m.Field("content_size"), &d.content_size);
  if (d.id.empty() || d.peer.empty()) return Status::Ok();  // not written by the inbox
  const std::string peer = d.peer;
  if (received_.emplace(d.id, std::move(d)).second) order_.push_back(m.Field("id"));
  uint64_t size = 0;
  auto root = HexDecode(m.Field("sender_root"));
  if (!ParseU64(m.Field("sender_tree_size"), &size) || !root ||
      root->size() != crypto::merkle::kHashSize) {
    return Status::Ok();
  }
  InboxPeerState ps;
  ps.checkpoint.origin = m.Field("sender_origin");
  ps.checkpoint.size = size;
  std::memcpy(ps.checkpoint.root.data(), root->data(), root->size());
  ps.seq = seq;
  auto it = peers_.find(peer);
  if (it == peers_.end() || it->second.checkpoint.size < size) peers_[peer] = ps;
  return Status::Ok();
}

Status Inbox::Rebuild() {
  // From the start-up pass when given (caught up here with the entries
  // after it), else from every manifest.
  auto reader = storage::ArchiveReader::Open(options_.archive->dir());
  if (!reader) return reader.error().WithContext("inbox rebuild");
  std::shared_ptr<ReceivedDocumentsScan> scan =
      options_.scan ? std::move(options_.scan)
                    : std::make_shared<ReceivedDocumentsScan>(options_.union_id);
  options_.scan.reset();
  if (Status s = FeedManifests(**reader, {scan.get()}); !s.ok()) {
    return s.WithContext("inbox rebuild");
  }
  received_ = scan->received_;
  order_ = scan->order_;
  receipt_entries_ = scan->receipt_entries_;
  peers_ = scan->peers_;
  {
    // The checkpoint receipts are made over, while the reader is open.
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    checkpoint_.size = (*reader)->size();
    checkpoint_.body = (*reader)->checkpoint_body();
    checkpoint_.signature = (*reader)->checkpoint_signature();
  }
  // The per-peer files follow the archive (they are a cache of it).
  for (const auto& [peer, ps] : peers_) {
    auto body = crypto::SerializeCheckpoint(ps.checkpoint);
    if (!body) continue;
    std::string path = dir_ + "/peers/" + SafeName(peer) + ".checkpoint";
    auto old = ReadFile(path, crypto::kCheckpointMaxBytes);
    if (old && *old != *body) {
      Log(LogLevel::kWarn, "inbox peer state differs from the archive; the archive wins",
          "peer=" + JsonString(peer));
    }
    if (!old || *old != *body) {
      if (Status s = WriteFileAtomic(path, *body, 0640); !s.ok()) return s;
    }
  }
  // Alarms: "time\tpeer\tdocument_id\tdetail" lines.
  auto alarms = ReadFile(dir_ + "/alarms.log", 64u << 20);
  if (alarms) {
    size_t pos = 0;
    while (pos < alarms->size()) {
      size_t end = alarms->find('\n', pos);
      if (end == std::string::npos) break;  // a torn last line is ignored
      std::string line = alarms->substr(pos, end - pos);
      pos = end + 1;
      std::vector<std::string> parts;
      size_t s = 0;
      for (int i = 0; i < 3; ++i) {
        size_t t = line.find('\t', s);
        if (t == std::string::npos) break;
        parts.push_back(line.substr(s, t - s));
        s = t + 1;
      }
      if (parts.size() != 3) continue;
      alarms_.push_back(InboxAlarm{parts[0], parts[1], parts[2], line.substr(s)});
    }
  }
  return Status::Ok();
}

std::string Inbox::ReceiptPath(const std::string& id) const {
  auto d = crypto::DigestBytes(EVP_sha256(), id);
  return dir_ + "/receipts/" + (d ? HexEncode(*d) : SafeName(id));
}

void Inbox::RaiseAlarm(const std::string& peer, const std::string& id, const std::string& detail) {
  InboxAlarm a{storage::Rfc3339Utc(Now()), peer, id, detail};
  std::string line = OneLine(a.time) + "\t" + OneLine(a.peer) + "\t" + OneLine(a.document_id) +
                     "\t" + OneLine(a.detail) + "\n";
  int fd = ::open((dir_ + "/alarms.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  bool ok = fd >= 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
            ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  Log(LogLevel::kError, "ALARM: peer checkpoint inconsistent (forked history?)",
      "peer=" + JsonString(peer) + " document_id=" + JsonString(id) + " detail=" +
          JsonString(detail) + (ok ? "" : " alarm_file=\"not written\""));
  std::lock_guard<std::mutex> lock(stats_mu_);
  alarms_.push_back(std::move(a));
}

std::expected<InboxAccepted, Problem> Inbox::Refuse(const std::string& reason, Problem p,
                                                    const Delivery& d, const std::string& id) {
  Log(LogLevel::kWarn, "inbox refused",
      "peer=" + JsonString(d.peer) + " document_id=" + JsonString(id) + " status=" +
          std::to_string(p.status) + " reason=" + reason + " detail=" + JsonString(p.detail_en));
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++refused_[reason];
  return std::unexpected(std::move(p));
}

std::expected<crypto::SignedReceipt, Problem> Inbox::ReceiptFor(const ReceivedDocument& doc) {
  const std::string path = ReceiptPath(doc.id);
  auto json = ReadFile(path + ".json", crypto::kReceiptMaxBytes);
  auto sig = ReadFile(path + ".p7s", crypto::kReceiptSignatureMaxBytes);
  if (json && sig) {
    crypto::SignedReceipt stored{*json, *sig};
    auto old = crypto::ParseDeliveryReceipt(stored.json, "stored receipt " + path);
    if (!old) return std::unexpected(Internal(old.error().message()));
    crypto::DeliveryReceipt want = *old;
    want.document_id = doc.id;
    want.content_sha256 = doc.content_sha256;
    want.recipient = options_.union_id;
    auto again = crypto::IssueDeliveryReceipt(*options_.signer, options_.seal_key, want, stored);
    if (!again) return std::unexpected(Internal(again.error().message()));
    // Stored but not archived: the process ended in between, and the sender,
    // who got no answer, delivers again.
    if (auto a = ArchiveReceipt(doc, *again); !a) return std::unexpected(a.error());
    return *again;
  }
  // A new receipt over our checkpoint (one that includes the entry).
  auto checkpoint = CheckpointCovering(doc.seq);
  if (!checkpoint) return std::unexpected(Internal(checkpoint.error().message()));
  crypto::DeliveryReceipt r;
  r.document_id = doc.id;
  r.content_sha256 = doc.content_sha256;
  r.recipient = options_.union_id;
  r.received_at = Now();
  r.checkpoint = std::move(checkpoint->body);
  r.checkpoint_signature = std::move(checkpoint->signature);
  auto issued = crypto::IssueDeliveryReceipt(*options_.signer, options_.seal_key, r, std::nullopt);
  if (!issued) return std::unexpected(StoreProblem(issued.error(), "receipt"));
  // The signature first: a .json without its .p7s is never taken as stored.
  if (Status s = WriteFileAtomic(path + ".p7s", issued->signature, 0640); !s.ok()) {
    return std::unexpected(Internal("storing the receipt: " + s.message()));
  }
  if (Status s = WriteFileAtomic(path + ".json", issued->json, 0640); !s.ok()) {
    return std::unexpected(Internal("storing the receipt: " + s.message()));
  }
  if (auto a = ArchiveReceipt(doc, *issued); !a) return std::unexpected(a.error());
  return *issued;
}

Result<Inbox::SignedCheckpoint> Inbox::CheckpointCovering(uint64_t seq) {
  std::lock_guard<std::mutex> lock(checkpoint_mu_);
  if (checkpoint_.size < seq) {
    // The one kept is older than the entry: the head's, as the archive's
    // writer committed it (exact bytes, signed by the seal; an entry
    // acknowledged by Append is covered by it), without reading it back.
    if (auto head = options_.archive->signed_checkpoint(); head && head->size >= seq) {
      checkpoint_.size = head->size;
      checkpoint_.body = head->body;
      checkpoint_.signature = head->signature;
      return checkpoint_;
    }
  }
  if (checkpoint_.size < seq) {
    // Not in memory (never expected): read the head's. Opening a reader verifies the
    // checkpoint's signature, so it is done once per head needed, not per
    // receipt: receptions whose appends shared a commit share this one.
    auto reader = storage::ArchiveReader::Open(options_.archive->dir());
    if (!reader) return Err(reader.error().WithContext("archive reader"));
    if ((*reader)->size() < seq) {
      return Err(Status::Internal("entry " + std::to_string(seq) + " is not at the head of " +
                                  options_.archive->dir()));
    }
    checkpoint_.size = (*reader)->size();
    checkpoint_.body = (*reader)->checkpoint_body();
    checkpoint_.signature = (*reader)->checkpoint_signature();
    ++checkpoint_reads_;
  }
  return checkpoint_;
}

std::expected<void, Problem> Inbox::ArchiveReceipt(const ReceivedDocument& doc,
                                                   const crypto::SignedReceipt& receipt) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (receipt_entries_.count(doc.id)) return {};
  }
  auto r = crypto::ParseDeliveryReceipt(receipt.json, "receipt of " + doc.id);
  if (!r) return std::unexpected(Internal(r.error().message()));
  storage::EntryInput e;
  e.kind = storage::EntryKind::kDeliveryReceipt;
  e.refers_to = doc.seq;
  // Both sides archive the receipt (DESIGN.md, Exchange): here the one we
  // issued, with `sender` naming the union it answers.
  e.fields = {{"id", doc.id},
              {"receipt_type", "delivery-receipt"},
              {"recipient", options_.union_id},
              {"sender", doc.peer},
              {"received_at", storage::Rfc3339Utc(r->received_at)}};
  e.files = {{"receipt.json", receipt.json}, {"receipt.json.p7s", receipt.signature}};
  auto appended = options_.archive->Append(std::move(e));
  // Not archived: no receipt is given (503); the sender delivers again and
  // gets the stored one, archived then.
  if (!appended) return std::unexpected(StoreProblem(appended.error(), "archive"));
  std::lock_guard<std::mutex> lock(mu_);
  receipt_entries_.emplace(doc.id, appended->seq);
  return {};
}

std::expected<InboxAccepted, Problem> Inbox::Receive(const Delivery& d) {
  auto policy = options_.policy->Current();
  const std::time_t now = Now();
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();

  // 1. The form.
  auto parsed = crypto::ReadBundle(d.bundle_path, options_.work_dir, options_.limits);
  if (!parsed) {
    if (parsed.error().code() == Code::kIoError || parsed.error().code() == Code::kNotFound) {
      return std::unexpected(Internal(parsed.error().message()));
    }
    return Refuse("bundle-form",
                  BundleInvalid("The bundle is not well-formed: " + parsed.error().message(),
                                "Gói văn bản sai định dạng: " + parsed.error().message()),
                  d, "");
  }
  const crypto::DocumentInfo& doc = parsed->document;

  // 2. The issuer is the peer that delivers.
  if (doc.issuer != d.peer) {
    return Refuse("issuer-mismatch",
                  Problem{403, "issuer-mismatch", "Issuer is not the sender",
                          "Đơn vị ban hành không phải bên gửi",
                          "document.json names the issuer '" + doc.issuer +
                              "', but the bundle was delivered by '" + d.peer + "'.",
                          "document.json ghi đơn vị ban hành '" + doc.issuer +
                              "', nhưng gói văn bản do '" + d.peer + "' gửi đến."},
                  d, doc.id);
  }

  // 3. Every signature, chain, CRL, the archive entry, the checkpoint and
  // the inclusion proof; then the seal must be P's registered seal.
  crypto::BundleVerifyOptions vo;
  std::shared_ptr<const TrustSnapshot> trust =
      options_.trust ? options_.trust->Current() : nullptr;
  vo.anchors = trust ? trust->anchors.get() : anchors_.get();
  vo.crls = trust ? trust->crls.get() : crls_.get();
  vo.at = now;
  vo.expected_origin = d.peer + "/archive";
  const std::string read_ms = MsSince(t0);
  const Clock::time_point t_verify = Clock::now();
  auto report = crypto::VerifyBundle(*parsed, vo);
  const std::string verify_ms = MsSince(t_verify);
  if (report) CountVerification("inbox", report->indication, report->sub_indication);
  if (!report) {
    return Refuse("bundle-signature-unreadable",
                  BundleInvalid("The bundle cannot be verified: " + report.error().message(),
                                "Không kiểm tra được gói văn bản: " + report.error().message()),
                  d, doc.id);
  }
  if (report->indication != crypto::Indication::kPassed) {
    const crypto::BundleFinding* f = report->FirstProblem();
    std::string check = f ? std::string(crypto::BundleCheckName(f->check)) : "signature";
    std::string reason = f ? std::string(crypto::BundleReasonName(f->reason)) : "signature-failed";
    std::string en = "Check '" + check + "' failed: " + reason;
    std::string vi = "Kiểm tra '" + check + "' không đạt: " + reason;
    if (f && !f->detail.empty()) {
      en += " (" + f->detail + ")";
      vi += " (" + f->detail + ")";
    }
    std::string who_en = FailedSigner(report->content, Lang::kEn);
    std::string who_vi = FailedSigner(report->content, Lang::kVi);
    if (who_en.empty()) {
      who_en = FailedSigner(report->document_seal, Lang::kEn);
      who_vi = FailedSigner(report->document_seal, Lang::kVi);
    }
    if (!who_en.empty()) {
      en += ". " + who_en;
      vi += ". " + who_vi;
    }
    if (!en.ends_with('.')) en += ".";
    if (!vi.ends_with('.')) vi += ".";
    return Refuse("bundle-" + check, BundleInvalid(en, vi), d, doc.id);
  }
  const policies::Union* sender = policy->FindUnion(d.peer);
  const crypto::SignerReport& seal = report->document_seal.signers.at(0);
  if (sender == nullptr || !sender->has_seal ||
      !HasIdentity(*policy, sender->seal, seal.certificate.get(), seal.chain.get())) {
    return Refuse("seal-not-registered",
                  BundleInvalid("The bundle is sealed by a certificate that is not the registered "
                                "seal of '" + d.peer + "'.",
                                "Gói văn bản được đóng dấu bằng chứng thư không phải con dấu đã "
                                "đăng ký của '" + d.peer + "'."),
                  d, doc.id);
  }

  // Steps 4 to 7 for one sender run one at a time, so that its checkpoints
  // are checked against each other in order; other senders' deliveries run
  // beside them (their appends share commits). A document id is handled by
  // one delivery at a time (in_flight_), whoever sends it, so nothing is
  // archived twice and a redelivery waits for the first to finish.
  std::shared_ptr<std::mutex> peer_mu;
  {
    std::lock_guard<std::mutex> l(mu_);
    std::shared_ptr<std::mutex>& slot = peer_mu_[d.peer];
    if (!slot) slot = std::make_shared<std::mutex>();
    peer_mu = slot;
  }
  std::unique_lock<std::mutex> peer_lock(*peer_mu);
  std::unique_lock<std::mutex> lock(mu_);
  in_flight_cv_.wait(lock, [&] { return in_flight_.count(doc.id) == 0; });
  in_flight_.insert(doc.id);
  struct InFlight {
    Inbox* inbox;
    std::string id;
    ~InFlight() {
      std::lock_guard<std::mutex> l(inbox->mu_);
      inbox->in_flight_.erase(id);
      inbox->in_flight_cv_.notify_all();
    }
  } in_flight{this, doc.id};
  // 4. A document already received.
  if (auto it = received_.find(doc.id); it != received_.end()) {
    if (it->second.peer == d.peer && it->second.content_sha256 == doc.content_sha256) {
      ReceivedDocument known = it->second;
      lock.unlock();
      peer_lock.unlock();
      auto receipt = ReceiptFor(known);
      if (!receipt) return std::unexpected(receipt.error());
      Log(LogLevel::kInfo, "inbox redelivery answered with the stored receipt",
          "peer=" + JsonString(d.peer) + " document_id=" + JsonString(doc.id) +
              " seq=" + std::to_string(known.seq));
      {
        std::lock_guard<std::mutex> s(stats_mu_);
        ++redeliveries_;
      }
      return InboxAccepted{std::move(*receipt), doc.id, known.seq, true};
    }
    const uint64_t known_seq = it->second.seq;
    lock.unlock();
    return Refuse("document-id-conflict",
                  BundleInvalid("A different document with the id '" + doc.id +
                                    "' was already received (seq " +
                                    std::to_string(known_seq) + ").",
                                "Đã nhận một văn bản khác có cùng mã '" + doc.id + "'."),
                  d, doc.id);
  }
  std::optional<PeerState> last_seen;
  if (auto it = peers_.find(d.peer); it != peers_.end()) last_seen = it->second;
  lock.unlock();

  // 5. Addressed to us, and allowed by the policy in force.
  if (std::find(doc.recipients.begin(), doc.recipients.end(), options_.union_id) ==
      doc.recipients.end()) {
    return Refuse("not-a-recipient",
                  PolicyRefused("This document is not addressed to '" + options_.union_id +
                                    "' (recipients: " + Join(doc.recipients, ',') + ").",
                                "Văn bản này không gửi cho '" + options_.union_id +
                                    "' (nơi nhận: " + Join(doc.recipients, ',') + ")."),
                  d, doc.id);
  }
  auto issued = crypto::ParseRfc3339(doc.issued_at);
  policies::DocumentFacts facts;
  facts.issuer = d.peer;
  facts.type = doc.type;
  facts.recipients = doc.recipients;
  facts.size = doc.content_size;
  facts.media_type = doc.content_media_type;
  facts.time = static_cast<int64_t>(issued ? *issued : now);
  std::vector<policies::VerifiedSigner> signers;
  for (const crypto::SignerReport& s : report->content.signers) {
    signers.push_back({s.certificate.get(), s.chain.get()});
  }
  auto decision = policies::EvaluateVerifiedDocument(*policy, facts, signers);
  if (!decision) return std::unexpected(Internal("policy: " + decision.error().message()));
  if (!decision->allowed) {
    const policies::RuleResult* rule = decision->FirstFailure();
    std::string rname = rule ? std::string(policies::RuleKindName(rule->kind)) : "policy";
    return Refuse("policy-" + rname,
                  PolicyRefused("Rule '" + rname + "': " + (rule ? rule->en : std::string()),
                                "Quy tắc '" + rname + "': " + (rule ? rule->vi : std::string())),
                  d, doc.id);
  }

  // 5b. A policy update (daemon/policy_update.h): checked before archiving.
  std::shared_ptr<const policies::Policy> policy_update;
  if (doc.type == kPolicyDocumentType) {
    auto next = CheckPolicyUpdate(*policy, d.peer, parsed->content_path(), options_.union_id);
    if (!next) return Refuse(next.error().slug, next.error(), d, doc.id);
    policy_update = std::move(*next);
  }

  // 6. The sender's checkpoint against the largest one seen from it.
  const crypto::Checkpoint& cp = parsed->checkpoint;
  bool grows = true;
  if (last_seen) {
    const crypto::Checkpoint& last = last_seen->checkpoint;
    if (last.size == cp.size) {
      grows = false;
      if (last.root != cp.root) {
        std::string detail = "two checkpoints of size " + std::to_string(cp.size) +
                             ": seen root " + crypto::merkle::ToHex(last.root) + ", now " +
                             crypto::merkle::ToHex(cp.root);
        RaiseAlarm(d.peer, doc.id, detail);
        return Refuse("checkpoint-inconsistent",
                      Problem{422, "checkpoint-inconsistent", "Checkpoint inconsistent",
                              "Điểm kiểm tra không nhất quán",
                              "The sender's history is forked: " + detail + ".",
                              "Lịch sử lưu trữ của bên gửi bị rẽ nhánh: " + detail + "."},
                      d, doc.id);
      }
    } else {
      const bool older = cp.size < last.size;
      grows = !older;
      const uint64_t from = older ? cp.size : last.size;
      const uint64_t to = older ? last.size : cp.size;
      const crypto::merkle::Hash& from_root = older ? cp.root : last.root;
      const crypto::merkle::Hash& to_root = older ? last.root : cp.root;
      if (!d.proof || d.proof->from != from || d.proof->to != to) {
        Problem p{409, "consistency-proof-required", "Consistency proof required",
                  "Cần bằng chứng nhất quán",
                  "Prove that your log of size " + std::to_string(to) + " extends the one of size " +
                      std::to_string(from) + ": send the header " +
                      std::string(kConsistencyProofHeader) + ": " + std::to_string(from) + ":" +
                      std::to_string(to) + ":<base64>.",
                  "Hãy chứng minh nhật ký kích thước " + std::to_string(to) +
                      " nối tiếp nhật ký kích thước " + std::to_string(from) + ": gửi tiêu đề " +
                      std::string(kConsistencyProofHeader) + ": " + std::to_string(from) + ":" +
                      std::to_string(to) + ":<base64>."};
        p.extension_members =
            "\"from_size\":" + std::to_string(from) + ",\"to_size\":" + std::to_string(to);
        return Refuse("consistency-proof-required", std::move(p), d, doc.id);
      }
      Status v = crypto::merkle::VerifyConsistency(from, to, from_root, to_root, d.proof->hashes);
      if (!v.ok()) {
        std::string detail = "the consistency proof from size " + std::to_string(from) + " (root " +
                             crypto::merkle::ToHex(from_root) + ") to size " + std::to_string(to) +
                             " (root " + crypto::merkle::ToHex(to_root) +
                             ") does not verify: " + v.message();
        RaiseAlarm(d.peer, doc.id, detail);
        return Refuse("checkpoint-inconsistent",
                      Problem{422, "checkpoint-inconsistent", "Checkpoint inconsistent",
                              "Điểm kiểm tra không nhất quán",
                              "The sender's history is not consistent: " + detail + ".",
                              "Lịch sử lưu trữ của bên gửi không nhất quán: " + detail + "."},
                      d, doc.id);
      }
    }
  }

  // 7. One document-received entry, durable before anything is answered.
  const Clock::time_point t_append = Clock::now();
  // The content goes from the received bundle's file into the pack in
  // pieces (the bundle was verified: its document.json names this SHA-256).
  auto content_sha256_raw = HexDecode(doc.content_sha256);
  if (!content_sha256_raw) {
    return std::unexpected(Internal("content sha256: " + content_sha256_raw.error().message()));
  }
  storage::EntryInput entry;
  entry.kind = storage::EntryKind::kDocumentReceived;
  entry.fields = {{"id", doc.id},
                  {"type", doc.type},
                  {"reference", doc.reference},
                  {"subject", doc.subject},
                  {"issuer", d.peer},
                  {"recipients", Join(doc.recipients, ',')},
                  {"issued_at", doc.issued_at},
                  {"content_name", doc.content_name},
                  {"content_media_type", doc.content_media_type},
                  {"content_size", std::to_string(doc.content_size)},
                  {"content_sha256", doc.content_sha256},
                  {"policy_sha256", policy->sha256},
                  {"sender_policy_sha256", doc.policy_sha256},
                  {"sender_origin", cp.origin},
                  {"sender_seq", std::to_string(parsed->manifest.seq)},
                  {"sender_tree_size", std::to_string(cp.size)},
                  {"sender_root", crypto::merkle::ToHex(cp.root)}};
  entry.files = {{"certs.pem", parsed->certs_pem},
                 storage::EntryFile::FromPath("content", parsed->content_path(), doc.content_size,
                                              std::move(*content_sha256_raw)),
                 {"content.p7s", parsed->content_p7s},
                 {"document.json", parsed->document_json},
                 {"document.json.p7s", parsed->document_json_p7s},
                 {"sender-checkpoint", parsed->checkpoint_body},
                 {"sender-checkpoint.p7s", parsed->checkpoint_p7s},
                 {"sender-inclusion-proof.json", crypto::SerializeInclusionProof(parsed->proof)},
                 {"sender-manifest.json", parsed->archive_manifest}};
  if (!parsed->crls_pem.empty()) entry.files.push_back({"crls.pem", parsed->crls_pem});
  if (Status v = storage::ValidateEntry(entry); !v.ok()) {
    return Refuse("entry-invalid",
                  BundleInvalid("The document cannot be archived: " + v.message(),
                                "Không lưu trữ được văn bản: " + v.message()),
                  d, doc.id);
  }
  auto appended = options_.archive->Append(std::move(entry));
  if (!appended) return std::unexpected(StoreProblem(appended.error(), "archive"));

  ReceivedDocument rd;
  rd.id = doc.id;
  rd.peer = d.peer;
  rd.seq = appended->seq;
  rd.type = doc.type;
  rd.reference = doc.reference;
  rd.subject = doc.subject;
  rd.issued_at = doc.issued_at;
  rd.received_at = storage::Rfc3339Utc(now);
  rd.content_name = doc.content_name;
  rd.content_media_type = doc.content_media_type;
  rd.content_sha256 = doc.content_sha256;
  rd.content_size = doc.content_size;
  lock.lock();
  received_[rd.id] = rd;
  // In archive order: deliveries from other senders may finish first.
  auto pos = order_.end();
  while (pos != order_.begin() && received_.at(*(pos - 1)).seq > rd.seq) --pos;
  order_.insert(pos, rd.id);
  if (grows) peers_[d.peer] = PeerState{cp, appended->seq};
  lock.unlock();
  if (grows) {
    if (auto body = crypto::SerializeCheckpoint(cp); body) {
      Status s = WriteFileAtomic(dir_ + "/peers/" + SafeName(d.peer) + ".checkpoint", *body, 0640);
      if (!s.ok()) {
        Log(LogLevel::kWarn, "inbox peer state not written (rebuilt from the archive at start)",
            "peer=" + JsonString(d.peer) + " error=" + JsonString(s.message()));
      }
    }
  }
  peer_lock.unlock();  // the receipt is made beside the sender's next delivery
  {
    std::lock_guard<std::mutex> s(stats_mu_);
    ++accepted_;
  }
  if (policy_update) {
    // The document is archived: the update takes effect now (a failure is
    // logged; the document stays received and receipted).
    TestKillPoint("policy-archived");
    auto applied = ApplyPolicyUpdate(options_.policy, policy_update, parsed->content_path(),
                                     options_.state_dir, options_.archive, doc.id, appended->seq);
    if (!applied) {
      Log(LogLevel::kError, "policy document received but not applied",
          "peer=" + JsonString(d.peer) + " document_id=" + JsonString(doc.id) +
              " error=" + JsonString(applied.error().message()));
    }
  }
  const std::string append_ms = MsSince(t_append);
  const Clock::time_point t_receipt = Clock::now();
  auto receipt = ReceiptFor(rd);
  if (!receipt) return std::unexpected(receipt.error());
  Log(LogLevel::kInfo, "document received",
      "peer=" + JsonString(d.peer) + " document_id=" + JsonString(doc.id) +
          " seq=" + std::to_string(appended->seq) + " type=" + JsonString(doc.type) +
          " sender_tree_size=" + std::to_string(cp.size) + " read_ms=" + read_ms +
          " verify_ms=" + verify_ms + " append_ms=" + append_ms + " receipt_ms=" +
          MsSince(t_receipt) + " total_ms=" + MsSince(t0));
  CountReceipt("issued");
  return InboxAccepted{std::move(*receipt), doc.id, appended->seq, false};
}

std::optional<ReceivedDocument> Inbox::Received(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = received_.find(id);
  if (it == received_.end()) return std::nullopt;
  return it->second;
}

std::vector<ReceivedDocument> Inbox::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ReceivedDocument> out;
  out.reserve(order_.size());
  for (const std::string& id : order_) out.push_back(received_.at(id));
  return out;
}

std::optional<crypto::Checkpoint> Inbox::PeerCheckpoint(const std::string& peer) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(peer);
  if (it == peers_.end()) return std::nullopt;
  return it->second.checkpoint;
}

std::vector<InboxAlarm> Inbox::Alarms() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return alarms_;
}

std::string Inbox::MetricsText() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  std::string out;
  out += "# HELP sealpost_inbox_accepted_total Bundles from peers verified and archived.\n";
  out += "# TYPE sealpost_inbox_accepted_total counter\n";
  out += "sealpost_inbox_accepted_total " + std::to_string(accepted_) + "\n";
  out += "# HELP sealpost_inbox_redeliveries_total Redeliveries answered with the stored receipt.\n";
  out += "# TYPE sealpost_inbox_redeliveries_total counter\n";
  out += "sealpost_inbox_redeliveries_total " + std::to_string(redeliveries_) + "\n";
  out += "# HELP sealpost_inbox_refused_total Deliveries refused, by reason.\n";
  out += "# TYPE sealpost_inbox_refused_total counter\n";
  for (const auto& [reason, n] : refused_) {
    out += "sealpost_inbox_refused_total{reason=\"" + LabelValue(reason) + "\"} " + std::to_string(n) +
           "\n";
  }
  out += "# HELP sealpost_inbox_checkpoint_alarms Inconsistent peer checkpoints on record.\n";
  out += "# TYPE sealpost_inbox_checkpoint_alarms gauge\n";
  out += "sealpost_inbox_checkpoint_alarms " + std::to_string(alarms_.size()) + "\n";
  return out;
}

}  // namespace sealpost::daemon
