// SPDX-License-Identifier: Apache-2.0
// Status formatting: printf-style message builders, context chaining and the
// one abort the runtime has (reading the value of an error StatusOr).
#include "runtime/base/status.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace compressa {

/// Formats `fmt` with `args` into a std::string of any length.
static std::string formatV(const char *fmt, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int size = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (size < 0)
    return std::string("(bad format string: ") + fmt + ")";
  std::string out(static_cast<size_t>(size) + 1, '\0');
  std::vsnprintf(out.data(), out.size(), fmt, args);
  out.resize(static_cast<size_t>(size));
  return out;
}

const char *statusCodeName(StatusCode code) {
  switch (code) {
  case StatusCode::Ok:
    return "Ok";
  case StatusCode::InvalidArgument:
    return "InvalidArgument";
  case StatusCode::NotFound:
    return "NotFound";
  case StatusCode::DataLoss:
    return "DataLoss";
  case StatusCode::OutOfRange:
    return "OutOfRange";
  case StatusCode::FailedPrecondition:
    return "FailedPrecondition";
  case StatusCode::ResourceExhausted:
    return "ResourceExhausted";
  case StatusCode::Unimplemented:
    return "Unimplemented";
  case StatusCode::Unavailable:
    return "Unavailable";
  case StatusCode::Internal:
    return "Internal";
  }
  return "Unknown";
}

Status::Status(StatusCode code, std::string message, const char *file, int line)
    : statusCode(code), text(std::move(message)), sourceFile(file),
      sourceLine(line) {
  if (code == StatusCode::Ok) {
    text.clear();
    sourceFile = nullptr;
    sourceLine = 0;
  }
}

Status Status::error(StatusCode code, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::string message = formatV(fmt, args);
  va_end(args);
  return Status(code, std::move(message));
}

Status Status::errorAt(const char *file, int line, StatusCode code,
                       const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::string message = formatV(fmt, args);
  va_end(args);
  return Status(code, std::move(message), file, line);
}

Status Status::withContext(const char *fmt, ...) const {
  if (ok())
    return *this;
  va_list args;
  va_start(args, fmt);
  std::string context = formatV(fmt, args);
  va_end(args);
  return Status(statusCode, context + ": " + text, sourceFile, sourceLine);
}

std::string Status::toString() const {
  if (ok())
    return "OK";
  std::string out = std::string(statusCodeName(statusCode)) + ": " + text;
  if (sourceFile) {
    const char *slash = std::strrchr(sourceFile, '/');
    out += " [";
    out += slash ? slash + 1 : sourceFile;
    out += ":" + std::to_string(sourceLine) + "]";
  }
  return out;
}

std::string printable(std::string_view text, size_t maxLength) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (out.size() >= maxLength) {
      out += "...";
      break;
    }
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    }
  }
  return out;
}

namespace internal {

void dieOnBadStatusOrAccess(const Status &status) {
  std::fprintf(stderr,
               "compressa: value() of a StatusOr holding an error: %s\n",
               status.toString().c_str());
  std::abort();
}

Status annotate(Status status, const char *fmt, ...) {
  if (status.ok())
    return status;
  va_list args;
  va_start(args, fmt);
  std::string context = formatV(fmt, args);
  va_end(args);
  return Status(status.code(), context + ": " + status.message(), status.file(),
                status.line());
}

} // namespace internal
} // namespace compressa
