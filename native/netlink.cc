// A minimal rtnetlink client: one RTM_GETTFILTER dump, parsed by hand.
#include "netlink.h"

#include "errors.h"
#include "fd.h"

#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

namespace vmpeer {

namespace {

constexpr uint32_t kSeq = 1;

struct DumpRequest {
  nlmsghdr header;
  tcmsg tc;
};

// Calls fn(type, payload, length) for each attribute in [data, data + len).
template <typename Fn> void ForEachAttr(const void *data, size_t len, Fn &&fn) {
  auto *rta = static_cast<const rtattr *>(data);
  unsigned int left = static_cast<unsigned int>(len);
  for (; RTA_OK(rta, left); rta = RTA_NEXT(rta, left))
    fn(rta->rta_type & NLA_TYPE_MASK, RTA_DATA(rta), RTA_PAYLOAD(rta));
}

std::string AttrString(const void *data, size_t len) {
  return std::string(static_cast<const char *>(data), strnlen(static_cast<const char *>(data), len));
}

uint32_t AttrU32(const void *data, size_t len) {
  uint32_t v = 0;
  if (len >= sizeof v)
    memcpy(&v, data, sizeof v);
  return v;
}

// One filter of the dump; false for the per-priority header the kernel
// sends before the filters of each priority (it has handle 0).
bool ParseFilter(const nlmsghdr *nh, TcFilter &f) {
  if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(tcmsg)))
    return false;
  auto *tc = static_cast<const tcmsg *>(NLMSG_DATA(nh));
  if (tc->tcm_handle == 0)
    return false;
  f = TcFilter{tc->tcm_handle, TC_H_MAJ(tc->tcm_info) >> 16, 0, "", 0, ""};
  const void *options = nullptr;
  size_t optionsLen = 0;
  ForEachAttr(reinterpret_cast<const char *>(tc) + NLMSG_ALIGN(sizeof(tcmsg)),
              nh->nlmsg_len - NLMSG_LENGTH(sizeof(tcmsg)), [&](int type, const void *data, size_t len) {
                if (type == TCA_KIND)
                  f.kind = AttrString(data, len);
                else if (type == TCA_CHAIN)
                  f.chain = AttrU32(data, len);
                else if (type == TCA_OPTIONS)
                  options = data, optionsLen = len;
              });
  if (f.kind == "bpf" && options)
    ForEachAttr(options, optionsLen, [&](int type, const void *data, size_t len) {
      if (type == TCA_BPF_ID)
        f.progId = AttrU32(data, len);
      else if (type == TCA_BPF_NAME)
        f.bpfName = AttrString(data, len);
    });
  return true;
}

// The kernel's reason from an extended ack, if it sent one.
std::string ExtAck(const nlmsghdr *nh) {
  if (!(nh->nlmsg_flags & NLM_F_ACK_TLVS))
    return "";
  auto *err = static_cast<const nlmsgerr *>(NLMSG_DATA(nh));
  size_t offset = sizeof(nlmsgerr);
  if (!(nh->nlmsg_flags & NLM_F_CAPPED))
    offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
  if (NLMSG_LENGTH(offset) > nh->nlmsg_len)
    return "";
  std::string msg;
  ForEachAttr(reinterpret_cast<const char *>(err) + NLMSG_ALIGN(offset), nh->nlmsg_len - NLMSG_LENGTH(offset),
              [&](int type, const void *data, size_t len) {
                if (type == NLMSGERR_ATTR_MSG)
                  msg = AttrString(data, len);
              });
  return msg;
}

} // namespace

std::vector<TcFilter> DumpClsactFilters(uint32_t ifindex, bool ingress, const std::string &label) {
  const char *op = "RTM_GETTFILTER";
  UniqueFd sock(CheckErrno(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), "socket", label));
  int one = 1;
  setsockopt(sock.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one); // for better messages only

  DumpRequest req;
  memset(&req, 0, sizeof req);
  req.header.nlmsg_len = sizeof req;
  req.header.nlmsg_type = RTM_GETTFILTER;
  req.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.header.nlmsg_seq = kSeq;
  req.tc.tcm_family = AF_UNSPEC;
  req.tc.tcm_ifindex = static_cast<int>(ifindex);
  req.tc.tcm_parent = TC_H_MAKE(TC_H_CLSACT, ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
  sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  CheckErrno(static_cast<int>(sendto(sock.get(), &req, sizeof req, 0, reinterpret_cast<sockaddr *>(&kernel),
                                     sizeof kernel)),
             op, label);

  // The kernel fills dump messages up to 32 KiB.
  std::vector<char> buf(64 * 1024);
  std::vector<TcFilter> filters;
  for (;;) {
    ssize_t n = recv(sock.get(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR)
      continue;
    CheckErrno(static_cast<int>(n < 0 ? -1 : 0), op, label);
    auto *nh = reinterpret_cast<const nlmsghdr *>(buf.data());
    unsigned int left = static_cast<unsigned int>(n);
    for (; NLMSG_OK(nh, left); nh = NLMSG_NEXT(nh, left)) {
      if (nh->nlmsg_seq != kSeq)
        continue;
      if (nh->nlmsg_type == NLMSG_DONE) {
        int err = 0; // a dump that failed half-way says so here
        if (nh->nlmsg_len >= NLMSG_LENGTH(sizeof err))
          memcpy(&err, NLMSG_DATA(nh), sizeof err);
        if (err < 0)
          Fail(-err, op, label);
        return filters;
      }
      if (nh->nlmsg_type == NLMSG_ERROR) {
        int err = -static_cast<const nlmsgerr *>(NLMSG_DATA(nh))->error;
        if (err == 0)
          continue;
        Fail(err, op, label, ExtAck(nh));
      }
      TcFilter f;
      if (nh->nlmsg_type == RTM_NEWTFILTER && ParseFilter(nh, f))
        filters.push_back(std::move(f));
    }
  }
}

} // namespace vmpeer
