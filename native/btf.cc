// Struct layouts from BTF, and the layout of a map's value as the kernel
// keeps it: a map created with BTF keeps its btf_id and btf_value_type_id
// (bpf_map_info) for as long as it lives, so a newer build can read an older
// build's struct by field name (kernel/bpf/syscall.c: map_create keeps
// map->btf; bpf_map_get_info_by_fd reports it).
#include "btf.h"

#include "args.h"
#include "errors.h"
#include "exports.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cstring>
#include <memory>
#include <vector>

#include "fd.h"

namespace vmpeer {

Napi::Value StructLayoutOf(Napi::Env env, const btf *btf, int typeId, const std::string &label) {
  int id = btf__resolve_type(btf, typeId);
  if (id < 0)
    return env.Null();
  const btf_type *t = btf__type_by_id(btf, id);
  if (!t || !btf_is_struct(t))
    return env.Null();
  const char *name = btf__name_by_offset(btf, t->name_off);
  const btf_member *m = btf_members(t);
  Napi::Array members = Napi::Array::New(env);
  for (uint32_t i = 0; i < btf_vlen(t); i++, m++) {
    uint32_t bitOffset = btf_member_bit_offset(t, i);
    uint32_t bitSize = btf_member_bitfield_size(t, i);
    long size = bitSize ? (bitOffset % 8 + bitSize + 7) / 8 : btf__resolve_size(btf, m->type);
    const char *memberName = btf__name_by_offset(btf, m->name_off);
    if (size < 0)
      Fail(static_cast<int>(-size), "btf__resolve_size", label, memberName);
    Napi::Object member = Napi::Object::New(env);
    member.Set("name", memberName);
    member.Set("offset", bitOffset / 8);
    member.Set("size", static_cast<double>(size));
    members.Set(i, member);
  }
  Napi::Object layout = Napi::Object::New(env);
  layout.Set("name", name ? name : "");
  layout.Set("size", t->size);
  layout.Set("members", members);
  return layout;
}

namespace {

// mapValueStruct(mapFd): the layout of the map's value struct from the BTF
// the kernel keeps for the map; null when the map has no BTF or its value
// is not a struct.
Napi::Value MapValueStruct(const Napi::CallbackInfo &info) {
  Args args(info, "mapValueStruct");
  int fd = args.fd(0, "mapFd");
  std::string label = "map fd " + std::to_string(fd);
  bpf_map_info mi;
  memset(&mi, 0, sizeof mi);
  __u32 len = sizeof mi;
  Check(bpf_obj_get_info_by_fd(fd, &mi, &len), "bpf_obj_get_info_by_fd", label);
  if (mi.btf_id == 0 || mi.btf_value_type_id == 0)
    return info.Env().Null();
  std::unique_ptr<btf, decltype(&btf__free)> kernelBtf(btf__load_from_kernel_by_id(mi.btf_id), &btf__free);
  if (!kernelBtf)
    Fail(errno, "btf__load_from_kernel_by_id", label);
  return StructLayoutOf(info.Env(), kernelBtf.get(), static_cast<int>(mi.btf_value_type_id), label);
}

// progConstants(progFd): the variables of the program's .rodata map (the
// `const volatile` globals user space set before load), by name, from the
// BTF the kernel keeps for that map: its value type is the section's
// DATASEC. Variables of 1, 2 or 4 bytes only. Null when the program has no
// .rodata map with BTF. A .rodata map is frozen at load, so what it says
// holds for the program's whole life.
Napi::Value ProgConstants(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Args args(info, "progConstants");
  int fd = args.fd(0, "progFd");
  std::string label = "program fd " + std::to_string(fd);
  bpf_prog_info pi;
  memset(&pi, 0, sizeof pi);
  __u32 len = sizeof pi;
  Check(bpf_obj_get_info_by_fd(fd, &pi, &len), "bpf_obj_get_info_by_fd", label);
  std::vector<__u32> ids(pi.nr_map_ids);
  if (ids.empty())
    return env.Null();
  memset(&pi, 0, sizeof pi);
  pi.nr_map_ids = static_cast<__u32>(ids.size());
  pi.map_ids = reinterpret_cast<__u64>(ids.data());
  len = sizeof pi;
  Check(bpf_obj_get_info_by_fd(fd, &pi, &len), "bpf_obj_get_info_by_fd", label);
  for (__u32 id : ids) {
    UniqueFd map(bpf_map_get_fd_by_id(id));
    if (map.get() < 0)
      continue;
    bpf_map_info mi;
    memset(&mi, 0, sizeof mi);
    len = sizeof mi;
    if (bpf_obj_get_info_by_fd(map.get(), &mi, &len) < 0 || mi.btf_id == 0 || mi.btf_value_type_id == 0 || mi.max_entries != 1)
      continue;
    std::unique_ptr<btf, decltype(&btf__free)> kernelBtf(btf__load_from_kernel_by_id(mi.btf_id), &btf__free);
    if (!kernelBtf)
      continue;
    const btf *b = kernelBtf.get();
    const btf_type *sec = btf__type_by_id(b, mi.btf_value_type_id);
    const char *secName = sec ? btf__name_by_offset(b, sec->name_off) : nullptr;
    if (!sec || !btf_is_datasec(sec) || !secName || std::strcmp(secName, ".rodata") != 0)
      continue;
    std::vector<uint8_t> value(mi.value_size);
    uint32_t key = 0;
    Check(bpf_map_lookup_elem(map.get(), &key, value.data()), "bpf_map_lookup_elem", label, ".rodata");
    Napi::Object out = Napi::Object::New(env);
    const btf_var_secinfo *v = btf_var_secinfos(sec);
    for (uint32_t i = 0; i < btf_vlen(sec); i++, v++) {
      if ((v->size != 1 && v->size != 2 && v->size != 4) || v->offset + v->size > value.size())
        continue;
      uint32_t x = 0;
      std::memcpy(&x, value.data() + v->offset, v->size); // little-endian hosts
      out.Set(btf__name_by_offset(b, btf__type_by_id(b, v->type)->name_off), x);
    }
    return out;
  }
  return env.Null();
}

// mapCreate(type, keySize, valueSize, maxEntries, name): a new map's fd (no BTF).
Napi::Value MapCreate(const Napi::CallbackInfo &info) {
  Args args(info, "mapCreate");
  uint32_t type = args.uint32(0, "type");
  uint32_t keySize = args.uint32(1, "keySize");
  uint32_t valueSize = args.uint32(2, "valueSize");
  uint32_t maxEntries = args.uint32(3, "maxEntries");
  std::string name = args.string(4, "name");
  int fd = bpf_map_create(static_cast<bpf_map_type>(type), name.c_str(), keySize, valueSize, maxEntries, nullptr);
  return Napi::Number::New(info.Env(), Check(fd, "bpf_map_create", name));
}

} // namespace

void InitBtf(Napi::Env env, Napi::Object exports) {
  exports.Set("mapValueStruct", Napi::Function::New<Guard<MapValueStruct>>(env, "mapValueStruct"));
  exports.Set("mapCreate", Napi::Function::New<Guard<MapCreate>>(env, "mapCreate"));
  exports.Set("progConstants", Napi::Function::New<Guard<ProgConstants>>(env, "progConstants"));
}

} // namespace vmpeer
