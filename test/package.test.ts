// What npm publishes: the tarball holds the library, CLI, addon sources, configs, README and LICENSE but
// no tests, benchmarks or result images; its .d.ts files type-check in a consumer project with a default
// tsconfig (no @types/node, no esnext.disposable lib); setup-debian.sh's --user / --dev package sets.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'cjepa-package-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string>; license: string };

function run(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 180_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}`, stdout: r.stdout };
}

// one tarball for the tests below (scripts ignored: dist/ is already built by `npm test`)
const packed = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], ROOT);
const info = (JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[])[0]!;
const files = info.files.map((f) => f.path);

test('the tarball: library, CLI, addon sources, configs, README, LICENSE; no tests, benches or result PNGs', () => {
  assert.equal(packed.status, 0, packed.out);
  for (const f of ['LICENSE', 'README.md', 'package.json', 'binding.gyp', 'native/addon.cc', 'scripts/libtorch.mjs', 'scripts/setup-debian.sh',
    'configs/cifar10-cpu.yaml', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/main.js']) assert.ok(files.includes(f), f);
  const bad = files.filter((f) => /^(dist\/)?(test|bench)\/|\.png$|\.map$|^docs\/results|^build\//.test(f));
  assert.deepEqual(bad, []);
  assert.equal(PKG.license, 'MIT');
  assert.match(readFileSync(join(ROOT, 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) .* cjepa contributors/);
});

test('the published .d.ts type-check in a consumer with a default tsconfig', () => {
  const app = join(dir, 'consumer');
  const pkg = join(app, 'node_modules', 'cjepa');
  mkdirSync(pkg, { recursive: true });
  const untar = run('tar', ['xzf', join(dir, info.filename), '-C', pkg, '--strip-components=1'], dir);
  assert.equal(untar.status, 0, untar.out);
  // the package's dependencies, as npm would install them beside it
  for (const d of Object.keys(PKG.dependencies)) if (existsSync(join(ROOT, 'node_modules', d))) symlinkSync(join(ROOT, 'node_modules', d), join(app, 'node_modules', d));
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  writeFileSync(join(app, 'index.ts'), [
    "import { VisionTransformer, vitConfig, tidy, randn, embedImages, evalPreprocessing, NORM_STATS, encodeSafetensors, type EncoderChoice, type Embeddings } from 'cjepa';",
    "const enc = new VisionTransformer(vitConfig('vit_tiny', { imgSize: 32, patchSize: 4, inChans: 3 }));",
    'const feats = tidy(() => enc.forward(randn([8, 3, 32, 32])).mean(1));',
    "const which: EncoderChoice = 'target';",
    "export async function run(): Promise<Embeddings> { return embedImages('images/', 'runs/x', { which }); }",
    "export const bytes: Uint8Array = encodeSafetensors({});",
    'export const shape = feats.shape, mean = evalPreprocessing(224).mean, std = NORM_STATS.imagenet.std;',
  ].join('\n'));
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  // what `tsc --init` writes (module nodenext, target esnext, types []), and an older target without the disposable lib
  for (const [name, opts] of [
    ['init', { module: 'nodenext', target: 'esnext', types: [], strict: true, noEmit: true }],
    ['es2022', { module: 'nodenext', target: 'es2022', strict: true, noEmit: true }],
  ] as const) {
    writeFileSync(join(app, `tsconfig.${name}.json`), JSON.stringify({ compilerOptions: opts, files: ['index.ts'] }));
    const r = run(process.execPath, [tsc, '-p', `tsconfig.${name}.json`], app);
    assert.equal(r.status, 0, `${name}:\n${r.out}`);
  }
});

test('setup-debian.sh: --user installs what using cjepa needs, --dev (the default, CI) adds the test packages', () => {
  const pkgs = (...a: string[]) => {
    const r = run('bash', [join(ROOT, 'scripts', 'setup-debian.sh'), ...a, '--print'], ROOT);
    assert.equal(r.status, 0, r.out);
    return r.stdout.trim().split(/\s+/).sort();
  };
  const user = pkgs('--user');
  assert.deepEqual(user, ['build-essential', 'dataset-fashion-mnist', 'libdnnl-dev', 'libopenblas0-pthread', 'libtorch-dev', 'python3']);
  assert.deepEqual(pkgs('--dev'), pkgs());
  assert.deepEqual(pkgs(), [...user, 'libgloo-dev', 'python3-torch', 'python3-torchvision'].sort());
  const bad = run('bash', [join(ROOT, 'scripts', 'setup-debian.sh'), '--nope'], ROOT);
  assert.equal(bad.status, 2);
  assert.match(bad.out, /unknown option '--nope'/);
});
