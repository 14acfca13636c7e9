// POSIX implementation of the atomic write procedure (see atomic_file.h).
#include "engine/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "engine/core/check.h"

namespace selfsup {

namespace {
std::atomic<int64_t> g_fault_after{-1};
std::atomic<uint64_t> g_temp_counter{0};

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  std::filesystem::path p(path);
  std::string dir = p.parent_path().string();
  return dir.empty() ? "." : dir;
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  SELFSUP_CHECK(fd >= 0, "cannot open directory '", dir, "' to sync it: ", errno_text());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems refuse fsync on directories (EINVAL); the rename is then as durable as they allow.
  SELFSUP_CHECK(rc == 0 || err == EINVAL, "cannot sync directory '", dir, "': ", std::strerror(err));
}
}  // namespace

void set_atomic_write_fault_for_testing(int64_t after_bytes) { g_fault_after = after_bytes; }

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  SELFSUP_CHECK(!path_.empty(), "atomic write: empty path");
  std::filesystem::path p(path_);
  SELFSUP_CHECK(!p.filename().empty(), "atomic write: '", path_, "' names a directory, not a file");
  const std::string dir = parent_dir(path_);
  temp_ = (std::filesystem::path(dir) / str_cat(".", p.filename().string(), ".tmp-", ::getpid(), "-",
                                              g_temp_counter.fetch_add(1)))
              .string();
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  SELFSUP_CHECK(fd_ >= 0, "cannot write '", path_, "': creating the temp file '", temp_, "' failed: ", errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) abandon();
}

void AtomicFileWriter::abandon() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t size) {
  SELFSUP_CHECK(fd_ >= 0 && !committed_, "atomic write of '", path_, "': write after commit or failure");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    size_t chunk = std::min<size_t>(size, size_t{1} << 30);
    if (g_fault_after.load() >= 0) {  // test hook: spend the byte budget, fail when it runs out
      const int64_t budget = g_fault_after.load();
      if (static_cast<uint64_t>(budget) < chunk) {
        if (budget > 0) (void)!::write(fd_, p, static_cast<size_t>(budget));  // a partial temp file, as a crash leaves
        g_fault_after = -1;  // one-shot
        abandon();
        throw_error(str_cat("cannot write '", path_, "' (temp file '", temp_,
                            "'): No space left on device (injected write failure, test hook)"));
      }
      g_fault_after -= static_cast<int64_t>(chunk);
    }
    ssize_t n = ::write(fd_, p, chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = n < 0 ? errno_text() : "no progress";
      abandon();
      throw_error(str_cat("cannot write '", path_, "' (temp file '", temp_, "'): ", why));
    }
    p += n;
    size -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
}

void AtomicFileWriter::commit() {
  SELFSUP_CHECK(fd_ >= 0 && !committed_, "atomic write of '", path_, "': commit after commit or failure");
  if (::fsync(fd_) != 0) {
    std::string why = errno_text();
    abandon();
    throw_error(str_cat("cannot write '", path_, "': fsync of the temp file failed: ", why));
  }
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) {
    std::string why = errno_text();
    abandon();
    throw_error(str_cat("cannot write '", path_, "': close failed: ", why));
  }
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    std::string why = errno_text();
    abandon();
    throw_error(str_cat("cannot write '", path_, "': renaming '", temp_, "' over it failed: ", why));
  }
  committed_ = true;
  fsync_dir(parent_dir(path_));
}

void atomic_write_file(const std::string& path, const void* data, size_t size) {
  AtomicFileWriter w(path);
  w.write(data, size);
  w.commit();
}

}  // namespace selfsup
