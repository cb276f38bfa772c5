// `signet digest`: the command line, its validation, and the dispatch to hashing or checking.
#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "appliance/cli/cli.h"
#include "appliance/cli/internal/command.h"
#include "appliance/cli/internal/digest.h"
#include "appliance/cli/internal/parse.h"

namespace signet::cli {
namespace {

constexpr std::string_view kFooter = R"(
Output is what sha256sum prints ("HEX  PATH", in argument order), or sha384sum, sha512sum or b2sum
with -a; `sha256sum -c` accepts it. With several -a (or --tag), lines are BSD tagged:
"SHA256 (PATH) = HEX". Errors about single files go to stderr and the other files carry on.

--check FILE accepts lines as sha256sum, sha384sum, sha512sum and b2sum print them (plain, with
'*', escaped, or --tag). Without -a the algorithm comes from each line's tag or hex length;
untagged BLAKE2b lines need -a blake2b512.

Exit status: 0 all files hashed (or all checks OK), 1 a file failed or a check did not match,
2 bad command line.

Examples:
  signet digest dist/*.tar.gz > SHA256SUMS
  signet digest -r -a sha256,sha512 release/
  signet digest --check SHA256SUMS
  signet digest --json -r release/ | jq .digests.sha256)";

class DigestCommand final : public Command {
 public:
  CLI::App* Register(CLI::App& parent) override;
  int Run(Console& console) override;

 private:
  // Turns the raw option strings into settings. Errors: kInvalidArgument naming the option.
  [[nodiscard]] Result<DigestSettings> Validate() const;

  std::vector<std::string> algorithms_;
  bool recursive_ = false;
  bool follow_symlinks_ = false;
  std::string jobs_;
  std::string backend_ = "auto";
  std::string chunk_size_;
  bool json_ = false;
  bool tag_ = false;
  std::string check_;
  std::vector<std::string> paths_;

  CLI::Option* check_option_ = nullptr;
  CLI::Option* jobs_option_ = nullptr;
  CLI::Option* chunk_option_ = nullptr;
};

CLI::App* DigestCommand::Register(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand(
      "digest", "Hash files in parallel; output compatible with sha256sum (and -c to check)");
  app->add_option("-a,--algorithm", algorithms_,
                  "Digest algorithm: sha256 (default), sha384, sha512, blake2b512. Repeat it or "
                  "separate with commas to compute several in one pass")
      ->type_name("ALGO")
      ->expected(1)
      ->allow_extra_args(false)  // `-a sha256 FILE`: FILE is a PATH, not a second algorithm
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app->add_flag("-r,--recursive", recursive_,
                "Descend into directories (entries in byte order of their names)");
  app->add_flag("-L,--follow-symlinks", follow_symlinks_,
                "Follow symbolic links (default: refuse them, each with an error)");
  jobs_option_ = app->add_option("-j,--jobs", jobs_, "Worker threads; 0 (default): one per core")
                     ->type_name("N");
  app->add_option("--backend", backend_, "How files are read: auto (default), io_uring, pread")
      ->type_name("B");
  chunk_option_ = app->add_option("--chunk-size", chunk_size_,
                                  "Bytes per read, 4KiB to 64MiB (suffixes K, M); default 1MiB")
                      ->type_name("BYTES");
  app->add_flag("--json", json_,
                "One JSON object per file and line: path, size, digests (or error)");
  app->add_flag("--tag", tag_, "BSD tagged lines (\"SHA256 (PATH) = HEX\") even for one algorithm");
  check_option_ = app->add_option("-c,--check", check_,
                                  "Verify the checksums listed in FILE (\"-\": standard input) "
                                  "instead of printing digests")
                      ->type_name("FILE");
  app->add_option("PATH", paths_, "Files to hash (directories with -r)");
  app->footer(std::string(kFooter));
  return app;
}

Result<DigestSettings> DigestCommand::Validate() const {
  DigestSettings settings;
  SIGNET_ASSIGN_OR_RETURN(settings.hash.algorithms, ParseAlgorithms(algorithms_));
  settings.algorithms_given = !algorithms_.empty();
  settings.hash.recursive = recursive_;
  settings.hash.follow_symlinks = follow_symlinks_;
  if (jobs_option_->count() > 0) {
    SIGNET_ASSIGN_OR_RETURN(settings.hash.threads, ParseJobs(jobs_));
  }
  if (chunk_option_->count() > 0) {
    SIGNET_ASSIGN_OR_RETURN(settings.hash.chunk_size, ParseChunkSize(chunk_size_));
  }
  SIGNET_ASSIGN_OR_RETURN(settings.hash.backend, ParseBackend(backend_));
  settings.json = json_;
  settings.tag = tag_;
  if (json_ && tag_) {
    return MakeError(ErrorCode::kInvalidArgument, "--json and --tag exclude each other");
  }

  if (check_option_->count() > 0) {
    if (!paths_.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       fmt::format("--check reads the files to check from {}; give no PATH "
                                   "arguments with it (got '{}')",
                                   check_, paths_.front()));
    }
    if (recursive_ || json_ || tag_) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--check cannot be combined with -r, --json or --tag");
    }
    if (check_.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--check needs a file name (\"-\" for standard input)");
    }
    settings.check_file = check_;
    return settings;
  }

  if (paths_.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "no PATH given: name the files to hash (or use --check FILE)");
  }
  settings.paths.reserve(paths_.size());
  for (const std::string& path : paths_) {
    settings.paths.emplace_back(path);
  }
  return settings;
}

int DigestCommand::Run(Console& console) {
  auto settings = Validate();
  if (!settings) {
    console.Err(fmt::format("signet digest: {}\nRun with --help for more information.\n",
                            settings.error().message()));
    return kExitUsage;
  }
  if (settings->check_file) {
    return RunCheck(*settings, console);
  }
  return RunHash(*settings, console);
}

}  // namespace

std::unique_ptr<Command> MakeDigestCommand() { return std::make_unique<DigestCommand>(); }

Result<pipeline::Hasher> MakeHasher(const pipeline::HashOptions& options) {
  auto hasher = pipeline::Hasher::Create(options);
  if (hasher) {
    return hasher;
  }
  // Options were range-checked already; what Create still refuses is a combination (read memory
  // = threads × read-ahead × chunk size) or the backend asked for.
  std::string context = hasher.error().code() == ErrorCode::kInvalidArgument
                            ? "--jobs and --chunk-size"
                            : fmt::format("--backend {}", pipeline::IoBackendName(options.backend));
  return MakeError(std::move(hasher).error().WithContext(context));
}

int ReportSetupError(Console& console, const Error& error) {
  console.Error(error.message());
  return error.code() == ErrorCode::kInvalidArgument ? kExitUsage : kExitFailed;
}

void ReportFileError(Console& console, const std::filesystem::path& path, const Error& error) {
  // The pipeline's messages usually start with the file's name already ("a.txt: No such file or
  // directory", "d is a directory; ..."): print those as they are rather than name it twice.
  const std::string& name = path.native();
  const std::string& message = error.message();
  if (!name.empty() && message.starts_with(name)) {
    console.Error(DisplayName(message));
  } else {
    console.Error(DisplayName(fmt::format("{}: {}", name, message)));
  }
}

}  // namespace signet::cli
