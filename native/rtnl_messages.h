// rtnetlink messages (links, addresses, neighbours and FDB entries, routes)
// parsed into plain structs: what the dumps return and the watcher reports.
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <optional>
#include <string>

namespace vmpeer::rtnl {

struct LinkMsg {
  bool deleted = false;
  uint8_t family = 0; // AF_UNSPEC; AF_BRIDGE for a bridge port's state notification
  uint32_t ifindex = 0;
  std::string ifname;
  std::string address; // IFLA_ADDRESS, empty when absent
  uint32_t flags = 0;  // IFF_*
  uint8_t operstate = 0;
  uint32_t master = 0;               // 0: none
  std::optional<uint32_t> link;      // IFLA_LINK: a veth's peer ifindex
  std::optional<int32_t> linkNetnsid; // the peer's netns, when it is another
  std::string kind;                  // IFLA_INFO_KIND
  std::string slaveKind;             // IFLA_INFO_SLAVE_KIND
  std::optional<bool> learning;      // bridge port
  std::optional<uint8_t> tunType;    // tun: 1 tun, 2 tap
};

struct AddrMsg {
  uint8_t family = 0;
  uint32_t ifindex = 0;
  uint8_t prefixlen = 0;
  uint8_t scope = 0;
  std::string local; // IFA_LOCAL, else IFA_ADDRESS
};

// A neighbour (AF_INET / AF_INET6) or a bridge FDB entry (AF_BRIDGE).
struct NeighMsg {
  bool deleted = false;
  uint8_t family = 0;
  uint32_t ifindex = 0;
  std::string dst;    // IP; empty for FDB entries
  std::string lladdr; // empty when absent
  uint16_t state = 0; // NUD_*
  uint8_t flags = 0;  // NTF_*
  uint32_t master = 0; // NDA_MASTER (FDB)
};

struct RouteMsg {
  bool deleted = false; // RTM_DELROUTE (notifications only)
  uint8_t family = 0;
  uint8_t dstLen = 0;
  uint32_t table = 0;
  uint8_t scope = 0;
  uint8_t type = 0;
  uint32_t flags = 0; // RTM_F_*
  std::string dst;    // empty for a default route
  uint32_t oif = 0;   // 0: none
  uint32_t priority = 0; // RTA_PRIORITY (the metric): the lowest wins among equal prefixes
};

// A tc object notification: a filter, a qdisc or a filter chain (RTNLGRP_TC).
struct TcMsg {
  enum What { kFilter, kQdisc, kChain } what = kFilter;
  bool deleted = false;
  uint32_t ifindex = 0;
};

// Each returns false when the message is not of its kind or is truncated.
bool ParseLink(const nlmsghdr *nh, LinkMsg &out);
bool ParseAddr(const nlmsghdr *nh, AddrMsg &out);
bool ParseNeigh(const nlmsghdr *nh, NeighMsg &out);
bool ParseRoute(const nlmsghdr *nh, RouteMsg &out);
bool ParseTc(const nlmsghdr *nh, TcMsg &out);

} // namespace vmpeer::rtnl
