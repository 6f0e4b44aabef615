#include "common/tls/tls_options.h"

#include "gtest/gtest.h"

namespace blockrepl {
namespace {

// A self-signed certificate for "fingerprint.test"; the expected fingerprint
// is what `openssl x509 -noout -fingerprint -sha256` prints for it.
constexpr char kCertificate[] = R"(-----BEGIN CERTIFICATE-----
MIIBjDCCATOgAwIBAgIUQU2lRowURfOekDVKf0ONzdJTBPgwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQZmluZ2VycHJpbnQudGVzdDAgFw0yNjEyMDExMTI3NDRaGA8y
MTI2MTEwNzExMjc0NFowGzEZMBcGA1UEAwwQZmluZ2VycHJpbnQudGVzdDBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABMi6ZLXYftvZBj7+8pRe1tQcT+zGlGCztvPI
3WY00tKin8aVeVT5utyqMyrsvanoLGfnYxqY4T6avEXyzVrARkSjUzBRMB0GA1Ud
DgQWBBQPlzeXhyxsZqrQ277KfoiNiLUQ0jAfBgNVHSMEGDAWgBQPlzeXhyxsZqrQ
277KfoiNiLUQ0jAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIQCF
1wCJrgJBZAGHcukHugaUZqq4QxaUzdc/HXO2pvAB9gIfKsgsShKv6Hlm0Kw+JiBt
qFIzLsF8RSbxy4+C/sqRSw==
-----END CERTIFICATE-----
)";

TEST(DescribeCertificateTest, NamesTheSubjectAndTheFingerprintAsOpensslPrintsIt) {
  absl::StatusOr<std::string> description = DescribeCertificate(kCertificate);
  ASSERT_TRUE(description.ok()) << description.status();
  EXPECT_EQ(*description,
            "subject /CN=fingerprint.test, SHA-256 fingerprint "
            "12:89:1A:BC:7A:92:C6:28:FA:98:B7:6B:D4:D2:C4:63:8C:3D:0A:EE:E4:5C:0C:05:60:23:7F:B0:"
            "6F:08:4A:47");
}

TEST(DescribeCertificateTest, RefusesWhatIsNotACertificate) {
  absl::StatusOr<std::string> description = DescribeCertificate("garbage\n");
  ASSERT_FALSE(description.ok());
  EXPECT_EQ(description.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(description.status().message().find("not a PEM certificate"), std::string::npos);
  EXPECT_FALSE(DescribeCertificate("").ok());
}

}  // namespace
}  // namespace blockrepl
