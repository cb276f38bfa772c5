#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "pipeline/internal/inputs.h"

namespace signet::pipeline::internal {
namespace {

template <auto kFree>
struct FnDeleter {
  template <class T>
  void operator()(T* p) const {
    kFree(p);
  }
};
using Dir = std::unique_ptr<DIR, FnDeleter<&closedir>>;

struct Stat {
  int err = 0;  // errno of lstat/stat, 0 on success
  struct stat st {};
};

// Directory descriptors kept open for *at(2) calls; past this many, files use whole paths (so a
// tree of many directories cannot run the process out of descriptors).
constexpr int kMaxDirFds = 256;

Stat StatAt(const Location& where, bool follow) {
  Stat s;
  if (::fstatat(where.at_fd(), where.at_name(), &s.st, follow ? 0 : AT_SYMLINK_NOFOLLOW) != 0) {
    s.err = errno;
  }
  return s;
}

FileIdentity IdentityOf(const struct stat& st) {
  return FileIdentity{
      static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
      static_cast<std::uint64_t>(st.st_size),
      static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

// A path still to be classified: its stat is filled in by the parallel pass.
struct Pending {
  Location where;
  Stat stat;
  bool stat_done = false;
  std::optional<Error> error;  // refused while walking (unreadable directory, loop)
};

Pending Refused(const std::filesystem::path& path, Error error) {
  return Pending{Location{path, nullptr, {}}, {}, true, std::move(error)};
}

class Expander {
 public:
  Expander(bool recursive, bool follow, tbb::task_arena& arena)
      : recursive_(recursive), follow_(follow), arena_(arena) {}

  std::vector<InputEntry> Run(std::span<const std::filesystem::path> paths) {
    std::vector<Pending> inputs(paths.size());
    for (std::size_t i = 0; i < paths.size(); ++i) {
      inputs[i].where.path = paths[i];
    }
    StatAll(inputs);
    for (Pending& input : inputs) {
      Add(std::move(input));
    }
    StatAll(pending_);
    out_.reserve(pending_.size());
    for (Pending& p : pending_) {
      Classify(std::move(p));
    }
    return std::move(out_);
  }

 private:
  void StatAll(std::vector<Pending>& items) {
    arena_.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, items.size(), 256), [&](const auto& r) {
        for (std::size_t i = r.begin(); i != r.end(); ++i) {
          if (!items[i].stat_done) {
            items[i].stat = StatAt(items[i].where, follow_);
            items[i].stat_done = true;
          }
        }
      });
    });
  }

  // Adds an input whose stat is known: directories are walked now (their files are stat'ed later,
  // in parallel), everything else is queued for classification in order.
  void Add(Pending input) {
    if (input.stat.err == 0 && S_ISDIR(input.stat.st.st_mode) && recursive_) {
      Walk(input.where.path, input.stat.st);
      return;
    }
    pending_.push_back(std::move(input));
  }

  void Walk(const std::filesystem::path& dir, const struct stat& st) {
    const auto key = std::make_pair(st.st_dev, st.st_ino);
    if (!on_stack_.insert(key).second) {
      pending_.push_back(Refused(dir, Error(ErrorCode::kInvalidArgument,
                                            "directory loop: " + dir.string() +
                                                " is its own ancestor through a symbolic link")));
      return;
    }
    UniqueFd fd(
        ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow_ ? 0 : O_NOFOLLOW)));
    // fdopendir takes ownership of the descriptor it is given, so it gets a duplicate and `fd`
    // stays open for the *at(2) calls on the files listed.
    Dir handle(fd ? ::fdopendir(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0)) : nullptr);
    if (!handle) {
      pending_.push_back(Refused(dir, ErrnoError(errno, "open directory " + dir.string())));
      on_stack_.erase(key);
      return;
    }
    std::shared_ptr<const UniqueFd> dir_fd;
    if (dir_fds_ < kMaxDirFds) {
      dir_fd = std::make_shared<const UniqueFd>(std::move(fd));
      ++dir_fds_;
    }
    struct Child {
      std::string name;
      unsigned char type;
    };
    std::vector<Child> children;
    errno = 0;
    while (const dirent* entry = ::readdir(handle.get())) {
      const std::string_view name = entry->d_name;
      if (name != "." && name != "..") {
        children.push_back({std::string(name), entry->d_type});
      }
      errno = 0;
    }
    if (errno != 0) {
      pending_.push_back(Refused(dir, ErrnoError(errno, "read directory " + dir.string())));
    }
    handle.reset();
    std::sort(children.begin(), children.end(),
              [](const Child& a, const Child& b) { return a.name < b.name; });
    for (Child& child : children) {
      Pending p{Location{dir / child.name, dir_fd, child.name}, {}, false, std::nullopt};
      // d_type spares a stat for everything but directories (and symlinks we follow), which must
      // be known now to keep the walk in order.
      const bool maybe_dir =
          child.type == DT_DIR || child.type == DT_UNKNOWN || (follow_ && child.type == DT_LNK);
      if (maybe_dir) {
        p.stat = StatAt(p.where, follow_);
        p.stat_done = true;
        Add(std::move(p));
      } else {
        pending_.push_back(std::move(p));
      }
    }
    on_stack_.erase(key);
  }

  void Classify(Pending p) {
    if (p.error) {
      out_.push_back(InputEntry{std::move(p.where), {}, std::move(p.error)});
      return;
    }
    if (p.stat.err != 0) {
      Error error = ErrnoError(p.stat.err, p.where.path.string());
      out_.push_back(InputEntry{std::move(p.where), {}, std::move(error)});
      return;
    }
    const auto mode = p.stat.st.st_mode;
    if (S_ISREG(mode)) {
      out_.push_back(InputEntry{std::move(p.where), IdentityOf(p.stat.st), std::nullopt});
      return;
    }
    std::string why;
    if (S_ISDIR(mode)) {
      why = " is a directory; ask for recursion (signet digest -r) to hash the files in it";
    } else if (S_ISLNK(mode)) {
      why = " is a symbolic link, and symbolic links are not followed";
    } else {
      why = std::string(" is ") + std::string(FileTypeName(mode)) +
            ", not a regular file; only regular files are hashed";
    }
    Error error(ErrorCode::kInvalidArgument, p.where.path.string() + why);
    out_.push_back(InputEntry{std::move(p.where), {}, std::move(error)});
  }

  bool recursive_;
  bool follow_;
  tbb::task_arena& arena_;
  std::set<std::pair<dev_t, ino_t>> on_stack_;
  int dir_fds_ = 0;
  std::vector<Pending> pending_;
  std::vector<InputEntry> out_;
};

}  // namespace

int Location::at_fd() const { return dir ? dir->get() : AT_FDCWD; }
const char* Location::at_name() const { return dir ? name.c_str() : path.c_str(); }

std::vector<InputEntry> ExpandInputs(std::span<const std::filesystem::path> paths, bool recursive,
                                     bool follow_symlinks, tbb::task_arena& arena) {
  return Expander(recursive, follow_symlinks, arena).Run(paths);
}

std::string_view FileTypeName(unsigned mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "a regular file";
    case S_IFDIR:
      return "a directory";
    case S_IFLNK:
      return "a symbolic link";
    case S_IFIFO:
      return "a FIFO";
    case S_IFSOCK:
      return "a socket";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    default:
      return "of an unknown type";
  }
}

}  // namespace signet::pipeline::internal
