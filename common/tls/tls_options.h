// Transport security of the replication stream (mutual TLS through gRPC's
// TLS credentials, OpenSSL underneath). Both agents take the same flags:
// --tls-cert/--tls-key/--tls-ca (all three or none), optional --peer-name
// (the other side's certificate must name it), and --insecure, without which
// plaintext is refused unless the replication address is loopback.
// Certificates are re-read from their files while running (new handshakes
// use the new ones; live streams go on), so a renewal needs no restart.
// Value types and free functions; thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace blockrepl {

struct TlsOptions {
  std::string cert;       // PEM certificate (chain) presented to the peer
  std::string key;        // PEM private key of `cert`
  std::string ca;         // PEM CA bundle the peer's certificate must chain to
  std::string peer_name;  // "" = any certificate from `ca`; else its SAN (or CN) must match
  bool insecure = false;  // allow plaintext on a non-loopback address
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

// True for 127.0.0.0/8, ::1 and "localhost" (HOST:PORT, [v6]:PORT or HOST).
bool IsLoopbackAddress(const std::string& address);

// The flag combination for a stream on `address` (the secondary's for a
// primary, the listen address for a secondary): a partial file set, or
// plaintext off loopback without --insecure, is an error naming the fix.
absl::Status CheckTlsOptions(const TlsOptions& tls, const std::string& address);

// Opens the files and checks them with OpenSSL: the key matches the
// certificate, and the certificate chains to the CA. Errors name the file.
absl::Status CheckTlsFiles(const TlsOptions& tls);

// The primary's channel credentials (plaintext when !tls.enabled()), plus the
// channel arguments they need (e.g. the name to verify).
std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(const TlsOptions& tls,
                                                                 grpc::ChannelArguments* args);
// The secondary's server credentials; client certificates are required and
// verified against the CA.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsOptions& tls);

// Whether the authenticated peer of a call presents a certificate naming
// `name` (a DNS/IP subject alternative name, or the common name).
bool PeerCertificateNames(const grpc::AuthContext& auth, const std::string& name);

// "subject CN=..., SHA-256 fingerprint AB:CD:..." of a PEM certificate, the
// fingerprint as `openssl x509 -noout -fingerprint -sha256` prints it, so an
// operator can tell which of two certificates with the same name (before and
// after a renewal) a peer presented.
absl::StatusOr<std::string> DescribeCertificate(std::string_view pem);
// The same for the peer of a call; empty unless it was authenticated by a
// certificate (plaintext, or no auth context).
std::string DescribePeerCertificate(const std::shared_ptr<const grpc::AuthContext>& auth);

// One-line description for the startup log ("mutual TLS (cert ..., CA ...)"
// or a loud plaintext warning).
std::string DescribeTransport(const TlsOptions& tls, const std::string& address);

}  // namespace blockrepl
