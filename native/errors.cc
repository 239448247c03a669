#include "errors.h"

#include "log.h"

#include <bpf/libbpf.h>

#include <cstring>

namespace vmpeer {

namespace {

// libbpf's own error numbers, from enum libbpf_errno.
const char *LibbpfErrnoName(int err) {
  switch (err) {
  case LIBBPF_ERRNO__LIBELF: return "LIBBPF_ERRNO__LIBELF";
  case LIBBPF_ERRNO__FORMAT: return "LIBBPF_ERRNO__FORMAT";
  case LIBBPF_ERRNO__KVERSION: return "LIBBPF_ERRNO__KVERSION";
  case LIBBPF_ERRNO__ENDIAN: return "LIBBPF_ERRNO__ENDIAN";
  case LIBBPF_ERRNO__INTERNAL: return "LIBBPF_ERRNO__INTERNAL";
  case LIBBPF_ERRNO__RELOC: return "LIBBPF_ERRNO__RELOC";
  case LIBBPF_ERRNO__LOAD: return "LIBBPF_ERRNO__LOAD";
  case LIBBPF_ERRNO__VERIFY: return "LIBBPF_ERRNO__VERIFY";
  case LIBBPF_ERRNO__PROG2BIG: return "LIBBPF_ERRNO__PROG2BIG";
  case LIBBPF_ERRNO__KVER: return "LIBBPF_ERRNO__KVER";
  case LIBBPF_ERRNO__PROGTYPE: return "LIBBPF_ERRNO__PROGTYPE";
  case LIBBPF_ERRNO__WRNGPID: return "LIBBPF_ERRNO__WRNGPID";
  case LIBBPF_ERRNO__INVSEQ: return "LIBBPF_ERRNO__INVSEQ";
  case LIBBPF_ERRNO__NLPARSE: return "LIBBPF_ERRNO__NLPARSE";
  default: return nullptr;
  }
}

} // namespace

std::string ErrnoName(int err) {
  if (const char *name = LibbpfErrnoName(err))
    return name;
  // Kernel-internal values (ENOTSUPP 524 and friends) have no libc name.
  if (const char *name = strerrorname_np(err))
    return name;
  return "E" + std::to_string(err);
}

std::string ErrnoText(int err) {
  char buf[128];
  if (libbpf_strerror(err, buf, sizeof buf) == 0)
    return buf;
  return strerror(err);
}

std::string Failure::message() const {
  if (badArgument)
    return op + ": " + detail;
  std::string m = op + ": " + ErrnoName(err) + " (" + ErrnoText(err) + ")";
  if (!object.empty())
    m += " for " + object;
  if (!detail.empty())
    m += ": " + detail;
  return m;
}

void Fail(int err, std::string op, std::string object, std::string detail) {
  Failure f;
  f.err = err > 0 ? err : EIO;
  f.op = std::move(op);
  f.object = std::move(object);
  f.detail = std::move(detail);
  throw f;
}

void BadArgument(std::string fn, std::string message) {
  Failure f;
  f.err = EINVAL;
  f.op = std::move(fn);
  f.detail = std::move(message);
  f.badArgument = true;
  throw f;
}

int Check(int rc, const char *op, const std::string &object, const std::string &detail) {
  if (rc < 0)
    Fail(-rc, op, object, detail);
  return rc;
}

int CheckErrno(int rc, const char *op, const std::string &object, const std::string &detail) {
  if (rc == -1)
    Fail(errno, op, object, detail);
  return rc;
}

Napi::Error ToJsError(Napi::Env env, const Failure &f) {
  Napi::Error e = f.badArgument ? Napi::TypeError::New(env, f.message())
                                : Napi::Error::New(env, f.message());
  Napi::Object o = e.Value();
  o.Set("code", ErrnoName(f.err));
  o.Set("errno", f.err);
  o.Set("op", f.op);
  o.Set("object", f.object);
  if (!f.log.empty())
    o.Set("log", f.log);
  return e;
}

Napi::Value Guarded(Napi::Env env, const std::function<Napi::Value()> &body) {
  LibbpfLog log;
  try {
    return body();
  } catch (Failure &f) {
    if (f.log.empty())
      f.log = log.take();
    throw ToJsError(env, f);
  } catch (const Napi::Error &) {
    throw;
  } catch (const std::exception &e) {
    throw Napi::Error::New(env, e.what());
  }
}

} // namespace vmpeer
