#include "tcx.h"

#include "errors.h"
#include "fd.h"
#include "info.h"
#include "uapi.h"

#include <bpf/bpf.h>

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace vmpeer {

namespace {

__u32 AttachType(bool ingress) { return ingress ? uapi::kTcxIngress : uapi::kTcxEgress; }

uapi::TcxLinkInfo LinkInfo(int fd, const std::string &label) {
  uapi::TcxLinkInfo info;
  memset(&info, 0, sizeof info);
  __u32 len = sizeof info;
  Check(bpf_obj_get_info_by_fd(fd, &info, &len), "bpf_obj_get_info_by_fd", label);
  return info;
}

// libbpf 1.1 knows no tcx: the raw BPF_PROG_QUERY with the 6.6 attributes.
int Query(uapi::ProgQueryAttr &attr) {
  return static_cast<int>(syscall(__NR_bpf, BPF_PROG_QUERY, &attr, sizeof attr));
}

} // namespace

Attachment TcxAttach(uint32_t ifindex, bool ingress, int progFd, const std::optional<std::string> &pinPath,
                     bool first, const std::string &label) {
  struct stat st;
  if (pinPath && lstat(pinPath->c_str(), &st) == 0)
    Fail(EEXIST, "bpf_obj_pin", label, *pinPath + " exists");

  Attachment a;
  a.tcx = true;
  a.ifindex = ifindex;
  a.progId = GetProgInfo(progFd, label).id;

  bpf_link_create_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  // No relative fd / id: BPF_F_BEFORE means before all, no flag after all.
  opts.flags = first ? BPF_F_BEFORE : 0;
  UniqueFd link(Check(bpf_link_create(progFd, static_cast<int>(ifindex),
                                      static_cast<bpf_attach_type>(AttachType(ingress)), &opts),
                      "bpf_link_create", label));
  a.linkId = LinkInfo(link.get(), label).id;

  if (pinPath) {
    int rc = bpf_obj_pin(link.get(), pinPath->c_str());
    if (rc < 0) {
      bpf_link_detach(link.get());
      Fail(-rc, "bpf_obj_pin", label, *pinPath);
    }
  } else {
    a.linkFd = link.release();
  }
  return a;
}

bool TcxDetach(const std::string &pinPath, bool ingress, std::optional<uint32_t> progId,
               const std::string &label) {
  int fd = bpf_obj_get(pinPath.c_str());
  if (fd == -ENOENT)
    return false;
  UniqueFd link(Check(fd, "bpf_obj_get", label, pinPath));

  uapi::TcxLinkInfo info = LinkInfo(link.get(), label);
  if (info.type != uapi::kLinkTypeTcx || info.attach_type != AttachType(ingress))
    Fail(EINVAL, "bpf_link_detach", label, pinPath + " is not a tcx link at this hook");
  if (progId && info.prog_id != *progId)
    Fail(EBUSY, "bpf_link_detach", label,
         pinPath + " links program " + std::to_string(info.prog_id) + ", not " + std::to_string(*progId));

  Check(bpf_link_detach(link.get()), "bpf_link_detach", label, pinPath);
  CheckErrno(unlink(pinPath.c_str()), "unlink", label, pinPath);
  return true;
}

void TcxReplace(const std::string &pinPath, int progFd, uint32_t oldProgId, const std::string &label) {
  UniqueFd link(Check(bpf_obj_get(pinPath.c_str()), "bpf_obj_get", label, pinPath));
  uapi::TcxLinkInfo info = LinkInfo(link.get(), label);
  if (info.type != uapi::kLinkTypeTcx)
    Fail(EINVAL, "bpf_link_update", label, pinPath + " is not a tcx link");
  UniqueFd old(Check(bpf_prog_get_fd_by_id(oldProgId), "bpf_prog_get_fd_by_id", label,
                     "program " + std::to_string(oldProgId)));
  bpf_link_update_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.flags = BPF_F_REPLACE; // the kernel compares: EPERM when the link runs another program by now
  opts.old_prog_fd = old.get();
  Check(bpf_link_update(link.get(), progFd, &opts), "bpf_link_update", label, pinPath);
}

std::vector<TcxProg> TcxQuery(uint32_t ifindex, bool ingress, const std::string &label) {
  std::vector<__u32> progIds, linkIds;
  // The count can grow between two calls: ask again while it does.
  for (int attempt = 0;; attempt++) {
    uapi::ProgQueryAttr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_ifindex = ifindex;
    attr.attach_type = AttachType(ingress);
    attr.count = static_cast<__u32>(progIds.size());
    attr.prog_ids = reinterpret_cast<__u64>(progIds.data());
    attr.link_ids = reinterpret_cast<__u64>(linkIds.data());
    int rc = Query(attr);
    if (rc == 0 && attr.count <= progIds.size()) {
      progIds.resize(attr.count);
      break;
    }
    if (rc < 0 && errno == EINVAL && attempt == 0)
      return {}; // a kernel without tcx
    if (rc < 0 && (errno != ENOSPC || attempt > 8))
      Fail(errno, "BPF_PROG_QUERY", label);
    progIds.resize(attr.count + 4);
    linkIds.resize(attr.count + 4);
  }
  std::vector<TcxProg> progs;
  for (size_t i = 0; i < progIds.size(); i++)
    progs.push_back({progIds[i], linkIds[i]});
  return progs;
}

bool TcxSupported() {
  uapi::ProgQueryAttr attr;
  memset(&attr, 0, sizeof attr);
  attr.target_ifindex = 1; // loopback, in every netns
  attr.attach_type = uapi::kTcxIngress;
  return Query(attr) == 0;
}

} // namespace vmpeer
