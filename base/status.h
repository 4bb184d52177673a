// Error type of the whole project: a Status (code + one-line message) and
// Result<T> = std::expected<T, Status>. See docs/decisions/0001-language-and-errors.md.
#ifndef SEALPOST_BASE_STATUS_H_
#define SEALPOST_BASE_STATUS_H_

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace sealpost {

// Codes are kinds of failure, chosen so that the CLI can map each to one exit
// status (sysexits.h) and the HTTP layer to one status code.
enum class Code {
  kOk = 0,
  kInvalidArgument,     // the caller's request is malformed (usage)        -> 64
  kDataError,           // input is not what it should be (not CMS, ...)    -> 65
  kNotFound,            // a file, key or object does not exist             -> 66
  kUnavailable,         // token or service unavailable, timed out          -> 69
  kInternal,            // a bug or an unexpected library failure           -> 70
  kIoError,             // a write failed                                   -> 74
  kPermissionDenied,    // refused: PIN wrong/locked, module not allowed    -> 77
  kFailedPrecondition,  // state does not allow it (signature mismatch, ...) -> 65
};

std::string_view CodeName(Code code);

// A Status is either OK or carries a code and a message. Messages are one
// line, say what failed and name the thing (file, URI), never contain secrets.
class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status DataError(std::string m) { return {Code::kDataError, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Status IoError(std::string m) { return {Code::kIoError, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {Code::kFailedPrecondition, std::move(m)};
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns a copy with "context: " put in front of the message.
  Status WithContext(std::string_view context) const;
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Status>;

// Builds the error side of a Result: `return Err(Status::NotFound("..."));`
inline std::unexpected<Status> Err(Status s) { return std::unexpected<Status>(std::move(s)); }

// Exit status for a Status, as every `sealpost` command uses it.
int ExitCodeFor(const Status& s);

}  // namespace sealpost

// Propagates a failed Status from an expression returning Status.
#define SP_RETURN_IF_ERROR(expr)                       \
  do {                                                 \
    ::sealpost::Status sp_status__ = (expr);           \
    if (!sp_status__.ok()) return ::sealpost::Err(std::move(sp_status__)); \
  } while (0)

#endif  // SEALPOST_BASE_STATUS_H_
