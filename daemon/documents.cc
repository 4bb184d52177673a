#include "daemon/documents.h"

#include <Poco/Net/HTTPServerRequest.h>

#include "base/encoding.h"
#include "base/strings.h"
#include "base/json.h"
#include "base/log.h"
#include "daemon/signer/remote_signer.h"
#include "daemon/request_target.h"
#include "daemon/upload.h"

namespace sealpost::daemon {

namespace {

constexpr size_t kMaxSignatureBytes = 1u << 20;

DocumentsAnswer ProblemAnswer(Problem p, bool body_consumed) {
  DocumentsAnswer a;
  a.status = p.status;
  if (p.status == 503) a.retry_after_seconds = 5;
  a.problem = std::move(p);
  a.body_consumed = body_consumed;
  return a;
}

Problem BadRequest(std::string en, std::string vi) {
  return Problem{400, "bad-request", "Bad request", "Yêu cầu không hợp lệ", std::move(en),
                 std::move(vi)};
}

}  // namespace

DocumentsService::DocumentsService(const Config& config, policies::PolicyHolder* policy,
                                   const SharedTrust* trust)
    : config_(config), policy_(policy), trust_(trust) {
  signer::RemoteSignerOptions so;
  so.socket_path = config.signer_socket;
  signer_ = std::make_unique<signer::RemoteSigner>(so);
}

DocumentsService::~DocumentsService() = default;

Result<Exchange*> DocumentsService::Get() {
  std::lock_guard<std::mutex> lock(mu_);
  if (exchange_) return exchange_.get();
  if (config_.seal_key.empty()) {
    return Err(Status::FailedPrecondition("no seal_key in the configuration"));
  }
  ExchangeOptions o;
  o.union_id = config_.union_id;
  o.state_dir = config_.state_dir;
  o.signer = signer_.get();
  o.seal_key = crypto::KeyRef{config_.seal_key};
  o.policy = policy_;
  o.trust = trust_;
  const DeliveryConfig& d = config_.delivery;
  o.outbox.max_in_flight_per_recipient = d.max_in_flight_per_recipient;
  o.outbox.lease_millis = d.lease_millis;
  o.outbox.backoff_base_millis = d.backoff_base_millis;
  o.outbox.backoff_cap_millis = d.backoff_cap_millis;
  o.outbox.max_attempts = d.max_attempts;
  o.memory_bundle_max_bytes = config_.bundles.memory_max_bytes;
  o.bundle_cache_bytes = config_.bundles.cache_bytes;
  // Only Server::Create makes this service, after it locked the state
  // directory: no other process uses this outbox.
  o.owns_state_dir = true;
  o.sent_scan = sent_scan_;
  o.leaves_scan = leaves_scan_;
  auto ex = Exchange::Create(o);
  if (!ex) return Err(ex.error());
  sent_scan_.reset();
  leaves_scan_.reset();
  if (pending_policy_) {
    // Before anyone else uses the archive: the entry the crash left out.
    // A failure leaves the policy in force; the next start finds the
    // entry missing again.
    auto recorded = RecordPendingPolicyVersion(*policy_, &(*ex)->archive(), *pending_policy_);
    if (!recorded) {
      Log(LogLevel::kError, "policy-version entry not archived",
          "document_id=" + JsonString(pending_policy_->document_id) +
              " error=" + JsonString(recorded.error().message()));
    }
    pending_policy_.reset();
  }
  exchange_ = std::move(*ex);
  created_.store(exchange_.get(), std::memory_order_release);
  return exchange_.get();
}

DocumentsAnswer DocumentsService::Submit(Poco::Net::HTTPServerRequest& req, SpoolPool& pool) {
  // Metadata first: a bad request is refused before the body is read.
  SubmitRequest sr;
  sr.media_type = "application/octet-stream";
  {
    // A repeated parameter is refused (it used to replace the first).
    auto target = ParseRequestTarget(req.getURI());
    if (!target) return ProblemAnswer(target.error(), false);
    auto q = QueryMap(*target, {"type", "subject", "recipients", "name", "media_type"});
    if (!q) return ProblemAnswer(q.error(), false);
    for (const auto& [k, v] : *q) {
      if (k == "type") sr.type = v;
      else if (k == "subject") sr.subject = v;
      else if (k == "recipients") sr.recipients = SplitComma(v);
      else if (k == "name") sr.content_name = v;
      else if (k == "media_type") sr.media_type = v;
    }
  }
  if (sr.type.empty() || sr.recipients.empty() || sr.content_name.empty()) {
    return ProblemAnswer(BadRequest("type, recipients and name are required query parameters.",
                                    "Cần các tham số truy vấn type, recipients và name."),
                         false);
  }
  if (req.getContentType() != "application/octet-stream") {
    return ProblemAnswer(Problem{415, "unsupported-media-type", "Unsupported media type",
                                 "Kiểu dữ liệu không được hỗ trợ",
                                 "Send the document as application/octet-stream.",
                                 "Hãy gửi văn bản dưới dạng application/octet-stream."},
                         false);
  }
  if (!req.hasContentLength()) {
    return ProblemAnswer(Problem{411, "length-required", "Length required", "Cần độ dài",
                                 "A Content-Length is required.", "Cần tiêu đề Content-Length."},
                         false);
  }
  std::string sig_b64 = req.get("Sealpost-Signature", "");
  if (!sig_b64.empty()) {
    auto sig = Base64Decode(sig_b64);
    if (!sig || sig->size() > kMaxSignatureBytes) {
      return ProblemAnswer(BadRequest("The Sealpost-Signature header is not base64 (at most 1 MiB).",
                                      "Tiêu đề Sealpost-Signature không phải base64 (tối đa 1 MiB)."),
                           false);
    }
    sr.officer_signature = std::move(*sig);
  }
  auto ex = Get();
  if (!ex) {
    Log(LogLevel::kWarn, "exchange unavailable", "error=" + JsonString(ex.error().message()));
    return ProblemAnswer(Problem{503, "signer-unavailable", "Seal unavailable",
                                 "Con dấu tạm thời không dùng được",
                                 "Documents cannot be sealed now: " + ex.error().message(),
                                 "Hiện không đóng dấu được văn bản: " + ex.error().message()},
                         false);
  }
  auto spool = pool.Acquire();
  if (!spool) {
    return ProblemAnswer(Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                                 spool.error().message(), "Không tạo được tệp tạm."},
                         false);
  }
  std::istream& in = req.stream();
  Status copied = (*spool)->CopyFrom(in);
  bool complete = copied.ok() && static_cast<int64_t>((*spool)->size()) == req.getContentLength64();
  if (Status c = (*spool)->Close(); !c.ok()) copied = c;
  if (!complete) {
    return ProblemAnswer(BadRequest("The body ended before its Content-Length.",
                                    "Nội dung kết thúc trước độ dài Content-Length."),
                         false);
  }
  sr.content_path = (*spool)->path();
  auto sub = (*ex)->Submit(sr);
  if (!sub) return ProblemAnswer(sub.error(), true);
  DocumentsAnswer a;
  a.status = 201;
  std::string recips;
  for (const std::string& r : sub->recipients) recips += (recips.empty() ? "" : ",") + JsonString(r);
  a.body = "{\"id\":" + JsonString(sub->id) + ",\"reference\":" + JsonString(sub->reference) +
           ",\"seq\":" + std::to_string(sub->seq) + ",\"issued_at\":" + JsonString(sub->issued_at) +
           ",\"content_sha256\":" + JsonString(sub->content_sha256) + ",\"seal\":{\"subject\":" +
           JsonString(sub->seal_subject) + ",\"serial\":" + JsonString(sub->seal_serial) +
           "},\"recipients\":[" + recips + "]}\n";
  return a;
}

DocumentsAnswer DocumentsService::Bundle(Poco::Net::HTTPServerRequest& req) {
  std::string id;
  {
    auto target = ParseRequestTarget(req.getURI());
    if (!target) return ProblemAnswer(target.error(), true);
    auto q = QueryMap(*target, {"id"});
    if (!q) return ProblemAnswer(q.error(), true);
    if (auto it = q->find("id"); it != q->end()) id = it->second;
  }
  auto ex = Get();
  if (!ex) {
    return ProblemAnswer(Problem{503, "signer-unavailable", "Archive unavailable",
                                 "Kho lưu trữ tạm thời không dùng được", ex.error().message(),
                                 ex.error().message()},
                         true);
  }
  if (!(*ex)->BundlePath(id)) {
    return ProblemAnswer(Problem{404, "not-found", "Not found", "Không tìm thấy",
                                 "No document with this id was sent from here.",
                                 "Không có văn bản nào có mã này được gửi từ đây."},
                         true);
  }
  // Sent from here: the cached bytes, else the file, checked and made again
  // from the archive when missing or incomplete. Never an unchecked file.
  auto source = (*ex)->Bundle(id);
  if (!source) {
    return ProblemAnswer(BundleUnavailableProblem(id, source.error()), true);
  }
  DocumentsAnswer a;
  a.content_type = "application/vnd.etsi.asic-s+zip";
  a.body = source->bytes ? *source->bytes : source->path;
  a.file = !source->bytes;
  return a;
}

}  // namespace sealpost::daemon
