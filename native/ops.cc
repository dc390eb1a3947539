// Tensor operations exposed to TypeScript. Each is a thin call into ATen; autograd is recorded by
// libtorch's dispatcher. Argument conventions are mirrored in src/tensor/tensor.ts.
#include "common.h"

namespace cj {

// A JS number as a Scalar: integers stay integral so int tensors keep their dtype.
static at::Scalar Sc(const Napi::CallbackInfo& info, size_t i) {
  double d = D(info, i);
  if (d == (double)(int64_t)d && std::abs(d) < 9.0e15) return at::Scalar((int64_t)d);
  return at::Scalar(d);
}

static const at::Tensor& BoolMask(const at::Tensor& m) {
  TORCH_CHECK(m.scalar_type() == at::kBool, "the mask must be a bool tensor, got ", m.scalar_type());
  return m;
}

static int64_t Reduction(const std::string& r) {
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  if (r == "none") return at::Reduction::None;
  throw std::invalid_argument("reduction must be 'mean', 'sum' or 'none', got '" + r + "'");
}

// Integer remainder: the CPU kernel computes `a % b` with the hardware divide, which traps (SIGFPE,
// the whole process dies) for INT_MIN % -1. Anything % -1 is exactly 0 (as x % 1 is), so a -1
// divisor is replaced by 1: same result, no trap. A zero divisor is refused with a clear message
// (the kernel's own check says only "ZeroDivisionError").
static at::Tensor SafeRemainder(const at::Tensor& a, const at::Tensor& b) {
  if (!c10::isIntegralType(at::result_type(a, b), /*includeBool=*/true)) return at::remainder(a, b);
  TORCH_CHECK(!b.eq(0).any().item<bool>(), "integer remainder by zero");
  return at::remainder(a, b.masked_fill(b.eq(-1), 1));
}
static at::Tensor SafeRemainder(const at::Tensor& a, const at::Scalar& b) {
  if (!c10::isIntegralType(at::result_type(a, b), /*includeBool=*/true)) return at::remainder(a, b);
  TORCH_CHECK(b.toLong() != 0, "integer remainder by zero");
  return at::remainder(a, b.toLong() == -1 ? at::Scalar((int64_t)1) : b);
}

#define FN [](const Napi::CallbackInfo& info) -> Napi::Value
#define R(expr) return Wrap(info.Env(), (expr))
#define U(name, expr) Def(env, exports, name, FN { const at::Tensor& x = T(info, 0); R(expr); });
#define BIN(name, fn)                                                   \
  Def(env, exports, name, FN {                                          \
    if (info[1].IsNumber()) R(at::fn(T(info, 0), Sc(info, 1)));        \
    R(at::fn(T(info, 0), T(info, 1)));                                  \
  });
#define BIN_INPLACE(name, method)                                       \
  Def(env, exports, name, FN {                                          \
    if (info[1].IsNumber()) T(info, 0).method(Sc(info, 1));            \
    else T(info, 0).method(T(info, 1));                                 \
    return info.Env().Undefined();                                      \
  });

void RegisterOps(Napi::Env env, Napi::Object exports) {
  // ------------------------------------------------------------ random creation
  Def(env, exports, "rand", FN { auto o = Opts(info, 1, 3); R(at::rand(IV(info, 0), OGOn(info, 2, o.device()), o)); });
  Def(env, exports, "randn", FN { auto o = Opts(info, 1, 3); R(at::randn(IV(info, 0), OGOn(info, 2, o.device()), o)); });
  Def(env, exports, "randint", FN { auto o = Opts(info, 3, 5); R(at::randint(I(info, 0), I(info, 1), IV(info, 2), OGOn(info, 4, o.device()), o)); });
  Def(env, exports, "randperm", FN { auto o = Opts(info, 1, 3); R(at::randperm(I(info, 0), OGOn(info, 2, o.device()), o)); });
  Def(env, exports, "uniform_", FN { auto& t = T(info, 0); t.uniform_(D(info, 1), D(info, 2), OGOn(info, 3, t.device())); return info.Env().Undefined(); });
  Def(env, exports, "normal_", FN { auto& t = T(info, 0); t.normal_(D(info, 1), D(info, 2), OGOn(info, 3, t.device())); return info.Env().Undefined(); });
  Def(env, exports, "bernoulli", FN { auto& t = T(info, 0); R(at::bernoulli(t, OGOn(info, 1, t.device()))); });

  // ------------------------------------------------------------ elementwise
  U("neg", at::neg(x)) U("exp", at::exp(x)) U("log", at::log(x)) U("log1p", at::log1p(x)) U("sqrt", at::sqrt(x))
  U("rsqrt", at::rsqrt(x)) U("abs", at::abs(x)) U("sign", at::sign(x)) U("tanh", at::tanh(x))
  U("sigmoid", at::sigmoid(x)) U("relu", at::relu(x)) U("sin", at::sin(x)) U("cos", at::cos(x))
  U("square", at::square(x)) U("reciprocal", at::reciprocal(x)) U("floor", at::floor(x)) U("ceil", at::ceil(x))
  U("round", at::round(x)) U("erf", at::erf(x)) U("isnan", at::isnan(x)) U("isfinite", at::isfinite(x))
  U("logicalNot", at::logical_not(x)) U("clone", x.clone()) U("contiguous", x.contiguous())
  U("silu", at::silu(x)) U("t", x.t()) U("erfinv", at::erfinv(x))
  Def(env, exports, "gelu", FN { R(at::gelu(T(info, 0), S(info, 1))); });

  BIN("add", add) BIN("sub", sub) BIN("mul", mul) BIN("div", div) BIN("pow", pow)
  Def(env, exports, "remainder", FN {
    if (info[1].IsNumber()) R(SafeRemainder(T(info, 0), Sc(info, 1)));
    R(SafeRemainder(T(info, 0), T(info, 1)));
  });
 
  BIN("eq", eq) BIN("ne", ne) BIN("lt", lt) BIN("le", le) BIN("gt", gt) BIN("ge", ge)
  Def(env, exports, "addScaled", FN { R(at::add(T(info, 0), T(info, 1), Sc(info, 2))); });  // a + alpha * b
  Def(env, exports, "rsub", FN { R(at::rsub(T(info, 0), Sc(info, 1))); });                  // s - a
  Def(env, exports, "maximum", FN { R(at::maximum(T(info, 0), T(info, 1))); });
  Def(env, exports, "minimum", FN { R(at::minimum(T(info, 0), T(info, 1))); });
  Def(env, exports, "logicalAnd", FN { R(at::logical_and(T(info, 0), T(info, 1))); });
  Def(env, exports, "logicalOr", FN { R(at::logical_or(T(info, 0), T(info, 1))); });
  Def(env, exports, "where", FN {
    const at::Tensor& c = T(info, 0);
    if (info[1].IsNumber() && info[2].IsNumber()) R(at::where(c, Sc(info, 1), Sc(info, 2)));
    if (info[1].IsNumber()) R(at::where(c, Sc(info, 1), T(info, 2)));
    if (info[2].IsNumber()) R(at::where(c, T(info, 1), Sc(info, 2)));
    R(at::where(c, T(info, 1), T(info, 2)));
  });
  Def(env, exports, "clamp", FN {
    auto lo = OD(info, 1), hi = OD(info, 2);
    R(at::clamp(T(info, 0), lo ? c10::optional<at::Scalar>(*lo) : c10::nullopt, hi ? c10::optional<at::Scalar>(*hi) : c10::nullopt));
  });

  // ------------------------------------------------------------ reductions
  // dims = null means all dimensions.
  Def(env, exports, "sum", FN {
    auto dims = OIV(info, 1);
    if (!dims) R(at::sum(T(info, 0)));
    R(at::sum(T(info, 0), *dims, B(info, 2)));
  });
  Def(env, exports, "mean", FN {
    auto dims = OIV(info, 1);
    if (!dims) R(at::mean(T(info, 0)));
    R(at::mean(T(info, 0), *dims, B(info, 2)));
  });
  // var/std with Bessel correction 0 or 1 (unbiased flag; stable across libtorch versions)
  Def(env, exports, "var", FN {
    auto dims = OIV(info, 1);
    bool unbiased = I(info, 2) != 0;
    if (!dims) R(at::var(T(info, 0), unbiased));
    R(at::var(T(info, 0), at::IntArrayRef(*dims), unbiased, B(info, 3)));
  });
  Def(env, exports, "std", FN {
    auto dims = OIV(info, 1);
    bool unbiased = I(info, 2) != 0;
    if (!dims) R(at::std(T(info, 0), unbiased));
    R(at::std(T(info, 0), at::IntArrayRef(*dims), unbiased, B(info, 3)));
  });
  Def(env, exports, "maxAll", FN { R(at::max(T(info, 0))); });
  Def(env, exports, "minAll", FN { R(at::min(T(info, 0))); });
  Def(env, exports, "maxDim", FN {
    auto r = at::max(T(info, 0), I(info, 1), B(info, 2));
    return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
  });
  Def(env, exports, "minDim", FN {
    auto r = at::min(T(info, 0), I(info, 1), B(info, 2));
    return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
  });
  Def(env, exports, "argmax", FN {
    if (info[1].IsNull() || info[1].IsUndefined()) R(at::argmax(T(info, 0)));
    R(at::argmax(T(info, 0), I(info, 1), B(info, 2)));
  });
  Def(env, exports, "argmin", FN {
    if (info[1].IsNull() || info[1].IsUndefined()) R(at::argmin(T(info, 0)));
    R(at::argmin(T(info, 0), I(info, 1), B(info, 2)));
  });
  Def(env, exports, "logsumexp", FN { R(at::logsumexp(T(info, 0), IV(info, 1), B(info, 2))); });
  Def(env, exports, "vectorNorm", FN {
    auto dims = OIV(info, 2);
    R(at::linalg_vector_norm(T(info, 0), Sc(info, 1), dims ? at::OptionalIntArrayRef(*dims) : at::OptionalIntArrayRef(), B(info, 3), c10::nullopt));
  });
  Def(env, exports, "all", FN { R(at::all(T(info, 0))); });
  Def(env, exports, "any", FN { R(at::any(T(info, 0))); });
  Def(env, exports, "cumsum", FN { R(at::cumsum(T(info, 0), I(info, 1))); });
  Def(env, exports, "sort", FN {
    auto r = at::sort(T(info, 0), I(info, 1), B(info, 2));
    return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
  });
  Def(env, exports, "topk", FN {
    auto r = at::topk(T(info, 0), I(info, 1), I(info, 2), B(info, 3), true);
    return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
  });

  // ------------------------------------------------------------ linear algebra
  Def(env, exports, "matmul", FN { R(at::matmul(T(info, 0), T(info, 1))); });
  Def(env, exports, "mm", FN { R(at::mm(T(info, 0), T(info, 1))); });
  Def(env, exports, "bmm", FN { R(at::bmm(T(info, 0), T(info, 1))); });
  Def(env, exports, "svdvals", FN { R(at::linalg_svdvals(T(info, 0))); });
  Def(env, exports, "eigvalsh", FN { R(at::linalg_eigvalsh(T(info, 0))); });
  Def(env, exports, "eigh", FN {
    auto r = at::linalg_eigh(T(info, 0));
    return WrapList(info.Env(), {std::get<0>(r), std::get<1>(r)});
  });
  Def(env, exports, "diag", FN { R(at::diag(T(info, 0), I(info, 1))); });
  Def(env, exports, "diagonal", FN { R(at::diagonal(T(info, 0), I(info, 1), I(info, 2), I(info, 3))); });
  Def(env, exports, "triu", FN { R(at::triu(T(info, 0), I(info, 1))); });
  Def(env, exports, "tril", FN { R(at::tril(T(info, 0), I(info, 1))); });

  // ------------------------------------------------------------ views and indexing
  Def(env, exports, "reshape", FN { R(at::reshape(T(info, 0), IV(info, 1))); });
  Def(env, exports, "view", FN { R(T(info, 0).view(IV(info, 1))); });
  Def(env, exports, "permute", FN { R(T(info, 0).permute(IV(info, 1))); });
  Def(env, exports, "transpose", FN { R(at::transpose(T(info, 0), I(info, 1), I(info, 2))); });
  Def(env, exports, "slice", FN { R(at::slice(T(info, 0), I(info, 1), I(info, 2), I(info, 3), I(info, 4))); });
  Def(env, exports, "narrow", FN { R(at::narrow(T(info, 0), I(info, 1), I(info, 2), I(info, 3))); });
  Def(env, exports, "select", FN { R(at::select(T(info, 0), I(info, 1), I(info, 2))); });
  Def(env, exports, "unsqueeze", FN { R(at::unsqueeze(T(info, 0), I(info, 1))); });
  Def(env, exports, "squeeze", FN {
    if (info[1].IsNull() || info[1].IsUndefined()) R(at::squeeze(T(info, 0)));
    R(at::squeeze(T(info, 0), I(info, 1)));
  });
  Def(env, exports, "flatten", FN { R(at::flatten(T(info, 0), I(info, 1), I(info, 2))); });
  Def(env, exports, "expand", FN { R(T(info, 0).expand(IV(info, 1))); });
  Def(env, exports, "repeat", FN { R(T(info, 0).repeat(IV(info, 1))); });
  Def(env, exports, "repeatInterleave", FN { R(at::repeat_interleave(T(info, 0), I(info, 1), I(info, 2))); });
  Def(env, exports, "indexSelect", FN { R(at::index_select(T(info, 0), I(info, 1), T(info, 2))); });
  Def(env, exports, "gather", FN { R(at::gather(T(info, 0), I(info, 1), T(info, 2))); });
  Def(env, exports, "scatter", FN { R(at::scatter(T(info, 0), I(info, 1), T(info, 2), T(info, 3))); });
  Def(env, exports, "scatterAdd", FN { R(at::scatter_add(T(info, 0), I(info, 1), T(info, 2), T(info, 3))); });
  Def(env, exports, "indexAdd", FN { R(at::index_add(T(info, 0), I(info, 1), T(info, 2), T(info, 3))); });
  Def(env, exports, "cat", FN { R(at::cat(TL(info, 0), I(info, 1))); });
  Def(env, exports, "stack", FN { R(at::stack(TL(info, 0), I(info, 1))); });
  Def(env, exports, "split", FN { return WrapList(info.Env(), at::split(T(info, 0), I(info, 1), I(info, 2))); });
  Def(env, exports, "chunk", FN { return WrapList(info.Env(), at::chunk(T(info, 0), I(info, 1), I(info, 2))); });
  // libtorch 1.13 silently ignores a float mask (PyTorch 2 refuses it): only bool masks are accepted
  Def(env, exports, "maskedFill", FN {
    BoolMask(T(info, 1));
    if (info[2].IsNumber()) R(at::masked_fill(T(info, 0), T(info, 1), Sc(info, 2)));
    R(at::masked_fill(T(info, 0), T(info, 1), T(info, 2)));
  });
  Def(env, exports, "maskedSelect", FN { R(at::masked_select(T(info, 0), T(info, 1))); });
  Def(env, exports, "nonzero", FN { R(at::nonzero(T(info, 0))); });
  Def(env, exports, "flip", FN { R(at::flip(T(info, 0), IV(info, 1))); });
  Def(env, exports, "roll", FN { R(at::roll(T(info, 0), IV(info, 1), IV(info, 2))); });
  Def(env, exports, "oneHot", FN { R(at::one_hot(T(info, 0), I(info, 1))); });
  Def(env, exports, "pad", FN { R(at::constant_pad_nd(T(info, 0), IV(info, 1), Sc(info, 2))); });
  Def(env, exports, "tensorIndex", FN { R(at::index(T(info, 0), {c10::optional<at::Tensor>(T(info, 1))})); });

  // ------------------------------------------------------------ neural-network functions
  Def(env, exports, "linear", FN { R(FusedLinear(T(info, 0), T(info, 1), OT(info, 2))); });
  Def(env, exports, "atenLinear", FN { R(at::linear(T(info, 0), T(info, 1), OT(info, 2))); });
  Def(env, exports, "conv2d", FN {
    R(at::conv2d(T(info, 0), T(info, 1), OT(info, 2), IV(info, 3), IV(info, 4), IV(info, 5), I(info, 6)));
  });
  Def(env, exports, "layerNorm", FN {
    R(at::layer_norm(T(info, 0), IV(info, 1), OT(info, 2), OT(info, 3), D(info, 4), true));
  });
  Def(env, exports, "batchNorm", FN {
    R(at::batch_norm(T(info, 0), OT(info, 1), OT(info, 2), OT(info, 3), OT(info, 4), B(info, 5), D(info, 6), D(info, 7), true));
  });
  Def(env, exports, "softmax", FN { R(at::softmax(T(info, 0), I(info, 1))); });
  Def(env, exports, "logSoftmax", FN { R(at::log_softmax(T(info, 0), I(info, 1))); });
  Def(env, exports, "dropout", FN { R(at::dropout(T(info, 0), D(info, 1), B(info, 2))); });
  Def(env, exports, "smoothL1Loss", FN { R(at::smooth_l1_loss(T(info, 0), T(info, 1), Reduction(S(info, 2)), D(info, 3))); });
  Def(env, exports, "mseLoss", FN { R(at::mse_loss(T(info, 0), T(info, 1), Reduction(S(info, 2)))); });
  Def(env, exports, "l1Loss", FN { R(at::l1_loss(T(info, 0), T(info, 1), Reduction(S(info, 2)))); });
  Def(env, exports, "crossEntropy", FN {
    R(at::cross_entropy_loss(T(info, 0), T(info, 1), c10::nullopt, Reduction(S(info, 2)), -100, D(info, 3)));
  });
  Def(env, exports, "nllLoss", FN { R(at::nll_loss(T(info, 0), T(info, 1), c10::nullopt, Reduction(S(info, 2)), -100)); });
  Def(env, exports, "avgPool2d", FN { R(at::avg_pool2d(T(info, 0), IV(info, 1), IV(info, 2))); });
  Def(env, exports, "adaptiveAvgPool2d", FN { R(at::adaptive_avg_pool2d(T(info, 0), IV(info, 1))); });
  Def(env, exports, "interpolateBilinear", FN {
    R(at::upsample_bilinear2d(T(info, 0), IV(info, 1), B(info, 2), c10::nullopt, c10::nullopt));
  });
  Def(env, exports, "interpolateBicubic", FN {
    R(at::upsample_bicubic2d(T(info, 0), IV(info, 1), B(info, 2), c10::nullopt, c10::nullopt));
  });

  // ------------------------------------------------------------ in-place (optimisers, EMA, init)
  BIN_INPLACE("add_", add_) BIN_INPLACE("sub_", sub_) BIN_INPLACE("mul_", mul_) BIN_INPLACE("div_", div_)
  Def(env, exports, "addScaled_", FN { T(info, 0).add_(T(info, 1), Sc(info, 2)); return info.Env().Undefined(); });
  Def(env, exports, "addcmul_", FN { T(info, 0).addcmul_(T(info, 1), T(info, 2), Sc(info, 3)); return info.Env().Undefined(); });
  Def(env, exports, "addcdiv_", FN { T(info, 0).addcdiv_(T(info, 1), T(info, 2), Sc(info, 3)); return info.Env().Undefined(); });
  Def(env, exports, "lerp_", FN { T(info, 0).lerp_(T(info, 1), Sc(info, 2)); return info.Env().Undefined(); });
  Def(env, exports, "copy_", FN { T(info, 0).copy_(T(info, 1)); return info.Env().Undefined(); });
  Def(env, exports, "zero_", FN { T(info, 0).zero_(); return info.Env().Undefined(); });
  Def(env, exports, "fill_", FN { T(info, 0).fill_(Sc(info, 1)); return info.Env().Undefined(); });
  Def(env, exports, "clamp_", FN {
    auto lo = OD(info, 1), hi = OD(info, 2);
    T(info, 0).clamp_(lo ? c10::optional<at::Scalar>(*lo) : c10::nullopt, hi ? c10::optional<at::Scalar>(*hi) : c10::nullopt);
    return info.Env().Undefined();
  });
  Def(env, exports, "sqrt_", FN { T(info, 0).sqrt_(); return info.Env().Undefined(); });
  Def(env, exports, "maskedFill_", FN { T(info, 0).masked_fill_(BoolMask(T(info, 1)), Sc(info, 2)); return info.Env().Undefined(); });

  // Multi-tensor updates (one native call for a whole parameter list).
  // foreachLerp_(targets, sources, weight): EMA target <- target + w (source - target)
  Def(env, exports, "foreachLerp_", FN {
    auto a = TL(info, 0), b = TL(info, 1);
    if (a.size() != b.size()) throw std::invalid_argument("foreachLerp_: lists differ in length");
    at::Scalar w = Sc(info, 2);
    at::NoGradGuard ng;
    for (size_t k = 0; k < a.size(); k++) a[k].lerp_(b[k], w);
    return info.Env().Undefined();
  });
  // foreachNormSq(tensors): sum of squared L2 norms, as a 0-d float64 tensor (gradient clipping)
  Def(env, exports, "foreachNormSq", FN {
    auto a = TL(info, 0);
    at::NoGradGuard ng;
    // on the tensors' device: a CPU accumulator fails against CUDA (or meta) norms
    at::Tensor acc = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(a.empty() ? at::Device(at::kCPU) : a[0].device()));
    for (auto& t : a) acc += at::linalg_vector_norm(t, 2, c10::nullopt, false, at::kDouble).square();
    R(acc);
  });
}

}  // namespace cj
