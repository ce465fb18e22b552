// SPDX-License-Identifier: Apache-2.0
#include "runtime/comm/tcp.h"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace compressa {

TcpSocket::~TcpSocket() {
  if (fd >= 0)
    ::close(fd);
}

TcpSocket &TcpSocket::operator=(TcpSocket &&other) noexcept {
  if (this != &other) {
    if (fd >= 0)
      ::close(fd);
    fd = other.fd;
    other.fd = -1;
  }
  return *this;
}

Status TcpSocket::send(const void *data, size_t bytes, const char *what) {
  const char *p = static_cast<const char *>(data);
  while (bytes > 0) {
    ssize_t n = ::send(fd, p, bytes, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return COMPRESSA_ERROR(Unavailable, "sending to %s failed: %s", what,
                             n < 0 ? std::strerror(errno) : "closed");
    p += n;
    bytes -= size_t(n);
  }
  return okStatus();
}

Status TcpSocket::recv(void *data, size_t bytes, const char *what) {
  char *p = static_cast<char *>(data);
  while (bytes > 0) {
    ssize_t n = ::recv(fd, p, bytes, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0)
      return COMPRESSA_ERROR(Unavailable, "%s closed the connection", what);
    if (n < 0)
      return COMPRESSA_ERROR(Unavailable, "receiving from %s failed: %s",
                             what, std::strerror(errno));
    p += n;
    bytes -= size_t(n);
  }
  return okStatus();
}

StatusOr<uint64_t> TcpSocket::recvU64(const char *what) {
  uint64_t v = 0;
  COMPRESSA_RETURN_IF_ERROR(recv(&v, 8, what));
  return v;
}

void TcpSocket::shutdown() {
  if (fd >= 0)
    ::shutdown(fd, SHUT_RDWR);
}

namespace {
StatusOr<sockaddr_in> resolve(const std::string &host, int port) {
  if (port < 1 || port > 65535)
    return COMPRESSA_ERROR(InvalidArgument, "port %d is outside 1..65535",
                           port);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  if (host.empty() || host == "0.0.0.0") {
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    return addr;
  }
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || !found)
    return COMPRESSA_ERROR(InvalidArgument, "cannot resolve host '%s': %s",
                           host.c_str(), ::gai_strerror(rc));
  addr.sin_addr = reinterpret_cast<sockaddr_in *>(found->ai_addr)->sin_addr;
  ::freeaddrinfo(found);
  return addr;
}

void noDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
} // namespace

StatusOr<TcpSocket> tcpListen(const std::string &host, int port) {
  COMPRESSA_ASSIGN_OR_RETURN(sockaddr_in addr, resolve(host, port));
  TcpSocket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid())
    return COMPRESSA_ERROR(Unavailable, "socket: %s", std::strerror(errno));
  int one = 1;
  ::setsockopt(s.descriptor(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(s.descriptor(), reinterpret_cast<sockaddr *>(&addr),
             sizeof(addr)) != 0 ||
      ::listen(s.descriptor(), 256) != 0)
    return COMPRESSA_ERROR(Unavailable, "cannot listen on %s:%d: %s",
                           host.c_str(), port, std::strerror(errno));
  return s;
}

StatusOr<TcpSocket> tcpAccept(TcpSocket &listener, int timeoutMs,
                              const char *what) {
  pollfd p{listener.descriptor(), POLLIN, 0};
  int rc;
  do
    rc = ::poll(&p, 1, timeoutMs);
  while (rc < 0 && errno == EINTR);
  if (rc == 0)
    return COMPRESSA_ERROR(Unavailable, "no %s connected within %d s", what,
                           timeoutMs / 1000);
  if (rc < 0)
    return COMPRESSA_ERROR(Unavailable, "waiting for %s: %s", what,
                           std::strerror(errno));
  int fd = ::accept4(listener.descriptor(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0)
    return COMPRESSA_ERROR(Unavailable, "accepting %s: %s", what,
                           std::strerror(errno));
  noDelay(fd);
  return TcpSocket(fd);
}

StatusOr<TcpSocket> tcpConnect(const std::string &host, int port,
                               int timeoutMs) {
  COMPRESSA_ASSIGN_OR_RETURN(sockaddr_in addr, resolve(host, port));
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  for (;;) {
    TcpSocket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s.valid())
      return COMPRESSA_ERROR(Unavailable, "socket: %s", std::strerror(errno));
    if (::connect(s.descriptor(), reinterpret_cast<sockaddr *>(&addr),
                  sizeof(addr)) == 0) {
      noDelay(s.descriptor());
      return s;
    }
    int error = errno;
    if (std::chrono::steady_clock::now() >= deadline)
      return COMPRESSA_ERROR(Unavailable,
                             "cannot connect to %s:%d within %d s: %s",
                             host.c_str(), port, timeoutMs / 1000,
                             std::strerror(error));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

} // namespace compressa
