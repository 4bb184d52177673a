// Placeholder until the verify command lands.
#include "cli/commands.h"

namespace sealpost::cli {

int RunVerify(Context& ctx, const std::vector<std::string>& /*args*/) {
  return Fail(ctx, Status::Internal("'verify' is not implemented yet"));
}

}  // namespace sealpost::cli
