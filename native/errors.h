// Failures as plain data (they cross from netns threads to the JS thread) and
// their conversion into JS errors with code, errno, op, object and log.
#pragma once

#include <napi.h>

#include <exception>
#include <functional>
#include <string>

namespace vmpeer {

struct Failure : std::exception {
  int err = 0;             // positive errno, or a libbpf LIBBPF_ERRNO__* (>= 4000)
  std::string op;          // e.g. "bpf_link_create"
  std::string object;      // e.g. "eth0-nic (ingress) in /run/netns/pod1"
  std::string detail;      // extra words after the object, may be empty
  std::string log;         // libbpf output collected during the call
  bool badArgument = false; // a TypeError for bad JS arguments

  std::string message() const;
  const char *what() const noexcept override { return "vmpeer::Failure"; }
};

[[noreturn]] void Fail(int err, std::string op, std::string object = "", std::string detail = "");
[[noreturn]] void BadArgument(std::string fn, std::string message);

// libbpf style: rc >= 0 is returned, a negative rc is -errno.
int Check(int rc, const char *op, const std::string &object, const std::string &detail = "");
// libc style: rc == -1 means errno is set.
int CheckErrno(int rc, const char *op, const std::string &object, const std::string &detail = "");

std::string ErrnoName(int err);   // "EEXIST", "LIBBPF_ERRNO__FORMAT"
std::string ErrnoText(int err);   // "File exists"

Napi::Error ToJsError(Napi::Env env, const Failure &f);

// Runs an entry point's body; a Failure or a C++ exception becomes a JS error.
// libbpf's messages printed meanwhile on this thread end up in the error's log.
Napi::Value Guarded(Napi::Env env, const std::function<Napi::Value()> &body);

using Entry = Napi::Value (*)(const Napi::CallbackInfo &);
template <Entry F> Napi::Value Guard(const Napi::CallbackInfo &info) {
  return Guarded(info.Env(), [&] { return F(info); });
}

} // namespace vmpeer
