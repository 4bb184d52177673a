#include "pkcs11/pin.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/file.h"

namespace sealpost::pkcs11 {
namespace {

Result<SecretBytes> FromFile(const std::string& path, std::string_view what, Lang lang) {
  auto pin = ReadSecretFile(path);
  if (!pin) {
    return Err(Status(pin.error().code(),
                      std::string(Tr(lang, "cannot read PIN file (", "không đọc được tệp PIN (")) +
                          std::string(what) + "): " + pin.error().message()));
  }
  if (pin->empty()) {
    return Err(Status::DataError(std::string(Tr(lang, "PIN file is empty: ", "tệp PIN rỗng: ")) +
                                 path));
  }
  return pin;
}

class TtyEcho {
 public:
  explicit TtyEcho(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &saved_) == 0) {
      struct termios t = saved_;
      t.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      t.c_lflag |= ECHONL;
      restore_ = ::tcsetattr(fd_, TCSAFLUSH, &t) == 0;
    }
  }
  ~TtyEcho() {
    if (restore_) ::tcsetattr(fd_, TCSAFLUSH, &saved_);
  }
  TtyEcho(const TtyEcho&) = delete;
  TtyEcho& operator=(const TtyEcho&) = delete;
  bool off() const { return restore_; }

 private:
  int fd_;
  struct termios saved_ {};
  bool restore_ = false;
};

Result<SecretBytes> Prompt(const PinRequest& req) {
  int fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    return Err(Status::InvalidArgument(std::string(
        Tr(req.lang, "no PIN source: give --pin-file FILE, pin-source=file:/path in the URI, or the "
                     "systemd credential sealpost-token-pin (no terminal to ask on)",
           "không có nguồn PIN: dùng --pin-file TỆP, pin-source=file:/đường/dẫn trong URI, hoặc "
           "credential systemd sealpost-token-pin (không có terminal để hỏi)"))));
  }
  std::string prompt = std::string(Tr(req.lang, "PIN for token '", "Mã PIN của token '")) +
                       req.token_label + "': ";
  if (::write(fd, prompt.data(), prompt.size()) < 0) {
    ::close(fd);
    return Err(Status::Unavailable("cannot write the PIN prompt to /dev/tty"));
  }
  char buf[256];
  size_t n = 0;
  bool echo_off = false;
  {
    TtyEcho guard(fd);
    echo_off = guard.off();
    if (echo_off) {
      while (n < sizeof buf) {
        ssize_t r = ::read(fd, buf + n, 1);
        if (r <= 0 || buf[n] == '\n') break;
        ++n;
      }
    }
  }
  ::close(fd);
  if (!echo_off) {
    return Err(Status::Unavailable("cannot switch off echo on /dev/tty; refusing to read a PIN"));
  }
  SecretBytes pin(std::string_view(buf, n));
  OPENSSL_cleanse(buf, sizeof buf);
  pin.StripOneTrailingNewline();
  if (!pin.empty() && pin.view().back() == '\r') {
    SecretBytes again(pin.view().substr(0, pin.size() - 1));
    pin = std::move(again);
  }
  if (pin.empty()) return Err(Status::DataError(std::string(Tr(req.lang, "empty PIN", "PIN rỗng"))));
  return pin;
}

}  // namespace

Result<SecretBytes> ObtainPin(const PinRequest& req) {
  if (req.pin_file) return FromFile(*req.pin_file, "--pin-file", req.lang);
  if (req.pin_source) {
    const std::string& s = *req.pin_source;
    std::string path;
    if (s.rfind("file://", 0) == 0) {
      path = s.substr(7);  // file:///abs -> /abs (empty authority only)
      if (path.empty() || path[0] != '/') {
        return Err(Status::InvalidArgument("pin-source \"" + s +
                                           "\": only file:/absolute/path (or file:///...) is supported"));
      }
    } else if (s.rfind("file:", 0) == 0) {
      path = s.substr(5);
    } else if (!s.empty() && s[0] == '/') {
      path = s;
    } else {
      return Err(Status::InvalidArgument("pin-source \"" + s +
                                         "\": only file:/absolute/path is supported"));
    }
    if (path.empty() || path[0] != '/') {
      return Err(Status::InvalidArgument("pin-source \"" + s + "\": the path must be absolute"));
    }
    return FromFile(path, "pin-source", req.lang);
  }
  if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY"); dir != nullptr && *dir != '\0') {
    std::string path = std::string(dir) + "/" + kPinCredentialName;
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) return FromFile(path, "systemd credential", req.lang);
  }
  if (req.interactive) return Prompt(req);
  return Err(Status::InvalidArgument(std::string(
      Tr(req.lang, "no PIN source: give --pin-file FILE, pin-source=file:/path in the URI, or the "
                   "systemd credential sealpost-token-pin",
         "không có nguồn PIN: dùng --pin-file TỆP, pin-source=file:/đường/dẫn trong URI, hoặc "
         "credential systemd sealpost-token-pin"))));
}

}  // namespace sealpost::pkcs11
