// A newcomer's first hour, scripted: a clean HOME, the README's commands at tiny budgets, CIFAR-10 fetched
// by name from a loopback server (the official archive layout), then resume, eval, embed and the quick start.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { archiveServer, cifar10Archive, md5 } from './fixtures/archive_fixture.js';
import { loadTensors } from '../src/io/tensors.js';

const home = mkdtempSync(join(tmpdir(), 'cjepa-newcomer-'));
const C10 = cifar10Archive(20);
let srv: Awaited<ReturnType<typeof archiveServer>>;
before(async () => { srv = await archiveServer({ 'cifar-10-binary.tar.gz': C10.gz }); });
after(async () => { await srv.close(); rmSync(home, { recursive: true, force: true }); });

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
/** `cjepa <args>` as the README's `npm run cjepa --` runs it, in the newcomer's HOME and working directory. */
function cjepa(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, CJEPA_DATA_MIRROR: `${srv.base}/good`, CJEPA_DATA_MD5: `cifar10=${md5(C10.gz)}` };
  delete env['CJEPA_DATA'];
  delete env['XDG_CACHE_HOME'];
  return new Promise((ok) => execFile(process.execPath, [CLI, ...args], { cwd: home, env, encoding: 'utf8', timeout: 600_000 },
    (err, stdout, stderr) => ok({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr })));
}
const tiny = ['--steps', '2', '--batch', '16', '--log-every', '1', '--threads', '1', '--workers', '0', '--set', 'model.depth=1', 'log.monitorEvery=1'];

test('README commands on a clean machine: data by name, pretrain, resume, eval, embed, the quick start', async () => {
  let r = await cjepa('--version');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+\.\d+\.\d+/);

  // CIFAR-10 by name with the CPU preset: fetched into ~/.cache/cjepa on first use
  r = await cjepa('pretrain', '--config', 'cifar10-cpu', '--data', 'cifar10', '--out', 'runs/c10', ...tiny);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(join(home, '.cache', 'cjepa', 'cifar10')), 'dataset cached under $HOME/.cache/cjepa');
  assert.match(r.stderr, /\[monitor\] step 2: (healthy|low-rank|collapsed): centred RankMe/);
  assert.match(r.stderr, /k-NN@20 on the held-out split \(10 images, bank of 90 train images\): \d+\.\d%/);
  for (const f of ['metrics.jsonl', 'loss.png', 'rankme.png', 'config.json', 'latest.json']) assert.ok(existsSync(join(home, 'runs', 'c10', f)), f);

  // continue the run: it remembers its config (the depth given by --set) without repeating it
  r = await cjepa('pretrain', '--out', 'runs/c10', '--resume', '--steps', '3', '--threads', '1', '--workers', '0', '--no-final-eval');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(readFileSync(join(home, 'runs', 'c10', 'latest.json'), 'utf8')).step, 3);

  r = await cjepa('eval', '--checkpoint', 'runs/c10', '--data', 'cifar10', '--val-split', '0.1', '--protocol', 'knn,linear', '--json');
  assert.equal(r.status, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.n_test, 10);
  assert.ok(rep.linear_top1 >= 0 && rep.knn_top1['20'] >= 0 && typeof rep.rankme_centred === 'number');

  r = await cjepa('embed', '--checkpoint', 'runs/c10', '--data', 'cifar10:test', '--out', 'emb.safetensors');
  assert.equal(r.status, 0, r.stderr);
  const emb = loadTensors(join(home, 'emb.safetensors')).tensors;
  assert.deepEqual(emb['embeddings']!.shape, [20, 192]);

  // the quick start (built-in Fashion-MNIST from Debian), at a tiny budget
  r = await cjepa('pretrain', '--config', 'fashion-mnist-cpu', '--out', 'runs/fmnist', ...tiny);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /k-NN@20 on the held-out split \(6000 images, bank of 10000 train images\): \d+\.\d%/);
  // nothing was written outside HOME's runs, cache and the embeddings file
  assert.deepEqual(readdirSync(home).sort(), ['.cache', 'emb.safetensors', 'runs']);
});
