#include "rtnl_messages.h"

#include "rtnl.h"

#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

namespace vmpeer::rtnl {

namespace {

void ParseLinkInfo(const void *data, size_t len, LinkMsg &out) {
  const void *slaveData = nullptr, *infoData = nullptr;
  size_t slaveLen = 0, infoLen = 0;
  ForEachAttr(data, len, [&](int type, const void *d, size_t l) {
    if (type == IFLA_INFO_KIND)
      out.kind = AttrString(d, l);
    else if (type == IFLA_INFO_SLAVE_KIND)
      out.slaveKind = AttrString(d, l);
    else if (type == IFLA_INFO_SLAVE_DATA)
      slaveData = d, slaveLen = l;
    else if (type == IFLA_INFO_DATA)
      infoData = d, infoLen = l;
  });
  if (slaveData && out.slaveKind == "bridge")
    ForEachAttr(slaveData, slaveLen, [&](int type, const void *d, size_t l) {
      if (type == IFLA_BRPORT_LEARNING)
        out.learning = AttrU8(d, l) != 0;
    });
  if (infoData && out.kind == "tun")
    ForEachAttr(infoData, infoLen, [&](int type, const void *d, size_t l) {
      if (type == IFLA_TUN_TYPE)
        out.tunType = AttrU8(d, l);
    });
}

} // namespace

bool ParseLink(const nlmsghdr *nh, LinkMsg &out) {
  if ((nh->nlmsg_type != RTM_NEWLINK && nh->nlmsg_type != RTM_DELLINK) || nh->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg)))
    return false;
  auto *ifi = static_cast<const ifinfomsg *>(NLMSG_DATA(nh));
  out = LinkMsg{};
  out.deleted = nh->nlmsg_type == RTM_DELLINK;
  out.family = ifi->ifi_family;
  out.ifindex = static_cast<uint32_t>(ifi->ifi_index);
  out.flags = ifi->ifi_flags;
  ForEachMsgAttr(nh, sizeof(ifinfomsg), [&](int type, const void *d, size_t l) {
    switch (type) {
    case IFLA_IFNAME: out.ifname = AttrString(d, l); break;
    case IFLA_ADDRESS: out.address = FormatMac(d, l); break;
    case IFLA_OPERSTATE: out.operstate = AttrU8(d, l); break;
    case IFLA_MASTER: out.master = AttrU32(d, l); break;
    case IFLA_LINK: out.link = AttrU32(d, l); break;
    case IFLA_LINK_NETNSID: out.linkNetnsid = static_cast<int32_t>(AttrU32(d, l)); break;
    case IFLA_LINKINFO: ParseLinkInfo(d, l, out); break;
    default: break;
    }
  });
  return true;
}

bool ParseAddr(const nlmsghdr *nh, AddrMsg &out) {
  if (nh->nlmsg_type != RTM_NEWADDR || nh->nlmsg_len < NLMSG_LENGTH(sizeof(ifaddrmsg)))
    return false;
  auto *ifa = static_cast<const ifaddrmsg *>(NLMSG_DATA(nh));
  out = AddrMsg{};
  out.family = ifa->ifa_family;
  out.ifindex = ifa->ifa_index;
  out.prefixlen = ifa->ifa_prefixlen;
  out.scope = ifa->ifa_scope;
  std::string address;
  ForEachMsgAttr(nh, sizeof(ifaddrmsg), [&](int type, const void *d, size_t l) {
    if (type == IFA_LOCAL)
      out.local = FormatIp(ifa->ifa_family, d, l);
    else if (type == IFA_ADDRESS)
      address = FormatIp(ifa->ifa_family, d, l);
  });
  if (out.local.empty())
    out.local = address;
  return !out.local.empty();
}

bool ParseNeigh(const nlmsghdr *nh, NeighMsg &out) {
  if ((nh->nlmsg_type != RTM_NEWNEIGH && nh->nlmsg_type != RTM_DELNEIGH) || nh->nlmsg_len < NLMSG_LENGTH(sizeof(ndmsg)))
    return false;
  auto *nd = static_cast<const ndmsg *>(NLMSG_DATA(nh));
  out = NeighMsg{};
  out.deleted = nh->nlmsg_type == RTM_DELNEIGH;
  out.family = nd->ndm_family;
  out.ifindex = static_cast<uint32_t>(nd->ndm_ifindex);
  out.state = nd->ndm_state;
  out.flags = nd->ndm_flags;
  ForEachMsgAttr(nh, sizeof(ndmsg), [&](int type, const void *d, size_t l) {
    if (type == NDA_DST)
      out.dst = FormatIp(nd->ndm_family, d, l);
    else if (type == NDA_LLADDR)
      out.lladdr = FormatMac(d, l);
    else if (type == NDA_MASTER)
      out.master = AttrU32(d, l);
  });
  return true;
}

bool ParseRoute(const nlmsghdr *nh, RouteMsg &out) {
  if ((nh->nlmsg_type != RTM_NEWROUTE && nh->nlmsg_type != RTM_DELROUTE) || nh->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg)))
    return false;
  auto *rt = static_cast<const rtmsg *>(NLMSG_DATA(nh));
  out = RouteMsg{};
  out.deleted = nh->nlmsg_type == RTM_DELROUTE;
  out.family = rt->rtm_family;
  out.dstLen = rt->rtm_dst_len;
  out.table = rt->rtm_table;
  out.scope = rt->rtm_scope;
  out.type = rt->rtm_type;
  out.flags = rt->rtm_flags;
  ForEachMsgAttr(nh, sizeof(rtmsg), [&](int type, const void *d, size_t l) {
    if (type == RTA_DST)
      out.dst = FormatIp(rt->rtm_family, d, l);
    else if (type == RTA_OIF)
      out.oif = AttrU32(d, l);
    else if (type == RTA_TABLE)
      out.table = AttrU32(d, l);
    else if (type == RTA_PRIORITY)
      out.priority = AttrU32(d, l);
  });
  return true;
}

bool ParseTc(const nlmsghdr *nh, TcMsg &out) {
  TcMsg::What what;
  switch (nh->nlmsg_type) {
  case RTM_NEWTFILTER:
  case RTM_DELTFILTER:
    what = TcMsg::kFilter;
    break;
  case RTM_NEWQDISC:
  case RTM_DELQDISC:
    what = TcMsg::kQdisc;
    break;
  case RTM_NEWCHAIN:
  case RTM_DELCHAIN:
    what = TcMsg::kChain;
    break;
  default:
    return false;
  }
  if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(tcmsg)))
    return false;
  auto *tc = static_cast<const tcmsg *>(NLMSG_DATA(nh));
  out = TcMsg{};
  out.what = what;
  out.deleted = nh->nlmsg_type == RTM_DELTFILTER || nh->nlmsg_type == RTM_DELQDISC || nh->nlmsg_type == RTM_DELCHAIN;
  out.ifindex = static_cast<uint32_t>(tc->tcm_ifindex);
  return true;
}

} // namespace vmpeer::rtnl
