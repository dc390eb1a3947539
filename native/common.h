// Shared plumbing of the cjepa addon: tensor handles, argument decoding, error translation.
// A JS tensor handle is a napi External owning a heap `Holder`; `dispose` releases the libtorch
// tensor at once (deterministic memory), the finalizer only frees the small holder.
#pragma once

// Node-API experimental mode: a finalizer that only frees native memory (a "basic" finalizer, see
// FinalizeHolder) then runs synchronously during GC. In the stable mode every dead handle goes
// through Node's pending-finalizer queue (a hash set drained from a setImmediate), which cost about
// as much as a small op itself and grew without bound inside long synchronous loops
// (bench/op_overhead.ts). binding.gyp pins NAPI_VERSION=8; experimental mode needs its own value.
#ifndef NAPI_EXPERIMENTAL
#define NAPI_EXPERIMENTAL
#endif
#undef NAPI_VERSION

#include <napi.h>
#include <ATen/ATen.h>
#include <atomic>
#include <string>
#include <vector>

namespace cj {

// Every External the addon makes starts with a tag, so a Generator handle passed where a Tensor is
// expected (or the reverse) is refused instead of being reinterpreted.
constexpr uint64_t kTensorTag = 0x636a54656e736f72ULL;  // "cjTensor"
constexpr uint64_t kGeneratorTag = 0x636a47656e657261ULL;  // "cjGenera"

struct Holder {
  uint64_t tag = kTensorTag;
  at::Tensor t;
};

extern std::atomic<int64_t> g_live;  // holders that still own a defined tensor

Napi::Value Wrap(Napi::Env env, at::Tensor t);
Napi::Value WrapList(Napi::Env env, const std::vector<at::Tensor>& ts);
at::Tensor& T(const Napi::CallbackInfo& info, size_t i);
c10::optional<at::Tensor> OT(const Napi::CallbackInfo& info, size_t i);
std::vector<at::Tensor> TL(const Napi::CallbackInfo& info, size_t i);
std::vector<int64_t> IV(const Napi::CallbackInfo& info, size_t i);
c10::optional<std::vector<int64_t>> OIV(const Napi::CallbackInfo& info, size_t i);
int64_t I(const Napi::CallbackInfo& info, size_t i);
double D(const Napi::CallbackInfo& info, size_t i);
c10::optional<double> OD(const Napi::CallbackInfo& info, size_t i);
bool B(const Napi::CallbackInfo& info, size_t i);
std::string S(const Napi::CallbackInfo& info, size_t i);
at::ScalarType DT(const Napi::CallbackInfo& info, size_t i);
int DTypeCode(at::ScalarType s);
c10::optional<at::Generator> OG(const Napi::CallbackInfo& info, size_t i);
// Meta kernels for the useMetaDevice test hook (meta.cc), registered once on first use.
void RegisterMetaKernels();
c10::optional<at::Generator> OGOn(const Napi::CallbackInfo& info, size_t i, const at::Device& dev);
at::Device Dev(const Napi::CallbackInfo& info, size_t i);
at::TensorOptions Opts(const Napi::CallbackInfo& info, size_t dtypeArg, size_t deviceArg);

using Fn = Napi::Value (*)(const Napi::CallbackInfo&);

// Registers `fn` under `name`; every call is guarded so a libtorch exception becomes a JS Error
// carrying libtorch's message, the op name and the argument shapes.
void Def(Napi::Env env, Napi::Object exports, const char* name, Fn fn);

void RegisterCore(Napi::Env env, Napi::Object exports);
void RegisterOps(Napi::Env env, Napi::Object exports);
void RegisterDistributed(Napi::Env env, Napi::Object exports);
void RegisterFused(Napi::Env env, Napi::Object exports);  // native/fused.cc
void RegisterCpuAllocator(Napi::Env env, Napi::Object exports);  // native/cpu_allocator.cc
// F.linear: bf16 with a bias on oneDNN directly where built in, else at::linear (native/fused.cc)
at::Tensor FusedLinear(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b);
void RegisterProfiler(Napi::Env env, Napi::Object exports);  // native/profiler.cc

}  // namespace cj
