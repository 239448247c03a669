#include "args.h"

#include "errors.h"

#include <climits>
#include <cmath>

namespace vmpeer {

namespace {

bool Absent(const Napi::Value &v) { return v.IsUndefined() || v.IsNull(); }

std::string AsString(const Napi::Value &v, const char *fn, const std::string &name) {
  if (!v.IsString())
    BadArgument(fn, name + " must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos)
    BadArgument(fn, name + " must not contain NUL characters");
  return s;
}

uint32_t AsUint32(const Napi::Value &v, const char *fn, const std::string &name) {
  if (!v.IsNumber())
    BadArgument(fn, name + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= UINT32_MAX) || std::floor(d) != d)
    BadArgument(fn, name + " must be an integer from 0 to 4294967295");
  return static_cast<uint32_t>(d);
}

int AsFd(const Napi::Value &v, const char *fn, const std::string &name) {
  uint32_t n = AsUint32(v, fn, name);
  if (n > INT_MAX)
    BadArgument(fn, name + " is not a file descriptor");
  return static_cast<int>(n);
}

Napi::Buffer<uint8_t> AsBuffer(const Napi::Value &v, const char *fn, const std::string &name) {
  if (!v.IsBuffer())
    BadArgument(fn, name + " must be a Buffer");
  return v.As<Napi::Buffer<uint8_t>>();
}

Napi::Object AsObject(const Napi::Value &v, const char *fn, const std::string &name) {
  if (!v.IsObject())
    BadArgument(fn, name + " must be an object");
  return v.As<Napi::Object>();
}

} // namespace

std::string Args::string(size_t i, const char *name) const { return AsString(info_[i], fn_, name); }

std::optional<std::string> Args::optString(size_t i, const char *name) const {
  if (Absent(info_[i]))
    return std::nullopt;
  return AsString(info_[i], fn_, name);
}

uint32_t Args::uint32(size_t i, const char *name) const { return AsUint32(info_[i], fn_, name); }

std::optional<uint32_t> Args::optUint32(size_t i, const char *name) const {
  if (Absent(info_[i]))
    return std::nullopt;
  return AsUint32(info_[i], fn_, name);
}

int Args::fd(size_t i, const char *name) const { return AsFd(info_[i], fn_, name); }

Napi::Buffer<uint8_t> Args::buffer(size_t i, const char *name) const {
  return AsBuffer(info_[i], fn_, name);
}

Napi::Object Args::object(size_t i, const char *name) const { return AsObject(info_[i], fn_, name); }

std::optional<Napi::Object> Args::optObject(size_t i, const char *name) const {
  if (Absent(info_[i]))
    return std::nullopt;
  return AsObject(info_[i], fn_, name);
}

void Args::bad(const std::string &message) const { BadArgument(fn_, message); }

std::string Fields::string(const char *key) const { return AsString(object_.Get(key), fn_, key); }

std::optional<std::string> Fields::optString(const char *key) const {
  Napi::Value v = object_.Get(key);
  if (Absent(v))
    return std::nullopt;
  return AsString(v, fn_, key);
}

std::optional<uint32_t> Fields::optUint32(const char *key) const {
  Napi::Value v = object_.Get(key);
  if (Absent(v))
    return std::nullopt;
  return AsUint32(v, fn_, key);
}

int Fields::fd(const char *key) const { return AsFd(object_.Get(key), fn_, key); }

bool Fields::optBool(const char *key, bool fallback) const {
  Napi::Value v = object_.Get(key);
  if (Absent(v))
    return fallback;
  if (!v.IsBoolean())
    BadArgument(fn_, std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::optional<Napi::Buffer<uint8_t>> Fields::optBuffer(const char *key) const {
  Napi::Value v = object_.Get(key);
  if (Absent(v))
    return std::nullopt;
  return AsBuffer(v, fn_, key);
}

Napi::Buffer<uint8_t> Fields::buffer(const char *key) const { return AsBuffer(object_.Get(key), fn_, key); }

int Fields::choice(const char *key, std::initializer_list<const char *> choices) const {
  Napi::Value v = object_.Get(key);
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  int i = 0;
  std::string expected;
  for (const char *c : choices) {
    if (s == c)
      return i;
    expected += (i ? " or '" : "'") + std::string(c) + "'";
    i++;
  }
  BadArgument(fn_, std::string(key) + " must be " + expected);
}

void Fields::bad(const std::string &message) const { BadArgument(fn_, message); }

} // namespace vmpeer
