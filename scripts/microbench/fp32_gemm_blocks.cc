// The fp32 Linear's GEMM blocks (native/fused.cc Gemm32) on OpenBLAS's sgemm_ against oneDNN's dnnl_sgemm: the
// preset step's shapes (8,192 rows of the target encoder, 2,560 of the context, 16,384 of the predictor), forward
// (NT), dx (NN) and dW (TN), each split over two OpenMP threads in 16-row blocks with the BLAS single-threaded per
// call, as Gemm32 runs them. The two libraries alternate shape by shape and round by round, so slow drifts of a
// shared machine hit both. Session 21 (Intel Emerald Rapids VM, AVX-512, OpenBLAS's SkylakeX kernels): oneDNN took
// 0.84-0.89x OpenBLAS's time on every layout, which is why Gemm32 runs oneDNN on Intel AVX-512 CPUs. Session 26 (AMD
// EPYC Zen 4 VM, OpenBLAS's Cooperlake kernels): 0.81-0.88 by layout, 0.85 overall, so Zen 4 runs oneDNN too.
//
//   g++ -O2 -fopenmp -o /tmp/gemm_ab scripts/microbench/fp32_gemm_blocks.cc -ldnnl /usr/lib/x86_64-linux-gnu/libopenblas.so.0
//   GOMP_SPINCOUNT=20000 OPENBLAS_CORETYPE=SkylakeX /tmp/gemm_ab      # the family cjepa picks for an AVX-512 CPU
#include <omp.h>
#include <dnnl.h>
#include <chrono>
#include <cstdio>
#include <vector>
#include <random>
#include <algorithm>
extern "C" void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*, const float*, const int*, const float*, float*, const int*);
extern "C" void openblas_set_num_threads(int);
// y (R x C) = a (R x K) * w^T (w: C x K) + bias -- forward NT shape, split rows over 2 omp threads
struct Shape { int R, K, C; char ta, tb; };  // row-major y = op(a) op(b); ta 'T': a stored K x R; tb 'T': b stored C x K
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main() {
  openblas_set_num_threads(1);
  std::vector<Shape> shapes = {{8192,192,576,'N','T'},{8192,768,192,'N','T'},{8192,192,768,'N','T'},{8192,192,192,'N','T'},{2560,192,768,'N','T'},{2560,768,192,'N','T'},{2560,192,576,'N','T'},{16384,96,384,'N','T'},{16384,384,96,'N','T'},
   {8192,768,192,'N','N'},{8192,192,768,'N','N'},{8192,576,192,'N','N'},{2560,768,192,'N','N'},{2560,192,768,'N','N'},{16384,384,96,'N','N'},
   {192,8192,768,'T','N'},{768,8192,192,'T','N'},{576,8192,192,'T','N'},{192,2560,768,'T','N'},{768,2560,192,'T','N'},{96,16384,384,'T','N'},{384,16384,96,'T','N'}};
  std::mt19937 rng(0); std::uniform_real_distribution<float> u(-1,1);
  double tot[2] = {0,0}; double flops = 0; double lt[3][2] = {{0}}; double lf[3] = {0};
  for (int rep = 0; rep < 12; rep++) {
    for (auto s : shapes) {
      std::vector<float> a((size_t)s.R*s.K), w((size_t)s.C*s.K), y((size_t)s.R*s.C);
      for (auto& v : a) v = u(rng); for (auto& v : w) v = u(rng);
      for (int impl = 0; impl < 2; impl++) {
        int which = (rep % 2) ? 1 - impl : impl;
        double t0 = now();
        for (int it = 0; it < 3; it++) {
          #pragma omp parallel num_threads(2)
          {
            int t = omp_get_thread_num();
            int r0 = (s.R * t / 2) / 16 * 16, r1 = t == 1 ? s.R : (s.R * (t+1) / 2) / 16 * 16;
            int n = r1 - r0; const float one = 1, zero = 0;
            int lda = s.ta == 'N' ? s.K : s.R, ldb = s.tb == 'N' ? s.C : s.K;
            const float* as = a.data() + (s.ta == 'N' ? (size_t)r0 * s.K : (size_t)r0);
            if (which == 0) { char cta = s.tb, ctb = s.ta; sgemm_(&cta,&ctb,&s.C,&n,&s.K,&one,w.data(),&ldb,as,&lda,&zero,y.data()+(size_t)r0*s.C,&s.C); }
            else dnnl_sgemm(s.ta,s.tb,n,s.C,s.K,1.f,as,lda,w.data(),ldb,0.f,y.data()+(size_t)r0*s.C,s.C);
          }
        }
        double dt = now() - t0;
        if (rep > 0) { tot[which] += dt; lt[s.ta=='T'?2:(s.tb=='N'?1:0)][which] += dt; }
      }
      if (rep > 0) { flops += 3.0 * 2.0 * s.R * s.K * s.C; lf[s.ta=='T'?2:(s.tb=='N'?1:0)] += 3.0*2.0*s.R*s.K*s.C; }
    }
  }
  const char* nm[3] = {"NT fwd","NN dx","TN dW"};
  for (int l = 0; l < 3; l++) printf("%s: openblas %.0f dnnl %.0f GFLOP/s, time ratio %.3f\n", nm[l], lf[l]/lt[l][0]/1e9, lf[l]/lt[l][1]/1e9, lt[l][1]/lt[l][0]);
  printf("openblas %.1f GFLOP/s, dnnl %.1f GFLOP/s, dnnl/openblas time %.3f\n", flops/tot[0]/1e9, flops/tot[1]/1e9, tot[1]/tot[0]);
}
