// Atomic file replacement: a crash or failure at any point leaves either the previous file or the complete
// new one at `path`, never a partial file. Procedure: write a temp file in the same directory (same file
// system, so rename is atomic), fsync it, rename it over the target, fsync the directory (so the rename
// itself is durable). Until commit() the target is untouched; destroying an uncommitted writer deletes the
// temp file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace selfsup {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t size);
  // fsync + close + rename over the target + fsync of the directory. Throws selfsup::Error on failure (the
  // temp file is removed, the target keeps its previous content).
  void commit();
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }

 private:
  void abandon() noexcept;
  std::string path_, temp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Writes `size` bytes to `path` atomically (as above).
void atomic_write_file(const std::string& path, const void* data, size_t size);

// Test hook (simulates a full disk or a crash mid-write): AtomicFileWriters may write `after_bytes` more bytes
// in total (across files); the write that would exceed them fails with the Error a full disk gives (ENOSPC),
// after which the hook is off again (one-shot). A negative value disables it.
void set_atomic_write_fault_for_testing(int64_t after_bytes);

}  // namespace selfsup
