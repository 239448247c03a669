// attach, detach (and their async forms), replace, clsactQdisc, listHook, ifindex, kernelFeatures: the JS side of tcx.cc
// and tc.cc. Requests are read on the JS thread, the work runs in the
// target's netns (netns.h), the results become JS values back here.
#include "args.h"
#include "async.h"
#include "errors.h"
#include "exports.h"
#include "fd.h"
#include "hook.h"
#include "info.h"
#include "netlink.h"
#include "netns.h"
#include "tc.h"
#include "tcx.h"

#include <bpf/libbpf.h>

#include <fcntl.h>
#include <net/if.h>

#include <memory>
#include <vector>

namespace vmpeer {

namespace {

enum Mode { kTcx, kClsact };

Target ReadTarget(const Fields &f) {
  Target t;
  t.netns = f.optString("netns");
  t.ifname = f.string("ifname");
  t.ingress = f.choice("hook", {"ingress", "egress"}) == 0;
  return t;
}

std::optional<uint32_t> Priority(const Fields &f) {
  std::optional<uint32_t> priority = f.optUint32("priority");
  if (priority && *priority > 0xffff)
    f.bad("priority must be at most 65535");
  return priority;
}

// Runs in the target's netns. 0 when there is no such interface.
uint32_t IfindexHere(const std::string &ifname, const std::string &label) {
  unsigned int ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0 && errno != ENODEV && errno != ENXIO)
    Fail(errno, "if_nametoindex", label);
  return ifindex;
}

uint32_t RequireIfindex(const Target &t) {
  uint32_t ifindex = IfindexHere(t.ifname, t.label());
  if (ifindex == 0)
    Fail(ENODEV, "if_nametoindex", t.label());
  return ifindex;
}

Napi::Value ToJs(Napi::Env env, const Attachment &a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("mode", a.tcx ? "tcx" : "clsact");
  o.Set("ifindex", a.ifindex);
  o.Set("progId", a.progId);
  if (a.tcx) {
    o.Set("linkId", a.linkId);
    if (a.linkFd >= 0)
      o.Set("linkFd", a.linkFd);
  } else {
    o.Set("handle", a.handle);
    o.Set("priority", a.priority);
  }
  return o;
}

// What attach() and attachAsync() are asked to do, read on the JS thread.
struct AttachPlan {
  Target target;
  int progFd = -1;
  // Async: a duplicate of the program fd, so that it stays valid while the
  // work runs even if JS closes the object meanwhile. progFd then names it.
  std::shared_ptr<UniqueFd> heldProg;
  Mode mode = kTcx;
  std::optional<std::string> pinPath;
  bool first = false;
  uint32_t handle = 0;
  uint32_t priority = 0;
};

AttachPlan ReadAttach(const Napi::CallbackInfo &info, const char *fn) {
  Args args(info, fn);
  Fields f(args.object(0, "request"), fn);
  AttachPlan p;
  p.target = ReadTarget(f);
  p.progFd = f.fd("progFd");
  p.mode = static_cast<Mode>(f.choice("mode", {"tcx", "clsact"}));
  p.pinPath = f.optString("pinPath");
  p.first = f.optBool("first", false);
  p.handle = f.optUint32("handle").value_or(0);
  p.priority = Priority(f).value_or(0);
  // `first` means nothing to clsact, where the priority orders the filters.
  if (p.mode == kClsact && p.pinPath)
    f.bad("pinPath is for mode 'tcx'");
  if (p.mode == kTcx && (f.optUint32("handle") || f.optUint32("priority")))
    f.bad("handle and priority are for mode 'clsact'");
  return p;
}

// Runs in the target's netns.
Attachment AttachHere(const AttachPlan &p) {
  uint32_t ifindex = RequireIfindex(p.target);
  if (p.mode == kTcx)
    return TcxAttach(ifindex, p.target.ingress, p.progFd, p.pinPath, p.first, p.target.label());
  return ClsactAttach(ifindex, p.target.ingress, p.progFd, p.handle, p.priority, p.target.label());
}

// attach(request: AttachRequest): Attachment
Napi::Value Attach(const Napi::CallbackInfo &info) {
  AttachPlan p = ReadAttach(info, "attach");
  return ToJs(info.Env(), InNetns(p.target.netns, [&] { return AttachHere(p); }));
}

// attachAsync(request: AttachRequest): Promise<Attachment>
Napi::Value AttachAsync(const Napi::CallbackInfo &info) {
  AttachPlan p = ReadAttach(info, "attachAsync");
  int held = fcntl(p.progFd, F_DUPFD_CLOEXEC, 0);
  if (held >= 0) { // else the attach reports the bad fd as attach() would
    p.heldProg = std::make_shared<UniqueFd>(held);
    p.progFd = held;
  }
  return InNetnsAsync(info.Env(), p.target.netns, [p] { return AttachHere(p); }, ToJs);
}

// What detach() and detachAsync() are asked to do, read on the JS thread.
struct DetachPlan {
  Target target;
  Mode mode = kTcx;
  std::optional<uint32_t> progId;
  std::string pinPath;   // tcx
  uint32_t handle = 0;   // clsact
  uint32_t priority = 0; // clsact

  // The pin names a tcx link: no netns to enter, so a tcx detach works after
  // the interface or its netns is gone.
  std::optional<std::string> netns() const { return mode == kTcx ? std::nullopt : target.netns; }
};

DetachPlan ReadDetach(const Napi::CallbackInfo &info, const char *fn) {
  Args args(info, fn);
  Fields f(args.object(0, "request"), fn);
  DetachPlan p;
  p.target = ReadTarget(f);
  p.mode = static_cast<Mode>(f.choice("mode", {"tcx", "clsact"}));
  p.progId = f.optUint32("progId");
  if (p.mode == kTcx) {
    std::optional<std::string> pinPath = f.optString("pinPath");
    if (!pinPath)
      f.bad("mode 'tcx' needs pinPath");
    p.pinPath = *pinPath;
  } else {
    std::optional<uint32_t> handle = f.optUint32("handle");
    std::optional<uint32_t> priority = Priority(f);
    if (!handle || !priority || !*handle || !*priority)
      f.bad("mode 'clsact' needs a non-zero handle and priority");
    p.handle = *handle;
    p.priority = *priority;
  }
  return p;
}

// Runs in the netns that DetachPlan::netns() names.
bool DetachHere(const DetachPlan &p) {
  const Target &t = p.target;
  if (p.mode == kTcx)
    return TcxDetach(p.pinPath, t.ingress, p.progId, t.label());
  return ClsactDetach(RequireIfindex(t), t.ingress, p.handle, p.priority, p.progId, t.label());
}

Napi::Value ToJsBool(Napi::Env env, bool b) { return Napi::Boolean::New(env, b); }

// detach(request: DetachRequest): boolean
Napi::Value Detach(const Napi::CallbackInfo &info) {
  DetachPlan p = ReadDetach(info, "detach");
  return ToJsBool(info.Env(), InNetns(p.netns(), [&] { return DetachHere(p); }));
}

// detachAsync(request: DetachRequest): Promise<boolean>
Napi::Value DetachAsync(const Napi::CallbackInfo &info) {
  DetachPlan p = ReadDetach(info, "detachAsync");
  return InNetnsAsync(info.Env(), p.netns(), [p] { return DetachHere(p); }, ToJsBool);
}

// replace(request: ReplaceRequest): number (the new program's id). tcx: the
// pinned link's program is swapped (no netns needed); clsact: the filter at
// vmpeer's handle and priority, in the target's netns.
Napi::Value Replace(const Napi::CallbackInfo &info) {
  Args args(info, "replace");
  Fields f(args.object(0, "request"), "replace");
  Target t = ReadTarget(f);
  int progFd = f.fd("progFd");
  std::optional<uint32_t> oldProgId = f.optUint32("oldProgId");
  if (!oldProgId)
    f.bad("replace needs oldProgId");
  if (f.choice("mode", {"tcx", "clsact"}) == kTcx) {
    std::optional<std::string> pinPath = f.optString("pinPath");
    if (!pinPath)
      f.bad("mode 'tcx' needs pinPath");
    TcxReplace(*pinPath, progFd, *oldProgId, t.label());
    return Napi::Number::New(info.Env(), GetProgInfo(progFd, t.label()).id);
  }
  std::optional<uint32_t> handle = f.optUint32("handle");
  std::optional<uint32_t> priority = Priority(f);
  if (!handle || !priority || !*handle || !*priority)
    f.bad("mode 'clsact' needs a non-zero handle and priority");
  uint32_t id = InNetns(t.netns, [&] {
    return ClsactReplace(RequireIfindex(t), t.ingress, progFd, *handle, *priority, *oldProgId, t.label());
  });
  return Napi::Number::New(info.Env(), id);
}

// What clsactQdisc() and its async form are asked: an interface, and whether to make the qdisc.
struct QdiscPlan {
  Target target;
  bool create = false;
};

QdiscPlan ReadQdisc(const Napi::CallbackInfo &info, const char *fn) {
  Args args(info, fn);
  Fields f(args.object(0, "request"), fn);
  QdiscPlan p;
  p.target.netns = f.optString("netns");
  p.target.ifname = f.string("ifname");
  p.create = f.optBool("create", false);
  return p;
}

ClsactHook QdiscHere(const QdiscPlan &p) { return ClsactQdisc(RequireIfindex(p.target), p.create, p.target.label()); }

Napi::Value ToJsHook(Napi::Env env, const ClsactHook &h) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("present", h.present);
  o.Set("created", h.created);
  return o;
}

// clsactQdisc(request: { netns?, ifname, create? }): { present, created }
Napi::Value ClsactQdiscJs(const Napi::CallbackInfo &info) {
  QdiscPlan p = ReadQdisc(info, "clsactQdisc");
  return ToJsHook(info.Env(), InNetns(p.target.netns, [&] { return QdiscHere(p); }));
}

// clsactQdiscAsync(request): Promise<{ present, created }>
Napi::Value ClsactQdiscAsync(const Napi::CallbackInfo &info) {
  QdiscPlan p = ReadQdisc(info, "clsactQdiscAsync");
  return InNetnsAsync(info.Env(), p.target.netns, [p] { return QdiscHere(p); }, ToJsHook);
}

struct Entry {
  bool tcx;
  uint32_t progId;
  std::string progName;
  uint32_t linkId, handle, priority;
};

// listHook(target: HookTarget): HookEntry[]
Napi::Value ListHook(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Args args(info, "listHook");
  Target t = ReadTarget(Fields(args.object(0, "target"), "listHook"));

  std::vector<Entry> entries = InNetns(t.netns, [&] {
    uint32_t ifindex = RequireIfindex(t);
    std::vector<Entry> found;
    // tcx programs run first, then the clsact filters (Linux 6.6+).
    for (const TcxProg &p : TcxQuery(ifindex, t.ingress, t.label()))
      found.push_back({true, p.progId, ProgNameById(p.progId), p.linkId, 0, 0});
    for (const TcFilter &f : DumpClsactFilters(ifindex, t.ingress, t.label())) {
      if (f.kind != "bpf")
        continue;
      std::string name = ProgNameById(f.progId);
      found.push_back({false, f.progId, name.empty() ? f.bpfName : name, 0, f.handle, f.priority});
    }
    return found;
  });

  Napi::Array list = Napi::Array::New(env, entries.size());
  for (size_t i = 0; i < entries.size(); i++) {
    const Entry &e = entries[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("mode", e.tcx ? "tcx" : "clsact");
    o.Set("progId", e.progId);
    o.Set("progName", e.progName);
    if (e.tcx) {
      o.Set("linkId", e.linkId);
    } else {
      o.Set("handle", e.handle);
      o.Set("priority", e.priority);
    }
    list.Set(i, o);
  }
  return list;
}

// ifindex(netns: string | undefined, ifname: string): number, 0 when absent
Napi::Value Ifindex(const Napi::CallbackInfo &info) {
  Args args(info, "ifindex");
  Target t;
  t.netns = args.optString(0, "netns");
  t.ifname = args.string(1, "ifname");
  return Napi::Number::New(info.Env(), InNetns(t.netns, [&] { return IfindexHere(t.ifname, t.ifname); }));
}

Napi::Value KernelFeatures(const Napi::CallbackInfo &info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("tcx", TcxSupported());
  o.Set("redirectPeer", libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_redirect_peer, nullptr) == 1);
  return o;
}

} // namespace

void InitHooks(Napi::Env env, Napi::Object exports) {
  exports.Set("attach", Napi::Function::New<Guard<Attach>>(env, "attach"));
  exports.Set("attachAsync", Napi::Function::New<GuardAsync<AttachAsync>>(env, "attachAsync"));
  exports.Set("detach", Napi::Function::New<Guard<Detach>>(env, "detach"));
  exports.Set("replace", Napi::Function::New<Guard<Replace>>(env, "replace"));
  exports.Set("detachAsync", Napi::Function::New<GuardAsync<DetachAsync>>(env, "detachAsync"));
  exports.Set("clsactQdisc", Napi::Function::New<Guard<ClsactQdiscJs>>(env, "clsactQdisc"));
  exports.Set("clsactQdiscAsync", Napi::Function::New<GuardAsync<ClsactQdiscAsync>>(env, "clsactQdiscAsync"));
  exports.Set("listHook", Napi::Function::New<Guard<ListHook>>(env, "listHook"));
  exports.Set("ifindex", Napi::Function::New<Guard<Ifindex>>(env, "ifindex"));
  exports.Set("kernelFeatures", Napi::Function::New<Guard<KernelFeatures>>(env, "kernelFeatures"));
}

} // namespace vmpeer
