#include "netlink_watcher.h"

#include "errors.h"
#include "fd.h"
#include "netns.h"
#include "rtnl.h"
#include "rtnl_messages.h"

#include <linux/if_link.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cstring>
#include <unistd.h>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace vmpeer {

using namespace rtnl;

namespace {

// Room for bursts (a bridge flushing its FDB, many links at once) before the kernel drops events.
constexpr int kReceiveBuffer = 4 * 1024 * 1024;

} // namespace

struct NetlinkWatcher::Subscription {
  UniqueFd sock;
  WatchSink sink;
  std::string label;
  std::unordered_map<uint32_t, std::string> names; // ifindex → ifname in that netns
};

struct NetlinkWatcher::State {
  std::mutex mutex;
  UniqueFd epoll;
  std::map<uint32_t, std::unique_ptr<Subscription>> subs;
  uint32_t nextId = 1;
  std::once_flag started;
};

NetlinkWatcher::NetlinkWatcher() : state_(new State) {}

NetlinkWatcher &NetlinkWatcher::Instance() {
  // Never destroyed: the thread runs until the process ends.
  static NetlinkWatcher *instance = new NetlinkWatcher();
  return *instance;
}

namespace {

// On the subscription's thread, inside its netns: the subscribed socket, then
// the link dump that names the devices its events name by ifindex. The dump
// comes after subscribing, so that no link falls between the two; events
// meanwhile wait in the socket, read once the watching thread has it.
void OpenHere(const std::string &label, bool node, UniqueFd &sock, std::unordered_map<uint32_t, std::string> &names) {
  // routes only where they decide ownership (the node): a pod's own routes are its claims;
  // tc only in pods, where vmpeer's clsact filters are (the node's hooks are the CNI's, busy)
  sock = OpenSocket(RTMGRP_LINK | RTMGRP_NEIGH | (node ? RTMGRP_IPV4_ROUTE : RTMGRP_TC), label);
  // a bigger buffer than rmem_max allows needs CAP_NET_ADMIN; without it the default stays
  if (setsockopt(sock.get(), SOL_SOCKET, SO_RCVBUFFORCE, &kReceiveBuffer, sizeof kReceiveBuffer) < 0)
    setsockopt(sock.get(), SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof kReceiveBuffer);
  CheckErrno(fcntl(sock.get(), F_SETFL, O_NONBLOCK), "fcntl", label);
  UniqueFd dump = OpenSocket(0, label);
  try {
    DumpLinks(dump.get(), label, [&](const nlmsghdr *nh) {
      LinkMsg l;
      if (ParseLink(nh, l))
        names[l.ifindex] = l.ifname;
    });
  } catch (const Failure &) {
    throw;
  } catch (const std::exception &e) {
    Fail(EIO, "link dump", label, e.what());
  }
}

} // namespace

void NetlinkWatcher::Start() {
  std::call_once(state_->started, [this] {
    state_->epoll.reset(CheckErrno(epoll_create1(EPOLL_CLOEXEC), "epoll_create1", "netlink watcher"));
    std::thread([this] { Run(); }).detach();
  });
}

uint32_t NetlinkWatcher::Add(const std::string &label, bool node, WatchSink sink) {
  auto sub = std::make_unique<Subscription>();
  sub->label = label;
  OpenHere(label, node, sub->sock, sub->names);
  sub->sink = std::move(sink);
  std::lock_guard<std::mutex> lock(state_->mutex);
  uint32_t id = state_->nextId++;
  state_->subs.emplace(id, std::move(sub));
  return id;
}

void NetlinkWatcher::Arm(uint32_t id) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  auto it = state_->subs.find(id);
  if (it == state_->subs.end())
    return; // removed meanwhile
  epoll_event ev{};
  ev.events = EPOLLIN; // events queued since the socket was made make it ready at once
  ev.data.u64 = id;
  CheckErrno(epoll_ctl(state_->epoll.get(), EPOLL_CTL_ADD, it->second->sock.get(), &ev), "epoll_ctl", it->second->label);
}

bool NetlinkWatcher::Remove(uint32_t id) {
  std::unique_ptr<Subscription> sub;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    auto it = state_->subs.find(id);
    if (it == state_->subs.end())
      return false;
    sub = std::move(it->second);
    state_->subs.erase(it);
    epoll_ctl(state_->epoll.get(), EPOLL_CTL_DEL, sub->sock.get(), nullptr);
    sub->sock.reset();
  }
  sub->sink.release();
  return true;
}

void NetlinkWatcher::RemoveOwnedBy(const void *owner) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  for (auto it = state_->subs.begin(); it != state_->subs.end();) {
    if (it->second->sink.owner != owner) {
      ++it;
      continue;
    }
    epoll_ctl(state_->epoll.get(), EPOLL_CTL_DEL, it->second->sock.get(), nullptr);
    it = state_->subs.erase(it);
  }
}

namespace {

std::string NameOf(const std::unordered_map<uint32_t, std::string> &names, uint32_t ifindex) {
  auto it = names.find(ifindex);
  return it != names.end() ? it->second : "if" + std::to_string(ifindex);
}

} // namespace

void NetlinkWatcher::Drain(Subscription &sub, WatchBatch &batch) {
  static thread_local std::vector<char> buf(64 * 1024);
  for (;;) {
    ssize_t n = recv(sub.sock.get(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      if (errno == ENOBUFS) { // the socket stays usable; what overflowed is lost
        batch.lost = true;
        continue;
      }
      batch.ended = std::string("recv: ") + ErrnoText(errno);
      return;
    }
    auto *nh = reinterpret_cast<const nlmsghdr *>(buf.data());
    unsigned int left = static_cast<unsigned int>(n);
    for (; NLMSG_OK(nh, left); nh = NLMSG_NEXT(nh, left)) {
      LinkMsg link;
      NeighMsg neigh;
      RouteMsg route;
      TcMsg tc;
      if (ParseLink(nh, link)) {
        // a bridge port's AF_BRIDGE "deleted" means it left its bridge, not that it is gone
        bool gone = link.deleted && link.family != AF_BRIDGE;
        if (!gone && !link.ifname.empty())
          sub.names[link.ifindex] = link.ifname;
        WatchEvent e{WatchEvent::kLink};
        e.deleted = link.deleted;
        e.ifindex = link.ifindex;
        e.ifname = link.ifname.empty() ? NameOf(sub.names, link.ifindex) : link.ifname;
        batch.events.push_back(std::move(e));
        if (gone)
          sub.names.erase(link.ifindex);
      } else if (ParseNeigh(nh, neigh)) {
        bool fdb = neigh.family == AF_BRIDGE;
        if (!fdb && neigh.dst.empty())
          continue;
        WatchEvent e{fdb ? WatchEvent::kFdb : WatchEvent::kNeigh};
        e.deleted = neigh.deleted;
        e.ifindex = neigh.ifindex;
        e.ifname = NameOf(sub.names, neigh.ifindex);
        e.ip = neigh.dst;
        e.mac = neigh.lladdr;
        batch.events.push_back(std::move(e));
      } else if (ParseRoute(nh, route)) {
        if (route.family != AF_INET || route.table != RT_TABLE_MAIN || (route.flags & RTM_F_CLONED))
          continue;
        WatchEvent e{WatchEvent::kRoute};
        e.deleted = route.deleted;
        e.ifindex = route.oif;
        e.ifname = route.oif ? NameOf(sub.names, route.oif) : "";
        e.ip = route.dst.empty() ? "0.0.0.0" : route.dst;
        e.dstLen = route.dstLen;
        batch.events.push_back(std::move(e));
      } else if (ParseTc(nh, tc)) {
        if (!tc.deleted) // additions are vmpeer's own (or another agent's, which vmpeer leaves alone)
          continue;
        WatchEvent e{WatchEvent::kTc};
        e.deleted = true;
        e.ifindex = tc.ifindex;
        e.ifname = NameOf(sub.names, tc.ifindex);
        e.what = tc.what == TcMsg::kFilter ? "filter" : tc.what == TcMsg::kQdisc ? "qdisc" : "chain";
        batch.events.push_back(std::move(e));
      }
    }
  }
}

void NetlinkWatcher::Run() {
  epoll_event ready[64];
  for (;;) {
    int n = epoll_wait(state_->epoll.get(), ready, 64, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return; // the epoll fd is gone: nothing left to watch
    }
    for (int i = 0; i < n; i++) {
      uint32_t id = static_cast<uint32_t>(ready[i].data.u64);
      std::unique_ptr<Subscription> ended;
      {
        std::lock_guard<std::mutex> lock(state_->mutex);
        auto it = state_->subs.find(id);
        if (it == state_->subs.end())
          continue; // removed meanwhile
        Subscription &sub = *it->second;
        auto *batch = new WatchBatch;
        Drain(sub, *batch);
        bool over = !batch->ended.empty();
        if (batch->events.empty() && !batch->lost && !over)
          delete batch;
        else
          sub.sink.deliver(batch);
        if (over) {
          epoll_ctl(state_->epoll.get(), EPOLL_CTL_DEL, sub.sock.get(), nullptr);
          ended = std::move(it->second);
          state_->subs.erase(it);
        }
      }
      if (ended)
        ended->sink.release();
    }
  }
}

} // namespace vmpeer
