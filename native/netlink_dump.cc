// netlinkDump(netns, kinds): links, addresses, neighbours, bridge FDB entries
// and IPv4 routes of a netns, read with rtnetlink dumps over one socket. The
// dumps run off the JS thread: a libuv pool thread hands them to a thread
// that enters the netns (netns.h) and waits for it.
#include "args.h"
#include "errors.h"
#include "exports.h"
#include "netns.h"
#include "rtnl.h"
#include "rtnl_messages.h"

#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <sys/socket.h>

#include <optional>
#include <vector>

namespace vmpeer {

namespace {

using namespace rtnl;

enum Kind { kLinks, kAddresses, kNeighbours, kFdb, kRoutes, kKinds };
const char *const kKindNames[kKinds] = {"links", "addresses", "neighbours", "fdb", "routes"};

struct Snapshot {
  std::vector<LinkMsg> links;
  std::vector<AddrMsg> addresses;
  std::vector<NeighMsg> neighbours;
  std::vector<NeighMsg> fdb;
  std::vector<RouteMsg> routes;
};

void DumpLinks(int fd, const std::string &label, Snapshot &s) {
  rtnl::DumpLinks(fd, label, [&](const nlmsghdr *nh) {
    LinkMsg l;
    if (ParseLink(nh, l))
      s.links.push_back(std::move(l));
  });
}

void DumpAddresses(int fd, const std::string &label, Snapshot &s) {
  ifaddrmsg req{};
  req.ifa_family = AF_UNSPEC;
  Dump(fd, RTM_GETADDR, &req, sizeof req, "RTM_GETADDR", label, [&](const nlmsghdr *nh) {
    AddrMsg a;
    if (ParseAddr(nh, a))
      s.addresses.push_back(std::move(a));
  });
}

// AF_UNSPEC dumps the neighbour tables (IPv4, IPv6); AF_BRIDGE the bridges' FDBs.
void DumpNeighbours(int fd, const std::string &label, uint8_t family, std::vector<NeighMsg> &out) {
  ndmsg req{};
  req.ndm_family = family;
  Dump(fd, RTM_GETNEIGH, &req, sizeof req, "RTM_GETNEIGH", label, [&](const nlmsghdr *nh) {
    NeighMsg n;
    if (ParseNeigh(nh, n))
      out.push_back(std::move(n));
  });
}

void DumpRoutes(int fd, const std::string &label, Snapshot &s) {
  rtmsg req{};
  req.rtm_family = AF_INET;
  Dump(fd, RTM_GETROUTE, &req, sizeof req, "RTM_GETROUTE", label, [&](const nlmsghdr *nh) {
    RouteMsg r;
    if (ParseRoute(nh, r))
      s.routes.push_back(std::move(r));
  });
}

template <typename T> void SetOpt(Napi::Object o, const char *key, const std::optional<T> &v) {
  if (v)
    o.Set(key, *v);
}

void SetNonEmpty(Napi::Object o, const char *key, const std::string &v) {
  if (!v.empty())
    o.Set(key, v);
}

void SetNonZero(Napi::Object o, const char *key, uint32_t v) {
  if (v)
    o.Set(key, v);
}

Napi::Object ToJs(Napi::Env env, const LinkMsg &l) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", l.ifindex);
  o.Set("ifname", l.ifname);
  SetNonEmpty(o, "address", l.address);
  o.Set("flags", l.flags);
  o.Set("operstate", l.operstate);
  SetNonZero(o, "master", l.master);
  SetOpt(o, "link", l.link);
  SetOpt(o, "linkNetnsid", l.linkNetnsid);
  SetNonEmpty(o, "kind", l.kind);
  SetNonEmpty(o, "slaveKind", l.slaveKind);
  SetOpt(o, "learning", l.learning);
  SetOpt(o, "tunType", l.tunType);
  return o;
}

Napi::Object ToJs(Napi::Env env, const AddrMsg &a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", a.ifindex);
  o.Set("family", a.family);
  o.Set("prefixlen", a.prefixlen);
  o.Set("scope", a.scope);
  o.Set("local", a.local);
  return o;
}

Napi::Object ToJs(Napi::Env env, const NeighMsg &n) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", n.ifindex);
  o.Set("family", n.family);
  SetNonEmpty(o, "dst", n.dst);
  SetNonEmpty(o, "lladdr", n.lladdr);
  o.Set("state", n.state);
  o.Set("flags", n.flags);
  SetNonZero(o, "master", n.master);
  return o;
}

Napi::Object ToJs(Napi::Env env, const RouteMsg &r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("family", r.family);
  o.Set("dstLen", r.dstLen);
  SetNonEmpty(o, "dst", r.dst);
  o.Set("table", r.table);
  o.Set("scope", r.scope);
  o.Set("type", r.type);
  o.Set("flags", r.flags);
  SetNonZero(o, "oif", r.oif);
  SetNonZero(o, "priority", r.priority);
  return o;
}

template <typename T> Napi::Array ToJsArray(Napi::Env env, const std::vector<T> &items) {
  Napi::Array a = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); i++)
    a.Set(static_cast<uint32_t>(i), ToJs(env, items[i]));
  return a;
}

class DumpWorker : public Napi::AsyncWorker {
public:
  DumpWorker(Napi::Env env, std::optional<std::string> netns, std::vector<bool> kinds)
      : Napi::AsyncWorker(env, "vmpeer.netlinkDump"), deferred_(Napi::Promise::Deferred::New(env)),
        netns_(std::move(netns)), kinds_(std::move(kinds)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

protected:
  void Execute() override {
    try {
      const std::string label = netns_ ? *netns_ : "this netns";
      InNetns(netns_, [&] {
        UniqueFd sock = OpenSocket(0, label);
        if (kinds_[kLinks])
          DumpLinks(sock.get(), label, snapshot_);
        if (kinds_[kAddresses])
          DumpAddresses(sock.get(), label, snapshot_);
        if (kinds_[kNeighbours])
          DumpNeighbours(sock.get(), label, AF_UNSPEC, snapshot_.neighbours);
        if (kinds_[kFdb])
          DumpNeighbours(sock.get(), label, AF_BRIDGE, snapshot_.fdb);
        if (kinds_[kRoutes])
          DumpRoutes(sock.get(), label, snapshot_);
      });
    } catch (const Failure &f) {
      failure_ = f;
    } catch (const std::exception &e) {
      failure_ = Failure{};
      failure_->err = EIO;
      failure_->op = "netlinkDump";
      failure_->detail = e.what();
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failure_) {
      deferred_.Reject(ToJsError(env, *failure_).Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    if (kinds_[kLinks])
      o.Set("links", ToJsArray(env, snapshot_.links));
    if (kinds_[kAddresses])
      o.Set("addresses", ToJsArray(env, snapshot_.addresses));
    if (kinds_[kNeighbours])
      o.Set("neighbours", ToJsArray(env, snapshot_.neighbours));
    if (kinds_[kFdb])
      o.Set("fdb", ToJsArray(env, snapshot_.fdb));
    if (kinds_[kRoutes])
      o.Set("routes", ToJsArray(env, snapshot_.routes));
    deferred_.Resolve(o);
  }

  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

private:
  Napi::Promise::Deferred deferred_;
  std::optional<std::string> netns_;
  std::vector<bool> kinds_;
  Snapshot snapshot_;
  std::optional<Failure> failure_;
};

// netlinkDump(netns: string | undefined, kinds: NetlinkDumpKind[]): Promise<NetlinkDump>
Napi::Value NetlinkDump(const Napi::CallbackInfo &info) {
  Args args(info, "netlinkDump");
  std::optional<std::string> netns = args.optString(0, "netns");
  Napi::Value list = args.at(1);
  if (!list.IsArray())
    args.bad("kinds must be an array");
  Napi::Array kinds = list.As<Napi::Array>();
  std::vector<bool> wanted(kKinds, false);
  for (uint32_t i = 0; i < kinds.Length(); i++) {
    Napi::Value v = kinds.Get(i);
    std::string name = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    bool known = false;
    for (int k = 0; k < kKinds; k++)
      if (name == kKindNames[k])
        wanted[k] = known = true;
    if (!known)
      args.bad("kinds: each is one of links, addresses, neighbours, fdb, routes");
  }
  auto *worker = new DumpWorker(info.Env(), std::move(netns), std::move(wanted));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

} // namespace

void InitNetlinkDump(Napi::Env env, Napi::Object exports) {
  exports.Set("netlinkDump", Napi::Function::New<Guard<NetlinkDump>>(env, "netlinkDump"));
}

} // namespace vmpeer
