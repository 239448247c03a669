// rtnetlink plumbing shared by the dumps and the event watcher: sockets,
// dump requests, attribute walking, address formatting.
#pragma once

#include "fd.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace vmpeer::rtnl {

// Calls fn(type, payload, length) for each attribute in [data, data + len).
template <typename Fn> void ForEachAttr(const void *data, size_t len, Fn &&fn) {
  auto *rta = static_cast<const rtattr *>(data);
  unsigned int left = static_cast<unsigned int>(len);
  for (; RTA_OK(rta, left); rta = RTA_NEXT(rta, left))
    fn(rta->rta_type & NLA_TYPE_MASK, RTA_DATA(rta), RTA_PAYLOAD(rta));
}

// The attributes of a message whose fixed header is `headerLen` bytes.
template <typename Fn> void ForEachMsgAttr(const nlmsghdr *nh, size_t headerLen, Fn &&fn) {
  if (nh->nlmsg_len < NLMSG_LENGTH(headerLen))
    return;
  ForEachAttr(static_cast<const char *>(NLMSG_DATA(nh)) + NLMSG_ALIGN(headerLen),
              nh->nlmsg_len - NLMSG_SPACE(headerLen), fn);
}

std::string AttrString(const void *data, size_t len);
uint32_t AttrU32(const void *data, size_t len);
uint8_t AttrU8(const void *data, size_t len);
// "0a:1b:..." (lower case), any length; empty for an empty attribute.
std::string FormatMac(const void *data, size_t len);
// inet_ntop of an AF_INET / AF_INET6 address attribute; empty when the length does not fit.
std::string FormatIp(int family, const void *data, size_t len);

// A NETLINK_ROUTE socket in the calling thread's netns; with `groups` (RTMGRP_* bits) it receives those notifications.
UniqueFd OpenSocket(uint32_t groups, const std::string &label);

// Sends one NLM_F_DUMP request of `type` with the fixed header `header` (and
// optional trailing attributes in it) and calls fn for every answer until the
// dump ends. A failed dump throws a Failure naming `op` and `label`, with the
// kernel's extended-ack reason when it gave one.
void Dump(int fd, uint16_t type, const void *header, size_t headerLen, const char *op, const std::string &label,
          const std::function<void(const nlmsghdr *)> &fn);

// Dumps every link (RTM_GETLINK, without the per-link counters) and calls fn for each.
void DumpLinks(int fd, const std::string &label, const std::function<void(const nlmsghdr *)> &fn);

} // namespace vmpeer::rtnl
