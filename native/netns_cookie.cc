// netnsCookie(fd): the cookie of a network namespace, what tells it apart
// from every other namespace since boot. Its nsfs inode does not: the next
// namespace gets a freed inode again (a pod deleted, the next one created).
// The cookie is read with getsockopt(SO_NETNS_COOKIE) on a socket made inside
// that namespace, on a thread of its own that enters it (async.h).
#include "args.h"
#include "async.h"
#include "errors.h"
#include "exports.h"
#include "fd.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>

// asm-generic/socket.h; the libc headers of older distributions lack it.
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace vmpeer {

namespace {

// On the netns thread: the cookie of the namespace it is in. SO_NETNS_COOKIE
// came with Linux 5.14 ("net: retrieve netns cookie via getsocketopt",
// net/core/sock.c sk_getsockopt); before it (5.10 is in the kernel matrix) the option is
// unknown, getsockopt() fails with ENOPROTOOPT and there is no cookie: the
// caller then identifies the namespace by its inode alone, as vmpeer did
// before records carried a cookie.
std::optional<uint64_t> CookieHere(const std::string &label) {
  UniqueFd sock(CheckErrno(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket", label));
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (getsockopt(sock.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) < 0) {
    if (errno == ENOPROTOOPT)
      return std::nullopt;
    Fail(errno, "getsockopt(SO_NETNS_COOKIE)", label);
  }
  return cookie;
}

// netnsCookie(netnsFd: number | undefined): Promise<bigint | null>
// The fd is duplicated here (a bad one: EBADF), so the caller may close its own at once.
Napi::Value NetnsCookie(const Napi::CallbackInfo &info) {
  Args args(info, "netnsCookie");
  Napi::Env env = info.Env();
  auto toJs = [](const std::optional<uint64_t> &cookie) -> ToJsValue {
    return [cookie](Napi::Env e) -> Napi::Value { return cookie ? Napi::BigInt::New(e, *cookie) : e.Null(); };
  };
  if (args.at(0).IsUndefined()) {
    return InNetnsAsync(env, std::nullopt, [toJs] { return toJs(CookieHere("this netns")); });
  }
  int fd = args.fd(0, "netnsFd");
  const std::string label = "netns fd " + std::to_string(fd);
  UniqueFd own(CheckErrno(fcntl(fd, F_DUPFD_CLOEXEC, 0), "dup", label));
  return InNetnsAsync(env, std::move(own), label, [toJs, label] { return toJs(CookieHere(label)); });
}

} // namespace

void InitNetnsCookie(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsCookie", Napi::Function::New<GuardAsync<NetnsCookie>>(env, "netnsCookie"));
}

} // namespace vmpeer
