// Struct layouts from BTF: an object's own, or the BTF the kernel keeps for a map.
#pragma once

#include <napi.h>

#include <string>

struct btf;

namespace vmpeer {

// { name, size, members: [{ name, offset, size }] } of the struct `typeId`
// (typedefs and qualifiers resolved); null when it is not a struct.
Napi::Value StructLayoutOf(Napi::Env env, const btf *btf, int typeId, const std::string &label);

} // namespace vmpeer
