// Frames over a connected Unix stream socket, with deadlines. Shared by the
// client (RemoteSigner) and the server (sealpost-signer).
// Thread-safety: functions are reentrant; one fd is used by one thread at a
// time.
#ifndef SEALPOST_DAEMON_SIGNER_SOCKET_IO_H_
#define SEALPOST_DAEMON_SIGNER_SOCKET_IO_H_

#include <chrono>
#include <string>
#include <string_view>

#include "base/status.h"

namespace sealpost::signer {

using Deadline = std::chrono::steady_clock::time_point;

// Owns a file descriptor (closed on destruction).
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Connects to the Unix socket at `path` (non-blocking connect bounded by
// `deadline`). kUnavailable (naming the path) when nothing listens there;
// kInvalidArgument if the path is too long for sockaddr_un.
Result<UniqueFd> ConnectUnix(const std::string& path, Deadline deadline);

// Writes one frame (length prefix + payload). kUnavailable when the peer is
// gone or the deadline passes. Never raises SIGPIPE.
Status WriteFrame(int fd, std::string_view payload, Deadline deadline);

// Reads one frame's payload. kUnavailable when the peer closed the
// connection or the deadline passed (`*clean_eof` is set when the peer closed
// before the first byte of a frame); kDataError for a bad length prefix.
Result<std::string> ReadFrame(int fd, Deadline deadline, bool* clean_eof = nullptr);

}  // namespace sealpost::signer

#endif  // SEALPOST_DAEMON_SIGNER_SOCKET_IO_H_
