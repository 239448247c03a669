// Kernel UAPI that the Debian bookworm headers (Linux 6.1) lack: tcx links and
// the extended BPF_PROG_QUERY (Linux 6.6). Values from include/uapi/linux/bpf.h
// upstream. Enum values get names of our own so that newer headers, which
// define them as enumerators, still compile.
#pragma once

#include <linux/bpf.h>
#include <linux/types.h>

namespace vmpeer::uapi {

constexpr __u32 kTcxIngress = 46;  // BPF_TCX_INGRESS
constexpr __u32 kTcxEgress = 47;   // BPF_TCX_EGRESS
constexpr __u32 kLinkTypeTcx = 11; // BPF_LINK_TYPE_TCX

// BPF_PROG_QUERY attributes as extended for tcx (bpf_mprog).
struct ProgQueryAttr {
  __u32 target_ifindex;
  __u32 attach_type;
  __u32 query_flags;
  __u32 attach_flags;
  __aligned_u64 prog_ids;
  __u32 count; // in: room in prog_ids / link_ids; out: programs at the hook
  __u32 : 32;
  __aligned_u64 prog_attach_flags;
  __aligned_u64 link_ids;
  __aligned_u64 link_attach_flags;
  __u64 revision;
};

// The start of struct bpf_link_info with the union's tcx member.
struct TcxLinkInfo {
  __u32 type;
  __u32 id;
  __u32 prog_id;
  __u32 : 32; // the union is 8-byte aligned
  __u32 ifindex; // 0 once the device is gone
  __u32 attach_type;
};

} // namespace vmpeer::uapi

#ifndef BPF_F_BEFORE
#define BPF_F_BEFORE (1U << 3) // with no relative fd/id: before every program
#endif
#ifndef BPF_F_AFTER
#define BPF_F_AFTER (1U << 4)
#endif
