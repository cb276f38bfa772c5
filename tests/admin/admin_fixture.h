// tests/admin/admin_fixture.h: the admin API in-process against real parts: a SoftHSM token (one
// per process), an LMDB audit log, the admin state store, a SignService on sign.sock and the
// AdminService on admin.sock (net::Server on Unix sockets, the accept-time role check on), with
// curl as the client.
//
// Use: derive a fixture from AdminFixture (override PolicyText() for other roles or rules), or use
// it directly. Each test binary that links signet_admin_testing gets its own SoftHSM token.
// In tests/admin/CMakeLists.txt, add a test file to the `admin_test` sources (one binary).
#ifndef SIGNET_TESTS_ADMIN_ADMIN_FIXTURE_H_
#define SIGNET_TESTS_ADMIN_ADMIN_FIXTURE_H_

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "admin/admin.h"
#include "tests/net/test_util.h"

namespace signet::admin::testing {

// "uid:<this process's uid>".
std::string SelfPrincipal();

// A policy: rule "self" lets this process's uid sign with key "default" (tool "signet"), and
// [roles] gives it `roles` (e.g. {"admin", "auditor"}).
std::string PolicyFor(const std::vector<std::string>& roles);

class AdminFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // The policy the store is seeded with. Default: PolicyFor({"admin", "approver", "auditor"}).
  virtual std::string PolicyText() const;

  // Starts everything again on the same directories (the log, the store): a restart.
  void Restart();
  void Stop();
  void Start();

  // HTTP over admin.sock: `method` "GET", "POST", "PUT"; `body` sent as given.
  net::testing::HttpResult Admin(std::string_view method, std::string_view path,
                                 std::string_view body = {}, std::string_view extra_args = {});
  // The JSON body of an answer (null when it is not JSON).
  static nlohmann::json Json(const net::testing::HttpResult& result);
  // POST /v1/sign on sign.sock with one item named `name` whose content is `content`, key
  // "default".
  net::testing::HttpResult Sign(std::string_view name, std::string_view content,
                                std::string_view tool = "signet", std::string_view key = "default");
  // GET on sign.sock.
  net::testing::HttpResult SignSocketGet(std::string_view path);

  // Every committed record, in order (read through the Log of this process).
  std::vector<audit::Record> Records();

  // Held requests expire this long after they were held (set before SetUp, or Restart).
  std::chrono::milliseconds approval_ttl_{std::chrono::hours(24)};

  const std::filesystem::path& dir() const { return dir_.path(); }
  const std::filesystem::path& admin_socket() const { return admin_socket_; }
  const std::filesystem::path& sign_socket() const { return sign_socket_; }
  audit::Log& log() { return *log_; }
  StateStore& store() { return *store_; }
  service::SignService& service() { return *service_; }
  AdminService& admin() { return *admin_; }
  // The audit key's public half (PEM), for VerifyExport / `signet audit verify`.
  std::string AuditPublicKeyPem() const;
  std::string AuditOrigin() const { return "signet.test/audit"; }

 private:
  net::testing::TempDir dir_;
  std::filesystem::path admin_socket_;
  std::filesystem::path sign_socket_;
  std::unique_ptr<audit::Log> log_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<service::SignService> service_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<net::Server> sign_server_;
  std::unique_ptr<net::Server> admin_server_;
  int bodies_ = 0;
};

}  // namespace signet::admin::testing

#endif  // SIGNET_TESTS_ADMIN_ADMIN_FIXTURE_H_
