// Child of cpu_allocator.test.ts: n no-grad forwards of the preset encoder (6 blocks, 192 wide, 8x8 grid)
// on `batch` images; prints a checksum of the features, the growth of the peak RSS over the forwards
// and the allocator's counters. CJEPA_CPU_CACHE in the environment chooses the allocator.
import { readFileSync } from 'node:fs';
import * as T from '../../src/tensor/index.js';
import { VisionTransformer, vitConfig } from '../../src/nn/vit.js';

const args = process.argv.slice(2);
// run by node --test with no arguments (it runs every file under dist/test): nothing to do
if (args.length === 2) main(Number(args[0]), Number(args[1]));

function main(batch: number, n: number): void {
  const hwmBytes = () => 1024 * Number(readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+)/)![1]);
  T.setNumThreads(1);
  const gen = new T.Generator(0);
  const enc = new VisionTransformer(vitConfig('vit_tiny', { patchSize: 4, imgSize: 32, depth: 6, inChans: 3 }));
  enc.eval();
  const x = T.randn([batch, 3, 32, 32], { generator: gen });
  const before = hwmBytes();
  let checksum: number[] = [];
  for (let i = 0; i < n; i++) {
    checksum = T.noGrad(() => T.tidy(() => {
      const f = enc.forward(x).mean(1);
      return [f.sum().item(), f.abs().sum().item(), f.select(0, batch - 1).square().sum().item()];
    }));
  }
  console.log(JSON.stringify({ checksum, hwmGrowthBytes: hwmBytes() - before, stats: T.cpuMemoryStats() }));
}
