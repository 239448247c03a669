// openObject(): a loaded BPF object with its programs, maps and BTF.
#include "args.h"
#include "btf.h"
#include "errors.h"
#include "exports.h"
#include "info.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <vector>

namespace vmpeer {

namespace {

struct ObjectCloser {
  void operator()(bpf_object *obj) const { bpf_object__close(obj); }
};
using ObjectPtr = std::unique_ptr<bpf_object, ObjectCloser>;

class BpfObject : public Napi::ObjectWrap<BpfObject> {
public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "BpfObject",
                       {InstanceMethod<&BpfObject::BtfStruct>("btfStruct"),
                        InstanceMethod<&BpfObject::Close>("close")});
  }

  // Only openObject() constructs one, handing over the bpf_object.
  explicit BpfObject(const Napi::CallbackInfo &info) : Napi::ObjectWrap<BpfObject>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "BpfObject is made by openObject()");
    obj_.reset(info[0].As<Napi::External<bpf_object>>().Data());
  }

private:
  Napi::Value BtfStruct(const Napi::CallbackInfo &info) {
    return Guarded(info.Env(), [&] { return StructLayout(info); });
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    obj_.reset();
    return info.Env().Undefined();
  }

  Napi::Value StructLayout(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::string name = Args(info, "btfStruct").string(0, "name");
    if (!obj_)
      Fail(EBADF, "btfStruct", name, "the object is closed");
    const btf *btf = bpf_object__btf(obj_.get());
    if (!btf)
      return env.Null();
    int id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_STRUCT);
    if (id < 0)
      return env.Null();
    return StructLayoutOf(env, btf, id, name);
  }

  ObjectPtr obj_;
};

// The verifier's statistics (log level BPF_LOG_STATS = 4, since 5.2) end with
// "processed N insns (limit ...)" (kernel/bpf/verifier.c, print_verification_stats).
constexpr uint32_t kLogStats = 4;
constexpr size_t kStatsLogSize = 1024;

uint32_t ProcessedInsns(const std::string &log) {
  size_t at = log.find("processed ");
  return at == std::string::npos ? 0 : static_cast<uint32_t>(std::strtoul(log.c_str() + at + 10, nullptr, 10));
}

Napi::Array Programs(Napi::Env env, bpf_object *obj, const std::string &label,
                     const std::map<std::string, std::string> &statsLogs) {
  Napi::Array list = Napi::Array::New(env);
  bpf_program *prog;
  uint32_t i = 0;
  bpf_object__for_each_program(prog, obj) {
    int fd = bpf_program__fd(prog);
    if (fd < 0)
      continue; // not loaded (autoload off)
    ProgInfo pi = GetProgInfo(fd, label);
    Napi::Object p = Napi::Object::New(env);
    p.Set("name", bpf_program__name(prog));
    p.Set("fd", fd);
    p.Set("id", pi.id);
    p.Set("insnCount", pi.insnCount);
    auto log = statsLogs.find(bpf_program__name(prog));
    if (log != statsLogs.end()) // the kernel's count (>= 5.16), else the one in the log
      p.Set("verifiedInsns", pi.verifiedInsns ? pi.verifiedInsns : ProcessedInsns(log->second));
    list.Set(i++, p);
  }
  return list;
}

Napi::Array Maps(Napi::Env env, bpf_object *obj, const std::string &label) {
  Napi::Array list = Napi::Array::New(env);
  bpf_map *map;
  uint32_t i = 0;
  bpf_object__for_each_map(map, obj) {
    int fd = bpf_map__fd(map);
    MapInfo mi = GetMapInfo(fd, label);
    const char *pin = bpf_map__pin_path(map);
    Napi::Object m = Napi::Object::New(env);
    m.Set("name", bpf_map__name(map));
    m.Set("fd", fd);
    m.Set("id", mi.id);
    m.Set("type", mi.type);
    m.Set("keySize", mi.keySize);
    m.Set("valueSize", mi.valueSize);
    m.Set("maxEntries", mi.maxEntries);
    m.Set("pinPath", pin ? Napi::Value(Napi::String::New(env, pin)) : env.Null());
    list.Set(i++, m);
  }
  return list;
}

// What openObject() does to the object between open and load.
struct LoadPlan {
  std::optional<std::string> pinDir;
  bool verifierStats = false;
  std::optional<std::set<std::string>> programs;       // load only these
  std::map<std::string, uint32_t> constants;          // .rodata variables to set
  std::map<std::string, int> reuseMaps;               // map name -> fd to use instead of a new map
};

// { name: uint32 } of an options field, checked.
template <typename T>
std::map<std::string, T> NumberRecord(const Fields &fields, const Napi::Object &options, const char *key) {
  std::map<std::string, T> out;
  Napi::Value v = options.Get(key);
  if (v.IsUndefined() || v.IsNull())
    return out;
  if (!v.IsObject())
    fields.bad(std::string(key) + " must be an object of numbers");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Array names = o.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string name = names.Get(i).As<Napi::String>().Utf8Value();
    Napi::Value n = o.Get(name);
    if (!n.IsNumber() || n.As<Napi::Number>().DoubleValue() < 0 || n.As<Napi::Number>().DoubleValue() > 0xffffffffu)
      fields.bad(std::string(key) + "." + name + " must be a number from 0 to 2^32-1");
    out[name] = static_cast<T>(n.As<Napi::Number>().Int64Value());
  }
  return out;
}

LoadPlan ParsePlan(const Args &args) {
  LoadPlan plan;
  auto options = args.optObject(1, "options");
  if (!options)
    return plan;
  Fields fields(*options, "openObject");
  plan.pinDir = fields.optString("pinMapsIn");
  plan.verifierStats = fields.optBool("verifierStats", false);
  Napi::Value programs = options->Get("programs");
  if (!programs.IsUndefined() && !programs.IsNull()) {
    if (!programs.IsArray())
      fields.bad("programs must be an array of program names");
    Napi::Array list = programs.As<Napi::Array>();
    plan.programs.emplace();
    for (uint32_t i = 0; i < list.Length(); i++) {
      if (!list.Get(i).IsString())
        fields.bad("programs must be an array of program names");
      plan.programs->insert(list.Get(i).As<Napi::String>().Utf8Value());
    }
  }
  plan.constants = NumberRecord<uint32_t>(fields, *options, "constants");
  plan.reuseMaps = NumberRecord<int>(fields, *options, "reuseMaps");
  return plan;
}

// The map of the object's .rodata section; null when it has none.
bpf_map *RodataMap(bpf_object *obj) {
  bpf_map *map;
  bpf_object__for_each_map(map, obj) {
    const char *name = bpf_map__name(map);
    size_t len = std::strlen(name);
    // libbpf names it "<object prefix>.rodata" (or ".rodata" where the kernel takes dots)
    if (bpf_map__is_internal(map) && len >= 7 && std::strcmp(name + len - 7, ".rodata") == 0)
      return map;
  }
  return nullptr;
}

// Writes `const volatile` u32 globals into the .rodata image libbpf loads
// (bpf_map__set_initial_value, as a skeleton's rodata pointer would), found
// by name in the object's BTF: the kernel then freezes the map, so the verifier treats them
// as constants.
void SetConstants(bpf_object *obj, const std::map<std::string, uint32_t> &constants, const std::string &label) {
  if (constants.empty())
    return;
  bpf_map *map = RodataMap(obj);
  const btf *btf = bpf_object__btf(obj);
  int sec = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -1;
  size_t size = 0;
  const void *initial = map ? bpf_map__initial_value(map, &size) : nullptr;
  if (!map || sec < 0 || !initial)
    Fail(ENOENT, "openObject", label, "the object has no .rodata with BTF for its constants");
  std::vector<uint8_t> image(static_cast<const uint8_t *>(initial), static_cast<const uint8_t *>(initial) + size);
  const btf_type *t = btf__type_by_id(btf, sec);
  for (const auto &[name, value] : constants) {
    const btf_var_secinfo *v = btf_var_secinfos(t);
    bool found = false;
    for (uint32_t i = 0; i < btf_vlen(t); i++, v++) {
      const btf_type *var = btf__type_by_id(btf, v->type);
      if (name != btf__name_by_offset(btf, var->name_off))
        continue;
      if (v->size != sizeof value || v->offset + v->size > size)
        Fail(EINVAL, "openObject", label, "constant " + name + " is not a 32-bit value");
      std::memcpy(image.data() + v->offset, &value, sizeof value);
      found = true;
    }
    if (!found)
      Fail(ENOENT, "openObject", label, "the object has no constant " + name);
  }
  Check(bpf_map__set_initial_value(map, image.data(), image.size()), "bpf_map__set_initial_value", label, ".rodata");
}

// openObject(source: string | Buffer, options?: { pinMapsIn?, verifierStats?, programs?, constants?, reuseMaps? })
Napi::Value OpenObject(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Args args(info, "openObject");
  LoadPlan plan = ParsePlan(args);

  bpf_object *raw;
  std::string label;
  if (args.at(0).IsBuffer()) {
    Napi::Buffer<uint8_t> buf = args.buffer(0, "source");
    label = "buffer (" + std::to_string(buf.Length()) + " bytes)";
    raw = bpf_object__open_mem(buf.Data(), buf.Length(), nullptr);
    if (!raw)
      Fail(errno, "bpf_object__open_mem", label);
  } else {
    label = args.string(0, "source");
    raw = bpf_object__open_file(label.c_str(), nullptr);
    if (!raw)
      Fail(errno, "bpf_object__open_file", label);
  }
  ObjectPtr obj(raw);

  {
    bpf_map *map;
    bpf_object__for_each_map(map, obj.get()) {
      auto reuse = plan.reuseMaps.find(bpf_map__name(map));
      if (reuse != plan.reuseMaps.end()) {
        // libbpf checks the map's shape against the definition, as for a pin
        Check(bpf_map__reuse_fd(map, reuse->second), "bpf_map__reuse_fd", label, bpf_map__name(map));
        continue;
      }
      // Only the object's own maps are pinned: a pinned .rodata would be
      // reused by the next load, with the constants of the one before.
      if (plan.pinDir && !bpf_map__is_internal(map)) {
        // libbpf then reuses a compatible map pinned there and pins the new ones.
        std::string path = *plan.pinDir + "/" + bpf_map__name(map);
        Check(bpf_map__set_pin_path(map, path.c_str()), "bpf_map__set_pin_path", label, path);
      }
    }
  }
  if (plan.programs) {
    bpf_program *prog;
    bpf_object__for_each_program(prog, obj.get()) {
      Check(bpf_program__set_autoload(prog, plan.programs->count(bpf_program__name(prog)) > 0), "bpf_program__set_autoload", label, bpf_program__name(prog));
    }
  }
  SetConstants(obj.get(), plan.constants, label);
  std::map<std::string, std::string> statsLogs;
  if (plan.verifierStats) {
    bpf_program *prog;
    bpf_object__for_each_program(prog, obj.get()) {
      std::string &log = statsLogs[bpf_program__name(prog)];
      log.assign(kStatsLogSize, '\0');
      bpf_program__set_log_level(prog, kLogStats);
      bpf_program__set_log_buf(prog, log.data(), log.size());
    }
  }
  Check(bpf_object__load(obj.get()), "bpf_object__load", label);

  Napi::Array programs = Programs(env, obj.get(), label, statsLogs);
  Napi::Array maps = Maps(env, obj.get(), label);
  auto *ctor = env.GetInstanceData<Napi::FunctionReference>();
  Napi::Object instance = ctor->New({Napi::External<bpf_object>::New(env, obj.release())});
  instance.DefineProperties({
      Napi::PropertyDescriptor::Value("programs", programs, napi_enumerable),
      Napi::PropertyDescriptor::Value("maps", maps, napi_enumerable),
  });
  return instance;
}

} // namespace

void InitObject(Napi::Env env, Napi::Object exports) {
  auto *ctor = new Napi::FunctionReference(Napi::Persistent(BpfObject::Define(env)));
  env.SetInstanceData<Napi::FunctionReference>(ctor);
  exports.Set("openObject", Napi::Function::New<Guard<OpenObject>>(env, "openObject"));
}

} // namespace vmpeer
