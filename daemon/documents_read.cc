// The read side of the documents API (daemon/documents.h): lists from the
// archive's query index, one document with its per-recipient delivery
// state, its files, its receipts, the archive's checkpoint and consistency
// proofs. Nothing here needs the signer.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "base/encoding.h"
#include "base/strings.h"
#include "base/json.h"
#include "base/log.h"
#include "base/utf8.h"
#include "base/zip.h"
#include "crypto/bundle.h"
#include "crypto/digest.h"
#include "crypto/report.h"
#include "daemon/bundle_rebuild.h"
#include "daemon/documents.h"
#include "daemon/request_target.h"
#include "storage/index.h"
#include "storage/reader.h"

namespace sealpost::daemon {

namespace {

constexpr std::string_view kSent = "document-sent";
constexpr std::string_view kReceived = "document-received";
constexpr size_t kDefaultLimit = 50;
constexpr size_t kMaxLimit = 500;
// The inbox sorts unread first over at most this many received documents.
constexpr size_t kInboxScan = 10000;
// Receipt files larger than this are listed without their data.
constexpr uint64_t kMaxReceiptFileBytes = 256 * 1024;

DocumentsAnswer Answer(Problem p) {
  DocumentsAnswer a;
  a.status = p.status;
  if (p.status == 503) a.retry_after_seconds = 5;
  a.problem = std::move(p);
  return a;
}

DocumentsAnswer Json(std::string body) {
  DocumentsAnswer a;
  a.body = std::move(body);
  return a;
}

Problem BadRequest(std::string en, std::string vi) {
  return Problem{400, "bad-request", "Bad request", "Yêu cầu không hợp lệ", std::move(en),
                 std::move(vi)};
}

Problem NotFound(const std::string& id) {
  return Problem{404, "not-found", "Not found", "Không tìm thấy",
                 "There is no document '" + id + "' in this appliance's archive.",
                 "Không có văn bản '" + id + "' trong kho lưu trữ của thiết bị này."};
}

Problem InternalProblem(const std::string& what) {
  Log(LogLevel::kError, "documents read failed", "error=" + JsonString(what));
  return Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                 "The archive could not be read.", "Không đọc được kho lưu trữ."};
}

}  // namespace

Problem BundleUnavailableProblem(const std::string& id, const Status& why) {
  Log(LogLevel::kWarn, "bundle not available", "id=" + id + " error=" + JsonString(why.message()));
  return Problem{503,
                 "bundle-unavailable",
                 "Bundle unavailable",
                 "Gói văn bản tạm thời không dùng được",
                 "The bundle of document '" + id + "' cannot be made now: " + why.message(),
                 "Chưa tạo được gói của văn bản '" + id + "': " + why.message()};
}

namespace {

std::string JsonArray(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + JsonString(v[i]);
  return out + "]";
}

std::string MillisTime(int64_t ms) {
  if (ms <= 0) return "null";
  return JsonString(crypto::FormatRfc3339(static_cast<std::time_t>(ms / 1000)));
}

// At most 18 digits: std::stoull never overflows on what passes.
bool AllDigits(std::string_view s) {
  return !s.empty() && s.size() <= 18 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A document id that may be used in a file name as it is (the ids this
// appliance makes are UUIDs; a peer's ids are only looked up).
bool PathSafeId(std::string_view id) {
  return !id.empty() && id.size() <= 128 &&
         std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-' || c == '_';
         });
}

// The archive and its index, as of this request.
struct View {
  std::unique_ptr<storage::ArchiveReader> reader;
  std::unique_ptr<storage::Index> index;
};

// Null when the archive does not exist yet (nothing was ever submitted or
// received).
Result<std::unique_ptr<View>> OpenView(const std::string& state_dir) {
  const std::string dir = state_dir + "/archive";
  struct stat st {};
  if (::stat((dir + "/HEAD").c_str(), &st) != 0) return std::unique_ptr<View>();
  auto view = std::make_unique<View>();
  auto reader = storage::ArchiveReader::Open(dir);
  if (!reader) return Err(reader.error());
  view->reader = std::move(*reader);
  const std::string path = storage::Index::PathFor(view->reader->state_dir());
  auto index = storage::Index::Open(path);
  if (!index && index.error().code() == Code::kDataError) {
    // A cache: an unreadable one is rebuilt.
    Log(LogLevel::kWarn, "query index rebuilt", "error=" + JsonString(index.error().message()));
    (void)storage::Index::Remove(path);
    index = storage::Index::Open(path);
  }
  if (!index) return Err(index.error());
  view->index = std::move(*index);
  auto up = view->index->Update(*view->reader);
  if (!up) return Err(up.error());
  return view;
}

// The document entry (sent or received) with this id.
Result<std::optional<storage::IndexedEntry>> FindDocument(View& v, const std::string& id) {
  storage::IndexQuery q;
  q.id = id;
  q.kinds = {std::string(kSent), std::string(kReceived)};
  auto rows = v.index->Query(q);
  if (!rows) return Err(rows.error());
  if (rows->empty()) return std::optional<storage::IndexedEntry>();
  return std::optional<storage::IndexedEntry>(rows->front());
}

// The archive view and the document entry with this id, or the answer to
// give instead (404 when there is no such document, 500 on errors).
struct Located {
  std::unique_ptr<View> view;
  storage::IndexedEntry doc;
  std::optional<DocumentsAnswer> failure;
};

Located Locate(const std::string& state_dir, const std::string& id) {
  Located l;
  auto view = OpenView(state_dir);
  if (!view) {
    l.failure = Answer(InternalProblem(view.error().message()));
  } else if (!*view) {
    l.failure = Answer(NotFound(id));
  } else if (auto doc = FindDocument(**view, id); !doc) {
    l.failure = Answer(InternalProblem(doc.error().message()));
  } else if (!*doc) {
    l.failure = Answer(NotFound(id));
  } else {
    l.view = std::move(*view);
    l.doc = **doc;
  }
  return l;
}

std::string Direction(const storage::IndexedEntry& e) {
  return e.kind == kSent ? "sent" : "received";
}

// "YYYY-MM-DD" (start or end of that UTC day) or RFC 3339 -> the index's
// "YYYY-MM-DDTHH:MM:SSZ".
std::optional<std::string> NormaliseTime(const std::string& v, bool end_of_day) {
  std::string t = v;
  if (t.size() == 10) t += end_of_day ? "T23:59:59Z" : "T00:00:00Z";
  auto parsed = crypto::ParseRfc3339(t);
  if (!parsed) return std::nullopt;
  return crypto::FormatRfc3339(*parsed);
}

// The marker of a received document's first opening:
// <state_dir>/opened/<sha256 of the id> holding "<time> <role>".
std::string OpenedPath(const std::string& state_dir, const std::string& id) {
  auto d = crypto::DigestBytes(EVP_sha256(), id);
  return state_dir + "/opened/" + (d ? HexEncode(*d) : std::string("invalid"));
}

// {"at":..,"role":..} or null.
std::string OpenedJson(const std::string& state_dir, const std::string& id) {
  std::string text;
  int fd = ::open(OpenedPath(state_dir, id).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "null";
  char buf[256];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n > 0) text.assign(buf, static_cast<size_t>(n));
  size_t sp = text.find(' ');
  std::string at = text.substr(0, sp);
  std::string role = sp == std::string::npos ? "" : text.substr(sp + 1);
  while (!role.empty() && (role.back() == '\n' || role.back() == '\r')) role.pop_back();
  return "{\"at\":" + JsonString(at) + ",\"role\":" + JsonString(role) + "}";
}

std::string Summary(const storage::IndexedEntry& e, const std::string& state_dir) {
  std::string out = "{\"id\":" + JsonString(e.id) + ",\"seq\":" + std::to_string(e.seq) +
                    ",\"direction\":" + JsonString(Direction(e)) + ",\"type\":" +
                    JsonString(e.type) + ",\"reference\":" + JsonString(e.reference) +
                    ",\"subject\":" + JsonString(e.subject) + ",\"issuer\":" + JsonString(e.issuer) +
                    ",\"recipients\":" + JsonArray(SplitComma(e.recipients)) +
                    ",\"issued_at\":" + JsonString(e.issued_at) + ",\"archived_at\":" +
                    JsonString(e.time) + ",\"content_name\":" + JsonString(e.content_name);
  if (e.kind == kReceived) out += ",\"opened\":" + OpenedJson(state_dir, e.id);
  return out + "}";
}

// RFC 6266 / 5987: an ASCII fallback and the UTF-8 name.
std::string ContentDisposition(const std::string& name) {
  std::string ascii;
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    ascii += (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') ? c : '_';
  }
  std::string pct;
  static const char* kHex = "0123456789ABCDEF";
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
        c == '.' || c == '-' || c == '_') {
      pct += c;
    } else {
      pct += '%';
      pct += kHex[u >> 4];
      pct += kHex[u & 15];
    }
  }
  return "attachment; filename=\"" + ascii + "\"; filename*=UTF-8''" + pct;
}

// The query parameters of `uri`; a problem for a malformed query or a
// parameter not in `allowed`.
std::expected<std::map<std::string, std::string>, Problem> QueryParams(
    const std::string& uri, const std::set<std::string>& allowed) {
  auto target = ParseRequestTarget(uri);
  if (!target) return std::unexpected(target.error());
  return QueryMap(*target, allowed);
}

}  // namespace

Result<storage::Outbox*> DocumentsService::ReadOutbox() {
  std::lock_guard<std::mutex> lock(outbox_mu_);
  if (outbox_) return outbox_.get();
  const std::string path = config_.state_dir + "/outbox.sqlite";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return static_cast<storage::Outbox*>(nullptr);
  storage::OutboxOptions o;
  o.path = path;
  auto ob = storage::Outbox::Open(o);
  if (!ob) return Err(ob.error());
  outbox_ = std::move(*ob);
  return outbox_.get();
}

DocumentsAnswer DocumentsService::List(const std::string& uri, bool inbox) {
  std::set<std::string> allowed = {"type", "counterpart", "since", "until", "limit"};
  if (!inbox) {
    allowed.insert("direction");
    allowed.insert("cursor");
  }
  auto params = QueryParams(uri, allowed);
  if (!params) return Answer(params.error());
  storage::IndexQuery q;
  q.newest_first = true;
  q.kinds = {std::string(kSent), std::string(kReceived)};
  if (inbox) q.kinds = {std::string(kReceived)};
  size_t limit = kDefaultLimit;
  for (const auto& [k, v] : *params) {
    if (k == "direction") {
      if (v == "sent") q.kinds = {std::string(kSent)};
      else if (v == "received") q.kinds = {std::string(kReceived)};
      else
        return Answer(BadRequest("direction must be 'sent' or 'received', not '" + v + "'.",
                                 "direction phải là 'sent' hoặc 'received', không phải '" + v +
                                     "'."));
    } else if (k == "type" || k == "counterpart") {
      if (v.empty() || !IsCleanUtf8Text(v)) {
        return Answer(BadRequest(k + " must be a non-empty line of UTF-8 text.",
                                 k + " phải là một dòng văn bản UTF-8 không rỗng."));
      }
      (k == "type" ? q.type : q.counterpart) = v;
    } else if (k == "since" || k == "until") {
      auto t = NormaliseTime(v, k == "until");
      if (!t) {
        return Answer(BadRequest(k + " must be a date (YYYY-MM-DD) or an RFC 3339 time, not '" +
                                     v + "'.",
                                 k + " phải là ngày (YYYY-MM-DD) hoặc thời điểm RFC 3339, không "
                                     "phải '" + v + "'."));
      }
      (k == "since" ? q.since : q.until) = *t;
    } else if (k == "limit") {
      if (!AllDigits(v) || std::stoull(v) < 1 || std::stoull(v) > kMaxLimit) {
        return Answer(BadRequest("limit must be a whole number from 1 to " +
                                     std::to_string(kMaxLimit) + ", not '" + v + "'.",
                                 "limit phải là số nguyên từ 1 đến " + std::to_string(kMaxLimit) +
                                     ", không phải '" + v + "'."));
      }
      limit = std::stoull(v);
    } else if (k == "cursor") {
      if (!AllDigits(v) || std::stoull(v) < 1) {
        return Answer(BadRequest("cursor is not one this appliance gave out: '" + v + "'.",
                                 "cursor không phải giá trị do thiết bị này trả về: '" + v + "'."));
      }
      q.before_seq = std::stoull(v);
    }
  }
  if (q.since && q.until && *q.since > *q.until) {
    return Answer(BadRequest("since is after until.", "since muộn hơn until."));
  }
  auto view = OpenView(config_.state_dir);
  if (!view) return Answer(InternalProblem(view.error().message()));
  std::vector<storage::IndexedEntry> rows;
  bool more = false;
  if (*view) {
    q.limit = inbox ? kInboxScan : limit + 1;
    auto r = (*view)->index->Query(q);
    if (!r) return Answer(InternalProblem(r.error().message()));
    rows = std::move(*r);
  }
  std::string body;
  if (inbox) {
    // Unread first, each group newest first.
    std::stable_partition(rows.begin(), rows.end(), [&](const storage::IndexedEntry& e) {
      struct stat st {};
      return ::stat(OpenedPath(config_.state_dir, e.id).c_str(), &st) != 0;
    });
    more = rows.size() > limit;
    if (more) rows.resize(limit);
    size_t unread = 0;
    body = "{\"documents\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
      std::string s = Summary(rows[i], config_.state_dir);
      if (s.find("\"opened\":null") != std::string::npos) ++unread;
      body += (i ? "," : "") + s;
    }
    body += "],\"unread\":" + std::to_string(unread) + ",\"truncated\":" +
            (more ? "true" : "false") + "}\n";
    return Json(std::move(body));
  }
  more = rows.size() > limit;
  if (more) rows.resize(limit);
  body = "{\"documents\":[";
  for (size_t i = 0; i < rows.size(); ++i) body += (i ? "," : "") + Summary(rows[i], config_.state_dir);
  body += "],\"next_cursor\":" +
          (more ? JsonString(std::to_string(rows.back().seq)) : std::string("null")) + "}\n";
  return Json(std::move(body));
}

DocumentsAnswer DocumentsService::Document(const std::string& id) {
  Located loc = Locate(config_.state_dir, id);
  if (loc.failure) return std::move(*loc.failure);
  View& view = *loc.view;
  const storage::IndexedEntry& e = loc.doc;
    auto m = view.reader->ReadManifest(e.seq);
  if (!m) return Answer(InternalProblem(m.error().message()));
  std::string body = "{\"id\":" + JsonString(e.id) + ",\"seq\":" + std::to_string(e.seq) +
                     ",\"direction\":" + JsonString(Direction(e)) + ",\"type\":" +
                     JsonString(e.type) + ",\"reference\":" + JsonString(e.reference) +
                     ",\"subject\":" + JsonString(e.subject) + ",\"issuer\":" +
                     JsonString(e.issuer) + ",\"recipients\":" +
                     JsonArray(SplitComma(e.recipients)) + ",\"issued_at\":" +
                     JsonString(e.issued_at) + ",\"archived_at\":" + JsonString(e.time) +
                     ",\"content\":{\"name\":" + JsonString(m->Field("content_name")) +
                     ",\"media_type\":" + JsonString(m->Field("content_media_type")) +
                     ",\"size\":" + (AllDigits(m->Field("content_size")) ? m->Field("content_size")
                                                                          : std::string("null")) +
                     ",\"sha256\":" + JsonString(m->Field("content_sha256")) +
                     "},\"policy_sha256\":" + JsonString(m->Field("policy_sha256"));
  // Receipts and notices archived about it (seq and kind; /receipts has them).
  storage::IndexQuery rq;
  rq.refers_to = e.seq;
  auto about = view.index->Query(rq);
  if (!about) return Answer(InternalProblem(about.error().message()));
  body += ",\"receipts\":[";
  for (size_t i = 0; i < about->size(); ++i) {
    const auto& r = (*about)[i];
    body += (i ? "," : "") + std::string("{\"seq\":") + std::to_string(r.seq) +
            ",\"kind\":" + JsonString(r.kind) + ",\"archived_at\":" + JsonString(r.time) + "}";
  }
  body += "]";
  if (e.kind == kReceived) {
    body += ",\"opened\":" + OpenedJson(config_.state_dir, e.id);
  } else {
    auto ob = ReadOutbox();
    if (!ob) return Answer(InternalProblem(ob.error().message()));
    std::vector<storage::DeliveryState> states;
    int64_t pruned_before = 0;
    if (*ob != nullptr) {
      auto s = (*ob)->States(e.id);
      if (!s) return Answer(InternalProblem(s.error().message()));
      states = std::move(*s);
      auto p = (*ob)->PrunedBefore();
      if (!p) return Answer(InternalProblem(p.error().message()));
      pruned_before = *p;
    }
    // The outbox forgets delivered and read jobs after
    // delivery.keep_delivered_days: a recipient whose appliance job is gone
    // is shown from the archived receipt (and read notice); one with no job
    // left and no receipt (e-mail, webhook) as "pruned".
    std::vector<std::string> from_archive;  // rows made from the archive
    if (pruned_before > 0) {
      std::set<std::string> has_row, has_appliance;
      for (const auto& d : states) {
        has_row.insert(d.key.recipient);
        if (d.key.channel == storage::Channel::kAppliance) has_appliance.insert(d.key.recipient);
      }
      std::vector<std::string> missing;
      for (const std::string& r : SplitComma(e.recipients)) {
        if (!has_appliance.count(r)) missing.push_back(r);
      }
      if (!missing.empty()) {
        // recipient -> (receipt seq, archived at), (read notice read_at)
        std::map<std::string, std::pair<uint64_t, std::string>> receipts;
        std::map<std::string, std::string> reads;
        for (const auto& r : *about) {
          if (r.kind != "delivery-receipt") continue;
          auto rm = view.reader->ReadManifest(r.seq);
          if (!rm) return Answer(InternalProblem(rm.error().message()));
          if (rm->Field("sender") != config_.union_id && !rm->Field("sender").empty()) continue;
          const std::string who = rm->Field("recipient");
          if (rm->Field("receipt_type") == "read-notice") {
            reads.emplace(who, rm->Field("read_at"));
          } else if (rm->Field("receipt_type") == "delivery-receipt") {
            receipts.emplace(who, std::make_pair(r.seq, r.time));
          }
        }
        auto time_ms = [](const std::string& t) -> int64_t {
          auto v = crypto::ParseRfc3339(t);
          return v ? static_cast<int64_t>(*v) * 1000 : 0;
        };
        const int64_t doc_ms = time_ms(e.time);
        for (const std::string& r : missing) {
          auto rc = receipts.find(r);
          auto rd = reads.find(r);
          if (rc != receipts.end()) {
            from_archive.push_back(
                "{\"recipient\":" + JsonString(r) + ",\"channel\":\"appliance\",\"state\":" +
                JsonString(rd != reads.end() ? "read" : "delivered") +
                ",\"attempts\":null,\"enqueued_at\":null,\"next_attempt_at\":null,"
                "\"delivered_at\":" + JsonString(rc->second.second) + ",\"read_at\":" +
                (rd != reads.end() ? JsonString(rd->second) : std::string("null")) +
                ",\"finished_at\":null,\"last_error\":null,\"receipt_seq\":" +
                std::to_string(rc->second.first) + ",\"delivery_ref\":null,\"source\":\"archive\"}");
          } else if (!has_row.count(r) && doc_ms > 0 && doc_ms < pruned_before) {
            from_archive.push_back(
                "{\"recipient\":" + JsonString(r) + ",\"channel\":null,\"state\":\"pruned\","
                "\"attempts\":null,\"enqueued_at\":null,\"next_attempt_at\":null,"
                "\"delivered_at\":null,\"read_at\":" +
                (rd != reads.end() ? JsonString(rd->second) : std::string("null")) +
                ",\"finished_at\":null,\"last_error\":null,\"receipt_seq\":null,"
                "\"delivery_ref\":null,\"source\":\"pruned\"}");
          }
        }
      }
    }
    body += ",\"deliveries\":[";
    for (size_t i = 0; i < from_archive.size(); ++i) body += (i ? "," : "") + from_archive[i];
    for (size_t i = 0; i < states.size(); ++i) {
      const storage::DeliveryState& d = states[i];
      body += (i || !from_archive.empty() ? "," : "") + std::string("{\"recipient\":") + JsonString(d.key.recipient) +
              ",\"channel\":" + JsonString(std::string(storage::ChannelName(d.key.channel))) +
              ",\"state\":" + JsonString(std::string(storage::JobStateName(d.state))) +
              ",\"attempts\":" + std::to_string(d.attempts) +
              ",\"enqueued_at\":" + MillisTime(d.enqueued_at) + ",\"next_attempt_at\":" +
              (d.state == storage::JobState::kQueued ? MillisTime(d.next_attempt_at)
                                                     : std::string("null")) +
              ",\"delivered_at\":" + MillisTime(d.delivered_at) +
              ",\"read_at\":" + MillisTime(d.read_at) +
              ",\"finished_at\":" + MillisTime(d.finished_at) + ",\"last_error\":" +
              (d.last_error.empty() ? std::string("null") : JsonString(d.last_error)) +
              ",\"receipt_seq\":" +
              (AllDigits(d.receipt_ref) ? d.receipt_ref : std::string("null")) +
              // A channel without a signed receipt (email, webhook): what the
              // far end acknowledged (smtp:<queue id>, webhook:<status>).
              ",\"delivery_ref\":" +
              (d.receipt_ref.empty() || AllDigits(d.receipt_ref) ? std::string("null")
                                                                 : JsonString(d.receipt_ref)) +
              ",\"source\":\"outbox\"}";
    }
    body += "]";
  }
  body += "}\n";
  return Json(std::move(body));
}

DocumentsAnswer DocumentsService::Content(const std::string& id, const std::string& role) {
  Located loc = Locate(config_.state_dir, id);
  if (loc.failure) return std::move(*loc.failure);
  View& view = *loc.view;
  const storage::IndexedEntry& e = loc.doc;
    auto m = view.reader->ReadManifest(e.seq);
  if (!m) return Answer(InternalProblem(m.error().message()));

  DocumentsAnswer a;
  a.content_type = m->Field("content_media_type").empty() ? "application/octet-stream"
                                                          : m->Field("content_media_type");
  a.headers.emplace_back("Content-Disposition", ContentDisposition(m->Field("content_name")));
  a.headers.emplace_back("Sealpost-Content-Sha256", m->Field("content_sha256"));
  // A sent document's content is streamed from its bundle file (a STORED
  // member: a byte range of the file), never read whole, when Exchange::Bundle
  // gives the file (checked, or made again, since a crash may have left it
  // incomplete). Otherwise (the archive not open, the bundle in memory, a
  // received document: the inbox keeps no file) from the archive.
  bool from_bundle = false;
  std::optional<std::string> bundle;
  if (e.kind == kSent) {
    if (Exchange* ex = IfCreated()) {
      if (auto source = ex->Bundle(id); source && !source->bytes) bundle = source->path;
    }
  }
  if (bundle) {
    auto zip = ZipReader::Open(*bundle);
    const ZipEntry* member =
        zip ? zip->Find(crypto::BundleContentName(m->Field("content_name"))) : nullptr;
    if (member != nullptr && member->method == ZipMethod::kStored &&
        std::to_string(member->size) == m->Field("content_size")) {
      a.file = true;
      a.body = *bundle;
      a.file_offset = member->data_offset;
      a.file_length = member->size;
      from_bundle = true;
    }
  }
  if (!from_bundle) {
    auto content = view.reader->ReadEntryFile(e.seq, "content");
    if (!content) return Answer(InternalProblem(content.error().message()));
    a.body = std::move(*content);
  }

  if (e.kind == kReceived && (role == "clerk" || role == "officer")) {
    const std::string dir = config_.state_dir + "/opened";
    if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
      Log(LogLevel::kError, "cannot record opening", "error=" + JsonString(std::strerror(errno)));
    } else {
      const std::string marker = OpenedPath(config_.state_dir, id);
      int fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
      if (fd >= 0) {  // the first opening
        std::string line = crypto::FormatRfc3339(std::time(nullptr)) + " " + role + "\n";
        bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
        ok = ::fsync(fd) == 0 && ok;
        ::close(fd);
        if (!ok) Log(LogLevel::kError, "cannot record opening", "id=" + JsonString(id));
        // Server::Create always sets the hook (DeliveryWorker::NoteOpened).
        Status s = opened_hook_ ? opened_hook_(id, role) : Status::Ok();
        if (!s.ok()) {
          // Not recorded as opened, so the next opening tries again.
          ::unlink(marker.c_str());
          Log(LogLevel::kError, "read notice not queued",
              "id=" + JsonString(id) + " error=" + JsonString(s.message()));
        }
      } else if (errno != EEXIST) {
        Log(LogLevel::kError, "cannot record opening", "error=" + JsonString(std::strerror(errno)));
      }
    }
  }
  return a;
}

DocumentsAnswer DocumentsService::Signature(const std::string& id) {
  Located loc = Locate(config_.state_dir, id);
  if (loc.failure) return std::move(*loc.failure);
  View& view = *loc.view;
  const storage::IndexedEntry& e = loc.doc;
  auto p7s = view.reader->ReadEntryFile(e.seq, "content.p7s");
  if (!p7s) return Answer(InternalProblem(p7s.error().message()));
  DocumentsAnswer a;
  a.content_type = "application/pkcs7-signature";
  a.headers.emplace_back("Content-Disposition", ContentDisposition(e.content_name + ".p7s"));
  a.body = std::move(*p7s);
  return a;
}

DocumentsAnswer DocumentsService::BundleOf(const std::string& id) {
  Located loc = Locate(config_.state_dir, id);  // 404 unless archived
  if (loc.failure) return std::move(*loc.failure);
  std::optional<std::string> bundle;
  std::shared_ptr<const std::string> bytes;
  if (loc.doc.kind == kSent) {
    // From the cache of small bundles, else the file, checked and made
    // again from the archive when missing or incomplete. Never the file
    // unchecked: a crash may have left it incomplete.
    auto ex = Get();
    Result<BundleSource> source =
        ex ? (*ex)->Bundle(id) : Result<BundleSource>(Err(ex.error()));
    if (!source) return Answer(BundleUnavailableProblem(id, source.error()));
    if (source->bytes) {
      bytes = std::move(source->bytes);
    } else {
      bundle = std::move(source->path);
    }
  } else {
    // Received: made from the archive entry, which holds every member as it
    // came (the sender's evidence too), in a temporary spool file removed
    // once sent. The content is held whole for a moment (libgit2 reads a
    // blob whole), as when a sent bundle is made again.
    auto made = ReceivedBundleFile(loc.doc.seq);  // errors name the entry
    if (!made) return Answer(InternalProblem(made.error().message()));  // logged there
    bundle = std::move(*made);
  }
  DocumentsAnswer a;
  a.content_type = std::string(crypto::kBundleMimetype);
  a.headers.emplace_back("Content-Disposition",
                         ContentDisposition((PathSafeId(id) ? id : std::string("document")) +
                                            ".asics"));
  if (bytes) {
    a.body = *bytes;
  } else {
    a.body = *bundle;
    a.file = true;
    a.remove_file_after = loc.doc.kind != kSent;
  }
  return a;
}

Result<std::string> DocumentsService::ReceivedBundleFile(uint64_t seq) {
  // "upload-": removed at the next start if a crash leaves it
  // (SpoolPool::RemoveLeftovers), like the content's ".rebuild-" file.
  const std::string spool = config_.state_dir + "/spool";
  std::string path = spool + "/upload-bundle-XXXXXX";
  int fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) {
    return Err(Status::IoError(spool + ": cannot create a temporary file: " + std::strerror(errno)));
  }
  ::close(fd);
  std::lock_guard<std::mutex> one_at_a_time(received_mu_);
  Status s = RebuildBundle(config_.state_dir + "/archive", nullptr, seq, path, spool);
  if (!s.ok()) {
    ::unlink(path.c_str());
    return Err(std::move(s));
  }
  return path;
}

DocumentsAnswer DocumentsService::Receipts(const std::string& id) {
  Located loc = Locate(config_.state_dir, id);
  if (loc.failure) return std::move(*loc.failure);
  View& view = *loc.view;
  const storage::IndexedEntry& e = loc.doc;
  // Entries that refer to the document's entry, or carry its id, other
  // than the document itself.
  std::map<uint64_t, storage::IndexedEntry> found;
  storage::IndexQuery by_ref;
  by_ref.refers_to = e.seq;
  storage::IndexQuery by_id;
  by_id.id = id;
  for (const storage::IndexQuery& q : {by_ref, by_id}) {
    auto rows = view.index->Query(q);
    if (!rows) return Answer(InternalProblem(rows.error().message()));
    for (auto& r : *rows) {
      if (r.kind == kSent || r.kind == kReceived) continue;
      found.emplace(r.seq, std::move(r));
    }
  }
  std::string body = "{\"id\":" + JsonString(id) + ",\"document_seq\":" +
                     std::to_string(e.seq) + ",\"receipts\":[";
  bool first = true;
  for (const auto& [seq, r] : found) {
    auto m = view.reader->ReadManifest(seq);
    if (!m) return Answer(InternalProblem(m.error().message()));
    body += (first ? "" : ",") + std::string("{\"seq\":") + std::to_string(seq) +
            ",\"kind\":" + JsonString(r.kind) + ",\"archived_at\":" + JsonString(m->time) +
            ",\"refers_to\":" + std::to_string(m->refers_to) + ",\"fields\":{";
    first = false;
    bool ffirst = true;
    for (const auto& [k, v] : m->fields) {
      body += (ffirst ? "" : ",") + JsonString(k) + ":" + JsonString(v);
      ffirst = false;
    }
    body += "},\"files\":[";
    for (size_t i = 0; i < m->files.size(); ++i) {
      const storage::ManifestFile& f = m->files[i];
      body += (i ? "," : "") + std::string("{\"name\":") + JsonString(f.name) +
              ",\"size\":" + std::to_string(f.size) + ",\"sha256\":" + JsonString(f.sha256);
      if (f.size <= kMaxReceiptFileBytes) {
        auto data = view.reader->ReadEntryFile(seq, f.name);
        if (!data) return Answer(InternalProblem(data.error().message()));
        body += ",\"data_base64\":" + JsonString(Base64Encode(*data));
      }
      body += "}";
    }
    body += "]}";
  }
  body += "]}\n";
  return Json(std::move(body));
}

DocumentsAnswer DocumentsService::Checkpoint() {
  auto view = OpenView(config_.state_dir);
  if (!view) return Answer(InternalProblem(view.error().message()));
  if (!*view) {
    return Answer(Problem{404, "not-found", "Not found", "Không tìm thấy",
                          "This appliance has no archive yet.",
                          "Thiết bị này chưa có kho lưu trữ."});
  }
  const storage::ArchiveReader& r = *(*view)->reader;
  const crypto::Checkpoint& c = r.checkpoint();
  std::string root(reinterpret_cast<const char*>(c.root.data()), c.root.size());
  return Json("{\"origin\":" + JsonString(c.origin) + ",\"size\":" + std::to_string(c.size) +
              ",\"root_hash\":" + JsonString(HexEncode(root)) + ",\"checkpoint\":" +
              JsonString(r.checkpoint_body()) + ",\"signature\":" +
              JsonString(Base64Encode(r.checkpoint_signature())) + "}\n");
}

DocumentsAnswer DocumentsService::Consistency(const std::string& uri) {
  auto params = QueryParams(uri, {"from", "to"});
  if (!params) return Answer(params.error());
  if (!params->count("from") || !params->count("to") || !AllDigits(params->at("from")) ||
      !AllDigits(params->at("to"))) {
    return Answer(BadRequest("from and to are required, whole numbers (tree sizes).",
                             "Cần from và to là số nguyên (kích thước cây)."));
  }
  const uint64_t from = std::stoull(params->at("from"));
  const uint64_t to = std::stoull(params->at("to"));
  auto view = OpenView(config_.state_dir);
  if (!view) return Answer(InternalProblem(view.error().message()));
  const uint64_t size = *view ? (*view)->reader->size() : 0;
  if (from < 1 || from > to || to > size) {
    return Answer(BadRequest("Need 1 <= from <= to <= " + std::to_string(size) +
                                 " (the archive's size); got from=" + std::to_string(from) +
                                 ", to=" + std::to_string(to) + ".",
                             "Cần 1 <= from <= to <= " + std::to_string(size) +
                                 " (kích thước kho); nhận from=" + std::to_string(from) +
                                 ", to=" + std::to_string(to) + "."));
  }
  auto proof = (*view)->reader->ConsistencyProof(from, to);
  if (!proof) return Answer(InternalProblem(proof.error().message()));
  std::string hashes, concat;
  for (size_t i = 0; i < proof->size(); ++i) {
    std::string h(reinterpret_cast<const char*>((*proof)[i].data()), (*proof)[i].size());
    hashes += (i ? "," : "") + JsonString(HexEncode(h));
    concat += h;
  }
  return Json("{\"from\":" + std::to_string(from) + ",\"to\":" + std::to_string(to) +
              ",\"hashes\":[" + hashes + "],\"proof\":" + JsonString(Base64Encode(concat)) + "}\n");
}

}  // namespace sealpost::daemon
