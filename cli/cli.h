// Entry point of the `sealpost` command.
#ifndef SEALPOST_CLI_CLI_H_
#define SEALPOST_CLI_CLI_H_

namespace sealpost::cli {

// Parses argv, runs the command, returns the process exit status
// (0 ok/PASSED, 1 FAILED, 2 INDETERMINATE, 64 usage, 65 bad input,
// 66 unreadable file, 69 token/service unavailable, 70 internal).
int Main(int argc, char** argv);

}  // namespace sealpost::cli

#endif  // SEALPOST_CLI_CLI_H_
