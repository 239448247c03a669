// RTM_GETTFILTER dump of a clsact hook, over the rtnetlink plumbing of rtnl.h.
#include "netlink.h"

#include "rtnl.h"

#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <sys/socket.h>

namespace vmpeer {

namespace {

// One filter of the dump; false for the per-priority header the kernel
// sends before the filters of each priority (it has handle 0).
bool ParseFilter(const nlmsghdr *nh, TcFilter &f) {
  if (nh->nlmsg_type != RTM_NEWTFILTER || nh->nlmsg_len < NLMSG_LENGTH(sizeof(tcmsg)))
    return false;
  auto *tc = static_cast<const tcmsg *>(NLMSG_DATA(nh));
  if (tc->tcm_handle == 0)
    return false;
  f = TcFilter{tc->tcm_handle, TC_H_MAJ(tc->tcm_info) >> 16, 0, "", 0, ""};
  const void *options = nullptr;
  size_t optionsLen = 0;
  rtnl::ForEachMsgAttr(nh, sizeof(tcmsg), [&](int type, const void *data, size_t len) {
    if (type == TCA_KIND)
      f.kind = rtnl::AttrString(data, len);
    else if (type == TCA_CHAIN)
      f.chain = rtnl::AttrU32(data, len);
    else if (type == TCA_OPTIONS)
      options = data, optionsLen = len;
  });
  if (f.kind == "bpf" && options)
    rtnl::ForEachAttr(options, optionsLen, [&](int type, const void *data, size_t len) {
      if (type == TCA_BPF_ID)
        f.progId = rtnl::AttrU32(data, len);
      else if (type == TCA_BPF_NAME)
        f.bpfName = rtnl::AttrString(data, len);
    });
  return true;
}

} // namespace

std::vector<TcFilter> DumpClsactFilters(uint32_t ifindex, bool ingress, const std::string &label) {
  UniqueFd sock = rtnl::OpenSocket(0, label);
  tcmsg req{};
  req.tcm_family = AF_UNSPEC;
  req.tcm_ifindex = static_cast<int>(ifindex);
  req.tcm_parent = TC_H_MAKE(TC_H_CLSACT, ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
  std::vector<TcFilter> filters;
  rtnl::Dump(sock.get(), RTM_GETTFILTER, &req, sizeof req, "RTM_GETTFILTER", label, [&](const nlmsghdr *nh) {
    TcFilter f;
    if (ParseFilter(nh, f))
      filters.push_back(std::move(f));
  });
  return filters;
}

} // namespace vmpeer
