"""PyTorch side of `cjepa bench`: the same step in plain PyTorch (the official I-JEPA model structure, as
test/py/ref_jepa.py, repeated here so an installed cjepa needs no test files), on the weights, images and
masks cjepa wrote. Usage: bench_torch.py <inputs.safetensors> '<json spec>'. Prints one JSON line
{times (s), cpuMs (process CPU ms per timed step), hwmKiB, torch}. bf16: torch.autocast('cpu', bfloat16) around the network forwards, losses in fp32.
"""
import contextlib, json, math, struct, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_DT = {"F32": torch.float32, "I64": torch.int64, "I32": torch.int32, "BF16": torch.bfloat16}


def load_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    data = buf[8 + n:]
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(data[b:e]), dtype=_DT[v["dtype"]]).reshape(v["shape"]).clone()
    return out


def sincos_2d(dim, g):
    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    grid = np.stack(np.meshgrid(np.arange(g, dtype=np.float64), np.arange(g, dtype=np.float64)), axis=0)
    return np.concatenate([one(dim // 2, grid[0]), one(dim // 2, grid[1])], axis=1)


def apply_masks(x, masks):
    return torch.cat([torch.gather(x, 1, m.unsqueeze(-1).expand(-1, -1, x.size(-1))) for m in masks], dim=0)


def repeat_interleave_batch(x, B, repeat):
    return torch.cat([c for c in x.split(B, dim=0) for _ in range(repeat)], dim=0)


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads, self.scale = num_heads, (dim // num_heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), MLP(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(self, img_size, patch_size, embed_dim, depth, num_heads):
        super().__init__()
        g = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(embed_dim, g)).float()[None], requires_grad=False)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x, masks=None):
        x = self.patch_embed(x) + self.pos_embed
        if masks is not None:
            x = apply_masks(x, masks)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class Predictor(nn.Module):
    def __init__(self, num_patches, embed_dim, predictor_embed_dim, depth, num_heads):
        super().__init__()
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
        pe = sincos_2d(predictor_embed_dim, int(num_patches ** 0.5))
        self.predictor_pos_embed = nn.Parameter(torch.from_numpy(pe).float()[None], requires_grad=False)
        self.predictor_blocks = nn.ModuleList([Block(predictor_embed_dim, num_heads) for _ in range(depth)])
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim, eps=1e-6)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)

    def forward(self, x, masks_x, masks):
        B = len(x) // len(masks_x)
        x = self.predictor_embed(x)
        pos = self.predictor_pos_embed.repeat(B, 1, 1)
        x = x + apply_masks(pos, masks_x)
        n_ctx = x.size(1)
        tgt_pos = repeat_interleave_batch(apply_masks(pos, masks), B, repeat=len(masks_x))
        pred_tokens = self.mask_token.repeat(tgt_pos.size(0), tgt_pos.size(1), 1) + tgt_pos
        x = torch.cat([x.repeat(len(masks), 1, 1), pred_tokens], dim=1)
        for blk in self.predictor_blocks:
            x = blk(x)
        return self.predictor_proj(self.predictor_norm(x)[:, n_ctx:])


def vicreg(x, y, w):
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    std_x, std_y = torch.sqrt(x.var(dim=0) + 0.0001), torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    off = lambda m: m.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()
    cov_loss = off((x.T @ x) / (n - 1)).pow(2).sum() / d + off((y.T @ y) / (n - 1)).pow(2).sum() / d
    return w['inv'] * repr_loss + w['var'] * std_loss + w['cov'] * cov_loss


def block_pair_regulariser(z, M, w):
    """C-JEPA's VICReg between pooled predictions of every ordered pair of target blocks (docs/method.md)."""
    pooled = z.view(M, z.shape[0] // M, -1, z.shape[-1]).mean(dim=2)
    terms = [vicreg(pooled[i], pooled[j], w) for i in range(M) for j in range(M) if i != j]
    return sum(terms) / len(terms)


def hwm_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return 0


def main():
    inp = load_safetensors(sys.argv[1])
    cfg = json.loads(sys.argv[2])
    torch.set_num_threads(cfg['threads'])
    e = cfg['encoder']
    enc = VisionTransformer(**e)
    enc.load_state_dict({k[8:]: v for k, v in inp.items() if k.startswith('encoder.')})
    imgs = inp['images']
    amp = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if cfg['bf16'] else contextlib.nullcontext
    times = []
    prof = None

    def start_timed():  # the timed steps begin: CPU clock, and the op profiler when asked (cjepa bench --profile)
        nonlocal prof
        if cfg.get('profile'):
            prof = torch.autograd.profiler.profile()
            prof.__enter__()
        return time.process_time()

    def done():
        if prof is not None:
            prof.__exit__(None, None, None)
            prof.export_chrome_trace(cfg['profile'])
    if cfg['kind'] == 'embed':
        enc.eval()
        for it in range(cfg['warmup'] + cfg['steps']):
            if it == cfg['warmup']:
                c0 = start_timed()
            t0 = time.perf_counter()
            with torch.no_grad(), amp():
                enc(imgs).float()
            if it >= cfg['warmup']:
                times.append(time.perf_counter() - t0)
        cpu_ms = (time.process_time() - c0) * 1000 / cfg['steps']
        done()
        print(json.dumps({'times': times, 'cpuMs': cpu_ms, 'hwmKiB': hwm_kib(), 'torch': torch.__version__}))
        return
    pred = Predictor(**cfg['predictor'])
    pred.load_state_dict({k[10:]: v for k, v in inp.items() if k.startswith('predictor.')})
    tgt = VisionTransformer(**e)
    tgt.load_state_dict(enc.state_dict())
    for p in tgt.parameters():
        p.requires_grad = False
    named = [(n, p) for m in (enc, pred) for n, p in m.named_parameters() if p.requires_grad]
    groups = [dict(params=[p for n, p in named if 'bias' not in n and p.ndim != 1], weight_decay=0.04),
              dict(params=[p for n, p in named if 'bias' in n or p.ndim == 1], weight_decay=0.0)]
    opt = torch.optim.AdamW(groups, lr=1e-4)
    menc = [inp['masks_enc.0']]
    mpred = [inp[k] for k in sorted(k for k in inp if k.startswith('masks_pred.'))]
    w = dict(inv=25, var=25, cov=1)
    for it in range(cfg['warmup'] + cfg['steps']):
        if it == cfg['warmup']:
            c0 = start_timed()
        t0 = time.perf_counter()
        with torch.no_grad():
            with amp():
                h = tgt(imgs)
            h = F.layer_norm(h.float(), (h.size(-1),))
            h = repeat_interleave_batch(apply_masks(h, mpred), len(imgs), repeat=1)
        with amp():
            ctx = enc(imgs, menc)
            z = pred(ctx, menc, mpred)
        z = z.float()
        loss = F.smooth_l1_loss(z, h)
        if cfg['beta_vicreg'] > 0:
            loss = loss + cfg['beta_vicreg'] * block_pair_regulariser(z, len(mpred), w)
        loss.backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():  # the official EMA (src/train.py)
            for q, k in zip(enc.parameters(), tgt.parameters()):
                k.data.mul_(0.996).add_((1.0 - 0.996) * q.detach().data)
        if it >= cfg['warmup']:
            times.append(time.perf_counter() - t0)
    cpu_ms = (time.process_time() - c0) * 1000 / cfg['steps']
    done()
    print(json.dumps({'times': times, 'cpuMs': cpu_ms, 'hwmKiB': hwm_kib(), 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
