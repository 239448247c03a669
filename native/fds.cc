// Pins and plain fds: objPin, objGet, closeFd, progIdOf, lockDir, mapInfo, progFdById.
#include "args.h"
#include "errors.h"
#include "exports.h"
#include "info.h"

#include <bpf/bpf.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
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
// (in its container) both see vmpeer's state directory. A lock taken on a
// directory that another process removed meanwhile (rmdir while we waited)
// guards nothing: the path must still name the inode we hold, else we retry.
// Returns -1 when `wait` is false and another process holds the lock.
Napi::Value LockDir(const Napi::CallbackInfo &info) {
  Args args(info, "lockDir");
  std::string path = args.string(0, "path");
  auto options = args.optObject(1, "options");
  bool shared = options ? Fields(*options, "lockDir").optBool("shared", false) : false;
  bool wait = options ? Fields(*options, "lockDir").optBool("wait", true) : true;
  for (;;) {
    int fd = CheckErrno(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), "open", path);
    int rc;
    do
      rc = ::flock(fd, (shared ? LOCK_SH : LOCK_EX) | (wait ? 0 : LOCK_NB));
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
      int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) return Napi::Number::New(info.Env(), -1);
      Fail(err, "flock", path);
    }
    struct stat held, now;
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino && held.st_dev == now.st_dev) {
      return Napi::Number::New(info.Env(), fd);
    }
    ::close(fd); // removed (or replaced) while we waited: lock what is there now
  }
}

// A pinned map's identity and shape (for opening pinned state without loading an object).
Napi::Value MapInfoOf(const Napi::CallbackInfo &info) {
  int fd = Args(info, "mapInfo").fd(0, "fd");
  MapInfo m = GetMapInfo(fd, "fd " + std::to_string(fd));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("id", m.id);
  o.Set("type", m.type);
  o.Set("keySize", m.keySize);
  o.Set("valueSize", m.valueSize);
  o.Set("maxEntries", m.maxEntries);
  return o;
}

// A new fd for a loaded program, by its id (adopting a filter whose record was lost).
Napi::Value ProgFdById(const Napi::CallbackInfo &info) {
  uint32_t id = Args(info, "progFdById").uint32(0, "id");
  return Napi::Number::New(info.Env(), Check(bpf_prog_get_fd_by_id(id), "bpf_prog_get_fd_by_id", "program " + std::to_string(id)));
}

} // namespace

void InitFds(Napi::Env env, Napi::Object exports) {
  exports.Set("objPin", Napi::Function::New<Guard<ObjPin>>(env, "objPin"));
  exports.Set("objGet", Napi::Function::New<Guard<ObjGet>>(env, "objGet"));
  exports.Set("closeFd", Napi::Function::New<Guard<CloseFd>>(env, "closeFd"));
  exports.Set("progIdOf", Napi::Function::New<Guard<ProgIdOf>>(env, "progIdOf"));
  exports.Set("lockDir", Napi::Function::New<Guard<LockDir>>(env, "lockDir"));
  exports.Set("mapInfo", Napi::Function::New<Guard<MapInfoOf>>(env, "mapInfo"));
  exports.Set("progFdById", Napi::Function::New<Guard<ProgFdById>>(env, "progFdById"));
}

} // namespace vmpeer
