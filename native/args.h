// Checked conversion of JS arguments and option fields; anything of the wrong
// type is a TypeError naming the function and the argument.
#pragma once

#include <napi.h>

#include <cstdint>
#include <optional>
#include <string>

namespace vmpeer {

class Args {
public:
  Args(const Napi::CallbackInfo &info, const char *fn) : info_(info), fn_(fn) {}

  Napi::Value at(size_t i) const { return info_[i]; }
  std::string string(size_t i, const char *name) const;
  std::optional<std::string> optString(size_t i, const char *name) const;
  uint32_t uint32(size_t i, const char *name) const;
  std::optional<uint32_t> optUint32(size_t i, const char *name) const;
  int fd(size_t i, const char *name) const;
  Napi::Buffer<uint8_t> buffer(size_t i, const char *name) const;
  Napi::Object object(size_t i, const char *name) const;
  std::optional<Napi::Object> optObject(size_t i, const char *name) const;
  [[noreturn]] void bad(const std::string &message) const;

private:
  const Napi::CallbackInfo &info_;
  const char *fn_;
};

// The fields of an options object.
class Fields {
public:
  Fields(Napi::Object object, const char *fn) : object_(object), fn_(fn) {}

  std::string string(const char *key) const;
  std::optional<std::string> optString(const char *key) const;
  std::optional<uint32_t> optUint32(const char *key) const;
  int fd(const char *key) const;
  bool optBool(const char *key, bool fallback) const;
  std::optional<Napi::Buffer<uint8_t>> optBuffer(const char *key) const;
  Napi::Buffer<uint8_t> buffer(const char *key) const;
  // One of `choices`, returned as its index.
  int choice(const char *key, std::initializer_list<const char *> choices) const;
  [[noreturn]] void bad(const std::string &message) const;

private:
  Napi::Object object_;
  const char *fn_;
};

} // namespace vmpeer
