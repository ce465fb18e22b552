// SPDX-License-Identifier: Apache-2.0

#include "runtime/base/file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace compressa {

StatusOr<ReadOnlyFile> ReadOnlyFile::open(const std::string &path) {
  const char *p = path.c_str();
  int fd = ::open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return Status::errorAt(__FILE__, __LINE__,
                           err == ENOENT ? StatusCode::NotFound
                                         : StatusCode::Unavailable,
                           "%s: cannot open: %s", p, std::strerror(err));
  }
  struct stat info;
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return COMPRESSA_ERROR(InvalidArgument, "%s: not a regular file", p);
  }
  return ReadOnlyFile(fd, static_cast<uint64_t>(info.st_size));
}

ReadOnlyFile::ReadOnlyFile(ReadOnlyFile &&other) noexcept
    : descriptor(other.descriptor), bytes(other.bytes) {
  other.descriptor = -1;
}

ReadOnlyFile &ReadOnlyFile::operator=(ReadOnlyFile &&other) noexcept {
  if (this != &other) {
    close();
    descriptor = other.descriptor;
    bytes = other.bytes;
    other.descriptor = -1;
  }
  return *this;
}

ReadOnlyFile::~ReadOnlyFile() { close(); }

void ReadOnlyFile::close() {
  if (descriptor >= 0)
    ::close(descriptor);
  descriptor = -1;
}

} // namespace compressa
