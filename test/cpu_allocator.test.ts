// The caching CPU allocator (native/cpu_allocator.cc): repeated forwards reuse their blocks instead of
// mapping new ones, values are the same as with libtorch's default allocator, the resident memory of a
// no-grad forward stays near its live memory, and a block too large for the machine is a JS Error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as T from '../src/tensor/index.js';
import { VisionTransformer, vitConfig } from '../src/nn/vit.js';

const MiB = 2 ** 20;
const CHILD = fileURLToPath(new URL('./util/allocator_child.js', import.meta.url));

/** Runs the child (n no-grad forwards of a preset-sized encoder) with or without the cache. */
function child(cache: boolean, batch: number, n: number): { checksum: number[]; hwmGrowthBytes: number; stats: T.CpuMemoryStats } {
  const r = spawnSync(process.execPath, [CHILD, String(batch), String(n)], {
    encoding: 'utf8',
    env: { ...process.env, CJEPA_CPU_CACHE: cache ? '1' : '0', CJEPA_THREADS: '1' },
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

test('repeated forwards take their large blocks from the cache: no new mappings after the first', () => {
  assert.equal(T.cpuMemoryStats().enabled, true);
  const enc = new VisionTransformer(vitConfig('vit_tiny', { patchSize: 4, imgSize: 32, depth: 2, inChans: 3 }));
  enc.eval();
  const x = T.randn([64, 3, 32, 32]);  // (64, 64, 192) fp32 activations: 3 MiB blocks
  const forward = () => T.noGrad(() => T.tidy(() => { enc.forward(x).sum(); }));
  forward();
  const s1 = T.cpuMemoryStats();
  for (let i = 0; i < 4; i++) forward();
  const s2 = T.cpuMemoryStats();
  assert.equal(s2.maps, s1.maps, 'no new mappings once the sizes have been seen');
  assert.ok(s2.hits - s1.hits >= 4 * 10, `each forward reuses its blocks (hits ${s2.hits - s1.hits})`);
  assert.equal(s2.inUseBytes, s1.inUseBytes, 'every block of a forward is given back when its tensors die');
  assert.ok(s2.cachedBytes >= 3 * MiB, `freed blocks are kept (${s2.cachedBytes} bytes)`);
  T.emptyCpuCache();
  const s3 = T.cpuMemoryStats();
  assert.equal(s3.cachedBytes, 0);
  assert.ok(s3.unmaps > s2.unmaps);
  forward();
  assert.ok(T.cpuMemoryStats().maps > s3.maps, 'after emptyCpuCache a forward maps again');
  x.dispose();
});

test('the same values as with the default allocator, and a peak RSS near the live memory', () => {
  const on = child(true, 128, 4), off = child(false, 128, 4);
  assert.deepEqual(on.checksum, off.checksum, 'bit-identical features');
  assert.equal(off.stats.enabled, false);
  assert.equal(off.stats.maps, 0);
  // the live peak of large blocks bounds what the cache may keep resident
  const live = on.stats.peakInUseBytes;
  assert.ok(live > 20 * MiB, `peak in use ${live}`);
  assert.ok(on.hwmGrowthBytes < 1.25 * live + 64 * MiB, `peak RSS growth ${on.hwmGrowthBytes / MiB} MiB for ${live / MiB} MiB live`);
  // what it replaces: glibc's heap grows well past the live memory (about 2x here)
  assert.ok(off.hwmGrowthBytes > on.hwmGrowthBytes + 50 * MiB, `default ${off.hwmGrowthBytes / MiB} MiB vs cached ${on.hwmGrowthBytes / MiB} MiB`);
});

test('a block larger than the machine can map is a JS Error naming the size', () => {
  assert.throws(() => T.empty([2 ** 45]), /not enough memory: you tried to allocate 140737488355328 bytes/);
});
