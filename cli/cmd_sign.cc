// Placeholder until the sign command lands.
#include "cli/commands.h"

namespace sealpost::cli {

int RunSign(Context& ctx, const std::vector<std::string>& /*args*/) {
  return Fail(ctx, Status::Internal("'sign' is not implemented yet"));
}

}  // namespace sealpost::cli
