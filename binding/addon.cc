// The addon's entry point: every binding module registered itself (registry.h); Init runs them all.
#include <napi.h>

#include "registry.h"

namespace vmat::binding {

std::vector<Registrar>& registrars() {
  static std::vector<Registrar> all;  // function-local: safe against static-initialisation order
  return all;
}

}  // namespace vmat::binding

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (auto registrar : vmat::binding::registrars()) registrar(env, exports);
  exports.Set("addonVersion", Napi::String::New(env, VMAT_VERSION));
  return exports;
}

NODE_API_MODULE(vmat_native, Init)
