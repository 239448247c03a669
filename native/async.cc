#include "async.h"

#include "netns.h"

#include <memory>

namespace vmpeer {

namespace {

struct Pending {
  Napi::Promise::Deferred deferred;
  ToJsValue toJs;
  std::exception_ptr error;
};

Napi::Value ErrorValue(Napi::Env env, std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const Failure &f) {
    return ToJsError(env, f).Value();
  } catch (const Napi::Error &e) {
    return e.Value();
  } catch (const std::exception &e) {
    return Napi::Error::New(env, e.what()).Value();
  }
}

// On the JS thread, once the work is done. `env` is null when the
// environment is being torn down: then there is nobody to tell.
void Settle(Napi::Env env, Napi::Function, std::nullptr_t *, Pending *p) {
  std::unique_ptr<Pending> pending(p);
  if (env == nullptr)
    return;
  Napi::HandleScope scope(env);
  if (!pending->error) {
    try {
      pending->deferred.Resolve(pending->toJs(env));
      return;
    } catch (...) {
      pending->error = std::current_exception();
    }
  }
  pending->deferred.Reject(ErrorValue(env, pending->error));
}

using SettleFn = Napi::TypedThreadSafeFunction<std::nullptr_t, Pending, Settle>;

// `start` starts the thread with the work and what reports back.
Napi::Promise Settled(Napi::Env env, const std::function<void(std::function<void()>, std::function<void(std::exception_ptr)>)> &start,
                      std::function<ToJsValue()> work) {
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  // Keeps the event loop alive until the work has reported back.
  SettleFn settle = SettleFn::New(env, "vmpeer.netns", 0, 1);
  auto *pending = new Pending{deferred, nullptr, nullptr};
  try {
    start(
        [pending, work = std::move(work)] { pending->toJs = work(); },
        [pending, settle](std::exception_ptr error) {
          pending->error = error;
          if (settle.BlockingCall(pending) != napi_ok)
            delete pending; // the environment is gone
          settle.Release();
        });
  } catch (...) {
    // no thread could be started
    delete pending;
    settle.Release();
    throw;
  }
  return deferred.Promise();
}

} // namespace

Napi::Promise InNetnsAsync(Napi::Env env, const std::optional<std::string> &path, std::function<ToJsValue()> work) {
  return Settled(
      env, [&](std::function<void()> body, std::function<void(std::exception_ptr)> done) { StartInNetns(path, std::move(body), std::move(done)); },
      std::move(work));
}

Napi::Promise InNetnsAsync(Napi::Env env, UniqueFd netns, const std::string &label, std::function<ToJsValue()> work) {
  return Settled(
      env,
      [&](std::function<void()> body, std::function<void(std::exception_ptr)> done) {
        StartInNetns(std::move(netns), label, std::move(body), std::move(done));
      },
      std::move(work));
}

Napi::Value GuardedAsync(Napi::Env env, const std::function<Napi::Value()> &body) {
  try {
    return Guarded(env, body);
  } catch (const Napi::Error &e) {
    Napi::Promise::Deferred rejected = Napi::Promise::Deferred::New(env);
    rejected.Reject(e.Value());
    return rejected.Promise();
  }
}

} // namespace vmpeer
