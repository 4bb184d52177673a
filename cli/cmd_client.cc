// The API client commands of `sealpost` (client/https_client.h against a
// sealpostd user listener): submit, status, list, fetch, inbox.
//
// Connection options (each also from the environment; the flag wins):
//   --server https://HOST:PORT   SEALPOST_SERVER
//   --ca PEM                     SEALPOST_CA        the CA of the daemon's TLS certificate
//   --token-file F               SEALPOST_TOKEN_FILE  an API token (never on the command line)
//   --cert PEM --key PEM         SEALPOST_CERT, SEALPOST_KEY  a client certificate instead
// Answers are JSON (parsed with PoCo's JSON parser; the HTTP side is
// client/'s). Human output by default, the daemon's JSON with --json. Any
// problem: its title and detail (in --lang) on stderr and a non-zero exit
// status (ExitCodeFor of the problem's Status: 64 bad request, 65 refused
// content, 66 not found, 69 unavailable, 77 not allowed, 70 other).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/URI.h>

#include "base/encoding.h"
#include "base/file.h"
#include "base/secret.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "client/https_client.h"

namespace sealpost::cli {
namespace {

using Poco::JSON::Object;

constexpr const char* kClientUsage =
    "usage: sealpost submit FILE [FILE.p7s] --type T --to UNION[,UNION...] [--subject S]\n"
    "                       [--name NAME] [--media-type M]\n"
    "       sealpost status ID\n"
    "       sealpost list [--direction sent|received] [--type T] [--counterpart U]\n"
    "                     [--since DATE] [--until DATE] [--limit N] [--cursor C]\n"
    "       sealpost fetch ID [--content|--signature|--bundle] -o OUT\n"
    "       sealpost inbox [--type T] [--counterpart U] [--limit N]\n"
    "common: --server https://HOST:PORT --ca CA.pem (--token-file F | --cert C.pem --key K.pem)\n"
    "        [--json] [--lang vi|en]; or SEALPOST_SERVER, SEALPOST_CA, SEALPOST_TOKEN_FILE,\n"
    "        SEALPOST_CERT, SEALPOST_KEY in the environment\n";

int Usage(const Context& ctx) {
  std::fputs(kClientUsage, ctx.err);
  return 64;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

std::string Opt(const Args& a, const std::string& flag, const char* env) {
  if (auto v = a.Get(flag)) return *v;
  return Env(env);
}

// A connected client and the headers every call sends.
struct Session {
  std::unique_ptr<client::HttpsClient> http;
  client::Headers headers;
};

Result<Session> Connect(const Context& ctx, const Args& a) {
  std::string server = Opt(a, "--server", "SEALPOST_SERVER");
  std::string ca = Opt(a, "--ca", "SEALPOST_CA");
  std::string token_file = Opt(a, "--token-file", "SEALPOST_TOKEN_FILE");
  std::string cert = Opt(a, "--cert", "SEALPOST_CERT");
  std::string key = Opt(a, "--key", "SEALPOST_KEY");
  if (server.empty()) {
    return Err(Status::InvalidArgument("no server: give --server https://HOST:PORT (or set "
                                       "SEALPOST_SERVER)"));
  }
  if (ca.empty()) {
    return Err(Status::InvalidArgument("no CA: give --ca PEM (or set SEALPOST_CA)"));
  }
  if (token_file.empty() && cert.empty()) {
    return Err(Status::InvalidArgument(
        "no credentials: give --token-file F or --cert C --key K (or SEALPOST_TOKEN_FILE)"));
  }
  client::ClientOptions o;
  try {
    Poco::URI uri(server);
    if (uri.getScheme() != "https" || uri.getHost().empty() ||
        !(uri.getPath().empty() || uri.getPath() == "/") || !uri.getRawQuery().empty()) {
      return Err(Status::InvalidArgument("--server must be https://HOST[:PORT], not '" + server +
                                         "'"));
    }
    o.host = uri.getHost();
    o.port = uri.getPort();
  } catch (const Poco::Exception&) {
    return Err(Status::InvalidArgument("--server is not a URL: '" + server + "'"));
  }
  o.ca_file = ca;
  o.cert_file = cert;
  o.key_file = key;
  o.timeout_seconds = 120;
  o.max_response_bytes = 64u << 20;
  Session s;
  s.headers.emplace_back("Accept-Language", ctx.lang == Lang::kVi ? "vi" : "en");
  if (!token_file.empty()) {
    auto raw = ReadFile(token_file, 4096);
    if (!raw) return Err(raw.error().WithContext("token file"));
    SecretBytes token(*raw);
    std::string_view t = token.view();
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) {
      t.remove_suffix(1);
    }
    if (t.empty() || t.find_first_of(" \t\r\n") != std::string_view::npos) {
      return Err(Status::InvalidArgument(token_file + ": not an API token (one line expected)"));
    }
    s.headers.emplace_back("Authorization", "Bearer " + std::string(t));
  }
  auto http = client::HttpsClient::Create(o);
  if (!http) return Err(http.error());
  s.http = std::move(*http);
  return s;
}

// The problem of a non-2xx answer as a Status (title: detail).
Status Check(const Result<client::Response>& r) {
  if (!r) return r.error();
  return client::StatusFromProblem(*r);
}

Result<Object::Ptr> ParseObject(const std::string& body) {
  try {
    Poco::JSON::Parser parser;
    auto obj = parser.parse(body).extract<Object::Ptr>();
    if (obj.isNull()) return Err(Status::DataError("the daemon's answer is not a JSON object"));
    return obj;
  } catch (const std::exception& e) {
    return Err(Status::DataError(std::string("the daemon's answer is not JSON: ") + e.what()));
  }
}

std::string Str(const Object::Ptr& o, const std::string& k) {
  if (o.isNull() || !o->has(k) || o->isNull(k)) return "";
  try {
    return o->getValue<std::string>(k);
  } catch (const std::exception&) {
    return "";
  }
}

std::string Num(const Object::Ptr& o, const std::string& k) {
  if (o.isNull() || !o->has(k) || o->isNull(k)) return "";
  return o->get(k).toString();
}

std::string JoinArray(const Object::Ptr& o, const std::string& k) {
  std::string out;
  if (o.isNull() || !o->has(k)) return out;
  auto arr = o->getArray(k);
  if (arr.isNull()) return out;
  for (size_t i = 0; i < arr->size(); ++i) out += (i ? ", " : "") + arr->get(i).toString();
  return out;
}

std::string Enc(const std::string& v) {
  std::string out;
  Poco::URI::encode(v, "!#$&'()*+,/:;=?@[]%", out);
  return out;
}

std::string MediaTypeFor(const std::string& name) {
  auto dot = name.rfind('.');
  std::string ext = dot == std::string::npos ? "" : name.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == "pdf") return "application/pdf";
  if (ext == "txt") return "text/plain";
  if (ext == "xml") return "application/xml";
  if (ext == "json") return "application/json";
  if (ext == "docx") return "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
  if (ext == "xlsx") return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
  if (ext == "odt") return "application/vnd.oasis.opendocument.text";
  if (ext == "ods") return "application/vnd.oasis.opendocument.spreadsheet";
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  return "application/octet-stream";
}

std::string BaseName(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void PrintJson(const Context& ctx, const std::string& body) {
  std::fwrite(body.data(), 1, body.size(), ctx.out);
  if (body.empty() || body.back() != '\n') std::fputc('\n', ctx.out);
}

const FlagSpec kCommon{{"--server", "--ca", "--token-file", "--cert", "--key"}, {"--json", "--help"}};

FlagSpec With(std::set<std::string> values, std::set<std::string> booleans = {}) {
  FlagSpec f = kCommon;
  f.with_value.insert(values.begin(), values.end());
  f.boolean.insert(booleans.begin(), booleans.end());
  return f;
}

int RunSubmit(Context& ctx, const Args& a) {
  const Lang l = ctx.lang;
  const auto& pos = a.positional();
  if (pos.empty() || pos.size() > 2 || !a.Has("--type") || !a.Has("--to")) return Usage(ctx);
  const std::string file = pos[0];
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Fail(ctx, Status::NotFound("cannot read " + file));
  }
  client::Headers extra;
  if (pos.size() == 2) {
    auto sig = ReadFile(pos[1], 1u << 20);
    if (!sig) return Fail(ctx, sig.error().WithContext("officers' signature"));
    extra.emplace_back("Sealpost-Signature", Base64Encode(*sig));
  }
  std::string name = a.Get("--name").value_or(BaseName(file));
  std::string media = a.Get("--media-type").value_or(MediaTypeFor(name));
  std::string path = "/api/v1/documents?type=" + Enc(*a.Get("--type")) + "&recipients=" +
                     Enc(*a.Get("--to")) + "&name=" + Enc(name) + "&media_type=" + Enc(media);
  if (auto subject = a.Get("--subject")) path += "&subject=" + Enc(*subject);
  auto s = Connect(ctx, a);
  if (!s) return Fail(ctx, s.error());
  for (auto& h : s->headers) extra.push_back(h);
  auto r = s->http->PostFile(path, "application/octet-stream", file, extra);
  if (Status c = Check(r); !c.ok()) return Fail(ctx, c);
  if (a.Has("--json")) {
    PrintJson(ctx, r->body);
    return 0;
  }
  auto o = ParseObject(r->body);
  if (!o) return Fail(ctx, o.error());
  auto seal = (*o)->getObject("seal");
  std::fprintf(ctx.out, "%s %s\n", std::string(Tr(l, "Sent:", "Đã gửi:")).c_str(),
               Str(*o, "id").c_str());
  if (!Str(*o, "reference").empty()) {
    std::fprintf(ctx.out, "  %s %s\n", std::string(Tr(l, "reference:", "số hiệu:")).c_str(),
                 Str(*o, "reference").c_str());
  }
  std::fprintf(ctx.out, "  %s %s (%s)\n", std::string(Tr(l, "issued:", "ban hành:")).c_str(),
               Str(*o, "issued_at").c_str(),
               (std::string(Tr(l, "archive entry ", "mục lưu trữ ")) + Num(*o, "seq")).c_str());
  std::fprintf(ctx.out, "  %s %s (%s %s)\n",
               std::string(Tr(l, "sealed by:", "đóng dấu bởi:")).c_str(),
               Str(seal, "subject").c_str(), std::string(Tr(l, "serial", "số sê-ri")).c_str(),
               Str(seal, "serial").c_str());
  std::fprintf(ctx.out, "  SHA-256: %s\n", Str(*o, "content_sha256").c_str());
  std::fprintf(ctx.out, "  %s %s (%s)\n", std::string(Tr(l, "to:", "gửi đến:")).c_str(),
               JoinArray(*o, "recipients").c_str(),
               std::string(Tr(l, "queued for delivery", "đang chờ chuyển")).c_str());
  return 0;
}

std::string StateWord(Lang l, const std::string& s) {
  if (s == "queued") return std::string(Tr(l, "queued", "đang chờ"));
  if (s == "delivering") return std::string(Tr(l, "delivering", "đang chuyển"));
  if (s == "delivered") return std::string(Tr(l, "delivered", "đã nhận"));
  if (s == "read") return std::string(Tr(l, "read", "đã đọc"));
  if (s == "refused") return std::string(Tr(l, "refused", "bị từ chối"));
  if (s == "failed") return std::string(Tr(l, "failed", "thất bại"));
  return s;
}

int RunStatus(Context& ctx, const Args& a) {
  const Lang l = ctx.lang;
  if (a.positional().size() != 1) return Usage(ctx);
  const std::string id = a.positional()[0];
  auto s = Connect(ctx, a);
  if (!s) return Fail(ctx, s.error());
  auto r = s->http->Get("/api/v1/documents/" + Enc(id), s->headers);
  if (Status c = Check(r); !c.ok()) return Fail(ctx, c);
  if (a.Has("--json")) {
    PrintJson(ctx, r->body);
    return 0;
  }
  auto o = ParseObject(r->body);
  if (!o) return Fail(ctx, o.error());
  bool sent = Str(*o, "direction") == "sent";
  std::fprintf(ctx.out, "%s  %s  %s  %s\n", Str(*o, "id").c_str(),
               std::string(sent ? Tr(l, "sent", "đã gửi") : Tr(l, "received", "đã nhận")).c_str(),
               Str(*o, "type").c_str(), Str(*o, "reference").c_str());
  std::fprintf(ctx.out, "  %s %s\n", std::string(Tr(l, "subject:", "trích yếu:")).c_str(),
               Str(*o, "subject").c_str());
  std::fprintf(ctx.out, "  %s %s -> %s\n", std::string(Tr(l, "from:", "từ:")).c_str(),
               Str(*o, "issuer").c_str(), JoinArray(*o, "recipients").c_str());
  std::fprintf(ctx.out, "  %s %s, %s %s (%s %s)\n", std::string(Tr(l, "issued", "ban hành")).c_str(),
               Str(*o, "issued_at").c_str(), std::string(Tr(l, "archived", "lưu trữ")).c_str(),
               Str(*o, "archived_at").c_str(), std::string(Tr(l, "entry", "mục")).c_str(),
               Num(*o, "seq").c_str());
  auto content = (*o)->getObject("content");
  std::fprintf(ctx.out, "  %s %s (%s, %s bytes, SHA-256 %s)\n",
               std::string(Tr(l, "content:", "nội dung:")).c_str(), Str(content, "name").c_str(),
               Str(content, "media_type").c_str(), Num(content, "size").c_str(),
               Str(content, "sha256").c_str());
  if (sent) {
    auto deliveries = (*o)->getArray("deliveries");
    std::fprintf(ctx.out, "  %s\n", std::string(Tr(l, "deliveries:", "chuyển phát:")).c_str());
    if (deliveries.isNull() || deliveries->size() == 0) {
      std::fprintf(ctx.out, "    %s\n", std::string(Tr(l, "(none)", "(không có)")).c_str());
    }
    for (size_t i = 0; deliveries && i < deliveries->size(); ++i) {
      auto d = deliveries->getObject(static_cast<unsigned>(i));
      std::string line = "    " + Str(d, "recipient") + "  " + StateWord(l, Str(d, "state"));
      if (!Str(d, "read_at").empty()) {
        line += "  " + std::string(Tr(l, "read at ", "đọc lúc ")) + Str(d, "read_at");
      }
      if (!Str(d, "delivered_at").empty()) {
        line += "  " + std::string(Tr(l, "delivered at ", "nhận lúc ")) + Str(d, "delivered_at");
      }
      if (!Num(d, "receipt_seq").empty()) {
        line += "  " + std::string(Tr(l, "receipt entry ", "biên nhận mục ")) + Num(d, "receipt_seq");
      }
      line += "  " + std::string(Tr(l, "attempts ", "lần thử ")) + Num(d, "attempts");
      if (!Str(d, "next_attempt_at").empty()) {
        line += "  " + std::string(Tr(l, "next ", "lần tới ")) + Str(d, "next_attempt_at");
      }
      if (!Str(d, "last_error").empty()) {
        line += "  " + std::string(Tr(l, "last error: ", "lỗi gần nhất: ")) + Str(d, "last_error");
      }
      std::fprintf(ctx.out, "%s\n", line.c_str());
    }
  } else {
    auto opened = (*o)->getObject("opened");
    std::fprintf(ctx.out, "  %s %s\n", std::string(Tr(l, "opened:", "đã mở:")).c_str(),
                 opened.isNull() ? std::string(Tr(l, "not yet", "chưa")).c_str()
                                 : (Str(opened, "at") + " (" + Str(opened, "role") + ")").c_str());
  }
  auto receipts = (*o)->getArray("receipts");
  if (receipts && receipts->size() > 0) {
    std::fprintf(ctx.out, "  %s", std::string(Tr(l, "receipts/notices archived:",
                                                  "biên nhận/thông báo đã lưu:")).c_str());
    for (size_t i = 0; i < receipts->size(); ++i) {
      auto rc = receipts->getObject(static_cast<unsigned>(i));
      std::fprintf(ctx.out, " #%s (%s)", Num(rc, "seq").c_str(), Str(rc, "kind").c_str());
    }
    std::fputc('\n', ctx.out);
  }
  return 0;
}

void PrintDocumentLine(const Context& ctx, const Object::Ptr& d, bool mark_unread) {
  const Lang l = ctx.lang;
  std::string mark;
  if (mark_unread) mark = d->has("opened") && d->isNull("opened") ? "* " : "  ";
  bool sent = Str(d, "direction") == "sent";
  std::string who = sent ? "-> " + JoinArray(d, "recipients") : "<- " + Str(d, "issuer");
  std::fprintf(ctx.out, "%s%s  %s  %-10s %-20s %s  %s  \"%s\"\n", mark.c_str(),
               Str(d, "issued_at").c_str(), Str(d, "id").c_str(), Str(d, "type").c_str(),
               Str(d, "reference").c_str(), who.c_str(),
               std::string(sent ? Tr(l, "sent", "đã gửi") : Tr(l, "received", "đã nhận")).c_str(),
               Str(d, "subject").c_str());
}

int RunList(Context& ctx, const Args& a, bool inbox) {
  const Lang l = ctx.lang;
  if (!a.positional().empty()) return Usage(ctx);
  std::string query;
  std::vector<std::pair<std::string, std::string>> filters = {
      {"--type", "type"}, {"--counterpart", "counterpart"}, {"--since", "since"},
      {"--until", "until"}, {"--limit", "limit"}};
  if (!inbox) {
    filters.emplace_back("--direction", "direction");
    filters.emplace_back("--cursor", "cursor");
  }
  for (const auto& [flag, param] : filters) {
    if (auto v = a.Get(flag)) query += (query.empty() ? "?" : "&") + param + "=" + Enc(*v);
  }
  auto s = Connect(ctx, a);
  if (!s) return Fail(ctx, s.error());
  auto r = s->http->Get(std::string(inbox ? "/api/v1/inbox" : "/api/v1/documents") + query,
                        s->headers);
  if (Status c = Check(r); !c.ok()) return Fail(ctx, c);
  if (a.Has("--json")) {
    PrintJson(ctx, r->body);
    return 0;
  }
  auto o = ParseObject(r->body);
  if (!o) return Fail(ctx, o.error());
  auto docs = (*o)->getArray("documents");
  if (docs.isNull() || docs->size() == 0) {
    std::fprintf(ctx.out, "%s\n", std::string(Tr(l, "No documents.", "Không có văn bản.")).c_str());
  }
  for (size_t i = 0; docs && i < docs->size(); ++i) {
    PrintDocumentLine(ctx, docs->getObject(static_cast<unsigned>(i)), inbox);
  }
  if (inbox) {
    std::fprintf(ctx.out, "%s %s\n", Num(*o, "unread").c_str(),
                 std::string(Tr(l, "unread (marked *)", "chưa đọc (đánh dấu *)")).c_str());
  } else if (!Str(*o, "next_cursor").empty()) {
    std::fprintf(ctx.out, "%s --cursor %s\n",
                 std::string(Tr(l, "More:", "Còn nữa:")).c_str(), Str(*o, "next_cursor").c_str());
  }
  return 0;
}

int RunFetch(Context& ctx, const Args& a) {
  const Lang l = ctx.lang;
  if (a.positional().size() != 1 || !a.Has("-o")) return Usage(ctx);
  int which = a.Has("--content") + a.Has("--signature") + a.Has("--bundle");
  if (which > 1) return Usage(ctx);
  std::string part = a.Has("--signature") ? "signature" : a.Has("--bundle") ? "bundle" : "content";
  const std::string id = a.positional()[0];
  const std::string out = *a.Get("-o");
  auto s = Connect(ctx, a);
  if (!s) return Fail(ctx, s.error());
  // Into a temporary file beside OUT, renamed when complete: OUT is never
  // left half-written.
  const std::string tmp = out + ".part";
  auto r = s->http->GetToFile("/api/v1/documents/" + Enc(id) + "/" + part, tmp, s->headers);
  if (Status c = Check(r); !c.ok()) {
    ::unlink(tmp.c_str());
    return Fail(ctx, c);
  }
  if (::rename(tmp.c_str(), out.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Fail(ctx, Status::IoError("cannot write " + out));
  }
  struct stat st {};
  ::stat(out.c_str(), &st);
  if (a.Has("--json")) {
    std::fprintf(ctx.out, "{\"id\":\"%s\",\"part\":\"%s\",\"bytes\":%lld,\"sha256\":\"%s\"}\n",
                 id.c_str(), part.c_str(), static_cast<long long>(st.st_size),
                 r->Header("Sealpost-Content-Sha256").c_str());
    return 0;
  }
  std::fprintf(ctx.out, "%s %s (%lld %s)\n", std::string(Tr(l, "Wrote", "Đã ghi")).c_str(),
               out.c_str(), static_cast<long long>(st.st_size),
               std::string(Tr(l, "bytes", "byte")).c_str());
  return 0;
}

}  // namespace

int RunClient(Context& ctx, const std::string& command, const std::vector<std::string>& argv) {
  FlagSpec spec = kCommon;
  if (command == "submit") spec = With({"--type", "--to", "--subject", "--name", "--media-type"});
  if (command == "list") {
    spec = With({"--direction", "--type", "--counterpart", "--since", "--until", "--limit",
                 "--cursor"});
  }
  if (command == "inbox") spec = With({"--type", "--counterpart", "--since", "--until", "--limit"});
  if (command == "fetch") spec = With({"-o"}, {"--content", "--signature", "--bundle"});
  auto args = Args::Parse(argv, spec);
  if (!args) {
    Fail(ctx, args.error());
    return Usage(ctx);
  }
  if (args->Has("--help")) {
    std::fputs(kClientUsage, ctx.out);
    return 0;
  }
  if (command == "submit") return RunSubmit(ctx, *args);
  if (command == "status") return RunStatus(ctx, *args);
  if (command == "list") return RunList(ctx, *args, false);
  if (command == "inbox") return RunList(ctx, *args, true);
  if (command == "fetch") return RunFetch(ctx, *args);
  return Usage(ctx);
}

}  // namespace sealpost::cli
