#include "client/http_fetch.h"

#include <istream>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/URI.h>

#include "client/https_client.h"

namespace sealpost::client {

Result<std::string> FetchHttp(const std::string& url, const FetchOptions& options) {
  std::string host, target;
  int port = 80;
  try {
    Poco::URI uri(url);
    if (uri.getScheme() != "http" || uri.getHost().empty() || !uri.getUserInfo().empty()) {
      return Err(Status::InvalidArgument("not an http:// URL: " + url));
    }
    host = uri.getHost();
    port = uri.getPort();
    target = uri.getPathEtc();
    if (target.empty()) target = "/";
  } catch (const Poco::Exception& e) {
    return Err(Status::InvalidArgument("bad URL " + url + ": " + e.displayText()));
  }
  const std::string where = host + ":" + std::to_string(port);
  try {
    Poco::Net::HTTPClientSession session(host, static_cast<Poco::UInt16>(port));
    session.setTimeout(Poco::Timespan(options.timeout_seconds, 0),
                       Poco::Timespan(options.timeout_seconds, 0),
                       Poco::Timespan(options.timeout_seconds, 0));
    session.setKeepAlive(false);
    Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, target,
                               Poco::Net::HTTPMessage::HTTP_1_1);
    req.set("User-Agent", "sealpostd");
    req.set("Accept", "application/pkix-crl, */*");
    session.sendRequest(req);
    Poco::Net::HTTPResponse resp;
    std::istream& in = session.receiveResponse(resp);
    if (resp.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
      return Err(Status::DataError(url + ": HTTP " + std::to_string(resp.getStatus()) + " " +
                                   resp.getReason()));
    }
    if (resp.hasContentLength() && resp.getContentLength64() >= 0 &&
        static_cast<uint64_t>(resp.getContentLength64()) > options.max_bytes) {
      return Err(Status::DataError(url + ": body of " + std::to_string(resp.getContentLength64()) +
                                   " bytes is over the limit of " +
                                   std::to_string(options.max_bytes)));
    }
    std::string body;
    char buf[16384];
    while (in) {
      in.read(buf, sizeof buf);
      std::streamsize n = in.gcount();
      if (n <= 0) break;
      if (body.size() + static_cast<uint64_t>(n) > options.max_bytes) {
        return Err(Status::DataError(url + ": body over the limit of " +
                                     std::to_string(options.max_bytes) + " bytes"));
      }
      body.append(buf, static_cast<size_t>(n));
    }
    if (in.bad()) return Err(Status::Unavailable(url + ": read failed (" + where + ")"));
    if (resp.hasContentLength() && resp.getContentLength64() >= 0 &&
        body.size() != static_cast<uint64_t>(resp.getContentLength64())) {
      return Err(Status::Unavailable(url + ": the body ended early (" + where + ")"));
    }
    return body;
  } catch (const Poco::Exception& e) {
    return Err(Status::Unavailable(url + " (" + where + "): " + e.displayText()));
  } catch (const std::exception& e) {
    return Err(Status::Unavailable(url + " (" + where + "): " + e.what()));
  }
}

Result<std::string> FetchHttps(const std::string& url, const FetchOptions& options) {
  ClientOptions co;
  std::string target;
  try {
    Poco::URI uri(url);
    if (uri.getScheme() != "https" || uri.getHost().empty() || !uri.getUserInfo().empty()) {
      return Err(Status::InvalidArgument("not an https:// URL: " + url));
    }
    co.host = uri.getHost();
    co.port = uri.getPort();
    target = uri.getPathEtc();
    if (target.empty()) target = "/";
  } catch (const Poco::Exception& e) {
    return Err(Status::InvalidArgument("bad URL " + url + ": " + e.displayText()));
  }
  co.ca_file = options.https_ca;
  co.system_cas = options.https_ca.empty();
  co.verify_host = true;
  co.connect_timeout_seconds = options.timeout_seconds;
  co.timeout_seconds = options.timeout_seconds;
  co.max_response_bytes = options.max_bytes;
  const std::string where = co.host + ":" + std::to_string(co.port);
  auto client = HttpsClient::Create(co);
  if (!client) {
    return Err(Status(client.error().code() == Code::kInvalidArgument ? Code::kInvalidArgument
                                                                       : Code::kUnavailable,
                      url + " (" + where + "): " + client.error().message()));
  }
  auto resp = (*client)->Get(target, {{"Accept", "application/pkix-crl, */*"}});
  if (!resp) {
    return Err(Status(resp.error().code() == Code::kDataError ? Code::kDataError
                                                               : Code::kUnavailable,
                      url + " (" + where + "): " + resp.error().message()));
  }
  if (resp->status != 200) {
    return Err(Status::DataError(url + ": HTTP " + std::to_string(resp->status)));
  }
  return std::move(resp->body);
}

}  // namespace sealpost::client
