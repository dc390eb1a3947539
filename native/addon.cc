// Core of the cjepa addon: handles, errors, creation, data transfer, autograd, RNG, threads.
#include "common.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <cstring>
#include <sstream>

namespace cj {

std::atomic<int64_t> g_live{0};
static std::atomic<int64_t> g_gcReleased{0};  // tensors freed by V8's GC instead of dispose/tidy

// ---------------------------------------------------------------- handles

// A basic finalizer (no JS access), so it runs inside GC: see common.h.
static void FinalizeHolder(node_api_basic_env, void* data, void*) {
  auto* h = static_cast<Holder*>(data);
  if (h->t.defined()) {
    g_live--;
    g_gcReleased++;
  }
  delete h;
}

Napi::Value Wrap(Napi::Env env, at::Tensor t) {
  auto* h = new Holder{kTensorTag, std::move(t)};
  g_live++;
  napi_value out;
  napi_status st = napi_create_external(env, h, FinalizeHolder, nullptr, &out);
  if (st != napi_ok) {
    h->t = at::Tensor();
    g_live--;
    delete h;
    NAPI_THROW_IF_FAILED(env, st, Napi::Value());
  }
  return Napi::Value(env, out);
}

Napi::Value WrapList(Napi::Env env, const std::vector<at::Tensor>& ts) {
  auto arr = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); i++) arr.Set(i, Wrap(env, ts[i]));
  return arr;
}

static Holder* HolderOf(const Napi::Value& v) {
  if (!v.IsExternal()) return nullptr;
  auto* h = v.As<Napi::External<Holder>>().Data();
  return h != nullptr && h->tag == kTensorTag ? h : nullptr;
}

static at::Tensor& TensorOf(const Napi::Env& env, const Napi::Value& v, size_t i) {
  Holder* h = HolderOf(v);
  if (h == nullptr) throw Napi::TypeError::New(env, "argument " + std::to_string(i) + " must be a Tensor");
  if (!h->t.defined()) throw Napi::Error::New(env, "argument " + std::to_string(i) + " is a disposed Tensor");
  return h->t;
}

at::Tensor& T(const Napi::CallbackInfo& info, size_t i) { return TensorOf(info.Env(), info[i], i); }

c10::optional<at::Tensor> OT(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return T(info, i);
}

std::vector<at::Tensor> TL(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsArray()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be an array of Tensors");
  auto arr = info[i].As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); k++) out.push_back(TensorOf(info.Env(), arr.Get(k), i));
  return out;
}

std::vector<int64_t> IV(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsArray()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be an array of integers");
  auto arr = info[i].As<Napi::Array>();
  std::vector<int64_t> out(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); k++) {
    Napi::Value v = arr.Get(k);
    if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be an array of integers");
    double d = v.As<Napi::Number>().DoubleValue();
    if (d != (double)(int64_t)d) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " has a non-integer entry");
    out[k] = (int64_t)d;
  }
  return out;
}

c10::optional<std::vector<int64_t>> OIV(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return IV(info, i);
}

int64_t I(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != (double)(int64_t)d) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be an integer");
  return (int64_t)d;
}

double D(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

c10::optional<double> OD(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return D(info, i);
}

bool B(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsUndefined()) return false;
  return info[i].ToBoolean().Value();
}

std::string S(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

// dtype codes shared with src/tensor/dtype.ts
static const at::ScalarType kDTypes[] = {
    at::kFloat, at::kDouble, at::kHalf, at::kBFloat16, at::kLong, at::kInt, at::kShort, at::kChar, at::kByte, at::kBool,
};
static const int kNumDTypes = sizeof(kDTypes) / sizeof(kDTypes[0]);

at::ScalarType DT(const Napi::CallbackInfo& info, size_t i) {
  int64_t c = I(info, i);
  if (c < 0 || c >= kNumDTypes) throw Napi::TypeError::New(info.Env(), "unknown dtype code " + std::to_string(c));
  return kDTypes[c];
}

int DTypeCode(at::ScalarType s) {
  for (int k = 0; k < kNumDTypes; k++)
    if (kDTypes[k] == s) return k;
  return -1;
}

struct GenHolder {
  uint64_t tag = kGeneratorTag;
  at::Generator g;
};

static at::Generator& GeneratorOf(const Napi::CallbackInfo& info, size_t i) {
  GenHolder* g = info[i].IsExternal() ? info[i].As<Napi::External<GenHolder>>().Data() : nullptr;
  if (g == nullptr || g->tag != kGeneratorTag) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a Generator");
  return g->g;
}

c10::optional<at::Generator> OG(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return c10::nullopt;
  return GeneratorOf(info, i);
}

// 'meta' tensors (shape, dtype and device, no data) only after setMetaAllowed(true): a test hook that
// runs the training code without memory to find tensors created off the default device.
static bool gMetaAllowed = false;

// A device string that names a device this process has. libtorch's release build checks neither the
// index of a CPU device ('cpu:1' was accepted) nor that a CUDA device exists before the first kernel.
at::Device Dev(const Napi::CallbackInfo& info, size_t i) {
  std::string s = S(info, i);
  at::Device d(s);  // throws on a malformed string
  if (d.is_cpu()) {
    if (d.has_index() && d.index() != 0) throw std::invalid_argument("no such device '" + s + "': the CPU is 'cpu' (or 'cpu:0')");
  } else if (d.is_cuda()) {
    int64_t n = at::hasCUDA() ? (int64_t)at::getNumGPUs() : 0;
    if (n == 0) throw std::invalid_argument("no such device '" + s + "': this libtorch has no CUDA device");
    if (d.has_index() && d.index() >= n) throw std::invalid_argument("no such device '" + s + "': " + std::to_string(n) + " CUDA device(s)");
  } else if (d.is_meta() && gMetaAllowed) {
  } else {
    throw std::invalid_argument("unsupported device '" + s + "' (expected cpu or cuda[:N])");
  }
  return d;
}

// An explicit generator must be on the device type of the tensor it fills, as CUDA kernels demand; checked
// here for every device so that a CPU generator reaching a non-CPU tensor also fails on 'meta' (whose
// kernels ignore generators).
c10::optional<at::Generator> OGOn(const Napi::CallbackInfo& info, size_t i, const at::Device& dev) {
  auto g = OG(info, i);
  if (g && g->device().type() != dev.type()) {
    throw std::invalid_argument("a generator on '" + g->device().str() + "' cannot fill a tensor on '" + dev.str() + "' (draw on its device, then copy)");
  }
  return g;
}

at::TensorOptions Opts(const Napi::CallbackInfo& info, size_t dtypeArg, size_t deviceArg) {
  auto o = at::TensorOptions().dtype(DT(info, dtypeArg));
  if (deviceArg < info.Length() && !info[deviceArg].IsUndefined() && !info[deviceArg].IsNull()) o = o.device(Dev(info, deviceArg));
  return o;
}

// ---------------------------------------------------------------- errors

static std::string DescribeArg(const Napi::Value& v) {
  if (Holder* h = HolderOf(v)) {
    if (!h->t.defined()) return "<disposed>";
    std::ostringstream s;
    s << "Tensor" << h->t.sizes() << ":" << c10::toString(h->t.scalar_type());
    return s.str();
  }
  if (v.IsExternal()) return "<external>";
  if (v.IsNumber()) return std::to_string(v.As<Napi::Number>().DoubleValue());
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsString()) return "'" + v.As<Napi::String>().Utf8Value() + "'";
  if (v.IsNull() || v.IsUndefined()) return "none";
  if (v.IsArray()) {
    auto a = v.As<Napi::Array>();
    std::string s = "[";
    for (uint32_t k = 0; k < a.Length() && k < 8; k++) s += (k ? ", " : "") + DescribeArg(a.Get(k));
    if (a.Length() > 8) s += ", ...";
    return s + "]";
  }
  return "<object>";
}

static std::string DescribeCall(const Napi::CallbackInfo& info) {
  try {  // runs inside a catch handler: nothing may escape from here (it would terminate the process)
    std::string s = "(";
    for (size_t i = 0; i < info.Length(); i++) s += (i ? ", " : "") + DescribeArg(info[i]);
    return s + ")";
  } catch (...) {
    return "(...)";
  }
}

struct OpEntry {
  const char* name;
  Fn fn;
};

// With the meta test hook on, every op's tensor arguments must share one device, as CUDA kernels
// check (a 0-dim CPU tensor excepted, as there); meta kernels do not check it themselves. copy_ is
// the one op that crosses devices by design.
static void CheckOneDevice(const char* op, const Napi::CallbackInfo& info) {
  if (std::strcmp(op, "copy_") == 0) return;
  const at::Tensor* first = nullptr;
  auto check = [&](const Napi::Value& v) {
    Holder* h = HolderOf(v);
    if (h == nullptr || !h->t.defined() || (h->t.dim() == 0 && h->t.is_cpu())) return;
    if (first == nullptr) first = &h->t;
    else if (first->device() != h->t.device()) {
      throw std::invalid_argument("expected all tensors on one device, found " + first->device().str() + " and " + h->t.device().str());
    }
  };
  for (size_t i = 0; i < info.Length(); i++) {
    if (!info[i].IsArray()) { check(info[i]); continue; }
    auto a = info[i].As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); k++) check(a.Get(k));
  }
}

static Napi::Value Guarded(const Napi::CallbackInfo& info) {
  auto* e = static_cast<OpEntry*>(info.Data());
  try {
    if (gMetaAllowed) CheckOneDevice(e->name, info);
    return e->fn(info);
  } catch (const Napi::Error& err) {
    throw Napi::Error::New(info.Env(), std::string(e->name) + DescribeCall(info) + ": " + err.Message());
  } catch (const c10::Error& err) {
    throw Napi::Error::New(info.Env(), std::string(e->name) + DescribeCall(info) + ": " + err.what_without_backtrace());
  } catch (const std::exception& err) {
    throw Napi::Error::New(info.Env(), std::string(e->name) + DescribeCall(info) + ": " + err.what());
  } catch (...) {
    throw Napi::Error::New(info.Env(), std::string(e->name) + DescribeCall(info) + ": unknown native error");
  }
}

void Def(Napi::Env env, Napi::Object exports, const char* name, Fn fn) {
  auto* e = new OpEntry{name, fn};  // lives as long as the process, like the module
  exports.Set(name, Napi::Function::New(env, Guarded, name, e));
}

// ---------------------------------------------------------------- core functions

static Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Holder* h = HolderOf(info[0]);
  if (h != nullptr && h->t.defined()) {
    h->t = at::Tensor();
    g_live--;
  }
  return info.Env().Undefined();
}

static Napi::Value IsDisposed(const Napi::CallbackInfo& info) {
  Holder* h = HolderOf(info[0]);
  return Napi::Boolean::New(info.Env(), h == nullptr || !h->t.defined());
}

static Napi::Value LiveTensors(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), (double)g_live.load()); }
static Napi::Value GcReleasedTensors(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), (double)g_gcReleased.load()); }

static Napi::Value Shape(const Napi::CallbackInfo& info) {
  auto& t = T(info, 0);
  auto arr = Napi::Array::New(info.Env(), t.dim());
  for (int64_t k = 0; k < t.dim(); k++) arr.Set((uint32_t)k, Napi::Number::New(info.Env(), (double)t.size(k)));
  return arr;
}

static Napi::Value DType(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), DTypeCode(T(info, 0).scalar_type())); }
static Napi::Value DeviceOf(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), T(info, 0).device().str()); }
static Napi::Value Numel(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), (double)T(info, 0).numel()); }
static Napi::Value RequiresGrad(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), T(info, 0).requires_grad()); }
static Napi::Value IsLeaf(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), T(info, 0).is_leaf()); }
static Napi::Value IsContiguous(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), T(info, 0).is_contiguous()); }

static Napi::Value Empty(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::empty(IV(info, 0), Opts(info, 1, 2))); }
static Napi::Value Zeros(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::zeros(IV(info, 0), Opts(info, 1, 2))); }
static Napi::Value Ones(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::ones(IV(info, 0), Opts(info, 1, 2))); }
static Napi::Value Full(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::full(IV(info, 0), D(info, 1), Opts(info, 2, 3))); }
static Napi::Value Arange(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::arange(D(info, 0), D(info, 1), D(info, 2), Opts(info, 3, 4)));
}
static Napi::Value Linspace(const Napi::CallbackInfo& info) {
  return Wrap(info.Env(), at::linspace(D(info, 0), D(info, 1), I(info, 2), Opts(info, 3, 4)));
}
static Napi::Value Eye(const Napi::CallbackInfo& info) { return Wrap(info.Env(), at::eye(I(info, 0), Opts(info, 1, 2))); }

// fromBuffer(typedArrayOrBuffer, shape, dtype): copies the bytes into a new CPU tensor.
static Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray() && !info[0].IsBuffer()) throw Napi::TypeError::New(info.Env(), "argument 0 must be a TypedArray");
  auto ta = info[0].As<Napi::TypedArray>();
  auto shape = IV(info, 1);
  auto t = at::empty(shape, at::TensorOptions().dtype(DT(info, 2)));
  size_t nbytes = t.numel() * t.element_size();
  if (ta.ByteLength() != nbytes) {
    throw Napi::RangeError::New(info.Env(), "data has " + std::to_string(ta.ByteLength()) + " bytes but shape/dtype need " +
                                                std::to_string(nbytes));
  }
  auto ab = ta.ArrayBuffer();
  if (nbytes > 0) std::memcpy(t.data_ptr(), static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset(), nbytes);
  return Wrap(info.Env(), t);
}

// toBuffer(t): a new ArrayBuffer with the tensor's data (contiguous, CPU, row-major).
static Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  auto t = T(info, 0).detach().to(at::kCPU).contiguous();
  size_t nbytes = t.numel() * t.element_size();
  auto ab = Napi::ArrayBuffer::New(info.Env(), nbytes);
  if (nbytes > 0) std::memcpy(ab.Data(), t.data_ptr(), nbytes);
  return ab;
}

static Napi::Value Item(const Napi::CallbackInfo& info) {
  auto& t = T(info, 0);
  if (t.numel() != 1) throw Napi::RangeError::New(info.Env(), "item() needs a tensor with one element");
  return Napi::Number::New(info.Env(), t.item<double>());
}

static Napi::Value To(const Napi::CallbackInfo& info) {
  auto& t = T(info, 0);
  at::ScalarType dt = info[1].IsNull() || info[1].IsUndefined() ? t.scalar_type() : DT(info, 1);
  at::Device dev = info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull() ? Dev(info, 2) : t.device();
  return Wrap(info.Env(), t.to(dev, dt));
}

static Napi::Value SetMetaAllowed(const Napi::CallbackInfo& info) {
  gMetaAllowed = info[0].ToBoolean();
  if (gMetaAllowed) RegisterMetaKernels();
  return info.Env().Undefined();
}
static Napi::Value CudaAvailable(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), at::hasCUDA()); }

// ---- autograd
static Napi::Value Backward(const Napi::CallbackInfo& info) {
  auto& t = T(info, 0);
  auto g = OT(info, 1);
  c10::optional<bool> retain = info.Length() > 2 && !info[2].IsUndefined() ? c10::optional<bool>(B(info, 2)) : c10::nullopt;
  t.backward(g.has_value() ? *g : at::Tensor(), retain, false);
  return info.Env().Undefined();
}
static Napi::Value Grad(const Napi::CallbackInfo& info) {
  const auto& g = T(info, 0).grad();
  if (!g.defined()) return info.Env().Undefined();
  return Wrap(info.Env(), g);
}
static Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  auto& t = T(info, 0);
  auto g = OT(info, 1);
  if (g.has_value()) {  // the checks PyTorch makes on `x.grad = g`
    TORCH_CHECK(g->sizes() == t.sizes(), "assigned grad has data of a different size: ", g->sizes(), " vs ", t.sizes());
    TORCH_CHECK(g->scalar_type() == t.scalar_type(), "assigned grad has data of a different type");
    TORCH_CHECK(g->device() == t.device(), "assigned grad has data located on a different device");
  }
  t.mutable_grad() = g.has_value() ? *g : at::Tensor();
  return info.Env().Undefined();
}
static Napi::Value RequiresGradInplace(const Napi::CallbackInfo& info) {
  T(info, 0).requires_grad_(B(info, 1));
  return info.Env().Undefined();
}
static Napi::Value Detach(const Napi::CallbackInfo& info) { return Wrap(info.Env(), T(info, 0).detach()); }
static Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool prev = at::GradMode::is_enabled();
  at::GradMode::set_enabled(B(info, 0));
  return Napi::Boolean::New(info.Env(), prev);
}
static Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled()); }

// ---- RNG
static void FinalizeGenerator(Napi::Env, GenHolder* g) { delete g; }
static Napi::Value GeneratorNew(const Napi::CallbackInfo& info) {
  auto* g = new GenHolder{kGeneratorTag, at::make_generator<at::CPUGeneratorImpl>((uint64_t)I(info, 0))};
  return Napi::External<GenHolder>::New(info.Env(), g, FinalizeGenerator);
}
static Napi::Value GeneratorGetState(const Napi::CallbackInfo& info) {
  auto& g = GeneratorOf(info, 0);
  std::lock_guard<std::mutex> lock(g.mutex());
  return Wrap(info.Env(), g.get_state());
}
static Napi::Value GeneratorSetState(const Napi::CallbackInfo& info) {
  auto& g = GeneratorOf(info, 0);
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(T(info, 1));
  return info.Env().Undefined();
}
static Napi::Value DefaultGenerator(const Napi::CallbackInfo& info) {
  // A non-owning view of libtorch's global CPU generator (used by dropout and friends).
  auto* g = new GenHolder{kGeneratorTag, at::detail::getDefaultCPUGenerator()};
  return Napi::External<GenHolder>::New(info.Env(), g, FinalizeGenerator);
}
static Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  auto g = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_current_seed((uint64_t)I(info, 0));
  return info.Env().Undefined();
}

// ---- mixed precision: libtorch's autocast, the same state torch.autocast sets (thread-local, so it
// covers ops called from this thread). enter(device, dtype) returns whether it was already on;
// exit(device, wasOn) restores that and drops the cast-weight cache when the outermost region ends
// (the cache holds bf16 copies of weights the optimiser is about to change).
static Napi::Value AutocastEnter(const Napi::CallbackInfo& info) {
  bool cuda = S(info, 0) == "cuda";
  at::ScalarType dt = DT(info, 1);
  TORCH_CHECK(dt == at::kBFloat16 || dt == at::kHalf, "autocast dtype must be bfloat16 or float16, got ", dt);
  bool was = cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
  if (cuda) {
    at::autocast::set_autocast_gpu_dtype(dt);
    at::autocast::set_enabled(true);
  } else {
    TORCH_CHECK(dt == at::kBFloat16, "CPU autocast supports bfloat16 only");
    at::autocast::set_autocast_cpu_dtype(dt);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
  return Napi::Boolean::New(info.Env(), was);
}
static Napi::Value AutocastExit(const Napi::CallbackInfo& info) {
  bool cuda = S(info, 0) == "cuda";
  bool was = B(info, 1);
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda) at::autocast::set_enabled(was);
  else at::autocast::set_cpu_enabled(was);
  return info.Env().Undefined();
}

// ---- threads
static Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  int64_t n = I(info, 0);
  // an absurd count makes libgomp try to spawn that many threads at the next parallel region (hang, then abort)
  if (n < 1 || n > 1024) throw Napi::RangeError::New(info.Env(), "thread count must be in [1, 1024], got " + std::to_string(n));
  at::set_num_threads((int)n);
  return info.Env().Undefined();
}
static Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), at::get_num_threads()); }
static Napi::Value ParallelInfo(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), at::get_parallel_info()); }

void RegisterCore(Napi::Env env, Napi::Object exports) {
  Def(env, exports, "dispose", Dispose);
  Def(env, exports, "isDisposed", IsDisposed);
  Def(env, exports, "liveTensors", LiveTensors);
  Def(env, exports, "gcReleasedTensors", GcReleasedTensors);
  Def(env, exports, "shape", Shape);
  Def(env, exports, "dtype", DType);
  Def(env, exports, "device", DeviceOf);
  Def(env, exports, "numel", Numel);
  Def(env, exports, "requiresGrad", RequiresGrad);
  Def(env, exports, "isLeaf", IsLeaf);
  Def(env, exports, "isContiguous", IsContiguous);
  Def(env, exports, "empty", Empty);
  Def(env, exports, "zeros", Zeros);
  Def(env, exports, "ones", Ones);
  Def(env, exports, "full", Full);
  Def(env, exports, "arange", Arange);
  Def(env, exports, "linspace", Linspace);
  Def(env, exports, "eye", Eye);
  Def(env, exports, "fromBuffer", FromBuffer);
  Def(env, exports, "toBuffer", ToBuffer);
  Def(env, exports, "item", Item);
  Def(env, exports, "to", To);
  Def(env, exports, "cudaAvailable", CudaAvailable);
  Def(env, exports, "setMetaAllowed", SetMetaAllowed);
  Def(env, exports, "backward", Backward);
  Def(env, exports, "grad", Grad);
  Def(env, exports, "setGrad", SetGrad);
  Def(env, exports, "requiresGrad_", RequiresGradInplace);
  Def(env, exports, "detach", Detach);
  Def(env, exports, "setGradEnabled", SetGradEnabled);
  Def(env, exports, "isGradEnabled", IsGradEnabled);
  Def(env, exports, "generatorNew", GeneratorNew);
  Def(env, exports, "generatorGetState", GeneratorGetState);
  Def(env, exports, "generatorSetState", GeneratorSetState);
  Def(env, exports, "defaultGenerator", DefaultGenerator);
  Def(env, exports, "manualSeed", ManualSeed);
  Def(env, exports, "autocastEnter", AutocastEnter);
  Def(env, exports, "autocastExit", AutocastExit);
  Def(env, exports, "setNumThreads", SetNumThreads);
  Def(env, exports, "getNumThreads", GetNumThreads);
  Def(env, exports, "parallelInfo", ParallelInfo);
}

}  // namespace cj

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  cj::RegisterCpuAllocator(env, exports);  // first: the tensors made below already use it
  cj::RegisterCore(env, exports);
  cj::RegisterOps(env, exports);
  cj::RegisterDistributed(env, exports);
  cj::RegisterFused(env, exports);
  cj::RegisterProfiler(env, exports);
  return exports;
}

NODE_API_MODULE(cjepa_native, Init)
