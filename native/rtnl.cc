#include "rtnl.h"

#include "errors.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

namespace vmpeer::rtnl {

std::string AttrString(const void *data, size_t len) {
  return std::string(static_cast<const char *>(data), strnlen(static_cast<const char *>(data), len));
}

uint32_t AttrU32(const void *data, size_t len) {
  uint32_t v = 0;
  if (len >= sizeof v)
    memcpy(&v, data, sizeof v);
  return v;
}

uint8_t AttrU8(const void *data, size_t len) { return len >= 1 ? *static_cast<const uint8_t *>(data) : 0; }

std::string FormatMac(const void *data, size_t len) {
  static const char hex[] = "0123456789abcdef";
  auto *b = static_cast<const uint8_t *>(data);
  std::string s;
  for (size_t i = 0; i < len; i++) {
    if (i)
      s += ':';
    s += hex[b[i] >> 4];
    s += hex[b[i] & 15];
  }
  return s;
}

std::string FormatIp(int family, const void *data, size_t len) {
  char buf[INET6_ADDRSTRLEN];
  if ((family == AF_INET && len != 4) || (family == AF_INET6 && len != 16) || (family != AF_INET && family != AF_INET6))
    return "";
  return inet_ntop(family, data, buf, sizeof buf) ? std::string(buf) : std::string();
}

namespace {

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

UniqueFd OpenSocket(uint32_t groups, const std::string &label) {
  UniqueFd sock(CheckErrno(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), "socket", label));
  int one = 1;
  setsockopt(sock.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one); // for better messages only
  if (groups) {
    sockaddr_nl local;
    memset(&local, 0, sizeof local);
    local.nl_family = AF_NETLINK;
    local.nl_groups = groups;
    CheckErrno(bind(sock.get(), reinterpret_cast<sockaddr *>(&local), sizeof local), "bind", label);
  }
  return sock;
}

void Dump(int fd, uint16_t type, const void *header, size_t headerLen, const char *op, const std::string &label,
          const std::function<void(const nlmsghdr *)> &fn) {
  static thread_local uint32_t seq = 0;
  const uint32_t mySeq = ++seq;
  std::vector<char> req(NLMSG_SPACE(headerLen), 0);
  auto *nh = reinterpret_cast<nlmsghdr *>(req.data());
  nh->nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(headerLen));
  nh->nlmsg_type = type;
  nh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nh->nlmsg_seq = mySeq;
  memcpy(NLMSG_DATA(nh), header, headerLen);
  sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do
    sent = sendto(fd, req.data(), nh->nlmsg_len, 0, reinterpret_cast<sockaddr *>(&kernel), sizeof kernel);
  while (sent < 0 && errno == EINTR);
  CheckErrno(sent < 0 ? -1 : 0, op, label);

  // The kernel fills dump messages up to 32 KiB.
  std::vector<char> buf(64 * 1024);
  for (;;) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR)
      continue;
    CheckErrno(n < 0 ? -1 : 0, op, label);
    auto *m = reinterpret_cast<const nlmsghdr *>(buf.data());
    unsigned int left = static_cast<unsigned int>(n);
    for (; NLMSG_OK(m, left); m = NLMSG_NEXT(m, left)) {
      if (m->nlmsg_seq != mySeq)
        continue;
      if (m->nlmsg_type == NLMSG_DONE) {
        int err = 0; // a dump that failed half-way says so here
        if (m->nlmsg_len >= NLMSG_LENGTH(sizeof err))
          memcpy(&err, NLMSG_DATA(m), sizeof err);
        if (err < 0)
          Fail(-err, op, label);
        return;
      }
      if (m->nlmsg_type == NLMSG_ERROR) {
        int err = -static_cast<const nlmsgerr *>(NLMSG_DATA(m))->error;
        if (err == 0)
          continue;
        Fail(err, op, label, ExtAck(m));
      }
      fn(m);
    }
  }
}

void DumpLinks(int fd, const std::string &label, const std::function<void(const nlmsghdr *)> &fn) {
  struct {
    ifinfomsg ifi;
    rtattr mask;
    uint32_t maskValue;
  } req{};
  req.ifi.ifi_family = AF_UNSPEC;
  req.mask.rta_type = IFLA_EXT_MASK;
  req.mask.rta_len = RTA_LENGTH(sizeof(uint32_t));
  req.maskValue = RTEXT_FILTER_SKIP_STATS; // counters are not needed and are most of a link's message
  Dump(fd, RTM_GETLINK, &req, sizeof req, "RTM_GETLINK", label, fn);
}

} // namespace vmpeer::rtnl
