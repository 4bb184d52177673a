#include "daemon/signer/socket_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "daemon/signer/protocol.h"

namespace sealpost::signer {
namespace {

// Milliseconds left until `deadline` for poll(); 0 when it has passed.
int MsLeft(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                    std::chrono::steady_clock::now());
  if (left.count() <= 0) return 0;
  if (left.count() > 1000 * 1000) return 1000 * 1000;
  return static_cast<int>(left.count()) + 1;
}

// Waits for `events` on fd. False on timeout.
bool WaitFor(int fd, short events, Deadline deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int ms = MsLeft(deadline);
    if (ms == 0) return false;
    int r = ::poll(&p, 1, ms);
    if (r > 0) return true;
    if (r == 0) continue;  // re-check the deadline
    if (errno != EINTR) return true;  // let the read/write report the error
  }
}

// Reads exactly n bytes. `*got` counts what arrived.
Status ReadExact(int fd, char* buf, size_t n, Deadline deadline, size_t* got) {
  *got = 0;
  while (*got < n) {
    ssize_t r = ::recv(fd, buf + *got, n - *got, MSG_DONTWAIT);
    if (r > 0) {
      *got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return Status::Unavailable("signer connection closed by the peer");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!WaitFor(fd, POLLIN, deadline)) return Status::Unavailable("signer connection timed out");
      continue;
    }
    return Status::Unavailable(std::string("signer connection: ") + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

UniqueFd::~UniqueFd() { reset(); }

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<UniqueFd> ConnectUnix(const std::string& path, Deadline deadline) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Err(Status::InvalidArgument("signer socket path '" + path + "' is empty or too long"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Err(Status::Internal(std::string("socket: ") + std::strerror(errno)));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      return Err(Status::Unavailable("signer unavailable: cannot connect to " + path + ": " +
                                     std::strerror(errno)));
    }
    // A full backlog: wait for the connection to complete.
    if (!WaitFor(fd.get(), POLLOUT, deadline)) {
      return Err(Status::Unavailable("signer unavailable: connecting to " + path + " timed out"));
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      return Err(Status::Unavailable("signer unavailable: cannot connect to " + path + ": " +
                                     std::strerror(err ? err : errno)));
    }
  }
  return fd;
}

Status WriteFrame(int fd, std::string_view payload, Deadline deadline) {
  std::string frame = Frame(payload);
  size_t done = 0;
  while (done < frame.size()) {
    ssize_t w = ::send(fd, frame.data() + done, frame.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      done += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!WaitFor(fd, POLLOUT, deadline)) return Status::Unavailable("signer connection timed out");
      continue;
    }
    return Status::Unavailable(std::string("signer connection: ") +
                               (w < 0 ? std::strerror(errno) : "closed"));
  }
  return Status::Ok();
}

Result<std::string> ReadFrame(int fd, Deadline deadline, bool* clean_eof) {
  if (clean_eof) *clean_eof = false;
  char prefix[4];
  size_t got = 0;
  Status s = ReadExact(fd, prefix, sizeof prefix, deadline, &got);
  if (!s.ok()) {
    if (clean_eof && got == 0 && s.message().find("closed") != std::string::npos) *clean_eof = true;
    return Err(s);
  }
  auto len = DecodeFrameLength(std::string_view(prefix, sizeof prefix));
  if (!len) return Err(len.error());
  std::string payload(*len, '\0');
  SP_RETURN_IF_ERROR(ReadExact(fd, payload.data(), payload.size(), deadline, &got));
  return payload;
}

}  // namespace sealpost::signer
