// watchNetlink / unwatchNetlink: the JS side of netlink_watcher.h. Each
// subscription delivers its events through its own thread-safe function,
// which does not keep the event loop alive. watchNetlink() returns a promise
// at once: the netns is entered, the socket made and the link dump done on a
// netns thread (async.h), which settles it with the subscription's id.
#include "args.h"
#include "errors.h"
#include "exports.h"
#include "async.h"
#include "netlink_watcher.h"

namespace vmpeer {

namespace {

Napi::Object ToJs(Napi::Env env, const WatchEvent &e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("kind", e.kind == WatchEvent::kLink ? "link" : e.kind == WatchEvent::kNeigh ? "neigh" : e.kind == WatchEvent::kRoute ? "route" : e.kind == WatchEvent::kTc ? "tc" : "fdb");
  o.Set("deleted", e.deleted);
  if (e.kind == WatchEvent::kTc) {
    o.Set("what", e.what);
    o.Set("ifindex", e.ifindex);
    o.Set("dev", e.ifname);
    return o;
  }
  if (e.kind == WatchEvent::kRoute) {
    o.Set("dst", e.ip);
    o.Set("dstLen", e.dstLen);
    o.Set("ifindex", e.ifindex);
    o.Set("dev", e.ifname);
    return o;
  }
  if (e.kind == WatchEvent::kLink) {
    o.Set("ifindex", e.ifindex);
    o.Set("ifname", e.ifname);
    return o;
  }
  if (e.kind == WatchEvent::kNeigh)
    o.Set("ip", e.ip);
  o.Set("dev", e.ifname);
  o.Set("mac", e.mac.empty() ? env.Undefined() : Napi::String::New(env, e.mac));
  return o;
}

void CallJs(Napi::Env env, Napi::Function callback, std::nullptr_t *, WatchBatch *batch) {
  std::unique_ptr<WatchBatch> owned(batch);
  if (env == nullptr || callback.IsEmpty())
    return; // the environment is going away
  Napi::Object o = Napi::Object::New(env);
  Napi::Array events = Napi::Array::New(env, batch->events.size());
  for (size_t i = 0; i < batch->events.size(); i++)
    events.Set(static_cast<uint32_t>(i), ToJs(env, batch->events[i]));
  o.Set("events", events);
  o.Set("lost", batch->lost);
  if (!batch->ended.empty())
    o.Set("ended", batch->ended);
  try {
    callback.Call({o});
  } catch (const Napi::Error &e) {
    e.ThrowAsJavaScriptException(); // reported as an uncaught exception
  }
}

using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, WatchBatch, CallJs>;

// watchNetlink(netns: string | undefined, onBatch: (batch) => void): Promise<number>
Napi::Value WatchNetlink(const Napi::CallbackInfo &info) {
  Args args(info, "watchNetlink");
  std::optional<std::string> netns = args.optString(0, "netns");
  if (!args.at(1).IsFunction())
    args.bad("onBatch must be a function");
  Napi::Env env = info.Env();
  NetlinkWatcher::Instance().Start();
  Tsfn tsfn = Tsfn::New(env, args.at(1).As<Napi::Function>(), "vmpeer.watchNetlink", 0, 1);
  tsfn.Unref(env);
  WatchSink sink;
  sink.deliver = [tsfn](WatchBatch *batch) mutable {
    if (tsfn.NonBlockingCall(batch) != napi_ok)
      delete batch;
  };
  sink.release = [tsfn]() mutable { tsfn.Release(); };
  sink.owner = static_cast<napi_env>(env);
  const std::string label = netns ? *netns : "this netns";
  bool node = !netns;
  try {
    return InNetnsAsync(
        env, netns,
        [label, node, sink, tsfn] {
          try {
            return NetlinkWatcher::Instance().Add(label, node, sink);
          } catch (...) {
            Tsfn unused = tsfn;
            unused.Release(); // no subscription: its callback goes
            throw;
          }
        },
        [](Napi::Env e, uint32_t id) -> Napi::Value {
          try {
            NetlinkWatcher::Instance().Arm(id);
          } catch (...) {
            NetlinkWatcher::Instance().Remove(id);
            throw;
          }
          return Napi::Number::New(e, id);
        });
  } catch (...) {
    tsfn.Release(); // no thread could be started
    throw;
  }
}

// unwatchNetlink(id: number): boolean (false: no such subscription, or it had ended)
Napi::Value UnwatchNetlink(const Napi::CallbackInfo &info) {
  uint32_t id = Args(info, "unwatchNetlink").uint32(0, "id");
  return Napi::Boolean::New(info.Env(), NetlinkWatcher::Instance().Remove(id));
}

} // namespace

void InitNetlinkWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("watchNetlink", Napi::Function::New<GuardAsync<WatchNetlink>>(env, "watchNetlink"));
  exports.Set("unwatchNetlink", Napi::Function::New<Guard<UnwatchNetlink>>(env, "unwatchNetlink"));
  napi_add_env_cleanup_hook(
      env, [](void *owner) { NetlinkWatcher::Instance().RemoveOwnedBy(owner); }, static_cast<napi_env>(env));
}

} // namespace vmpeer
