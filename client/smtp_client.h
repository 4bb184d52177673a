// Sends one ready-made message over SMTP (RFC 5321) with PoCo's
// SMTPClientSession, STARTTLS (SecureSMTPClientSession) when asked. The
// message bytes are sent exactly as given (dot-stuffed only): an S/MIME
// signature covers them, so nothing may re-encode them (PoCo's MailMessage
// would). See docs/email.md.
//
// Thread-safety: SendMail is reentrant (one connection per call).
#ifndef SEALPOST_CLIENT_SMTP_CLIENT_H_
#define SEALPOST_CLIENT_SMTP_CLIENT_H_

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace sealpost::client {

struct SmtpOptions {
  std::string host;        // the relay
  int port = 25;
  bool starttls = false;   // STARTTLS is then required: a server without it is an error
  std::string ca;          // PEM bundle the server's certificate must chain to (with starttls);
                           // empty: the system's
  std::string helo = "sealpost.invalid";  // EHLO name
  int timeout_seconds = 30;               // connect and each read
};

// The dot-stuffed DATA body: every line starting with '.' gets another one;
// a final CRLF is added when missing. (Without the terminating ".CRLF".)
std::string DotStuff(std::string_view message);

// The server's answer to the end of DATA (e.g. "250 2.0.0 Ok: queued as 4Xy"):
struct SmtpAccepted {
  int code = 0;
  std::string reply;
  std::string queue_id;  // parsed from "queued as X" when present, else empty
};

// Sends `message` (CRLF lines) from `from` to each of `to`.
// Errors: kUnavailable for network or TLS failures, timeouts and 4xx
// replies (try again later); kPermissionDenied for a 5xx reply (final:
// the message, with the server's reply, names the command); kInvalidArgument
// for addresses with CR/LF/<>.
Result<SmtpAccepted> SendMail(const SmtpOptions& options, const std::string& from,
                              const std::vector<std::string>& to, std::string_view message);

}  // namespace sealpost::client

#endif  // SEALPOST_CLIENT_SMTP_CLIENT_H_
