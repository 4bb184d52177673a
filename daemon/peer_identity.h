// Which union a peer appliance is: its TLS client certificate (already
// verified by the TLS layer against the peer CA bundle) matched against the
// `tls_identity` of each union in the policy registry (issuer + serial,
// SPKI SHA-256, or subject under a trust anchor of the policy).
#ifndef SEALPOST_DAEMON_PEER_IDENTITY_H_
#define SEALPOST_DAEMON_PEER_IDENTITY_H_

#include <string>

#include <openssl/x509.h>

#include "base/openssl.h"
#include "base/status.h"
#include "policies/policy.h"

namespace sealpost::daemon {

class PeerIdentifier {
 public:
  // `ca_file`: the PEM bundle the peer listener verifies client certificates
  // with (the same file); used again here to build the certificate's chain
  // for subject-under-CA identities. NotFound/DataError naming the file.
  [[nodiscard]] static Result<PeerIdentifier> Create(const std::string& ca_file);

  // The id of the union whose tls_identity matches `cert` (borrowed).
  // PermissionDenied when none does (the message names the certificate's
  // subject and SPKI hash); DataError if two unions claim it (the loader
  // refuses that, so it means a bug). Thread-safe.
  [[nodiscard]] Result<std::string> UnionOf(X509* cert, const policies::Policy& policy) const;

 private:
  explicit PeerIdentifier(X509StorePtr store) : store_(std::move(store)) {}
  X509StorePtr store_;
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_PEER_IDENTITY_H_
