// A tc hook (an interface's ingress or egress, in some netns) and what gets
// attached there, as plain data shared by tcx.cc, tc.cc and hooks.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace vmpeer {

struct Target {
  std::optional<std::string> netns; // absent: the caller's netns
  std::string ifname;
  bool ingress = true;

  // "eth0-nic (ingress) in /run/netns/pod1", the `object` of errors.
  std::string label() const {
    return ifname + (ingress ? " (ingress)" : " (egress)") + (netns ? " in " + *netns : "");
  }
};

struct Attachment {
  bool tcx = false;
  uint32_t ifindex = 0;
  uint32_t progId = 0;
  uint32_t linkId = 0;   // tcx
  int linkFd = -1;       // tcx, when not pinned
  uint32_t handle = 0;   // clsact
  uint32_t priority = 0; // clsact
};

} // namespace vmpeer
