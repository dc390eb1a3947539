// Fused CPU kernels for the training step, each a single pass over memory where ATen makes several:
// exact-erf GELU with its own backward (one exp per element for both erf and the density), softmax of
// scaled attention scores with its own backward, the AdamW
// update and the EMA update over whole parameter lists, plus an FMA microkernel for `cjepa bench`'s
// peak. Kernels are plain loops compiled for AVX-512 / AVX2 / baseline (GCC target_clones picks one at
// load time: x86-64-v4 = AVX-512, v3 = AVX2+FMA); anything other than contiguous fp32 / bf16 CPU tensors goes to the stock ATen op.
#include "common.h"
#include <torch/csrc/autograd/custom_function.h>
#include <ATen/autocast_mode.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#ifdef CJEPA_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif
#include <optional>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
// at::parallel_for is an inline template: in a file compiled without OpenMP it runs the whole range on one
// thread (every fused kernel did, until binding.gyp gained -fopenmp), so refuse to build that way.
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#error "compile the addon with -fopenmp (binding.gyp): libtorch's at::parallel_for is sequential without it"
#endif
#include <chrono>
#include <dlfcn.h>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <type_traits>
#include <vector>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace cj {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)  // target_clones needs ifunc
#define CJ_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#pragma GCC optimize("O3")  // the vectoriser at full strength for the kernels below (after the includes)
#else
#define CJ_KERNEL
#endif

// ---------------------------------------------------------------- math, written to vectorise

// Cephes expf on x <= 0 (the only use here), relative error ~1e-7; clamped so 2^n stays normal.
__attribute__((always_inline)) static inline float ExpNeg(float x) {
  x = x < -87.0f ? -87.0f : x;
  float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

// Phi(x) (normal CDF via erf, Abramowitz-Stegun 7.1.26, |error| < 1.5e-7 as ATen's AVX2 erf) and
// e = exp(-x^2/2), which the derivative reuses.
__attribute__((always_inline)) static inline float Phi(float x, float& e) {
  float z = __builtin_fabsf(x) * 0.70710678118654752f;
  float t = 1.0f / (1.0f + 0.3275911f * z);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  e = ExpNeg(-z * z);
  float erfAbs = 1.0f - p * t * e;
  return 0.5f + 0.5f * __builtin_copysignf(erfAbs, x);
}

__attribute__((always_inline)) static inline float Bf16ToF(uint16_t b) { return __builtin_bit_cast(float, (uint32_t)b << 16); }
// round to nearest even, NaN kept quiet (c10::BFloat16's rounding)
__attribute__((always_inline)) static inline uint16_t FToBf16(float f) {
  uint32_t u = __builtin_bit_cast(uint32_t, f);
  uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return f != f ? (uint16_t)0x7FC0 : (uint16_t)r;
}

CJ_KERNEL static void GeluFwdF32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float e;
    y[i] = x[i] * Phi(x[i], e);
  }
}
CJ_KERNEL static void GeluBwdF32(const float* g, const float* x, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float e;
    float cdf = Phi(x[i], e);
    dx[i] = g[i] * (cdf + x[i] * e * 0.39894228040143268f);  // Phi(x) + x phi(x)
  }
}
CJ_KERNEL static void GeluFwdBf16(const uint16_t* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float e, v = Bf16ToF(x[i]);
    y[i] = FToBf16(v * Phi(v, e));
  }
}
CJ_KERNEL static void GeluBwdBf16(const uint16_t* g, const uint16_t* x, uint16_t* dx, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float e, v = Bf16ToF(x[i]);
    float cdf = Phi(v, e);
    dx[i] = FToBf16(Bf16ToF(g[i]) * (cdf + v * e * 0.39894228040143268f));
  }
}

// Row softmax of scale * x over the last dimension (rows of length L): the max, exp and sum in fp32
// (16 running lanes, so the reductions vectorise), stored in the row's dtype. x and y may be bf16.
template <typename In>
__attribute__((always_inline)) static inline float LoadF(const In* p, int64_t j) {
  if constexpr (std::is_same<In, float>::value) return p[j];
  else return Bf16ToF(p[j]);
}
template <typename In>
__attribute__((always_inline)) static inline void StoreF(In* p, int64_t j, float v) {
  if constexpr (std::is_same<In, float>::value) p[j] = v;
  else p[j] = FToBf16(v);
}

// The row goes through a float buffer padded to 16 lanes (scores -inf, gradients 0), so every loop runs
// whole 16-lane chunks: no scalar tail of exps on short rows (34 or 20 tokens).
template <typename In>
__attribute__((always_inline)) static inline void SoftmaxRow(const In* x, In* y, float* buf, int64_t L, float scale) {
  const int64_t Lp = (L + 15) / 16 * 16;
  for (int64_t j = 0; j < L; j++) buf[j] = LoadF(x, j);
  for (int64_t j = L; j < Lp; j++) buf[j] = -__builtin_inff();
  float m16[16];
  for (int k = 0; k < 16; k++) m16[k] = -__builtin_inff();
  for (int64_t j = 0; j < Lp; j += 16)
    for (int k = 0; k < 16; k++) m16[k] = buf[j + k] > m16[k] ? buf[j + k] : m16[k];
  float mx = m16[0];
  for (int k = 1; k < 16; k++) mx = m16[k] > mx ? m16[k] : mx;
  float s16[16] = {0};
  for (int64_t j = 0; j < Lp; j += 16)
    for (int k = 0; k < 16; k++) {
      float v = ExpNeg(scale * (buf[j + k] - mx));  // padding: exp(-87) ~ 1e-38, nothing next to sum >= 1
      buf[j + k] = v;
      s16[k] += v;
    }
  float sum = 0;
  for (int k = 0; k < 16; k++) sum += s16[k];
  float inv = 1.0f / sum;
  for (int64_t j = 0; j < L; j++) StoreF(y, j, buf[j] * inv);
}
// dx = scale * y * (g - sum_j g_j y_j), row by row.
template <typename In>
__attribute__((always_inline)) static inline void SoftmaxBwdRow(const In* g, const In* y, In* dx, float* buf, int64_t L, float scale) {
  const int64_t Lp = (L + 15) / 16 * 16;
  float* gb = buf;
  float* yb = buf + Lp;
  for (int64_t j = 0; j < L; j++) { gb[j] = LoadF(g, j); yb[j] = LoadF(y, j); }
  for (int64_t j = L; j < Lp; j++) { gb[j] = 0; yb[j] = 0; }
  float d16[16] = {0};
  for (int64_t j = 0; j < Lp; j += 16)
    for (int k = 0; k < 16; k++) d16[k] += gb[j + k] * yb[j + k];
  float dot = 0;
  for (int k = 0; k < 16; k++) dot += d16[k];
  for (int64_t j = 0; j < L; j++) StoreF(dx, j, scale * yb[j] * (gb[j] - dot));
}

// Rows of an attention item's scores, in place (SoftmaxRow and SoftmaxBwdRow read a row into `buf` before
// writing it): buf holds 2 * ceil(L / 16) * 16 floats.
CJ_KERNEL static void SoftmaxRowsInPlaceF32(float* x, int64_t rows, int64_t L, float scale, float* buf) {
  for (int64_t r = 0; r < rows; r++) SoftmaxRow(x + r * L, x + r * L, buf, L, scale);
}
CJ_KERNEL static void SoftmaxBwdRowsInPlaceF32(float* g, const float* y, int64_t rows, int64_t L, float scale, float* buf) {
  for (int64_t r = 0; r < rows; r++) SoftmaxBwdRow(g + r * L, y + r * L, g + r * L, buf, L, scale);
}
CJ_KERNEL static void SoftmaxRowsF32(const float* x, float* y, int64_t rows, int64_t L, float scale) {
  std::vector<float> buf((L + 15) / 16 * 16);
  for (int64_t r = 0; r < rows; r++) SoftmaxRow(x + r * L, y + r * L, buf.data(), L, scale);
}
CJ_KERNEL static void SoftmaxRowsBf16(const uint16_t* x, uint16_t* y, int64_t rows, int64_t L, float scale) {
  std::vector<float> buf((L + 15) / 16 * 16);
  for (int64_t r = 0; r < rows; r++) SoftmaxRow(x + r * L, y + r * L, buf.data(), L, scale);
}
CJ_KERNEL static void SoftmaxBwdRowsF32(const float* g, const float* y, float* dx, int64_t rows, int64_t L, float scale) {
  std::vector<float> buf(2 * ((L + 15) / 16 * 16));
  for (int64_t r = 0; r < rows; r++) SoftmaxBwdRow(g + r * L, y + r * L, dx + r * L, buf.data(), L, scale);
}
CJ_KERNEL static void SoftmaxBwdRowsBf16(const uint16_t* g, const uint16_t* y, uint16_t* dx, int64_t rows, int64_t L, float scale) {
  std::vector<float> buf(2 * ((L + 15) / 16 * 16));
  for (int64_t r = 0; r < rows; r++) SoftmaxBwdRow(g + r * L, y + r * L, dx + r * L, buf.data(), L, scale);
}

// out = a + float(b), a fp32, b bf16 (the residual stream plus an autocast branch): one vectorised pass
// where ATen's mixed-dtype add takes its scalar dynamic-cast loop.
CJ_KERNEL static void AddF32Bf16(const float* a, const uint16_t* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = a[i] + Bf16ToF(b[i]);
}

// A row's mean and 1/sqrt(biased variance + eps), two passes over the row (in cache), 16 running lanes so both vectorise.
__attribute__((always_inline)) static inline void RowMoments(const float* xr, int64_t D, float eps, float& mu, float& rs) {
  float s16[16] = {0};
  int64_t j = 0;
  for (; j + 16 <= D; j += 16)
    for (int k = 0; k < 16; k++) s16[k] += xr[j + k];
  float sum = 0;
  for (int k = 0; k < 16; k++) sum += s16[k];
  for (; j < D; j++) sum += xr[j];
  mu = sum / (float)D;
  float q16[16] = {0};
  for (j = 0; j + 16 <= D; j += 16)
    for (int k = 0; k < 16; k++) { float d = xr[j + k] - mu; q16[k] += d * d; }
  float q = 0;
  for (int k = 0; k < 16; k++) q += q16[k];
  for (; j < D; j++) { float d = xr[j] - mu; q += d * d; }
  rs = 1.0f / __builtin_sqrtf(q / (float)D + eps);
}

// LayerNorm of fp32 rows written straight to bf16, with the row mean and 1/std for the backward:
// what autocast does in two passes (fp32 LayerNorm, then the next Linear's cast) in one.
CJ_KERNEL static void LayerNormRowsToBf16(const float* x, const float* w, const float* b, uint16_t* y, float* mean, float* rstd,
                                          int64_t rows, int64_t D, float eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * D;
    uint16_t* yr = y + r * D;
    float mu, rs;
    RowMoments(xr, D, eps, mu, rs);
    for (int64_t j = 0; j < D; j++) yr[j] = FToBf16((xr[j] - mu) * rs * w[j] + b[j]);
    mean[r] = mu;
    rstd[r] = rs;
  }
}

// LayerNorm of fp32 rows in one pass over each row (in cache), with the row mean and 1/std for ATen's backward;
// y = (x rstd - mean rstd) w + b, the order ATen's CPU kernel multiplies in.
CJ_KERNEL static void LayerNormRowsF32(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd,
                                       int64_t rows, int64_t D, float eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * D;
    float* yr = y + r * D;
    float mu, rs;
    RowMoments(xr, D, eps, mu, rs);
    const float shift = -mu * rs;
    for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] * rs + shift) * w[j] + b[j];
    mean[r] = mu;
    rstd[r] = rs;
  }
}

// The optimiser kernels round where ATen's stock ops round (so a step matches torch.optim.AdamW's
// single-tensor path to the last bit): no contraction except where ATen itself uses an FMA (add with alpha).
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

// p *= decay; m = b1 m + c1 g; v = b2 v + c2 g^2; p += -stepSize * m / (sqrt(v) / bc2Sqrt + eps).
CJ_KERNEL static void AdamWF32(float* p, const float* g, float* m, float* v, int64_t n, float decay, float b1, float c1, float b2,
                               float c2, float negStep, float bc2Sqrt, float eps) {
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i];
    float mi = __builtin_fmaf(gi, c1, m[i] * b1);  // m.mul_(b1).add_(g, alpha=c1): ATen's add is an fmadd
    float vi = v[i] * b2 + c2 * gi * gi;           // v.mul_(b2).addcmul_(g, g, value=c2)
    m[i] = mi;
    v[i] = vi;
    float denom = __builtin_sqrtf(vi) / bc2Sqrt + eps;
    float pi = p[i] * decay;
    p[i] = pi + negStep * mi / denom;              // p.addcdiv_(m, denom, value=-stepSize): ATen forms (value * m) / denom
  }
}
// EMA as `t.mul_(m).add_(s, alpha=1 - m)`.
CJ_KERNEL static void EmaF32(float* t, const float* o, int64_t n, float mom, float w) {
  for (int64_t i = 0; i < n; i++) t[i] = __builtin_fmaf(o[i], w, t[i] * mom);
}
#pragma GCC pop_options

static constexpr int64_t kGrain = 16384;

static bool Fusable(const at::Tensor& t) {
  return t.device().is_cpu() && t.layout() == at::kStrided && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16);
}

// bf16 GELU by table: a bf16 input has 65,536 possible values, so the forward is a lookup in at::gelu's fp32
// outputs for all of them, rounded once (as the stock bf16 op computes it on AVX-512 CPUs; without AVX-512 the stock
// op works in bf16 and is off by up to 74 %: 0 for gelu(-3.1) = -0.0029), and the backward multiplies by ATen's fp32
// derivative at that value (the stock AVX-512 bf16 backward computes the same product in fp32), rounded once.
struct GeluTables { std::vector<uint16_t> fwd; std::vector<float> deriv; };
static const GeluTables& Bf16GeluTables() {
  static const GeluTables t = [] {
    at::NoGradGuard ng;
    at::Tensor bits = at::arange(65536, at::kInt).to(at::kShort);  // every bf16 bit pattern, as int16
    at::Tensor x = at::empty({65536}, at::kBFloat16);
    std::memcpy(x.data_ptr(), bits.contiguous().data_ptr(), 65536 * 2);
    GeluTables g{std::vector<uint16_t>(65536), std::vector<float>(65536)};
    at::Tensor xf = x.to(at::kFloat);
    at::Tensor y = at::gelu(xf).to(at::kBFloat16).contiguous();
    std::memcpy(g.fwd.data(), y.data_ptr(), 65536 * 2);
    at::Tensor d = at::gelu_backward(at::ones_like(xf), xf).contiguous();
    std::memcpy(g.deriv.data(), d.data_ptr(), 65536 * 4);
    return g;
  }();
  return t;
}
CJ_KERNEL static void GeluFwdBf16Table(const uint16_t* x, uint16_t* y, int64_t n, const uint16_t* table) {
  for (int64_t i = 0; i < n; i++) y[i] = table[x[i]];
}
CJ_KERNEL static void GeluBwdBf16Table(const uint16_t* g, const uint16_t* x, uint16_t* dx, int64_t n, const float* deriv) {
  for (int64_t i = 0; i < n; i++) dx[i] = FToBf16(Bf16ToF(g[i]) * deriv[x[i]]);
}
static bool GeluTableOn() {
  static const bool on = [] { const char* v = std::getenv("CJEPA_GELU_TABLE"); return !(v && std::string(v) == "0"); }();
  return on;
}

at::Tensor FusedGeluForward(const at::Tensor& x0) {
  RECORD_FUNCTION("cj::gelu", std::vector<c10::IValue>({x0}));
  if (!Fusable(x0)) return at::gelu(x0);
  at::Tensor x = x0.contiguous();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  int64_t n = x.numel();
  if (x.scalar_type() == at::kFloat) {
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) { GeluFwdF32(xp + b, yp + b, e - b); });
  } else {
    auto* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
    auto* yp = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
    if (GeluTableOn()) {
      const uint16_t* table = Bf16GeluTables().fwd.data();
      at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) { GeluFwdBf16Table(xp + b, yp + b, e - b, table); });
    } else {
      at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) { GeluFwdBf16(xp + b, yp + b, e - b); });
    }
  }
  return y;
}

at::Tensor FusedGeluBackward(const at::Tensor& g0, const at::Tensor& x0) {
  RECORD_FUNCTION("cj::gelu_backward", std::vector<c10::IValue>({g0, x0}));
  if (!Fusable(x0) || g0.scalar_type() != x0.scalar_type() || g0.sizes() != x0.sizes()) return at::gelu_backward(g0, x0);
  at::Tensor x = x0.contiguous(), g = g0.contiguous();
  at::Tensor dx = at::empty_like(x, at::MemoryFormat::Contiguous);
  int64_t n = x.numel();
  if (x.scalar_type() == at::kFloat) {
    const float *xp = x.data_ptr<float>(), *gp = g.data_ptr<float>();
    float* dp = dx.data_ptr<float>();
    at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) { GeluBwdF32(gp + b, xp + b, dp + b, e - b); });
  } else {
    auto* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
    auto* gp = reinterpret_cast<const uint16_t*>(g.data_ptr<at::BFloat16>());
    auto* dp = reinterpret_cast<uint16_t*>(dx.data_ptr<at::BFloat16>());
    if (GeluTableOn()) {
      const float* deriv = Bf16GeluTables().deriv.data();
      at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) { GeluBwdBf16Table(gp + b, xp + b, dp + b, e - b, deriv); });
    } else {
      at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) { GeluBwdBf16(gp + b, xp + b, dp + b, e - b); });
    }
  }
  return dx;
}

// GELU as an autograd node of its own (once differentiable: the backward is a raw kernel).
struct GeluFn : public torch::autograd::Function<GeluFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    return FusedGeluForward(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    auto saved = ctx->get_saved_variables();
    return {FusedGeluBackward(go[0], saved[0])};
  }
};

// softmax(scale * x, -1) in one pass forward and one backward (the attention scores' `* scale` and
// softmax fused); other dtypes, devices and empty rows use the stock ops.
at::Tensor ScaledSoftmaxForward(const at::Tensor& x0, double scale) {
  RECORD_FUNCTION("cj::scaled_softmax", std::vector<c10::IValue>({x0}));
  if (!Fusable(x0) || x0.dim() == 0 || x0.size(-1) == 0 || x0.numel() == 0) return at::softmax(x0.mul(scale), -1);
  at::Tensor x = x0.contiguous();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  int64_t L = x.size(-1), rows = x.numel() / L, grain = std::max<int64_t>(1, kGrain / L);
  if (x.scalar_type() == at::kFloat) {
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, rows, grain, [&](int64_t b, int64_t e) { SoftmaxRowsF32(xp + b * L, yp + b * L, e - b, L, (float)scale); });
  } else {
    auto* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
    auto* yp = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
    at::parallel_for(0, rows, grain, [&](int64_t b, int64_t e) { SoftmaxRowsBf16(xp + b * L, yp + b * L, e - b, L, (float)scale); });
  }
  return y;
}

at::Tensor ScaledSoftmaxBackward(const at::Tensor& g0, const at::Tensor& y, double scale) {
  RECORD_FUNCTION("cj::scaled_softmax_backward", std::vector<c10::IValue>({g0, y}));
  if (!Fusable(y) || g0.scalar_type() != y.scalar_type() || g0.sizes() != y.sizes() || y.numel() == 0)
    return at::_softmax_backward_data(g0.to(y.scalar_type()), y, -1, y.scalar_type()).mul(scale);
  at::Tensor g = g0.contiguous();
  at::Tensor dx = at::empty_like(y, at::MemoryFormat::Contiguous);
  int64_t L = y.size(-1), rows = y.numel() / L, grain = std::max<int64_t>(1, kGrain / L);
  if (y.scalar_type() == at::kFloat) {
    const float *gp = g.data_ptr<float>(), *yp = y.data_ptr<float>();
    float* dp = dx.data_ptr<float>();
    at::parallel_for(0, rows, grain, [&](int64_t b, int64_t e) { SoftmaxBwdRowsF32(gp + b * L, yp + b * L, dp + b * L, e - b, L, (float)scale); });
  } else {
    auto* gp = reinterpret_cast<const uint16_t*>(g.data_ptr<at::BFloat16>());
    auto* yp = reinterpret_cast<const uint16_t*>(y.data_ptr<at::BFloat16>());
    auto* dp = reinterpret_cast<uint16_t*>(dx.data_ptr<at::BFloat16>());
    at::parallel_for(0, rows, grain, [&](int64_t b, int64_t e) { SoftmaxBwdRowsBf16(gp + b * L, yp + b * L, dp + b * L, e - b, L, (float)scale); });
  }
  return dx;
}

struct ScaledSoftmaxFn : public torch::autograd::Function<ScaledSoftmaxFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double scale) {
    at::Tensor y = ScaledSoftmaxForward(x, scale);
    ctx->save_for_backward({y});
    ctx->saved_data["scale"] = scale;
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    auto y = ctx->get_saved_variables()[0];
    return {ScaledSoftmaxBackward(go[0], y, ctx->saved_data["scale"].toDouble()), at::Tensor()};
  }
};

// a + b for a residual stream `a` (fp32) and a branch `b` that autocast left in bf16; the sum is fp32
// as ATen's type promotion makes it. Backward: the gradient as is for a, cast to bf16 for b.
struct ResidualAddFn : public torch::autograd::Function<ResidualAddFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a0, const at::Tensor& b0) {
    RECORD_FUNCTION("cj::residual_add", std::vector<c10::IValue>({a0, b0}));
    at::Tensor a = a0.contiguous(), b = b0.contiguous();
    at::Tensor out = at::empty_like(a, at::MemoryFormat::Contiguous);
    const float* ap = a.data_ptr<float>();
    auto* bp = reinterpret_cast<const uint16_t*>(b.data_ptr<at::BFloat16>());
    float* op = out.data_ptr<float>();
    at::parallel_for(0, a.numel(), kGrain, [&](int64_t s, int64_t e) { AddF32Bf16(ap + s, bp + s, op + s, e - s); });
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    return {go[0], go[0].to(at::kBFloat16)};
  }
};

static at::Tensor ResidualAdd(const at::Tensor& a, const at::Tensor& b) {
  bool fast = a.device().is_cpu() && b.device().is_cpu() && a.layout() == at::kStrided && b.layout() == at::kStrided &&
              a.scalar_type() == at::kFloat && b.scalar_type() == at::kBFloat16 && a.sizes() == b.sizes();
  return fast ? ResidualAddFn::apply(a, b) : at::add(a, b);
}

// LayerNorm over the last dimension for a LayerNorm that feeds a Linear, fp32 input, weight and bias; the forward in
// one pass over each row (in cache), the backward ATen's on the saved mean and 1/std.
// - Under CPU bf16 autocast the output is the bf16 tensor the Linear would have cast to (what autocast does in two
//   passes, fp32 LayerNorm then the Linear's cast); the gradient comes back to fp32 first, as autocast's cast node does.
// - Without autocast, fp32 out: ATen's forward took ~2.5x a copy of its input on the step's (8192, 192).
template <bool ToBf16>
struct LayerNormRowsFn : public torch::autograd::Function<LayerNormRowsFn<ToBf16>> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x0, const at::Tensor& w, const at::Tensor& b, double eps) {
    RECORD_FUNCTION(ToBf16 ? "cj::layer_norm_bf16" : "cj::layer_norm", std::vector<c10::IValue>({x0}));
    at::Tensor x = x0.contiguous();
    int64_t D = x.size(-1), rows = x.numel() / D;
    auto statShape = x.sizes().vec();
    statShape.back() = 1;
    at::Tensor y = at::empty(x.sizes(), x.options().dtype(ToBf16 ? at::kBFloat16 : at::kFloat));
    at::Tensor mean = at::empty(statShape, x.options()), rstd = at::empty(statShape, x.options());
    at::Tensor wc = w.contiguous(), bc = b.contiguous();
    const float *xp = x.data_ptr<float>(), *wp = wc.data_ptr<float>(), *bp = bc.data_ptr<float>();
    float *mp = mean.data_ptr<float>(), *rp = rstd.data_ptr<float>();
    at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / D), [&](int64_t s, int64_t e) {
      if constexpr (ToBf16)
        LayerNormRowsToBf16(xp + s * D, wp, bp, reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>()) + s * D, mp + s, rp + s, e - s, D, (float)eps);
      else
        LayerNormRowsF32(xp + s * D, wp, bp, y.data_ptr<float>() + s * D, mp + s, rp + s, e - s, D, (float)eps);
    });
    ctx->save_for_backward({x, w, b, mean, rstd});
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    auto v = ctx->get_saved_variables();
    const at::Tensor &x = v[0], &w = v[1], &b = v[2];
    std::array<bool, 3> mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
    auto r = at::native_layer_norm_backward(ToBf16 ? go[0].to(at::kFloat) : go[0], x, {x.size(-1)}, v[3], v[4], w, b, mask);
    return {std::get<0>(r), std::get<1>(r), std::get<2>(r), at::Tensor()};
  }
};
static std::atomic<bool> gLayerNormF32{true};

static at::Tensor LayerNormToLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps) {
  bool plain = x.device().is_cpu() && x.layout() == at::kStrided && x.scalar_type() == at::kFloat && x.dim() >= 1 && x.numel() > 0 &&
               w.defined() && b.defined() && w.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && w.dim() == 1 && b.dim() == 1 &&
               w.size(0) == x.size(-1) && b.size(0) == x.size(-1) && w.device().is_cpu() && b.device().is_cpu();
  if (plain && at::autocast::is_cpu_enabled() && at::autocast::get_autocast_cpu_dtype() == at::kBFloat16)
    return LayerNormRowsFn<true>::apply(x, w, b, eps);  // only raw kernels inside: nothing for autocast to recast
  if (plain && !at::autocast::is_cpu_enabled() && gLayerNormF32.load(std::memory_order_relaxed)) return LayerNormRowsFn<false>::apply(x, w, b, eps);
  return at::layer_norm(x, {x.size(-1)}, w, b, eps);
}

#ifdef CJEPA_DNNL
// y (M, N) = x (M, K) W^T + b in bf16 by one oneDNN matmul, the bias added to its fp32 accumulator (one
// rounding, as addmm's beta-1 sum adds C: the same values as ATen's addmm). x with any positive strides, W
// (N, K) contiguous, y contiguous. The same libdnnl that libtorch runs on, called without ATen's ideep layer
// and its C pre-filled with the bias, which together cost 30-35 % more time per bf16 Linear forward
// (primitives come from oneDNN's cache after a shape's first call).
static bool DnnlOn() {
  static const bool on = [] { const char* v = std::getenv("CJEPA_DNNL"); return !(v && std::string(v) == "0"); }();
  return on;
}
// Whether libtorch 1.13 itself would run a bf16 m x k by k x n product on oneDNN (its use_mkldnn_bf16_matmul:
// AVX-512 BW/VL/DQ and more than 16^3 multiply-adds); below that it uses its own kernel, whose sums differ,
// so the direct path is taken only where libtorch's own is oneDNN too.
static bool AtenUsesOnednn(int64_t m, int64_t k, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool cpu = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  static const bool cpu = false;
#endif
  return cpu && m * k * n > 16 * 16 * 16;
}
static void DnnlLinearBf16(const at::Tensor& x0, const at::Tensor& w, const at::Tensor& b, at::Tensor& y) {
  RECORD_FUNCTION("cj::linear_bf16", std::vector<c10::IValue>({x0, w}));  // rows of their own in `cjepa bench --profile`
  // a broadcast (stride 0) input, e.g. an expanded tensor, is copied: oneDNN takes positive strides only
  at::Tensor x = x0.stride(0) >= 1 && x0.stride(1) >= 1 ? x0 : x0.contiguous();
  using dt = dnnl::memory::data_type;
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  dnnl::memory::desc src({M, K}, dt::bf16, {x.stride(0), x.stride(1)});
  dnnl::memory::desc wei({K, N}, dt::bf16, {1, K});  // W (N, K) row-major is W^T (K, N) column-major
  dnnl::memory::desc bia({1, N}, dt::bf16, {N, 1});
  dnnl::memory::desc dst({M, N}, dt::bf16, {N, 1});
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, bia, dst), engine);
  dnnl::stream stream(engine);
  dnnl::matmul(pd).execute(stream, {{DNNL_ARG_SRC, dnnl::memory(src, engine, x.data_ptr())}, {DNNL_ARG_WEIGHTS, dnnl::memory(wei, engine, w.data_ptr())},
                                    {DNNL_ARG_BIAS, dnnl::memory(bia, engine, b.data_ptr())}, {DNNL_ARG_DST, dnnl::memory(dst, engine, y.data_ptr())}});
  stream.wait();
}

// Linear with a bias as one autograd node. Forward: DnnlLinearBf16, the bias in the GEMM's epilogue.
// Backward: AddmmBackward's (mm_mat1_backward / mm_mat2_backward for a row-major input and a transposed
// weight, the engine's sum_to for the bias), so the gradients are libtorch's own for the same output.
struct LinearBiasFn : public torch::autograd::Function<LinearBiasFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
    at::Tensor out = at::empty({x.size(0), w.size(0)}, x.options(), at::MemoryFormat::Contiguous);
    DnnlLinearBf16(x, w, b.contiguous(), out);
    ctx->save_for_backward({x, w});
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    auto v = ctx->get_saved_variables();
    const at::Tensor &x = v[0], &w = v[1], &g = go[0];
    at::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) {
      bool colMajor = x.stride(0) == 1 && x.stride(1) == x.size(0);  // mm_mat1_backward's special case
      dx = colMajor ? w.t().mm(g.t()).t() : g.mm(w);
    }
    if (ctx->needs_input_grad(1)) dw = g.t().mm(x);  // (grad^T mat1)^T for the column-major w.t(), transposed back
    if (ctx->needs_input_grad(2)) db = at::sum_to(g, w.sizes().slice(0, 1));  // the engine's sum_to for the expanded bias
    return {dx, dw, db};
  }
};
#endif

// F.linear: LinearBiasFn for bf16 where at::linear would call addmm (a 2-D input, or a contiguous 3-D one,
// with a bias), with autocast's casts made first as its linear wrapper makes them. fp32 without autocast:
// Linear32Fn on the system OpenBLAS (below: the same sgemm_ per block of rows); otherwise at::linear (not
// oneDNN's fp32, whose sums broke a 1e-4 gradient parity in session 7), as for anything else and an addon
// built without oneDNN.
static bool Linear32(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b, at::Tensor& y);

at::Tensor FusedLinear(const at::Tensor& x0, const at::Tensor& w0, const c10::optional<at::Tensor>& b0) {
  at::Tensor y32;
  if (Linear32(x0, w0, b0, y32)) return y32;  // fp32 on OpenBLAS: the same GEMMs split over libtorch's threads
#ifndef CJEPA_DNNL
  return at::linear(x0, w0, b0);
#else
  if (!DnnlOn() || !b0.has_value() || !b0->defined()) return at::linear(x0, w0, b0);
  at::Tensor x = x0, w = w0, b = *b0;
  bool cast = at::autocast::is_cpu_enabled() && x.device().is_cpu();
  std::optional<c10::impl::ExcludeDispatchKeyGuard> noAutocast;
  if (cast) {
    at::ScalarType to = at::autocast::get_autocast_cpu_dtype();
    x = at::autocast::cached_cast(to, x, c10::DeviceType::CPU);
    w = at::autocast::cached_cast(to, w, c10::DeviceType::CPU);
    b = at::autocast::cached_cast(to, b, c10::DeviceType::CPU);
    noAutocast.emplace(c10::DispatchKey::AutocastCPU);
  }
  bool fast = Fusable(x) && x.scalar_type() == at::kBFloat16 && x.scalar_type() == w.scalar_type() && x.scalar_type() == b.scalar_type() && Fusable(w) && Fusable(b) &&
              w.is_contiguous() && w.dim() == 2 && b.dim() == 1 && b.size(0) == w.size(0) && x.numel() > 0 && w.numel() > 0 && x.size(-1) == w.size(1) &&
              (x.dim() == 2 || (x.dim() == 3 && x.is_contiguous()));
  if (!fast || !AtenUsesOnednn(x.numel() / x.size(-1), x.size(-1), w.size(0))) return at::linear(x, w, b);
  if (x.dim() == 2) return LinearBiasFn::apply(x, w, b);
  at::Tensor y = LinearBiasFn::apply(x.view({x.size(0) * x.size(1), x.size(2)}), w, b);
  return y.view({x.size(0), x.size(1), w.size(0)});
#endif
}

static bool Flat32(const at::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() && t.layout() == at::kStrided;
}

// Peak fp32 FMA rate of one core: 12 independent accumulator chains (enough to cover FMA latency on
// two ports), `iters` rounds; the result keeps the compiler from dropping the work. V is a GCC vector
// type, lowered to the widest registers the target attribute allows.
template <typename V>
__attribute__((always_inline)) static inline float FmaLoop(int64_t iters) {
  V a[12], x = (V){} + 1.0000001f, y = (V){} + 0.9999999f;
  for (int k = 0; k < 12; k++) a[k] = (V){} + (float)k;
  for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int k = 0; k < 12; k++) a[k] = a[k] * x + y;
  }
  float s = 0;
  for (int k = 0; k < 12; k++) s += a[k][0];
  return s;
}
typedef float V16 __attribute__((vector_size(64)));
typedef float V8 __attribute__((vector_size(32)));
typedef float V4 __attribute__((vector_size(16)));
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,fma"))) static float FmaLoop512(int64_t iters) { return FmaLoop<V16>(iters); }
__attribute__((target("avx2,fma"))) static float FmaLoop256(int64_t iters) { return FmaLoop<V8>(iters); }
#endif
static float FmaLoop128(int64_t iters) { return FmaLoop<V4>(iters); }  // baseline SIMD (SSE2, NEON)

// fmaPeak(seconds) -> { gflops, threads, isa }: every intra-op thread runs the FMA loop at once.
static Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  double seconds = D(info, 0);
  int isa = 128;
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f")) isa = 512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = 256;
#endif
  auto loop = [isa](int64_t iters) -> float {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == 512) return FmaLoop512(iters);
    if (isa == 256) return FmaLoop256(iters);
#endif
    return FmaLoop128(iters);
  };
  int lanes = isa / 32;
  int nt = at::get_num_threads();
  auto run = [&](int64_t iters) {
    std::atomic<int64_t> sink{0};
    auto t0 = std::chrono::steady_clock::now();
    at::parallel_for(0, nt, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; k++) sink += (int64_t)loop(iters);
    });
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  int64_t iters = 1 << 16;
  double t = run(iters);
  while (t < seconds / 4 && iters < (int64_t(1) << 40)) t = run(iters *= 4);
  double best = 0;
  for (int r = 0; r < 3; r++) {  // best of 3: the machine is shared
    double tr = run(iters);
    best = std::max(best, (double)nt * iters * 12 * lanes * 2 / tr / 1e9);
  }
  auto out = Napi::Object::New(info.Env());
  out.Set("gflops", best);
  out.Set("threads", nt);
  out.Set("isa", isa == 512 ? "avx512" : isa == 256 ? "avx2" : "128-bit SIMD");
  return out;
}

// glibc malloc serves the step's large temporaries (activations of several MB) with fresh mmaps, or
// trims them off the heap top as soon as they are freed, so every step page-faults them in again
// (a mixed fp32 + bf16 add of 128x64x192: 3.3 ms instead of 1.0). Keeping freed memory up to 32 MiB
// blocks in the heap removes that. Blocks of 256 KiB and more now come from the caching allocator
// (native/cpu_allocator.cc), which also avoids the heap growth this setting caused; this is for the
// smaller ones, and for CJEPA_CPU_CACHE=0. Off with CJEPA_MALLOC_TUNE=0, and left alone when the user
// tunes malloc through the environment.
static bool TuneMalloc() {
#if defined(__GLIBC__)
  const char* off = std::getenv("CJEPA_MALLOC_TUNE");
  if ((off && std::string(off) == "0") || std::getenv("GLIBC_TUNABLES") || std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_")) return false;
  return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
#else
  return false;
#endif
}

// ---------------------------------------------------------------- fp32 batched matmul (attention)
// libtorch 1.13 built on a system BLAS (Debian: OpenBLAS, no MKL) runs an fp32 bmm as a loop over the batch,
// one addmm per item through the dispatcher (select, resolve_conj, as_strided: ~10^5 calls a step), and
// OpenBLAS keeps items of up to 2^18 multiply-adds on the calling thread, so attention's matmuls ran on one
// core. Here the batch is split over libtorch's threads and each item is the sgemm_ call addmm_impl_cpu_
// makes (same transpose flags, leading dimensions and operand order), so every sum is bit-identical to the
// stock op's. Other dtypes, devices, autocast, MKL builds and degenerate shapes keep at::matmul / at::bmm.
#ifdef CJEPA_SYSBLAS
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
                       const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c, const int* ldc);

// One item of bmm(a (B, R, K), b (B, K, C)) into a row-major (R, C) result, as addmm_impl_cpu_ plans it: the
// result is row-major, so it computes C^T = b^T a^T column-major (operands swapped). false: not a layout it
// takes as is (the caller makes that operand contiguous, as addmm clones it).
struct GemmPlan { char ta, tb; int m, n, k, lda, ldb, ldc; };
static bool PlanStrides(int64_t s1, int64_t s2, int64_t rows, int64_t cols, char& trans, int& ld) {
  if (s2 == 1 && s1 >= cols) { trans = 'N'; ld = (int)s1; return true; }
  if (s1 == 1 && s2 >= rows) { trans = 'T'; ld = (int)s2; return true; }
  return false;
}
static bool PlanOperand(const at::Tensor& t, int64_t rows, int64_t cols, char& trans, int& ld) { return PlanStrides(t.stride(1), t.stride(2), rows, cols, trans, ld); }

static at::Tensor Bmm32(const at::Tensor& a0, const at::Tensor& b0) {
  const int64_t B = a0.size(0), R = a0.size(1), K = a0.size(2), C = b0.size(2);
  // libtorch's own paths: its naive kernel below 400 multiply-adds, and degenerate strides (size-1 dims)
  if (R < 2 || K < 2 || C < 2 || R * K * C < 400 || B < 1 || std::max({R, K, C, a0.stride(0), b0.stride(0)}) > INT32_MAX / 4) return at::bmm(a0, b0);
  GemmPlan p{};
  at::Tensor a = a0, b = b0;
  if (!PlanOperand(b, K, C, p.ta, p.lda)) { b = b0.contiguous(); PlanOperand(b, K, C, p.ta, p.lda); }
  if (!PlanOperand(a, R, K, p.tb, p.ldb)) { a = a0.contiguous(); PlanOperand(a, R, K, p.tb, p.ldb); }
  p.m = (int)C; p.n = (int)R; p.k = (int)K; p.ldc = (int)C;
  at::Tensor out = at::empty({B, R, C}, a0.options());
  const float *ap = a.data_ptr<float>(), *bp = b.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t sa = a.stride(0), sb = b.stride(0), so = R * C;
  auto items = [&](int64_t s, int64_t e) {
    const float one = 1.0f, zero = 0.0f;
    for (int64_t i = s; i < e; i++) sgemm_(&p.ta, &p.tb, &p.m, &p.n, &p.k, &one, bp + i * sb, &p.lda, ap + i * sa, &p.ldb, &zero, op + i * so, &p.ldc);
  };
  // OpenBLAS runs an sgemm of up to 2^18 multiply-adds on the calling thread (interface/gemm.c); larger ones
  // it threads itself, so those stay one call at a time
  const int64_t macs = R * K * C;
  if (macs <= (int64_t{1} << 18)) at::parallel_for(0, B, std::max<int64_t>(1, (int64_t{1} << 15) / macs), items);
  else items(0, B);
  return out;
}

// bmm with libtorch's backward (grad a = g b^T, grad b = a^T g), each product through Bmm32.
struct Bmm32Fn : public torch::autograd::Function<Bmm32Fn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return Bmm32(a, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    auto s = ctx->get_saved_variables();
    at::Tensor ga, gb;
    if (ctx->needs_input_grad(0)) ga = Bmm32(go[0], s[1].transpose(1, 2));
    if (ctx->needs_input_grad(1)) gb = Bmm32(s[0].transpose(1, 2), go[0]);
    return {ga, gb};
  }
};

// ---------------------------------------------------------------- fp32 Linear (OpenBLAS, split by rows)
// libtorch runs an fp32 Linear as addmm: an OpenMP-parallel copy of the bias into y, then one sgemm_ that
// OpenBLAS threads with its own pthread pool. On two cores the two pools' spinning threads take turns with
// each other around every GEMM, and OpenBLAS's own split was measured 10-50 % slower than two single-
// threaded sgemm_ calls over halves of the rows (bias fill + beta 1, addmm's arithmetic). Here each of
// libtorch's threads fills and multiplies its own block of rows with OpenBLAS set to one thread for the call.
// Values can differ from at::linear's by float rounding: OpenBLAS picks its kernel by the size of the call
// (small-matrix kernels on AVX-512), and a block is smaller than the whole (test/fused_ops.test.ts bounds it).
// OpenBLAS's thread-count calls are looked up at run time: another BLAS behind libblas.so.3 keeps at::linear.
struct OpenblasThreads {
  void (*set)(int) = nullptr;
  int (*get)() = nullptr;
};
static const OpenblasThreads& Openblas() {
  static const OpenblasThreads t = [] {
    OpenblasThreads o;
    o.set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    o.get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    if (!o.set || !o.get) o = OpenblasThreads{};
    return o;
  }();
  return t;
}

// OpenBLAS at one thread for the calls made inside a libtorch-parallel region, its own count back on the way
// out, exceptions included.
struct OneBlasThread {
  const OpenblasThreads& ob = Openblas();
  const int prev = ob.get();
  OneBlasThread() { if (prev != 1) ob.set(1); }
  ~OneBlasThread() { if (prev != 1) ob.set(prev); }
};

// Which library runs each block: OpenBLAS's sgemm_ or oneDNN's dnnl_sgemm (the libdnnl libtorch links, looked
// up at run time); a product too small to split stays at::linear's OpenBLAS call. On an Intel AVX-512 CPU
// (Emerald Rapids) oneDNN's JIT kernels took 14-16 % less time than OpenBLAS's SkylakeX ones on the step's shapes,
// forward and both backward layouts (scripts/microbench/fp32_gemm_blocks.cc), with bit-identical sums for K <= 768
// (the weight gradients' long sums differ by rounding); on AMD Zen 4 15 % less (session 26). CJEPA_FP32_GEMM (dnnl | openblas), set by
// src/tensor/native.ts from the CPU before this loads, chooses; unset or without libdnnl: OpenBLAS.
using DnnlSgemmFn = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float, float*, int64_t);
static DnnlSgemmFn DnnlSgemmSymbol() {
  static const DnnlSgemmFn f = reinterpret_cast<DnnlSgemmFn>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
  return f;
}
static std::atomic<DnnlSgemmFn> gDnnlSgemm{[] {
  const char* e = std::getenv("CJEPA_FP32_GEMM");
  return e && std::string(e) == "dnnl" ? DnnlSgemmSymbol() : DnnlSgemmFn(nullptr);
}()};
static DnnlSgemmFn DnnlSgemm() { return gDnnlSgemm.load(std::memory_order_relaxed); }

// `cjepa bench --gemm-log`: one stderr line per Gemm32 call with its shape and wall time (what the GEMMs of a step
// cost by shape, without the op profiler's own overhead on every op).
static std::atomic<bool> gGemmLog{false};
struct GemmLogLine {
  // a (R, K) @ b (K, C); 'T': that operand is a transposed view (column-major), 'N': row-major
  GemmLogLine(const at::Tensor& a, const at::Tensor& b, bool bias)
      : R(a.size(0)), K(a.size(1)), C(b.size(1)), ta(a.stride(0) == 1 && a.size(0) > 1 ? 'T' : 'N'),
        tb(b.stride(0) == 1 && b.size(0) > 1 ? 'T' : 'N'), bias(bias), t0(std::chrono::steady_clock::now()) {}
  GemmLogLine(const GemmLogLine&) = delete;
  ~GemmLogLine() {
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "cj::gemm32 %lld %lld %lld %c%c %d %.1f\n", (long long)R, (long long)K, (long long)C, ta, tb, (int)bias, us);
  }
  const int64_t R, K, C;
  const char ta, tb;
  const bool bias;
  const std::chrono::steady_clock::time_point t0;
};

// y (R, C) = a (R, K) b (K, C) [+ bias (C), filled into y first as addmm does], y row-major: the sgemm_ call
// addmm_impl_cpu_ makes (C^T = b^T a^T column-major), over blocks of y's rows, one per libtorch thread.
static at::Tensor Gemm32(const at::Tensor& a0, const at::Tensor& b0, const at::Tensor* bias) {
  RECORD_FUNCTION("cj::gemm32", std::vector<c10::IValue>({a0, b0}));  // a row of its own in `cjepa bench --profile`
  std::optional<GemmLogLine> logLine;  // written when it goes out of scope: the whole call, operand copies included
  if (gGemmLog.load(std::memory_order_relaxed)) logLine.emplace(a0, b0, bias != nullptr);
  const int64_t R = a0.size(0), K = a0.size(1), C = b0.size(1);
  GemmPlan p{};
  at::Tensor a = a0, b = b0;
  if (!PlanStrides(b.stride(0), b.stride(1), K, C, p.ta, p.lda)) { b = b0.contiguous(); PlanStrides(b.stride(0), b.stride(1), K, C, p.ta, p.lda); }
  if (!PlanStrides(a.stride(0), a.stride(1), R, K, p.tb, p.ldb)) { a = a0.contiguous(); PlanStrides(a.stride(0), a.stride(1), R, K, p.tb, p.ldb); }
  p.m = (int)C; p.k = (int)K; p.ldc = (int)C;
  at::Tensor out = at::empty({R, C}, a0.options());
  at::Tensor bc = bias ? bias->contiguous() : at::Tensor();
  const float *ap = a.data_ptr<float>(), *bp = b.data_ptr<float>(), *biasp = bias ? bc.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  auto rows = [&](int64_t s, int64_t e, DnnlSgemmFn dg) {
    if (s >= e) return;
    const float one = 1.0f, zero = 0.0f;
    if (biasp)
      for (int64_t r = s; r < e; r++) std::memcpy(op + r * C, biasp, sizeof(float) * C);
    const int n = (int)(e - s);
    const float* as = ap + (p.tb == 'N' ? s * p.ldb : s);  // row s of a: a column of the column-major a^T
    if (dg)  // row-major: y = op(a) op(b), each operand the transpose of the column-major call's
      dg(p.tb, p.ta, n, p.m, p.k, 1.0f, as, p.ldb, bp, p.lda, biasp ? 1.0f : 0.0f, op + s * C, p.ldc);
    else
      sgemm_(&p.ta, &p.tb, &p.m, &n, &p.k, &one, bp, &p.lda, as, &p.ldb, biasp ? &one : &zero, op + s * C, &p.ldc);
  };
  const int64_t threads = at::get_num_threads();
  // blocks of whole 16-row groups; a product too small to be worth a split stays one call (as OpenBLAS
  // itself keeps up to 2^18 multiply-adds on the calling thread)
  const int64_t blocks = std::min<int64_t>(threads, R / 16);
  if (blocks < 2 || R * K * C < (int64_t{1} << 19)) {
    rows(0, R, nullptr);  // at::linear's own call, bit for bit
    return out;
  }
  OneBlasThread oneThread;
  at::parallel_for(0, blocks, 1, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) rows((R * i / blocks) / 16 * 16, i + 1 == blocks ? R : (R * (i + 1) / blocks) / 16 * 16, DnnlSgemm());
  });
  return out;
}

// Linear as one autograd node over Gemm32 (with and without a bias). Backward as AddmmBackward computes it
// for at::linear's addmm(b, x, W^T): dx = g W (mm_mat1_backward), dW = g^T x (mm_mat2_backward's transposed
// case, W^T being column-major), db = the engine's sum_to over the broadcast bias.
static torch::autograd::variable_list Linear32Backward(torch::autograd::AutogradContext* ctx, const at::Tensor& g, bool bias) {
  auto v = ctx->get_saved_variables();
  const at::Tensor &x = v[0], &w = v[1];
  at::Tensor dx, dw, db;
  if (ctx->needs_input_grad(0)) {
    bool colMajor = x.stride(0) == 1 && x.stride(1) == x.size(0);  // mm_mat1_backward's special case
    dx = colMajor ? Gemm32(w.t(), g.t(), nullptr).t() : Gemm32(g, w, nullptr);
  }
  if (ctx->needs_input_grad(1)) dw = Gemm32(g.t(), x, nullptr);
  if (!bias) return {dx, dw};
  if (ctx->needs_input_grad(2)) db = at::sum_to(g, w.sizes().slice(0, 1));
  return {dx, dw, db};
}
struct Linear32Fn : public torch::autograd::Function<Linear32Fn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
    ctx->save_for_backward({x, w});
    return Gemm32(x, w.t(), &b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    return Linear32Backward(ctx, go[0], true);
  }
};
struct Linear32NoBiasFn : public torch::autograd::Function<Linear32NoBiasFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w) {
    ctx->save_for_backward({x, w});
    return Gemm32(x, w.t(), nullptr);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    return Linear32Backward(ctx, go[0], false);
  }
};

// ---------------------------------------------------------------- fp32 attention core (from the qkv Linear's output)
// out (B, N, C) = softmax(scale q k^T) v for every image and head, with q, k, v read where the qkv Linear wrote
// them ((B, N, 3, H, d), the official layout) and the output written where proj reads it. The composed path
// copies q, k^T and v into contiguous batches for its two products and the output back from (B, H, N, d), and its
// backward copies the three gradients into one (B, N, 3C); here there are no copies, and the softmax runs on
// each item's scores while they are in cache. Each product is one single-threaded GEMM call on strided operands,
// the (image, head) items split over libtorch's threads. Sums can differ from the composed path's by float
// rounding (other transpose flags than bmm's, or oneDNN's kernels); test/fused_ops.test.ts bounds it.
// C = op(A) op(B), column-major as sgemm_ takes it, alpha 1, beta 0: on the library the split Linear runs (oneDNN's
// JIT kernels were 20-25 % faster than OpenBLAS's on one 64 x 64 x 64 item of strided q, k, v here, Emerald Rapids).
static void AttnGemm(char ta, char tb, int m, int n, int k, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  if (DnnlSgemmFn dg = DnnlSgemm()) {
    dg(tb, ta, n, m, k, 1.0f, B, ldb, A, lda, 0.0f, C, ldc);  // row-major C^T = op(B)^T op(A)^T
    return;
  }
  const float one = 1.0f, zero = 0.0f;
  sgemm_(&ta, &tb, &m, &n, &k, &one, A, &lda, B, &ldb, &zero, C, &ldc);
}
struct AttnShape {
  int64_t B, N, H, d, C;
  AttnShape(const at::Tensor& qkv, int64_t heads) : B(qkv.size(0)), N(qkv.size(1)), H(heads), d(qkv.size(2) / 3 / heads), C(qkv.size(2) / 3) {}
  const float* Q(const float* qkv, int64_t i) const { return qkv + (i / H) * N * 3 * C + (i % H) * d; }
  int64_t Out(int64_t i) const { return (i / H) * N * C + (i % H) * d; }  // offset of item i's (N, d) in (B, N, C)
  int64_t Grain() const { return std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, N * N * d)); }
};
static void AttentionForward32(const float* qkv, float* out, float* probs, const AttnShape& s, float scale) {
  const int N = (int)s.N, d = (int)s.d, ld3 = (int)(3 * s.C), ldo = (int)s.C;
  const int64_t NN = s.N * s.N, Lp = (s.N + 15) / 16 * 16;
  OneBlasThread oneThread;
  at::parallel_for(0, s.B * s.H, s.Grain(), [&](int64_t i0, int64_t i1) {
    std::vector<float> scratch(probs ? 0 : NN), buf(2 * Lp);
    for (int64_t i = i0; i < i1; i++) {
      const float *q = s.Q(qkv, i), *k = q + s.C, *v = q + 2 * s.C;
      float* S = probs ? probs + i * NN : scratch.data();
      AttnGemm('T', 'N', N, N, d, k, ld3, q, ld3, S, N);  // S[j][i] = q_j . k_i, row-major (N, N)
      SoftmaxRowsInPlaceF32(S, s.N, s.N, scale, buf.data());
      AttnGemm('N', 'N', d, N, N, v, ld3, S, N, out + s.Out(i), ldo);  // out_j = sum_i P[j][i] v_i
    }
  });
}
// dP = dO v^T; dS = scale P (dP - rowsum(dP P)); dq = dS k, dk = dS^T q, dv = P^T dO, written into (B, N, 3C).
static void AttentionBackward32(const float* qkv, const float* probs, const float* gout, float* dqkv, const AttnShape& s, float scale) {
  const int N = (int)s.N, d = (int)s.d, ld3 = (int)(3 * s.C), ldo = (int)s.C;
  const int64_t NN = s.N * s.N, Lp = (s.N + 15) / 16 * 16;
  OneBlasThread oneThread;
  at::parallel_for(0, s.B * s.H, s.Grain(), [&](int64_t i0, int64_t i1) {
    std::vector<float> dS(NN), buf(2 * Lp);
    for (int64_t i = i0; i < i1; i++) {
      const float *q = s.Q(qkv, i), *k = q + s.C, *v = q + 2 * s.C, *P = probs + i * NN, *dO = gout + s.Out(i);
      float* dq = dqkv + (q - qkv);
      AttnGemm('T', 'N', N, N, d, v, ld3, dO, ldo, dS.data(), N);  // dP[j][i] = dO_j . v_i
      SoftmaxBwdRowsInPlaceF32(dS.data(), P, s.N, s.N, scale, buf.data());
      AttnGemm('N', 'N', d, N, N, k, ld3, dS.data(), N, dq, ld3);            // dq_j = sum_i dS[j][i] k_i
      AttnGemm('N', 'T', d, N, N, q, ld3, dS.data(), N, dq + s.C, ld3);      // dk_i = sum_j dS[j][i] q_j
      AttnGemm('N', 'T', d, N, N, dO, ldo, P, N, dq + 2 * s.C, ld3);         // dv_i = sum_j P[j][i] dO_j
    }
  });
}
struct Attention32Fn : public torch::autograd::Function<Attention32Fn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& qkv, int64_t heads, double scale) {
    RECORD_FUNCTION("cj::attention", std::vector<c10::IValue>({qkv}));
    const AttnShape s(qkv, heads);
    at::Tensor out = at::empty({s.B, s.N, s.C}, qkv.options()), probs = at::empty({s.B, s.H, s.N, s.N}, qkv.options());
    AttentionForward32(qkv.data_ptr<float>(), out.data_ptr<float>(), probs.data_ptr<float>(), s, (float)scale);
    ctx->save_for_backward({qkv, probs});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["scale"] = scale;
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    RECORD_FUNCTION("cj::attention_backward", std::vector<c10::IValue>({go[0]}));
    auto v = ctx->get_saved_variables();
    const AttnShape s(v[0], ctx->saved_data["heads"].toInt());
    at::Tensor g = go[0].contiguous(), dqkv = at::empty_like(v[0], at::MemoryFormat::Contiguous);
    AttentionBackward32(v[0].data_ptr<float>(), v[1].data_ptr<float>(), g.data_ptr<float>(), dqkv.data_ptr<float>(), s,
                        (float)ctx->saved_data["scale"].toDouble());
    return {dqkv, at::Tensor(), at::Tensor()};
  }
};
static bool Linear32On();
// The fused core where it applies (fp32 CPU tensors, no autocast, libtorch on the system OpenBLAS, shapes within
// BLAS's int range); an undefined tensor otherwise, for the caller's composed path. Without a gradient to keep
// (the EMA target encoder) the probabilities live in a per-thread scratch, not a (B, H, N, N) tensor.
static at::Tensor FusedAttention32(const at::Tensor& qkv0, int64_t heads, double scale) {
  if (qkv0.dim() != 3 || heads < 1 || qkv0.size(2) % (3 * heads) != 0)
    throw std::invalid_argument("attention: qkv must be (B, N, 3C) with C divisible by heads " + std::to_string(heads) + ", got " +
                                c10::str(qkv0.sizes()));
  if (!Linear32On() || !qkv0.device().is_cpu() || qkv0.layout() != at::kStrided || qkv0.scalar_type() != at::kFloat ||
      at::autocast::is_cpu_enabled() || qkv0.numel() == 0 || qkv0.size(1) < 2 ||
      std::max<int64_t>(qkv0.size(1), qkv0.size(2)) > INT32_MAX / 4)
    return at::Tensor();
  at::Tensor qkv = qkv0.contiguous();
  if (at::GradMode::is_enabled() && qkv.requires_grad()) return Attention32Fn::apply(qkv, heads, scale);
  RECORD_FUNCTION("cj::attention", std::vector<c10::IValue>({qkv}));
  const AttnShape s(qkv, heads);
  at::Tensor out = at::empty({s.B, s.N, s.C}, qkv.options());
  AttentionForward32(qkv.data_ptr<float>(), out.data_ptr<float>(), nullptr, s, (float)scale);
  return out;
}
#endif

// fp32 F.linear through Linear32Fn where at::linear would make one addmm / mm of a 2-D problem (a 2-D input,
// or a contiguous 3-D one folded), on the CPU without autocast, libtorch on a system OpenBLAS (not MKL).
// false: anything else, for at::linear. `CJEPA_SPLIT_GEMM=0` turns it off.
static bool Linear32On() {
#ifdef CJEPA_SYSBLAS
  static const bool on = [] { const char* v = std::getenv("CJEPA_SPLIT_GEMM"); return !(v && std::string(v) == "0"); }() && !at::hasMKL() && Openblas().set;
  return on;
#else
  return false;
#endif
}
static bool Linear32(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b0, at::Tensor& y) {
#ifdef CJEPA_SYSBLAS
  const bool on = Linear32On();
  const bool hasBias = b0.has_value() && b0->defined();
  if (!on || at::autocast::is_cpu_enabled()) return false;
  auto f32 = [](const at::Tensor& t) { return t.device().is_cpu() && t.layout() == at::kStrided && t.scalar_type() == at::kFloat; };
  if (!f32(x) || !f32(w) || (hasBias && !f32(*b0)) || w.dim() != 2 || !(x.dim() == 2 || (x.dim() == 3 && x.is_contiguous()))) return false;
  const int64_t K = w.size(1), N = w.size(0), M = x.numel() / std::max<int64_t>(1, x.size(-1));
  if (x.size(-1) != K || (hasBias && (b0->dim() != 1 || b0->size(0) != N)) || M < 2 || K < 2 || N < 2 ||
      std::max({M, K, N, x.stride(0), w.stride(0), w.stride(1)}) > INT32_MAX / 4 || (x.dim() == 2 && x.stride(0) < 1) || x.stride(-1) < 1)
    return false;
  at::Tensor x2 = x.dim() == 2 ? x : x.view({M, K});
  at::Tensor out = hasBias ? Linear32Fn::apply(x2, w, *b0) : Linear32NoBiasFn::apply(x2, w);
  y = x.dim() == 2 ? out : out.view({x.size(0), x.size(1), N});
  return true;
#else
  (void)x; (void)w; (void)b0; (void)y;
  return false;
#endif
}

// a @ b for a, b of the same batch dimensions (..., R, K) @ (..., K, C): fp32 on the CPU without autocast
// through Bmm32Fn (the batch folded as at::matmul folds it); everything else at::matmul.
static at::Tensor BatchedMatmul(const at::Tensor& a, const at::Tensor& b) {
#ifdef CJEPA_SYSBLAS
  bool fast = !at::hasMKL() && a.dim() >= 3 && a.dim() == b.dim() && a.device().is_cpu() && b.device().is_cpu() &&
              a.layout() == at::kStrided && b.layout() == at::kStrided && a.scalar_type() == at::kFloat &&
              b.scalar_type() == at::kFloat && !at::autocast::is_cpu_enabled() &&
              a.sizes().slice(0, a.dim() - 2) == b.sizes().slice(0, b.dim() - 2) && a.size(-1) == b.size(-2);
  if (fast) {
    std::vector<int64_t> shape(a.sizes().begin(), a.sizes().end() - 1);
    shape.push_back(b.size(-1));
    int64_t batch = 1;
    for (int64_t i = 0; i < a.dim() - 2; i++) batch *= a.size(i);
    at::Tensor out = Bmm32Fn::apply(a.reshape({batch, a.size(-2), a.size(-1)}), b.reshape({batch, b.size(-2), b.size(-1)}));
    return out.view(shape);
  }
#endif
  return at::matmul(a, b);
}

#define FN [](const Napi::CallbackInfo& info) -> Napi::Value

void RegisterFused(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocTuned", Napi::Boolean::New(env, TuneMalloc()));
#ifdef CJEPA_DNNL
  exports.Set("onednnLinear", Napi::Boolean::New(env, DnnlOn()));  // bf16 F.linear calls oneDNN directly
#else
  exports.Set("onednnLinear", Napi::Boolean::New(env, false));
#endif
  Def(env, exports, "fusedGelu", FN { return Wrap(info.Env(), GeluFn::apply(T(info, 0))); });
  Def(env, exports, "scaledSoftmax", FN { return Wrap(info.Env(), ScaledSoftmaxFn::apply(T(info, 0), D(info, 1))); });
  Def(env, exports, "batchedMatmul", FN { return Wrap(info.Env(), BatchedMatmul(T(info, 0), T(info, 1))); });
#ifdef CJEPA_SYSBLAS
  exports.Set("batchedMatmulThreaded", Napi::Boolean::New(env, !at::hasMKL()));  // fp32 bmm split over threads
  {
    // fp32 Linear split over threads (Linear32), and the OpenBLAS kernel family it runs (for `cjepa bench`)
    exports.Set("linearSplit", Napi::Boolean::New(env, Linear32On()));
    exports.Set("linearGemm", Napi::String::New(env, DnnlSgemm() ? "oneDNN" : "OpenBLAS"));
    auto core = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
    exports.Set("blasCore", core ? Napi::Value(Napi::String::New(env, core())) : env.Null());
  }
  Def(env, exports, "setGemmLog", FN { gGemmLog.store(info[0].ToBoolean().Value()); return info.Env().Undefined(); });
  // attention(qkv (B, N, 3C), heads, scale) -> (B, N, C), or null where the fused fp32 core does not apply
  Def(env, exports, "attention", FN {
    at::Tensor out = FusedAttention32(T(info, 0), I(info, 1), D(info, 2));
    return out.defined() ? Wrap(info.Env(), out) : info.Env().Null();
  });
  // switch the split Linear's library in a running process (in-process A/B timing); returns what now runs
  Def(env, exports, "setFp32Gemm", FN {
    const std::string lib = info[0].ToString().Utf8Value();
    if (lib != "dnnl" && lib != "openblas") throw Napi::Error::New(info.Env(), "setFp32Gemm: expected 'dnnl' or 'openblas', got '" + lib + "'");
    gDnnlSgemm.store(lib == "dnnl" ? DnnlSgemmSymbol() : nullptr);
    return Napi::String::New(info.Env(), DnnlSgemm() ? "oneDNN" : "OpenBLAS");
  });
#else
  exports.Set("linearSplit", Napi::Boolean::New(env, false));
  exports.Set("linearGemm", env.Null());
  exports.Set("blasCore", env.Null());
  exports.Set("batchedMatmulThreaded", Napi::Boolean::New(env, false));
  Def(env, exports, "setGemmLog", FN { return info.Env().Undefined(); });  // no Gemm32 in this build: nothing to log
  Def(env, exports, "attention", FN { return info.Env().Null(); });  // no fused core without the system BLAS
#endif
  Def(env, exports, "residualAdd", FN { return Wrap(info.Env(), ResidualAdd(T(info, 0), T(info, 1))); });
  Def(env, exports, "layerNormToLinear", FN { return Wrap(info.Env(), LayerNormToLinear(T(info, 0), T(info, 1), T(info, 2), D(info, 3))); });
  // in-process A/B (scripts/microbench/fp32_step_ab.ts): the fp32 LayerNorm kernel (true) or at::layer_norm; returns the previous setting
  Def(env, exports, "setFusedLayerNormF32", FN { return Napi::Boolean::New(info.Env(), gLayerNormF32.exchange(info[0].ToBoolean().Value())); });
  Def(env, exports, "fusedGeluBackward", FN { return Wrap(info.Env(), FusedGeluBackward(T(info, 0), T(info, 1))); });

  // adamw_(params, grads, expAvg, expAvgSq, decay, b1, b2, stepSize, bc2Sqrt, eps): in place, no autograd.
  Def(env, exports, "fusedAdamW_", FN {
    auto ps = TL(info, 0), gs = TL(info, 1), ms = TL(info, 2), vs = TL(info, 3);
    TORCH_CHECK(gs.size() == ps.size() && ms.size() == ps.size() && vs.size() == ps.size(), "fusedAdamW_: list lengths differ");
    // scalars rounded to float as ATen rounds a Python number (1 - b1 etc. formed in double first)
    double decayD = D(info, 4), b1D = D(info, 5), b2D = D(info, 6), stepSize = D(info, 7), bc2Sqrt = D(info, 8), eps = D(info, 9);
    float decay = (float)decayD, b1 = (float)b1D, c1 = (float)(1 - b1D), b2 = (float)b2D, c2 = (float)(1 - b2D);
    at::NoGradGuard ng;
    for (size_t i = 0; i < ps.size(); i++) {
      auto &p = ps[i], &g = gs[i], &m = ms[i], &v = vs[i];
      TORCH_CHECK(g.sizes() == p.sizes() && m.sizes() == p.sizes() && v.sizes() == p.sizes(), "fusedAdamW_: shapes differ at ", i);
      if (Flat32(p) && Flat32(g) && Flat32(m) && Flat32(v)) {
        float *pp = p.data_ptr<float>(), *mp = m.data_ptr<float>(), *vp = v.data_ptr<float>();
        const float* gp = g.data_ptr<float>();
        at::parallel_for(0, p.numel(), kGrain, [&](int64_t b, int64_t e) {
          AdamWF32(pp + b, gp + b, mp + b, vp + b, e - b, decay, b1, c1, b2, c2, (float)-stepSize, (float)bc2Sqrt, (float)eps);
        });
      } else {  // the stock op sequence (other dtypes, devices, layouts)
        p.mul_(decayD);
        m.mul_(b1D).add_(g, 1 - b1D);
        v.mul_(b2D).addcmul_(g, g, 1 - b2D);
        p.addcdiv_(m, v.sqrt().div_(bc2Sqrt).add_(eps), -stepSize);
      }
    }
    return info.Env().Undefined();
  });

  // ema_(targets, sources, momentum): t <- m t + (1 - m) s, in place, no autograd.
  Def(env, exports, "fusedEma_", FN {
    auto ts = TL(info, 0), ss = TL(info, 1);
    TORCH_CHECK(ts.size() == ss.size(), "fusedEma_: ", ts.size(), " targets vs ", ss.size(), " sources");
    double mom = D(info, 2);
    at::NoGradGuard ng;
    for (size_t i = 0; i < ts.size(); i++) {
      auto &t = ts[i], &s = ss[i];
      TORCH_CHECK(t.sizes() == s.sizes(), "fusedEma_: shapes differ at ", i, ": ", t.sizes(), " vs ", s.sizes());
      if (Flat32(t) && Flat32(s)) {
        float* tp = t.data_ptr<float>();
        const float* sp = s.data_ptr<float>();
        at::parallel_for(0, t.numel(), kGrain, [&](int64_t b, int64_t e) { EmaF32(tp + b, sp + b, e - b, (float)mom, (float)(1 - mom)); });
      } else {
        t.mul_(mom).add_(s, 1 - mom);
      }
    }
    return info.Env().Undefined();
  });

  Def(env, exports, "fmaPeak", FmaPeak);
}

}  // namespace cj
