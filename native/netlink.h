// Listing tc filters over rtnetlink (RTM_GETTFILTER dump).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmpeer {

struct TcFilter {
  uint32_t handle;
  uint32_t priority;
  uint32_t chain;
  std::string kind;    // "bpf", "u32", "matchall", ...
  uint32_t progId;     // bpf only
  std::string bpfName; // bpf only: TCA_BPF_NAME, e.g. "fixup:[42]"
};

// The filters under the clsact qdisc's ingress or egress, in the order the
// kernel runs them; empty when the interface has no clsact qdisc.
std::vector<TcFilter> DumpClsactFilters(uint32_t ifindex, bool ingress, const std::string &label);

} // namespace vmpeer
