#include "base/status.h"

namespace sealpost {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kDataError: return "data error";
    case Code::kNotFound: return "not found";
    case Code::kUnavailable: return "unavailable";
    case Code::kInternal: return "internal error";
    case Code::kIoError: return "i/o error";
    case Code::kPermissionDenied: return "permission denied";
    case Code::kFailedPrecondition: return "failed precondition";
  }
  return "unknown";
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return Status(code_, std::move(m));
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return message_;
}

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case Code::kOk: return 0;
    case Code::kInvalidArgument: return 64;
    case Code::kDataError: return 65;
    case Code::kFailedPrecondition: return 65;
    case Code::kNotFound: return 66;
    case Code::kUnavailable: return 69;
    case Code::kInternal: return 70;
    case Code::kIoError: return 74;
    case Code::kPermissionDenied: return 77;
  }
  return 70;
}

}  // namespace sealpost
