// Pins and plain fds: objPin, objGet, closeFd, progIdOf, lockDir.
#include "args.h"
#include "errors.h"
#include "exports.h"
#include "info.h"

#include <bpf/bpf.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace vmpeer {

namespace {

Napi::Value ObjPin(const Napi::CallbackInfo &info) {
  Args args(info, "objPin");
  int fd = args.fd(0, "fd");
  std::string path = args.string(1, "path");
  Check(bpf_obj_pin(fd, path.c_str()), "bpf_obj_pin", path);
  return info.Env().Undefined();
}

Napi::Value ObjGet(const Napi::CallbackInfo &info) {
  std::string path = Args(info, "objGet").string(0, "path");
  return Napi::Number::New(info.Env(), Check(bpf_obj_get(path.c_str()), "bpf_obj_get", path));
}

Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  int fd = Args(info, "closeFd").fd(0, "fd");
  // Linux releases the fd even when close() fails, so never retry.
  CheckErrno(::close(fd), "close", "fd " + std::to_string(fd));
  return info.Env().Undefined();
}

Napi::Value ProgIdOf(const Napi::CallbackInfo &info) {
  int fd = Args(info, "progIdOf").fd(0, "fd");
  return Napi::Number::New(info.Env(), GetProgInfo(fd, "fd " + std::to_string(fd)).id);
}

// flock() works on directories, also on bpffs, where the CLI and the daemon
// (in its container) both see vmpeer's state directory.
Napi::Value LockDir(const Napi::CallbackInfo &info) {
  std::string path = Args(info, "lockDir").string(0, "path");
  int fd = CheckErrno(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), "open", path);
  int rc;
  do
    rc = ::flock(fd, LOCK_EX);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    ::close(fd);
    Fail(err, "flock", path);
  }
  return Napi::Number::New(info.Env(), fd);
}

} // namespace

void InitFds(Napi::Env env, Napi::Object exports) {
  exports.Set("objPin", Napi::Function::New<Guard<ObjPin>>(env, "objPin"));
  exports.Set("objGet", Napi::Function::New<Guard<ObjGet>>(env, "objGet"));
  exports.Set("closeFd", Napi::Function::New<Guard<CloseFd>>(env, "closeFd"));
  exports.Set("progIdOf", Napi::Function::New<Guard<ProgIdOf>>(env, "progIdOf"));
  exports.Set("lockDir", Napi::Function::New<Guard<LockDir>>(env, "lockDir"));
}

} // namespace vmpeer
