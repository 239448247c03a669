#include "tc.h"

#include "errors.h"
#include "info.h"
#include "netlink.h"
#include "rtnl.h"

#include <bpf/libbpf.h>

#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>

namespace vmpeer {

namespace {

bpf_tc_hook Hook(uint32_t ifindex, bool ingress) {
  bpf_tc_hook hook;
  memset(&hook, 0, sizeof hook);
  hook.sz = sizeof hook;
  hook.ifindex = static_cast<int>(ifindex);
  hook.attach_point = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  return hook;
}

bpf_tc_opts Opts() {
  bpf_tc_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  return opts;
}

std::string Where(uint32_t handle, uint32_t priority) {
  return "handle " + std::to_string(handle) + " priority " + std::to_string(priority);
}

// The filter at `handle` / `priority` (chain 0), if any.
std::optional<TcFilter> FilterAt(uint32_t ifindex, bool ingress, uint32_t handle, uint32_t priority,
                                 const std::string &label) {
  for (const TcFilter &f : DumpClsactFilters(ifindex, ingress, label))
    if (f.handle == handle && f.priority == priority && f.chain == 0)
      return f;
  return std::nullopt;
}

// A filter there that is not a bpf filter, or runs another program than `progId`, is foreign: EBUSY.
void RequireOurs(const TcFilter &f, std::optional<uint32_t> progId, const char *op, const std::string &label) {
  if (f.kind != "bpf")
    Fail(EBUSY, op, label, Where(f.handle, f.priority) + " holds a foreign " + f.kind + " filter");
  if (progId && f.progId != *progId)
    Fail(EBUSY, op, label,
         Where(f.handle, f.priority) + " holds a foreign filter: program " + std::to_string(f.progId) + ", not " +
             std::to_string(*progId));
}

} // namespace

Attachment ClsactAttach(uint32_t ifindex, bool ingress, int progFd, uint32_t handle, uint32_t priority,
                        const std::string &label) {
  bpf_tc_hook hook = Hook(ifindex, ingress);
  int rc = bpf_tc_hook_create(&hook); // the clsact qdisc, for both hooks
  if (rc < 0 && rc != -EEXIST)
    Fail(-rc, "bpf_tc_hook_create", label);

  bpf_tc_opts opts = Opts();
  opts.prog_fd = progFd;
  opts.handle = handle;
  opts.priority = priority;
  // No BPF_TC_F_REPLACE: libbpf then asks for NLM_F_EXCL, and a filter
  // already at this handle and priority stays and fails us with EEXIST.
  Check(bpf_tc_attach(&hook, &opts), "bpf_tc_attach", label, Where(handle, priority));

  Attachment a;
  a.ifindex = ifindex;
  a.progId = opts.prog_id;
  a.handle = opts.handle;
  a.priority = opts.priority;
  return a;
}

uint32_t ClsactReplace(uint32_t ifindex, bool ingress, int progFd, uint32_t handle, uint32_t priority,
                       uint32_t oldProgId, const std::string &label) {
  std::optional<TcFilter> found = FilterAt(ifindex, ingress, handle, priority, label);
  if (!found)
    Fail(ENOENT, "bpf_tc_attach", label, Where(handle, priority) + ": no filter to replace");
  RequireOurs(*found, oldProgId, "bpf_tc_attach", label);
  bpf_tc_hook hook = Hook(ifindex, ingress);
  bpf_tc_opts opts = Opts();
  opts.prog_fd = progFd;
  opts.handle = handle;
  opts.priority = priority;
  opts.flags = BPF_TC_F_REPLACE;
  Check(bpf_tc_attach(&hook, &opts), "bpf_tc_attach", label, Where(handle, priority) + " (replace)");
  return opts.prog_id;
}

ClsactHook ClsactQdisc(uint32_t ifindex, bool create, const std::string &label) {
  UniqueFd sock = rtnl::OpenSocket(0, label);
  tcmsg req{};
  req.tcm_family = AF_UNSPEC;
  req.tcm_ifindex = static_cast<int>(ifindex);
  bool present = false;
  // the dump covers every interface of the netns: ours is picked out here;
  // clsact and ingress qdiscs both sit at TC_H_CLSACT (== TC_H_INGRESS)
  rtnl::Dump(sock.get(), RTM_GETQDISC, &req, sizeof req, "RTM_GETQDISC", label, [&](const nlmsghdr *nh) {
    if (nh->nlmsg_type != RTM_NEWQDISC || nh->nlmsg_len < NLMSG_LENGTH(sizeof(tcmsg)))
      return;
    const auto *t = static_cast<const tcmsg *>(NLMSG_DATA(nh));
    if (t->tcm_ifindex == static_cast<int>(ifindex) && t->tcm_parent == TC_H_CLSACT)
      present = true;
  });
  if (present || !create)
    return {present, false};
  bpf_tc_hook hook = Hook(ifindex, true);
  int rc = bpf_tc_hook_create(&hook);
  if (rc < 0 && rc != -EEXIST)
    Fail(-rc, "bpf_tc_hook_create", label);
  return {true, rc == 0};
}

bool ClsactDetach(uint32_t ifindex, bool ingress, uint32_t handle, uint32_t priority,
                  std::optional<uint32_t> progId, const std::string &label) {
  std::optional<TcFilter> found = FilterAt(ifindex, ingress, handle, priority, label);
  if (!found)
    return false;
  RequireOurs(*found, progId, "bpf_tc_detach", label);

  bpf_tc_hook hook = Hook(ifindex, ingress);
  bpf_tc_opts opts = Opts();
  opts.handle = handle;
  opts.priority = priority;
  Check(bpf_tc_detach(&hook, &opts), "bpf_tc_detach", label, Where(handle, priority));
  return true;
}

} // namespace vmpeer
