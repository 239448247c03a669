#include "netlink_watcher.h"

#include "errors.h"
#include "fd.h"
#include "netns.h"
#include "rtnl.h"
#include "rtnl_messages.h"

#include <linux/if_link.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
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
  // Opened in the netns with `sock`; the link dump that names its devices
  // runs on the watcher thread (never the JS thread), then this is closed.
  UniqueFd dump;
  WatchSink sink;
  std::string label;
  std::unordered_map<uint32_t, std::string> names; // ifindex → ifname in that netns
};

// The epoll data of the wake-up eventfd (subscription ids start at 1).
constexpr uint64_t kWake = 0;

struct NetlinkWatcher::State {
  std::mutex mutex;
  UniqueFd epoll;
  UniqueFd wake; // Add() signals a subscription whose link dump is due
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

uint32_t NetlinkWatcher::Add(const std::optional<std::string> &netns, WatchSink sink) {
  std::call_once(state_->started, [this] {
    state_->epoll.reset(CheckErrno(epoll_create1(EPOLL_CLOEXEC), "epoll_create1", "netlink watcher"));
    state_->wake.reset(CheckErrno(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd", "netlink watcher"));
    epoll_event wake{};
    wake.events = EPOLLIN;
    wake.data.u64 = kWake;
    CheckErrno(epoll_ctl(state_->epoll.get(), EPOLL_CTL_ADD, state_->wake.get(), &wake), "epoll_ctl", "netlink watcher");
    std::thread([this] { Run(); }).detach();
  });
  auto sub = std::make_unique<Subscription>();
  sub->label = netns ? *netns : "this netns";
  sub->sink = std::move(sink);
  InNetns(netns, [&] {
    sub->sock = OpenSocket(RTMGRP_LINK | RTMGRP_NEIGH, sub->label);
    // a bigger buffer than rmem_max allows needs CAP_NET_ADMIN; without it the default stays
    if (setsockopt(sub->sock.get(), SOL_SOCKET, SO_RCVBUFFORCE, &kReceiveBuffer, sizeof kReceiveBuffer) < 0)
      setsockopt(sub->sock.get(), SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof kReceiveBuffer);
    // events name devices by ifindex: the names come from a dump made after subscribing
    // (so that no link falls between the two), then follow the link events; the dump
    // itself runs on the watcher thread (DumpNames), before it reads any event
    sub->dump = OpenSocket(0, sub->label);
  });
  CheckErrno(fcntl(sub->sock.get(), F_SETFL, O_NONBLOCK), "fcntl", sub->label);

  std::lock_guard<std::mutex> lock(state_->mutex);
  uint32_t id = state_->nextId++;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = id;
  CheckErrno(epoll_ctl(state_->epoll.get(), EPOLL_CTL_ADD, sub->sock.get(), &ev), "epoll_ctl", sub->label);
  state_->subs.emplace(id, std::move(sub));
  uint64_t one = 1;
  if (write(state_->wake.get(), &one, sizeof one) < 0) {
    // the counter is saturated, so a wake-up is pending anyway
  }
  return id;
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

// The link dump of a new subscription, on the watcher thread: what names its
// events' devices. A failure ends the subscription like a failed socket.
void NetlinkWatcher::DumpNames(Subscription &sub, WatchBatch &batch) {
  if (sub.dump.get() < 0)
    return;
  try {
    DumpLinks(sub.dump.get(), sub.label, [&](const nlmsghdr *nh) {
      LinkMsg l;
      if (ParseLink(nh, l))
        sub.names[l.ifindex] = l.ifname;
    });
  } catch (const Failure &f) {
    batch.ended = f.message();
  } catch (const std::exception &e) {
    batch.ended = std::string("link dump: ") + e.what();
  }
  sub.dump.reset();
}

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
      }
    }
  }
}

// Every subscription whose link dump is due: dumped now; one that fails ends.
void NetlinkWatcher::DumpDue() {
  std::vector<std::unique_ptr<Subscription>> ended;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    for (auto it = state_->subs.begin(); it != state_->subs.end();) {
      Subscription &sub = *it->second;
      if (sub.dump.get() < 0) {
        ++it;
        continue;
      }
      WatchBatch failed;
      DumpNames(sub, failed);
      if (failed.ended.empty()) {
        ++it;
        continue;
      }
      sub.sink.deliver(new WatchBatch(std::move(failed)));
      epoll_ctl(state_->epoll.get(), EPOLL_CTL_DEL, sub.sock.get(), nullptr);
      ended.push_back(std::move(it->second));
      it = state_->subs.erase(it);
    }
  }
  for (auto &sub : ended)
    sub->sink.release();
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
      if (ready[i].data.u64 == kWake) {
        uint64_t count;
        if (read(state_->wake.get(), &count, sizeof count) < 0) {
          // EAGAIN: another wake-up read it first
        }
        DumpDue();
        continue;
      }
      uint32_t id = static_cast<uint32_t>(ready[i].data.u64);
      std::unique_ptr<Subscription> ended;
      {
        std::lock_guard<std::mutex> lock(state_->mutex);
        auto it = state_->subs.find(id);
        if (it == state_->subs.end())
          continue; // removed meanwhile
        Subscription &sub = *it->second;
        auto *batch = new WatchBatch;
        DumpNames(sub, *batch); // when the events came before the wake-up
        if (batch->ended.empty())
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
