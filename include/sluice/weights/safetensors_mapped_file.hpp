// sluice/weights/safetensors_mapped_file.hpp: a read-only memory mapping of a whole file (POSIX mmap),
// owned RAII-style, so that a checkpoint is read straight from the page cache without a copy. The
// server maps its spooled request bodies with it too (serve/spooled_body.hpp).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include "sluice/core/error.hpp"

namespace sluice::weights {

class MappedFile {
 public:
  MappedFile() = default;

  /// Maps `path` read-only. Throws sluice::Error(invalid_argument, "<path>: ...") when the file
  /// cannot be opened, is not a regular file (a FIFO, directory, device or socket: never waited
  /// on), or cannot be mapped.
  explicit MappedFile(const std::filesystem::path& path) {
    const std::string name = path.string();
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. The kind is then
    // checked on the open descriptor itself, so the file checked is the file mapped.
    const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fail(name, "cannot open");
    struct ::stat st {};
    if (::fstat(fd, &st) != 0) {
      const int saved = errno;
      ::close(fd);
      errno = saved;
      fail(name, "cannot stat");
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error(errc::invalid_argument, name + ": not a regular file (" + kind_of(st.st_mode) + ")");
    }
    try {
      map(fd, static_cast<std::size_t>(st.st_size), name);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);  // the mapping keeps the file alive
  }

  /// Maps the first `size` bytes of the regular file open as `fd`, read-only; the descriptor stays
  /// the caller's (the mapping keeps the file alive after it is closed, unlinked files included).
  /// Throws sluice::Error(invalid_argument, "<name>: ...") when it cannot be mapped.
  MappedFile(int fd, std::size_t size, const std::string& name) { map(fd, size, name); }

  MappedFile(MappedFile&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  MappedFile& operator=(MappedFile&& other) noexcept {
    if (this != &other) {
      unmap();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() { unmap(); }

  std::span<const std::byte> bytes() const {
    return {static_cast<const std::byte*>(data_), size_};
  }
  std::size_t size() const { return size_; }

 private:
  static const char* kind_of(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a plain file";
  }
  [[noreturn]] static void fail(const std::string& name, const char* what) {
    throw Error(errc::invalid_argument, name + ": " + what + ": " + std::strerror(errno));
  }
  void map(int fd, std::size_t size, const std::string& name) {
    size_ = size;
    if (size_ == 0) return;  // mmap of length 0 is an error; an empty file is an empty span
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      size_ = 0;
      fail(name, "cannot mmap");
    }
    data_ = p;
  }
  void unmap() noexcept {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }

  void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace sluice::weights
