// A caching CPU allocator for libtorch's large blocks (the activations of a step or a forward).
//
// Why: glibc serves blocks of a few MB from its heap (with the malloc tuning in fused.cc) or from fresh
// mmaps (without it). From the heap, freed activations are not reused: libtorch asks for 64-byte-aligned
// memory, glibc's memalign needs a little more than the freed chunk of the same size, and the small
// handles of our JS tensors (freed only when V8 collects them) sit between the chunks and keep them
// from coalescing, so the heap grows to several times the live memory (a no-grad forward of the preset
// encoder on 256 images: 1.3 GB peak RSS for ~0.27 GB live). From fresh mmaps every step page-faults its
// memory in again (35 % slower). Here a block of >= kCacheMin bytes comes from its own mmap and, when
// its tensor dies, waits in a free list for the next request of about its size (at most 1/8 larger):
// a training step or a forward asks for the same sizes every time, so after the first one nothing is
// mapped or faulted in again, and the resident memory is the peak of the live memory.
//
// Smaller blocks go to c10::alloc_cpu (the default allocator's own). Every block has a small header
// (kind, size, start) just in front of the pointer libtorch sees, so one deleter frees both kinds (the
// raw allocate/deallocate interface needs a single deleter). Free blocks above a cap (default a quarter
// of physical memory; CJEPA_CPU_CACHE_MB sets it) are unmapped instead of kept; emptyCpuCache() unmaps
// every free block. CJEPA_CPU_CACHE=0 leaves libtorch's default allocator in place.
// Measured (CPU time, one thread, encoder forward + backward of 128 images): fp32 10-15 % less, bf16 level.
#include "common.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace cj {

namespace {

constexpr size_t kHeader = 64;                 // the header's slot: data stays 64-byte aligned, as c10's allocator keeps it
constexpr size_t kCacheMin = 256 << 10;        // smaller blocks: c10::alloc_cpu
constexpr size_t kGranule = 64 << 10;          // mapped sizes are multiples of this
constexpr size_t kStagger = 4096;              // data offsets within a mapping: 64, 128, ..., 4096 bytes
constexpr uint64_t kSmall = 0x636a536d616c6c31ULL, kMapped = 0x636a4d6170706564ULL;

struct Header {
  uint64_t kind;
  uint64_t bytes;  // the whole mapping (kMapped) or the requested size plus the header (kSmall)
  void* base;      // where the mapping or the c10 block starts
};

struct Stats {
  uint64_t inUse = 0, cached = 0, peakInUse = 0, hits = 0, maps = 0, unmaps = 0;
};

class CachingCpuAllocator final : public c10::Allocator {
 public:
  explicit CachingCpuAllocator(size_t capBytes) : cap_(capBytes) {}

  c10::DataPtr allocate(size_t n) const override {
    if (n == 0) return {nullptr, nullptr, &Delete, c10::Device(c10::DeviceType::CPU)};
    char* p;
    if (n + kHeader < kCacheMin) {
      void* base = c10::alloc_cpu(n + kHeader);  // throws c10::Error when out of memory
      p = static_cast<char*>(base) + kHeader;
      reinterpret_cast<Header*>(p)[-1] = {kSmall, n + kHeader, base};
    } else {
      p = Self().TakeMapped(n);
    }
    return {p, p, &Delete, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &Delete; }

  Stats stats() {
    std::lock_guard<std::mutex> g(mu_);
    return stats_;
  }
  void emptyCache() {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [bytes, base] : free_) Unmap(base, bytes);
    free_.clear();
    stats_.cached = 0;
  }

 private:
  static CachingCpuAllocator& Self();

  static void Delete(void* p) {
    if (p == nullptr) return;
    const Header h = static_cast<Header*>(p)[-1];
    if (h.kind == kSmall) return c10::free_cpu(h.base);
    Self().GiveBack(h.base, h.bytes);  // kMapped: only this allocator's blocks carry this deleter
  }

  // Where the data starts in a mapping: a multiple of 64 bytes that differs from block to block. Were
  // every block at the same offset from a page boundary, the operands of an elementwise op would map to
  // the same L1 sets and alias in the load/store unit (bf16 steps were ~4 % slower that way).
  static size_t Offset(const void* base) {
    const uint64_t page = reinterpret_cast<uintptr_t>(base) >> 12;
    return kHeader * (1 + ((page * 0x9E3779B97F4A7C15ULL) >> 58));  // a hash of the page: 64, 128, ..., 4096
  }

  // The data pointer of a free mapping that fits n bytes and is at most 1/8 larger, or of a new one.
  char* TakeMapped(size_t n) {
    const size_t need = n + kStagger;  // the largest offset leaves n bytes
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = free_.lower_bound(need);
      if (it != free_.end() && it->first <= need + need / 8 + kGranule) {
        void* base = it->second;
        size_t bytes = it->first;
        free_.erase(it);
        stats_.cached -= bytes;
        stats_.hits++;
        Used(bytes);
        return static_cast<char*>(base) + Offset(base);
      }
    }
    size_t bytes = (need + kGranule - 1) / kGranule * kGranule;
    void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
      emptyCache();  // what the cache holds may be what the mapping needs
      base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    TORCH_CHECK(base != MAP_FAILED, "cjepa CPU allocator: not enough memory: you tried to allocate ", n, " bytes");
    char* p = static_cast<char*>(base) + Offset(base);
    reinterpret_cast<Header*>(p)[-1] = {kMapped, bytes, base};
    std::lock_guard<std::mutex> g(mu_);
    stats_.maps++;
    Used(bytes);
    return p;
  }

  void GiveBack(void* base, size_t bytes) {
    std::lock_guard<std::mutex> g(mu_);
    stats_.inUse -= bytes;
    if (stats_.cached + bytes > cap_) return Unmap(base, bytes);
    free_.emplace(bytes, base);
    stats_.cached += bytes;
  }

  void Used(size_t bytes) {
    stats_.inUse += bytes;
    if (stats_.inUse > stats_.peakInUse) stats_.peakInUse = stats_.inUse;
  }
  void Unmap(void* base, size_t bytes) {
    munmap(base, bytes);
    stats_.unmaps++;
  }

  const size_t cap_;
  std::mutex mu_;
  std::multimap<size_t, void*> free_;  // size of the mapping -> its base
  Stats stats_;
};

size_t CapBytes() {
  if (const char* v = std::getenv("CJEPA_CPU_CACHE_MB")) return static_cast<size_t>(std::strtoull(v, nullptr, 10)) << 20;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) / 4 : size_t(1) << 30;
}

// Never destroyed: tensors may still be freed while the process exits.
CachingCpuAllocator* gAllocator = nullptr;

CachingCpuAllocator& CachingCpuAllocator::Self() { return *gAllocator; }

bool Install() {
  const char* off = std::getenv("CJEPA_CPU_CACHE");
  if (off && std::string(off) == "0") return false;
  gAllocator = new CachingCpuAllocator(CapBytes());
  // priority 1: above the default allocator's registration, so a later default registration cannot undo it;
  // blocks allocated before keep their own deleter
  c10::SetCPUAllocator(gAllocator, 1);
  return true;
}

}  // namespace

void RegisterCpuAllocator(Napi::Env env, Napi::Object exports) {
  bool on = Install();
  exports.Set("cpuCacheEnabled", Napi::Boolean::New(env, on));
  exports.Set("cpuMemoryStats", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    auto out = Napi::Object::New(info.Env());
    Stats s = gAllocator ? gAllocator->stats() : Stats{};
    out.Set("inUseBytes", (double)s.inUse);
    out.Set("cachedBytes", (double)s.cached);
    out.Set("peakInUseBytes", (double)s.peakInUse);
    out.Set("hits", (double)s.hits);
    out.Set("maps", (double)s.maps);
    out.Set("unmaps", (double)s.unmaps);
    return out;
  }));
  exports.Set("emptyCpuCache", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (gAllocator) gAllocator->emptyCache();
    return info.Env().Undefined();
  }));
}

}  // namespace cj
