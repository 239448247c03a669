// openObject(): a loaded BPF object with its programs, maps and BTF.
#include "args.h"
#include "btf.h"
#include "errors.h"
#include "exports.h"
#include "info.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cstdlib>
#include <map>
#include <memory>

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

// openObject(source: string | Buffer, options?: { pinMapsIn?: string, verifierStats?: boolean })
Napi::Value OpenObject(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Args args(info, "openObject");
  std::optional<std::string> pinDir;
  bool verifierStats = false;
  if (auto options = args.optObject(1, "options")) {
    Fields fields(*options, "openObject");
    pinDir = fields.optString("pinMapsIn");
    verifierStats = fields.optBool("verifierStats", false);
  }

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

  if (pinDir) {
    // libbpf then reuses a compatible map pinned there and pins the new ones.
    bpf_map *map;
    bpf_object__for_each_map(map, obj.get()) {
      std::string path = *pinDir + "/" + bpf_map__name(map);
      Check(bpf_map__set_pin_path(map, path.c_str()), "bpf_map__set_pin_path", label, path);
    }
  }
  std::map<std::string, std::string> statsLogs;
  if (verifierStats) {
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
