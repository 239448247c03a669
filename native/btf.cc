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
}

} // namespace vmpeer
