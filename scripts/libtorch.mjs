#!/usr/bin/env node
// Finds libtorch for node-gyp, in the order the Rust `tch` crate uses:
//   1. $LIBTORCH (a libtorch directory with include/ and lib/, e.g. the pytorch.org zip, CPU or CUDA)
//   2. the libtorch inside an importable Python `torch` (pip wheels carry include/ and lib/)
//   3. Debian's libtorch-dev under /usr
// c10d (data-parallel training) is compiled in when the Gloo headers are found (Debian: libgloo-dev,
// or a libtorch whose include/ carries gloo/); CJEPA_C10D=0 leaves it out. NCCL only on request
// (CJEPA_NCCL=1 with a CUDA libtorch: it needs the CUDA toolkit's and NCCL's headers).
// Usage: node scripts/libtorch.mjs include|libdirs|ldflags|cflags|describe
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

function fromEnv() {
  const dir = process.env.LIBTORCH;
  if (!dir) return null;
  if (!existsSync(join(dir, 'include', 'ATen', 'ATen.h'))) {
    throw new Error(`LIBTORCH=${dir} does not look like a libtorch directory (no include/ATen/ATen.h)`);
  }
  const abi = process.env.LIBTORCH_CXX11_ABI ?? '1';
  return { source: 'LIBTORCH', include: [join(dir, 'include'), join(dir, 'include', 'torch', 'csrc', 'api', 'include')], lib: join(dir, 'lib'), abi };
}

function fromPython() {
  if (process.env.LIBTORCH_USE_PYTORCH === '0') return null;
  const pythons = [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean);
  for (const py of pythons) {
    try {
      const out = execFileSync(py, ['-c',
        'import torch, os, json; d = os.path.dirname(torch.__file__); ' +
        'print(json.dumps({"dir": d, "abi": int(torch._C._GLIBCXX_USE_CXX11_ABI)}))'],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60000 });
      const { dir, abi } = JSON.parse(out.trim());
      // Debian's python3-torch has no headers of its own: it uses /usr (handled below).
      if (existsSync(join(dir, 'include', 'ATen', 'ATen.h'))) {
        return { source: `python torch (${py})`, include: [join(dir, 'include'), join(dir, 'include', 'torch', 'csrc', 'api', 'include')], lib: join(dir, 'lib'), abi: String(abi) };
      }
    } catch { /* not importable with this interpreter */ }
  }
  return null;
}

function fromSystem() {
  if (existsSync('/usr/include/ATen/ATen.h')) {
    return { source: 'system (/usr, Debian libtorch-dev)', include: [], lib: null, abi: '1' };
  }
  return null;
}

function find() {
  const found = fromEnv() ?? fromPython() ?? fromSystem();
  if (!found) {
    throw new Error('cjepa: libtorch not found. Install Debian\'s libtorch-dev (apt-get install -y libtorch-dev), ' +
      'or set LIBTORCH to an unpacked libtorch directory (see README, "Bringing your own libtorch").');
  }
  return found;
}

const what = process.argv[2] ?? 'describe';
const lt = find();
const hasCuda = lt.lib !== null && (existsSync(join(lt.lib, 'libtorch_cuda.so')));
const glooDirs = [...lt.include, '/usr/include', '/usr/local/include'];
const gloo = process.env.CJEPA_C10D !== '0' && glooDirs.some((d) => existsSync(join(d, 'gloo', 'config.h')));
const nccl = gloo && hasCuda && process.env.CJEPA_NCCL === '1';
// the shared libraries libtorch_cpu links (ldd's output, read once; '' where ldd cannot run)
const libtorchLinks = (() => {
  try {
    return execFileSync('ldd', [join(lt.lib ?? '/usr/lib/x86_64-linux-gnu', 'libtorch_cpu.so')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch { return ''; }
})();
// oneDNN called directly (Linear forwards with the bias in the GEMM's epilogue): only when libtorch itself
// runs on the shared libdnnl (Debian's does; wheels and zips carry their own inside), with its headers
// (Debian: libdnnl-dev); CJEPA_DNNL=0 leaves it out
const dnnl = process.env.CJEPA_DNNL !== '0' && existsSync('/usr/include/oneapi/dnnl/dnnl.hpp') && /libdnnl\.so/.test(libtorchLinks);
// the system BLAS libtorch runs its fp32 GEMMs on (Debian: libblas.so.3 -> OpenBLAS): the addon's fp32 batched
// matmul calls the same sgemm_ (CJEPA_SYSBLAS=0 leaves it out; wheels bundle MKL and keep libtorch's bmm)
const sysblas = process.env.CJEPA_SYSBLAS !== '0' && /libblas\.so\.3/.test(libtorchLinks);
switch (what) {
  case 'include': console.log(lt.include.join(' ')); break;
  case 'ldflags': {
    const libs = ['-ltorch', '-ltorch_cpu', '-lc10', ...(dnnl ? ['-ldnnl'] : []), ...(sysblas ? ['-l:libblas.so.3'] : [])];
    if (hasCuda) libs.push('-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed');
    const pre = lt.lib ? [`-L${lt.lib}`, `-Wl,-rpath,${lt.lib}`] : [];
    console.log([...pre, ...libs].join(' '));
    break;
  }
  case 'cflags': {
    const f = [`-D_GLIBCXX_USE_CXX11_ABI=${lt.abi}`];
    if (gloo) f.push('-DUSE_C10D_GLOO'); // ProcessGroupGloo.hpp is guarded by it
    if (nccl) f.push('-DUSE_C10D_NCCL');
    if (dnnl) f.push('-DCJEPA_DNNL');
    if (sysblas) f.push('-DCJEPA_SYSBLAS');
    console.log(f.join(' '));
    break;
  }
  default: console.log(JSON.stringify({ ...lt, cuda: hasCuda, c10d: gloo ? (nccl ? 'gloo+nccl' : 'gloo') : 'none (install libgloo-dev)', onednn: dnnl ? 'direct (bf16 Linear)' : 'through libtorch only', blas: sysblas ? 'system libblas.so.3 (fp32 batched matmul)' : 'through libtorch only' }, null, 2));
}
