// c10d from the addon: TCPStore rendezvous, a Gloo (CPU) or NCCL (CUDA) process group, and the
// collectives data-parallel training needs: all-reduce (bucketed gradient averaging), broadcast,
// barrier, and an all-gather that carries gradients (VICReg statistics over the global batch).
// Built only when the Gloo headers exist (libgloo-dev): scripts/libtorch.mjs then defines USE_C10D_GLOO.
#include "common.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>

#ifdef USE_C10D_GLOO
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

namespace cj {

static const char* kNoC10d = "this build has no c10d (install libgloo-dev and rebuild: npm run build:native)";

static Napi::Value DistInfo(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
#ifdef USE_C10D_GLOO
  o.Set("c10d", true);
  o.Set("gloo", true);
#else
  o.Set("c10d", false);
  o.Set("gloo", false);
  o.Set("reason", kNoC10d);
#endif
#ifdef USE_C10D_NCCL
  o.Set("nccl", true);
#else
  o.Set("nccl", false);
#endif
  return o;
}

#ifdef USE_C10D_GLOO

constexpr uint64_t kGroupTag = 0x636a47726f75705fULL;  // "cjGroup_"

struct GroupHolder {
  uint64_t tag = kGroupTag;
  int64_t id = 0;
  int rank = 0;
  int size = 1;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
};

// The autograd all-gather's backward runs after the JS call returned: it finds its group by id.
static std::mutex g_mu;
static std::map<int64_t, c10::intrusive_ptr<c10d::ProcessGroup>> g_groups;
static int64_t g_nextId = 1;

static c10::intrusive_ptr<c10d::ProcessGroup> GroupById(int64_t id) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_groups.find(id);
  TORCH_CHECK(it != g_groups.end(), "the process group of this all-gather was destroyed before its backward");
  return it->second;
}

static GroupHolder& GroupOf(const Napi::CallbackInfo& info, size_t i) {
  GroupHolder* g = info[i].IsExternal() ? info[i].As<Napi::External<GroupHolder>>().Data() : nullptr;
  if (g == nullptr || g->tag != kGroupTag) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a ProcessGroup");
  if (!g->pg) throw Napi::Error::New(info.Env(), "the process group was destroyed");
  return *g;
}

static void FinalizeGroup(Napi::Env, GroupHolder* g) {
  if (g->pg) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_groups.erase(g->id);
  }
  delete g;
}

// Time this process spent waiting for collectives (transfer + waiting for slower ranks), for metrics.
static std::atomic<int64_t> g_waitNs{0};

// The group's timeout bounds every collective (Gloo enforces it), so this wait cannot hang forever.
static void Wait(const c10::intrusive_ptr<c10d::Work>& w) {
  auto t0 = std::chrono::steady_clock::now();
  w->wait();
  g_waitNs += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
}

static Napi::Value CommSeconds(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), g_waitNs.load() * 1e-9); }

// pgInit(addr, port, rank, size, timeoutMs, backend): rank 0 hosts the TCPStore; every rank waits
// (at most timeoutMs) for the others to join.
static Napi::Value PgInit(const Napi::CallbackInfo& info) {
  std::string addr = S(info, 0);
  int64_t port = I(info, 1), rank = I(info, 2), size = I(info, 3), timeoutMs = I(info, 4);
  std::string backend = S(info, 5);
  if (size < 1) throw std::invalid_argument("world size must be >= 1, got " + std::to_string(size));
  if (rank < 0 || rank >= size) throw std::invalid_argument("rank " + std::to_string(rank) + " is outside [0, " + std::to_string(size) + ")");
  if (port < 1 || port > 65535) throw std::invalid_argument("port must be in [1, 65535], got " + std::to_string(port));
  if (timeoutMs < 1) throw std::invalid_argument("timeout must be positive, got " + std::to_string(timeoutMs) + " ms");
  auto timeout = std::chrono::milliseconds(timeoutMs);
  c10d::TCPStoreOptions so;
  so.port = (uint16_t)port;
  so.isServer = rank == 0;
  so.numWorkers = (size_t)size;
  so.waitWorkers = true;
  so.timeout = timeout;
  auto store = c10::make_intrusive<c10d::TCPStore>(addr, so);
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  if (backend == "gloo") {
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname != nullptr && *ifname) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (addr == "127.0.0.1" || addr == "localhost") {
      // single machine: loopback, whatever the hostname resolves to
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, (int)rank, (int)size, opts);
  } else if (backend == "nccl") {
#ifdef USE_C10D_NCCL
    // 1.13 only bounds an NCCL wait by the timeout in blocking-wait mode (read by the constructor); a user's setting wins
    setenv("NCCL_BLOCKING_WAIT", "1", 0);
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, (int)rank, (int)size, opts);
#else
    throw std::invalid_argument("backend 'nccl' needs an addon built against a CUDA libtorch with CJEPA_NCCL=1; this one has Gloo only");
#endif
  } else {
    throw std::invalid_argument("unknown backend '" + backend + "' (expected gloo or nccl)");
  }
  auto* g = new GroupHolder{kGroupTag, 0, (int)rank, (int)size, store, pg};
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g->id = g_nextId++;
    g_groups[g->id] = pg;
  }
  return Napi::External<GroupHolder>::New(info.Env(), g, FinalizeGroup);
}

static Napi::Value PgDestroy(const Napi::CallbackInfo& info) {
  GroupHolder* g = info[0].IsExternal() ? info[0].As<Napi::External<GroupHolder>>().Data() : nullptr;
  if (g == nullptr || g->tag != kGroupTag) throw Napi::TypeError::New(info.Env(), "argument 0 must be a ProcessGroup");
  if (g->pg) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_groups.erase(g->id);
  }
  g->pg.reset();
  g->store.reset();
  return info.Env().Undefined();
}

static c10d::ReduceOp OpOf(const std::string& op) {
  if (op == "sum") return c10d::ReduceOp::SUM;
  if (op == "max") return c10d::ReduceOp::MAX;
  if (op == "min") return c10d::ReduceOp::MIN;
  if (op == "product") return c10d::ReduceOp::PRODUCT;
  throw std::invalid_argument("unknown reduce op '" + op + "' (expected sum, max, min or product)");
}

// Collectives need dense contiguous tensors: reduce a contiguous copy and write it back when needed.
static void AllReduceInPlace(c10d::ProcessGroup& pg, at::Tensor& t, c10d::ReduceOp op) {
  at::NoGradGuard ng;
  at::Tensor buf = t.is_contiguous() ? t : t.contiguous();
  std::vector<at::Tensor> v{buf};
  c10d::AllreduceOptions o;
  o.reduceOp = op;
  Wait(pg.allreduce(v, o));
  if (!buf.is_same(t)) t.copy_(buf);
}

// pgAllReduce(g, t, op): in place, every rank gets the reduction.
static Napi::Value PgAllReduce(const Napi::CallbackInfo& info) {
  auto& g = GroupOf(info, 0);
  AllReduceInPlace(*g.pg, T(info, 1), OpOf(S(info, 2)));
  return info.Env().Undefined();
}

// pgAllReduceMean(g, tensors, bucketBytes): averages tensors over ranks in place, flattened into
// buckets of at most bucketBytes (one collective per bucket instead of one per tensor). Returns the
// number of buckets.
static Napi::Value PgAllReduceMean(const Napi::CallbackInfo& info) {
  auto& g = GroupOf(info, 0);
  auto ts = TL(info, 1);
  int64_t cap = I(info, 2);
  if (cap < 1) throw std::invalid_argument("bucket size must be positive");
  at::NoGradGuard ng;
  int64_t buckets = 0;
  size_t i = 0;
  while (i < ts.size()) {
    size_t j = i;
    int64_t bytes = 0;
    // a bucket: consecutive tensors of one dtype and device, up to cap bytes (at least one tensor)
    while (j < ts.size() && ts[j].scalar_type() == ts[i].scalar_type() && ts[j].device() == ts[i].device() &&
           (j == i || bytes + (int64_t)(ts[j].numel() * ts[j].element_size()) <= cap)) {
      bytes += ts[j].numel() * ts[j].element_size();
      j++;
    }
    std::vector<at::Tensor> flat;
    for (size_t k = i; k < j; k++) flat.push_back(ts[k].reshape({-1}));
    at::Tensor buf = at::cat(flat, 0);
    AllReduceInPlace(*g.pg, buf, c10d::ReduceOp::SUM);
    buf.div_(g.size);
    int64_t off = 0;
    for (size_t k = i; k < j; k++) {
      int64_t n = ts[k].numel();
      ts[k].copy_(buf.narrow(0, off, n).view(ts[k].sizes()));
      off += n;
    }
    buckets++;
    i = j;
  }
  return Napi::Number::New(info.Env(), (double)buckets);
}

// pgBroadcast(g, tensors, root): every rank's tensors become root's, in place.
static Napi::Value PgBroadcast(const Napi::CallbackInfo& info) {
  auto& g = GroupOf(info, 0);
  auto ts = TL(info, 1);
  int64_t root = I(info, 2);
  if (root < 0 || root >= g.size) throw std::invalid_argument("root " + std::to_string(root) + " is outside [0, " + std::to_string(g.size) + ")");
  at::NoGradGuard ng;
  for (auto& t : ts) {
    at::Tensor buf = t.is_contiguous() ? t : t.contiguous();
    std::vector<at::Tensor> v{buf};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    Wait(g.pg->broadcast(v, o));
    if (!buf.is_same(t)) t.copy_(buf);
  }
  return info.Env().Undefined();
}

static Napi::Value PgBarrier(const Napi::CallbackInfo& info) {
  auto& g = GroupOf(info, 0);
  Wait(g.pg->barrier());
  return info.Env().Undefined();
}

// The official VICReg FullGatherLayer: forward = all_gather of the (N, ...) rows of every rank,
// concatenated in rank order; backward = all-reduce (sum) of the incoming gradient, then this rank's
// slice. Every rank must pass the same shape.
struct AllGatherFn : public torch::autograd::Function<AllGatherFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t id) {
    auto pg = GroupById(id);
    ctx->saved_data["id"] = id;
    ctx->saved_data["rank"] = (int64_t)pg->getRank();
    ctx->saved_data["sizes"] = x.sizes().vec();
    ctx->save_for_backward({at::empty({0}, x.options())});  // dtype and device for a missing gradient
    at::Tensor in = x.contiguous();
    std::vector<at::Tensor> outs;
    for (int r = 0; r < pg->getSize(); r++) outs.push_back(at::empty_like(in));
    std::vector<std::vector<at::Tensor>> o{outs};
    std::vector<at::Tensor> i{in};
    Wait(pg->allgather(o, i));
    return at::cat(o[0], 0);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto pg = GroupById(ctx->saved_data["id"].toInt());
    int64_t rank = ctx->saved_data["rank"].toInt();
    auto sizes = ctx->saved_data["sizes"].toIntVector();
    at::Tensor g = grads[0];
    // every rank must join the all-reduce, even one whose gathered output got no gradient
    if (!g.defined()) {
      sizes[0] *= pg->getSize();
      g = at::zeros(sizes, ctx->get_saved_variables()[0].options());
    } else {
      g = g.contiguous().clone();
    }
    AllReduceInPlace(*pg, g, c10d::ReduceOp::SUM);
    int64_t n = g.size(0) / pg->getSize();
    return {g.narrow(0, rank * n, n), at::Tensor()};
  }
};

static Napi::Value PgAllGather(const Napi::CallbackInfo& info) {
  auto& g = GroupOf(info, 0);
  auto& x = T(info, 1);
  if (x.dim() < 1) throw std::invalid_argument("allGather needs a tensor with at least one dimension (rows to gather)");
  return Wrap(info.Env(), AllGatherFn::apply(x, g.id));
}

// Store keys for liveness bookkeeping (which rank fell behind); values are short strings.
static Napi::Value StoreSet(const Napi::CallbackInfo& info) {
  auto& g = GroupOf(info, 0);
  std::string v = S(info, 2);
  g.store->set(S(info, 1), std::vector<uint8_t>(v.begin(), v.end()));
  return info.Env().Undefined();
}

// storeGet(g, key): the value, or null when the key was never set (never blocks on a missing key).
static Napi::Value StoreGet(const Napi::CallbackInfo& info) {
  auto& g = GroupOf(info, 0);
  std::string k = S(info, 1);
  if (!g.store->check({k})) return info.Env().Null();
  auto v = g.store->get(k);
  return Napi::String::New(info.Env(), std::string(v.begin(), v.end()));
}

static Napi::Value PgRank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), GroupOf(info, 0).rank); }
static Napi::Value PgSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), GroupOf(info, 0).size); }

#else

static Napi::Value NoC10d(const Napi::CallbackInfo& info) { throw std::runtime_error(kNoC10d); }

#endif

void RegisterDistributed(Napi::Env env, Napi::Object exports) {
  Def(env, exports, "distInfo", DistInfo);
#ifdef USE_C10D_GLOO
  Def(env, exports, "pgInit", PgInit);
  Def(env, exports, "pgDestroy", PgDestroy);
  Def(env, exports, "pgAllReduce", PgAllReduce);
  Def(env, exports, "pgAllReduceMean", PgAllReduceMean);
  Def(env, exports, "pgBroadcast", PgBroadcast);
  Def(env, exports, "pgBarrier", PgBarrier);
  Def(env, exports, "pgAllGather", PgAllGather);
  Def(env, exports, "pgStoreSet", StoreSet);
  Def(env, exports, "pgStoreGet", StoreGet);
  Def(env, exports, "pgRank", PgRank);
  Def(env, exports, "pgSize", PgSize);
  Def(env, exports, "pgCommSeconds", CommSeconds);
#else
  for (const char* n : {"pgInit", "pgDestroy", "pgAllReduce", "pgAllReduceMean", "pgBroadcast", "pgBarrier", "pgAllGather",
                        "pgStoreSet", "pgStoreGet", "pgRank", "pgSize", "pgCommSeconds"})
    Def(env, exports, n, NoC10d);
#endif
}

}  // namespace cj
