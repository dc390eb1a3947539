// Attention's two bf16 batched products on oneDNN: read q, k, v in place from the qkv Linear's (B, N, 3, H, d)
// output with strided memory descriptors (no copies), against packing them to contiguous (B, H, N, d) first and
// writing the output back to (B, N, H, d) (the copies the step makes today). Session 13's question: would a fused
// attention op that skips the copies be faster? oneDNN 2.6 runs the strided products on its `gemm:jit` path and the
// packed ones on `brg:avx512_core_bf16`, and the packed variant wins, copies included (docs/results/performance/).
//
//   g++ -O2 -o /tmp/attn_layout scripts/microbench/dnnl_attention_layout.cc -ldnnl
//   OMP_NUM_THREADS=1 /tmp/attn_layout 64 64    # batch 64, 64 tokens (the target encoder); 64 24: the context
#include <oneapi/dnnl/dnnl.hpp>
#include <chrono>
#include <cstdio>
#include <vector>
#include <algorithm>
#include <cstdint>
#include <cstring>
using namespace dnnl; using dt = memory::data_type;
int main(int argc,char**argv){
  engine eng(engine::kind::cpu,0); stream s(eng);
  int64_t B=atoi(argv[1]),N=atoi(argv[2]),H=3,d=64,C=H*d;
  std::vector<uint16_t> qkv(B*N*3*C, 0x3f80), S(B*H*N*N), O(B*N*C), qc(B*H*N*d,0x3f80), kc(B*H*d*N,0x3f80), vc(B*H*N*d,0x3f80), oc(B*H*N*d);
  for(size_t i=0;i<qkv.size();i++) qkv[i]=0x3f80 + (i%7);
  memory::desc q({B,H,N,d}, dt::bf16, {N*3*C, d, 3*C, 1});
  memory::desc kt({B,H,d,N}, dt::bf16, {N*3*C, d, 1, 3*C});
  memory::desc sd({B,H,N,N}, dt::bf16, {H*N*N, N*N, N, 1});
  memory::desc v({B,H,N,d}, dt::bf16, {N*3*C, d, 3*C, 1});
  memory::desc od({B,H,N,d}, dt::bf16, {N*C, d, C, 1});
  matmul m1(matmul::primitive_desc(matmul::desc(q, kt, sd), eng)), m2(matmul::primitive_desc(matmul::desc(sd, v, od), eng));
  memory::desc qc_({B,H,N,d}, dt::bf16, memory::format_tag::abcd), kc_({B,H,d,N}, dt::bf16, memory::format_tag::abcd);
  // packed k as (B,H,N,d) read transposed
  memory::desc kT_({B,H,d,N}, dt::bf16, memory::format_tag::abdc);
  auto p1=matmul::primitive_desc(matmul::desc(qc_, kT_, sd), eng), p2=matmul::primitive_desc(matmul::desc(sd, qc_, qc_), eng);
  printf("strided %s %s; packed %s %s\n", matmul::primitive_desc(matmul::desc(q, kt, sd), eng).impl_info_str(), matmul::primitive_desc(matmul::desc(sd, v, od), eng).impl_info_str(), p1.impl_info_str(), p2.impl_info_str());
  matmul c1(p1), c2(p2);
  auto pack=[&](){ // qkv (B,N,3,H,d) -> q,k,v (B,H,N,d)
    for(int64_t b=0;b<B;b++) for(int64_t n=0;n<N;n++) for(int s3=0;s3<3;s3++) for(int64_t h=0;h<H;h++){
      uint16_t* dst=(s3==0?qc.data():s3==1?kc.data():vc.data()) + ((b*H+h)*N+n)*d;
      memcpy(dst, qkv.data()+((b*N+n)*3+s3)*C+h*d, d*2);
    }};
  auto unpack=[&](){ for(int64_t b=0;b<B;b++) for(int64_t h=0;h<H;h++) for(int64_t n=0;n<N;n++) memcpy(O.data()+(b*N+n)*C+h*d, oc.data()+((b*H+h)*N+n)*d, d*2); };
  auto run=[&](int var){
    auto t0=std::chrono::steady_clock::now();
    if(var==0){
      m1.execute(s,{{DNNL_ARG_SRC,memory(q,eng,qkv.data())},{DNNL_ARG_WEIGHTS,memory(kt,eng,qkv.data()+C)},{DNNL_ARG_DST,memory(sd,eng,S.data())}});
      m2.execute(s,{{DNNL_ARG_SRC,memory(sd,eng,S.data())},{DNNL_ARG_WEIGHTS,memory(v,eng,qkv.data()+2*C)},{DNNL_ARG_DST,memory(od,eng,O.data())}});
    } else {
      pack();
      c1.execute(s,{{DNNL_ARG_SRC,memory(qc_,eng,qc.data())},{DNNL_ARG_WEIGHTS,memory(kT_,eng,kc.data())},{DNNL_ARG_DST,memory(sd,eng,S.data())}});
      c2.execute(s,{{DNNL_ARG_SRC,memory(sd,eng,S.data())},{DNNL_ARG_WEIGHTS,memory(qc_,eng,vc.data())},{DNNL_ARG_DST,memory(qc_,eng,oc.data())}});
      unpack();
    }
    s.wait();
    return std::chrono::duration<double,std::milli>(std::chrono::steady_clock::now()-t0).count();
  };
  std::vector<double> a,b2;
  for(int r=0;r<300;r++){ a.push_back(run(0)); b2.push_back(run(1)); }
  std::sort(a.begin(),a.end()); std::sort(b2.begin(),b2.end());
  printf("B=%ld N=%ld strided median %.3f ms (p10 %.3f)  packed median %.3f ms (p10 %.3f)\n",B,N,a[150],a[30],b2[150],b2[30]);
}
