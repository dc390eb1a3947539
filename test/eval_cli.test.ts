// `cjepa eval` / `cjepa embed` as processes (dist/src/cli/eval_commands.js): one JSON object on stdout
// with --json, a table without, the embeddings file, and clear errors with exit status 1.
import { writeQuadrantIdx } from './util/synthetic.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { resolveConfig } from '../src/config.js';
import { pretrain } from '../src/method/trainer.js';
import { loadTensors } from '../src/io/tensors.js';
import { registerEvalCommands, main } from '../src/cli/eval_commands.js';

const dir = mkdtempSync(join(tmpdir(), 'cjepa-eval-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const CLI = fileURLToPath(new URL('../src/cli/eval_commands.js', import.meta.url));

const N = 64;
const { data: DATA } = writeQuadrantIdx(dir, N, 5);
const RUN = join(dir, 'run');

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, CJEPA_THREADS: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  const r = await pretrain(resolveConfig(undefined, {
    method: 'cjepa', data: DATA, out: RUN, workers: 0, threads: 1, seed: 1,
    model: { name: 'vit_tiny', patch: 4, imgSize: 16, depth: 2, embedDim: 32, numHeads: 2 },
    predictor: { embedDim: 16, depth: 1, numHeads: 2 },
    masks: { minKeep: 1, targetScale: [0.15, 0.25], contextScale: [0.85, 1.0] },
    optim: { batch: 16, steps: 3 }, log: { every: 10, monitorEvery: 0, checkpointEvery: 100 },
  }), { onMessage: () => {} });
  assert.equal(r.steps, 3);
});

test('cjepa eval --json prints one JSON object with the accuracies, RankMe and sizes', () => {
  const r = cli('eval', '--checkpoint', RUN, '--data', DATA, '--protocol', 'knn,linear,finetune', '--json', '--batch', '16',
    '--probe-max-iter', '300', '--ft-epochs', '1', '--ft-batch', '16', '--val-split', '0.25');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, `stdout holds exactly one line:\n${r.stdout}`);
  const j = JSON.parse(lines[0]!);
  assert.deepEqual(Object.keys(j.knn_top1).sort(), ['20', '200']);
  for (const k of ['linear_top1', 'finetune_top1', 'rankme', 'rankme_centred', 'embedding_dim', 'n_train', 'n_test']) assert.equal(typeof j[k], 'number', k);
  assert.ok(['healthy', 'low-rank', 'collapsed'].includes(j.verdict), 'verdict');
  // per-token RankMe over every patch token of the (48) train images
  assert.ok(j.rankme_tokens >= 1 && j.rankme_tokens <= j.embedding_dim, `rankme_tokens ${j.rankme_tokens}`);
  assert.ok(j.token_samples > j.n_train && j.token_samples % j.n_train === 0, `token_samples ${j.token_samples}`);
  assert.equal(j.n_test, 16);
  assert.equal(j.n_train, 48);
  assert.equal(j.embedding_dim, 32);
  assert.equal(j.network, 'target_encoder');
  assert.deepEqual(Object.keys(j.normalisation), ['mean', 'std'], 'the normalisation the features were computed with');
  for (const v of [...Object.values(j.knn_top1) as number[], j.linear_top1, j.finetune_top1]) assert.ok(v >= 0 && v <= 1);
  assert.match(r.stderr, /k-NN: k=20/); // messages go to stderr
  // the converged probe: its fit and the sweep are reported
  assert.equal(typeof j.linear_train_top1, 'number');
  assert.ok(Number.isInteger(j.linear_iterations) && j.linear_iterations > 0 && j.linear_iterations <= 300, `iterations ${j.linear_iterations}`);
  assert.ok(j.linear_final_loss > 0 && Number.isFinite(j.linear_final_loss));
  assert.equal(typeof j.linear_l2_at_edge, 'boolean');
  assert.ok(j.linear_sweep.length >= 5 && j.linear_sweep.some((s: { l2: number }) => s.l2 === j.linear_l2));
  // progress on stderr (not a terminal: one line at the end of each stage)
  assert.match(r.stderr, /train features: 48\/48 img/);
  assert.match(r.stderr, /test features: 16\/16 img/);
  assert.match(r.stderr, /linear probe sweep fit 1: l2 0\.1, \d+ L-BFGS iterations/);
  assert.match(r.stderr, /linear probe final fit \(all train features\): l2 /);
  assert.match(r.stderr, /fine-tuning: 3\/3 step/);
});

test('cjepa eval without --json prints a table; --pooling last4 and --k change the features and neighbours', () => {
  const r = cli('eval', '--checkpoint', RUN, '--data', DATA, '--val-data', DATA, '--protocol', 'knn', '--k', '1,3', '--pooling', 'last4', '--encoder', 'online');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /k-NN top-1 \(k=1\)\s+100\.00%/); // test = train: itself is the nearest neighbour
  assert.match(r.stdout, /k-NN top-1 \(k=3\)/);
  assert.match(r.stdout, /encoder\s+encoder, pooling last4, 64 dims/);
  assert.match(r.stdout, /RankMe/);
  assert.doesNotMatch(r.stdout, /linear top-1/);
});

test('cjepa embed writes N x D embeddings with indices; --json reports the file', () => {
  const out = join(dir, 'out', 'emb.safetensors');
  const r = cli('embed', '--checkpoint', RUN, '--data', DATA, '--out', out, '--json', '--batch', '10');
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual([j.n, j.dim], [N, 32]);
  const { tensors, metadata } = loadTensors(out);
  assert.deepEqual(tensors.embeddings!.shape, [N, 32]);
  assert.deepEqual(tensors.indices!.toArray(), Array.from({ length: N }, (_, i) => i));
  assert.equal(metadata.network, 'target_encoder');
  assert.deepEqual(JSON.parse(metadata.skipped!), []);
  assert.deepEqual(JSON.parse(metadata.normalisation!), j.normalisation);
  assert.equal(metadata.class_names, undefined, 'an IDX file names no classes');
  assert.match(r.stderr, /embedding: 64\/64 img/);
  // an existing file that is not an embeddings file: one line, exit 1, untouched; --force replaces it
  const notes = join(dir, 'notes.txt');
  writeFileSync(notes, 'keep me');
  const refused = cli('embed', '--checkpoint', RUN, '--data', DATA, '--out', notes);
  assert.equal(refused.status, 1);
  assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
  assert.match(refused.stderr, /^cjepa: --out .*notes\.txt exists and is not an embeddings file; refusing to overwrite it \(use --force\)$/m);
  assert.equal(readFileSync(notes, 'utf8'), 'keep me');
  assert.equal(cli('embed', '--checkpoint', RUN, '--data', DATA, '--out', notes, '--force').status, 0);
  assert.equal(cli('embed', '--checkpoint', RUN, '--data', DATA, '--out', notes).status, 0, 'now an embeddings file: replaced');
});

test('CLI errors: missing checkpoint, unlabelled data, unknown protocol, missing --data (exit 1, nothing on stdout)', () => {
  const missing = cli('eval', '--checkpoint', join(dir, 'nope'), '--data', DATA, '--json');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cjepa: checkpoint '.*nope' does not exist/);
  assert.equal(missing.stdout, '');
  const unlabelled = cli('eval', '--checkpoint', RUN, '--data', `idx:${join(dir, 'img.idx')}`);
  assert.equal(unlabelled.status, 1);
  assert.match(unlabelled.stderr, /unlabelled.*needs class labels.*cjepa embed/);
  const proto = cli('eval', '--checkpoint', RUN, '--data', DATA, '--protocol', 'knn,svm');
  assert.equal(proto.status, 1);
  assert.match(proto.stderr, /unknown protocol 'svm'/);
  const noData = cli('embed', '--checkpoint', RUN, '--out', join(dir, 'x.safetensors'));
  assert.equal(noData.status, 1);
  assert.match(noData.stderr, /required option '--data <spec>'/);
});

test('registerEvalCommands adds eval and embed to a program; main() returns the exit status', async () => {
  const p = registerEvalCommands(new Command('cjepa'));
  assert.deepEqual(p.commands.map((c) => c.name()).sort(), ['embed', 'eval']);
  const errs: string[] = [];
  const orig = console.error;
  console.error = (m: string) => { errs.push(String(m)); };
  try {
    assert.equal(await main(['eval', '--checkpoint', join(dir, 'nope'), '--data', DATA]), 1);
  } finally {
    console.error = orig;
  }
  assert.match(errs.join('\n'), /does not exist/);
});
