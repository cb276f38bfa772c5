// signetd's configuration: a complete file parses to what it says; every mistake is refused with
// the file, line and setting named.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "appliance/daemon/daemon.h"

namespace signet::daemon {
namespace {

using ::testing::HasSubstr;

constexpr const char* kGood = R"(state_dir = "/var/lib/signet"
host_id = "signet-01"
policy_file = "policy.toml"

[[hsm]]
name = "main"
token_label = "signet"
pin_file = "/etc/signet/pin"
sessions = 4
verify_before_release = false

[[key]]
name = "default"
hsm = "main"
algorithm = "ecdsa-p256"
format = "raw"

[[key]]
name = "release"
hsm = "main"
label = "release-2026"
algorithm = "rsa-3072"
format = "raw"
hash = "sha512"
rsa_padding = "pss"

[[key]]
name = "audit"
hsm = "main"
algorithm = "ed25519"
format = "checkpoint"

[audit]
dir = "/var/lib/signet/audit"
checkpoint_file = "/var/log/signet/checkpoints"
key = "audit"
map_size = "128MiB"
max_map_size = "32 GiB"
checkpoint_every = 5000
checkpoint_interval_ms = 250

[[listen]]
unix = "/run/signet/sign.sock"
mode = "0660"
group = "signet"

[[listen]]
tls = "0.0.0.0:8443"
cert = "tls/server.pem"
key = "tls/server.key"
ca = "/etc/signet/clients-ca.pem"

[limits]
max_body_bytes = "4MiB"
max_items_per_request = 2000
idle_timeout_ms = 10000
)";

// kGood with `from` replaced by `to` (which must occur).
std::string With(std::string_view from, std::string_view to) {
  std::string text = kGood;
  const std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) {
    text.replace(at, from.size(), to);
  }
  return text;
}

void ExpectRefused(const std::string& text, std::string_view where, std::string_view what) {
  auto config = ParseConfig(text, "/etc/signet/signetd.toml");
  ASSERT_FALSE(config) << "accepted a configuration with " << what;
  EXPECT_EQ(config.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(config.error().message(), HasSubstr(std::string(where)));
  EXPECT_THAT(config.error().message(), HasSubstr(std::string(what)));
}

TEST(ConfigTest, AGoodFileSaysWhatItMeans) {
  auto config = ParseConfig(kGood, "/etc/signet/signetd.toml");
  ASSERT_TRUE(config) << config.error();
  EXPECT_EQ(config->host_id, "signet-01");
  EXPECT_EQ(config->policy_file, "/etc/signet/policy.toml");  // relative to the file
  ASSERT_EQ(config->hsms.size(), 1u);
  EXPECT_EQ(config->hsms[0].sessions, 4u);
  EXPECT_FALSE(config->hsms[0].verify_before_release);
  EXPECT_EQ(config->hsms[0].module, "/usr/lib/softhsm/libsofthsm2.so");
  ASSERT_EQ(config->keys.size(), 3u);
  EXPECT_EQ(config->keys[0].label, "default");  // defaults to the name
  EXPECT_EQ(config->keys[1].label, "release-2026");
  EXPECT_EQ(config->keys[1].hash, "sha512");
  EXPECT_EQ(config->keys[1].rsa_padding, "pss");
  EXPECT_EQ(config->audit.map_size, std::size_t{128} << 20);
  EXPECT_EQ(config->audit.max_map_size, std::size_t{32} << 30);
  EXPECT_EQ(config->audit.checkpoint_every, 5000u);
  EXPECT_EQ(config->audit.checkpoint_interval, std::chrono::milliseconds(250));
  EXPECT_EQ(config->audit.origin, "signet-01/audit");
  ASSERT_EQ(config->listeners.size(), 2u);
  EXPECT_EQ(config->listeners[0].mode, 0660u);
  EXPECT_EQ(config->listeners[1].cert_file, "/etc/signet/tls/server.pem");
  EXPECT_EQ(config->limits.max_body_bytes, std::size_t{4} << 20);
  EXPECT_EQ(config->limits.max_items_per_request, 2000u);
  EXPECT_EQ(config->limits.max_header_bytes, 16u * 1024);  // default
}

TEST(ConfigTest, UnknownAndMistypedSettingsNameFileLineAndSetting) {
  ExpectRefused(With("sessions = 4", "session = 4"), "signetd.toml:9:11: hsm[0].session",
                "unknown setting");
  ExpectRefused(With("sessions = 4", "sessions = \"4\""), "signetd.toml:9:", "must be an integer");
  ExpectRefused(With("sessions = 4", "sessions = 65"), "hsm[0].sessions", "between 1 and 64");
  ExpectRefused(With("map_size = \"128MiB\"", "map_size = \"128MB\""),
                "signetd.toml:37:", "audit.map_size");
  ExpectRefused(With("[limits]", "[limit]"), "signetd.toml:", "limit: unknown setting");
  ExpectRefused(With("mode = \"0660\"", "mode = 660"), "listen[0].mode", "octal");
  ExpectRefused(With("verify_before_release = false", "verify_before_release = 0"),
                "verify_before_release", "true or false");
  ExpectRefused(With("idle_timeout_ms = 10000", "idle_timeout_ms = 0"), "limits.idle_timeout_ms",
                "between 1 and");
  ExpectRefused(With("[limits]", "[[limits]]"), "limits", "must be a table");
}

TEST(ConfigTest, SyntaxErrorsNameTheLine) {
  ExpectRefused(With("sessions = 4", "sessions = = 4"), "signetd.toml:9:", "");
}

TEST(ConfigTest, RequiredSettingsAndCrossChecks) {
  ExpectRefused(With("token_label = \"signet\"\n", ""), "hsm[0].token_label", "required");
  ExpectRefused(With("policy_file = \"policy.toml\"\n", ""), "policy_file", "required");
  ExpectRefused(With("hsm = \"main\"\nalgorithm = \"ecdsa-p256\"",
                     "hsm = \"backup\"\nalgorithm = \"ecdsa-p256\""),
                "key", "names hsm \"backup\", which no [[hsm]] is");
  ExpectRefused(With("name = \"release\"", "name = \"default\""), "key",
                "two [[key]] tables are named \"default\"");
  ExpectRefused(With("label = \"release-2026\"", "label = \"default\""), "key",
                "one key, one format");
  ExpectRefused(With("format = \"checkpoint\"", "format = \"raw\""), "audit.key",
                "must have format \"checkpoint\"");
  ExpectRefused(With("key = \"audit\"", "key = \"nope\""), "audit.key", "is not a [[key]]");
  ExpectRefused(With("algorithm = \"ecdsa-p256\"", "algorithm = \"dsa\""), "key[0].algorithm",
                "is not one of");
  ExpectRefused(With("format = \"raw\"", "format = \"pgp\""), "key[0].format", "is not a format");
  ExpectRefused(With("hash = \"sha512\"", "hash = \"md5\""), "key[1].hash", "sha256");
  ExpectRefused(With("format = \"raw\"\n", "format = \"raw\"\nrsa_padding = \"pss\"\n"),
                "key[0].rsa_padding", "RSA keys only");
  ExpectRefused(With("ca = \"/etc/signet/clients-ca.pem\"\n", ""), "tls",
                "client certificates are required");
  ExpectRefused(With("group = \"signet\"", "group = \"signet\"\ntls = \"0.0.0.0:1\""), "unix",
                "exactly one of");
  ExpectRefused(With("max_map_size = \"32 GiB\"", "max_map_size = \"1MiB\""), "audit.max_map_size",
                "at least audit.map_size");
}

TEST(ConfigTest, Sizes) {
  EXPECT_EQ(ParseSize("4096").value(), 4096u);
  EXPECT_EQ(ParseSize("64MiB").value(), std::size_t{64} << 20);
  EXPECT_EQ(ParseSize("2 GiB").value(), std::size_t{2} << 30);
  EXPECT_FALSE(ParseSize("64MB"));
  EXPECT_FALSE(ParseSize("0"));
  EXPECT_FALSE(ParseSize("-1KiB"));
  EXPECT_FALSE(ParseSize("99999999999999TiB"));
  EXPECT_FALSE(ParseSize(""));
}

TEST(ConfigTest, LoadConfigReadsTheFileAndNamesAMissingOne) {
  const std::filesystem::path path = std::filesystem::temp_directory_path() / "signetd-test.toml";
  {
    std::ofstream out(path);
    out << kGood;
  }
  auto config = LoadConfig(path);
  ASSERT_TRUE(config) << config.error();
  EXPECT_EQ(config->policy_file, path.parent_path() / "policy.toml");
  std::filesystem::remove(path);
  auto missing = LoadConfig(path);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(missing.error().message(), HasSubstr(path.string()));
}

}  // namespace
}  // namespace signet::daemon
