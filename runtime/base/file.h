// SPDX-License-Identifier: Apache-2.0
//
// Opening an input file the runtime treats as hostile: a regular file, opened
// read-only, with its size; the descriptor is closed when the object goes.

#ifndef COMPRESSA_RUNTIME_BASE_FILE_H
#define COMPRESSA_RUNTIME_BASE_FILE_H

#include "runtime/base/status.h"

#include <cstdint>
#include <string>

namespace compressa {

/// An open, read-only regular file.
class ReadOnlyFile {
public:
  /// Opens `path`; errors name the path: NotFound when it does not exist,
  /// InvalidArgument when it is not a regular file ("<path>: not a regular
  /// file (a named pipe)"). Never blocks: a named pipe is refused, not waited
  /// on (it is opened O_NONBLOCK, checked with fstat, then made blocking).
  static StatusOr<ReadOnlyFile> open(const std::string &path);
  /// The whole of the regular file `path`, read as hostile: refused
  /// (ResourceExhausted) when larger than `maxBytes`, DataLoss when it
  /// shrinks while being read.
  static StatusOr<std::string> readAll(const std::string &path,
                                       uint64_t maxBytes);

  ReadOnlyFile(ReadOnlyFile &&other) noexcept;
  ReadOnlyFile &operator=(ReadOnlyFile &&other) noexcept;
  ReadOnlyFile(const ReadOnlyFile &) = delete;
  ReadOnlyFile &operator=(const ReadOnlyFile &) = delete;
  ~ReadOnlyFile();

  int fd() const { return descriptor; }
  uint64_t size() const { return bytes; }
  /// Closes the descriptor now (e.g. once the file is mapped).
  void close();

private:
  ReadOnlyFile(int fd, uint64_t size) : descriptor(fd), bytes(size) {}
  int descriptor = -1;
  uint64_t bytes = 0;
};

} // namespace compressa

#endif // COMPRESSA_RUNTIME_BASE_FILE_H
