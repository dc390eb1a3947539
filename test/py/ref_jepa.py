"""PyTorch reference of I-JEPA, C-JEPA and VICReg for the parity tests.

Written for the tests, following the structure and parameter names of the official code
(facebookresearch/ijepa: src/models/vision_transformer.py, src/masks/utils.py, src/utils/tensors.py,
src/helper.py init_opt, src/train.py; facebookresearch/vicreg: main_vicreg.py). C-JEPA has no public
code: its regulariser follows docs/method.md (block-pair reading of Algorithm 1, plus the 'patch' and
'context' placements), written independently of the TypeScript implementation.

Everything runs in float32 on the CPU, dropout / drop-path are absent (rates 0 in the official configs).
"""
import contextlib
import copy
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------- position embeddings


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    """pos: array of positions (any shape) -> (M, embed_dim): [sin(pos * omega), cos(pos * omega)]."""
    assert embed_dim % 2 == 0
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.outer(pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    """(grid_size**2, embed_dim) float64. As the official code: meshgrid(w, h), so the first half of the
    channels encodes the column index and the second half the row index; tokens are row-major."""
    grid_h = np.arange(grid_size, dtype=np.float64)
    grid_w = np.arange(grid_size, dtype=np.float64)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape(2, 1, grid_size, grid_size)
    emb_a = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_b = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_a, emb_b], axis=1)


# ----------------------------------------------------------------------------- mask helpers


def apply_masks(x, masks):
    """x (B, N, D), masks: list of (B, K) index tensors -> (len(masks) B, K, D)."""
    return torch.cat([torch.gather(x, 1, m.unsqueeze(-1).expand(-1, -1, x.size(-1))) for m in masks], dim=0)


def repeat_interleave_batch(x, B, repeat):
    """Each consecutive chunk of B rows repeated `repeat` times."""
    chunks = x.split(B, dim=0)
    return torch.cat([c for c in chunks for _ in range(repeat)], dim=0)


# ----------------------------------------------------------------------------- ViT


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        h = self.fc1(x)
        # bf16 (autocast): GELU in fp32, rounded once, as libtorch's AVX-512 kernel and cjepa's do; libtorch's bf16
        # gelu_backward on CPUs without AVX-512 works in bf16 and cancels catastrophically (sign flips near x = -0.75)
        a = self.act(h.float()).to(h.dtype) if h.dtype == torch.bfloat16 else self.act(h)
        return self.fc2(a)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def _init_weights(module, std):
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _rescale_blocks(blocks):
    with torch.no_grad():
        for layer_id, blk in enumerate(blocks, start=1):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))


class VisionTransformer(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12, num_heads=12,
                 mlp_ratio=4.0, qkv_bias=True, init_std=0.02):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        n = self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, n, embed_dim), requires_grad=False)
        self.pos_embed.data.copy_(torch.from_numpy(get_2d_sincos_pos_embed(embed_dim, int(n ** 0.5))).float()[None])
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.apply(lambda m: _init_weights(m, init_std))
        _rescale_blocks(self.blocks)

    def forward(self, x, masks=None):
        x = self.patch_embed(x) + self.pos_embed
        if masks is not None:
            x = apply_masks(x, masks)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class VisionTransformerPredictor(nn.Module):
    def __init__(self, num_patches, embed_dim=768, predictor_embed_dim=384, depth=6, num_heads=12,
                 mlp_ratio=4.0, qkv_bias=True, init_std=0.02):
        super().__init__()
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
        self.predictor_pos_embed = nn.Parameter(torch.zeros(1, num_patches, predictor_embed_dim), requires_grad=False)
        pe = get_2d_sincos_pos_embed(predictor_embed_dim, int(num_patches ** 0.5))
        self.predictor_pos_embed.data.copy_(torch.from_numpy(pe).float()[None])
        self.predictor_blocks = nn.ModuleList(
            [Block(predictor_embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)])
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim, eps=1e-6)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)
        nn.init.trunc_normal_(self.mask_token, std=init_std)
        self.apply(lambda m: _init_weights(m, init_std))
        _rescale_blocks(self.predictor_blocks)

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
        x = self.predictor_norm(x)
        return self.predictor_proj(x[:, n_ctx:])


# The official named sizes (vit_giant has mlp_ratio 48/11).
VIT_SIZES = {
    'vit_tiny': dict(embed_dim=192, depth=12, num_heads=3),
    'vit_small': dict(embed_dim=384, depth=12, num_heads=6),
    'vit_base': dict(embed_dim=768, depth=12, num_heads=12),
    'vit_large': dict(embed_dim=1024, depth=24, num_heads=16),
    'vit_huge': dict(embed_dim=1280, depth=32, num_heads=16),
    'vit_giant': dict(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11),
}


def vit(name, **overrides):
    return VisionTransformer(**{**VIT_SIZES[name], **overrides})


# ----------------------------------------------------------------------------- VICReg


def off_diagonal(m):
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def vicreg_loss(x, y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, decorrelate='covariance', std_target=1.0):
    """The official VICReg criterion on (B, D) embeddings (one process: the gather is the identity).
    decorrelate='correlation': the cov term on the correlation matrix (each dimension divided by its std);
    std_target: the hinge's gamma (official 1)."""
    batch_size, num_features = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(std_target - std_x)) / 2 + torch.mean(F.relu(std_target - std_y)) / 2
    if decorrelate == 'correlation':
        x, y = x / std_x, y / std_y
    cov_x = (x.T @ x) / (batch_size - 1)
    cov_y = (y.T @ y) / (batch_size - 1)
    cov_loss = off_diagonal(cov_x).pow(2).sum() / num_features + off_diagonal(cov_y).pow(2).sum() / num_features
    loss = sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss
    return dict(loss=loss, inv=repr_loss, var=std_loss, cov=cov_loss)


def expander(dims):
    """VICReg projector: (Linear, BatchNorm1d, ReLU) per hidden layer, then Linear without bias."""
    layers = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1]), nn.BatchNorm1d(dims[i + 1]), nn.ReLU(True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=False))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- C-JEPA (docs/method.md)


def cjepa_regulariser(z, ctx, n_targets, placement, w, proj=None, teacher=None):
    """z: predictor output (M B, Lt, D), block-major; ctx: context-encoder output (B, Lc, D);
    teacher: the target-encoder output averaged over all patches (B, D), no gradient."""
    M = n_targets
    B = z.shape[0] // M
    dec = w.get('decorrelate', 'covariance')
    st = w.get('std_target', 1.0)
    D = z.shape[-1]
    per_block = z.view(M, B, -1, D)
    if placement == 'views':
        # two views of each image: rows [0, B/2) are view 1, [B/2, B) view 2; expander per view
        half = ctx.shape[0] // 2
        pooled = ctx.mean(dim=1)
        x, y = pooled[:half], pooled[half:]
        if proj is not None:
            x, y = proj(x), proj(y)
        return vicreg_loss(x, y, w['inv'], w['var'], w['cov'], dec, st)
    if placement == 'target':
        x = ctx.mean(dim=1)
        if proj is not None:  # both sides through the online projector, one batch at a time
            return vicreg_loss(proj(x), proj(teacher), w['inv'], w['var'], w['cov'], dec, st)
        return vicreg_loss(x, teacher, w['inv'], w['var'], w['cov'], dec, st)
    if placement == 'context':
        pred_mean = per_block.mean(dim=(0, 2))  # mean over every predicted token of the image
        return vicreg_loss(ctx.mean(dim=1), pred_mean, w['inv'], w['var'], w['cov'], dec, st)
    pooled = per_block.mean(dim=2)  # (M, B, D): one vector per (block, image)
    pairs = [(i, j) for i in range(M) for j in range(M) if i != j]  # ordered pairs of blocks
    terms = [vicreg_loss(pooled[i], pooled[j], w['inv'], w['var'], w['cov'], dec, st) for i, j in pairs]
    mean = {k: sum(t[k] for t in terms) / len(terms) for k in terms[0]}
    if placement == 'block-pair':
        return mean
    assert placement == 'patch'
    flat = z.reshape(-1, D)
    flat = flat - flat.mean(dim=0)
    std = torch.sqrt(flat.var(dim=0) + 0.0001)
    var = F.relu(st - std).mean()
    if dec == 'correlation':
        flat = flat / std
    cov = off_diagonal(flat.T @ flat / (flat.shape[0] - 1)).pow(2).sum() / D
    loss = w['inv'] * mean['inv'] + w['var'] * var + w['cov'] * cov
    return dict(loss=loss, inv=mean['inv'], var=var, cov=cov)


# ----------------------------------------------------------------------------- optimisation


def param_groups(*modules, weight_decay):
    """Official I-JEPA grouping (src/helper.py init_opt): no decay on biases and 1-D parameters."""
    named = [(n, p) for m in modules for n, p in m.named_parameters()]
    decay = [p for n, p in named if 'bias' not in n and p.ndim != 1]
    no_decay = [p for n, p in named if 'bias' in n or p.ndim == 1]
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


@torch.no_grad()
def ema_update(encoder, target_encoder, m):
    """The official momentum update of src/train.py."""
    for param_q, param_k in zip(encoder.parameters(), target_encoder.parameters()):
        param_k.data.mul_(m).add_((1.0 - m) * param_q.detach().data)


# ----------------------------------------------------------------------------- one training step


def _sub(inp, prefix):
    return {k[len(prefix):]: v for k, v in inp.items() if k.startswith(prefix)}


def _masks(inp, prefix):
    n = len([k for k in inp if k.startswith(prefix)])
    return [inp[f'{prefix}{i}'] for i in range(n)]


def _scalar(v):
    """Scalars travel as shape (1,) (st.save cannot write 0-d tensors)."""
    return v.detach().reshape(1).clone()


def _record(out, tag, named_modules, what):
    for mod_name, mod in named_modules:
        for n, p in mod.named_parameters():
            if what == 'grad':
                if p.grad is not None:
                    out[f'{tag}grad.{mod_name}.{n}'] = p.grad.clone()
            else:
                out[f'{tag}{what}.{mod_name}.{n}'] = p.detach().clone()


def jepa_step(inp, out, tag, cfg):
    """One I-JEPA / C-JEPA step (official train_step structure), results written to out[tag + ...].

    cfg: encoder (kwargs of VisionTransformer), predictor (kwargs of VisionTransformerPredictor),
    beta_vicreg, placement, weights {inv, var, cov}, lr, wd, momentum.
    """
    encoder = VisionTransformer(**cfg['encoder'])
    predictor = VisionTransformerPredictor(**cfg['predictor'])
    encoder.load_state_dict(_sub(inp, 'encoder.'), strict=True)
    predictor.load_state_dict(_sub(inp, 'predictor.'), strict=True)
    target_encoder = copy.deepcopy(encoder)
    for p in target_encoder.parameters():
        p.requires_grad = False
    modules = [('encoder', encoder), ('predictor', predictor)]
    proj = None
    if cfg.get('projector'):  # C-JEPA 'views' / 'target': a VICReg expander on the pooled embeddings
        proj = expander(cfg['expander'])
        proj.load_state_dict(_sub(inp, 'expander.'), strict=True)
        modules.append(('projector', proj))
    optimizer = torch.optim.AdamW(param_groups(*[m for _, m in modules], weight_decay=cfg['wd']), lr=cfg['lr'])

    imgs = inp['images']
    masks_enc, masks_pred = _masks(inp, 'masks_enc.'), _masks(inp, 'masks_pred.')

    # bf16: torch.autocast around the network forwards, targets and losses in fp32 (as cjepa's step does)
    autocast = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if cfg.get('bf16') else contextlib.nullcontext
    with torch.no_grad():
        with autocast():
            h = target_encoder(imgs)
        teacher = h.float().mean(dim=1)  # C-JEPA 'target' placement: before the targets' layer norm
        if cfg.get('teacher_view'):  # cjepa.teacherView 'augmented': the teacher pools a second view
            with autocast():
                teacher = target_encoder(inp['view2']).float().mean(dim=1)
        h = F.layer_norm(h.float(), (h.size(-1),))
        h = repeat_interleave_batch(apply_masks(h, masks_pred), len(imgs), repeat=len(masks_enc))
    with autocast():
        ctx = encoder(imgs, masks_enc)
        z = predictor(ctx, masks_enc, masks_pred)
        # cjepa.viewInput 'full': the regulariser reads an unmasked pass of the online encoder
        reg_in = encoder(imgs) if cfg.get('full_view') else ctx
    ctx, z, reg_in = ctx.float(), z.float(), reg_in.float()
    jepa = F.smooth_l1_loss(z, h)
    loss = jepa
    if cfg['beta_vicreg'] != 0:
        reg = cjepa_regulariser(z, reg_in, len(masks_pred), cfg['placement'], cfg['weights'], proj, teacher)
        loss = jepa + cfg['beta_vicreg'] * reg['loss']
        for k, name in (('loss', 'vicreg'), ('inv', 'inv'), ('var', 'var'), ('cov', 'cov')):
            out[f'{tag}terms.{name}'] = _scalar(reg[k])
    out[f'{tag}terms.loss'] = _scalar(loss)
    out[f'{tag}terms.jepa'] = _scalar(jepa)

    loss.backward()
    _record(out, tag, modules, 'grad')
    optimizer.step()
    optimizer.zero_grad()
    _record(out, tag, modules, 'param')
    ema_update(encoder, target_encoder, cfg['momentum'])
    _record(out, tag, [('target', target_encoder)], 'param')


def vicreg_step(inp, out, tag, cfg):
    """One VICReg step: encoder -> mean over patches -> expander, on two views; AdamW (same grouping)."""
    encoder = VisionTransformer(**cfg['encoder'])
    proj = expander(cfg['expander'])
    encoder.load_state_dict(_sub(inp, 'encoder.'), strict=True)
    proj.load_state_dict(_sub(inp, 'expander.'), strict=True)
    optimizer = torch.optim.AdamW(param_groups(encoder, proj, weight_decay=cfg['wd']), lr=cfg['lr'])
    x = proj(encoder(inp['view1']).mean(dim=1))
    y = proj(encoder(inp['view2']).mean(dim=1))
    terms = vicreg_loss(x, y, cfg['weights']['inv'], cfg['weights']['var'], cfg['weights']['cov'])
    for k, v in terms.items():
        out[f'{tag}terms.{k}'] = _scalar(v)
    terms['loss'].backward()
    modules = [('encoder', encoder), ('expander', proj)]
    _record(out, tag, modules, 'grad')
    optimizer.step()
    optimizer.zero_grad()
    _record(out, tag, modules, 'param')
    for n, b in proj.named_buffers():
        out[f'{tag}buffer.expander.{n}'] = b.float().reshape(-1).clone()  # num_batches_tracked too
