// The `sealpost` commands. Each takes the arguments after its own name and
// returns the process exit status. Each lives in its own cmd_*.cc.
#ifndef SEALPOST_CLI_COMMANDS_H_
#define SEALPOST_CLI_COMMANDS_H_

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/lang.h"
#include "base/status.h"

namespace sealpost::policies {
struct Policy;
}  // namespace sealpost::policies

namespace sealpost::cli {

struct Context {
  Lang lang = Lang::kEn;
  FILE* out = stdout;
  FILE* err = stderr;
};

// Prints "sealpost: <message>" to ctx.err and returns ExitCodeFor(s).
int Fail(const Context& ctx, const Status& s);

int RunToken(Context& ctx, const std::vector<std::string>& args);   // cli/cmd_token.cc
int RunSign(Context& ctx, const std::vector<std::string>& args);    // cli/cmd_sign.cc
int RunVerify(Context& ctx, const std::vector<std::string>& args);  // cli/cmd_verify.cc
int RunPolicy(Context& ctx, const std::vector<std::string>& args);  // cli/cmd_policy.cc
int RunAdmin(Context& ctx, const std::vector<std::string>& args);   // cli/cmd_admin.cc
int RunAudit(Context& ctx, const std::vector<std::string>& args);   // cli/cmd_audit.cc
int RunArchive(Context& ctx, const std::vector<std::string>& args);  // cli/cmd_archive.cc
int RunDoctor(Context& ctx, const std::vector<std::string>& args);   // cli/cmd_doctor.cc
// submit, status, list, fetch, inbox: the API client commands (cli/cmd_client.cc).
int RunClient(Context& ctx, const std::string& command, const std::vector<std::string>& args);

// Loads and validates policy files (cli/cmd_policy.cc). On errors prints
// every "file:line:column: message" and a summary to ctx.err, stores the exit
// status in *exit_code and returns null.
std::shared_ptr<const policies::Policy> LoadPolicyOrReport(const Context& ctx,
                                                           const std::vector<std::string>& files,
                                                           int* exit_code);

}  // namespace sealpost::cli

#endif  // SEALPOST_CLI_COMMANDS_H_
