// Promise-returning entry points whose work runs on a netns thread (netns.h):
// the JS thread only reads the request and, later, turns the result into JS
// values. No libuv pool thread is used, so many calls can wait in the kernel
// at once (a tcx attach waits for an RCU grace period; concurrent ones share it).
#pragma once

#include "errors.h"
#include "fd.h"

#include <napi.h>

#include <functional>
#include <optional>
#include <string>

namespace vmpeer {

// Turns a result into a JS value; runs on the JS thread.
using ToJsValue = std::function<Napi::Value(Napi::Env)>;

// Runs `work` on a new thread inside the netns at `path` (the caller's netns
// when absent). The promise resolves with what the returned ToJsValue makes,
// or rejects with the error the synchronous call would throw.
Napi::Promise InNetnsAsync(Napi::Env env, const std::optional<std::string> &path, std::function<ToJsValue()> work);

// The same for a netns given by an fd the new thread owns; `label` names it in errors.
Napi::Promise InNetnsAsync(Napi::Env env, UniqueFd netns, const std::string &label, std::function<ToJsValue()> work);

// The same, with the work's result and its conversion given apart.
template <typename Work, typename Convert>
Napi::Promise InNetnsAsync(Napi::Env env, const std::optional<std::string> &path, Work work, Convert toJs) {
  return InNetnsAsync(env, path, std::function<ToJsValue()>([work, toJs]() -> ToJsValue {
    auto result = work();
    return [result, toJs](Napi::Env e) -> Napi::Value { return toJs(e, result); };
  }));
}

// An entry point that returns a promise: what it throws (bad arguments) becomes a rejection.
Napi::Value GuardedAsync(Napi::Env env, const std::function<Napi::Value()> &body);

template <Entry F> Napi::Value GuardAsync(const Napi::CallbackInfo &info) {
  return GuardedAsync(info.Env(), [&] { return F(info); });
}

} // namespace vmpeer
