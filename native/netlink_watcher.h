// Link, neighbour and bridge FDB notifications from many network namespaces,
// read by one thread: a NETLINK_ROUTE socket per namespace, subscribed to
// RTNLGRP_LINK and RTNLGRP_NEIGH (and, for the caller's own netns, the node,
// RTNLGRP_IPV4_ROUTE: main-table IPv4 routes decide who owns a guest IP), all
// in one epoll set. A netlink socket stays
// bound to the netns it was created in, so only its creation needs setns();
// the watching thread itself never changes namespace.
//
// The socket holds a reference on its netns: a subscription keeps the
// namespace (and its interfaces) alive until it is removed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vmpeer {

struct WatchEvent {
  enum Kind { kLink, kNeigh, kFdb, kRoute } kind;
  bool deleted = false;
  uint32_t ifindex = 0; // the link; for neigh / fdb, the device's
  std::string ifname;   // the link's name; for neigh / fdb, the device's
  std::string ip;       // neigh; route: its destination
  uint8_t dstLen = 0;   // route: the prefix length
  std::string mac;      // neigh / fdb; empty when absent
};

// What one wake-up read from one subscription.
struct WatchBatch {
  std::vector<WatchEvent> events;
  bool lost = false;  // the receive buffer overflowed: some events are missing
  std::string ended;  // set when the subscription ended by itself (its socket failed)
};

struct WatchSink {
  // Takes ownership of the batch. Called on the watcher thread.
  std::function<void(WatchBatch *)> deliver;
  // Called once, when the subscription is gone; deliver is not called after it.
  std::function<void()> release;
  // Who the subscription belongs to (removed together by RemoveOwnedBy).
  const void *owner = nullptr;
};

class NetlinkWatcher {
public:
  static NetlinkWatcher &Instance();

  // Subscribes to the netns at `netns` (absent: the caller's). Throws a Failure when it cannot.
  uint32_t Add(const std::optional<std::string> &netns, WatchSink sink);
  // Ends a subscription: its socket is closed and sink.release() called before this returns.
  bool Remove(uint32_t id);
  // Closes the sockets of an owner's subscriptions without calling release (its environment is going away).
  void RemoveOwnedBy(const void *owner);

private:
  struct Subscription;
  NetlinkWatcher();
  void Run();
  void Drain(Subscription &sub, WatchBatch &batch);
  struct State;
  std::unique_ptr<State> state_;
};

} // namespace vmpeer
