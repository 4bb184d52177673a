// Whole-file reads and atomic, durable writes.
#ifndef SEALPOST_BASE_FILE_H_
#define SEALPOST_BASE_FILE_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "base/secret.h"
#include "base/status.h"

namespace sealpost {

// Reads a whole file. NotFound if it does not exist or cannot be opened,
// DataError if larger than max_bytes.
Result<std::string> ReadFile(const std::string& path, size_t max_bytes = 256u << 20);

// Reads a small secret file (a PIN) straight into SecretBytes.
Result<SecretBytes> ReadSecretFile(const std::string& path, size_t max_bytes = 4096);

// Reads a secret file that must be private to its owner, checking the very
// file it reads: one open() with O_NOFOLLOW | O_NONBLOCK, then fstat() of
// that descriptor — no window between the check and the read in which the
// path could be swapped. Errors, each "<what> <path>..." and never the
// content: NotFound (cannot open), DataError (a symbolic link, not a regular
// file, larger than max_bytes), PermissionDenied (accessible by group or
// others: names the mode). One trailing newline is stripped.
Result<SecretBytes> ReadPrivateSecretFile(const std::string& path, std::string_view what,
                                          size_t max_bytes = 4096);

// Writes `data` to `path` atomically and durably: a temporary file in the same
// directory, fsync, rename over `path`, fsync of the directory. On any
// failure nothing is left at `path` that was not there before.
Status WriteFileAtomic(const std::string& path, std::string_view data, int mode = 0644);

}  // namespace sealpost

#endif  // SEALPOST_BASE_FILE_H_
