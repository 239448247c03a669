// What the kernel says about a program or map (BPF_OBJ_GET_INFO_BY_FD).
#pragma once

#include <cstdint>
#include <string>

namespace vmpeer {

struct ProgInfo {
  uint32_t id;
  std::string name; // the kernel's copy: at most 15 characters
  uint32_t insnCount; // xlated instructions
  uint32_t verifiedInsns; // what the verifier processed; 0 before Linux 5.16
};

struct MapInfo {
  uint32_t id;
  uint32_t type;
  uint32_t keySize;
  uint32_t valueSize; // per CPU for per-CPU maps
  uint32_t maxEntries;
};

ProgInfo GetProgInfo(int fd, const std::string &object);
MapInfo GetMapInfo(int fd, const std::string &object);
// Name of a loaded program; "" when it is gone.
std::string ProgNameById(uint32_t id);
bool IsPerCpu(uint32_t mapType);
// Bytes a lookup writes: the value, or one 8-byte-aligned value per possible CPU.
uint32_t ValueBufferSize(const MapInfo &m, const std::string &object);

} // namespace vmpeer
