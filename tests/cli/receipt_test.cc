// `signet sign` and `signet verify` with a key of format "batch": Merkle batch receipts
// (appliance/formats/BATCH.md). The real binary runs against a real sign service in the test
// process (SoftHSM key, LMDB audit log, net::Server on a Unix socket). Every receipt is checked by
// `signet verify`, by the audit log, and by verify_receipt.py (VERIFY_RECEIPT_SCRIPT), a verifier
// written from BATCH.md alone with Python's standard library and the `openssl` command.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "appliance/audit/audit.h"
#include "appliance/cli/internal/receipt.h"
#include "appliance/formats/formats.h"
#include "appliance/net/net.h"
#include "appliance/service/service.h"
#include "pipeline/pipeline.h"
#include "run_util.h"
#include "tests/audit/hsm_note_signer.h"
#include "tests/hsm/softhsm_token.h"
#include "tests/net/test_util.h"

namespace signet::cli::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The audit key, the batch key and another P-256 key (served as "default", format raw) in the
// process's SoftHSM token. Never destroyed: Logs may sign checkpoints until they close.
struct ReceiptKeys {
  audit::testing::AuditKey audit;
  std::unique_ptr<hsm::Token> token;
  hsm::KeyHandle batch_key;
  hsm::KeyHandle other_key;

  ReceiptKeys() {
    auto opened = hsm::Token::Open(hsm::testing::ConfigFor(audit::testing::AuditKey::token(), 2));
    if (!opened) {
      throw std::runtime_error("open token: " + opened.error().message());
    }
    token = std::move(*opened);
    batch_key = Generate("receipt-cli-batch-p256");
    other_key = Generate("receipt-cli-other-p256");
  }

  hsm::KeyHandle Generate(const std::string& label) {
    auto key = token->GenerateKey(label, hsm::KeyType::kEcdsaP256);
    if (!key) {
      throw std::runtime_error("generate key: " + key.error().message());
    }
    return std::move(*key);
  }
};

ReceiptKeys& SharedReceiptKeys() {
  static auto* keys = new ReceiptKeys();
  return *keys;
}

std::string PolicyText() {
  return "[[rule]]\n"
         "name = \"test-signers\"\n"
         "keys = [\"batch\", \"default\"]\n"
         "principals = [\"uid:" +
         std::to_string(::getuid()) +
         "\"]\n"
         "tools = [\"signet\"]\n";
}

std::string Sha256Hex(std::string_view data) {
  auto digest = pipeline::DigestBytes(pipeline::DigestAlgorithm::kSha256, AsBytes(data));
  return digest ? digest->Hex() : "";
}

// "FILE: REST" lines of `signet verify` or verify_receipt.py, by FILE.
std::map<std::string, std::string> Verdicts(const std::string& out) {
  std::map<std::string, std::string> verdicts;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    const std::size_t colon = line.find(": ");
    if (colon != std::string::npos) {
      verdicts[line.substr(0, colon)] = line.substr(colon + 2);
    }
  }
  return verdicts;
}

class ReceiptTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    keys_ = &SharedReceiptKeys();
    std::filesystem::create_directory(server_dir_.path() / "audit");
    auto log = audit::Log::Open(audit::testing::TestLogOptions(server_dir_.path() / "audit"),
                                keys_->audit.signer());
    ASSERT_TRUE(log) << log.error();
    log_ = std::move(*log);
    auto policy = policy::Policy::Parse(PolicyText(), "test-policy");
    ASSERT_TRUE(policy) << policy.error();
    const hsm::SignSpec spec{.scheme = hsm::Scheme::kEcdsa, .hash = hsm::Hash::kSha256};
    std::vector<service::ServiceKey> keys;
    keys.push_back(service::ServiceKey{.name = "batch",
                                       .token = keys_->token.get(),
                                       .key = keys_->batch_key,
                                       .spec = spec,
                                       .format = "batch"});
    keys.push_back(service::ServiceKey{.name = "default",
                                       .token = keys_->token.get(),
                                       .key = keys_->other_key,
                                       .spec = spec,
                                       .format = "raw"});
    auto service = service::SignService::Create(service::ServiceOptions{.host_id = "test-host"},
                                                std::move(keys), *policy, *log_);
    ASSERT_TRUE(service) << service.error();
    service_ = std::move(*service);
    socket_ = (server_dir_.path() / "sign.sock").string();
    net::ServerOptions options;
    options.unix_listeners.push_back(net::UnixListenerOptions{.path = socket_});
    auto server = net::Server::Start(std::move(options), service_->handler());
    ASSERT_TRUE(server) << server.error();
    server_ = std::move(*server);
    Make("other.pub.pem", keys_->other_key.public_key.pem);
  }

  void TearDown() override {
    if (server_) {
      server_->Stop(Deadline::In(std::chrono::seconds(5)));
    }
    server_.reset();
    service_.reset();
    if (log_) {
      (void)log_->Close();
    }
    log_.reset();
    CliTest::TearDown();
  }

  ProcessResult Sign(std::vector<std::string> args) {
    std::vector<std::string> argv{"sign", "--socket", socket_, "--key", "batch"};
    argv.insert(argv.end(), args.begin(), args.end());
    return Signet(argv);
  }

  // Writes batch.pub.pem as `signet keys show batch --pem` prints it.
  void ExportBatchKey() {
    ProcessResult pem = Signet({"keys", "show", "batch", "--pem", "--socket", socket_});
    ASSERT_EQ(pem.exit_code, 0) << pem;
    ASSERT_EQ(pem.out, keys_->batch_key.public_key.pem);
    Make("batch.pub.pem", pem.out);
  }

  // Makes `count` files of different sizes (the first empty, the second in a subdirectory).
  std::vector<std::string> MakeFiles(int count) {
    std::filesystem::create_directories(dir() / "sub");
    std::vector<std::string> files;
    for (int i = 0; i < count; ++i) {
      const std::string name = (i == 1 ? "sub/f" : "f") + std::to_string(i) + ".bin";
      const std::size_t size = i == 0 ? 0 : static_cast<std::size_t>(i * i * 997 + i);
      files.push_back(Make(name, RandomBytes(size, 7000 + i)));
    }
    return files;
  }

  json ReadReceipt(const std::string& file) const {
    return json::parse(ReadFile(dir() / (file + ".receipt")));
  }
  void WriteReceipt(const std::string& file, const json& receipt) {
    WriteFile(dir() / (file + ".receipt"), receipt.dump(2) + "\n");
  }

  ProcessResult Verify(const std::string& pub, const std::vector<std::string>& files,
                       bool json_lines = false) const {
    std::vector<std::string> argv{"verify", "--key-file", pub};
    if (json_lines) {
      argv.push_back("--json");
    }
    argv.insert(argv.end(), files.begin(), files.end());
    return Signet(argv);
  }

  ProcessResult PythonVerify(const std::string& pub, const std::vector<std::string>& files) const {
    std::vector<std::string> argv{"python3", VERIFY_RECEIPT_SCRIPT, pub};
    argv.insert(argv.end(), files.begin(), files.end());
    return Tool(argv);
  }

  // A server on the socket `name` (in server_dir_) that hands each request, after
  // `edit_request`, to the service, and the JSON of its 200 answers, after `edit_answer`, back.
  Result<std::unique_ptr<net::Server>> Relay(const std::string& name,
                                             std::function<void(net::Request&)> edit_request,
                                             std::function<void(json&)> edit_answer) const {
    net::ServerOptions options;
    options.unix_listeners.push_back(
        net::UnixListenerOptions{.path = (server_dir_.path() / name).string()});
    return net::Server::Start(
        std::move(options), [inner = service_->handler(), edit_request, edit_answer](
                                net::Request request, net::Responder respond) {
          edit_request(request);
          inner(std::move(request), [respond, edit_answer](net::Response response) {
            json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
            if (response.status == 200 && body.is_object() && body.contains("items")) {
              edit_answer(body);
              response.body = body.dump();
            }
            respond(std::move(response));
          });
        });
  }

  ReceiptKeys* keys_ = nullptr;
  net::testing::TempDir server_dir_;  // short path: the socket lives here
  std::unique_ptr<audit::Log> log_;
  std::unique_ptr<service::SignService> service_;
  std::unique_ptr<net::Server> server_;
  std::string socket_;
};

TEST_F(ReceiptTest, TwentyFilesOneBatchEveryReceiptVerifiesAndNamesItsAuditRecord) {
  const std::vector<std::string> files = MakeFiles(20);
  ProcessResult result = Sign(files);
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_THAT(result.err, HasSubstr("signed 20 files with key batch (format batch)")) << result;
  ASSERT_NO_FATAL_FAILURE(ExportBatchKey());

  std::set<std::uint64_t> indexes;
  std::set<std::string> batch_ids;
  std::set<std::uint64_t> seqs;
  std::string note;
  for (const std::string& file : files) {
    SCOPED_TRACE(file);
    EXPECT_FALSE(std::filesystem::exists(dir() / (file + ".sig")));
    ASSERT_TRUE(std::filesystem::exists(dir() / (file + ".receipt")));
    const std::string text = ReadFile(dir() / (file + ".receipt"));
    const json receipt = json::parse(text);
    EXPECT_EQ(receipt["type"], "signet-batch-receipt/v1");
    const std::string content = ReadFile(dir() / file);
    EXPECT_EQ(receipt["leaf"]["name"], file);
    EXPECT_EQ(receipt["leaf"]["size"].get<std::uint64_t>(), content.size());
    EXPECT_EQ(receipt["leaf"]["digest_algorithm"], "sha256");
    EXPECT_EQ(receipt["leaf"]["digest"], Sha256Hex(content));
    EXPECT_EQ(receipt["tree_size"].get<std::uint64_t>(), 20u);  // one request, one batch
    EXPECT_EQ(receipt["key_fingerprint"], keys_->batch_key.public_key.fingerprint);
    EXPECT_EQ(receipt["inclusion_proof"].size(), receipt["leaf_index"] < 16 ? 5u : 3u);
    EXPECT_EQ(text.back(), '\n');
    indexes.insert(receipt["leaf_index"].get<std::uint64_t>());
    batch_ids.insert(receipt["batch_id"].get<std::string>());
    note = receipt["note"].get<std::string>();

    // The receipt's seq is the file's `sign` record, in the same batch at the same leaf.
    const auto seq = receipt["seq"].get<std::uint64_t>();
    EXPECT_TRUE(seqs.insert(seq).second);
    auto record = log_->Get(seq);
    ASSERT_TRUE(record) << record.error();
    EXPECT_EQ(record->kind, audit::RecordKind::kSign);
    EXPECT_EQ(record->artifact_name, file);
    EXPECT_EQ(record->artifact_size, content.size());
    EXPECT_EQ(record->digests["sha256"], Sha256Hex(content));
    EXPECT_EQ(record->key_name, "batch");
    EXPECT_EQ(record->request_id, receipt["leaf"]["request_id"]);
    ASSERT_TRUE(record->batch.has_value());
    EXPECT_EQ(record->batch->id, receipt["batch_id"]);
    EXPECT_EQ(record->batch->leaf_index, receipt["leaf_index"].get<std::uint64_t>());
  }
  EXPECT_EQ(indexes.size(), 20u);
  EXPECT_EQ(*indexes.rbegin(), 19u);
  ASSERT_EQ(batch_ids.size(), 1u);
  EXPECT_THAT(note, StartsWith("test-host/signet-batch/batch\n20\n"));
  EXPECT_THAT(note, HasSubstr("\nsignet-batch " + *batch_ids.begin() + " "));
  EXPECT_THAT(note, HasSubstr("\n\n\u2014 test-host/signet-batch/batch "));

  // The batch's own `batch` record holds the same note.
  int batch_records = 0;
  for (std::uint64_t seq = 0; seq < log_->stats().tree_size; ++seq) {
    auto record = log_->Get(seq);
    ASSERT_TRUE(record) << record.error();
    if (record->kind == audit::RecordKind::kBatch) {
      ++batch_records;
      ASSERT_TRUE(record->batch.has_value());
      EXPECT_EQ(record->batch->id, *batch_ids.begin());
      EXPECT_EQ(record->batch->tree_size, 20u);
      EXPECT_EQ(record->batch->note, note);
    }
  }
  EXPECT_EQ(batch_records, 1);

  result = Verify("batch.pub.pem", files);
  EXPECT_EQ(result.exit_code, 0) << result;
  std::map<std::string, std::string> verdicts = Verdicts(result.out);
  EXPECT_EQ(verdicts.size(), 20u) << result;
  for (const std::string& file : files) {
    EXPECT_EQ(verdicts[file], "OK") << file;
  }

  result = PythonVerify("batch.pub.pem", files);
  EXPECT_EQ(result.exit_code, 0) << result;
  verdicts = Verdicts(result.out);
  EXPECT_EQ(verdicts.size(), 20u) << result;
  for (const std::string& file : files) {
    EXPECT_EQ(verdicts[file], "OK") << file;
  }
}

// Each way of changing a file or its receipt fails that file, naming its own step, in
// `signet verify` and in verify_receipt.py; the other files of the same run still verify.
TEST_F(ReceiptTest, EachChangeFailsItsFileAtItsOwnStep) {
  const std::vector<std::string> files = MakeFiles(12);
  ProcessResult result = Sign(files);
  ASSERT_EQ(result.exit_code, 0) << result;
  ASSERT_NO_FATAL_FAILURE(ExportBatchKey());

  struct Change {
    std::string step;
    std::function<void(const std::string& file, json& receipt)> apply;
  };
  const std::vector<Change> changes = {
      {"file changed",
       [&](const std::string& file, json&) {
         std::string content = ReadFile(dir() / file);
         content[content.size() / 2] ^= 0x01;
         WriteFile(dir() / file, content);
       }},
      {"proof wrong",
       [](const std::string&, json& receipt) {
         auto node = Base64Decode(receipt["inclusion_proof"][1].get<std::string>());
         ASSERT_TRUE(node) << node.error();
         (*node)[7] ^= 0x10;
         receipt["inclusion_proof"][1] = Base64Encode(*node);
       }},
      {"leaf altered",
       [](const std::string&, json& receipt) {
         std::string name = receipt["leaf"]["name"];
         name[0] = name[0] == 'f' ? 'g' : 'f';
         receipt["leaf"]["name"] = name;
       }},
      {"leaf altered",
       [](const std::string&, json& receipt) {
         std::string digest = receipt["leaf"]["digest"];
         digest[10] = digest[10] == '0' ? '1' : '0';
         receipt["leaf"]["digest"] = digest;
       }},
      {"signature wrong",
       [](const std::string&, json& receipt) {
         // The last digit of the time on the statement's signet-batch line.
         std::string note = receipt["note"];
         const std::size_t line = note.find("\nsignet-batch ");
         ASSERT_NE(line, std::string::npos) << note;
         const std::size_t end = note.find('\n', line + 1);
         char& digit = note[end - 1];
         ASSERT_TRUE(digit >= '0' && digit <= '9') << note;
         digit = digit == '9' ? '0' : static_cast<char>(digit + 1);
         receipt["note"] = note;
       }},
      {"proof wrong",
       [](const std::string&, json& receipt) {
         const auto index = receipt["leaf_index"].get<std::uint64_t>();
         receipt["leaf_index"] = index == 0 ? 1 : index - 1;
       }},
      {"note does not match the receipt",
       [](const std::string&, json& receipt) {
         receipt["tree_size"] = receipt["tree_size"].get<std::uint64_t>() + 1;
       }},
  };
  // Change i applies to files[i + 1] (files[0] is empty); the receipt is rewritten even when the
  // change leaves it as it was (pretty-printed again, which must not matter).
  for (std::size_t i = 0; i < changes.size(); ++i) {
    json receipt = ReadReceipt(files[i + 1]);
    ASSERT_NO_FATAL_FAILURE(changes[i].apply(files[i + 1], receipt)) << "change " << i;
    WriteReceipt(files[i + 1], receipt);
  }
  const auto expected = [&](std::size_t file) -> std::string {
    return file >= 1 && file <= changes.size() ? changes[file - 1].step : "";
  };

  result = Verify("batch.pub.pem", files);
  EXPECT_EQ(result.exit_code, 1) << result;
  std::map<std::string, std::string> verdicts = Verdicts(result.out);
  EXPECT_EQ(verdicts.size(), files.size()) << result;
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (!expected(i).empty()) {
      EXPECT_THAT(verdicts[files[i]], StartsWith("FAILED (receipt: " + expected(i) + ": "))
          << files[i];
    } else {
      EXPECT_EQ(verdicts[files[i]], "OK") << files[i];
    }
  }

  result = Verify("batch.pub.pem", files, /*json_lines=*/true);
  EXPECT_EQ(result.exit_code, 1) << result;
  std::istringstream in(result.out);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    ASSERT_LT(n, files.size()) << result;
    const json verdict = json::parse(line);
    EXPECT_EQ(verdict["path"], files[n]);
    if (!expected(n).empty()) {
      std::string kind = expected(n);
      std::replace(kind.begin(), kind.end(), ' ', '_');
      EXPECT_EQ(verdict["ok"], false) << verdict;
      EXPECT_EQ(verdict["error"]["kind"], kind) << verdict;
    } else {
      EXPECT_EQ(verdict["ok"], true) << verdict;
    }
  }
  EXPECT_EQ(n, files.size());

  result = PythonVerify("batch.pub.pem", files);
  EXPECT_EQ(result.exit_code, 1) << result;
  verdicts = Verdicts(result.out);
  EXPECT_EQ(verdicts.size(), files.size()) << result;
  for (std::size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(verdicts[files[i]], expected(i).empty() ? "OK" : "FAILED (" + expected(i) + ")")
        << files[i];
  }
}

TEST_F(ReceiptTest, AnotherKeysPemIsKeyUnknown) {
  const std::vector<std::string> files = MakeFiles(3);
  ProcessResult result = Sign(files);
  ASSERT_EQ(result.exit_code, 0) << result;
  ProcessResult pem = Signet({"keys", "show", "default", "--pem", "--socket", socket_});
  ASSERT_EQ(pem.exit_code, 0) << pem;
  Make("default.pub.pem", pem.out);

  result = Verify("default.pub.pem", files);
  EXPECT_EQ(result.exit_code, 1) << result;
  std::map<std::string, std::string> verdicts = Verdicts(result.out);
  EXPECT_EQ(verdicts.size(), files.size()) << result;
  for (const std::string& file : files) {
    EXPECT_THAT(verdicts[file], StartsWith("FAILED (receipt: key unknown: ")) << file;
  }
  result = PythonVerify("default.pub.pem", files);
  EXPECT_EQ(result.exit_code, 1) << result;
  verdicts = Verdicts(result.out);
  for (const std::string& file : files) {
    EXPECT_EQ(verdicts[file], "FAILED (key unknown)") << file;
  }

  // The right key in the same tree still verifies them.
  ASSERT_NO_FATAL_FAILURE(ExportBatchKey());
  result = Verify("batch.pub.pem", files);
  EXPECT_EQ(result.exit_code, 0) << result;
}

TEST_F(ReceiptTest, ExistingReceiptIsKeptAndNotSignedWithoutForce) {
  const std::string a = Make("a.txt", "artifact a");
  const std::string b = Make("b.txt", "artifact b");
  Make("a.txt.receipt", "old receipt");
  ProcessResult result = Sign({a, b});
  EXPECT_EQ(result.exit_code, 1) << result;
  EXPECT_THAT(result.err, HasSubstr("a.txt.receipt exists; use --force")) << result;
  EXPECT_THAT(result.err, HasSubstr("signed 1 file with key batch"));
  EXPECT_THAT(result.err, HasSubstr("1 failed"));
  EXPECT_EQ(ReadFile(dir() / "a.txt.receipt"), "old receipt");
  ASSERT_NO_FATAL_FAILURE(ExportBatchKey());
  result = Verify("batch.pub.pem", {b});
  EXPECT_EQ(result.exit_code, 0) << result;
  for (std::uint64_t seq = 0; seq < log_->stats().tree_size; ++seq) {
    EXPECT_NE(log_->Get(seq)->artifact_name, "a.txt") << seq;  // nothing was signed for a.txt
  }

  result = Sign({"--force", a});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_EQ(ReadReceipt(a)["leaf"]["name"], "a.txt");
  result = Verify("batch.pub.pem", {a, b});
  EXPECT_EQ(result.exit_code, 0) << result;
  result = PythonVerify("batch.pub.pem", {a, b});
  EXPECT_EQ(result.exit_code, 0) << result;
  for (const auto& entry : std::filesystem::directory_iterator(dir())) {
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr(".tmp."))) << entry;
  }
}

TEST_F(ReceiptTest, RecursiveSkipsReceiptsFoundInDirectories) {
  std::filesystem::create_directories(dir() / "rel");
  Make("rel/a", "a");
  Make("rel/b", "b");
  ProcessResult result = Sign({"-r", "rel"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_THAT(result.err, HasSubstr("signed 2 files"));
  result = Sign({"-r", "--force", "rel"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_THAT(result.err, HasSubstr("signed 2 files"));
  EXPECT_FALSE(std::filesystem::exists(dir() / "rel/a.receipt.receipt"));
  EXPECT_FALSE(std::filesystem::exists(dir() / "rel/b.receipt.receipt"));
  ASSERT_NO_FATAL_FAILURE(ExportBatchKey());
  result = Verify("batch.pub.pem", {"rel/a", "rel/b"});
  EXPECT_EQ(result.exit_code, 0) << result;
  result = PythonVerify("batch.pub.pem", {"rel/a", "rel/b"});
  EXPECT_EQ(result.exit_code, 0) << result;
}

// `signet sign --bundle`: one file of receipts, one JSON line each, the same receipts as
// FILE.receipt files would hold; `signet verify --bundle` and verify_receipt.py check them, each
// change failing its own file at its own step.
TEST_F(ReceiptTest, ABundleHoldsEveryReceiptAndEachChangeFailsItsFile) {
  const std::vector<std::string> files = MakeFiles(12);
  std::vector<std::string> args = files;
  args.insert(args.end(), {"--bundle", "all.receipts"});
  ProcessResult result = Sign(args);
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_THAT(result.err, HasSubstr("signed 12 files with key batch")) << result;
  for (const std::string& file : files) {  // each file said once the bundle is in place
    EXPECT_THAT(result.out, HasSubstr("signed " + file + " -> all.receipts (seq ")) << result;
  }
  EXPECT_EQ(std::count(result.out.begin(), result.out.end(), '\n'), 12) << result;
  std::map<std::string, std::string> lines;  // by the name in the receipt
  {
    std::istringstream in(ReadFile(dir() / "all.receipts"));
    for (std::string line; std::getline(in, line);) {
      const json receipt = json::parse(line);
      EXPECT_EQ(receipt["type"], "signet-batch-receipt/v1");
      EXPECT_EQ(receipt["tree_size"].get<std::uint64_t>(), 12u);
      lines[receipt["leaf"]["name"].get<std::string>()] = line;
    }
  }
  ASSERT_EQ(lines.size(), files.size());
  for (const std::string& file : files) {
    EXPECT_TRUE(lines.contains(file)) << file;
    EXPECT_FALSE(std::filesystem::exists(dir() / (file + ".receipt"))) << file;
  }
  ASSERT_NO_FATAL_FAILURE(ExportBatchKey());

  // Without FILEs: every file the bundle names; with them: those, by name.
  result = Signet({"verify", "--key-file", "batch.pub.pem", "--bundle", "all.receipts"});
  EXPECT_EQ(result.exit_code, 0) << result;
  std::map<std::string, std::string> verdicts = Verdicts(result.out);
  EXPECT_EQ(verdicts.size(), files.size()) << result;
  for (const std::string& file : files) {
    EXPECT_EQ(verdicts[file], "OK") << file;
  }
  result = Tool({"python3", VERIFY_RECEIPT_SCRIPT, "batch.pub.pem", "--bundle", "all.receipts"});
  EXPECT_EQ(result.exit_code, 0) << result;
  EXPECT_EQ(Verdicts(result.out).size(), files.size()) << result;
  Make("unsigned.bin", "never signed");
  result = Signet({"verify", "--key-file", "batch.pub.pem", "--bundle", "all.receipts", "./f2.bin",
                   "unsigned.bin"});
  EXPECT_EQ(result.exit_code, 1) << result;
  verdicts = Verdicts(result.out);
  EXPECT_EQ(verdicts["./f2.bin"], "OK") << result;
  EXPECT_EQ(verdicts["unsigned.bin"], "FAILED (no receipt: all.receipts has none for this name)")
      << result;

  // One artifact changed, one receipt's proof changed, one signed by another key: each fails at
  // its own step, and only those.
  std::string content = ReadFile(dir() / files[3]);
  content[content.size() / 2] ^= 0x01;
  WriteFile(dir() / files[3], content);
  json changed = json::parse(lines[files[5]]);
  auto node = Base64Decode(changed["inclusion_proof"][1].get<std::string>());
  ASSERT_TRUE(node) << node.error();
  (*node)[7] ^= 0x10;
  changed["inclusion_proof"][1] = Base64Encode(*node);
  lines[files[5]] = changed.dump();
  std::string bundle;
  for (const auto& [name, line] : lines) {
    bundle += line + "\n";
  }
  WriteFile(dir() / "all.receipts", bundle);
  for (const bool python : {false, true}) {
    SCOPED_TRACE(python ? "verify_receipt.py" : "signet verify");
    result =
        python
            ? Tool({"python3", VERIFY_RECEIPT_SCRIPT, "batch.pub.pem", "--bundle", "all.receipts"})
            : Signet({"verify", "--key-file", "batch.pub.pem", "--bundle", "all.receipts"});
    EXPECT_EQ(result.exit_code, 1) << result;
    verdicts = Verdicts(result.out);
    EXPECT_EQ(verdicts.size(), files.size()) << result;
    for (const std::string& file : files) {
      if (file == files[3]) {
        EXPECT_THAT(verdicts[file], HasSubstr("file changed")) << result;
      } else if (file == files[5]) {
        EXPECT_THAT(verdicts[file], HasSubstr("proof wrong")) << result;
      } else {
        EXPECT_EQ(verdicts[file], "OK") << file;
      }
    }
  }
  result = Signet({"verify", "--key-file", "other.pub.pem", "--bundle", "all.receipts", files[0]});
  EXPECT_EQ(result.exit_code, 1) << result;
  EXPECT_THAT(result.out, HasSubstr("key unknown")) << result;

  // A bundle that is not one receipt per line and name fails as a whole, naming the line.
  const std::string good = lines[files[0]] + "\n";
  const std::vector<std::pair<std::string, std::string>> bad_bundles = {
      {good + "{\"type\": 7}\n", "line 2: not a receipt"},
      {good + good, "line 2: a second receipt for f0.bin (the first is on line 1)"},
      {good + "\n" + lines[files[1]], "line 3: cut short (no newline at its end)"},
      {good + std::string(70 * 1024, ' ') + "\n", "line 2: longer than 65536 bytes"},
      {good + std::string(3 << 20, ' '), "line 2: longer than 65536 bytes"},  // across reads
  };
  for (const auto& [text, message] : bad_bundles) {
    WriteFile(dir() / "bad.receipts", text);
    result = Signet({"verify", "--key-file", "batch.pub.pem", "--bundle", "bad.receipts"});
    EXPECT_EQ(result.exit_code, 1) << result;
    EXPECT_THAT(result.err, HasSubstr("--bundle bad.receipts " + message)) << result;
    EXPECT_EQ(result.out, "") << result;
  }
}

// Each distinct note is checked once, however many receipts carry it.
TEST(RememberingCheckTest, EachNoteIsCheckedOnce) {
  std::map<std::string, int> calls;
  const formats::NoteCheck check =
      RememberingCheck([&](std::string_view note) -> Result<std::string> {
        ++calls[std::string(note)];
        if (note == "bad") {
          return MakeError(ErrorCode::kCrypto, "signature wrong");
        }
        return "text of " + std::string(note);
      });
  for (int i = 0; i < 1000; ++i) {
    auto a = check("a");
    ASSERT_TRUE(a) << a.error();
    EXPECT_EQ(*a, "text of a");
    EXPECT_EQ(*check(i % 2 == 0 ? "b" : "a"), i % 2 == 0 ? "text of b" : "text of a");
    auto bad = check("bad");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message(), "signature wrong");
  }
  EXPECT_EQ(calls, (std::map<std::string, int>{{"a", 1}, {"b", 1}, {"bad", 1}}));
}

// ReadBatchAnswerFast reads an answer of the usual shape without a DOM. For every answer it does
// not give up on, it must read exactly what ReadBatchAnswer reads from the parsed answer: checked
// on the usual answer (which it must read), on thousands of structural changes to it, and on
// random edits of its text.
std::string Describe(const ReadAnswer& answer) {
  std::string out = "request_id=" + answer.request_id + "\n";
  for (const Result<AnsweredBatch>& batch : answer.batches) {
    out += batch ? "batch " + batch->batch_id + " " + std::to_string(batch->tree_size) + " " +
                       (batch->proofs ? "proofs " : "no-proofs ") + json(batch->note).dump() + "\n"
                 : "batch error: " + batch.error().message() + "\n";
  }
  for (const Result<AnsweredLine>& line : answer.lines) {
    out += line ? "line " + std::to_string(line->batch) + " " + std::to_string(line->leaf_index) +
                      " " + std::to_string(line->seq) + " " + std::to_string(line->proof.size()) +
                      "\n"
                : "line error: " + line.error().message() + "\n";
  }
  return out;
}

TEST(ReadBatchAnswerTest, FastReadAgreesWithTheDomReadOrGivesUp) {
  const std::vector<std::string> files = {
      "dist/a.tar.gz", "quote\"back\\slash", "caf\xc3\xa9", "line\nbreak", "./x//y", "z"};
  const std::vector<std::string_view> names(files.begin(), files.end());
  json base = {
      {"batches", json::array({{{"batch_id", "0123456789abcdef0123456789abcdef"},
                                {"inclusion_proofs", false},
                                {"note", "host/signet-batch/k\n4\nroot=\n\n\xe2\x80\x94 k AbC=\n"},
                                {"seq", 7},
                                {"tree_size", 4}},
                               {{"batch_id", "fedcba9876543210fedcba9876543210"},
                                {"inclusion_proofs", false},
                                {"note", "second"},
                                {"seq", 12},
                                {"tree_size", 2}}})},
      {"format", "batch"},
      {"items", json::array()},
      {"key", "batch"},
      {"key_fingerprint", "00ff"},
      {"request_id", "req-1"}};
  for (std::size_t i = 0; i < files.size(); ++i) {
    base["items"].push_back({{"batch", i < 4 ? 0 : 1},
                             {"leaf_index", i < 4 ? i : i - 4},
                             {"name", files[i]},
                             {"seq", 8 + i + (i < 4 ? 0 : 1)}});
  }
  std::size_t compared = 0;
  const auto agree = [&](const std::string& text) {
    const std::optional<ReadAnswer> fast = ReadBatchAnswerFast(text, names);
    if (!fast) {
      return false;
    }
    const json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
    // The fast read takes an answer only when it has one line per file, as WriteSigned checks
    // before it reads one into receipts.
    EXPECT_TRUE(parsed.is_object() && parsed.contains("items") && parsed["items"].is_array() &&
                parsed["items"].size() == files.size())
        << text;
    if (!parsed.is_object() || !parsed.contains("items") ||
        parsed["items"].size() != files.size()) {
      return true;
    }
    EXPECT_EQ(Describe(*fast), Describe(ReadBatchAnswer(parsed, names))) << text;
    ++compared;
    return true;
  };
  ASSERT_TRUE(agree(base.dump()));
  ASSERT_TRUE(agree(base.dump(2)));
  const std::vector<json> values = {
      nullptr,  true,          false,          -1,      0, 1, 4, 1.5, "", "req-2",
      files[1], json::array(), json::object(), 1u << 31};
  std::mt19937 rng(7);
  for (int trial = 0; trial < 4000; ++trial) {
    json answer = base;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      // Pick an object in the answer: the envelope, a batch or an item.
      json* object = &answer;
      const unsigned where = rng() % 3;
      if (where == 1 && answer.contains("batches") && answer["batches"].is_array() &&
          !answer["batches"].empty()) {
        object = &answer["batches"][rng() % answer["batches"].size()];
      } else if (where == 2 && answer.contains("items") && answer["items"].is_array() &&
                 !answer["items"].empty()) {
        object = &answer["items"][rng() % answer["items"].size()];
      }
      if (!object->is_object() || object->empty()) {
        continue;
      }
      auto field = object->begin();
      std::advance(field, static_cast<long>(rng() % object->size()));
      switch (rng() % 4) {
        case 0:
          object->erase(field);
          break;
        case 1:
          *field = values[rng() % values.size()];
          break;
        case 2:
          (*object)["extra"] = values[rng() % values.size()];
          break;
        default:
          if (answer["items"].is_array() && !answer["items"].empty()) {
            if (rng() % 2 == 0) {
              answer["items"].erase(answer["items"].end() - 1);
            } else {
              answer["items"].push_back(answer["items"][0]);
            }
          }
      }
    }
    agree(answer.dump());
  }
  const std::string text = base.dump();
  for (int trial = 0; trial < 4000; ++trial) {
    std::string edited = text;
    edited[rng() % edited.size()] = "{}[]\",:0123456789 \\ntfa"[rng() % 24];
    agree(edited);
  }
  EXPECT_GT(compared, 100u);
}

// A bundle's receipts are assembled by several threads once an answer has a few thousand files
// (on a machine of two cores or more): every file still gets exactly one receipt, and each holds.
TEST_F(ReceiptTest, ALargeAnswerAssembledInPartsGivesEveryFileOneReceipt) {
  // One request (8192 files per request for a batch key), in parts of at least 1,024 files.
  constexpr int kFiles = 3000;
  std::set<std::string> files;
  for (int i = 0; i < kFiles; ++i) {
    files.insert(Make("many/f" + std::to_string(i), "artifact " + std::to_string(i)));
  }
  ProcessResult result = Sign({"-r", "many", "--bundle", "all.receipts"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.err, HasSubstr("signed 3000 files with key batch")) << result.err;
  EXPECT_EQ(std::count(result.out.begin(), result.out.end(), '\n'), kFiles);
  std::multiset<std::string> named;
  std::set<std::uint64_t> leaves;
  std::istringstream in(ReadFile(dir() / "all.receipts"));
  for (std::string line; std::getline(in, line);) {
    const json receipt = json::parse(line);
    EXPECT_EQ(receipt["tree_size"].get<std::uint64_t>(), std::uint64_t{kFiles});
    named.insert(receipt["leaf"]["name"].get<std::string>());
    leaves.insert(receipt["leaf_index"].get<std::uint64_t>());
  }
  EXPECT_EQ(named.size(), files.size());
  EXPECT_EQ(std::set<std::string>(named.begin(), named.end()), files);
  EXPECT_EQ(leaves.size(), files.size());
  ASSERT_NO_FATAL_FAILURE(ExportBatchKey());
  result = Signet({"verify", "--key-file", "batch.pub.pem", "--bundle", "all.receipts"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const std::map<std::string, std::string> verdicts = Verdicts(result.out);
  EXPECT_EQ(verdicts.size(), files.size());
  EXPECT_EQ(std::count_if(verdicts.begin(), verdicts.end(),
                          [](const auto& v) { return v.second == "OK"; }),
            kFiles);
}

// An existing bundle is kept without --force (nothing is signed), replaced with it; -r does not
// sign the bundle or its temporary file; a key of format raw has no bundles.
TEST_F(ReceiptTest, ABundleIsReplacedOnlyWithForceAndIsNoArtifact) {
  std::filesystem::create_directories(dir() / "rel");
  Make("rel/a", "a");
  Make("rel/b", "b");
  Make("rel/old.receipts", "old bundle\n");
  ProcessResult result = Sign({"-r", "rel", "--bundle", "rel/old.receipts"});
  EXPECT_EQ(result.exit_code, 1) << result;
  EXPECT_THAT(result.err, HasSubstr("--bundle rel/old.receipts: exists; use --force to replace it"))
      << result;
  EXPECT_EQ(ReadFile(dir() / "rel/old.receipts"), "old bundle\n");
  const std::uint64_t records = log_->stats().tree_size;

  result = Sign({"-r", "rel", "--bundle", "rel/old.receipts", "--force"});
  ASSERT_EQ(result.exit_code, 0) << result;
  EXPECT_THAT(result.err, HasSubstr("signed 2 files with key batch")) << result;
  EXPECT_GT(log_->stats().tree_size, records);
  ASSERT_NO_FATAL_FAILURE(ExportBatchKey());
  result = Signet({"verify", "--key-file", "batch.pub.pem", "--bundle", "rel/old.receipts"});
  EXPECT_EQ(result.exit_code, 0) << result;
  EXPECT_EQ(Verdicts(result.out).size(), 2u) << result;
  for (const auto& entry : std::filesystem::directory_iterator(dir() / "rel")) {
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr(".tmp."))) << entry;
  }

  result =
      Signet({"sign", "--socket", socket_, "--key", "default", "--bundle", "x.receipts", "rel/a"});
  EXPECT_EQ(result.exit_code, 2) << result;
  EXPECT_THAT(result.err, HasSubstr("--bundle is for keys of format batch")) << result;
  EXPECT_FALSE(std::filesystem::exists(dir() / "x.receipts"));
}

// Without X-Signet-Batch-Proofs (a window batch, or an older signetd, answers the same way) every
// item carries its proof: signet checks each receipt on its own, and they verify as ever; a proof
// changed in the answer writes no receipt for its file alone.
TEST_F(ReceiptTest, AnswerWithProofsWritesReceiptsThatVerify) {
  for (const bool tamper : {false, true}) {
    SCOPED_TRACE(tamper ? "the second item's proof changed" : "as answered");
    const std::string name = tamper ? "tampered.sock" : "proofs.sock";
    auto server = Relay(
        name,
        [](net::Request& request) {
          std::erase_if(request.headers,
                        [](const auto& header) { return header.first == "x-signet-batch-proofs"; });
        },
        [tamper](json& body) {
          if (tamper) {
            json& proof = body["items"][1]["inclusion_proof"];
            proof[0] = proof[1];
          }
        });
    ASSERT_TRUE(server) << server.error();
    const std::string prefix = tamper ? "t" : "p";
    const std::vector<std::string> files = {
        Make(prefix + "1.txt", "one"), Make(prefix + "2.txt", "two"),
        Make(prefix + "3.txt", "three"), Make(prefix + "4.txt", "four")};
    const std::string saved = std::exchange(socket_, (server_dir_.path() / name).string());
    ProcessResult result = Sign({files[0], files[1], files[2], files[3]});
    socket_ = saved;
    (*server)->Stop(Deadline::In(std::chrono::seconds(5)));
    if (tamper) {
      EXPECT_EQ(result.exit_code, 1) << result;
      EXPECT_THAT(result.err, HasSubstr("1 failed")) << result;
      EXPECT_THAT(result.err, HasSubstr("does not check out (proof wrong)")) << result;
      EXPECT_FALSE(std::filesystem::exists(dir() / (files[1] + ".receipt")));
      ASSERT_NO_FATAL_FAILURE(ExportBatchKey());
      result = PythonVerify("batch.pub.pem", {files[0], files[2], files[3]});
      EXPECT_EQ(result.exit_code, 0) << result;
      continue;
    }
    EXPECT_EQ(result.exit_code, 0) << result;
    ASSERT_NO_FATAL_FAILURE(ExportBatchKey());
    result = PythonVerify("batch.pub.pem", files);
    EXPECT_EQ(result.exit_code, 0) << result;
  }
}

// A batch answered without proofs is rebuilt by the client from its own leaves: an answer that
// puts them elsewhere in the tree (here: two leaf indices swapped, which the note's signature
// cannot catch) makes a tree whose root is not the signed one, and one that names a leaf twice
// does not describe the batch; either way nothing is written.
TEST_F(ReceiptTest, AnswerThatMovesOrRepeatsLeavesWritesNoReceipt) {
  for (const bool repeat : {false, true}) {
    SCOPED_TRACE(repeat ? "a leaf index named twice" : "two leaf indices swapped");
    const std::string name = repeat ? "repeated.sock" : "swapped.sock";
    auto server = Relay(
        name, [](net::Request&) {},
        [repeat](json& body) {
          json& items = body["items"];
          if (repeat) {
            items[1]["leaf_index"] = items[0]["leaf_index"];
          } else {
            std::swap(items[0]["leaf_index"], items[1]["leaf_index"]);
          }
        });
    ASSERT_TRUE(server) << server.error();
    const std::string a = Make("a.txt", "artifact a");
    const std::string b = Make("b.txt", "artifact b");
    const std::string c = Make("c.txt", "artifact c");
    const std::string saved = std::exchange(socket_, (server_dir_.path() / name).string());
    ProcessResult result = Sign({a, b, c});
    socket_ = saved;
    (*server)->Stop(Deadline::In(std::chrono::seconds(5)));
    EXPECT_EQ(result.exit_code, 1) << result;
    EXPECT_THAT(result.err, HasSubstr("3 failed")) << result;
    EXPECT_THAT(result.err, HasSubstr(repeat ? "does not list its 3 leaves once each"
                                             : "does not check out (proof wrong)"))
        << result;
    for (const std::string& file : {a, b, c}) {
      EXPECT_FALSE(std::filesystem::exists(dir() / (file + ".receipt"))) << file;
    }
  }
  // Untampered, the same files sign.
  ProcessResult result = Sign({"a.txt", "b.txt", "c.txt"});
  EXPECT_EQ(result.exit_code, 0) << result;
  ASSERT_NO_FATAL_FAILURE(ExportBatchKey());
  result = PythonVerify("batch.pub.pem", {"a.txt", "b.txt", "c.txt"});
  EXPECT_EQ(result.exit_code, 0) << result;
}

}  // namespace
}  // namespace signet::cli::testing
