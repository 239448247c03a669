// Pins and plain fds: objPin, objGet, closeFd, progIdOf.
#include "args.h"
#include "errors.h"
#include "exports.h"
#include "info.h"

#include <bpf/bpf.h>

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

} // namespace

void InitFds(Napi::Env env, Napi::Object exports) {
  exports.Set("objPin", Napi::Function::New<Guard<ObjPin>>(env, "objPin"));
  exports.Set("objGet", Napi::Function::New<Guard<ObjGet>>(env, "objGet"));
  exports.Set("closeFd", Napi::Function::New<Guard<CloseFd>>(env, "closeFd"));
  exports.Set("progIdOf", Napi::Function::New<Guard<ProgIdOf>>(env, "progIdOf"));
}

} // namespace vmpeer
