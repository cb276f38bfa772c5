// The LMDB side of the audit log: durable environment settings, the named databases, map growth
// and bounded read views. See internal/store.h for the layout.
#include <errno.h>
#include <lmdb.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include "appliance/audit/internal/store.h"

namespace signet::audit::internal {
namespace {

using pipeline::MerkleHash;

constexpr std::string_view kFormatVersion = "1";
constexpr std::string_view kMetaFormat = "format";
constexpr std::string_view kMetaTree = "tree";
// Grow when the map is this full; refuse to start a transaction past kFullFraction at the maximum,
// so a commit never meets MDB_MAP_FULL halfway through a group.
constexpr double kGrowFraction = 0.8;
constexpr double kFullFraction = 0.95;

Error LmdbError(int rc, std::string_view what) {
  const ErrorCode code = rc == MDB_MAP_FULL              ? ErrorCode::kUnavailable
                         : (rc == EACCES || rc == EPERM) ? ErrorCode::kPermissionDenied
                                                         : ErrorCode::kIo;
  return Error(code, std::string(what) + ": " + mdb_strerror(rc), ErrorDomain::kLmdb, rc);
}

MDB_val Val(std::span<const std::uint8_t> bytes) {
  return MDB_val{bytes.size(), const_cast<std::uint8_t*>(bytes.data())};
}
MDB_val Val(std::string_view text) { return MDB_val{text.size(), const_cast<char*>(text.data())}; }
std::string_view View(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

void PutU64(std::uint8_t* out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
}
std::uint64_t GetU64(const std::uint8_t* in) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | in[i];
  }
  return v;
}

using SeqKey = std::array<std::uint8_t, 8>;
SeqKey KeyOf(std::uint64_t seq) {
  SeqKey key;
  PutU64(key.data(), seq);
  return key;
}

using NodeKey = std::array<std::uint8_t, 9>;
Result<NodeKey> NodeKeyOf(unsigned level, std::uint64_t index) {
  if (level >= 64 || index > ((~std::uint64_t{0}) >> level) - 1) {
    return MakeError(ErrorCode::kInvalidArgument, "merkle node out of range");
  }
  NodeKey key;
  PutU64(key.data(), ((index + 1) << level) - 1);
  key[8] = static_cast<std::uint8_t>(level);
  return key;
}

std::string DigestKey(std::string_view algorithm, std::span<const std::uint8_t> digest) {
  std::string key(algorithm);
  key.push_back(':');
  key.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return key;
}

struct EnvCloser {
  void operator()(MDB_env* env) const { mdb_env_close(env); }
};

}  // namespace

struct Store::Impl {
  std::unique_ptr<MDB_env, EnvCloser> env;
  MDB_dbi records = 0;
  MDB_dbi nodes = 0;
  MDB_dbi checkpoints = 0;
  MDB_dbi digests = 0;
  MDB_dbi meta = 0;
  std::size_t max_map_size = 0;
  // Readers hold it shared; growing the map takes it exclusively (mdb_env_set_mapsize needs no
  // transaction active in the process).
  mutable std::shared_mutex resize_mu;

  std::size_t MapSize() const {
    MDB_envinfo info;
    mdb_env_info(env.get(), &info);
    return info.me_mapsize;
  }
  std::size_t MapUsed() const {
    MDB_envinfo info;
    MDB_stat stat;
    mdb_env_info(env.get(), &info);
    mdb_env_stat(env.get(), &stat);
    return (info.me_last_pgno + 1) * static_cast<std::size_t>(stat.ms_psize);
  }
};

bool IsMapFull(const Error& error) {
  return error.domain() == ErrorDomain::kLmdb && error.native_code() == MDB_MAP_FULL;
}

// ---- ReadView ----------------------------------------------------------------------------------

struct ReadView::Impl {
  const Store::Impl* store = nullptr;
  std::shared_lock<std::shared_mutex> lock;
  MDB_txn* txn = nullptr;
  ~Impl() {
    if (txn != nullptr) {
      mdb_txn_abort(txn);
    }
  }
};

ReadView::ReadView(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReadView::ReadView(ReadView&&) noexcept = default;
ReadView& ReadView::operator=(ReadView&&) noexcept = default;
ReadView::~ReadView() = default;

Result<std::string> ReadView::Record(std::uint64_t seq) const {
  const SeqKey key = KeyOf(seq);
  MDB_val k = Val(key);
  MDB_val v;
  const int rc = mdb_get(impl_->txn, impl_->store->records, &k, &v);
  if (rc == MDB_NOTFOUND) {
    return MakeError(ErrorCode::kNotFound, "no audit record " + std::to_string(seq));
  }
  if (rc != 0) {
    return tl::unexpected(LmdbError(rc, "read audit record " + std::to_string(seq)));
  }
  return std::string(View(v));
}

Result<MerkleHash> ReadView::Node(unsigned level, std::uint64_t index) const {
  SIGNET_ASSIGN_OR_RETURN(const NodeKey key, NodeKeyOf(level, index));
  MDB_val k = Val(key);
  MDB_val v;
  const std::string name =
      "merkle node (level " + std::to_string(level) + ", index " + std::to_string(index) + ")";
  const int rc = mdb_get(impl_->txn, impl_->store->nodes, &k, &v);
  if (rc == MDB_NOTFOUND) {
    return MakeError(ErrorCode::kNotFound, "the audit log has no " + name);
  }
  if (rc != 0) {
    return tl::unexpected(LmdbError(rc, "read " + name));
  }
  if (v.mv_size != 32) {
    return MakeError(ErrorCode::kInternal, name + " has " + std::to_string(v.mv_size) + " bytes");
  }
  MerkleHash hash;
  std::memcpy(hash.data(), v.mv_data, 32);
  return hash;
}

pipeline::NodeSource ReadView::Nodes() const {
  return [this](unsigned level, std::uint64_t index) { return Node(level, index); };
}

Result<TreeMeta> ReadView::Tree() const {
  MDB_val k = Val(kMetaTree);
  MDB_val v;
  const int rc = mdb_get(impl_->txn, impl_->store->meta, &k, &v);
  TreeMeta tree;
  if (rc == MDB_NOTFOUND) {
    tree.root = pipeline::EmptyTreeHash();
    return tree;
  }
  if (rc != 0) {
    return tl::unexpected(LmdbError(rc, "read the audit tree size"));
  }
  if (v.mv_size < 40 || (v.mv_size - 40) % 32 != 0) {
    return MakeError(ErrorCode::kInternal, "the audit log's tree record is damaged");
  }
  const auto* p = static_cast<const std::uint8_t*>(v.mv_data);
  tree.size = GetU64(p);
  std::memcpy(tree.root.data(), p + 8, 32);
  for (std::size_t off = 40; off < v.mv_size; off += 32) {
    MerkleHash h;
    std::memcpy(h.data(), p + off, 32);
    tree.compact_range.push_back(h);
  }
  return tree;
}

Result<std::optional<std::string>> ReadView::LatestCheckpoint() const {
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(impl_->txn, impl_->store->checkpoints, &cursor);
  if (rc != 0) {
    return tl::unexpected(LmdbError(rc, "read audit checkpoints"));
  }
  MDB_val k;
  MDB_val v;
  rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
  std::optional<std::string> note;
  if (rc == 0) {
    note = std::string(View(v));
  }
  mdb_cursor_close(cursor);
  if (rc != 0 && rc != MDB_NOTFOUND) {
    return tl::unexpected(LmdbError(rc, "read the latest audit checkpoint"));
  }
  return note;
}

Result<std::uint64_t> ReadView::CheckpointCount() const {
  MDB_stat stat{};
  if (const int rc = mdb_stat(impl_->txn, impl_->store->checkpoints, &stat); rc != 0) {
    return tl::unexpected(LmdbError(rc, "count the audit checkpoints"));
  }
  return std::uint64_t{stat.ms_entries};
}

Result<std::vector<std::uint64_t>> ReadView::SeqsForDigest(
    std::string_view algorithm, std::span<const std::uint8_t> digest) const {
  const std::string key = DigestKey(algorithm, digest);
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(impl_->txn, impl_->store->digests, &cursor);
  if (rc != 0) {
    return tl::unexpected(LmdbError(rc, "read the audit digest index"));
  }
  std::vector<std::uint64_t> seqs;
  MDB_val k = Val(key);
  MDB_val v;
  for (rc = mdb_cursor_get(cursor, &k, &v, MDB_SET); rc == 0;
       rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT_DUP)) {
    if (v.mv_size == 8) {
      seqs.push_back(GetU64(static_cast<const std::uint8_t*>(v.mv_data)));
    }
  }
  mdb_cursor_close(cursor);
  if (rc != MDB_NOTFOUND) {
    return tl::unexpected(LmdbError(rc, "read the audit digest index"));
  }
  return seqs;
}

Result<std::uint64_t> ReadView::FirstSeqAtOrAfter(std::int64_t time_us, std::uint64_t size) const {
  // Canonical records end with "time_us":T,"v":1}; times never decrease along the log.
  auto time_of = [&](std::uint64_t seq) -> Result<std::int64_t> {
    SIGNET_ASSIGN_OR_RETURN(const std::string bytes, Record(seq));
    const std::size_t at = bytes.rfind("\"time_us\":");
    if (at == std::string::npos) {
      return MakeError(ErrorCode::kInternal,
                       "audit record " + std::to_string(seq) + " has no time");
    }
    return std::strtoll(bytes.c_str() + at + 10, nullptr, 10);
  };
  std::uint64_t lo = 0;
  std::uint64_t hi = size;
  while (lo < hi) {
    const std::uint64_t mid = lo + (hi - lo) / 2;
    SIGNET_ASSIGN_OR_RETURN(const std::int64_t t, time_of(mid));
    if (t < time_us) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// ---- Store -------------------------------------------------------------------------------------

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::Open(const std::filesystem::path& dir, std::size_t map_size,
                                           std::size_t max_map_size) {
  if (map_size == 0 || max_map_size < map_size) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "audit map_size must be positive and at most max_map_size");
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return tl::unexpected(ErrnoError(errno, "create audit directory " + dir.string()));
  }
  return OpenEnv(dir, map_size, max_map_size, /*read_only=*/false);
}

Result<std::unique_ptr<Store>> Store::OpenReadOnly(const std::filesystem::path& dir) {
  // Without a data file LMDB would create lock.mdb in whatever directory it was pointed at.
  struct stat st;
  if (::stat((dir / "data.mdb").c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kNotFound,
                     dir.string() + " is not a Signet audit log (it has no data.mdb)");
  }
  return OpenEnv(dir, 0, 0, /*read_only=*/true);
}

Result<std::unique_ptr<Store>> Store::OpenEnv(const std::filesystem::path& dir,
                                              std::size_t map_size, std::size_t max_map_size,
                                              bool read_only) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    return tl::unexpected(ErrnoError(errno, "audit directory " + dir.string()));
  }
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "audit directory " + dir.string() + " is not a directory");
  }

  auto impl = std::make_unique<Impl>();
  impl->max_map_size = max_map_size;
  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc != 0) {
    return tl::unexpected(LmdbError(rc, "create LMDB environment"));
  }
  impl->env.reset(env);
  // A reader takes the map size the writer set (0 = the environment's own).
  if ((rc = mdb_env_set_maxdbs(env, 8)) != 0 || (rc = mdb_env_set_mapsize(env, map_size)) != 0) {
    return tl::unexpected(LmdbError(rc, "configure LMDB environment"));
  }
  // Durable settings only: no MDB_NOSYNC, MDB_NOMETASYNC, MDB_MAPASYNC or MDB_WRITEMAP. MDB_NOTLS
  // lets a read view be used from any thread and lets one thread hold several.
  rc = mdb_env_open(env, dir.c_str(), MDB_NOTLS | (read_only ? MDB_RDONLY : 0), 0600);
  if (rc != 0) {
    return tl::unexpected(LmdbError(rc, "open audit log " + dir.string()));
  }
  int dead = 0;
  if ((rc = mdb_reader_check(env, &dead)) != 0) {
    return tl::unexpected(LmdbError(rc, "check LMDB readers"));
  }

  MDB_txn* txn = nullptr;
  if ((rc = mdb_txn_begin(env, nullptr, read_only ? MDB_RDONLY : 0, &txn)) != 0) {
    return tl::unexpected(LmdbError(rc, "open audit databases"));
  }
  struct Db {
    const char* name;
    unsigned flags;
    MDB_dbi* dbi;
  };
  const Db dbs[] = {
      {"records", 0, &impl->records},
      {"nodes", 0, &impl->nodes},
      {"checkpoints", 0, &impl->checkpoints},
      {"digests", MDB_DUPSORT | MDB_DUPFIXED, &impl->digests},
      {"meta", 0, &impl->meta},
  };
  for (const Db& db : dbs) {
    rc = mdb_dbi_open(txn, db.name, db.flags | (read_only ? 0 : MDB_CREATE), db.dbi);
    if (rc == MDB_NOTFOUND) {
      mdb_txn_abort(txn);
      return MakeError(ErrorCode::kNotFound,
                       dir.string() + " is not a Signet audit log (no " + db.name + " database)");
    }
    if (rc != 0) {
      mdb_txn_abort(txn);
      return tl::unexpected(LmdbError(rc, std::string("open audit database ") + db.name));
    }
  }
  MDB_val k = Val(kMetaFormat);
  MDB_val v;
  rc = mdb_get(txn, impl->meta, &k, &v);
  if (rc == MDB_NOTFOUND && !read_only) {
    MDB_val version = Val(kFormatVersion);
    rc = mdb_put(txn, impl->meta, &k, &version, 0);
  } else if (rc == 0 && View(v) != kFormatVersion) {
    mdb_txn_abort(txn);
    return MakeError(ErrorCode::kInvalidArgument,
                     "audit log " + dir.string() + " has format version " + std::string(View(v)) +
                         "; this Signet reads version " + std::string(kFormatVersion));
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    return tl::unexpected(LmdbError(rc, "read the audit log format"));
  }
  // Committing (also a read-only transaction) keeps the database handles for later transactions.
  if ((rc = mdb_txn_commit(txn)) != 0) {
    return tl::unexpected(LmdbError(rc, "open audit databases"));
  }
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Result<ReadView> Store::Read() const {
  auto view = std::make_unique<ReadView::Impl>();
  view->store = impl_.get();
  view->lock = std::shared_lock<std::shared_mutex>(impl_->resize_mu);
  int rc = mdb_txn_begin(impl_->env.get(), nullptr, MDB_RDONLY, &view->txn);
  if (rc == MDB_MAP_RESIZED) {
    // Another process (signetd) grew the map since this one opened it: adopt its size.
    view->lock.unlock();
    {
      std::unique_lock<std::shared_mutex> exclusive(impl_->resize_mu);
      rc = mdb_env_set_mapsize(impl_->env.get(), 0);
    }
    view->lock.lock();
    if (rc == 0) {
      rc = mdb_txn_begin(impl_->env.get(), nullptr, MDB_RDONLY, &view->txn);
    }
  }
  if (rc != 0) {
    view->txn = nullptr;
    return tl::unexpected(LmdbError(rc, "begin audit read"));
  }
  return ReadView(std::move(view));
}

Result<int> Store::CheckReaders() {
  int dead = 0;
  const int rc = mdb_reader_check(impl_->env.get(), &dead);
  if (rc != 0) {
    return tl::unexpected(LmdbError(rc, "check LMDB readers"));
  }
  return dead;
}

std::size_t Store::map_size() const { return impl_->MapSize(); }
std::size_t Store::map_used() const { return impl_->MapUsed(); }

// ---- Write -------------------------------------------------------------------------------------

struct Store::Write::Impl {
  Store::Impl* store = nullptr;
  MDB_txn* txn = nullptr;
  ~Impl() {
    if (txn != nullptr) {
      mdb_txn_abort(txn);
    }
  }
  Status Put(MDB_dbi dbi, MDB_val key, MDB_val value, unsigned flags, std::string_view what) {
    const int rc = mdb_put(txn, dbi, &key, &value, flags);
    if (rc != 0) {
      return MakeError(PutError(rc, what));
    }
    return OkStatus();
  }
  Error PutError(int rc, std::string_view what) const {
    if (rc == MDB_MAP_FULL) {
      return LmdbError(rc, std::string(what) + ": the audit map is full (" +
                               std::to_string(store->MapSize()) + " bytes); raise max_map_size");
    }
    return LmdbError(rc, what);
  }
};

Store::Write::Write(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::Write::Write(Write&&) noexcept = default;
Store::Write& Store::Write::operator=(Write&&) noexcept = default;
Store::Write::~Write() = default;

Status Store::Write::PutRecord(std::uint64_t seq, std::string_view bytes) {
  const SeqKey key = KeyOf(seq);
  return impl_->Put(impl_->store->records, Val(key), Val(bytes), MDB_APPEND, "store audit record");
}

Status Store::Write::PutNode(const pipeline::MerkleNode& node) {
  SIGNET_ASSIGN_OR_RETURN(const NodeKey key, NodeKeyOf(node.level, node.index));
  return impl_->Put(impl_->store->nodes, Val(key), Val(node.hash), MDB_APPEND, "store merkle node");
}

Status Store::Write::PutDigests(std::span<const DigestIndexEntry> entries) {
  // Every key is algorithm ':' digest, laid out in one buffer; the entries are then sorted as
  // LMDB orders keys (bytes, then length) and, under one key, by seq (its duplicates' order).
  struct Keyed {
    std::size_t offset;
    std::size_t size;
    SeqKey value;
  };
  std::string keys;
  std::vector<Keyed> keyed;
  keyed.reserve(entries.size());
  for (const DigestIndexEntry& entry : entries) {
    const std::size_t size = entry.algorithm.size() + 1 + entry.digest.size();
    if (size > 256) {
      return MakeError(ErrorCode::kInvalidArgument, "digest index key too long");
    }
    if (keys.empty()) {
      keys.reserve(entries.size() * size);
    }
    keyed.push_back({keys.size(), size, KeyOf(entry.seq)});
    keys.append(entry.algorithm);
    keys.push_back(':');
    keys.append(reinterpret_cast<const char*>(entry.digest.data()), entry.digest.size());
  }
  const auto key_of = [&keys](const Keyed& k) {
    return std::string_view(keys).substr(k.offset, k.size);
  };
  std::sort(keyed.begin(), keyed.end(), [&](const Keyed& a, const Keyed& b) {
    const int order = key_of(a).compare(key_of(b));
    return order != 0 ? order < 0 : a.value < b.value;
  });
  MDB_cursor* raw = nullptr;
  if (const int rc = mdb_cursor_open(impl_->txn, impl_->store->digests, &raw); rc != 0) {
    return MakeError(LmdbError(rc, "index audit digest"));
  }
  const std::unique_ptr<MDB_cursor, FnDeleter<&mdb_cursor_close>> cursor(raw);
  for (const Keyed& k : keyed) {
    MDB_val key = Val(key_of(k));
    MDB_val value = Val(k.value);
    if (const int rc = mdb_cursor_put(cursor.get(), &key, &value, 0); rc != 0) {
      return MakeError(impl_->PutError(rc, "index audit digest"));
    }
  }
  return OkStatus();
}

Status Store::Write::PutTree(const TreeMeta& tree) {
  std::vector<std::uint8_t> value(40 + 32 * tree.compact_range.size());
  PutU64(value.data(), tree.size);
  std::memcpy(value.data() + 8, tree.root.data(), 32);
  for (std::size_t i = 0; i < tree.compact_range.size(); ++i) {
    std::memcpy(value.data() + 40 + 32 * i, tree.compact_range[i].data(), 32);
  }
  return impl_->Put(impl_->store->meta, Val(kMetaTree), Val(value), 0, "store audit tree size");
}

Status Store::Write::PutCheckpoint(std::uint64_t size, std::string_view note) {
  const SeqKey key = KeyOf(size);
  return impl_->Put(impl_->store->checkpoints, Val(key), Val(note), 0, "store audit checkpoint");
}

Status Store::Write::Commit() && {
  MDB_txn* txn = std::exchange(impl_->txn, nullptr);
  // mdb_txn_commit frees the transaction whether or not it succeeds.
  const int rc = mdb_txn_commit(txn);
  impl_.reset();
  if (rc != 0) {
    return MakeError(LmdbError(rc, "commit audit records"));
  }
  return OkStatus();
}

Result<bool> Store::Grow() {
  const std::size_t size = impl_->MapSize();
  if (size >= impl_->max_map_size) {
    return false;
  }
  const std::size_t grown = std::min(impl_->max_map_size, size * 2);
  std::unique_lock<std::shared_mutex> exclusive(impl_->resize_mu);
  const int rc = mdb_env_set_mapsize(impl_->env.get(), grown);
  if (rc != 0) {
    return tl::unexpected(LmdbError(rc, "grow the audit map to " + std::to_string(grown)));
  }
  return true;
}

Result<Store::Write> Store::BeginWrite() {
  const std::size_t size = impl_->MapSize();
  const std::size_t used = impl_->MapUsed();
  if (static_cast<double>(used) > kGrowFraction * static_cast<double>(size) &&
      size < impl_->max_map_size) {
    SIGNET_RETURN_IF_ERROR(Grow());
  } else if (static_cast<double>(used) > kFullFraction * static_cast<double>(size)) {
    return MakeError(Error(ErrorCode::kUnavailable,
                           "the audit log is full: " + std::to_string(used) + " of " +
                               std::to_string(size) +
                               " bytes used and the map is at its configured maximum "
                               "(max_map_size); raise max_map_size and restart",
                           ErrorDomain::kLmdb, MDB_MAP_FULL));
  }
  auto write = std::make_unique<Write::Impl>();
  write->store = impl_.get();
  const int rc = mdb_txn_begin(impl_->env.get(), nullptr, 0, &write->txn);
  if (rc != 0) {
    write->txn = nullptr;
    return tl::unexpected(LmdbError(rc, "begin audit write"));
  }
  return Write(std::move(write));
}

}  // namespace signet::audit::internal
