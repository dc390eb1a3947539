// libtorch's own op profiler (the legacy RecordFunction profiler under torch.autograd.profiler), so a
// cjepa step can be broken down by ATen op exactly as a PyTorch step is: profilerStart() on the calling
// thread, profilerStop() writes a Chrome trace to the path given at the start (chrome://tracing, or
// src/bench/profile.ts for self time per op).
#include "common.h"
#include <torch/csrc/autograd/profiler_legacy.h>
#include <memory>

namespace cj {

static std::unique_ptr<torch::autograd::profiler::RecordProfile> gProfile;
static std::string gProfilePath;

void RegisterProfiler(Napi::Env env, Napi::Object exports) {
  Def(env, exports, "profilerStart", [](const Napi::CallbackInfo& info) -> Napi::Value {
    TORCH_CHECK(!gProfile, "profilerStart: a profile is already being recorded (to ", gProfilePath, ")");
    gProfilePath = S(info, 0);
    gProfile = std::make_unique<torch::autograd::profiler::RecordProfile>(gProfilePath);
    return info.Env().Undefined();
  });
  Def(env, exports, "profilerStop", [](const Napi::CallbackInfo& info) -> Napi::Value {
    TORCH_CHECK(gProfile, "profilerStop: no profile is being recorded");
    gProfile.reset();  // the destructor writes the trace
    return Napi::String::New(info.Env(), gProfilePath);
  });
}

}  // namespace cj
