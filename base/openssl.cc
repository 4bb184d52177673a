#include "base/openssl.h"

#include <openssl/err.h>

namespace sealpost {

std::string DrainOpenSslErrors() {
  std::string out;
  const char* file = nullptr;
  const char* func = nullptr;
  const char* data = nullptr;
  int line = 0;
  int flags = 0;
  unsigned long e;
  while ((e = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
    if (data != nullptr && (flags & ERR_TXT_STRING) && *data) {
      out += " (";
      out += data;
      out += ")";
    }
  }
  return out;
}

Status OpenSslStatus(Code code, std::string_view what) {
  std::string m(what);
  std::string q = DrainOpenSslErrors();
  if (!q.empty()) {
    m += " [";
    m += q;
    m += "]";
  }
  return Status(code, std::move(m));
}

void ClearOpenSslErrors() { ERR_clear_error(); }

}  // namespace sealpost
