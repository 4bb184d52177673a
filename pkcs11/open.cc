// Placeholder until the token layer lands.
#include "pkcs11/open.h"

namespace sealpost::pkcs11 {

Result<std::unique_ptr<crypto::Signer>> OpenTokenSigner(const std::string& key_uri,
                                                        const OpenOptions&) {
  return Err(Status::Unavailable("token support is not built yet (" + key_uri + ")"));
}

}  // namespace sealpost::pkcs11
