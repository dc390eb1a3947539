// Meta-device kernels that libtorch 1.13's C++ library lacks (PyTorch registers them in Python, in
// torch/_meta_registrations.py), so the test hook useMetaDevice (src/tensor/testing.ts) can run a
// whole training step. Each computes output shapes only: convolution, layer norm, batch norm (forward
// and backward), relu, var / std, and the smooth-L1 / MSE loss gradients. Registered for the Meta
// dispatch key alone, when the hook is first turned on (RegisterMetaKernels); CPU and CUDA kernels
// are untouched.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <memory>

namespace {

// Every tensor argument on meta, as a CUDA kernel demands one device (the dispatcher picks Meta when any is).
void CheckMeta(const char* op, std::initializer_list<const at::Tensor*> ts) {
  for (const at::Tensor* t : ts) {
    TORCH_CHECK(!t->defined() || t->is_meta(), op, ": expected all tensors on meta, but found one on ", t->device());
  }
}

at::Tensor ConvolutionMeta(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed,
                           at::IntArrayRef outputPadding, int64_t groups) {
  at::Tensor b = bias.has_value() ? *bias : at::Tensor();
  CheckMeta("convolution", {&input, &weight, &b});
  const int64_t dims = input.dim() - 2;
  TORCH_CHECK(dims >= 1 && weight.dim() == input.dim(), "convolution: input ", input.sizes(), " and weight ", weight.sizes(), " do not match");
  auto at = [](at::IntArrayRef a, int64_t i) { return a.size() == 1 ? a[0] : a[i]; };
  std::vector<int64_t> shape{input.size(0), transposed ? weight.size(1) * groups : weight.size(0)};
  for (int64_t i = 0; i < dims; i++) {
    const int64_t in = input.size(i + 2), k = weight.size(i + 2);
    shape.push_back(transposed ? (in - 1) * at(stride, i) - 2 * at(padding, i) + at(dilation, i) * (k - 1) + at(outputPadding, i) + 1
                               : (in + 2 * at(padding, i) - at(dilation, i) * (k - 1) - 1) / at(stride, i) + 1);
  }
  return at::empty(shape, input.options());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ConvolutionBackwardMeta(
    const at::Tensor& gradOutput, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef, at::IntArrayRef,
    at::IntArrayRef, bool, at::IntArrayRef, int64_t, std::array<bool, 3> mask) {
  CheckMeta("convolution_backward", {&gradOutput, &input, &weight});
  return {mask[0] ? at::empty_like(input) : at::Tensor(), mask[1] ? at::empty_like(weight) : at::Tensor(),
          mask[2] ? at::empty({gradOutput.size(1)}, gradOutput.options()) : at::Tensor()};
}

// Layer norm: the generic fallback decomposes into native_batch_norm, which has no meta kernel either.
std::tuple<at::Tensor, at::Tensor, at::Tensor> LayerNormMeta(const at::Tensor& input, c10::SymIntArrayRef normalizedShape,
                                                             const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias, double) {
  at::Tensor w = weight.has_value() ? *weight : at::Tensor(), b = bias.has_value() ? *bias : at::Tensor();
  CheckMeta("layer_norm", {&input, &w, &b});
  const int64_t axis = input.dim() - static_cast<int64_t>(normalizedShape.size());
  TORCH_CHECK(axis >= 0, "layer_norm: normalized_shape is longer than the input's ", input.sizes());
  std::vector<int64_t> stat(input.sizes().begin(), input.sizes().begin() + axis);
  stat.resize(input.dim(), 1);
  const auto t = input.scalar_type();
  auto f = input.options().dtype(t == at::kHalf || t == at::kBFloat16 ? at::kFloat : t);  // statistics in float, as the CPU kernel
  return {at::empty_like(input), at::empty(stat, f), at::empty(stat, f)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> LayerNormBackwardMeta(
    const at::Tensor& gradOut, const at::Tensor& input, c10::SymIntArrayRef, const at::Tensor& mean, const at::Tensor& rstd,
    const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias, std::array<bool, 3> mask) {
  at::Tensor w = weight.has_value() ? *weight : at::Tensor(), b = bias.has_value() ? *bias : at::Tensor();
  CheckMeta("layer_norm_backward", {&gradOut, &input, &mean, &rstd, &w, &b});
  return {mask[0] ? at::empty_like(input) : at::Tensor(), mask[1] && w.defined() ? at::empty_like(w) : at::Tensor(),
          mask[2] && b.defined() ? at::empty_like(b) : at::Tensor()};
}

at::Tensor Opt(const c10::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); }

// Batch norm (the projector and expander MLPs); running statistics are updated in place, a no-op on meta.
std::tuple<at::Tensor, at::Tensor, at::Tensor> BatchNormMeta(const at::Tensor& input, const c10::optional<at::Tensor>& weight,
                                                             const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& runningMean,
                                                             const c10::optional<at::Tensor>& runningVar, bool training, double, double) {
  at::Tensor w = Opt(weight), b = Opt(bias), rm = Opt(runningMean), rv = Opt(runningVar);
  CheckMeta("batch_norm", {&input, &w, &b, &rm, &rv});
  const int64_t c = input.size(1);
  auto f = input.options().dtype(input.scalar_type() == at::kHalf || input.scalar_type() == at::kBFloat16 ? at::kFloat : input.scalar_type());
  return {at::empty_like(input), at::empty({training ? c : 0}, f), at::empty({training ? c : 0}, f)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> BatchNormBackwardMeta(
    const at::Tensor& gradOut, const at::Tensor& input, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& runningMean,
    const c10::optional<at::Tensor>& runningVar, const c10::optional<at::Tensor>& saveMean, const c10::optional<at::Tensor>& saveInvstd,
    bool, double, std::array<bool, 3> mask) {
  at::Tensor w = Opt(weight), rm = Opt(runningMean), rv = Opt(runningVar), sm = Opt(saveMean), si = Opt(saveInvstd);
  CheckMeta("batch_norm_backward", {&gradOut, &input, &w, &rm, &rv, &sm, &si});
  auto c = at::empty({input.size(1)}, input.options());
  return {mask[0] ? at::empty_like(input) : at::Tensor(), mask[1] ? at::empty_like(c) : at::Tensor(), mask[2] ? at::empty_like(c) : at::Tensor()};
}

// Shape-preserving ops: relu (relu_ has a meta kernel), and the loss gradients (their out variants resize `out`).
at::Tensor ReluMeta(const at::Tensor& x) { return at::empty_like(x); }
at::Tensor SmoothL1BackwardMeta(const at::Tensor& g, const at::Tensor& self, const at::Tensor& target, int64_t, double) {
  CheckMeta("smooth_l1_loss_backward", {&g, &self, &target});
  return at::empty_like(self);
}
at::Tensor& SmoothL1BackwardOutMeta(const at::Tensor& g, const at::Tensor& self, const at::Tensor& target, int64_t, double, at::Tensor& out) {
  CheckMeta("smooth_l1_loss_backward", {&g, &self, &target, &out});
  out.resize_(self.sizes());
  return out;
}
at::Tensor MseBackwardMeta(const at::Tensor& g, const at::Tensor& self, const at::Tensor& target, int64_t) {
  CheckMeta("mse_loss_backward", {&g, &self, &target});
  return at::empty_like(self);
}
at::Tensor& MseBackwardOutMeta(const at::Tensor& g, const at::Tensor& self, const at::Tensor& target, int64_t, at::Tensor& out) {
  CheckMeta("mse_loss_backward", {&g, &self, &target, &out});
  out.resize_(self.sizes());
  return out;
}

// var / std over `dim` (all dims when absent): the reduced shape.
at::Tensor VarMeta(const at::Tensor& self, at::OptionalIntArrayRef dim, c10::optional<int64_t>, bool keepdim) {
  std::vector<bool> reduce(self.dim(), !dim.has_value() || dim->empty());
  if (dim.has_value()) for (int64_t d : *dim) reduce[c10::maybe_wrap_dim(d, self.dim())] = true;
  std::vector<int64_t> shape;
  for (int64_t i = 0; i < self.dim(); i++) {
    if (!reduce[i]) shape.push_back(self.size(i));
    else if (keepdim) shape.push_back(1);
  }
  return at::empty(shape, self.options());
}

}  // namespace

namespace cj {

// Registered on the first useMetaDevice(true), and only for ops that have no meta kernel in this
// libtorch (newer ones have some; re-registering would warn): programs that never turn the hook on
// run with libtorch's dispatch tables untouched.
void RegisterMetaKernels() {
  static std::unique_ptr<torch::Library> lib;
  if (lib) return;
  lib = std::make_unique<torch::Library>(torch::Library::IMPL, "aten", c10::DispatchKey::Meta, __FILE__, __LINE__);
  auto add = [](const std::string& name, auto fn) {
    const auto dot = name.find('.');
    c10::OperatorName op("aten::" + name.substr(0, dot), dot == std::string::npos ? "" : name.substr(dot + 1));
    auto h = c10::Dispatcher::singleton().findOp(op);
    if (h.has_value() && h->hasKernelForDispatchKey(c10::DispatchKey::Meta)) return;
    lib->impl(name.c_str(), fn);
  };
  add("convolution_overrideable", ConvolutionMeta);
  add("convolution_backward_overrideable", ConvolutionBackwardMeta);
  add("native_layer_norm", LayerNormMeta);
  add("native_layer_norm_backward", LayerNormBackwardMeta);
  add("native_batch_norm", BatchNormMeta);
  add("native_batch_norm_backward", BatchNormBackwardMeta);
  add("relu", ReluMeta);
  add("smooth_l1_loss_backward", SmoothL1BackwardMeta);
  add("smooth_l1_loss_backward.grad_input", SmoothL1BackwardOutMeta);
  add("mse_loss_backward", MseBackwardMeta);
  add("mse_loss_backward.grad_input", MseBackwardOutMeta);
  add("var.correction", VarMeta);
  add("std.correction", VarMeta);
}

}  // namespace cj
