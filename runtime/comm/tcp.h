// SPDX-License-Identifier: Apache-2.0
// TCP sockets for ranks in several processes (docs/parallel.md, "Several
// processes"): blocking, whole-buffer sends and receives, connect with
// retries (the other side may not listen yet).
#ifndef COMPRESSA_RUNTIME_COMM_TCP_H
#define COMPRESSA_RUNTIME_COMM_TCP_H

#include "runtime/base/status.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace compressa {

class TcpSocket {
public:
  TcpSocket() = default;
  explicit TcpSocket(int fd) : fd(fd) {}
  ~TcpSocket();
  TcpSocket(TcpSocket &&other) noexcept : fd(other.fd) { other.fd = -1; }
  TcpSocket &operator=(TcpSocket &&other) noexcept;
  TcpSocket(const TcpSocket &) = delete;
  TcpSocket &operator=(const TcpSocket &) = delete;

  bool valid() const { return fd >= 0; }
  int descriptor() const { return fd; }
  /// Sends or receives exactly `bytes`; `what` names the peer in errors.
  Status send(const void *data, size_t bytes, const char *what);
  Status recv(void *data, size_t bytes, const char *what);
  Status sendU64(uint64_t v, const char *what) { return send(&v, 8, what); }
  StatusOr<uint64_t> recvU64(const char *what);
  /// Wakes a thread blocked on this socket (its calls then fail); the
  /// descriptor stays until destruction.
  void shutdown();

private:
  int fd = -1;
};

/// Listens on `host`:`port` (host "" or "0.0.0.0": every interface).
StatusOr<TcpSocket> tcpListen(const std::string &host, int port);
/// Accepts one connection, waiting at most `timeoutMs`.
StatusOr<TcpSocket> tcpAccept(TcpSocket &listener, int timeoutMs,
                              const char *what);
/// Connects to `host`:`port`, retrying for up to `timeoutMs`.
StatusOr<TcpSocket> tcpConnect(const std::string &host, int port,
                               int timeoutMs);

} // namespace compressa

#endif // COMPRESSA_RUNTIME_COMM_TCP_H
