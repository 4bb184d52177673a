// Placeholder until the token command lands.
#include "cli/commands.h"

namespace sealpost::cli {

int RunToken(Context& ctx, const std::vector<std::string>& /*args*/) {
  return Fail(ctx, Status::Internal("'token' is not implemented yet"));
}

}  // namespace sealpost::cli
