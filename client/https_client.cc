#include "client/https_client.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <functional>
#include <optional>
#include <unistd.h>
#include <mutex>
#include <sys/stat.h>

#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <Poco/Exception.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/SSLManager.h>

#include "base/encoding.h"
#include "base/openssl.h"

namespace sealpost::client {
namespace {

constexpr size_t kChunk = 64 * 1024;

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// A quoted-string parameter value: quotes and backslashes escaped, CR/LF
// dropped (they would end the part's header).
std::string Quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\r' || c == '\n') continue;
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

Result<uint64_t> FileSize(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Err(Status::NotFound("cannot read " + path));
  }
  return static_cast<uint64_t>(st.st_size);
}

Status CopyFile(const std::string& path, std::ostream& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read " + path);
  std::vector<char> buf(kChunk);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
    out.write(buf.data(), in.gcount());
    if (!out) return Status::Unavailable("connection lost while sending " + path);
  }
  return Status::Ok();
}

}  // namespace

std::string Response::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (IEquals(k, name)) return v;
  }
  return "";
}

HttpsClient::HttpsClient(ClientOptions options,
                         std::unique_ptr<Poco::Net::HTTPSClientSession> session)
    : options_(std::move(options)), session_(std::move(session)) {}

HttpsClient::~HttpsClient() = default;

Result<std::unique_ptr<HttpsClient>> HttpsClient::Create(const ClientOptions& options) {
  if (options.ca_file.empty() && !options.system_cas) {
    return Err(Status::InvalidArgument("a CA bundle is required"));
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return Err(Status::InvalidArgument("a client certificate needs both its file and its key"));
  }
  for (const std::string& f : {options.ca_file, options.cert_file, options.key_file}) {
    if (!f.empty() && ::access(f.c_str(), R_OK) != 0) return Err(Status::NotFound("cannot read " + f));
  }
  static std::once_flag once;
  std::call_once(once, [] { Poco::Net::initializeSSL(); });
  try {
    Poco::Net::Context::Params p;
    p.caLocation = options.ca_file;
    p.certificateFile = options.cert_file;
    p.privateKeyFile = options.key_file;
    p.loadDefaultCAs = options.ca_file.empty() && options.system_cas;
    p.verificationMode = Poco::Net::Context::VERIFY_RELAXED;  // client: the server must verify
    p.verificationDepth = 9;
    p.cipherList = "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES:!SHA1";
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, p);
    ctx->enableExtendedCertificateVerification(options.verify_host);
    if (SSL_CTX_set_min_proto_version(ctx->sslContext(), TLS1_2_VERSION) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "TLS minimum version"));
    }
    auto session = std::make_unique<Poco::Net::HTTPSClientSession>(
        options.host, static_cast<Poco::UInt16>(options.port), ctx);
    session->setKeepAlive(true);
    session->setTimeout(Poco::Timespan(options.connect_timeout_seconds, 0),
                        Poco::Timespan(options.timeout_seconds, 0),
                        Poco::Timespan(options.timeout_seconds, 0));
    return std::unique_ptr<HttpsClient>(new HttpsClient(options, std::move(session)));
  } catch (const Poco::Exception& e) {
    return Err(Status::DataError("TLS client context (" + options.ca_file +
                                 (options.cert_file.empty() ? "" : ", " + options.cert_file) +
                                 "): " + e.displayText()));
  }
}

namespace {

// Sends one request; `write_body` writes exactly `length` bytes. With
// `out_path`, a 2xx body goes to that file instead of memory.
Result<Response> Exchange(Poco::Net::HTTPSClientSession& session, const ClientOptions& o,
                          const std::string& method, const std::string& path,
                          const std::string& content_type, std::optional<uint64_t> length,
                          const Headers& headers,
                          const std::function<Status(std::ostream&)>& write_body,
                          const std::string& out_path = "") {
  std::string where = o.host + ":" + std::to_string(o.port);
  try {
    Poco::Net::HTTPRequest req(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    req.setKeepAlive(true);
    if (!content_type.empty()) req.setContentType(content_type);
    if (length) req.setContentLength64(static_cast<Poco::Int64>(*length));
    for (const auto& [k, v] : headers) req.set(k, v);
    std::ostream& out = session.sendRequest(req);
    if (write_body) {
      Status s = write_body(out);
      if (!s.ok()) {
        session.reset();
        return Err(s);
      }
      out.flush();
    }
    Poco::Net::HTTPResponse resp;
    std::istream& in = session.receiveResponse(resp);
    Response r;
    r.status = static_cast<int>(resp.getStatus());
    r.content_type = resp.getContentType();
    for (const auto& [k, v] : resp) r.headers.emplace_back(k, v);
    std::vector<char> buf(kChunk);
    if (!out_path.empty() && r.status >= 200 && r.status < 300) {
      std::ofstream file(out_path, std::ios::binary | std::ios::trunc);
      ::chmod(out_path.c_str(), 0600);
      if (!file) {
        session.reset();
        return Err(Status::IoError("cannot write " + out_path));
      }
      uint64_t written = 0;
      while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
        file.write(buf.data(), in.gcount());
        written += static_cast<uint64_t>(in.gcount());
        if (!file) {
          session.reset();
          return Err(Status::IoError("cannot write " + out_path));
        }
      }
      file.close();
      if (!file) return Err(Status::IoError("cannot write " + out_path));
      if (resp.hasContentLength() && static_cast<int64_t>(written) != resp.getContentLength64()) {
        session.reset();
        return Err(Status::Unavailable("the answer of " + where + " ended after " +
                                       std::to_string(written) + " of " +
                                       std::to_string(resp.getContentLength64()) + " bytes"));
      }
      if (!resp.getKeepAlive()) session.reset();
      return r;
    }
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
      r.body.append(buf.data(), static_cast<size_t>(in.gcount()));
      if (r.body.size() > o.max_response_bytes) {
        session.reset();
        return Err(Status::DataError("the answer of " + where + " is larger than " +
                                     std::to_string(o.max_response_bytes) + " bytes"));
      }
    }
    if (!resp.getKeepAlive()) session.reset();
    return r;
  } catch (const Poco::Exception& e) {
    session.reset();
    return Err(Status::Unavailable(method + " " + path + " at " + where + ": " + e.displayText()));
  } catch (const std::exception& e) {
    session.reset();
    return Err(Status::Unavailable(method + " " + path + " at " + where + ": " + e.what()));
  }
}

}  // namespace

Result<Response> HttpsClient::Get(const std::string& path, const Headers& headers) {
  return Exchange(*session_, options_, "GET", path, "", std::nullopt, headers, nullptr);
}

Result<Response> HttpsClient::GetToFile(const std::string& path, const std::string& out_path,
                                        const Headers& headers) {
  return Exchange(*session_, options_, "GET", path, "", std::nullopt, headers, nullptr, out_path);
}

Result<Response> HttpsClient::Post(const std::string& path, const std::string& content_type,
                                   const std::string& body, const Headers& headers) {
  return Exchange(*session_, options_, "POST", path, content_type, body.size(), headers,
                  [&](std::ostream& out) {
                    out.write(body.data(), static_cast<std::streamsize>(body.size()));
                    return Status::Ok();
                  });
}

Result<Response> HttpsClient::PostFile(const std::string& path, const std::string& content_type,
                                       const std::string& file_path, const Headers& headers) {
  auto size = FileSize(file_path);
  if (!size) return Err(size.error());
  return Exchange(*session_, options_, "POST", path, content_type, *size, headers,
                  [&](std::ostream& out) { return CopyFile(file_path, out); });
}

Result<Response> HttpsClient::PostMultipart(const std::string& path,
                                            const std::vector<FormPart>& parts,
                                            const Headers& headers) {
  unsigned char rnd[16];
  if (RAND_bytes(rnd, sizeof rnd) != 1) return Err(OpenSslStatus(Code::kInternal, "RAND_bytes"));
  std::string boundary =
      "sealpost-" + HexEncode(std::string_view(reinterpret_cast<const char*>(rnd), sizeof rnd));
  std::vector<std::string> heads;
  uint64_t length = 0;
  for (const FormPart& p : parts) {
    std::string h = "--" + boundary + "\r\nContent-Disposition: form-data; name=" + Quoted(p.name);
    if (!p.filename.empty()) h += "; filename=" + Quoted(p.filename);
    h += "\r\nContent-Type: " + p.content_type + "\r\n\r\n";
    uint64_t n = p.data.size();
    if (!p.path.empty()) {
      auto size = FileSize(p.path);
      if (!size) return Err(size.error());
      n = *size;
    }
    length += h.size() + n + 2;
    heads.push_back(std::move(h));
  }
  std::string tail = "--" + boundary + "--\r\n";
  length += tail.size();
  return Exchange(*session_, options_, "POST", path, "multipart/form-data; boundary=" + boundary,
                  length, headers, [&](std::ostream& out) {
                    for (size_t i = 0; i < parts.size(); ++i) {
                      out << heads[i];
                      if (!parts[i].path.empty()) {
                        Status s = CopyFile(parts[i].path, out);
                        if (!s.ok()) return s;
                      } else {
                        out.write(parts[i].data.data(),
                                  static_cast<std::streamsize>(parts[i].data.size()));
                      }
                      out << "\r\n";
                    }
                    out << tail;
                    return out ? Status::Ok() : Status::Unavailable("connection lost");
                  });
}

Status StatusFromProblem(const Response& r) {
  if (r.status >= 200 && r.status < 300) return Status::Ok();
  Code code = Code::kInternal;
  switch (r.status) {
    case 400: case 405: case 413: case 415: case 431: code = Code::kInvalidArgument; break;
    case 422: code = Code::kDataError; break;
    case 401: case 403: code = Code::kPermissionDenied; break;
    case 404: code = Code::kNotFound; break;
    case 409: case 412: code = Code::kFailedPrecondition; break;
    case 502: case 503: case 504: code = Code::kUnavailable; break;
    default: code = r.status >= 500 ? Code::kInternal : Code::kInvalidArgument; break;
  }
  std::string message = "HTTP " + std::to_string(r.status);
  if (r.content_type.starts_with("application/problem+json")) {
    try {
      Poco::JSON::Parser parser;
      auto obj = parser.parse(r.body).extract<Poco::JSON::Object::Ptr>();
      std::string title = obj->optValue<std::string>("title", "");
      std::string detail = obj->optValue<std::string>("detail", "");
      if (!title.empty() || !detail.empty()) {
        message = title + (title.empty() || detail.empty() ? "" : ": ") + detail;
      }
    } catch (const std::exception&) {
      // Not a problem document after all: keep "HTTP <status>".
    }
  }
  return Status(code, message);
}

}  // namespace sealpost::client
