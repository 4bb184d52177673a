// Which PKCS#11 modules may be loaded. A module is a shared library that runs
// inside our process with the PIN in reach: only allowlisted ones load.
//
// The allowlist is, first that applies:
//  1. the file named by $SEALPOST_PKCS11_ALLOWLIST (a path, not a secret;
//     meant for tests and unusual installs), which must be readable;
//  2. /etc/sealpost/pkcs11-modules.allow, if it exists;
//  3. the built-in defaults: SoftHSM2 and OpenSC as Debian installs them.
// Files hold one absolute path a line; blank lines and '#' comments are
// ignored. Entries and requested modules are both compared by resolved real
// path (Debian's /usr/lib/softhsm/libsofthsm2.so is a symlink); entries that
// do not exist are skipped.
#ifndef SEALPOST_PKCS11_ALLOWLIST_H_
#define SEALPOST_PKCS11_ALLOWLIST_H_

#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace sealpost::pkcs11 {

inline constexpr char kAllowlistEnv[] = "SEALPOST_PKCS11_ALLOWLIST";
inline constexpr char kAllowlistFile[] = "/etc/sealpost/pkcs11-modules.allow";

struct AllowedModule {
  std::string listed;     // as written in the allowlist
  std::string real_path;  // resolved
};

// The allowlisted modules that exist, in allowlist order. Errors only when a
// configured allowlist file cannot be read or holds a relative path.
Result<std::vector<AllowedModule>> LoadAllowlist();

// Resolves the module a URI or flag names and checks it against the
// allowlist. Exactly one of `module_path` / `module_name` should be set;
// `module_name` matches an allowlisted file whose name is NAME, NAME.so,
// libNAME.so or NAME-pkcs11.so. Returns the real path to load.
// Errors: NotFound (no such file), PermissionDenied naming the real path
// (not allowlisted), InvalidArgument (neither given).
Result<std::string> ResolveAllowedModule(const std::optional<std::string>& module_path,
                                         const std::optional<std::string>& module_name);

}  // namespace sealpost::pkcs11

#endif  // SEALPOST_PKCS11_ALLOWLIST_H_
