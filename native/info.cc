#include "info.h"

#include "errors.h"
#include "fd.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstring>

namespace vmpeer {

ProgInfo GetProgInfo(int fd, const std::string &object) {
  bpf_prog_info info;
  memset(&info, 0, sizeof info);
  __u32 len = sizeof info;
  Check(bpf_obj_get_info_by_fd(fd, &info, &len), "bpf_obj_get_info_by_fd", object);
  return {info.id, info.name, info.xlated_prog_len / static_cast<uint32_t>(sizeof(bpf_insn)), info.verified_insns};
}

MapInfo GetMapInfo(int fd, const std::string &object) {
  bpf_map_info info;
  memset(&info, 0, sizeof info);
  __u32 len = sizeof info;
  Check(bpf_obj_get_info_by_fd(fd, &info, &len), "bpf_obj_get_info_by_fd", object);
  return {info.id, info.type, info.key_size, info.value_size, info.max_entries};
}

std::string ProgNameById(uint32_t id) {
  UniqueFd fd(bpf_prog_get_fd_by_id(id));
  if (fd.get() < 0)
    return "";
  bpf_prog_info info;
  memset(&info, 0, sizeof info);
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) < 0)
    return "";
  return info.name;
}

bool IsPerCpu(uint32_t mapType) {
  switch (mapType) {
  case BPF_MAP_TYPE_PERCPU_HASH:
  case BPF_MAP_TYPE_PERCPU_ARRAY:
  case BPF_MAP_TYPE_LRU_PERCPU_HASH:
  case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE:
    return true;
  default:
    return false;
  }
}

uint32_t ValueBufferSize(const MapInfo &m, const std::string &object) {
  if (!IsPerCpu(m.type))
    return m.valueSize;
  int cpus = Check(libbpf_num_possible_cpus(), "libbpf_num_possible_cpus", object);
  return ((m.valueSize + 7) / 8 * 8) * static_cast<uint32_t>(cpus);
}

} // namespace vmpeer
