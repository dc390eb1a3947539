// Official I-JEPA checkpoints and torch.save files, read without running code: files written by
// PyTorch (test/py/torch_ckpt.py) in the official layout at tiny shapes, plain state dicts, the
// legacy format, malicious pickles (refused; the payload provably did not run) and damaged archives;
// `cjepa convert`, `eval` and `embed` on them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Tensor, randn, Generator, tidy, noGrad } from '../src/tensor/index.js';
import { readTorchFile, SAFE_GLOBALS, TorchTensor } from '../src/io/torch_load.js';
import { openTorchCheckpoint } from '../src/io/ijepa_checkpoint.js';
import { ZipReader } from '../src/io/zip.js';
import { PyDict, Refused, unpickle } from '../src/io/pickle.js';
import { toRaw, loadTensors } from '../src/io/tensors.js';
import { loadEncoderFromCheckpoint, inferHeads } from '../src/eval/load_encoder.js';
import { runTorch, maxAbsDiff, PYTHON } from './util/pytorch.js';
import { writeQuadrantIdx } from './util/synthetic.js';

const dir = mkdtempSync(join(tmpdir(), 'cjepa-pth-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const P = (f: string) => join(dir, f);
const PY_DIR = fileURLToPath(new URL('../../test/py', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const images = randn([3, 1, 16, 16], { generator: new Generator(3) });
const EXPECTED_KEYS = ['pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias'];
let ref: Record<string, Tensor> = {};

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, CJEPA_THREADS: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function pwned(): string[] {
  return spawnSync('sh', ['-c', `ls ${dir} | grep pwned || true`], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
}

before(() => {
  ref = runTorch(`
import torch_ckpt, ref_jepa
d = ${JSON.stringify(dir)}
sds = torch_ckpt.official(d + '/official.pth.tar')
torch_ckpt.official(d + '/official_noscaler.pth.tar', scaler=False)
torch_ckpt.plain(d + '/plain.pth', sds['target_encoder'])
torch_ckpt.plain(d + '/legacy.pth', sds['target_encoder'], legacy=True)
for k, v in torch_ckpt.dtypes(d + '/dtypes.pth').items():
    out['dtypes.' + k] = v.contiguous()
torch_ckpt.dtypes(d + '/dtypes_legacy.pth', legacy=True)
torch_ckpt.evil_files(d, d)
torch_ckpt.rezip(d + '/official.pth.tar', d + '/zip64.pth.tar', zip64=True)
torch_ckpt.rezip(d + '/official.pth.tar', d + '/deflated.pth.tar', deflate=True)
torch_ckpt.rezip(d + '/official.pth.tar', d + '/zip64_deflated.pth.tar', zip64=True, deflate=True)
for name in ('target_encoder', 'encoder'):
    m = ref_jepa.VisionTransformer(**torch_ckpt.TINY)
    m.load_state_dict(sds[name])
    with torch.no_grad():
        out['tokens.' + name] = m(inp['images'])
    for k, v in sds[name].items():
        out[name + '.' + k] = v
`, { images }, [PY_DIR]);
});

test('the official layout (also ZIP64, deflated): three networks with the DDP prefix removed, the metadata, opt and scaler not read', () => {
  for (const f of ['official.pth.tar', 'official_noscaler.pth.tar', 'zip64.pth.tar', 'deflated.pth.tar', 'zip64_deflated.pth.tar']) {
    const ck = openTorchCheckpoint(P(f));
    try {
      assert.equal(ck.kind, 'official');
      assert.equal(ck.format, 'zip');
      if (f.startsWith('zip64')) {
        assert.ok(readFileSync(P(f)).includes(Buffer.from([0x50, 0x4b, 0x06, 0x06])), 'has a ZIP64 end record');
      }
      assert.deepEqual(ck.networks, ['encoder', 'target_encoder', 'predictor']);
      assert.deepEqual(ck.meta, { epoch: 300, loss: 0.1234, batch_size: 128, world_size: 16, lr: 1e-6 });
      assert.deepEqual(ck.skipped, ['opt', 'scaler']);
      assert.deepEqual(ck.refused, []);
      const enc = ck.network('target_encoder');
      for (const k of EXPECTED_KEYS) assert.ok(enc[k], k);
      assert.ok(Object.keys(enc).every((k) => !k.startsWith('module.')));
      for (const [k, t] of Object.entries(enc)) {
        assert.deepEqual(Buffer.from(t.toRaw().data), Buffer.from(toRaw(ref[`target_encoder.${k}`]!).data), k);
      }
      assert.deepEqual(Object.keys(ck.network('predictor')).slice(0, 3), ['mask_token', 'predictor_pos_embed', 'predictor_embed.weight']);
    } finally {
      ck.close();
    }
  }
  // the optimiser state is there, readable, from a real torch.optim.AdamW (its tensors are never read by loading)
  const f = readTorchFile(P('official.pth.tar'));
  const opt = (f.root as PyDict).get('opt') as PyDict;
  const groups = opt.get('param_groups') as PyDict[];
  assert.equal(groups.length, 4);
  assert.equal(groups[2]!.get('WD_exclude'), true);
  assert.ok((opt.get('state') as PyDict).map.size > 0);
  f.close();
});

test('every dtype, non-contiguous views, storage offsets, the legacy format: byte-exact', () => {
  for (const f of ['dtypes.pth', 'dtypes_legacy.pth']) {
    const file = readTorchFile(P(f));
    try {
      const root = file.root as PyDict;
      assert.equal(root.map.size, 12);
      for (const [k, t] of root.map) {
        const want = toRaw(ref[`dtypes.${String(k)}`]!);
        const got = (t as { toRaw(): { dtype: string; shape: number[]; data: Uint8Array } }).toRaw();
        assert.equal(got.dtype, want.dtype, `${f} ${String(k)}`);
        assert.deepEqual(got.shape, want.shape, `${f} ${String(k)}`);
        assert.deepEqual(Buffer.from(got.data), Buffer.from(want.data), `${f} ${String(k)}`);
      }
    } finally {
      file.close();
    }
  }
});

test('embeddings of the loaded encoder equal PyTorch\'s forward of the same weights to 1e-5', () => {
  const cases: [string, 'auto' | 'encoder', string][] = [
    ['official.pth.tar', 'auto', 'target_encoder'], ['official.pth.tar', 'encoder', 'encoder'],
    ['plain.pth', 'auto', 'target_encoder'], ['legacy.pth', 'auto', 'target_encoder'],
  ];
  for (const [f, which, net] of cases) {
    const l = loadEncoderFromCheckpoint(P(f), { which, heads: 3 });
    try {
      assert.equal(l.network, f.startsWith('official') ? net : 'state_dict');
      assert.deepEqual([l.imgSize, l.patchSize, l.channels, l.embedDim], [16, 4, 1, 48]);
      const d = tidy(() => noGrad(() => {
        const tok = l.encoder.forward(images);
        return [maxAbsDiff(tok, ref[`tokens.${net}`]!), maxAbsDiff(tok.mean(1), ref[`tokens.${net}`]!.mean(1))];
      }));
      assert.ok(d[0]! < 1e-5 && d[1]! < 1e-5, `${f} ${which}: tokens ${d[0]}, pooled ${d[1]}`);
    } finally {
      l.encoder.dispose();
    }
  }
});

test('heads: the official size of the width, else a guess that says so; --heads / --model settle it', () => {
  assert.deepEqual(inferHeads(1280, 32), { numHeads: 16, source: 'sizes', model: 'vit_huge', exact: true });
  assert.equal(inferHeads(1280, 24).numHeads, 16);
  assert.match(inferHeads(1280, 24).note!, /vit_huge's 16 heads/);
  assert.equal(inferHeads(1408, 40).numHeads, 16);
  assert.equal(inferHeads(768, 12, { model: 'vit_base' }).numHeads, 12);
  assert.throws(() => inferHeads(768, 12, { model: 'vit_huge' }), /--model vit_huge has width 1280, the weights have 768/);
  assert.throws(() => inferHeads(48, 2, { heads: 5 }), /divisor of the embedding dim 48/);
  const g = inferHeads(48, 2);
  assert.equal(g.source, 'guess');
  assert.match(g.note!, /matches no official ViT size: guessing 1 heads.*--heads/);
  // with the guess, the features are not PyTorch's (the head count matters), and a note was given
  const notes: string[] = [];
  const l = loadEncoderFromCheckpoint(P('official.pth.tar'), { onMessage: (m) => notes.push(m) });
  try {
    assert.ok(notes.some((m) => /guessing 1 heads/.test(m)), notes.join('\n'));
    assert.ok(notes.some((m) => /not read: opt, scaler/.test(m)), notes.join('\n'));
    const d = tidy(() => noGrad(() => maxAbsDiff(l.encoder.forward(images), ref['tokens.target_encoder']!)));
    assert.ok(d > 1e-3, `one head gives the same tokens as three? ${d}`);
  } finally {
    l.encoder.dispose();
  }
});

test('malicious pickles (os.system, posix.system, builtins.eval via REDUCE) are refused naming the global; nothing runs', () => {
  const cases: [string, RegExp][] = [
    ['evil_os_system.pth.tar', /built by 'os\.system', which is not on the allow-list.*nothing was run/],
    ['evil_posix.pth.tar', /built by 'posix\.system'/],
    ['evil_eval.pth.tar', /built by '__builtin__\.eval'/],
    ['evil_bare.pkl', /not one written by torch\.save/],
  ];
  for (const [f, re] of cases) {
    assert.throws(() => openTorchCheckpoint(P(f)), re, f);
    assert.throws(() => loadEncoderFromCheckpoint(P(f)), re, f);
  }
  // inside the network we read: refused, naming the tensor
  assert.throws(() => loadEncoderFromCheckpoint(P('evil_in_target.pth.tar'), { heads: 3 }),
    /entry 'target_encoder'\["module\.norm\.weight"\] is built by 'posix\.system'.*nothing was run/);
  // inside 'opt', never read: the encoders load, and the refused global is reported
  const notes: string[] = [];
  const l = loadEncoderFromCheckpoint(P('evil_in_opt.pth.tar'), { heads: 3, onMessage: (m) => notes.push(m) });
  l.encoder.dispose();
  assert.ok(notes.some((m) => /globals outside the allow-list, never run: posix\.system/.test(m)), notes.join('\n'));
  assert.deepEqual(pwned(), [], 'a payload ran');
  // the payloads are real: Python's torch.load of the same file runs the command
  const r = spawnSync(PYTHON, ['-c', `import torch; torch.load(${JSON.stringify(P('evil_os_system.pth.tar'))})`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(pwned(), ['evil_os_system.pth.tar.pwned']);
});

/** Python values as JSON-able data: dicts as objects, bytes as hex, big ints as strings, refused as a tag. */
function plainOf(v: unknown): unknown {
  if (v instanceof Refused) return `<refused ${v.global}>`;
  if (v instanceof PyDict) return Object.fromEntries([...v.map].map(([k, x]) => [String(k), plainOf(x)]));
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (v instanceof Set) return { set: [...v].map(plainOf) };
  if (typeof v === 'bigint') return v.toString();
  return Array.isArray(v) ? v.map(plainOf) : v;
}

test('the pickle VM: plain data in protocols 0-5; what needs a non-allow-listed global stays an inert marker', () => {
  const r = spawnSync(PYTHON, ['-c', `
import pickle, collections, sys, torch
shared = [7]
d = {'a': [1, -2, 2**40, -2**70, 1.5, None, True, False], 'b': ('x', b'\\x00\\xff', 'é\\n\\'"'),
     'c': collections.OrderedDict([('k', {1: 2})]), 's': {3}, 'm': [shared, shared], '__proto__': 1}
for p in range(6):
    open(sys.argv[1] + f'/p{p}.pkl', 'wb').write(pickle.dumps(d, protocol=p))
torch.save({'e': torch.arange(3.).expand(4, 3), 'ok': torch.ones(2)}, sys.argv[1] + '/expanded.pth')
`, dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  for (let p = 0; p <= 5; p++) {
    const res = unpickle(readFileSync(P(`p${p}.pkl`)), { globals: SAFE_GLOBALS });
    const v = plainOf(res.value) as Record<string, unknown>;
    assert.deepEqual(v['a'], [1, -2, 2 ** 40, (-(2n ** 70n)).toString(), 1.5, null, true, false], `protocol ${p}`);
    const b = v['b'] as unknown[];
    assert.equal(b[0], 'x');
    assert.equal(b[2], 'é\n\'"', `protocol ${p}`);
    // protocols < 3 write bytes as _codecs.encode(...) and sets as builtins.set(...) calls: refused, inert
    assert.equal(b[1], p >= 3 ? '00ff' : '<refused _codecs.encode>', `protocol ${p}`);
    assert.deepEqual(v['s'], p >= 4 ? { set: [3] } : `<refused ${p === 3 ? 'builtins' : '__builtin__'}.set>`, `protocol ${p}`);
    assert.deepEqual(v['c'], { k: { 1: 2 } });
    assert.deepEqual(v['m'], [[7], [7]]);
    const m = (res.value as PyDict).get('m') as unknown[];
    assert.equal(m[0], m[1], `protocol ${p}: memo keeps the sharing`);
    assert.equal((res.value as PyDict).get('__proto__'), 1);
    assert.equal(Object.getPrototypeOf(res.value), PyDict.prototype);
  }
  // an expanded view (stride 0) is refused when read, not when the file is opened
  const f = readTorchFile(P('expanded.pth'));
  const root = f.root as PyDict;
  assert.deepEqual((root.get('ok') as TorchTensor).toRaw().shape, [2]);
  assert.throws(() => (root.get('e') as TorchTensor).toRaw(), /overlapping view/);
  f.close();
});

test('truncated, corrupted and foreign files give clear errors', () => {
  const whole = readFileSync(P('official.pth.tar'));
  writeFileSync(P('half.pth.tar'), whole.subarray(0, whole.length >> 1));
  assert.throws(() => openTorchCheckpoint(P('half.pth.tar')), /no end-of-central-directory record: the archive is truncated/);
  writeFileSync(P('tail.pth.tar'), whole.subarray(0, whole.length - 5));
  assert.throws(() => openTorchCheckpoint(P('tail.pth.tar')), /truncated/);
  // one byte flipped in a storage of the target encoder: its CRC-32 fails when it is read
  const ck = openTorchCheckpoint(P('official.pth.tar'));
  const key = ck.network('target_encoder')['blocks.0.attn.qkv.weight']!.storage.key;
  ck.close();
  const z = new ZipReader(P('official.pth.tar'));
  const name = [...z.entries.keys()].find((k) => k.endsWith(`/data/${key}`))!;
  const at = z.dataOffset(name) + 10;
  z.close();
  const bad = Buffer.from(whole);
  bad[at] = bad[at]! ^ 0xff;
  writeFileSync(P('flipped.pth.tar'), bad);
  assert.throws(() => loadEncoderFromCheckpoint(P('flipped.pth.tar'), { heads: 3 }), /fails its CRC-32 check/);
  // legacy format cut inside the storages
  const legacy = readFileSync(P('legacy.pth'));
  writeFileSync(P('legacy_cut.pth'), legacy.subarray(0, Math.floor(legacy.length * 0.6)));
  assert.throws(() => loadEncoderFromCheckpoint(P('legacy_cut.pth'), { heads: 3 }), /outside the file.*truncated/);
  writeFileSync(P('empty.pth'), '');
  assert.throws(() => openTorchCheckpoint(P('empty.pth')), /the file is empty/);
  writeFileSync(P('text.pth'), 'hello, not a checkpoint\n');
  assert.throws(() => openTorchCheckpoint(P('text.pth')), /not a torch\.save file/);
  assert.throws(() => loadEncoderFromCheckpoint(P('dtypes.pth')), /not an encoder: no 'patch_embed\.proj\.weight'/);
});

test('cjepa convert writes a run directory that eval and embed use; embed reads the .pth.tar directly too', () => {
  const { data } = writeQuadrantIdx(dir, 32, 2);
  const run = P('converted');
  const c = cli('convert', P('official.pth.tar'), run, '--heads', '3', '--json');
  assert.equal(c.status, 0, c.stderr);
  const j = JSON.parse(c.stdout.trim());
  assert.deepEqual(j.networks, ['encoder', 'target_encoder', 'predictor']);
  assert.deepEqual(j.model, { name: 'vit_tiny', patch: 4, imgSize: 16, depth: 2, embedDim: 48, numHeads: 3 });
  assert.deepEqual(j.predictor, { embedDim: 24, depth: 1, numHeads: 3 });
  assert.deepEqual(j.not_converted, ['scaler']); // the AdamW state is converted (test/torch_optimizer.test.ts)
  assert.deepEqual(j.optimizer, { params: 47, step: 1 });
  const cfg = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8'));
  assert.equal(cfg.method, 'ijepa');
  assert.equal(cfg.optim.batch, 128); // per rank (optim.batch is per rank): 16 ranks x 128 made the global 2048
  const st = JSON.parse(readFileSync(join(run, 'checkpoints', 'step-0000000', 'state.json'), 'utf8'));
  assert.equal(st.epoch, 300);
  assert.equal(st.convertedFrom.world_size, 16);
  for (const net of ['encoder', 'target_encoder']) {
    const t = loadTensors(join(run, 'checkpoints', 'step-0000000', `${net}.safetensors`)).tensors;
    for (const [k, v] of Object.entries(t)) assert.equal(maxAbsDiff(v, ref[`${net}.${k}`]!), 0, `${net} ${k}`);
  }
  assert.equal(cli('convert', P('official.pth.tar'), run).status, 1, 'converting into an existing run is refused');
  const pl = cli('convert', P('plain.pth'), P('plain-run'), '--heads', '3', '--json');
  assert.equal(pl.status, 0, pl.stderr);
  assert.deepEqual(JSON.parse(pl.stdout).networks, ['encoder']);
  const plainEnc = loadTensors(join(P('plain-run'), 'checkpoints', 'step-0000000', 'encoder.safetensors')).tensors;
  for (const [k, v] of Object.entries(plainEnc)) assert.equal(maxAbsDiff(v, ref[`target_encoder.${k}`]!), 0, `plain ${k}`);

  const ev = cli('eval', '--checkpoint', run, '--data', data, '--protocol', 'knn', '--k', '3', '--val-split', '0.25', '--json', '--workers', '0');
  assert.equal(ev.status, 0, ev.stderr);
  assert.equal(JSON.parse(ev.stdout).embedding_dim, 48);
  const embeds: Record<string, Tensor> = {};
  for (const [tag, ckpt, extra] of [['run', run, []], ['pth', P('official.pth.tar'), ['--heads', '3']]] as const) {
    const out = P(`emb-${tag}.safetensors`);
    const e = cli('embed', '--checkpoint', ckpt, '--data', data, '--out', out, '--workers', '0', ...extra);
    assert.equal(e.status, 0, e.stderr);
    embeds[tag] = loadTensors(out).tensors['embeddings']!;
  }
  assert.equal(maxAbsDiff(embeds['run']!, embeds['pth']!), 0);
  const bad = cli('embed', '--checkpoint', P('evil_posix.pth.tar'), '--data', data, '--out', P('x.safetensors'));
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /posix\.system.*not on the allow-list/);
  assert.ok(!existsSync(P('x.safetensors')));
});
