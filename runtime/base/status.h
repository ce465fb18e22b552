// SPDX-License-Identifier: Apache-2.0
// Status and StatusOr<T>: how every runtime function reports failure. A Status
// carries a code, a message and the file:line that created it; the runtime
// never throws and never aborts on bad input, files or device errors (STYLE.md
// C.7).
#ifndef COMPRESSA_RUNTIME_BASE_STATUS_H
#define COMPRESSA_RUNTIME_BASE_STATUS_H

#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#if defined(__GNUC__) || defined(__clang__)
/// Lets the compiler check printf-style format strings against their arguments.
#define COMPRESSA_PRINTF_FORMAT(fmtIndex, firstArg)                            \
  __attribute__((format(printf, fmtIndex, firstArg)))
#else
#define COMPRESSA_PRINTF_FORMAT(fmtIndex, firstArg)
#endif

namespace compressa {

/// What went wrong, coarsely; the message says the rest.
enum class StatusCode {
  Ok,
  /// The caller passed something unusable (a bad path, a bad option).
  InvalidArgument,
  /// A file, tensor or other named thing does not exist.
  NotFound,
  /// A file exists but its content is corrupt or inconsistent.
  DataLoss,
  /// An index or size falls outside the range it must be in.
  OutOfRange,
  /// The operation needs a state that does not hold (e.g. not initialized).
  FailedPrecondition,
  /// Memory, address space or a device resource ran out.
  ResourceExhausted,
  /// The feature exists in the format but is not supported here.
  Unimplemented,
  /// A system or device call failed for a reason outside our control.
  Unavailable,
  /// A bug in Compressa itself.
  Internal,
};

/// The enumerator name of `code`, e.g. "DataLoss".
const char *statusCodeName(StatusCode code);

/// The result of an operation: Ok, or an error code with a message and the
/// source location that created it. Cheap to copy when Ok.
class [[nodiscard]] Status {
public:
  /// An Ok status.
  Status() = default;
  /// An error (or Ok, when `code` is Ok) with a message and optional location.
  Status(StatusCode code, std::string message, const char *file = nullptr,
         int line = 0);

  /// An error built from a printf-style format; no source location.
  static Status error(StatusCode code, const char *fmt, ...)
      COMPRESSA_PRINTF_FORMAT(2, 3);
  /// An error built from a printf-style format, created at `file`:`line`.
  /// Use it through COMPRESSA_ERROR, which fills in the location.
  static Status errorAt(const char *file, int line, StatusCode code,
                        const char *fmt, ...) COMPRESSA_PRINTF_FORMAT(4, 5);

  /// True when there is no error.
  bool ok() const { return statusCode == StatusCode::Ok; }
  StatusCode code() const { return statusCode; }
  /// The message, without code or location.
  const std::string &message() const { return text; }
  /// Source file that created the error, or nullptr when unknown.
  const char *file() const { return sourceFile; }
  /// Source line that created the error, or 0 when unknown.
  int line() const { return sourceLine; }

  /// The same error with "<context>: " put in front of the message; Ok stays
  /// Ok. The original location is kept.
  Status withContext(const char *fmt, ...) const COMPRESSA_PRINTF_FORMAT(2, 3);

  /// "OK", or "DataLoss: <message> [status.cc:12]".
  std::string toString() const;

  /// Drops an error on purpose (e.g. in a destructor); greppable.
  void ignoreError() const {}

private:
  StatusCode statusCode = StatusCode::Ok;
  std::string text;
  const char *sourceFile = nullptr;
  int sourceLine = 0;
};

/// An Ok status; reads better than `Status()` at a return.
inline Status okStatus() { return Status(); }

/// `text` made safe to quote in a message: bytes outside printable ASCII
/// become \xNN, and text longer than `maxLength` is cut with "...". Use it for
/// names and strings read from files.
std::string printable(std::string_view text, size_t maxLength = 200);

namespace internal {
/// Aborts with `status` printed: a StatusOr's value was read although it holds
/// an error. This is a programmer error, never a consequence of input.
[[noreturn]] void dieOnBadStatusOrAccess(const Status &status);
/// Backs COMPRESSA_RETURN_IF_ERROR(expr) without context.
inline Status annotate(Status status) { return status; }
/// Backs COMPRESSA_RETURN_IF_ERROR(expr, fmt, ...): formats only on error.
Status annotate(Status status, const char *fmt, ...)
    COMPRESSA_PRINTF_FORMAT(2, 3);
} // namespace internal

/// Either a value of type T or a non-Ok Status.
template <class T> class [[nodiscard]] StatusOr {
public:
  /// An error. Passing an Ok status is a bug and becomes an Internal error.
  StatusOr(Status status) : errorStatus(std::move(status)) {
    if (errorStatus.ok())
      errorStatus = Status(StatusCode::Internal,
                           "StatusOr constructed from an Ok status without a "
                           "value",
                           __FILE__, __LINE__);
  }
  /// A value.
  StatusOr(const T &value) : storage(value) {}
  /// A value.
  StatusOr(T &&value) : storage(std::move(value)) {}
  /// A value converted from a compatible type (e.g. unique_ptr<Derived>).
  template <class U, class = std::enable_if_t<
                         std::is_constructible_v<T, U &&> &&
                         !std::is_same_v<std::decay_t<U>, T> &&
                         !std::is_same_v<std::decay_t<U>, Status> &&
                         !std::is_same_v<std::decay_t<U>, StatusOr<T>>>>
  StatusOr(U &&value) : storage(T(std::forward<U>(value))) {}

  /// True when a value is held.
  bool ok() const { return storage.has_value(); }
  /// Ok when a value is held, else the error.
  const Status &status() const & { return errorStatus; }
  Status status() && { return std::move(errorStatus); }

  /// The value; calling these on an error is a programmer bug and aborts.
  T &value() & {
    check();
    return *storage;
  }
  const T &value() const & {
    check();
    return *storage;
  }
  T &&value() && {
    check();
    return std::move(*storage);
  }
  T &operator*() & { return value(); }
  const T &operator*() const & { return value(); }
  T &&operator*() && { return std::move(*this).value(); }
  T *operator->() { return &value(); }
  const T *operator->() const { return &value(); }

private:
  void check() const {
    if (!storage.has_value())
      internal::dieOnBadStatusOrAccess(errorStatus);
  }

  Status errorStatus;
  std::optional<T> storage;
};

} // namespace compressa

/// Builds an error Status that records this file:line.
/// Example: `return COMPRESSA_ERROR(NotFound, "%s: no such tensor", name);`
#define COMPRESSA_ERROR(code, ...)                                             \
  ::compressa::Status::errorAt(__FILE__, __LINE__,                             \
                               ::compressa::StatusCode::code, __VA_ARGS__)

/// Returns the Status of `expr` from the enclosing function if it is an error.
/// An optional printf-style context is put in front of the message:
/// `COMPRESSA_RETURN_IF_ERROR(readShard(i), "shard %d", i);`
#define COMPRESSA_RETURN_IF_ERROR(...)                                         \
  do {                                                                         \
    ::compressa::Status compressaStatus_ =                                     \
        ::compressa::internal::annotate(__VA_ARGS__);                          \
    if (!compressaStatus_.ok())                                                \
      return compressaStatus_;                                                 \
  } while (false)

#define COMPRESSA_STATUS_CONCAT_INNER_(a, b) a##b
#define COMPRESSA_STATUS_CONCAT_(a, b) COMPRESSA_STATUS_CONCAT_INNER_(a, b)
#define COMPRESSA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)                       \
  auto tmp = (expr);                                                           \
  if (!tmp.ok())                                                               \
    return std::move(tmp).status();                                            \
  lhs = std::move(tmp).value()

/// Evaluates `expr` (a StatusOr<T>); on error returns its Status, else assigns
/// the value to `lhs`, which may declare a variable: `auto file`. `lhs` must
/// not contain an unparenthesized comma.
#define COMPRESSA_ASSIGN_OR_RETURN(lhs, expr)                                  \
  COMPRESSA_ASSIGN_OR_RETURN_IMPL_(                                            \
      COMPRESSA_STATUS_CONCAT_(compressaStatusOr_, __LINE__), lhs, expr)

#endif // COMPRESSA_RUNTIME_BASE_STATUS_H
