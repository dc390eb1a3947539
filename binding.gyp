{
  "targets": [
    {
      "target_name": "cjepa_native",
      "sources": ["native/addon.cc", "native/ops.cc", "native/distributed.cc", "native/meta.cc", "native/fused.cc", "native/profiler.cc", "native/cpu_allocator.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/libtorch.mjs include)"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-parameter", "-Wno-deprecated-declarations", "-fopenmp", "<!@(node scripts/libtorch.mjs cflags)"],
      "ldflags": ["-fopenmp"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "libraries": ["<!@(node scripts/libtorch.mjs ldflags)"]
    }
  ]
}
