#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "pipeline/internal/inputs.h"

namespace signet::pipeline::internal {
namespace {

using Dir = std::unique_ptr<DIR, FnDeleter<&closedir>>;

// Directory descriptors kept open for *at(2) calls; past this many, files use whole paths (so a
// tree of many directories cannot run the process out of descriptors).
constexpr int kMaxDirFds = 256;

FileIdentity IdentityOf(const struct stat& st) {
  return FileIdentity{
      static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
      static_cast<std::uint64_t>(st.st_size),
      static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

InputEntry Refused(std::string path, Error error) {
  InputEntry entry{Location{std::move(path), nullptr, 0}, {}, std::move(error)};
  entry.stat_done = true;
  return entry;
}

// Expander lists inputs in three steps: stat every named path (in parallel), walk the directories
// among them in order (when recursive), then stat what the walks found (in parallel). Each entry is
// classified right after its stat, on the thread that made it.
class Expander {
 public:
  Expander(bool recursive, bool follow, tbb::task_arena& arena)
      : recursive_(recursive), follow_(follow), arena_(arena) {}

  std::vector<InputEntry> Run(std::span<const std::filesystem::path> paths) {
    std::vector<InputEntry> inputs(paths.size());
    for (std::size_t i = 0; i < paths.size(); ++i) {
      inputs[i].where.path = paths[i].native();
    }
    StatAll(inputs);
    const bool any_walk = recursive_ && std::any_of(inputs.begin(), inputs.end(), [](auto& e) {
                            return !e.error && S_ISDIR(e.mode);
                          });
    if (!any_walk) {
      return inputs;
    }
    out_.reserve(inputs.size());
    for (InputEntry& input : inputs) {
      Add(std::move(input));
    }
    StatAll(out_);
    return std::move(out_);
  }

 private:
  void StatAll(std::vector<InputEntry>& items) {
    arena_.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, items.size(), 256), [&](const auto& r) {
        for (std::size_t i = r.begin(); i != r.end(); ++i) {
          if (!items[i].stat_done) {
            StatAndClassify(items[i]);
          }
        }
      });
    });
  }

  // Fills in the entry's identity and type, or its error when it cannot be hashed. A directory is
  // left unclassified when recursing: the walk takes it.
  void StatAndClassify(InputEntry& entry) const {
    entry.stat_done = true;
    struct stat st {};
    const Location& where = entry.where;
    if (::fstatat(where.at_fd(), where.at_name(), &st, follow_ ? 0 : AT_SYMLINK_NOFOLLOW) != 0) {
      entry.error = ErrnoError(errno, where.path);
      return;
    }
    entry.mode = st.st_mode;
    if (S_ISREG(st.st_mode)) {
      entry.seen = IdentityOf(st);
      return;
    }
    if (S_ISDIR(st.st_mode) && recursive_) {
      entry.seen = IdentityOf(st);  // device and inode guard the walk against loops
      return;
    }
    std::string why;
    if (S_ISDIR(st.st_mode)) {
      why = " is a directory; ask for recursion (signet digest -r) to hash the files in it";
    } else if (S_ISLNK(st.st_mode)) {
      why =
          " is a symbolic link, and symbolic links are not followed (signet digest -L follows "
          "them)";
    } else {
      why = std::string(" is ") + std::string(FileTypeName(st.st_mode)) +
            ", not a regular file; only regular files are hashed";
    }
    entry.error = Error(ErrorCode::kInvalidArgument, where.path + why);
  }

  // Adds a stat'ed entry in order: a directory is replaced by its walk, anything else kept.
  void Add(InputEntry entry) {
    if (!entry.error && S_ISDIR(entry.mode)) {
      Walk(entry.where.path, entry.seen);
      return;
    }
    out_.push_back(std::move(entry));
  }

  void Walk(const std::string& dir, const FileIdentity& id) {
    const auto key = std::make_pair(id.device, id.inode);
    if (!on_stack_.insert(key).second) {
      out_.push_back(Refused(
          dir, Error(ErrorCode::kInvalidArgument,
                     "directory loop: " + dir + " is its own ancestor through a symbolic link")));
      return;
    }
    UniqueFd fd(
        ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow_ ? 0 : O_NOFOLLOW)));
    // fdopendir takes ownership of the descriptor it is given, so it gets a duplicate and `fd`
    // stays open for the *at(2) calls on the files listed.
    Dir handle(fd ? ::fdopendir(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0)) : nullptr);
    if (!handle) {
      out_.push_back(Refused(dir, ErrnoError(errno, "open directory " + dir)));
      on_stack_.erase(key);
      return;
    }
    std::shared_ptr<const UniqueFd> dir_fd;
    if (dir_fds_ < kMaxDirFds) {
      dir_fd = std::make_shared<const UniqueFd>(std::move(fd));
      ++dir_fds_;
    }
    // Names go into one buffer and are sorted as views into it: no string per child until its
    // entry is made, and the sort moves small records instead of strings.
    struct Child {
      std::size_t offset;
      std::size_t length;
      unsigned char type;
    };
    std::string names;
    std::vector<Child> children;
    errno = 0;
    while (const dirent* entry = ::readdir(handle.get())) {
      const std::string_view name = entry->d_name;
      if (name != "." && name != "..") {
        children.push_back({names.size(), name.size(), entry->d_type});
        names.append(name);
      }
      errno = 0;
    }
    if (errno != 0) {
      out_.push_back(Refused(dir, ErrnoError(errno, "read directory " + dir)));
    }
    handle.reset();
    const auto name_of = [&names](const Child& c) {
      return std::string_view(names).substr(c.offset, c.length);
    };
    std::sort(children.begin(), children.end(),
              [&](const Child& a, const Child& b) { return name_of(a) < name_of(b); });
    // The same path `dir / name` makes (a separator unless `dir` already ends in one; a name
    // never holds one), without std::filesystem::path::operator/ parsing and reallocating.
    std::string prefix = dir;
    if (!prefix.empty() && prefix.back() != '/') {
      prefix += '/';
    }
    const std::size_t prefix_length = prefix.size();
    // Grown geometrically: an exact reserve per directory would copy `out_` once per directory.
    if (const std::size_t need = out_.size() + children.size(); need > out_.capacity()) {
      out_.reserve(std::max(need, 2 * out_.capacity()));
    }
    for (const Child& child : children) {
      const std::string_view name = name_of(child);
      prefix.resize(prefix_length);
      prefix.append(name);
      InputEntry entry{Location{prefix, dir_fd, prefix_length}, {}, {}};
      // d_type spares a stat now for everything but directories (and symlinks we follow), which
      // must be known at once to keep the walk in order; the rest are stat'ed later, in parallel.
      const bool maybe_dir =
          child.type == DT_DIR || child.type == DT_UNKNOWN || (follow_ && child.type == DT_LNK);
      if (maybe_dir) {
        StatAndClassify(entry);
        Add(std::move(entry));
      } else {
        out_.push_back(std::move(entry));
      }
    }
    on_stack_.erase(key);
  }

  bool recursive_;
  bool follow_;
  tbb::task_arena& arena_;
  std::set<std::pair<std::uint64_t, std::uint64_t>> on_stack_;
  int dir_fds_ = 0;
  std::vector<InputEntry> out_;
};

}  // namespace

int Location::at_fd() const { return dir ? dir->get() : AT_FDCWD; }
const char* Location::at_name() const { return dir ? path.c_str() + name_offset : path.c_str(); }

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
