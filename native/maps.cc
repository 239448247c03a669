// Map element access by fd. Sizes are checked against the kernel's view of
// the map first: the kernel reads and writes as many bytes as the map says.
#include "args.h"
#include "errors.h"
#include "exports.h"
#include "info.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <vector>

namespace vmpeer {

namespace {

std::string MapLabel(int fd) { return "map fd " + std::to_string(fd); }

void CheckKey(const Args &args, const MapInfo &m, size_t keyLength) {
  if (keyLength != m.keySize)
    args.bad("key is " + std::to_string(keyLength) + " bytes, the map's keys are " +
             std::to_string(m.keySize));
}

Napi::Value PossibleCpus(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), Check(libbpf_num_possible_cpus(), "libbpf_num_possible_cpus", ""));
}

// mapLookup(mapFd, key, valueSize): Buffer | null
Napi::Value MapLookup(const Napi::CallbackInfo &info) {
  Args args(info, "mapLookup");
  int fd = args.fd(0, "mapFd");
  Napi::Buffer<uint8_t> key = args.buffer(1, "key");
  uint32_t valueSize = args.uint32(2, "valueSize");
  std::string label = MapLabel(fd);
  MapInfo m = GetMapInfo(fd, label);
  CheckKey(args, m, key.Length());
  uint32_t expected = ValueBufferSize(m, label);
  if (valueSize != expected)
    args.bad("valueSize is " + std::to_string(valueSize) + ", the map's values take " +
             std::to_string(expected) + " bytes" + (IsPerCpu(m.type) ? " (all CPUs)" : ""));
  Napi::Buffer<uint8_t> value = Napi::Buffer<uint8_t>::New(info.Env(), valueSize);
  int rc = bpf_map_lookup_elem(fd, key.Data(), value.Data());
  if (rc == -ENOENT)
    return info.Env().Null();
  Check(rc, "bpf_map_lookup_elem", label);
  return value;
}

// mapUpdate(mapFd, key, value, flags = BPF_ANY)
Napi::Value MapUpdate(const Napi::CallbackInfo &info) {
  Args args(info, "mapUpdate");
  int fd = args.fd(0, "mapFd");
  Napi::Buffer<uint8_t> key = args.buffer(1, "key");
  Napi::Buffer<uint8_t> value = args.buffer(2, "value");
  uint32_t flags = args.optUint32(3, "flags").value_or(BPF_ANY);
  std::string label = MapLabel(fd);
  MapInfo m = GetMapInfo(fd, label);
  CheckKey(args, m, key.Length());
  uint32_t expected = ValueBufferSize(m, label);
  if (value.Length() != expected)
    args.bad("value is " + std::to_string(value.Length()) + " bytes, the map's values take " +
             std::to_string(expected) + (IsPerCpu(m.type) ? " (all CPUs)" : ""));
  Check(bpf_map_update_elem(fd, key.Data(), value.Data(), flags), "bpf_map_update_elem", label);
  return info.Env().Undefined();
}

// mapDelete(mapFd, key): false when the key was absent
Napi::Value MapDelete(const Napi::CallbackInfo &info) {
  Args args(info, "mapDelete");
  int fd = args.fd(0, "mapFd");
  Napi::Buffer<uint8_t> key = args.buffer(1, "key");
  std::string label = MapLabel(fd);
  CheckKey(args, GetMapInfo(fd, label), key.Length());
  int rc = bpf_map_delete_elem(fd, key.Data());
  if (rc == -ENOENT)
    return Napi::Boolean::New(info.Env(), false);
  Check(rc, "bpf_map_delete_elem", label);
  return Napi::Boolean::New(info.Env(), true);
}

// mapKeys(mapFd, keySize): every key, in the map's iteration order
Napi::Value MapKeys(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Args args(info, "mapKeys");
  int fd = args.fd(0, "mapFd");
  uint32_t keySize = args.uint32(1, "keySize");
  std::string label = MapLabel(fd);
  MapInfo m = GetMapInfo(fd, label);
  if (keySize != m.keySize)
    args.bad("keySize is " + std::to_string(keySize) + ", the map's keys are " + std::to_string(m.keySize));

  Napi::Array keys = Napi::Array::New(env);
  std::vector<uint8_t> prev(keySize), next(keySize);
  const void *from = nullptr; // NULL: the first key
  // A hash map whose current key is deleted meanwhile restarts from the
  // first key; the bound keeps that from looping forever.
  for (uint64_t n = 0; n <= 2ull * m.maxEntries; n++) {
    int rc = bpf_map_get_next_key(fd, from, next.data());
    if (rc == -ENOENT)
      return keys;
    Check(rc, "bpf_map_get_next_key", label);
    keys.Set(keys.Length(), Napi::Buffer<uint8_t>::Copy(env, next.data(), keySize));
    prev.swap(next);
    from = prev.data();
  }
  return keys;
}

// mapLookupAll(mapFd): the values of every slot of an array map, slot 0 first,
// in one Buffer (valueBufferSize bytes per slot), read with BPF_MAP_LOOKUP_BATCH
// (Linux >= 5.6 for arrays): one syscall per batch, not one per slot.
Napi::Value MapLookupAll(const Napi::CallbackInfo &info) {
  Args args(info, "mapLookupAll");
  int fd = args.fd(0, "mapFd");
  std::string label = MapLabel(fd);
  MapInfo m = GetMapInfo(fd, label);
  if (m.type != BPF_MAP_TYPE_ARRAY && m.type != BPF_MAP_TYPE_PERCPU_ARRAY)
    args.bad("mapLookupAll reads array maps only");
  uint32_t stride = ValueBufferSize(m, label);
  std::vector<uint32_t> keys(m.maxEntries);
  Napi::Buffer<uint8_t> values = Napi::Buffer<uint8_t>::New(info.Env(), size_t(stride) * m.maxEntries);
  uint32_t done = 0, cursor = 0;
  bool first = true;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  while (done < m.maxEntries) {
    uint32_t count = m.maxEntries - done;
    uint32_t next = 0;
    int rc = bpf_map_lookup_batch(fd, first ? nullptr : &cursor, &next, keys.data() + done,
                                  values.Data() + size_t(done) * stride, &count, &opts);
    // Some kernels have no batch op for this map type (seen on 5.10 for per-CPU
    // arrays: ENOTSUPP, 524, from map_lookup_batch being NULL): one lookup per slot.
    if (first && (rc == -524 || rc == -EOPNOTSUPP)) {
      for (uint32_t key = 0; key < m.maxEntries; key++)
        Check(bpf_map_lookup_elem(fd, &key, values.Data() + size_t(key) * stride), "bpf_map_lookup_elem", label);
      return values;
    }
    // the slots come in key order; ENOENT: the last batch reached the end
    if (rc < 0 && rc != -ENOENT)
      Check(rc, "bpf_map_lookup_batch", label);
    done += count;
    if (rc == -ENOENT || count == 0)
      break;
    cursor = next;
    first = false;
  }
  if (done != m.maxEntries)
    Fail(EIO, "bpf_map_lookup_batch", label, "read " + std::to_string(done) + " of " + std::to_string(m.maxEntries) + " slots");
  return values;
}

} // namespace

void InitMaps(Napi::Env env, Napi::Object exports) {
  exports.Set("possibleCpus", Napi::Function::New<Guard<PossibleCpus>>(env, "possibleCpus"));
  exports.Set("mapLookup", Napi::Function::New<Guard<MapLookup>>(env, "mapLookup"));
  exports.Set("mapUpdate", Napi::Function::New<Guard<MapUpdate>>(env, "mapUpdate"));
  exports.Set("mapDelete", Napi::Function::New<Guard<MapDelete>>(env, "mapDelete"));
  exports.Set("mapKeys", Napi::Function::New<Guard<MapKeys>>(env, "mapKeys"));
  exports.Set("mapLookupAll", Napi::Function::New<Guard<MapLookupAll>>(env, "mapLookupAll"));
}

} // namespace vmpeer
