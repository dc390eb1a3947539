// A first hand-written AVX-512 sgemm (BLIS-style: 12 x 32 register tile, B packed in 32-column panels, A read in place
// or packed) against oneDNN's dnnl_sgemm on the preset step's GEMM shapes, one thread each, alternated, best of 12.
// The question: is there room above oneDNN for a GEMM of our own that would also take the element-wise epilogues
// (bias, GELU, residual add) into its register tiles? Session 23 (Intel Emerald Rapids VM, FMA peak ~175 GFLOP/s per
// thread, idle): oneDNN ran these shapes at 116-163 GFLOP/s, and this kernel took 0.99-1.38x its time (1.20x over all
// shapes; under load 0.98-1.44x). Not built into the addon: oneDNN is already near this CPU's FMA peak on the shapes
// that matter, so an epilogue would have to pay for a slower GEMM.
//
//   g++ -O3 -march=native -o /tmp/own_sgemm scripts/microbench/own_sgemm_vs_dnnl.cc -ldnnl && OMP_NUM_THREADS=1 /tmp/own_sgemm
#include <immintrin.h>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <vector>
// C (R x N, ldc) = op(A) (R x K) op(B) (K x N) [+ bias (N)] on one thread.
// A(i,k) = a[i*ars + k*acs]; B(k,j) = b[k*brs + j*bcs]
namespace cjg {
constexpr int NR = 32;
constexpr int MRMAX = 12;
template <int MR, bool AROW>
static inline void Kernel(int kc, const float* __restrict ap, int64_t as, const float* __restrict bp, int64_t ldbp, float* __restrict c, int64_t ldc,
                          int ncols, bool load, const float* bias) {
  __m512 acc0[MR], acc1[MR];
  const __mmask16 m0 = ncols >= 16 ? 0xFFFF : (__mmask16)((1u << ncols) - 1);
  const __mmask16 m1 = ncols >= 32 ? 0xFFFF : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
  if (load) {
    for (int i = 0; i < MR; i++) { acc0[i] = _mm512_maskz_loadu_ps(m0, c + i * ldc); acc1[i] = _mm512_maskz_loadu_ps(m1, c + i * ldc + 16); }
  } else if (bias) {
    __m512 b0 = _mm512_maskz_loadu_ps(m0, bias), b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    for (int i = 0; i < MR; i++) { acc0[i] = b0; acc1[i] = b1; }
  } else {
    for (int i = 0; i < MR; i++) { acc0[i] = _mm512_setzero_ps(); acc1[i] = _mm512_setzero_ps(); }
  }
  for (int k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      const __m512 av = _mm512_set1_ps(AROW ? ap[i * as] : ap[i]);
      acc0[i] = _mm512_fmadd_ps(av, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(av, b1, acc1[i]);
    }
    ap += AROW ? 1 : MRMAX;
    bp += ldbp;
  }
  for (int i = 0; i < MR; i++) { _mm512_mask_storeu_ps(c + i * ldc, m0, acc0[i]); _mm512_mask_storeu_ps(c + i * ldc + 16, m1, acc1[i]); }
}
template <bool AROW>
static void Dispatch(int mr, int kc, const float* ap, int64_t as, const float* bp, int64_t ldbp, float* c, int64_t ldc, int ncols, bool load, const float* bias) {
  switch (mr) {
    case 12: Kernel<12, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 11: Kernel<11, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 10: Kernel<10, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 9: Kernel<9, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 8: Kernel<8, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 7: Kernel<7, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 6: Kernel<6, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 5: Kernel<5, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 4: Kernel<4, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 3: Kernel<3, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 2: Kernel<2, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
    case 1: Kernel<1, AROW>(kc, ap, as, bp, ldbp, c, ldc, ncols, load, bias); break;
  }
}
static void PackA(const float* a, int64_t ars, int64_t acs, int mr, int kc, float* ap) {
  if (ars == 1) {
    for (int k = 0; k < kc; k++) { const float* s = a + k * acs; float* d = ap + k * MRMAX; for (int i = 0; i < mr; i++) d[i] = s[i]; }
  } else {
    for (int i = 0; i < mr; i++) { const float* s = a + i * ars; for (int k = 0; k < kc; k++) ap[k * MRMAX + i] = s[k * acs]; }
  }
}
// B block (kc x n) into panels of NR columns, each kc x NR, zero-padded
static void PackB(const float* b, int64_t brs, int64_t bcs, int kc, int n, float* bp) {
  for (int j0 = 0; j0 < n; j0 += NR) {
    float* d = bp + (int64_t)j0 * kc;
    const int w = std::min(NR, n - j0);
    if (bcs == 1) {
      for (int k = 0; k < kc; k++) { const float* s = b + k * brs + j0; for (int j = 0; j < w; j++) d[k * NR + j] = s[j]; for (int j = w; j < NR; j++) d[k * NR + j] = 0; }
    } else {
      for (int j = 0; j < w; j++) { const float* s = b + (j0 + j) * bcs; for (int k = 0; k < kc; k++) d[k * NR + j] = s[k * brs]; }
      for (int j = w; j < NR; j++) for (int k = 0; k < kc; k++) d[k * NR + j] = 0;
    }
  }
}
// one thread's rows [0, R) of C
static void Sgemm(int64_t R, int64_t K, int64_t N, const float* a, int64_t ars, int64_t acs, const float* b, int64_t brs, int64_t bcs,
                  float* c, int64_t ldc, const float* bias, int KC = 256, int NC = 768) {
  thread_local std::vector<float> abuf, bbuf;
  abuf.resize((size_t)MRMAX * KC + 64);
  const bool arow = acs == 1;
  bbuf.resize((size_t)KC * ((NC + NR - 1) / NR * NR) + 64);
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int nc = (int)std::min<int64_t>(NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int kc = (int)std::min<int64_t>(KC, K - pc);
      PackB(b + pc * brs + jc * bcs, brs, bcs, kc, nc, bbuf.data());
      for (int64_t ic = 0; ic < R; ic += MRMAX) {
        const int mr = (int)std::min<int64_t>(MRMAX, R - ic);
        const float* ablk = a + ic * ars + pc * acs;
        if (!arow) PackA(ablk, ars, acs, mr, kc, abuf.data());
        for (int jr = 0; jr < nc; jr += NR) {
          const float* bp = bbuf.data() + (int64_t)jr * kc;
          float* cp = c + ic * ldc + jc + jr;
          const int w = std::min(NR, nc - jr);
          const float* bi = bias ? bias + jc + jr : nullptr;
          if (arow) Dispatch<true>(mr, kc, ablk, ars, bp, NR, cp, ldc, w, pc > 0, bi);
          else Dispatch<false>(mr, kc, abuf.data(), 0, bp, NR, cp, ldc, w, pc > 0, bi);
        }
      }
    }
  }
}
}  // namespace cjg
#include <dnnl.h>
#include <chrono>
#include <cstdio>
#include <random>
#include <cmath>
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv){
  struct S{int R,K,C; char ta,tb;}; S sh[]={{4096,192,768,'N','T'},{4096,768,192,'N','T'},{4096,192,576,'N','T'},{4096,192,192,'N','T'},{1280,192,768,'N','T'},{4096,768,192,'N','N'},{4096,192,768,'N','N'},{96,8192,768,'T','N'},{384,8192,192,'T','N'},{8192,96,384,'N','T'},{8192,384,96,'N','T'},{8192,384,96,'N','N'},{192,16384,96,'T','N'}};
  std::mt19937 rng(0); std::uniform_real_distribution<float> u(-1,1);
  int KC = argc > 1 ? atoi(argv[1]) : 256;
  double tt[2]={0,0};
  for (auto s: sh){
    // logical A (R x K): ta 'N' row-major a[i*K+k]; 'T' stored K x R
    // logical B (K x C): tb 'T': stored C x K (W); 'N': stored K x C
    std::vector<float> a((size_t)s.R*s.K), w((size_t)s.C*s.K), y((size_t)s.R*s.C), y2((size_t)s.R*s.C), bias(s.C);
    for(auto&v:a)v=u(rng); for(auto&v:w)v=u(rng); for(auto&v:bias)v=u(rng);
    int lda = s.ta=='N'? s.K: s.R, ldb = s.tb=='N'? s.C: s.K;
    int64_t ars = s.ta=='N'? s.K:1, acs = s.ta=='N'?1:s.R, brs = s.tb=='N'? s.C:1, bcs = s.tb=='N'?1:s.K;
    double best[2]={1e9,1e9};
    for(int it=0;it<12;it++) for (int w_=0; w_<2; w_++){ int which = (it%2)? 1-w_: w_; double t0=now();
      if (which==0) dnnl_sgemm(s.ta,s.tb,s.R,s.C,s.K,1.f,a.data(),lda,w.data(),ldb,0.f,y.data(),s.C);
      else cjg::Sgemm(s.R,s.K,s.C,a.data(),ars,acs,w.data(),brs,bcs,y2.data(),s.C,nullptr,KC);
      best[which]=std::min(best[which],now()-t0);}
    double md=0, mx=0; for(size_t i=0;i<y.size();i++){md=std::max(md,(double)std::fabs(y[i]-y2[i])); mx=std::max(mx,(double)std::fabs(y[i]));}
    double f=2.0*s.R*s.K*s.C; tt[0]+=best[0]; tt[1]+=best[1];
    printf("%5d x %5d x %4d %c%c: dnnl %6.1f  ours %6.1f GFLOP/s  ratio %.2f  maxdiff %.2g/%.2g\n", s.R,s.K,s.C,s.ta,s.tb, f/best[0]/1e9, f/best[1]/1e9, best[1]/best[0], md, mx);}
  printf("total time ours/dnnl %.3f\n", tt[1]/tt[0]);
}
