#include "daemon/server.h"

#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <Poco/ErrorHandler.h>
#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/X509Certificate.h>
#include <Poco/ThreadPool.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/json.h"
#include "base/log.h"
#include "crypto/report.h"
#include "crypto/verify.h"
#include "daemon/crls.h"
#include "daemon/delivery.h"
#include "daemon/documents.h"
#include "daemon/inbox.h"
#include "daemon/metrics.h"
#include "daemon/peer_identity.h"
#include "daemon/policy_update.h"
#include "daemon/problem.h"
#include "daemon/request_target.h"
#include "daemon/signer/remote_signer.h"
#include "daemon/startup.h"
#include "daemon/trust.h"
#include "daemon/upload.h"
#include "policies/holder.h"
#include "storage/archive.h"
#include "storage/api_tokens.h"

namespace sealpost::daemon {

using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

struct Server::State {
  Config config;
  std::unique_ptr<policies::PolicyHolder> policy;
  std::unique_ptr<SharedTrust> trust;  // daemon/trust.h: one for submit, inbox and desk
  std::unique_ptr<CrlManager> crls;    // daemon/crls.h
  std::unique_ptr<storage::ApiTokenStore> tokens;
  std::optional<PeerIdentifier> peers;
  Metrics metrics;
  std::string spool_dir;
  std::unique_ptr<SpoolPool> spool;  // daemon/upload.h: spool files reused across requests
  std::time_t started = 0;
  std::string id_prefix;
  std::atomic<uint64_t> next_id{1};
  std::unique_ptr<Poco::ThreadPool> peer_pool, user_pool;
  std::unique_ptr<Poco::Net::HTTPServer> peer_server, user_server;
  std::once_flag stopped;
  std::unique_ptr<DocumentsService> documents;  // daemon/documents.h
  std::unique_ptr<DeliveryWorker> delivery;     // daemon/delivery.h
  std::mutex inbox_mu;
  std::unique_ptr<Inbox> inbox;  // daemon/inbox.h; created on first use, guarded by inbox_mu until set
  // The inbox's part of the start-up pass (daemon/startup.h), until the inbox is created; inbox_mu.
  std::shared_ptr<ReceivedDocumentsScan> inbox_scan;
  // flock(LOCK_EX) on state_dir/sealpostd.lock, held for the process's life:
  // one sealpostd per state directory (archive writer, outbox leases).
  int state_lock_fd = -1;
  ~State() {
    if (state_lock_fd >= 0) ::close(state_lock_fd);
  }
};

namespace {

// Errors in PoCo's connection threads (TLS handshakes that fail, sockets
// reset) would vanish without this; they are logged, never fatal.
class LoggingErrorHandler : public Poco::ErrorHandler {
 public:
  void exception(const Poco::Exception& e) override {
    Log(LogLevel::kWarn, "connection error", "error=" + JsonString(e.displayText()));
  }
  void exception(const std::exception& e) override {
    Log(LogLevel::kWarn, "connection error", "error=" + JsonString(e.what()));
  }
  void exception() override { Log(LogLevel::kWarn, "connection error", "error=\"unknown\""); }
};

enum class Listener { kPeer, kUser };
const char* ListenerName(Listener l) { return l == Listener::kPeer ? "peer" : "user"; }

// Who is asking.
struct Principal {
  std::string method;  // "anonymous", "token", "certificate", "peer"
  std::string name;    // token or certificate name; union id for peers
  std::string role;    // clerk/officer/auditor/admin; "peer" for peers; "" anonymous
};

struct RequestCtx {
  std::string id;
  Lang lang = Lang::kEn;
  Listener listener = Listener::kUser;
  bool has_body = false;
  bool body_consumed = false;
  Principal who;
  std::vector<std::string> params;  // the route's {placeholders}, in order
};

// Who may call a route: nobody authenticated needed (public), any local
// role in `roles`, or a registered peer.
struct Route {
  std::string method;
  std::string path;  // segments in braces ("{id}") match one non-empty segment
  bool is_public = false;
  std::vector<std::string> roles;  // user listener; empty + !public: peers only
  std::function<void(Server::State&, RequestCtx&, HTTPServerRequest&, HTTPServerResponse&)> run;
};

void SendBody(HTTPServerResponse& resp, RequestCtx& rc, int status, const std::string& type,
              const std::string& body) {
  // Never keep a connection alive over a body we did not read to its end:
  // the unread bytes would be parsed as the next request.
  if (rc.has_body && !rc.body_consumed) resp.setKeepAlive(false);
  resp.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
  resp.setContentType(type);
  resp.set("Cache-Control", "no-store");
  resp.setContentLength64(static_cast<Poco::Int64>(body.size()));
  std::ostream& out = resp.send();
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
  out.flush();
}

void SendProblem(HTTPServerResponse& resp, RequestCtx& rc, const Problem& p) {
  if (p.status == 401) resp.set("WWW-Authenticate", "Bearer realm=\"sealpost\"");
  resp.set("Content-Language", rc.lang == Lang::kVi ? "vi" : "en");
  SendBody(resp, rc, p.status, "application/problem+json", ProblemJson(p, rc.lang, rc.id));
}

bool SignerReachable(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return false;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string ArchiveState(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return "missing";
  if (!S_ISDIR(st.st_mode)) return "not-a-directory";
  if (::stat((dir + "/HEAD").c_str(), &st) != 0) return "not-an-archive";
  return "present";
}

// The inbox if it was created already (no side effects), else null.
Inbox* CurrentInbox(Server::State& st) {
  std::lock_guard<std::mutex> lock(st.inbox_mu);
  return st.inbox.get();
}

// The inbox, created on first use over the Exchange's archive and seal.
Result<Inbox*> GetInbox(Server::State& st) {
  std::lock_guard<std::mutex> lock(st.inbox_mu);
  if (st.inbox) return st.inbox.get();
  auto ex = st.documents->Get();
  if (!ex) return Err(ex.error());
  InboxOptions o;
  o.union_id = st.config.union_id;
  o.state_dir = st.config.state_dir;
  o.work_dir = st.spool_dir;
  o.archive = &(*ex)->archive();
  o.signer = (*ex)->options().signer;
  o.seal_key = (*ex)->options().seal_key;
  o.policy = st.policy.get();
  o.trust = st.trust.get();
  o.scan = st.inbox_scan;
  auto inbox = Inbox::Create(std::move(o));
  if (!inbox) return Err(inbox.error());
  st.inbox = std::move(*inbox);
  st.inbox_scan.reset();
  return st.inbox.get();
}

// The token as the signer sees it ("token" in health): present, logged in,
// why not. False in *ok when a seal is configured and cannot be used.
std::string TokenJson(signer::RemoteSigner* probe, bool* ok) {
  auto st = probe->CachedStatus(std::chrono::seconds(3));
  if (!st) {
    *ok = false;
    return "{\"present\":false,\"logged_in\":false,\"detail\":" + JsonString(st.error().message()) + "}";
  }
  *ok = st->token_present && st->logged_in;
  std::string out = "{\"present\":" + std::string(st->token_present ? "true" : "false") +
                    ",\"logged_in\":" + (st->logged_in ? "true" : "false");
  if (!st->detail.empty()) out += ",\"detail\":" + JsonString(st->detail);
  return out + "}";
}

// Why the signer stopped, from <signer_socket>.stopped (left by a signer
// that exited on a fatal condition: PIN refused, hung token, ...), or "".
std::string SignerStopJson(const std::string& socket) {
  auto text = ReadFile(socket + ".stopped", 4096);
  if (!text) return "";
  std::string exit_code, time, error;
  for (std::string_view rest = *text; !rest.empty();) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (line.starts_with("exit=")) exit_code = line.substr(5);
    if (line.starts_with("time=")) time = line.substr(5);
    if (line.starts_with("error=")) error = line.substr(6);
  }
  if (exit_code.empty() || exit_code.size() > 3 ||
      !std::all_of(exit_code.begin(), exit_code.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return "";
  }
  return "{\"exit\":" + exit_code + ",\"time\":" + JsonString(time) + ",\"error\":" + JsonString(error) + "}";
}

void HandleHealth(Server::State& st, RequestCtx& rc, HTTPServerRequest&, HTTPServerResponse& resp) {
  auto policy = st.policy->Current();
  std::string archive = ArchiveState(st.config.state_dir + "/archive");
  bool signer = SignerReachable(st.config.signer_socket);
  bool token_ok = true;
  std::string token, stopped;
  if (signer && !st.config.seal_key.empty()) token = TokenJson(st.documents->signer(), &token_ok);
  if (!signer) stopped = SignerStopJson(st.config.signer_socket);
  bool ok = archive == "present" && signer && token_ok && !st.crls->Degraded();
  std::string body = "{\"status\":" + JsonString(ok ? "ok" : "degraded");
  body += ",\"union\":" + JsonString(st.config.union_id);
  body += ",\"archive\":" + JsonString(archive);
  body += ",\"signer\":" + JsonString(signer ? "reachable" : "unreachable");
  if (!token.empty()) body += ",\"token\":" + token;
  if (!stopped.empty()) body += ",\"signer_stopped\":" + stopped;
  body += ",\"policy\":{\"loaded\":true,\"sha256\":" + JsonString(policy->sha256) +
          ",\"generation\":" + std::to_string(st.policy->generation()) + "}";
  body += ",\"delivery\":" + DeliveryHealthJson(st.delivery->Snapshot());
  body += ",\"crls\":" + st.crls->HealthJson();
  if (Inbox* inbox = CurrentInbox(st)) {
    body += ",\"inbox\":{\"checkpoint_alarms\":" + std::to_string(inbox->Alarms().size()) + "}";
  }
  body += ",\"uptime_seconds\":" + std::to_string(std::time(nullptr) - st.started) + "}\n";
  SendBody(resp, rc, 200, "application/json", body);
}

std::vector<ListenerGauges> Gauges(Server::State& st) {
  std::vector<ListenerGauges> out;
  for (auto [name, srv] : {std::pair{"peer", st.peer_server.get()},
                           std::pair{"user", st.user_server.get()}}) {
    if (srv == nullptr) continue;
    ListenerGauges g;
    g.listener = name;
    g.current_connections = srv->currentConnections();
    g.max_concurrent_connections = srv->maxConcurrentConnections();
    g.total_connections = srv->totalConnections();
    g.refused_connections = srv->refusedConnections();
    g.queued_connections = srv->queuedConnections();
    g.current_threads = srv->currentThreads();
    out.push_back(g);
  }
  return out;
}

// The signer and its token as seen through the daemon's own RemoteSigner
// (2 s bound: a scrape must not hang on a hung token).
SignerView SignerViewOf(Server::State& st) {
  SignerView v;
  signer::RemoteSigner* s = st.documents->signer();
  v.restarts = s->restarts_seen();
  auto status = s->CachedStatus(std::chrono::seconds(2));
  if (!status) {
    v.token_state = "signer_unreachable";
    v.restarts = s->restarts_seen();
    return v;
  }
  v.restarts = s->restarts_seen();
  v.token_state = !status->token_present ? "absent" : !status->logged_in ? "not_logged_in" : "ready";
  for (const auto& k : status->keys) {
    if (k.certificate) v.certificate_not_after.emplace_back(k.key, k.not_after);
  }
  return v;
}

void HandleMetrics(Server::State& st, RequestCtx& rc, HTTPServerRequest&, HTTPServerResponse& resp) {
  std::string text = st.metrics.Render(Gauges(st)) + DeliveryMetricsText(st.delivery->Snapshot()) +
                     st.crls->MetricsText();
  if (Inbox* inbox = CurrentInbox(st)) text += inbox->MetricsText();
  text += EventMetricsText();
  text += SignerMetricsText(SignerViewOf(st));
  std::optional<uint64_t> entries;
  const BundleCache* bundles = nullptr;
  if (Exchange* ex = st.documents->IfCreated()) {
    entries = ex->archive().size();
    bundles = ex->bundle_cache();
  }
  text += ArchiveMetricsText(entries, ArchiveBytesCached(st.config.state_dir + "/archive"));
  text += BundleCacheMetricsText(bundles);
  SendBody(resp, rc, 200, "text/plain; version=0.0.4", text);
}

void HandleWhoami(Server::State&, RequestCtx& rc, HTTPServerRequest&, HTTPServerResponse& resp) {
  std::string body = "{\"authenticated_by\":" + JsonString(rc.who.method);
  if (rc.listener == Listener::kPeer) {
    body += ",\"union\":" + JsonString(rc.who.name);
  } else {
    body += ",\"role\":" + JsonString(rc.who.role) + ",\"name\":" + JsonString(rc.who.name);
  }
  body += "}\n";
  SendBody(resp, rc, 200, "application/json", body);
}

bool WantsText(const HTTPServerRequest& req) {
  std::string accept = req.get("Accept", "");
  return accept.find("text/plain") != std::string::npos &&
         accept.find("application/json") == std::string::npos;
}

void HandleVerify(Server::State& st, RequestCtx& rc, HTTPServerRequest& req,
                  HTTPServerResponse& resp) {
  auto up = ReceiveUpload(req, *st.spool, st.config.limits.max_body_bytes);
  if (!up) {
    rc.body_consumed = up.error().body_consumed;
    SendProblem(resp, rc, up.error().problem);
    return;
  }
  rc.body_consumed = up->body_consumed;
  auto der = crypto::DecodeSignature(up->signature, "signature");
  auto trust = st.trust->Current();
  Result<crypto::Report> report = der ? trust->verifier->VerifyFile(up->file->path(), *der)
                                      : Result<crypto::Report>(Err(der.error()));
  if (!report) {
    const Status& s = report.error();
    if (s.code() == Code::kDataError || s.code() == Code::kInvalidArgument) {
      SendProblem(resp, rc,
                  Problem{422, "not-a-signature", "Not a detached CMS signature",
                          "Không phải chữ ký CMS tách rời",
                          "The signature cannot be read: " + s.message(),
                          "Không đọc được chữ ký: " + s.message()});
    } else {
      Log(LogLevel::kError, "verify failed", "request_id=" + rc.id + " error=" + JsonString(s.message()));
      SendProblem(resp, rc,
                  Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                          "The verification could not be carried out.",
                          "Không thực hiện được việc kiểm tra."});
    }
    return;
  }
  CountVerification("desk", report->indication, report->sub_indication);
  if (WantsText(req)) {
    resp.set("Content-Language", rc.lang == Lang::kVi ? "vi" : "en");
    SendBody(resp, rc, 200, "text/plain; charset=utf-8", crypto::ReportToText(*report, rc.lang));
  } else {
    SendBody(resp, rc, 200, "application/json", crypto::ReportToJson(*report));
  }
}

// Streams `length` bytes of `path` from `offset` in 64 KiB pieces.
void SendFileRange(HTTPServerResponse& resp, RequestCtx& rc, const std::string& path,
                   uint64_t offset, uint64_t length, const std::string& type) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    SendProblem(resp, rc, Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                                  "The file could not be opened.", "Không mở được tệp."});
    return;
  }
  if (rc.has_body && !rc.body_consumed) resp.setKeepAlive(false);
  resp.set("Cache-Control", "no-store");
  resp.setContentType(type);
  resp.setContentLength64(static_cast<Poco::Int64>(length));
  std::ostream& out = resp.send();
  std::vector<char> buf(64 * 1024);
  uint64_t done = 0;
  while (done < length) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), length - done));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(offset + done));
    if (n <= 0) break;  // the response is short: the client sees it ended early
    out.write(buf.data(), n);
    if (!out) break;
    done += static_cast<uint64_t>(n);
  }
  out.flush();
  ::close(fd);
}

void SendDocumentsAnswer(HTTPServerResponse& resp, RequestCtx& rc, DocumentsAnswer a) {
  struct Remove {
    const std::string* path;
    ~Remove() {
      if (path != nullptr) ::unlink(path->c_str());
    }
  } remove{a.file && a.remove_file_after ? &a.body : nullptr};
  rc.body_consumed = a.body_consumed;
  if (a.retry_after_seconds > 0) resp.set("Retry-After", std::to_string(a.retry_after_seconds));
  if (!a.problem) {
    for (const auto& [k, v] : a.headers) resp.set(k, v);
  }
  if (a.problem) {
    SendProblem(resp, rc, *a.problem);
  } else if (a.file && a.file_length) {
    SendFileRange(resp, rc, a.body, a.file_offset, *a.file_length, a.content_type);
  } else if (a.file) {
    if (rc.has_body && !rc.body_consumed) resp.setKeepAlive(false);
    resp.set("Cache-Control", "no-store");
    resp.sendFile(a.body, a.content_type);
  } else {
    SendBody(resp, rc, a.status, a.content_type, a.body);
  }
}

void HandleSubmit(Server::State& st, RequestCtx& rc, HTTPServerRequest& req,
                  HTTPServerResponse& resp) {
  DocumentsAnswer a = st.documents->Submit(req, *st.spool);
  CountSubmission(a.status);
  bool queued = a.status == 201 && !a.problem;
  SendDocumentsAnswer(resp, rc, std::move(a));
  if (queued) st.delivery->Wake();  // deliver now, not at the next poll
}

void HandleBundle(Server::State& st, RequestCtx& rc, HTTPServerRequest& req,
                  HTTPServerResponse& resp) {
  SendDocumentsAnswer(resp, rc, st.documents->Bundle(req));
}

// POST /api/v1/notices (peers): a read notice for a document sent from here.
void HandleNotice(Server::State& st, RequestCtx& rc, HTTPServerRequest& req,
                  HTTPServerResponse& resp) {
  constexpr int64_t kMax = 256 * 1024;
  if (!req.hasContentLength()) {
    SendProblem(resp, rc, Problem{411, "length-required", "Length required", "Cần độ dài",
                                  "A Content-Length is required.", "Cần tiêu đề Content-Length."});
    return;
  }
  if (req.getContentLength64() > kMax) {
    SendProblem(resp, rc, Problem{413, "body-too-large", "Request body too large",
                                  "Nội dung yêu cầu quá lớn",
                                  "A read notice is at most 256 KiB.",
                                  "Thông báo đã đọc tối đa 256 KiB."});
    return;
  }
  std::string body(static_cast<size_t>(req.getContentLength64()), '\0');
  req.stream().read(body.data(), static_cast<std::streamsize>(body.size()));
  if (req.stream().gcount() != static_cast<std::streamsize>(body.size())) {
    SendProblem(resp, rc, Problem{400, "bad-request", "Bad request", "Yêu cầu không hợp lệ",
                                  "The body ended before its Content-Length.",
                                  "Nội dung kết thúc trước độ dài Content-Length."});
    return;
  }
  rc.body_consumed = true;
  auto r = st.delivery->ReceiveNotice(rc.who.name, body);
  if (!r) {
    if (r.error().status == 503) resp.set("Retry-After", "5");
    SendProblem(resp, rc, r.error());
    return;
  }
  SendBody(resp, rc, 200, "application/json", *r);
}

// POST /api/v1/inbox (peers): a bundle delivered by the peer's union
// (contract: docs/exchange.md "The inbox").
void HandleInbox(Server::State& st, RequestCtx& rc, HTTPServerRequest& req,
                 HTTPServerResponse& resp) {
  if (!req.hasContentLength()) {
    SendProblem(resp, rc,
                Problem{411, "length-required", "Length required", "Cần độ dài",
                        "A Content-Length is required.", "Cần tiêu đề Content-Length."});
    return;
  }
  std::string type = req.getContentType();
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  if (type != crypto::kBundleMimetype) {
    SendProblem(resp, rc,
                Problem{415, "unsupported-media-type", "Unsupported media type",
                        "Kiểu dữ liệu không được hỗ trợ",
                        "Send the bundle as " + std::string(crypto::kBundleMimetype) + ".",
                        "Hãy gửi gói văn bản dưới dạng " + std::string(crypto::kBundleMimetype) +
                            "."});
    return;
  }
  std::optional<ConsistencyProofHeader> proof;
  if (req.has(std::string(kConsistencyProofHeader))) {
    auto p = ParseConsistencyProofHeader(req.get(std::string(kConsistencyProofHeader)));
    if (!p) {
      SendProblem(resp, rc,
                  Problem{400, "bad-request", "Bad request", "Yêu cầu không hợp lệ",
                          p.error().message(), "Tiêu đề không hợp lệ: " + p.error().message()});
      return;
    }
    proof = std::move(*p);
  }
  auto inbox = GetInbox(st);
  if (!inbox) {
    Log(LogLevel::kWarn, "inbox unavailable",
        "request_id=" + rc.id + " error=" + JsonString(inbox.error().message()));
    resp.set("Retry-After", "5");
    SendProblem(resp, rc,
                Problem{503, "signer-unavailable", "Inbox unavailable",
                        "Hộp thư đến tạm thời không sẵn sàng",
                        "Deliveries cannot be received now: " + inbox.error().message(),
                        "Hiện không nhận được văn bản gửi đến: " + inbox.error().message()});
    return;
  }
  auto spool = st.spool->Acquire();
  if (!spool) {
    SendProblem(resp, rc,
                Problem{500, "internal", "Internal error", "Lỗi nội bộ", spool.error().message(),
                        "Không tạo được tệp tạm."});
    return;
  }
  Status copied = (*spool)->CopyFrom(req.stream());
  bool complete =
      copied.ok() && static_cast<int64_t>((*spool)->size()) == req.getContentLength64();
  if (Status c = (*spool)->Close(); !c.ok()) complete = false;
  if (!complete) {
    SendProblem(resp, rc,
                Problem{400, "bad-request", "Bad request", "Yêu cầu không hợp lệ",
                        "The body ended before its Content-Length.",
                        "Nội dung kết thúc trước độ dài Content-Length."});
    return;
  }
  rc.body_consumed = true;
  auto r = (*inbox)->Receive(Delivery{rc.who.name, (*spool)->path(), std::move(proof)});
  if (!r) {
    if (r.error().status == 503) resp.set("Retry-After", "5");
    SendProblem(resp, rc, r.error());
    return;
  }
  SendBody(resp, rc, 200, "application/json",
           "{\"receipt\":" + JsonString(Base64Encode(r->receipt.json)) + ",\"signature\":" +
               JsonString(Base64Encode(r->receipt.signature)) + "}\n");
}

void HandleList(Server::State& st, RequestCtx& rc, HTTPServerRequest& req,
                HTTPServerResponse& resp) {
  SendDocumentsAnswer(resp, rc, st.documents->List(req.getURI(), false));
}

void HandleInboxList(Server::State& st, RequestCtx& rc, HTTPServerRequest& req,
                     HTTPServerResponse& resp) {
  SendDocumentsAnswer(resp, rc, st.documents->List(req.getURI(), true));
}

void HandleDocument(Server::State& st, RequestCtx& rc, HTTPServerRequest&,
                    HTTPServerResponse& resp) {
  SendDocumentsAnswer(resp, rc, st.documents->Document(rc.params.at(0)));
}

void HandleContent(Server::State& st, RequestCtx& rc, HTTPServerRequest&,
                   HTTPServerResponse& resp) {
  SendDocumentsAnswer(resp, rc, st.documents->Content(rc.params.at(0), rc.who.role));
}

void HandleSignature(Server::State& st, RequestCtx& rc, HTTPServerRequest&,
                     HTTPServerResponse& resp) {
  SendDocumentsAnswer(resp, rc, st.documents->Signature(rc.params.at(0)));
}

void HandleBundleOf(Server::State& st, RequestCtx& rc, HTTPServerRequest&,
                    HTTPServerResponse& resp) {
  SendDocumentsAnswer(resp, rc, st.documents->BundleOf(rc.params.at(0)));
}

void HandleReceipts(Server::State& st, RequestCtx& rc, HTTPServerRequest&,
                    HTTPServerResponse& resp) {
  SendDocumentsAnswer(resp, rc, st.documents->Receipts(rc.params.at(0)));
}

void HandleCheckpoint(Server::State& st, RequestCtx& rc, HTTPServerRequest&,
                      HTTPServerResponse& resp) {
  SendDocumentsAnswer(resp, rc, st.documents->Checkpoint());
}

void HandleConsistency(Server::State& st, RequestCtx& rc, HTTPServerRequest& req,
                       HTTPServerResponse& resp) {
  SendDocumentsAnswer(resp, rc, st.documents->Consistency(req.getURI()));
}

std::vector<Route> PeerRoutes() {
  return {
      {"GET", "/api/v1/health", false, {}, HandleHealth},
      {"POST", "/api/v1/notices", false, {}, HandleNotice},
      {"GET", "/api/v1/whoami", false, {}, HandleWhoami},
      {"POST", "/api/v1/inbox", false, {}, HandleInbox},
      {"GET", "/api/v1/checkpoint", false, {}, HandleCheckpoint},
      {"GET", "/api/v1/checkpoint/consistency", false, {}, HandleConsistency},
  };
}

std::vector<Route> UserRoutes() {
  return {
      {"GET", "/api/v1/health", true, {}, HandleHealth},
      {"GET", "/metrics", false, {"admin", "auditor"}, HandleMetrics},
      {"GET", "/api/v1/whoami", false, {"clerk", "officer", "auditor", "admin"}, HandleWhoami},
      {"POST", "/api/v1/verify", true, {}, HandleVerify},
      {"POST", "/api/v1/documents", false, {"clerk", "officer"}, HandleSubmit},
      {"GET", "/api/v1/documents/bundle", false, {"clerk", "officer", "auditor"}, HandleBundle},
      {"GET", "/api/v1/documents", false, {"clerk", "officer", "auditor"}, HandleList},
      {"GET", "/api/v1/documents/{id}", false, {"clerk", "officer", "auditor"}, HandleDocument},
      {"GET", "/api/v1/documents/{id}/content", false, {"clerk", "officer", "auditor"},
       HandleContent},
      {"GET", "/api/v1/documents/{id}/signature", false, {"clerk", "officer", "auditor"},
       HandleSignature},
      {"GET", "/api/v1/documents/{id}/bundle", false, {"clerk", "officer", "auditor"},
       HandleBundleOf},
      {"GET", "/api/v1/documents/{id}/receipts", false, {"clerk", "officer", "auditor"},
       HandleReceipts},
      {"GET", "/api/v1/inbox", false, {"clerk", "officer", "auditor"}, HandleInboxList},
      {"GET", "/api/v1/checkpoint", false, {"auditor", "admin"}, HandleCheckpoint},
      {"GET", "/api/v1/checkpoint/consistency", false, {"auditor", "admin"}, HandleConsistency},
  };
}

Problem Unauthorized(std::string en, std::string vi) {
  return Problem{401, "unauthorized", "Authentication required", "Cần xác thực", std::move(en),
                 std::move(vi)};
}

Problem Forbidden(std::string en, std::string vi) {
  return Problem{403, "forbidden", "Forbidden", "Không được phép", std::move(en), std::move(vi)};
}

// The client certificate of this connection, if it presented one (the TLS
// layer has verified it against the listener's client CA).
std::optional<Poco::Net::X509Certificate> ClientCertificate(HTTPServerRequest& req) {
  auto* impl = dynamic_cast<Poco::Net::HTTPServerRequestImpl*>(&req);
  if (impl == nullptr) return std::nullopt;
  Poco::Net::SecureStreamSocket sock(impl->socket());
  if (!sock.havePeerCertificate()) return std::nullopt;
  return sock.peerCertificate();
}

std::string CertSha256(const X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) return "";
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

// Fills rc.who; answers and returns false when the request may not go on.
bool Authenticate(Server::State& st, RequestCtx& rc, const Route& route, HTTPServerRequest& req,
                  HTTPServerResponse& resp) {
  if (rc.listener == Listener::kPeer) {
    auto cert = ClientCertificate(req);
    if (!cert) {  // VERIFY_STRICT makes this unreachable; fail closed anyway
      SendProblem(resp, rc, Forbidden("No client certificate.", "Không có chứng thư máy khách."));
      return false;
    }
    auto policy = st.policy->Current();
    auto union_id = st.peers->UnionOf(const_cast<X509*>(cert->certificate()), *policy);
    if (!union_id) {
      Log(LogLevel::kWarn, "peer refused",
          "request_id=" + rc.id + " reason=" + JsonString(union_id.error().message()));
      SendProblem(resp, rc,
                  Forbidden("Your certificate is not the TLS identity of any union in the "
                            "federation's registry.",
                            "Chứng thư của bên gọi không phải định danh TLS của công đoàn nào "
                            "trong danh bạ của liên đoàn."));
      return false;
    }
    rc.who = Principal{"peer", *union_id, "peer"};
    return true;
  }
  std::string auth = req.get("Authorization", "");
  if (!auth.empty()) {
    constexpr std::string_view kBearer = "Bearer ";
    if (auth.size() <= kBearer.size() || auth.compare(0, kBearer.size(), kBearer) != 0) {
      SendProblem(resp, rc,
                  Unauthorized("Only 'Authorization: Bearer <token>' is accepted.",
                               "Chỉ chấp nhận 'Authorization: Bearer <mã>'."));
      return false;
    }
    auto info = st.tokens->Authenticate(std::string_view(auth).substr(kBearer.size()));
    if (!info) {
      Log(LogLevel::kError, "token lookup failed",
          "request_id=" + rc.id + " error=" + JsonString(info.error().message()));
      SendProblem(resp, rc, Problem{503, "unavailable", "Service unavailable",
                                    "Dịch vụ tạm thời không sẵn sàng",
                                    "Tokens cannot be checked now.",
                                    "Hiện không kiểm tra được mã truy cập."});
      return false;
    }
    if (!*info) {
      SendProblem(resp, rc,
                  Unauthorized("The API token is unknown or revoked.",
                               "Mã truy cập API không tồn tại hoặc đã bị thu hồi."));
      return false;
    }
    rc.who = Principal{"token", (*info)->name, (*info)->role};
  } else if (auto cert = ClientCertificate(req)) {
    std::string sha = CertSha256(cert->certificate());
    for (const ClientCertificateRole& c : st.config.user.client_certificates) {
      if (!sha.empty() && c.sha256 == sha) rc.who = Principal{"certificate", c.name, c.role};
    }
  }
  if (route.is_public) {
    if (rc.who.method.empty()) rc.who.method = "anonymous";
    return true;
  }
  if (rc.who.role.empty()) {
    SendProblem(resp, rc,
                Unauthorized("This endpoint needs an API token or a registered client "
                             "certificate.",
                             "Điểm cuối này cần mã truy cập API hoặc chứng thư máy khách đã "
                             "đăng ký."));
    return false;
  }
  for (const std::string& r : route.roles) {
    if (r == rc.who.role) return true;
  }
  std::string allowed;
  for (const std::string& r : route.roles) allowed += (allowed.empty() ? "" : ", ") + r;
  SendProblem(resp, rc,
              Forbidden("The role '" + rc.who.role + "' may not call this endpoint (allowed: " +
                            allowed + ").",
                        "Vai trò '" + rc.who.role + "' không được gọi điểm cuối này (được phép: " +
                            allowed + ")."));
  return false;
}

uint64_t HeaderBytes(const HTTPServerRequest& req) {
  uint64_t n = req.getMethod().size() + req.getURI().size() + req.getVersion().size() + 4;
  for (const auto& [k, v] : req) n += k.size() + v.size() + 4;
  return n;
}

class Dispatcher : public Poco::Net::HTTPRequestHandler {
 public:
  Dispatcher(Server::State& st, Listener listener, const std::vector<Route>& routes)
      : st_(st), listener_(listener), routes_(routes) {}

  void handleRequest(HTTPServerRequest& req, HTTPServerResponse& resp) override {
    auto start = std::chrono::steady_clock::now();
    RequestCtx rc;
    rc.id = st_.id_prefix + "-" + std::to_string(st_.next_id.fetch_add(1));
    rc.listener = listener_;
    rc.lang = LangFromAcceptLanguage(req.get("Accept-Language", ""), st_.config.language);
    const std::string& m = req.getMethod();
    rc.has_body = req.getChunkedTransferEncoding() ||
                  (req.hasContentLength() ? req.getContentLength64() > 0
                                          : !(m == "GET" || m == "HEAD" || m == "DELETE"));
    resp.set("X-Request-Id", rc.id);
    std::string route_label = "unmatched";
    try {
      Run(req, resp, rc, &route_label);
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "request failed",
          "request_id=" + rc.id + " error=" + JsonString(e.what()));
      if (!resp.sent()) {
        rc.body_consumed = false;
        SendProblem(resp, rc,
                    Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                            "The request could not be handled.", "Không xử lý được yêu cầu."});
      }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    int status = static_cast<int>(resp.getStatus());
    st_.metrics.Observe(ListenerName(listener_), route_label, status, secs);
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.1f", secs * 1000);
    Log(LogLevel::kInfo, "request",
        "request_id=" + rc.id + " listener=" + ListenerName(listener_) + " method=" +
            JsonString(m.substr(0, 16)) + " route=" + route_label + " status=" +
            std::to_string(status) + " ms=" + ms + " client=" + req.clientAddress().toString() +
            " auth=" + (rc.who.method.empty() ? "none" : rc.who.method) +
            (rc.who.name.empty() ? "" : " principal=" + JsonString(rc.who.name)) +
            " keep_alive=" + (resp.getKeepAlive() ? "1" : "0"));
  }

 private:
  void Run(HTTPServerRequest& req, HTTPServerResponse& resp, RequestCtx& rc,
           std::string* route_label) {
    const Limits& limits = st_.config.limits;
    if (resp.getStatus() == Poco::Net::HTTPResponse::HTTP_REQUEST_ENTITY_TOO_LARGE ||
        (req.hasContentLength() && static_cast<uint64_t>(req.getContentLength64()) >
                                       limits.max_body_bytes)) {
      // Refused before reading a byte of the body (and, with Expect:
      // 100-continue, before the client sent it): the connection closes.
      SendProblem(resp, rc,
                  Problem{413, "body-too-large", "Request body too large",
                          "Nội dung yêu cầu quá lớn",
                          "The body is larger than the limit of " +
                              std::to_string(limits.max_body_bytes) + " bytes.",
                          "Nội dung lớn hơn giới hạn " + std::to_string(limits.max_body_bytes) +
                              " byte."});
      return;
    }
    if (HeaderBytes(req) > limits.max_header_bytes) {
      SendProblem(resp, rc,
                  Problem{431, "headers-too-large", "Request headers too large",
                          "Phần đầu yêu cầu quá lớn",
                          "The request line and headers exceed " +
                              std::to_string(limits.max_header_bytes) + " bytes.",
                          "Dòng yêu cầu và các tiêu đề vượt quá " +
                              std::to_string(limits.max_header_bytes) + " byte."});
      return;
    }
    // daemon/request_target.h: strict decoding, no dot segments, no %2F.
    auto target = ParseRequestTarget(req.getURI());
    if (!target) {
      SendProblem(resp, rc, target.error());
      return;
    }
    const std::string& path = target->path;
    // Literal routes win over patterns (".../documents/bundle" is not an id).
    const Route* found = nullptr;
    std::string allow;
    std::vector<std::string> params;
    bool literal = false;
    for (const Route& r : routes_) {
      if (r.path == path) literal = true;
    }
    for (const Route& r : routes_) {
      std::vector<std::string> p;
      if (literal ? r.path != path : !MatchRoute(r.path, *target, &p)) continue;
      if (allow.find(r.method) == std::string::npos) allow += (allow.empty() ? "" : ", ") + r.method;
      if (r.method == req.getMethod() && found == nullptr) {
        found = &r;
        params = std::move(p);
      }
    }
    rc.params = std::move(params);
    if (found == nullptr) {
      if (!allow.empty()) {
        *route_label = path;
        resp.set("Allow", allow);
        SendProblem(resp, rc,
                    Problem{405, "method-not-allowed", "Method not allowed",
                            "Phương thức không được phép", "Allowed: " + allow + ".",
                            "Được phép: " + allow + "."});
      } else {
        SendProblem(resp, rc,
                    Problem{404, "not-found", "Not found", "Không tìm thấy",
                            "There is no such endpoint.", "Không có điểm cuối này."});
      }
      return;
    }
    *route_label = found->path;
    if (!Authenticate(st_, rc, *found, req, resp)) return;
    found->run(st_, rc, req, resp);
  }

  Server::State& st_;
  Listener listener_;
  const std::vector<Route>& routes_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  Factory(Server::State& st, Listener listener)
      : st_(st), listener_(listener), routes_(listener == Listener::kPeer ? PeerRoutes() : UserRoutes()) {}

  Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest& req) override {
    // PoCo sends "100 Continue" only while the response status is 200: an
    // oversized announced body is refused here, before the client sends it.
    if (req.getExpectContinue() && req.hasContentLength() &&
        static_cast<uint64_t>(req.getContentLength64()) > st_.config.limits.max_body_bytes) {
      req.response().setStatus(Poco::Net::HTTPResponse::HTTP_REQUEST_ENTITY_TOO_LARGE);
    }
    return new Dispatcher(st_, listener_, routes_);
  }

 private:
  Server::State& st_;
  Listener listener_;
  std::vector<Route> routes_;
};

Result<Poco::Net::Context::Ptr> MakeContext(const ListenerConfig& l, bool peer) {
  try {
    Poco::Net::Context::Params p;
    p.privateKeyFile = l.key;
    p.certificateFile = l.certificate;
    p.caLocation = l.client_ca;
    p.loadDefaultCAs = false;
    p.verificationMode = peer ? Poco::Net::Context::VERIFY_STRICT
                              : (l.client_ca.empty() ? Poco::Net::Context::VERIFY_NONE
                                                     : Poco::Net::Context::VERIFY_RELAXED);
    p.verificationDepth = 9;
    p.cipherList = "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES:!SHA1";
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_SERVER_USE, p);
    // PoCo's extended check would match the *client's* certificate name
    // against its address: peers are authorised from the certificate instead.
    ctx->enableExtendedCertificateVerification(false);
    if (SSL_CTX_set_min_proto_version(ctx->sslContext(), TLS1_2_VERSION) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "TLS minimum version"));
    }
    static const unsigned char kSid[] = "sealpostd";
    SSL_CTX_set_session_id_context(ctx->sslContext(), kSid, sizeof kSid - 1);
    return ctx;
  } catch (const Poco::Exception& e) {
    return Err(Status::DataError(std::string(peer ? "peer" : "user") + " listener TLS (" +
                                 l.certificate + ", " + l.key +
                                 (l.client_ca.empty() ? "" : ", " + l.client_ca) +
                                 "): " + e.displayText()));
  }
}

Poco::Net::HTTPServerParams::Ptr MakeParams(const Limits& limits) {
  Poco::Net::HTTPServerParams::Ptr p = new Poco::Net::HTTPServerParams;
  p->setMaxThreads(limits.max_connections);
  p->setMaxQueued(limits.max_queued);
  p->setTimeout(Poco::Timespan(limits.read_timeout_seconds, 0));
  p->setKeepAlive(true);
  p->setKeepAliveTimeout(Poco::Timespan(limits.keepalive_timeout_seconds, 0));
  p->setMaxKeepAliveRequests(1000);
  p->setServerName("sealpostd");
  p->setSoftwareVersion("sealpostd");
  return p;
}

}  // namespace

Server::Server(std::unique_ptr<State> state) : state_(std::move(state)) {}

Server::~Server() { Stop(); }

Result<std::unique_ptr<Server>> Server::Create(const Config& config) {
  static std::once_flag ssl_once;
  static LoggingErrorHandler error_handler;
  std::call_once(ssl_once, [] {
    Poco::Net::initializeSSL();
    Poco::ErrorHandler::set(&error_handler);
  });
  auto st = std::make_unique<State>();
  st->config = config;
  st->started = std::time(nullptr);
  unsigned char rnd[4];
  if (RAND_bytes(rnd, sizeof rnd) != 1) return Err(OpenSslStatus(Code::kInternal, "RAND_bytes"));
  st->id_prefix = HexEncode(std::string_view(reinterpret_cast<const char*>(rnd), sizeof rnd));

  auto holder = policies::PolicyHolder::Open(config.policy_files);
  if (!holder) return Err(holder.error().WithContext("policy"));
  st->policy = std::move(*holder);
  if (st->policy->Current()->FindUnion(config.union_id) == nullptr) {
    return Err(Status::DataError(config.file + ": union '" + config.union_id +
                                 "' is not in the policy's registry"));
  }
  // The state directory is this process's before anything in it is read
  // or repaired (installed policy, archive recovery, start-up pass).
  if (::mkdir(config.state_dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return Err(Status::IoError("cannot create state directory " + config.state_dir + ": " +
                               std::strerror(errno)));
  }
  {
    const std::string lock_path = config.state_dir + "/sealpostd.lock";
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      return Err(Status::IoError("cannot open " + lock_path + ": " + std::strerror(errno)));
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      ::close(fd);
      if (e == EWOULDBLOCK) {
        return Err(Status::FailedPrecondition("state directory " + config.state_dir +
                                              " is in use by another sealpostd (" + lock_path +
                                              " is locked)"));
      }
      return Err(Status::IoError("cannot lock " + lock_path + ": " + std::strerror(e)));
    }
    st->state_lock_fd = fd;
  }
  // A policy installed by a policy document (daemon/policy_update.h) wins
  // over the configured files when it is newer.
  if (auto installed = LoadInstalledPolicy(st->policy.get(), config.state_dir); !installed) {
    return Err(installed.error());
  }
  // A policy document archived but not applied before a crash
  // (daemon/policy_update.h RecoverPolicyUpdate).
  // Every manifest of the archive read once, for every part that keeps
  // state from it (daemon/startup.h).
  // First the archive's crash recovery: appends acknowledged just before a
  // crash may be on disk as an intent the writer rolls forward (decision
  // 0005); the readers of the pass must see them.
  if (Status r = storage::Archive::Recover(config.state_dir + "/archive"); !r.ok()) {
    return Err(r.WithContext("archive recovery"));
  }
  auto scans = ScanArchiveAtStart(config.state_dir + "/archive", config.union_id);
  if (!scans) return Err(scans.error());
  auto recovered = RecoverPolicyUpdate(st->policy.get(), config.state_dir,
                                       config.state_dir + "/archive", config.union_id,
                                       &(*scans)->policy);
  if (!recovered) return Err(recovered.error());
  if (st->policy->Current()->FindUnion(config.union_id) == nullptr) {
    return Err(Status::DataError("union '" + config.union_id +
                                 "' is not in the installed policy's registry"));
  }
  auto trust = SharedTrust::Create(config.trust_anchors, config.crls, config.intermediates);
  if (!trust) return Err(trust.error().WithContext("verification trust"));
  st->trust = std::move(*trust);
  auto peers = PeerIdentifier::Create(config.peer.client_ca);
  if (!peers) return Err(peers.error().WithContext("peer client CA"));
  st->peers.emplace(std::move(*peers));

  st->spool_dir = config.state_dir + "/spool";
  if (::mkdir(st->spool_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Err(Status::IoError("cannot create spool directory " + st->spool_dir + ": " +
                               std::strerror(errno)));
  }
  // At most one spool file per request in progress on either listener.
  st->spool = std::make_unique<SpoolPool>(st->spool_dir,
                                          2 * static_cast<size_t>(config.limits.max_connections));
  st->spool->RemoveLeftovers();  // a crashed process's uploads (we hold the state lock)
  st->documents = std::make_unique<DocumentsService>(st->config, st->policy.get(), st->trust.get());
  if (*recovered) st->documents->SetPendingPolicyVersion(std::move(**recovered));
  st->documents->SetStartupScans((*scans)->sent, (*scans)->leaves);
  st->inbox_scan = (*scans)->inbox;
  {
    // The CRLs of the policy's sources: the cached ones now, fetched by Start().
    CrlManagerOptions co;
    co.state_dir = config.state_dir;
    co.policy = st->policy.get();
    co.trust = st->trust.get();
    DocumentsService* docs = st->documents.get();
    co.archive = [docs]() -> Result<storage::Archive*> {
      auto ex = docs->Get();
      if (!ex) return Err(ex.error());
      return &(*ex)->archive();
    };
    co.interval_seconds = config.crl_fetch.interval_seconds;
    co.retry_seconds = config.crl_fetch.retry_seconds;
    co.timeout_seconds = config.crl_fetch.timeout_seconds;
    co.max_bytes = config.crl_fetch.max_bytes;
    co.https_ca = config.crl_fetch.https_ca;
    auto crls = CrlManager::Create(std::move(co));
    if (!crls) return Err(crls.error());
    st->crls = std::move(*crls);
  }
  {
    DeliveryOptions d;
    d.union_id = config.union_id;
    d.policy = st->policy.get();
    d.trust = st->trust.get();
    d.threads = config.delivery.threads;
    d.poll_millis = config.delivery.poll_millis;
    d.attempts_flush_millis = static_cast<int64_t>(config.delivery.attempts_flush_seconds) * 1000;
    d.keep_delivered_millis = static_cast<int64_t>(config.delivery.keep_delivered_days) * 86'400'000;
    d.prune_interval_millis = static_cast<int64_t>(config.delivery.prune_interval_seconds) * 1000;
    if (config.email.enabled) {
      EmailDeliveryOptions e;
      e.smtp.host = config.email.smtp_host;
      e.smtp.port = config.email.smtp_port;
      e.smtp.starttls = config.email.starttls;
      e.smtp.ca = config.email.ca;
      e.smtp.timeout_seconds = config.email.timeout_seconds;
      e.from = config.email.from;
      e.smtp.helo = e.from.substr(e.from.rfind('@') + 1);  // IsMailAddress checked it has one
      e.verify_url = config.email.verify_url;
      d.email = std::move(e);
    }
    WebhookOptions wo;
    wo.public_base_url = config.webhook.public_base_url;
    wo.secret_files = config.webhook.secrets;
    auto hook = WebhookSender::Create(
        wo, MakeWebhookHttpsTransport(config.webhook.ca, config.webhook.connect_timeout_seconds,
                                      config.webhook.timeout_seconds));
    if (!hook) return Err(hook.error().WithContext(config.file + ": webhook"));
    d.webhook = std::move(*hook);
    PeerTlsFiles f;
    f.certificate = config.delivery.certificate;
    f.key = config.delivery.key;
    f.ca = config.delivery.ca;
    f.timeout_seconds = config.limits.read_timeout_seconds;
    DocumentsService* docs = st->documents.get();
    auto worker = DeliveryWorker::Create(d, [docs] { return docs->Get(); },
                                         MakeHttpsTransport(std::move(f)));
    if (!worker) return Err(worker.error());
    st->delivery = std::move(*worker);
    st->delivery->SeedIndex(std::move((*scans)->delivery));
    // A clerk or officer opening a received document: the read notice.
    DeliveryWorker* w = st->delivery.get();
    st->documents->SetOpenedHook([w](const std::string& id, const std::string& role) {
      return w->NoteOpened(id, role);
    });
  }
  auto tokens = storage::ApiTokenStore::Open(config.state_dir + "/api-tokens.sqlite");
  if (!tokens) return Err(tokens.error());
  st->tokens = std::move(*tokens);

  auto peer_ctx = MakeContext(config.peer, true);
  if (!peer_ctx) return Err(peer_ctx.error());
  auto user_ctx = MakeContext(config.user, false);
  if (!user_ctx) return Err(user_ctx.error());
  const Limits& limits = config.limits;
  // One pool per listener, sized to its connection cap (+1 for the
  // acceptor thread TCPServer also takes from it).
  st->peer_pool = std::make_unique<Poco::ThreadPool>(2, limits.max_connections + 1, 60);
  st->user_pool = std::make_unique<Poco::ThreadPool>(2, limits.max_connections + 1, 60);
  State* raw = st.get();
  for (auto [l, listener, ctx, pool, server] :
       {std::tuple{&config.peer, Listener::kPeer, *peer_ctx, raw->peer_pool.get(), &raw->peer_server},
        std::tuple{&config.user, Listener::kUser, *user_ctx, raw->user_pool.get(), &raw->user_server}}) {
    try {
      Poco::Net::SecureServerSocket sock(ctx);
      sock.bind(Poco::Net::SocketAddress(l->address, static_cast<Poco::UInt16>(l->port)), true);
      sock.listen(limits.max_queued);
      *server = std::make_unique<Poco::Net::HTTPServer>(new Factory(*raw, listener), *pool, sock,
                                                        MakeParams(limits));
    } catch (const Poco::Exception& e) {
      return Err(Status::Unavailable(std::string(ListenerName(listener)) + " listener " +
                                     l->address + ":" + std::to_string(l->port) + ": " +
                                     e.displayText()));
    }
  }
  return std::unique_ptr<Server>(new Server(std::move(st)));
}

Status Server::Start() {
  try {
    state_->peer_server->start();
    state_->user_server->start();
  } catch (const Poco::Exception& e) {
    return Status::Internal("cannot start listeners: " + e.displayText());
  }
  state_->delivery->Start();
  state_->crls->Start();
  Log(LogLevel::kInfo, "listening",
      "union=" + state_->config.union_id + " peer_port=" + std::to_string(peer_port()) +
          " user_port=" + std::to_string(user_port()));
  return Status::Ok();
}

int Server::peer_port() const { return state_->peer_server->port(); }
int Server::user_port() const { return state_->user_server->port(); }

void Server::Stop() {
  if (!state_) return;
  std::call_once(state_->stopped, [this] {
    // Deliveries in progress finish and the attempts are archived first,
    // while the signer and the archive are still there.
    state_->delivery->Stop();
    state_->crls->Stop();
    // stopAll(false): stop accepting, close idle connections, let requests
    // in progress finish; then wait for every worker.
    state_->peer_server->stopAll(false);
    state_->user_server->stopAll(false);
    state_->peer_pool->joinAll();
    state_->user_pool->joinAll();
  });
}

}  // namespace sealpost::daemon
