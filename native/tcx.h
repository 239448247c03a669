// tcx (Linux >= 6.6): BPF links at an interface's ingress or egress.
#pragma once

#include "hook.h"

#include <optional>
#include <string>
#include <vector>

namespace vmpeer {

struct TcxProg {
  uint32_t progId;
  uint32_t linkId; // 0 for a program attached without a link
};

// Links `progFd` after every program at the hook, or before all of them with
// `first`. With `pinPath` the link is pinned there and no fd is kept; the
// pin must not exist yet.
Attachment TcxAttach(uint32_t ifindex, bool ingress, int progFd, const std::optional<std::string> &pinPath,
                     bool first, const std::string &label);

// Detaches the link pinned at `pinPath` and removes the pin; false when
// there is no such pin. Needs no netns: the pin names the link.
bool TcxDetach(const std::string &pinPath, bool ingress, std::optional<uint32_t> progId,
               const std::string &label);

// Swaps the program of the link pinned at `pinPath` (BPF_LINK_UPDATE, with
// BPF_F_REPLACE: only when it still runs `oldProgId`): the link keeps its id
// and its place among the hook's programs. Needs no netns.
void TcxReplace(const std::string &pinPath, int progFd, uint32_t oldProgId, const std::string &label);

// The programs at the hook in run order; empty on kernels without tcx.
std::vector<TcxProg> TcxQuery(uint32_t ifindex, bool ingress, const std::string &label);

bool TcxSupported();

} // namespace vmpeer
