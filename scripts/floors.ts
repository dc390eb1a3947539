// The floors an encoder has to beat, on the protocol of `cjepa eval` (same seeded split, same k-NN and
// linear probe, all train images as bank / probe set): raw pixels (the preprocessed image, flattened)
// and a randomly initialised encoder of a config's architecture.
//   node dist/scripts/floors.js --config configs/fashion-mnist-cpu.yaml --data fashion-mnist [--json]
import { parseArgs } from 'node:util';
import * as T from '../src/tensor/index.js';
import { resolveConfig } from '../src/config.js';
import { buildNetworks } from '../src/method/trainer.js';
import { openDatasets, type Dataset } from '../src/data/index.js';
import { extractFeatures, evalLoader } from '../src/eval/features.js';
import { knnClassify } from '../src/eval/knn.js';
import { linearProbe } from '../src/eval/linear_probe.js';
import { rankMe, normalisedStd } from '../src/method/monitors.js';
import type { VisionTransformer } from '../src/nn/vit.js';

const { values: a } = parseArgs({ options: {
  config: { type: 'string' }, data: { type: 'string' }, 'val-split': { type: 'string', default: '0.1' },
  seed: { type: 'string', default: '0' }, json: { type: 'boolean', default: false },
} });
if (!a.config || !a.data) throw new Error('usage: floors --config <preset.yaml> --data <spec> [--val-split 0.1] [--seed 0] [--json]');
const say = (m: string) => console.error(`[floors] ${m}`);

/** The images as the encoder sees them (eval preprocessing), one flattened row each. */
async function pixels(enc: VisionTransformer, ds: Dataset): Promise<{ x: T.Tensor; y: Int32Array }> {
  const loader = evalLoader(enc, ds, { batchSize: 512 });
  const parts: Float32Array[] = []; const labels: number[] = [];
  for await (const b of loader.epoch(0)) { parts.push(b.views[0]!.slice()); labels.push(...b.labels); }
  await loader.close();
  const n = labels.length, d = parts.reduce((s, p) => s + p.length, 0) / n, flat = new Float32Array(n * d);
  let o = 0; for (const p of parts) { flat.set(p, o); o += p.length; }
  return { x: T.tensor(flat, [n, d]), y: Int32Array.from(labels) };
}

function score(name: string, trX: T.Tensor, trY: Int32Array, teX: T.Tensor, teY: Int32Array, numClasses: number, seed: number) {
  const knn = knnClassify(trX, trY, teX, teY, { numClasses, ks: [20, 200] });
  const lin = linearProbe(trX, trY, teX, teY, { numClasses, seed });
  const row = { floor: name, dim: trX.size(1), knn20: knn.top1['20']!, knn200: knn.top1['200']!, linear: lin.top1, rankme_centred: rankMe(teX, { centred: true }), normalised_std: normalisedStd(teX) };
  say(`${name}: k-NN@20 ${(100 * row.knn20).toFixed(2)} %, k-NN@200 ${(100 * row.knn200).toFixed(2)} %, linear ${(100 * row.linear).toFixed(2)} % (${row.dim} dims)`);
  return row;
}

async function main(): Promise<void> {
  const seed = Number(a.seed);
  const { train, val } = await openDatasets(a.data!, { valSplit: Number(a['val-split']), seed });
  const numClasses = Math.max(train.numClasses, val!.numClasses);
  const cfg = resolveConfig(a.config, { seed });
  const nets = buildNetworks(cfg, train.channels);
  const enc = nets.targetEncoder ?? nets.encoder; // the network `cjepa eval` reads (the EMA target starts as a copy)
  say(`train ${train.spec} (${train.length}), test ${val!.spec} (${val!.length})`);
  const rows = [];
  const tr = await pixels(enc, train), te = await pixels(enc, val!);
  rows.push(score('raw pixels', tr.x, tr.y, te.x, te.y, numClasses, seed));
  tr.x.dispose(); te.x.dispose();
  const ftr = await extractFeatures(enc, train, { batchSize: 256 }), fte = await extractFeatures(enc, val!, { batchSize: 256 });
  rows.push(score('random init', ftr.features, ftr.labels, fte.features, fte.labels, numClasses, seed));
  ftr.features.dispose(); fte.features.dispose();
  for (const n of [nets.encoder, nets.targetEncoder, nets.predictor, nets.expander]) n?.dispose();
  if (a.json) console.log(JSON.stringify({ data: a.data, config: a.config, seed, floors: rows }));
}

main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
