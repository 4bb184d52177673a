#include "client/smtp_client.h"

#include <unistd.h>

#include <mutex>

#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/DialogSocket.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SMTPClientSession.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Timespan.h>
#include <openssl/ssl.h>

#include "base/openssl.h"

namespace sealpost::client {
namespace {

// PoCo keeps the dialog socket protected; the raw DATA bytes and STARTTLS on
// a socket we connected (with a timeout) need it.
class Session : public Poco::Net::SMTPClientSession {
 public:
  explicit Session(const Poco::Net::StreamSocket& s) : SMTPClientSession(s) {}
  using SMTPClientSession::socket;
};

bool SafeAddress(const std::string& a) {
  return !a.empty() && a.size() <= 254 && a.find_first_of("\r\n<> \t") == std::string::npos;
}

// One line for errors: the server's reply without CR/LF.
std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  if (s.size() > 300) s.resize(300);
  return s;
}

Status Rejected(int code, const std::string& command, const std::string& reply,
                const std::string& where) {
  std::string m = where + ": " + command + " answered " + OneLine(reply);
  if (code >= 500) return Status::PermissionDenied("the mail server refused: " + m);
  return Status::Unavailable("the mail server deferred: " + m);
}

std::string QueueId(const std::string& reply) {
  // Postfix: "250 2.0.0 Ok: queued as 4KzXyZ1abc"; Exim: "250 OK id=1abc-..."
  for (std::string_view mark : {"queued as ", "id="}) {
    size_t p = reply.find(mark);
    if (p == std::string::npos) continue;
    p += mark.size();
    size_t e = p;
    while (e < reply.size() && reply[e] != ' ' && reply[e] != '\r' && reply[e] != '\n') ++e;
    if (e > p && e - p <= 64) return reply.substr(p, e - p);
  }
  return "";
}

}  // namespace

std::string DotStuff(std::string_view message) {
  std::string out;
  out.reserve(message.size() + message.size() / 512 + 4);
  bool line_start = true;
  for (char c : message) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = c == '\n';
  }
  if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
  return out;
}

Result<SmtpAccepted> SendMail(const SmtpOptions& o, const std::string& from,
                              const std::vector<std::string>& to, std::string_view message) {
  if (!SafeAddress(from)) return Err(Status::InvalidArgument("smtp: bad sender address"));
  if (to.empty()) return Err(Status::InvalidArgument("smtp: no recipient"));
  for (const std::string& t : to) {
    if (!SafeAddress(t)) return Err(Status::InvalidArgument("smtp: bad recipient address " + t));
  }
  if (o.starttls && !o.ca.empty() && ::access(o.ca.c_str(), R_OK) != 0) {
    return Err(Status::NotFound("smtp: cannot read the CA bundle " + o.ca));
  }
  const std::string where = o.host + ":" + std::to_string(o.port);
  try {
    Poco::Net::StreamSocket sock;
    sock.connect(Poco::Net::SocketAddress(o.host, static_cast<Poco::UInt16>(o.port)),
                 Poco::Timespan(o.timeout_seconds, 0));
    Session session(sock);
    session.setTimeout(Poco::Timespan(o.timeout_seconds, 0));
    std::string reply;
    int code = session.socket().receiveStatusMessage(reply);
    if (code / 100 != 2) return Err(Rejected(code, "the greeting", reply, where));
    auto command = [&](const std::string& cmd, int expect_class) -> Status {
      int c = session.sendCommand(cmd, reply);
      if (c / 100 == expect_class) return Status::Ok();
      std::string name = cmd.substr(0, cmd.find_first_of(" :"));
      return Rejected(c == 0 ? 421 : c, name, reply, where);
    };
    if (Status s = command("EHLO " + o.helo, 2); !s.ok()) {
      if (Status h = command("HELO " + o.helo, 2); !h.ok()) return Err(h);
    }
    if (o.starttls) {
      static std::once_flag once;
      std::call_once(once, [] { Poco::Net::initializeSSL(); });
      Poco::Net::Context::Params p;
      p.caLocation = o.ca;
      p.loadDefaultCAs = o.ca.empty();
      p.verificationMode = Poco::Net::Context::VERIFY_RELAXED;
      p.verificationDepth = 9;
      p.cipherList = "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES";
      Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, p);
      ctx->enableExtendedCertificateVerification(true);  // the name must match the host
      SSL_CTX_set_min_proto_version(ctx->sslContext(), TLS1_2_VERSION);
      if (reply.find("STARTTLS") == std::string::npos) {
        return Err(Status::Unavailable("smtp " + where +
                                       ": STARTTLS is required by the configuration but the "
                                       "server does not offer it"));
      }
      if (Status s = command("STARTTLS", 2); !s.ok()) return Err(s);
      Poco::Net::SecureStreamSocket tls =
          Poco::Net::SecureStreamSocket::attach(session.socket(), o.host, ctx);
      session.socket() = tls;
      if (Status s = command("EHLO " + o.helo, 2); !s.ok()) return Err(s);
    }
    if (Status s = command("MAIL FROM:<" + from + ">", 2); !s.ok()) return Err(s);
    for (const std::string& t : to) {
      if (Status s = command("RCPT TO:<" + t + ">", 2); !s.ok()) return Err(s);
    }
    if (Status s = command("DATA", 3); !s.ok()) return Err(s);
    std::string data = DotStuff(message);
    data += ".\r\n";
    size_t sent = 0;
    while (sent < data.size()) {
      int n = session.socket().sendBytes(data.data() + sent,
                                         static_cast<int>(std::min<size_t>(data.size() - sent, 65536)));
      if (n <= 0) return Err(Status::Unavailable("smtp " + where + ": connection closed during DATA"));
      sent += static_cast<size_t>(n);
    }
    code = session.socket().receiveStatusMessage(reply);
    if (code / 100 != 2) return Err(Rejected(code == 0 ? 421 : code, "end of DATA", reply, where));
    SmtpAccepted out;
    out.code = code;
    out.reply = OneLine(reply);
    out.queue_id = QueueId(reply);
    try {
      session.close();  // QUIT; the message is accepted whatever happens now
    } catch (const Poco::Exception&) {
    }
    return out;
  } catch (const Poco::TimeoutException& e) {
    return Err(Status::Unavailable("smtp " + where + ": timed out: " + e.displayText()));
  } catch (const Poco::Exception& e) {
    ClearOpenSslErrors();
    return Err(Status::Unavailable("smtp " + where + ": " + e.displayText()));
  } catch (const std::exception& e) {
    return Err(Status::Unavailable("smtp " + where + ": " + e.what()));
  }
}

}  // namespace sealpost::client
