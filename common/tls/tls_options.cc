#include "common/tls/tls_options.h"

#include <arpa/inet.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cstdio>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/tls/tls_file_mirror.h"

namespace blockrepl {

namespace {

// How often gRPC re-reads the certificate files: a renewed certificate is in
// use for new handshakes within this many seconds.
constexpr unsigned kRefreshSeconds = 1;

std::string HostOf(const std::string& address) {
  std::string host = address;
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    return host.substr(1, close == std::string::npos ? std::string::npos : close - 1);
  }
  const size_t colon = host.rfind(':');
  if (colon != std::string::npos && host.find(':') == colon) host = host.substr(0, colon);
  if (absl::StartsWith(host, "ipv4:")) host = host.substr(5);
  return host;
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;

FILE* OpenOrNull(const std::string& path) { return fopen(path.c_str(), "r"); }

// What gRPC's watcher is given: checked copies (tls_file_mirror.h). Both
// agents check the files at start, so this fails only if they broke since;
// then gRPC gets the files themselves, as before the mirror.
TlsOptions WatchedCopies(const TlsOptions& tls) {
  absl::StatusOr<TlsOptions> copies = MirrorTlsFiles(tls);
  if (copies.ok()) return *copies;
  LogError("TLS files: ", copies.status().message(), " (gRPC reads them directly)");
  return tls;
}

}  // namespace

bool IsLoopbackAddress(const std::string& address) {
  const std::string host = HostOf(address);
  if (host == "localhost" || host == "::1") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return false;
}

absl::Status CheckTlsOptions(const TlsOptions& tls, const std::string& address) {
  if (tls.enabled() && (tls.cert.empty() || tls.key.empty() || tls.ca.empty())) {
    return absl::InvalidArgumentError(
        "mutual TLS needs all of --tls-cert, --tls-key and --tls-ca");
  }
  if (!tls.enabled() && !tls.peer_name.empty()) {
    return absl::InvalidArgumentError("--peer-name needs TLS (--tls-cert, --tls-key, --tls-ca)");
  }
  if (!tls.enabled() && !tls.insecure && !IsLoopbackAddress(address)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing plaintext replication on ", address,
        ": give --tls-cert, --tls-key and --tls-ca (see deploy/tls/make-certs.sh), or --insecure "
        "if the link is protected otherwise (VPN, tunnel)"));
  }
  return absl::OkStatus();
}

absl::Status CheckTlsFiles(const TlsOptions& tls) {
  ERR_clear_error();
  FILE* f = OpenOrNull(tls.cert);
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot read --tls-cert ", tls.cert));
  X509Ptr cert(PEM_read_X509(f, nullptr, nullptr, nullptr));
  fclose(f);
  if (!cert) {
    return absl::InvalidArgumentError(
        absl::StrCat(tls.cert, ": not a PEM certificate (", OpenSslError(), ")"));
  }
  f = OpenOrNull(tls.key);
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot read --tls-key ", tls.key));
  KeyPtr key(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
  fclose(f);
  if (!key) {
    return absl::InvalidArgumentError(
        absl::StrCat(tls.key, ": not a PEM private key (", OpenSslError(), ")"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(tls.key, " is not the private key of ", tls.cert));
  }
  StorePtr store(X509_STORE_new());
  if (X509_STORE_load_file(store.get(), tls.ca.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load --tls-ca ", tls.ca, " (", OpenSslError(), ")"));
  }
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
  if (X509_verify_cert(ctx.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        tls.cert, " does not chain to the CA in ", tls.ca, ": ",
        X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()))));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(const TlsOptions& tls,
                                                                 grpc::ChannelArguments* args) {
  if (!tls.enabled()) return grpc::InsecureChannelCredentials();
  const TlsOptions files = WatchedCopies(tls);
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key, files.cert, files.ca, kRefreshSeconds);
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  // The secondary's certificate must name --peer-name when given (its
  // address may be an IP the certificate does not list), else its host.
  if (!tls.peer_name.empty()) args->SetSslTargetNameOverride(tls.peer_name);
  return grpc::experimental::TlsCredentials(options);
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsOptions& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  const TlsOptions files = WatchedCopies(tls);
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key, files.cert, files.ca, kRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

bool PeerCertificateNames(const grpc::AuthContext& auth, const std::string& name) {
  for (const char* property : {"x509_subject_alternative_name", "x509_common_name"}) {
    for (const grpc::string_ref& value : auth.FindPropertyValues(property)) {
      if (std::string(value.data(), value.size()) == name) return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> DescribeCertificate(std::string_view pem) {
  using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return absl::InternalError(OpenSslError());
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("not a PEM certificate: ", OpenSslError()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (X509_digest(cert.get(), EVP_sha256(), digest, &digest_size) != 1) {
    return absl::InternalError(OpenSslError());
  }
  std::string fingerprint;
  for (unsigned int i = 0; i < digest_size; ++i) {
    absl::StrAppend(&fingerprint, i == 0 ? "" : ":", absl::Hex(digest[i], absl::kZeroPad2));
  }
  char subject[256] = "";
  X509_NAME_oneline(X509_get_subject_name(cert.get()), subject, sizeof(subject));
  return absl::StrCat("subject ", subject, ", SHA-256 fingerprint ",
                      absl::AsciiStrToUpper(fingerprint));
}

std::string DescribePeerCertificate(const std::shared_ptr<const grpc::AuthContext>& auth) {
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  std::vector<grpc::string_ref> pem = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pem.empty()) return "";
  absl::StatusOr<std::string> description =
      DescribeCertificate(std::string_view(pem.front().data(), pem.front().size()));
  return description.ok() ? *description : std::string(description.status().message());
}

std::string DescribeTransport(const TlsOptions& tls, const std::string& address) {
  if (tls.enabled()) {
    return absl::StrCat("mutual TLS (certificate ", tls.cert, ", CA ", tls.ca,
                        tls.peer_name.empty() ? "" : absl::StrCat(", peer must be ", tls.peer_name),
                        ")");
  }
  if (IsLoopbackAddress(address)) return "PLAINTEXT (loopback only)";
  return "PLAINTEXT WITHOUT ENCRYPTION OR AUTHENTICATION (--insecure): anyone who reaches "
         "the port can read or inject replication traffic";
}

}  // namespace blockrepl
