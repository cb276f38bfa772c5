// `signet sign --key NAME FILE...`: hashes files where they are and has signetd sign the digests,
// writing raw detached signatures (FILE.sig). Three stages overlap: the hasher's workers hash
// files, sender threads post full batches of digests to the daemon (--requests of them, each with
// its own persistent HTTP connection, so the daemon's HSM sessions and audit commits always have
// the next batch at hand), and each sender writes its batch's signatures as the answer comes back
// while the hasher carries on with the next files.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/command.h"
#include "appliance/cli/internal/daemon_client.h"
#include "appliance/cli/internal/digest.h"
#include "appliance/cli/internal/json_line.h"
#include "appliance/cli/internal/output_file.h"
#include "appliance/cli/internal/parse.h"
#include "appliance/cli/internal/progress.h"
#include "appliance/cli/internal/receipt.h"
#include "appliance/cli/internal/sign_wait.h"
#include "appliance/cli/internal/signature_files.h"
#include "appliance/formats/formats.h"

namespace signet::cli {
namespace {

using nlohmann::json;

constexpr std::string_view kToolVersion = "0.1.0";
constexpr std::size_t kDefaultBatch = 256;
// For batch keys every request is one HSM signature (up to the daemon's max_batch_leaves), so
// requests are large by default: 20,000 files take 3.
constexpr std::size_t kDefaultReceiptBatch = 8192;
constexpr std::size_t kMaxBatch = 10000;  // the daemon's default max_items_per_request
constexpr unsigned kDefaultRequests = 4;  // requests in flight
constexpr unsigned kMaxRequests = 64;
constexpr std::size_t kMaxNameBytes = 4096;
constexpr std::uint64_t kDefaultWaitSeconds = 3600;
constexpr std::uint64_t kMaxWaitSeconds = 30 * 24 * 3600;

constexpr std::string_view kFooter = R"footer(
The key's hash (GET /v1/keys/NAME) decides what the files are hashed with. Digests go to signetd
in batches of --batch-size, --requests of them at a time, while hashing continues; each answered
FILE gets FILE.sig (with --out-dir DIR: DIR/FILE.sig, FILE's relative path mirrored under DIR),
the raw signature that `openssl dgst -sha256 -verify pub.pem -signature FILE.sig FILE` checks.
With a key of format "batch", each FILE gets FILE.receipt instead: a Merkle batch receipt (one HSM
signature covers a whole request), checked against the key before it is written; `signet verify`
checks it offline. Signatures and receipts are written to a temporary file and renamed into
place. An existing FILE.sig (FILE.receipt) is never replaced without --force: its FILE fails and
its digest is not sent. With -r, files named *.sig or *.receipt found in directories are skipped.

With --bundle FILE (batch keys), every receipt goes to FILE instead, one JSON line each, and
`signet verify --bundle FILE` checks them. FILE appears (or is replaced, only with --force) once it
is whole and fsync'd, and its files are reported signed only then; -r never signs FILE itself.

Prints "signed FILE -> FILE.sig (seq N)" per file as its batch is answered (--json: one object
per file: path, signature_path, seq, ok, error), errors on stderr, and a summary on stderr. A
refusal by the daemon (policy, rate limit, audit log unavailable) fails every file of its batch.

A policy rule with `approvals = M` holds a request instead of signing it (signetd answers 202):
nothing is written for its files, and "held for approval: ID (rule R needs M approvals)" is
printed on stderr (--json: its files' lines carry "approval_id"); approvers run `signet admin
approvals approve ID`. With --wait, signet polls signetd (every 0.5 s, backing off to 5 s) until
every held request is signed, then writes its files' signatures as usual; a denial, an expiry, a
failure or --wait-timeout (default 3600 s) fails its files.

Once approved, a request held by an earlier run is collected with --collect ID and the same
--key and PATHs (and -r, and working directory): nothing is sent. The files are hashed again and
matched to the request's signed files by name (each must be one of them, and none may be
missing: otherwise nothing is written), and each signature is checked against the file as it is
now before it is written, so a file changed since the request fails. Approved and still being
signed by signetd: waited for (up to 60 s). Still pending: exit 3 (with --wait: wait for it as
above); denied, expired or failed: exit 1 with the reason. A run
whose files went out in several requests is collected one ID at a time, with each one's files.

Exit status: 0 every file signed, 1 a file failed (or the daemon could not be used),
2 bad command line, 3 some files are held for approval (without --wait) and none failed.

Examples:
  signet sign --key release dist/*.tar.gz
  signet sign --key release -r --out-dir sigs/ dist/
  signet sign --key batch -r --bundle dist.receipts dist/
  signet sign --key release --wait --wait-timeout 600 dist/app.tar.gz
  signet sign --key release --collect 5d41402abc4b2a76b9719d911017c592 dist/app.tar.gz
  signet sign --socket /run/signet/sign.sock --key release --json build/app.bin | jq .seq
  signet sign --url https://signer.example:8443 --cert ci.pem --cert-key ci.key \
      --cacert signer-ca.pem --key release dist/app.tar.gz)footer";

// ---- The command -------------------------------------------------------------------------------

struct SignSettings {
  Endpoint endpoint;
  unsigned hash_threads = 0;  // 0: one per core
  unsigned requests = kDefaultRequests;
  std::string key;
  bool recursive = false;
  std::optional<std::filesystem::path> out_dir;
  std::optional<std::string> bundle;  // --bundle FILE: every receipt in FILE
  std::size_t batch_size = kDefaultBatch;
  bool batch_size_given = false;
  bool force = false;
  bool json = false;
  bool wait = false;
  std::chrono::seconds wait_timeout{kDefaultWaitSeconds};
  std::optional<std::string> collect;  // --collect ID: a request held by an earlier run
  std::vector<std::filesystem::path> paths;
};

// The key as GET /v1/keys/NAME describes it.
struct KeyInfo {
  std::string name;
  std::string algorithm;
  std::string format;  // "raw" (FILE.sig) or "batch" (FILE.receipt)
  pipeline::DigestAlgorithm hash = pipeline::DigestAlgorithm::kSha256;
  std::optional<ReceiptKey> receipt_key;  // batch keys: checks every receipt before it is written
  std::string scheme;                     // "ECDSA", "RSA PKCS#1 v1.5", "RSA-PSS"
  std::string fingerprint;
  std::string public_key_pem;
  // --collect, raw keys: checks every signature against the file's digest now, before it is
  // written (a file may have changed since the request was made).
  std::optional<RawKey> raw_key;
  bool batch() const { return format == "batch"; }
};

// One file on its way to the daemon.
struct Pending {
  std::string path;
  std::string signature_path;
  std::uint64_t size = 0;
  std::string digest_hex;
};

// BatchQueue hands full batches from the hasher's callback to the senders. Bounded: Push blocks
// while `capacity` batches wait, so hashing never runs more than that far ahead of signing.
class BatchQueue {
 public:
  explicit BatchQueue(std::size_t capacity) : capacity_(capacity) {}

  void Push(std::vector<Pending> batch) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return batches_.size() < capacity_; });
    batches_.push_back(std::move(batch));
    not_empty_.notify_one();
  }
  void Close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }
  // The next batch, or nullopt once the queue is closed and empty.
  std::optional<std::vector<Pending>> Pop() {
    std::unique_lock lock(mu_);
    not_empty_.wait(lock, [&] { return closed_ || !batches_.empty(); });
    if (batches_.empty()) {
      return std::nullopt;
    }
    std::vector<Pending> batch = std::move(batches_.front());
    batches_.pop_front();
    not_full_.notify_one();
    return batch;
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<std::vector<Pending>> batches_;
  const std::size_t capacity_;
  bool closed_ = false;
};

class SignCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override;
  int Run(Console& console) override;

 private:
  // Turns the raw option strings into settings. Errors: kInvalidArgument naming the option.
  [[nodiscard]] Result<SignSettings> Validate() const;

  EndpointOptions endpoint_;
  std::string key_;
  std::string jobs_;
  std::string requests_;
  bool recursive_ = false;
  std::string out_dir_;
  std::string bundle_;
  std::string batch_size_;
  bool force_ = false;
  bool json_ = false;
  bool wait_ = false;
  std::string wait_timeout_;
  std::string collect_;
  std::vector<std::string> paths_;

  CLI::Option* jobs_option_ = nullptr;
  CLI::Option* wait_timeout_option_ = nullptr;
  CLI::Option* collect_option_ = nullptr;
  CLI::Option* requests_option_ = nullptr;
  CLI::Option* out_dir_option_ = nullptr;
  CLI::Option* bundle_option_ = nullptr;
  CLI::Option* batch_option_ = nullptr;
};

CLI::App* SignCommand::Register(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand(
      "sign", "Sign files with a key held by signetd (raw detached signatures, FILE.sig)");
  endpoint_.Register(app);
  app->add_option("-k,--key", key_, "Name of the key to sign with (GET /v1/keys lists them)")
      ->type_name("NAME")
      ->required();
  app->add_flag("-r,--recursive", recursive_,
                "Descend into directories (entries in byte order of their names)");
  out_dir_option_ = app->add_option("--out-dir", out_dir_,
                                    "Write the signature of a/b/c to DIR/a/b/c.sig instead of "
                                    "a/b/c.sig (PATHs must then be relative, without '..')")
                        ->type_name("DIR");
  bundle_option_ = app->add_option("--bundle", bundle_,
                                   "Batch keys: write every receipt to FILE, one JSON line each, "
                                   "instead of a FILE.receipt per file")
                       ->type_name("FILE")
                       ->excludes(out_dir_option_);
  batch_option_ =
      app->add_option("--batch-size", batch_size_,
                      "Files per request to signetd, 1 to 10000 (default 256; 8192 for batch keys)")
          ->type_name("N");
  requests_option_ = app->add_option("--requests", requests_,
                                     "Requests to signetd in flight at once, 1 to 64 (default 4)")
                         ->type_name("N");
  jobs_option_ = app->add_option("-j,--jobs", jobs_, "Hashing threads; 0 (default): one per core")
                     ->type_name("N");
  app->add_flag("--force", force_, "Replace existing signature files");
  CLI::Option* wait = app->add_flag(
      "--wait", wait_, "Wait for requests held for approval, then write their signatures");
  wait_timeout_option_ =
      app->add_option("--wait-timeout", wait_timeout_,
                      "Give up waiting after SECONDS (default 3600); with --wait")
          ->type_name("SECONDS")
          ->needs(wait);
  collect_option_ = app->add_option("--collect", collect_,
                                    "Send nothing: write the signatures of request ID, held by an "
                                    "earlier run and since approved, for the same PATHs")
                        ->type_name("ID");
  app->add_flag("--json", json_,
                "One JSON object per file and line: path, signature_path, seq, ok, error");
  app->add_option("PATH", paths_, "Files to sign (directories with -r)")->required();
  app->footer(std::string(kFooter) + "\n" + std::string(kEndpointHelp));
  return app;
}

Result<SignSettings> SignCommand::Validate() const {
  SignSettings settings;
  // The daemon's key names; checked here because the name goes into a URL.
  const bool valid_key = !key_.empty() && key_.size() <= 128 &&
                         key_.find_first_not_of(
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                             "0123456789._-") == std::string::npos;
  if (!valid_key) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        fmt::format("--key '{}': key names are 1 to 128 of A-Z a-z 0-9 . _ -", DisplayName(key_)));
  }
  settings.key = key_;
  settings.recursive = recursive_;
  settings.force = force_;
  settings.json = json_;
  settings.wait = wait_;
  if (collect_option_->count() > 0) {
    if (!ValidApprovalId(collect_)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("--collect '{}': a held request's ID is 1 to 128 of A-Z a-z "
                                   "0-9 . _ -",
                                   DisplayName(collect_)));
    }
    if (requests_option_->count() > 0 || batch_option_->count() > 0) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--collect sends no request: --requests and --batch-size do not apply");
    }
    settings.collect = collect_;
    settings.requests = 1;
  }
  if (wait_timeout_option_->count() > 0) {
    SIGNET_ASSIGN_OR_RETURN(const std::uint64_t n,
                            ParseCount(wait_timeout_, "--wait-timeout", 1, kMaxWaitSeconds));
    settings.wait_timeout = std::chrono::seconds(n);
  }
  if (batch_option_->count() > 0) {
    SIGNET_ASSIGN_OR_RETURN(const std::uint64_t n,
                            ParseCount(batch_size_, "--batch-size", 1, kMaxBatch));
    settings.batch_size = static_cast<std::size_t>(n);
    settings.batch_size_given = true;
  }
  if (jobs_option_->count() > 0) {
    SIGNET_ASSIGN_OR_RETURN(settings.hash_threads, ParseJobs(jobs_));
  }
  if (requests_option_->count() > 0) {
    SIGNET_ASSIGN_OR_RETURN(const std::uint64_t n,
                            ParseCount(requests_, "--requests", 1, kMaxRequests));
    settings.requests = static_cast<unsigned>(n);
  }
  if (out_dir_option_->count() > 0) {
    if (out_dir_.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "--out-dir needs a directory name");
    }
    settings.out_dir = out_dir_;
  }
  if (bundle_option_->count() > 0) {
    if (bundle_.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "--bundle needs a file name");
    }
    settings.bundle = bundle_;
  }
  for (const std::string& arg : paths_) {
    if (arg.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "an empty PATH");
    }
    const std::filesystem::path path(arg);
    if (settings.out_dir) {
      // Mirroring must stay inside DIR: an absolute path or a '..' would name a file anywhere.
      if (path.is_absolute()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         fmt::format("--out-dir mirrors relative paths under {}, but '{}' is "
                                     "absolute: run from the files' directory and name them "
                                     "relatively",
                                     DisplayName(out_dir_), DisplayName(arg)));
      }
      for (const auto& component : path) {
        if (component == "..") {
          return MakeError(ErrorCode::kInvalidArgument,
                           fmt::format("--out-dir mirrors relative paths under {}, but '{}' has "
                                       "a '..' component that would lead out of it",
                                       DisplayName(out_dir_), DisplayName(arg)));
        }
      }
    }
    settings.paths.push_back(path);
  }
  return settings;
}

// Asks the daemon about `name`. Errors: kNotFound (no such key), kUnavailable (no daemon, or an
// answer that makes no sense), kInvalidArgument (a key this client cannot sign with).
Result<KeyInfo> FetchKey(DaemonClient& client, const std::string& name) {
  SIGNET_ASSIGN_OR_RETURN(HttpAnswer answer, client.Get("/v1/keys/" + name));
  if (answer.status == 404) {
    return MakeError(ErrorCode::kNotFound,
                     fmt::format("signetd has no key named \"{}\"", DisplayName(name)));
  }
  if (answer.status != 200) {
    return MakeError(ErrorCode::kUnavailable, "asking for the key: " + DescribeRefusal(answer));
  }
  const json body = json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("hash") || !body["hash"].is_string() ||
      !body.contains("format") || !body["format"].is_string()) {
    return MakeError(ErrorCode::kUnavailable,
                     "signetd's description of the key has no \"hash\" or \"format\"");
  }
  KeyInfo key;
  key.name = name;
  key.algorithm = body.value("algorithm", std::string());
  key.format = body["format"].get<std::string>();
  key.scheme = body.value("scheme", std::string());
  key.fingerprint = body.value("fingerprint", std::string());
  key.public_key_pem = body.value("public_key_pem", std::string());
  if (key.format != "raw" && key.format != "batch") {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("key \"{}\" makes {} signatures; this signet writes raw "
                                 "signatures and batch receipts only",
                                 DisplayName(name), DisplayName(key.format)));
  }
  if (key.batch()) {
    auto receipt_key = MakeReceiptKey(body.value("public_key_pem", std::string()));
    if (!receipt_key) {
      return MakeError(ErrorCode::kUnavailable,
                       "signetd's public key for \"" + DisplayName(name) +
                           "\" is unusable: " + receipt_key.error().message());
    }
    if (receipt_key->fingerprint != body.value("fingerprint", std::string())) {
      return MakeError(ErrorCode::kUnavailable, "signetd's public key for \"" + DisplayName(name) +
                                                    "\" does not match its fingerprint");
    }
    key.receipt_key = std::move(*receipt_key);
  }
  auto hash = pipeline::ParseDigestAlgorithm(body["hash"].get<std::string>());
  if (!hash) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("key \"{}\" signs {} digests, which signet cannot compute",
                                 DisplayName(name), DisplayName(body["hash"].get<std::string>())));
  }
  key.hash = *hash;
  return key;
}

// The outcome of one file, as printed and counted.
struct FileResult {
  std::string path;
  std::string signature_path;
  std::optional<std::uint64_t> seq;
  std::optional<std::string> error;
  // Set when the file is held for approval (not signed, not failed); `error` then says so.
  std::optional<std::string> approval_id{};
};

// A request signetd holds for approval, and the files it holds.
struct HeldBatch {
  HeldRequest request;
  std::vector<Pending> batch;
};

// SignRun is one `signet sign` run after setup: it owns the results and prints them.
class SignRun {
 public:
  // `bundle`: with --bundle, where the receipts go (else null).
  SignRun(const SignSettings& settings, const KeyInfo& key, Console& console, OutputFile* bundle)
      : settings_(settings), key_(key), console_(console), bundle_(bundle) {
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) == 0) {
      host_ = host;
    }
  }

  std::string SignaturePath(const std::string& path) const {
    if (settings_.bundle) {
      return *settings_.bundle;
    }
    const char* suffix = key_.batch() ? ".receipt" : ".sig";
    if (settings_.out_dir) {
      return (*settings_.out_dir / std::filesystem::path(path).relative_path()).native() + suffix;
    }
    return path + suffix;
  }

  // Called from the hasher's callback (serialized): checks what needs no daemon, queues the rest.
  void OnHashed(pipeline::FileOutcome outcome, BatchQueue& queue) {
    const std::string name = outcome.path;
    if (!outcome.digest) {
      std::string message = outcome.digest.error().message();
      if (message.starts_with(name + ": ")) {
        message.erase(0, name.size() + 2);
      }
      Report({name, SignaturePath(name), std::nullopt, message});
      unhashed_.insert(name);
      return;
    }
    if (!given_.contains(name) && (name.ends_with(".sig") || name.ends_with(".receipt"))) {
      return;  // a signature or receipt found by -r: not an artifact to sign
    }
    if (not_artifacts_.contains(
            {outcome.digest->identity.device, outcome.digest->identity.inode})) {
      // Named on the command line: said why; found by -r: skipped, as a receipt would be.
      if (given_.contains(name)) {
        Report({name, SignaturePath(name), std::nullopt, "is the --bundle file; not signed"});
      }
      return;
    }
    Pending item{name, SignaturePath(name), outcome.digest->size(),
                 outcome.digest->digests.front().Hex()};
    if (settings_.collect) {  // matched to the held request's answer once hashing is done
      if (collected_names_.insert(name).second) {
        collected_.push_back(std::move(item));
      }
      return;
    }
    if (auto refused = Precheck(item); refused) {
      Report({name, item.signature_path, std::nullopt, *refused});
      return;
    }
    batch_.push_back(std::move(item));
    if (batch_.size() >= settings_.batch_size) {
      queue.Push(std::exchange(batch_, {}));
    }
  }

  // Hands the last, partial batch to the queue.
  void FlushBatch(BatchQueue& queue) {
    if (!batch_.empty()) {
      queue.Push(std::exchange(batch_, {}));
    }
  }

  // A sender thread's loop: posts batches over `client` until the queue is closed and empty.
  void SendAll(BatchQueue& queue, DaemonClient& client) {
    while (auto batch = queue.Pop()) {
      try {
        SendBatch(*batch, client);
      } catch (const std::exception& e) {  // a thread entry point: fail the batch, not the run
        for (const Pending& item : *batch) {
          Report({item.path, item.signature_path, std::nullopt,
                  std::string("internal error: ") + e.what()});
        }
      }
    }
  }

  // Without --wait, once the senders are done: reports the held files (--json: one line each).
  void ReportHeld() {
    for (const HeldBatch& held : held_) {
      for (const Pending& item : held.batch) {
        Report({item.path, item.signature_path, std::nullopt,
                "held for approval: " + held.request.approval_id, held.request.approval_id});
      }
    }
  }

  // With --wait, once the senders are done: waits for the held requests over `client` and writes
  // the signatures of those signed; the files of the others fail.
  void WaitForHeld(DaemonClient& client) {
    if (held_.empty()) {
      return;
    }
    std::vector<HeldRequest> requests;
    for (const HeldBatch& held : held_) {
      requests.push_back(held.request);
    }
    const std::vector<WaitOutcome> outcomes =
        WaitForApprovals(client, requests, {.timeout = settings_.wait_timeout}, console_);
    for (std::size_t i = 0; i < held_.size(); ++i) {
      const WaitOutcome& outcome = outcomes[i];
      const std::vector<Pending>& batch = held_[i].batch;
      if (outcome.state == WaitOutcome::State::kSigned) {
        WriteSigned(batch, outcome.answer);
        continue;
      }
      std::string message = outcome.message;
      if (outcome.state == WaitOutcome::State::kTimedOut) {
        console_.Error(outcome.message);  // once, with what to do; each file names the ID
        message = "still waiting for approval: " + held_[i].request.approval_id;
      }
      for (const Pending& item : batch) {
        Report({item.path, item.signature_path, std::nullopt, message});
      }
    }
  }

  // With --collect, once hashing is done: collects held request `held` (PlanCollect) and checks
  // and writes the signatures of the files as for a 200 answer (WriteSigned; key_.raw_key checks
  // each raw signature against the file as it is now).
  void Collect(DaemonClient& client, const HeldRequest& held) {
    CollectFiles files;
    for (const Pending& item : collected_) {
      files.names.push_back(item.path);
      files.refused.push_back(Precheck(item));
    }
    files.unreadable = unhashed_;
    const CollectPlan plan = PlanCollect(client,
                                         {.held = held,
                                          .key = key_.name,
                                          .key_fingerprint = key_.fingerprint,
                                          .wait = settings_.wait,
                                          .wait_timeout = settings_.wait_timeout},
                                         files, console_);
    for (const auto& [i, message] : plan.unwritten) {
      Report({collected_[i].path, collected_[i].signature_path, std::nullopt, message,
              plan.held ? std::optional(held.approval_id) : std::nullopt});
    }
    std::vector<Pending> batch;
    for (const std::size_t i : plan.write) {
      batch.push_back(collected_[i]);
    }
    if (!batch.empty()) {
      WriteSigned(batch, plan.reply);
    }
  }

  std::uint64_t signed_files() const { return signed_.load(); }
  const std::atomic<std::uint64_t>& signed_counter() const { return signed_; }
  std::uint64_t failed_files() const { return failed_.load(); }
  std::uint64_t held_files() const { return held_files_.load(); }
  // Once the sender is done: flush the filesystems the signatures went to.
  [[nodiscard]] Status SyncWritten() {
    std::lock_guard lock(dirs_mu_);
    return SyncFilesystems(written_dirs_);
  }
  void Given(const std::filesystem::path& path) { given_.insert(path.native()); }
  // The file with this device and inode is no artifact (the --bundle file, or its temporary file).
  void NotAnArtifact(std::uint64_t device, std::uint64_t inode) {
    not_artifacts_.insert({device, inode});
  }

  // --bundle, once every answer is in: renames the bundle into place and only then reports its
  // files signed; if it cannot be written, they fail. A run that has no receipt to write leaves
  // FILE as it was.
  void FinishBundle() {
    if (bundle_ == nullptr) {
      return;
    }
    if (bundled_.empty()) {
      console_.Error("no receipt to write" + bundle_->UnchangedNote());
      return;
    }
    if (!bundle_error_) {
      if (Status finished = bundle_->Finish(); !finished) {
        bundle_error_ = finished.error();
      }
    }
    if (!bundle_error_) {
      signed_.fetch_add(bundled_.size());
      console_.Out(bundled_out_);
      return;
    }
    const std::string failure = bundle_error_->message() + bundle_->UnchangedNote();
    for (const Bundled& file : bundled_) {
      Report({file.path, file.signature_path, file.seq, failure});
    }
  }

 private:
  // Why `item` cannot be signed before anything is sent, if it cannot.
  std::optional<std::string> Precheck(const Pending& item) const {
    if (!IsValidUtf8(item.path) || item.path.size() > kMaxNameBytes) {
      return "the name is not valid UTF-8 or is too long for signetd";
    }
    struct stat st {};
    if (!settings_.force && !settings_.bundle && ::lstat(item.signature_path.c_str(), &st) == 0) {
      return fmt::format("{} exists; use --force", DisplayName(item.signature_path));
    }
    return std::nullopt;
  }

  void SendBatch(const std::vector<Pending>& batch, DaemonClient& client) {
    // {"client_host":H,"items":[{"digests":{ALG:HEX},"name":N,"size":S},...],"key":K,
    //  "tool":{"name":"signet","version":V}}: what nlohmann's dump of the same object writes (keys
    // sorted; a string that is not UTF-8 gets U+FFFD), built without the object, whose
    // construction and dump were a tenth of this client's time for 8,192 small files.
    const std::string algorithm(pipeline::DigestAlgorithmName(key_.hash));
    std::string body;
    body.reserve(256 + batch.size() * (64 + algorithm.size() +
                                       (batch.empty() ? 0
                                                      : batch.front().path.size() +
                                                            batch.front().digest_hex.size())));
    body += "{\"client_host\":";
    formats::AppendJsonString(body, host_);
    body += ",\"items\":[";
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const Pending& item = batch[i];
      body += i == 0 ? "{\"digests\":{" : ",{\"digests\":{";
      formats::AppendJsonString(body, algorithm);
      body += ':';
      formats::AppendJsonString(body, item.digest_hex);
      body += "},\"name\":";
      formats::AppendJsonString(body, item.path);
      body += ",\"size\":";
      body += std::to_string(item.size);
      body += '}';
    }
    body += "],\"key\":";
    formats::AppendJsonString(body, key_.name);
    body += ",\"tool\":{\"name\":\"signet\",\"version\":";
    formats::AppendJsonString(body, kToolVersion);
    body += "}}";
    auto fail_all = [&](const std::string& message) {
      for (const Pending& item : batch) {
        Report({item.path, item.signature_path, std::nullopt, message});
      }
    };
    // For a batch key: this client rebuilds the proofs of a batch made of its own leaves alone
    // (WriteBatchReceipts), so signetd need not send them.
    auto answer = key_.batch() ? client.Post("/v1/sign", body,
                                             {std::string(formats::kBatchProofsHeader) + ": " +
                                              std::string(formats::kClientBuildsProofs)})
                               : client.Post("/v1/sign", body);
    if (!answer) {
      fail_all(answer.error().message());
      return;
    }
    if (answer->status == 202) {
      Hold(batch, answer->body);
      return;
    }
    if (answer->status != 200) {
      fail_all(DescribeRefusal(*answer));
      return;
    }
    if (key_.batch()) {
      if (auto read = ReadBatchAnswerFast(answer->body, Names(batch)); read) {
        WriteReceipts(batch, std::move(*read));
        return;
      }
    }
    WriteSigned(batch, json::parse(answer->body, nullptr, /*allow_exceptions=*/false));
  }

  static std::vector<std::string_view> Names(const std::vector<Pending>& batch) {
    std::vector<std::string_view> names;
    names.reserve(batch.size());
    for (const Pending& item : batch) {
      names.push_back(item.path);
    }
    return names;
  }

  // A 202 answer: signetd holds `batch` for approval. Its files are reported once the senders are
  // done (ReportHeld or WaitForHeld).
  void Hold(const std::vector<Pending>& batch, const std::string& body) {
    auto held = ParseHeldAnswer(body);
    if (!held) {
      for (const Pending& item : batch) {
        Report({item.path, item.signature_path, std::nullopt, held.error().message()});
      }
      return;
    }
    const std::string files = fmt::format("{} file{}", batch.size(), batch.size() == 1 ? "" : "s");
    if (settings_.wait) {
      console_.Error(fmt::format("held for approval: {}; waiting for it ({}, up to {} s)",
                                 DescribeHeld(*held), files, settings_.wait_timeout.count()));
    } else {
      const std::string id = DisplayName(held->approval_id);
      console_.Error(fmt::format(
          "held for approval: {}; nothing written for its {}. Ask an approver (signet admin "
          "approvals approve {}); once it is approved, `signet sign --collect {} ... FILES` (the "
          "same --key and FILES; add --wait to wait for the approvals) writes its signatures",
          DescribeHeld(*held), files, id, id));
    }
    std::lock_guard lock(held_mu_);
    held_.push_back({std::move(*held), batch});
  }

  // A 200 answer of POST /v1/sign for `batch` (or a held request's "signed" answer, which has its
  // fields): checks it and writes each file's signature or receipt.
  void WriteSigned(const std::vector<Pending>& batch, const json& reply) {
    auto fail_all = [&](const std::string& message) {
      for (const Pending& item : batch) {
        Report({item.path, item.signature_path, std::nullopt, message});
      }
    };
    if (!reply.is_object() || !reply.contains("items") || !reply["items"].is_array() ||
        reply["items"].size() != batch.size()) {
      fail_all("signetd's answer does not list one signature per file sent");
      return;
    }
    if (key_.batch()) {
      WriteReceipts(batch, ReadBatchAnswer(reply, Names(batch)));
      return;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const Pending& item = batch[i];
      const json& answered = reply["items"][i];
      if (!answered.is_object() || answered.value("name", std::string()) != item.path ||
          !answered.contains("signature") || !answered["signature"].is_string() ||
          !answered.contains("seq") || !answered["seq"].is_number_unsigned()) {
        Report({item.path, item.signature_path, std::nullopt,
                "signetd's answer for this file is malformed"});
        continue;
      }
      const auto seq = answered["seq"].get<std::uint64_t>();
      auto signature = Base64Decode(answered["signature"].get<std::string>());
      if (!signature) {
        Report({item.path, item.signature_path, seq, "signature is not base64"});
        continue;
      }
      if (auto refused = key_.raw_key
                             ? CheckCollectedSignature(*key_.raw_key, item.digest_hex, *signature)
                             : std::nullopt) {
        Report({item.path, item.signature_path, seq, *refused});
        continue;
      }
      WriteOutput(item, seq, *signature);
    }
  }

  // Format "batch": each file's receipt (WriteBatchReceipts), written to FILE.receipt or the
  // bundle; one that does not check out is not written.
  void WriteReceipts(const std::vector<Pending>& batch, ReadAnswer answer) {
    std::vector<RequestedFile> files;
    files.reserve(batch.size());
    for (const Pending& item : batch) {
      files.push_back({.name = item.path,
                       .size = item.size,
                       .digest_hex = item.digest_hex,
                       .algorithm = key_.hash});
    }
    ReceiptOptions options;
    options.layout = bundle_ ? formats::ReceiptLayout::kOneLine : formats::ReceiptLayout::kIndented;
    if (bundle_ != nullptr) {  // appending to the bundle is cheap: assemble on every core
      options.threads = std::min(4u, std::max(1u, std::thread::hardware_concurrency()));
    }
    if (settings_.collect) {
      options.changed_hint =
          "; if the file changed since it was sent for signing, the receipt is for its old "
          "contents";
    }
    WriteBatchReceipts(
        files, std::move(answer), *key_.receipt_key, options,
        [&](std::size_t i, std::optional<std::uint64_t> seq, const Result<std::string_view>& text) {
          const Pending& item = batch[i];
          if (!text) {
            Report({item.path, item.signature_path, seq, text.error().message()});
            return;
          }
          WriteOutput(item, *seq, AsBytes(*text));
        });
  }

  // Writes `bytes` to item.signature_path (creating --out-dir's directories) and reports the file.
  void WriteOutput(const Pending& item, std::uint64_t seq, std::span<const std::uint8_t> bytes) {
    if (bundle_ != nullptr) {  // reported by FinishBundle
      // Its line for stdout is made now, in parallel with the other senders and the hashing, so
      // that FinishBundle has only to write them all.
      const std::string line = OutLine({item.path, item.signature_path, seq, std::nullopt});
      std::lock_guard lock(bundle_mu_);
      bundled_out_ += line;
      if (!bundle_error_) {
        Status written = bundle_->Write(
            std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
        if (!written) {
          bundle_error_ = written.error();
        }
      }
      bundled_.push_back({item.path, item.signature_path, seq});
      return;
    }
    Status written = OkStatus();
    if (settings_.out_dir) {
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(item.signature_path).parent_path(),
                                          ec);
      if (ec) {
        written =
            MakeError(ErrorCode::kIo, fmt::format("creating the directory of {}: {}",
                                                  DisplayName(item.signature_path), ec.message()));
      }
    }
    if (written) {
      // Signatures and receipts are public: 0666 less the umask, as any new file.
      written = WriteAtomically(item.signature_path, bytes, 0666, settings_.force);
    }
    if (written) {
      std::string dir = std::filesystem::path(item.signature_path).parent_path().string();
      std::lock_guard lock(dirs_mu_);
      written_dirs_.insert(dir.empty() ? "." : std::move(dir));
    }
    Report({item.path, item.signature_path, seq,
            written ? std::nullopt : std::optional(written.error().message())});
  }

  void Report(const FileResult& result) {
    (result.approval_id ? held_files_ : result.error ? failed_ : signed_).fetch_add(1);
    if (const std::string line = OutLine(result); !line.empty()) {
      console_.Out(line);
    }
    if (result.error && !result.approval_id) {
      console_.Error(fmt::format("{}: {}", DisplayName(result.path), DisplayName(*result.error)));
    }
  }

  // What Report writes to stdout for `result`: its JSON line with --json, else "signed ..." for a
  // file signed; empty otherwise (a failure is said on stderr, a held file once for its request).
  std::string OutLine(const FileResult& result) const {
    if (settings_.json) {
      json line{{"path", result.path},
                {"signature_path", result.signature_path},
                {"seq", result.seq ? json(*result.seq) : json(nullptr)},
                {"ok", !result.error},
                {"error", result.error ? json(*result.error) : json(nullptr)}};
      if (result.approval_id) {
        line["approval_id"] = *result.approval_id;
      }
      return line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    }
    if (result.approval_id || result.error) {
      return "";
    }
    return fmt::format("signed {} -> {} (seq {})\n", DisplayName(result.path),
                       DisplayName(result.signature_path), *result.seq);
  }

  const SignSettings& settings_;
  const KeyInfo& key_;
  Console& console_;
  std::string host_;
  std::set<std::string> given_;
  std::vector<Pending> batch_;  // filled by the hasher's callback only
  // --collect: the files hashed (read by Collect once hashing is done), and those that failed.
  std::vector<Pending> collected_;
  std::set<std::string> collected_names_;
  std::set<std::string> unhashed_;
  std::atomic<std::uint64_t> signed_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> held_files_{0};
  std::mutex held_mu_;
  std::vector<HeldBatch> held_;  // appended by the senders; read once they are done
  std::mutex dirs_mu_;
  std::set<std::string> written_dirs_;  // directories that received a signature
  // --bundle: the file, the receipts written to it (reported once it is in place), and its first
  // failure.
  struct Bundled {
    std::string path;
    std::string signature_path;
    std::uint64_t seq = 0;
  };
  OutputFile* bundle_ = nullptr;
  std::set<std::pair<std::uint64_t, std::uint64_t>> not_artifacts_;
  std::mutex bundle_mu_;
  std::vector<Bundled> bundled_;
  std::string bundled_out_;  // their lines for stdout, once the bundle is in place
  std::optional<Error> bundle_error_;
};

int SignCommand::Run(Console& console) {
  auto settings = Validate();
  if (!settings) {
    console.Err(fmt::format("signet sign: {}\nRun with --help for more information.\n",
                            settings.error().message()));
    return kExitUsage;
  }
  auto endpoint = endpoint_.Resolve();
  if (!endpoint) {
    if (endpoint.error().code() == ErrorCode::kInvalidArgument) {
      console.Err(fmt::format("signet sign: {}\nRun with --help for more information.\n",
                              endpoint.error().message()));
      return kExitUsage;
    }
    console.Error(endpoint.error().message());
    return kExitFailed;
  }
  // One connection per request in flight; the first also asks about the key.
  std::vector<std::unique_ptr<DaemonClient>> clients;
  for (unsigned i = 0; i < settings->requests; ++i) {
    auto client = DaemonClient::Connect(*endpoint);
    if (!client) {
      console.Error(client.error().message());
      return kExitFailed;
    }
    clients.push_back(std::move(*client));
  }
  auto key = FetchKey(*clients.front(), settings->key);
  if (!key) {
    console.Error(key.error().message());
    return kExitFailed;
  }
  if (key->batch() && !settings->batch_size_given) {
    settings->batch_size = kDefaultReceiptBatch;
  }
  std::unique_ptr<OutputFile> bundle;
  if (settings->bundle) {
    if (!key->batch()) {
      console.Err(
          fmt::format("signet sign: --bundle is for keys of format batch; key {} has "
                      "format {} (its signatures are FILE.sig files)\nRun with --help for "
                      "more information.\n",
                      DisplayName(key->name), DisplayName(key->format)));
      return kExitUsage;
    }
    auto file = OutputFile::ToFile(*settings->bundle, "--bundle", "the receipts", settings->force);
    if (!file) {
      console.Error(file.error().message());
      return kExitFailed;
    }
    bundle = std::move(*file);
  }
  if (settings->collect && !key->batch()) {
    auto raw_key = MakeRawKey(key->public_key_pem, key->scheme, key->hash);
    if (!raw_key) {
      console.Error(
          fmt::format("key \"{}\": {}", DisplayName(key->name), raw_key.error().message()));
      return kExitFailed;
    }
    key->raw_key = std::move(*raw_key);
  }
  pipeline::HashOptions options;
  options.algorithms = {key->hash};
  options.recursive = settings->recursive;
  options.threads = settings->hash_threads;
  auto hasher = MakeHasher(options);
  if (!hasher) {
    return ReportSetupError(console, hasher.error());
  }

  const auto start = std::chrono::steady_clock::now();
  SignRun run(*settings, *key, console, bundle.get());
  for (const auto& path : settings->paths) {
    run.Given(path);
  }
  if (bundle) {  // neither the bundle nor its temporary file is signed when -r meets it
    for (const std::string& name : {*settings->bundle, bundle->temp_path()}) {
      struct stat st {};
      if (!name.empty() && ::stat(name.c_str(), &st) == 0) {
        run.NotAnArtifact(st.st_dev, st.st_ino);
      }
    }
  }
  // Hashing may run two batches ahead of the senders.
  BatchQueue queue(settings->requests + 2);
  {
    std::vector<std::jthread> senders;
    if (!settings->collect) {  // --collect sends nothing
      for (auto& client : clients) {
        senders.emplace_back([&run, &queue, c = client.get()] { run.SendAll(queue, *c); });
      }
    }
    // Close the queue however hashing ends, or the senders would wait forever on join.
    struct CloseOnExit {
      BatchQueue& queue;
      ~CloseOnExit() { queue.Close(); }
    } close_on_exit{queue};
    ProgressMeter progress(console, *hasher, &run.signed_counter());
    hasher->Run(settings->paths,
                [&](pipeline::FileOutcome outcome) { run.OnHashed(std::move(outcome), queue); });
    run.FlushBatch(queue);
  }  // closes the queue, then joins the senders
  if (settings->collect) {
    run.Collect(*clients.front(), HeldRequest{.approval_id = *settings->collect});
  } else if (settings->wait) {
    run.WaitForHeld(*clients.front());
  } else {
    run.ReportHeld();
  }
  run.FinishBundle();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (auto synced = run.SyncWritten(); !synced) {
    console.Error(synced.error().message() + "; the signatures may not be on disk");
    return kExitFailed;
  }
  if (auto flushed = console.Flush(); !flushed) {
    console.Error(flushed.error().message());
    return kExitFailed;
  }
  const std::uint64_t signed_files = run.signed_files();
  const std::uint64_t failed = run.failed_files();
  const std::uint64_t held = run.held_files();
  console.Error(fmt::format("signed {} file{} with key {} (format {}) in {:.2f} s; {} failed{}",
                            signed_files, signed_files == 1 ? "" : "s", DisplayName(key->name),
                            DisplayName(key->format), seconds, failed,
                            held > 0 ? fmt::format("; {} held for approval", held) : ""));
  return failed > 0 ? kExitFailed : held > 0 ? kExitHeld : kExitOk;
}

}  // namespace

std::unique_ptr<Command> MakeSignCommand() { return std::make_unique<SignCommand>(); }

}  // namespace signet::cli
