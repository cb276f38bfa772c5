#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include "pipeline/pipeline.h"
#include "tests/pipeline/test_util.h"

namespace signet::pipeline {
namespace {

using testing::CoreutilsDigest;
using ::testing::HasSubstr;
using testing::RandomBytes;
using testing::TempDir;
namespace fs = std::filesystem;

constexpr DigestAlgorithm kAll[] = {DigestAlgorithm::kSha256, DigestAlgorithm::kSha384,
                                    DigestAlgorithm::kSha512, DigestAlgorithm::kBlake2b512};
const char* const kTools[] = {"sha256sum", "sha384sum", "sha512sum", "b2sum"};

// Runs a Hasher and returns the outcomes indexed by ordinal, checking the ordinals are exactly
// 0..n-1 and that calls never overlap.
struct RunResult {
  std::vector<FileOutcome> outcomes;
  RunStats stats;
};

RunResult HashAll(Hasher& hasher, const std::vector<fs::path>& paths) {
  std::map<std::uint64_t, FileOutcome> by_ordinal;
  std::atomic<int> inside{0};
  bool overlapped = false;
  RunResult result;
  result.stats = hasher.Run(paths, [&](FileOutcome outcome) {
    if (inside.fetch_add(1) != 0) {
      overlapped = true;
    }
    const std::uint64_t ordinal = outcome.ordinal;
    EXPECT_TRUE(by_ordinal.emplace(ordinal, std::move(outcome)).second) << "ordinal twice";
    inside.fetch_sub(1);
  });
  EXPECT_FALSE(overlapped) << "callback calls overlapped";
  std::uint64_t expected = 0;
  for (auto& [ordinal, outcome] : by_ordinal) {
    EXPECT_EQ(ordinal, expected++) << "ordinals have a gap";
    result.outcomes.push_back(std::move(outcome));
  }
  EXPECT_EQ(result.stats.files_ok + result.stats.files_failed, result.outcomes.size());
  return result;
}

Hasher MakeHasher(HashOptions options) {
  auto hasher = Hasher::Create(std::move(options));
  if (!hasher) {
    ADD_FAILURE() << hasher.error();
    std::abort();
  }
  return std::move(*hasher);
}

class HasherTest : public ::testing::TestWithParam<IoBackend> {
 protected:
  HashOptions Options() const {
    HashOptions options;
    options.backend = GetParam();
    return options;
  }
  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Backends, HasherTest,
                         ::testing::Values(IoBackend::kPread, IoBackend::kIoUring),
                         [](const auto& param_info) {
                           return std::string(IoBackendName(param_info.param));
                         });

TEST_P(HasherTest, UsesTheBackendAskedFor) {
  Hasher hasher = MakeHasher(Options());
  EXPECT_EQ(hasher.backend(), GetParam());
}

// Edge sizes around the chunk size, every algorithm in one pass, against coreutils.
TEST_P(HasherTest, MatchesCoreutilsAroundChunkBoundaries) {
  HashOptions options = Options();
  options.algorithms.assign(std::begin(kAll), std::end(kAll));
  options.chunk_size = 4096;
  options.read_ahead = 3;
  std::vector<fs::path> paths;
  const std::size_t sizes[] = {0,        1,     4095,  4096,   4097, 8191,  8192,   8193,
                               3 * 4096, 12289, 65537, 200003, 1000, 77777, 123456, 4096 * 17 - 1};
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    paths.push_back(dir_.Write("f" + std::to_string(i), RandomBytes(sizes[i], i)));
  }
  Hasher hasher = MakeHasher(options);
  RunResult run = HashAll(hasher, paths);
  ASSERT_EQ(run.outcomes.size(), paths.size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    const FileOutcome& outcome = run.outcomes[i];
    ASSERT_TRUE(outcome.digest) << outcome.digest.error();
    EXPECT_EQ(outcome.path, paths[i]);
    EXPECT_EQ(outcome.digest->size(), sizes[i]);
    ASSERT_EQ(outcome.digest->digests.size(), 4u);
    for (std::size_t a = 0; a < 4; ++a) {
      EXPECT_EQ(outcome.digest->digests[a].algorithm(), kAll[a]);
      EXPECT_EQ(outcome.digest->digests[a].Hex(), CoreutilsDigest(kTools[a], paths[i]))
          << kTools[a] << " size " << sizes[i];
    }
    total += sizes[i];
  }
  EXPECT_EQ(run.stats.files_ok, paths.size());
  EXPECT_EQ(run.stats.bytes, total);
  EXPECT_EQ(hasher.bytes_hashed(), total);
  EXPECT_EQ(hasher.bytes_total(), total);
  EXPECT_EQ(hasher.files_done(), paths.size());
  EXPECT_EQ(hasher.files_total(), paths.size());
}

TEST_P(HasherTest, MatchesSha256sumAroundTheDefaultChunkSize) {
  const std::size_t chunk = HashOptions{}.chunk_size;
  std::vector<fs::path> paths;
  for (std::size_t size : {chunk - 1, chunk, chunk + 1, 5 * chunk + 3}) {
    paths.push_back(dir_.Write("f" + std::to_string(size), RandomBytes(size, 7)));
  }
  Hasher hasher = MakeHasher(Options());
  RunResult run = HashAll(hasher, paths);
  for (std::size_t i = 0; i < paths.size(); ++i) {
    ASSERT_TRUE(run.outcomes[i].digest) << run.outcomes[i].digest.error();
    EXPECT_EQ(run.outcomes[i].digest->digests[0].Hex(), CoreutilsDigest("sha256sum", paths[i]));
  }
}

// A sparse file just over 4 GiB, with data across the 2^32 boundary and at the end: catches 32-bit
// offset and length truncation. Expected digests computed once with GNU coreutils 9.1:
//   python3: truncate to 4 GiB + 1 MiB + 1; write b"signet" at 0, b"at-2^32-1" at 2^32 - 1,
//   b"tail" at size - 4; then sha256sum / sha512sum / b2sum.
TEST_P(HasherTest, SparseFileOver4GiB) {
  const std::uint64_t size = (4ull << 30) + (1 << 20) + 1;
  const fs::path path = dir_.path() / "sparse";
  {
    UniqueFd fd(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
    ASSERT_EQ(::pwrite(fd.get(), "signet", 6, 0), 6);
    ASSERT_EQ(::pwrite(fd.get(), "at-2^32-1", 9, (1ll << 32) - 1), 9);
    ASSERT_EQ(::pwrite(fd.get(), "tail", 4, static_cast<off_t>(size - 4)), 4);
  }
  HashOptions options = Options();
  // Three algorithms cost three passes of CPU; do all of them on one backend only.
  if (GetParam() == IoBackend::kIoUring) {
    options.algorithms = {DigestAlgorithm::kSha256, DigestAlgorithm::kSha512,
                          DigestAlgorithm::kBlake2b512};
  }
  Hasher hasher = MakeHasher(options);
  RunResult run = HashAll(hasher, {path});
  ASSERT_EQ(run.outcomes.size(), 1u);
  ASSERT_TRUE(run.outcomes[0].digest) << run.outcomes[0].digest.error();
  const FileDigest& digest = *run.outcomes[0].digest;
  EXPECT_EQ(digest.size(), size);
  EXPECT_EQ(digest.digests[0].Hex(),
            "8328ec9a2f8fef8f871d84a8c8e955dd5145e44819c7a8887dbc6ba42864cf61");
  if (GetParam() == IoBackend::kIoUring) {
    EXPECT_EQ(digest.digests[1].Hex(),
              "b4cc8604f4aee8a9efdd49d52e10fe418d4a4fb1e322446a7991a3bef35b55a0"
              "baaceace70bc57b334c3b63b27b896736665f9efe6f554b55f324d2538ee93fc");
    EXPECT_EQ(digest.digests[2].Hex(),
              "955de75d3d2627ece527de0bd817968eebe6dfccf4261b15cdf37d83f086ab97"
              "b612e611ce8b1f4e3e2d4dfb5d11a6b9895b07a3274492d59041111c9a88bbb4");
  }
}

TEST_P(HasherTest, ManyFilesAndALargeOneKeepOrdinalsInInputOrder) {
  HashOptions options = Options();
  options.chunk_size = 64 << 10;
  std::vector<fs::path> paths;
  std::vector<std::string> contents;
  for (int i = 0; i < 400; ++i) {
    // One large file in the middle: it must be hashed, and ordinals must still follow the input.
    const std::size_t size = i == 200 ? (3 << 20) + 5 : static_cast<std::size_t>(i * 37 % 5000);
    contents.push_back(RandomBytes(size, static_cast<unsigned>(i)));
    paths.push_back(dir_.Write("many/" + std::to_string(i), contents.back()));
  }
  Hasher hasher = MakeHasher(options);
  RunResult run = HashAll(hasher, paths);
  ASSERT_EQ(run.outcomes.size(), paths.size());
  for (std::size_t i = 0; i < paths.size(); ++i) {
    ASSERT_TRUE(run.outcomes[i].digest) << run.outcomes[i].digest.error();
    EXPECT_EQ(run.outcomes[i].path, paths[i]);
    EXPECT_EQ(run.outcomes[i].digest->digests[0],
              DigestBytes(DigestAlgorithm::kSha256, AsBytes(contents[i])).value());
  }
}

TEST_P(HasherTest, RecursesInSortedOrder) {
  dir_.Write("tree/b/y", "y");
  dir_.Write("tree/a", "a");
  dir_.Write("tree/b/x", "x");
  dir_.Write("tree/c", "c");
  dir_.Write("tree/.hidden", "h");
  fs::create_directories(dir_.path() / "tree/empty");
  HashOptions options = Options();
  options.recursive = true;
  Hasher hasher = MakeHasher(options);
  RunResult run = HashAll(hasher, {dir_.path() / "tree", dir_.Write("after", "z")});
  std::vector<std::string> names;
  for (const auto& outcome : run.outcomes) {
    ASSERT_TRUE(outcome.digest) << outcome.digest.error();
    names.push_back(fs::relative(outcome.path, dir_.path()).string());
  }
  EXPECT_THAT(names, ::testing::ElementsAre("tree/.hidden", "tree/a", "tree/b/x", "tree/b/y",
                                            "tree/c", "after"));
}

// Paths found by a walk are exactly `dir / name`, however the directory was spelled (a trailing
// slash, a relative path), in byte order of names, and a FileDigest carries its outcome's path.
TEST_P(HasherTest, WalkedPathsAreDirSlashNameInByteOrder) {
  const std::vector<std::string> names = {"B", "a", "a.b", "a0", "ab", "b", "\xff"};
  for (const std::string& name : names) {
    dir_.Write("walk/" + name, name);
  }
  dir_.Write("walk/a1/z", "z");
  HashOptions options = Options();
  options.recursive = true;
  Hasher hasher = MakeHasher(options);
  const fs::path plain = dir_.path() / "walk";
  const std::vector<std::string> expected_names = {"B",    "a",  "a.b", "a0",
                                                   "a1/z", "ab", "b",   "\xff"};
  for (const fs::path& dir : {plain, fs::path(plain.string() + "/"),
                              fs::path(plain.string() + "//"), plain / "a1" / ".."}) {
    RunResult run = HashAll(hasher, {dir});
    ASSERT_EQ(run.outcomes.size(), expected_names.size()) << dir;
    for (std::size_t i = 0; i < expected_names.size(); ++i) {
      const FileOutcome& outcome = run.outcomes[i];
      ASSERT_TRUE(outcome.digest) << outcome.digest.error();
      EXPECT_EQ(outcome.path, (dir / expected_names[i]).native());
      EXPECT_EQ(outcome.digest->path, outcome.path);
    }
  }
  // A relative directory stays relative.
  const fs::path cwd = fs::current_path();
  fs::current_path(dir_.path());
  RunResult run = HashAll(hasher, {fs::path("walk")});
  fs::current_path(cwd);
  ASSERT_EQ(run.outcomes.size(), expected_names.size());
  for (std::size_t i = 0; i < expected_names.size(); ++i) {
    EXPECT_EQ(run.outcomes[i].path, (fs::path("walk") / expected_names[i]).native());
  }
}

// Each bad input is a clear per-file error, and the good files around it still hash.
void ExpectErrorBetweenGoodFiles(Hasher& hasher, TempDir& dir, const fs::path& bad, ErrorCode code,
                                 const std::string& message_part) {
  const fs::path before = dir.Write("good-before", "1");
  const fs::path after = dir.Write("good-after", "2");
  RunResult run = HashAll(hasher, {before, bad, after});
  ASSERT_EQ(run.outcomes.size(), 3u);
  EXPECT_TRUE(run.outcomes[0].digest);
  EXPECT_TRUE(run.outcomes[2].digest);
  ASSERT_FALSE(run.outcomes[1].digest) << bad;
  EXPECT_EQ(run.outcomes[1].path, bad);
  EXPECT_EQ(run.outcomes[1].digest.error().code(), code) << run.outcomes[1].digest.error();
  EXPECT_THAT(run.outcomes[1].digest.error().message(), HasSubstr(message_part));
  EXPECT_THAT(run.outcomes[1].digest.error().message(), HasSubstr(bad.string()));
  EXPECT_EQ(run.stats.files_failed, 1u);
}

TEST_P(HasherTest, MissingFile) {
  Hasher hasher = MakeHasher(Options());
  ExpectErrorBetweenGoodFiles(hasher, dir_, dir_.path() / "missing", ErrorCode::kNotFound,
                              "No such file or directory");
}

TEST_P(HasherTest, DirectoryWithoutRecursion) {
  fs::create_directories(dir_.path() / "d");
  Hasher hasher = MakeHasher(Options());
  ExpectErrorBetweenGoodFiles(hasher, dir_, dir_.path() / "d", ErrorCode::kInvalidArgument,
                              "is a directory; ask for recursion");
}

TEST_P(HasherTest, FifoIsRefusedWithoutBlocking) {
  const fs::path fifo = dir_.path() / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  Hasher hasher = MakeHasher(Options());
  // If the FIFO were opened for reading this would block forever (ctest's timeout catches it).
  ExpectErrorBetweenGoodFiles(hasher, dir_, fifo, ErrorCode::kInvalidArgument, "is a FIFO");
}

TEST_P(HasherTest, FifoInsideAWalkedDirectory) {
  fs::create_directories(dir_.path() / "tree");
  ASSERT_EQ(::mkfifo((dir_.path() / "tree/fifo").c_str(), 0600), 0);
  dir_.Write("tree/file", "f");
  HashOptions options = Options();
  options.recursive = true;
  Hasher hasher = MakeHasher(options);
  RunResult run = HashAll(hasher, {dir_.path() / "tree"});
  ASSERT_EQ(run.outcomes.size(), 2u);
  ASSERT_FALSE(run.outcomes[0].digest);
  EXPECT_THAT(run.outcomes[0].digest.error().message(), HasSubstr("is a FIFO"));
  EXPECT_TRUE(run.outcomes[1].digest);
}

TEST_P(HasherTest, SocketIsRefused) {
  const fs::path path = dir_.path() / "sock";
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.string().size(), sizeof addr.sun_path);
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  Hasher hasher = MakeHasher(Options());
  ExpectErrorBetweenGoodFiles(hasher, dir_, path, ErrorCode::kInvalidArgument, "is a socket");
}

TEST_P(HasherTest, DeviceIsRefused) {
  Hasher hasher = MakeHasher(Options());
  ExpectErrorBetweenGoodFiles(hasher, dir_, "/dev/null", ErrorCode::kInvalidArgument,
                              "is a character device");
}

TEST_P(HasherTest, SymlinkIsRefusedUnlessFollowing) {
  const fs::path target = dir_.Write("target", "content");
  const fs::path link = dir_.path() / "link";
  fs::create_symlink(target, link);
  Hasher refusing = MakeHasher(Options());
  ExpectErrorBetweenGoodFiles(refusing, dir_, link, ErrorCode::kInvalidArgument,
                              "is a symbolic link, and symbolic links are not followed");

  HashOptions options = Options();
  options.follow_symlinks = true;
  Hasher following = MakeHasher(options);
  RunResult run = HashAll(following, {link});
  ASSERT_TRUE(run.outcomes[0].digest) << run.outcomes[0].digest.error();
  EXPECT_EQ(run.outcomes[0].digest->digests[0].Hex(), CoreutilsDigest("sha256sum", target));
}

TEST_P(HasherTest, SymlinkLoopWhileFollowingEnds) {
  dir_.Write("tree/file", "f");
  fs::create_directory_symlink(dir_.path() / "tree", dir_.path() / "tree/loop");
  HashOptions options = Options();
  options.recursive = true;
  options.follow_symlinks = true;
  Hasher hasher = MakeHasher(options);
  RunResult run = HashAll(hasher, {dir_.path() / "tree"});
  ASSERT_EQ(run.outcomes.size(), 2u);
  EXPECT_TRUE(run.outcomes[0].digest);   // tree/file
  ASSERT_FALSE(run.outcomes[1].digest);  // tree/loop
  EXPECT_THAT(run.outcomes[1].digest.error().message(), HasSubstr("directory loop"));
}

TEST_P(HasherTest, OddNamesAreKeptByteForByte) {
  const std::string names[] = {"new\nline", "back\\slash", std::string("latin1-\xe9\xff", 9)};
  std::vector<fs::path> paths;
  for (const auto& name : names) {
    paths.push_back(dir_.Write(name, name));
  }
  Hasher hasher = MakeHasher(Options());
  RunResult run = HashAll(hasher, paths);
  for (std::size_t i = 0; i < paths.size(); ++i) {
    ASSERT_TRUE(run.outcomes[i].digest) << run.outcomes[i].digest.error();
    EXPECT_EQ(run.outcomes[i].path, paths[i].string());
    EXPECT_EQ(run.outcomes[i].digest->digests[0],
              DigestBytes(DigestAlgorithm::kSha256, AsBytes(names[i])).value());
  }
}

// A writer keeps changing the file while it is hashed: the outcome must be "changed while
// hashing", never a digest. `change` is called in a loop until hashing ends.
void ExpectChangedWhileHashing(IoBackend backend, TempDir& dir,
                               const std::function<void(int fd, int round)>& change) {
  const fs::path path = dir.Write("moving", RandomBytes(32 << 20, 3));
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(fd);
  HashOptions options;
  options.backend = backend;
  options.threads = 1;
  options.chunk_size = 64 << 10;
  Hasher hasher = MakeHasher(options);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int round = 1; !done.load(); ++round) {
      change(fd.get(), round);
    }
  });
  RunResult run = HashAll(hasher, {path});
  done = true;
  writer.join();
  ASSERT_EQ(run.outcomes.size(), 1u);
  ASSERT_FALSE(run.outcomes[0].digest) << "a digest of a file that changed while it was read";
  EXPECT_EQ(run.outcomes[0].digest.error().code(), ErrorCode::kUnavailable);
  EXPECT_THAT(run.outcomes[0].digest.error().message(), HasSubstr("changed while hashing"));
}

TEST_P(HasherTest, ModifiedWhileHashing) {
  ExpectChangedWhileHashing(GetParam(), dir_, [](int fd, int round) {
    const timespec times[2] = {{0, UTIME_OMIT}, {1'000'000 + round, 0}};
    ASSERT_EQ(::futimens(fd, times), 0);
  });
}

TEST_P(HasherTest, GrownOrShrunkWhileHashing) {
  ExpectChangedWhileHashing(GetParam(), dir_, [](int fd, int round) {
    ASSERT_EQ(::ftruncate(fd, round % 2 == 0 ? (32 << 20) + 1 : (16 << 20)), 0);
  });
}

TEST(HasherOptionsTest, RefusesOutOfRangeOptions) {
  const auto expect_refused = [](HashOptions options, const std::string& part) {
    auto hasher = Hasher::Create(std::move(options));
    ASSERT_FALSE(hasher) << part;
    EXPECT_EQ(hasher.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(hasher.error().message(), HasSubstr(part));
  };
  HashOptions options;
  options.chunk_size = 100;
  expect_refused(options, "chunk size 100 is out of range; use 4096 to 67108864");
  options = {};
  options.read_ahead = 1;
  expect_refused(options, "read-ahead 1 is out of range; use 2 to 64");
  options = {};
  options.threads = 1000;
  expect_refused(options, "threads 1000 is out of range");
  options = {};
  options.algorithms.clear();
  expect_refused(options, "no digest algorithm");
  options = {};
  options.algorithms = {DigestAlgorithm::kSha256, DigestAlgorithm::kSha256};
  expect_refused(options, "sha256 asked for twice");
  options = {};
  options.threads = 64;
  options.read_ahead = 64;
  options.chunk_size = 64 << 20;
  expect_refused(options, "MiB of read buffers");
}

TEST(HasherPermissionTest, UnreadableFileIsAPerFileError) {
  TempDir dir;
  const fs::path secret = dir.Write("secret", "s");
  const fs::path open = dir.Write("open", "o");
  ASSERT_EQ(::chmod(secret.c_str(), 0), 0);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  // Root reads anything, so as root the check runs in a child that drops to nobody.
  const int status = testing::RunChild("unreadable", dir.path().string(), ::geteuid() == 0);
  EXPECT_EQ(status, 0) << "child failed (126/127: could not drop privileges or exec)";
}

TEST(HasherFallbackTest, FallsBackToPreadWhenIoUringIsBlocked) {
  TempDir dir;
  dir.Write("file", RandomBytes((3 << 20) + 11, 5));
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  EXPECT_EQ(testing::RunChild("no_uring", dir.path().string(), false), 0);
}

}  // namespace

namespace testing {
namespace {

// Child checks print what failed to stderr and return non-zero.
int Fail(const std::string& what) {
  std::cerr << "child check failed: " << what << "\n";
  return 1;
}

int UnreadableChild(const fs::path& dir) {
  auto hasher = Hasher::Create(HashOptions{});
  if (!hasher) {
    return Fail(hasher.error().ToString());
  }
  std::vector<FileOutcome> outcomes(2);
  const std::vector<fs::path> paths = {dir / "secret", dir / "open"};
  hasher->Run(paths, [&](FileOutcome o) { outcomes[o.ordinal] = std::move(o); });
  if (outcomes[0].digest) {
    return Fail("an unreadable file was hashed");
  }
  if (outcomes[0].digest.error().code() != ErrorCode::kPermissionDenied ||
      outcomes[0].digest.error().message().find("Permission denied") == std::string::npos ||
      outcomes[0].digest.error().message().find(paths[0].string()) == std::string::npos) {
    return Fail("wrong error: " + outcomes[0].digest.error().ToString());
  }
  if (!outcomes[1].digest) {
    return Fail("the readable file failed: " + outcomes[1].digest.error().ToString());
  }
  return 0;
}

int NoUringChild(const fs::path& dir) {
  // Block io_uring_setup with EPERM, as container runtimes' seccomp profiles do.
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    return Fail("cannot install the seccomp filter");
  }
  HashOptions strict;
  strict.backend = IoBackend::kIoUring;
  auto refused = Hasher::Create(strict);
  if (refused) {
    return Fail("io_uring was asked for and blocked, yet Create succeeded");
  }
  if (refused.error().code() != ErrorCode::kUnavailable ||
      refused.error().message().find("io_uring is unavailable") == std::string::npos) {
    return Fail("wrong error: " + refused.error().ToString());
  }
  auto hasher = Hasher::Create(HashOptions{});  // kAuto
  if (!hasher) {
    return Fail(hasher.error().ToString());
  }
  if (hasher->backend() != IoBackend::kPread) {
    return Fail("auto did not fall back to pread");
  }
  std::vector<FileOutcome> outcomes;
  const std::vector<fs::path> paths = {dir / "file"};
  hasher->Run(paths, [&](FileOutcome o) { outcomes.push_back(std::move(o)); });
  if (outcomes.size() != 1 || !outcomes[0].digest) {
    return Fail("the file did not hash");
  }
  if (outcomes[0].digest->digests[0].Hex() != CoreutilsDigest("sha256sum", paths[0])) {
    return Fail("pread fallback digest differs from sha256sum");
  }
  return 0;
}

}  // namespace

int ChildMain(std::string_view child, const char* arg) {
  if (child == "unreadable") {
    return UnreadableChild(arg);
  }
  if (child == "no_uring") {
    return NoUringChild(arg);
  }
  return Fail("unknown child " + std::string(child));
}

}  // namespace testing
}  // namespace signet::pipeline
