// The official I-JEPA training checkpoint (facebookresearch/ijepa src/train.py save_checkpoint):
// torch.save({'encoder', 'predictor', 'target_encoder', 'opt', 'scaler', 'epoch', 'loss',
// 'batch_size', 'world_size', 'lr'}), the three networks' state dicts keyed with the
// DistributedDataParallel `module.` prefix (the target encoder is not wrapped in every version).
// Also a plain state-dict file (`torch.save(model.state_dict())`), seen as one network.
//
// Only the networks asked for are checked and read; 'opt' and 'scaler' are never read, so
// non-allow-listed globals inside them (none in files written by torch.optim / GradScaler) do not
// stop the load: they are reported in `skipped`.
import { Tensor } from '../tensor/index.js';
import { fromRaw } from './tensors.js';
import { PyDict, Refused } from './pickle.js';
import { readTorchFile, stateDictOf, isStateDict, TorchLoadError, type TorchFile, type TorchTensor } from './torch_load.js';

export const OFFICIAL_NETWORKS = ['encoder', 'target_encoder', 'predictor'] as const;
export type OfficialNetwork = (typeof OFFICIAL_NETWORKS)[number];
const META_KEYS = ['epoch', 'loss', 'batch_size', 'world_size', 'lr'] as const;

export interface TorchCheckpoint {
  path: string;
  format: TorchFile['format'];
  /** 'official': the I-JEPA training dict; 'state-dict': one network's bare state dict. */
  kind: 'official' | 'state-dict';
  /** The networks present: official names, or ['state_dict'] for a bare state dict. */
  networks: string[];
  /** The numeric training metadata of an official checkpoint (epoch, loss, batch_size, world_size, lr). */
  meta: Partial<Record<(typeof META_KEYS)[number], number>>;
  /** Top-level entries not read (opt, scaler, unknown keys) and, per entry, refused globals met in the file. */
  skipped: string[];
  refused: string[];
  /** A network's tensors, DDP `module.` prefix removed (TorchTensor: not read from disk yet). */
  network(name: string): Record<string, TorchTensor>;
  /** A top-level entry as unpickled (PyDict, arrays, TorchTensor, Refused markers), e.g. 'opt'; undefined when absent. */
  entry(name: string): unknown;
  close(): void;
}

/** Removes the DistributedDataParallel `module.` prefix when every key has it. */
export function stripDdpPrefix<T>(sd: Record<string, T>): Record<string, T> {
  const keys = Object.keys(sd);
  if (keys.length === 0 || !keys.every((k) => k.startsWith('module.'))) return sd;
  const out: Record<string, T> = {};
  for (const k of keys) Object.defineProperty(out, k.slice('module.'.length), { value: sd[k], enumerable: true, writable: true, configurable: true });
  return out;
}

/** Opens an official I-JEPA checkpoint or a plain state-dict file, with the restricted reader. */
export function openTorchCheckpoint(path: string): TorchCheckpoint {
  const f = readTorchFile(path);
  try {
    const root = f.root;
    if (root instanceof Refused) {
      throw new TorchLoadError(path, `the file's top-level object is built by '${root.global}', which is not on the allow-list of safe globals: refused, nothing was run`);
    }
    if (!(root instanceof PyDict)) throw new TorchLoadError(path, 'the top-level object is not a dict: neither an I-JEPA checkpoint nor a state dict');
    const base = { path, format: f.format, refused: f.refused, close: () => f.close() };
    if (isStateDict(root)) {
      return {
        ...base, kind: 'state-dict', networks: ['state_dict'], meta: {}, skipped: [], entry: () => undefined,
        network: (name) => {
          if (name !== 'state_dict') throw new TorchLoadError(path, `is a bare state dict: it has no '${name}' network`);
          return stripDdpPrefix(stateDictOf(root, 'the state dict'));
        },
      };
    }
    const networks = OFFICIAL_NETWORKS.filter((k) => root.has(k));
    if (networks.length === 0) {
      const keys = root.keys().map((k) => JSON.stringify(k)).slice(0, 12).join(', ');
      throw new TorchLoadError(path, `neither an I-JEPA checkpoint (no 'encoder' / 'target_encoder' / 'predictor' entry) nor a state dict of tensors; top-level keys: ${keys}`);
    }
    const meta: TorchCheckpoint['meta'] = {};
    for (const k of META_KEYS) {
      const v = root.get(k);
      if (typeof v === 'number') meta[k] = v;
    }
    const skipped = root.keys().filter((k) => !(OFFICIAL_NETWORKS as readonly unknown[]).includes(k) && !(typeof root.get(k) === 'number' && (META_KEYS as readonly unknown[]).includes(k)))
      .map((k) => String(k));
    return {
      ...base, kind: 'official', networks, meta, skipped, entry: (name) => root.get(name),
      network: (name) => {
        if (!root.has(name)) throw new TorchLoadError(path, `has no '${name}' entry (it has ${networks.join(', ')})`);
        return stripDdpPrefix(stateDictOf(root.get(name), `entry '${name}'`));
      },
    };
  } catch (e) {
    f.close();
    throw e;
  }
}

/** Reads a network's tensors into libtorch (the caller owns them). */
export function materialize(sd: Record<string, TorchTensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  try {
    for (const [k, t] of Object.entries(sd)) Object.defineProperty(out, k, { value: fromRaw(t.toRaw()), enumerable: true, writable: true, configurable: true });
  } catch (e) {
    for (const t of Object.values(out)) t.dispose();
    throw e;
  }
  return out;
}

/** Which network of a checkpoint holds the encoder to use: target encoder first unless `which` says otherwise. */
export function pickEncoderNetwork(ck: TorchCheckpoint, which: 'auto' | 'target_encoder' | 'encoder'): string {
  if (ck.kind === 'state-dict') return 'state_dict';
  const order = which === 'encoder' ? ['encoder'] : which === 'target_encoder' ? ['target_encoder'] : ['target_encoder', 'encoder'];
  const got = order.find((n) => ck.networks.includes(n));
  if (!got) throw new TorchLoadError(ck.path, `has no ${order.join(' or ')} entry (it has ${ck.networks.join(', ')})`);
  return got;
}
