#pragma once
// Each binding file registers its exports with VMAT_BINDING(name) { ... }, so that adding a module never means
// editing a central list.
#include <napi.h>

#include <functional>
#include <vector>

namespace vmat::binding {

using Registrar = void (*)(Napi::Env env, Napi::Object exports);

std::vector<Registrar>& registrars();

struct AutoRegister {
  explicit AutoRegister(Registrar registrar) { registrars().push_back(registrar); }
};

}  // namespace vmat::binding

#define VMAT_BINDING(name)                                                                        \
  static void vmat_register_##name(Napi::Env env, Napi::Object exports);                          \
  static ::vmat::binding::AutoRegister vmat_auto_register_##name(&vmat_register_##name);           \
  static void vmat_register_##name(Napi::Env env, Napi::Object exports)
