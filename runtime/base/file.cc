// SPDX-License-Identifier: Apache-2.0

#include "runtime/base/file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace compressa {

/// What a non-regular file is, for "not a regular file (a named pipe)".
static const char *describeFileType(mode_t mode) {
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISFIFO(mode))
    return "a named pipe";
  if (S_ISCHR(mode))
    return "a character device";
  if (S_ISBLK(mode))
    return "a block device";
  if (S_ISSOCK(mode))
    return "a socket";
  return "not a file";
}

StatusOr<ReadOnlyFile> ReadOnlyFile::open(const std::string &path) {
  const char *p = path.c_str();
  // O_NONBLOCK: opening a named pipe for reading blocks until a writer
  // appears, which for a hostile path may be never. The descriptor is only
  // kept once fstat says it is a regular file, and then made blocking again.
  int fd = ::open(p, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    return Status::errorAt(__FILE__, __LINE__,
                           err == ENOENT ? StatusCode::NotFound
                                         : StatusCode::Unavailable,
                           "%s: cannot open: %s", p, std::strerror(err));
  }
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    int err = errno;
    ::close(fd);
    return COMPRESSA_ERROR(Unavailable, "%s: cannot stat: %s", p,
                           std::strerror(err));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    return COMPRESSA_ERROR(InvalidArgument, "%s: not a regular file (%s)", p,
                           describeFileType(info.st_mode));
  }
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    int err = errno;
    ::close(fd);
    return COMPRESSA_ERROR(Unavailable, "%s: cannot clear O_NONBLOCK: %s", p,
                           std::strerror(err));
  }
  return ReadOnlyFile(fd, static_cast<uint64_t>(info.st_size));
}

StatusOr<std::string> ReadOnlyFile::readAll(const std::string &path,
                                            uint64_t maxBytes) {
  const char *p = path.c_str();
  COMPRESSA_ASSIGN_OR_RETURN(ReadOnlyFile file, open(path));
  uint64_t size = file.size();
  if (size > maxBytes)
    return COMPRESSA_ERROR(ResourceExhausted,
                           "%s: file is %llu bytes, larger than the %llu-byte "
                           "limit",
                           p, static_cast<unsigned long long>(size),
                           static_cast<unsigned long long>(maxBytes));
  std::string contents(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t got =
        ::read(file.fd(), contents.data() + done, contents.size() - done);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) {
      int err = got < 0 ? errno : 0;
      return COMPRESSA_ERROR(
          DataLoss, "%s: read %zu of %zu bytes: %s", p, done, contents.size(),
          err ? std::strerror(err) : "unexpected end of file");
    }
    done += static_cast<size_t>(got);
  }
  return contents;
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
