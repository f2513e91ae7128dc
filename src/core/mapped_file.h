#pragma once
// Read-only memory mapping of a whole file. Tensors borrow slices of it, so model weights are
// paged in by the OS and never copied; the mapping lives as long as any borrower holds the
// shared_ptr.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace bitnet {

class MappedFile {
 public:
  // Throws bitnet::Error naming the path when it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the resident pages wholly inside [p, p + n) from this process (the bytes stay readable:
  // a later read faults them back in from the page cache or the file). Called once a tensor has
  // been repacked into its own buffer, so the file's copy stops counting towards the process's
  // memory. p must lie inside the mapping.
  void release(const uint8_t* p, size_t n) const;

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace bitnet
