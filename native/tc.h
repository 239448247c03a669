// Netlink tc filters (cls_bpf, direct-action) under the clsact qdisc.
#pragma once

#include "hook.h"

#include <optional>
#include <string>

namespace vmpeer {

// Adds the filter at `handle` / `priority` (0: the kernel picks), creating
// the clsact qdisc if missing. Never replaces: an existing filter there is
// EEXIST.
Attachment ClsactAttach(uint32_t ifindex, bool ingress, int progFd, uint32_t handle, uint32_t priority,
                        const std::string &label);

// Replaces the program of vmpeer's bpf filter at `handle` / `priority` in
// place (BPF_TC_F_REPLACE: one RCU pointer swap in cls_bpf_change(), so every
// frame runs either program, and never both). The filter there must run
// `oldProgId`: anything else is EBUSY, no filter there ENOENT. Returns the
// new program's id.
uint32_t ClsactReplace(uint32_t ifindex, bool ingress, int progFd, uint32_t handle, uint32_t priority,
                       uint32_t oldProgId, const std::string &label);

// Deletes the bpf filter at `handle` / `priority`; false when there is none.
// A filter there that is not a bpf filter, or runs another program than
// `progId`, is foreign: EBUSY, and it stays.
bool ClsactDetach(uint32_t ifindex, bool ingress, uint32_t handle, uint32_t priority,
                  std::optional<uint32_t> progId, const std::string &label);

// Whether the interface has a clsact (or ingress) qdisc: its tc hooks exist.
// With `create`, makes the clsact qdisc when missing; true when it did.
// Adding one to an interface that is up costs frames: qdisc_graft()
// (net/sched/sch_api.c) deactivates the device's transmit queues for an RCU
// grace period, even for clsact, and what is sent to it meanwhile is dropped
// (noop qdisc). So vmpeer makes the hooks of a pod's ports together, once.
struct ClsactHook {
  bool present;
  bool created;
};
ClsactHook ClsactQdisc(uint32_t ifindex, bool create, const std::string &label);

} // namespace vmpeer
