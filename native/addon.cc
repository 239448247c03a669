// The vmpeer addon: the surface typed by lib/native.ts.
#include "exports.h"
#include "log.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  vmpeer::InstallLibbpfPrint();
  vmpeer::InitObject(env, exports);
  vmpeer::InitMaps(env, exports);
  vmpeer::InitBtf(env, exports);
  vmpeer::InitFds(env, exports);
  vmpeer::InitTestRun(env, exports);
  vmpeer::InitHooks(env, exports);
  vmpeer::InitNetlinkDump(env, exports);
  vmpeer::InitNetlinkWatch(env, exports);
  vmpeer::InitNetnsCookie(env, exports);
  return exports;
}

} // namespace

NODE_API_MODULE(vmpeer, Init)
