// Link, neighbour and bridge FDB notifications from many network namespaces,
// read by one thread: a NETLINK_ROUTE socket per namespace, subscribed to
// RTNLGRP_LINK and RTNLGRP_NEIGH (and, for a pod, RTNLGRP_TC: a clsact filter
// or qdisc removed there sends nothing else; for the caller's own netns, the
// node, RTNLGRP_IPV4_ROUTE: main-table IPv4 routes decide who owns a guest IP), all
// in one epoll set. A netlink socket stays bound to the netns it was created
// in, so only its creation needs setns(): Add() runs on a netns thread (one
// that entered the namespace, netns.h / async.h), which opens the socket,
// makes the link dump that names its devices and hands the socket to the
// watching thread. The watching thread never changes namespace nor dumps;
// the JS thread never waits for any of it.
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
  enum Kind { kLink, kNeigh, kFdb, kRoute, kTc } kind;
  bool deleted = false;
  uint32_t ifindex = 0; // the link; for neigh / fdb, the device's
  std::string ifname;   // the link's name; for neigh / fdb, the device's
  std::string ip;       // neigh; route: its destination
  uint8_t dstLen = 0;   // route: the prefix length
  std::string mac;      // neigh / fdb; empty when absent
  std::string what;     // tc: "filter", "qdisc" or "chain" (only removals are reported)
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

  // Starts the watching thread (once), on the calling thread's netns: call it
  // from the JS thread, never from a netns thread, whose namespace a thread
  // started there would keep alive for good.
  void Start();
  // Subscribes (after Start()) to the netns the calling thread is in (a netns thread: this
  // waits for the kernel); `node`: it is the node's, whose routes are watched
  // too; `label` names it in errors. Throws a Failure when it cannot (then the
  // sink is the caller's still).
  // Its events are read once it is armed (they wait in the socket until then).
  uint32_t Add(const std::string &label, bool node, WatchSink sink);
  // Starts reading a subscription's events: called on the JS thread when it
  // learns the id, so that no batch reaches it before the id does.
  void Arm(uint32_t id);
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
