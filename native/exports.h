// Each file's part of the module's exports; addon.cc calls them all.
#pragma once

#include <napi.h>

namespace vmpeer {

void InitObject(Napi::Env env, Napi::Object exports); // openObject
void InitMaps(Napi::Env env, Napi::Object exports);   // possibleCpus, map*
void InitBtf(Napi::Env env, Napi::Object exports);    // mapValueStruct, mapCreate, progConstants
void InitFds(Napi::Env env, Napi::Object exports);    // objPin, objGet, closeFd, progIdOf, lockDir, mapInfo, progFdById
void InitTestRun(Napi::Env env, Napi::Object exports); // testRun
void InitHooks(Napi::Env env, Napi::Object exports);  // attach, detach (+Async), listHook, ifindex, kernelFeatures
void InitNetlinkDump(Napi::Env env, Napi::Object exports);  // netlinkDump
void InitNetlinkWatch(Napi::Env env, Napi::Object exports); // watchNetlink, unwatchNetlink
void InitNetnsCookie(Napi::Env env, Napi::Object exports);  // netnsCookie

} // namespace vmpeer
