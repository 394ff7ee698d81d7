// sluice/serve/spooled_body.hpp: a request body spooled to disk. Large bodies are written to a
// temporary file that has no name from the moment it is opened (nothing is left behind, even when
// the process is killed), then mapped read-only, so multipart parts stay views into it. The file's
// bytes are held in the spool budget (disk), not the memory budget: their pages are file-backed
// and the kernel can drop them under pressure.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "sluice/serve/memory_budget.hpp"
#include "sluice/weights/safetensors_mapped_file.hpp"

namespace sluice::serve {

/// The directory spooled bodies go to when none is configured: $TMPDIR, else /tmp.
inline std::string default_spool_dir() {
  const char* env = std::getenv("TMPDIR");
  return env && *env ? std::string(env) : std::string("/tmp");
}

/// Opens a new, already unlinked, read-write file in `dir` and returns its descriptor. O_TMPFILE
/// where the file system has it; else a named file removed right after it is created. Throws
/// std::system_error when neither works.
inline int open_spool_file(const std::string& dir) {
#ifdef O_TMPFILE
  if (const int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600); fd >= 0) return fd;
#endif
  std::string path = dir + "/sluice-body-XXXXXX";
  const int fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot create a spool file in " + dir);
  ::unlink(path.c_str());
  return fd;
}

/// A spooled body, mapped: the bytes stay valid, and held in the spool budget, while it lives.
class SpooledBody {
 public:
  /// Maps the first `size` bytes of `fd` (which stays the caller's to close).
  SpooledBody(int fd, std::size_t size, MemoryBudget::Lease lease)
      : map_(fd, size, "spooled request body"), lease_(std::move(lease)) {
    lease_.shrink_to(size);  // a chunked body reserved the largest allowed
  }

  std::string_view view() const {
    const auto b = map_.bytes();
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }

 private:
  weights::MappedFile map_;
  MemoryBudget::Lease lease_;
};

}  // namespace sluice::serve
