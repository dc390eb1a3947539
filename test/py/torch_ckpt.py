"""torch.save files for the checkpoint-reader tests (test/torch_checkpoint.test.ts).

official(): the layout of facebookresearch/ijepa src/train.py save_checkpoint, at tiny shapes: a dict
of the three networks' state dicts (DistributedDataParallel-wrapped, so keys start with 'module.'),
a real torch.optim.AdamW state dict (the official init_opt parameter groups, after one step), a
GradScaler state dict (or None), epoch, loss, batch_size, world_size, lr.
evil_*(): pickles whose loading with Python's unpickler runs a command that creates a file.
"""
import collections
import io
import os
import pickle
import zipfile

import torch
import torch.nn as nn

import ref_jepa

TINY = dict(img_size=16, patch_size=4, in_chans=1, embed_dim=48, depth=2, num_heads=3)
PRED = dict(num_patches=16, embed_dim=48, predictor_embed_dim=24, depth=1, num_heads=3)


class DDPLike(nn.Module):
    """What DistributedDataParallel adds to a state dict: the 'module.' prefix (and its _metadata)."""

    def __init__(self, m):
        super().__init__()
        self.module = m


def networks(seed=0):
    torch.manual_seed(seed)
    encoder = ref_jepa.VisionTransformer(**TINY)
    predictor = ref_jepa.VisionTransformerPredictor(**PRED)
    with torch.no_grad():  # make blocks matter
        for n, p in list(encoder.named_parameters()) + list(predictor.named_parameters()):
            if p.ndim >= 2 and p.requires_grad:
                p.mul_(4)
    target = ref_jepa.VisionTransformer(**TINY)
    target.load_state_dict(encoder.state_dict())
    with torch.no_grad():  # a target encoder that differs from the encoder (EMA drift)
        for p in target.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    return encoder, predictor, target


def _steps(opt, steps):
    """`steps` AdamW steps on a loss whose gradients change from step to step."""
    params = [p for g in opt.param_groups for p in g['params'] if p.requires_grad]
    for i in range(steps):
        opt.zero_grad()
        loss = sum(((p - 0.01 * i) ** 2).sum() + p.sum() * (i + 1) for p in params)
        loss.backward()
        opt.step()


def official_opt(encoder, predictor, steps=1):
    """init_opt's four groups, `steps` AdamW steps."""
    param_groups = [
        {'params': [p for n, p in encoder.named_parameters() if ('bias' not in n) and (len(p.shape) != 1)]},
        {'params': [p for n, p in predictor.named_parameters() if ('bias' not in n) and (len(p.shape) != 1)]},
        {'params': [p for n, p in encoder.named_parameters() if ('bias' in n) or (len(p.shape) == 1)], 'WD_exclude': True, 'weight_decay': 0},
        {'params': [p for n, p in predictor.named_parameters() if ('bias' in n) or (len(p.shape) == 1)], 'WD_exclude': True, 'weight_decay': 0},
    ]
    opt = torch.optim.AdamW(param_groups)
    if steps == 0:
        return opt
    if steps == 1:  # the files of the reader tests
        loss = sum((p ** 2).sum() for g in param_groups for p in g['params'] if p.requires_grad)
        loss.backward()
        opt.step()
    else:
        _steps(opt, steps)
    return opt


def official_trained(path, steps=2, layout='official', seed=0):
    """An official-layout checkpoint after `steps` real AdamW steps (init_opt's groups; layouts convert
    must refuse: 'two_groups', decay / no-decay over both networks together, or 'swapped', init_opt's
    groups with the predictor's first). Returns the networks'
    state dicts and, per parameter by name, PyTorch's moments: 'exp_avg.encoder.<name>', ... and 'step'."""
    encoder, predictor, target = networks(seed)
    if layout == 'official':
        opt = official_opt(encoder, predictor, steps)
    elif layout == 'swapped':  # four groups, the predictor's first
        groups = official_opt(encoder, predictor, 0).param_groups
        opt = torch.optim.AdamW([groups[1], groups[0], groups[3], groups[2]])
        _steps(opt, steps)
    else:
        named = list(encoder.named_parameters()) + list(predictor.named_parameters())
        opt = torch.optim.AdamW([{'params': [p for n, p in named if p.ndim > 1 and 'bias' not in n]},
                                 {'params': [p for n, p in named if p.ndim <= 1 or 'bias' in n], 'weight_decay': 0}])
        _steps(opt, steps)
    moments = {}
    for net, m in (('encoder', encoder), ('predictor', predictor)):
        for n, p in m.named_parameters():
            if p in opt.state:
                moments[f'exp_avg.{net}.{n}'] = opt.state[p]['exp_avg'].clone()
                moments[f'exp_avg_sq.{net}.{n}'] = opt.state[p]['exp_avg_sq'].clone()
                moments['step'] = torch.tensor(float(opt.state[p]['step']))
    sds = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in (('encoder', encoder), ('predictor', predictor), ('target_encoder', target))}
    torch.save({'encoder': DDPLike(encoder).state_dict(), 'predictor': DDPLike(predictor).state_dict(),
                'target_encoder': DDPLike(target).state_dict(), 'opt': opt.state_dict(), 'scaler': None,
                'epoch': 2, 'loss': 0.5, 'batch_size': 4, 'world_size': 1, 'lr': 1e-4}, path)
    return sds, moments


def official(path, scaler=True, seed=0):
    encoder, predictor, target = networks(seed)
    opt = official_opt(encoder, predictor)
    sds = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in (('encoder', encoder), ('predictor', predictor), ('target_encoder', target))}
    enc_sd = DDPLike(encoder).state_dict()
    pred_sd = DDPLike(predictor).state_dict()
    tgt_sd = DDPLike(target).state_dict()
    save_dict = {
        'encoder': enc_sd,
        'predictor': pred_sd,
        'target_encoder': tgt_sd,
        'opt': opt.state_dict(),
        'scaler': {'scale': 65536.0, 'growth_factor': 2.0, 'backoff_factor': 0.5, 'growth_interval': 2000, '_growth_tracker': 7} if scaler else None,
        'epoch': 300,
        'loss': 0.1234,
        'batch_size': 128,
        'world_size': 16,
        'lr': 1e-6,
    }
    torch.save(save_dict, path)
    return sds


def plain(path, sd, legacy=False):
    """A bare state dict; one tensor non-contiguous, one at a storage offset."""
    sd = collections.OrderedDict((k, v.clone()) for k, v in sd.items())
    w = sd['blocks.0.mlp.fc1.weight']
    sd['blocks.0.mlp.fc1.weight'] = w.t().contiguous().t()  # same values, transposed strides
    b = sd['blocks.1.attn.qkv.weight']
    big = torch.cat([torch.full((7,), 9.0), b.flatten()])
    sd['blocks.1.attn.qkv.weight'] = big[7:].view_as(b)  # storage offset 7 into a larger storage
    assert not sd['blocks.0.mlp.fc1.weight'].is_contiguous()
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)


def dtypes(path, legacy=False):
    d = collections.OrderedDict(
        f32=torch.linspace(-2, 2, 12).reshape(3, 4),
        f64=torch.tensor([1.5, -2.25], dtype=torch.float64),
        f16=torch.tensor([0.5, 1.0, -3.0], dtype=torch.float16),
        bf16=torch.tensor([0.5, 2.0], dtype=torch.bfloat16),
        i64=torch.tensor([-(2 ** 40), 5]),
        i32=torch.tensor([-7, 8], dtype=torch.int32),
        u8=torch.tensor([0, 255], dtype=torch.uint8),
        b=torch.tensor([True, False, True]),
        scalar=torch.tensor(3.5),
        empty=torch.zeros(0, 3),
        tview=torch.arange(24.).reshape(2, 3, 4).permute(2, 0, 1),
        sliced=torch.arange(20.).reshape(4, 5)[1:3, ::2],
    )
    torch.save(d, path, _use_new_zipfile_serialization=not legacy)
    return d


class Payload:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def zip_with_pickle(path, pkl, name='archive'):
    """A torch.save-shaped zip archive whose data.pkl is `pkl`."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        z.writestr(f'{name}/data.pkl', pkl)
        z.writestr(f'{name}/version', '3\n')


def evil_files(d, marker_dir):
    """Each file, loaded by Python, creates marker_dir/<file name>.pwned."""
    def touch(name):
        return f'touch {os.path.join(marker_dir, name + ".pwned")}'
    out = {}
    # protocol 0 GLOBAL 'os system' + REDUCE, by hand
    p = os.path.join(d, 'evil_os_system.pth.tar')
    zip_with_pickle(p, b"cos\nsystem\n(S'" + touch('evil_os_system.pth.tar').encode() + b"'\ntR.")
    out['os_system'] = p
    # os.system as Python pickles it on Linux: 'posix system', protocol 4 STACK_GLOBAL
    p = os.path.join(d, 'evil_posix.pth.tar')
    zip_with_pickle(p, pickle.dumps(Payload(os.system, touch('evil_posix.pth.tar')), protocol=4))
    out['posix'] = p
    # builtins.eval via REDUCE, protocol 2
    p = os.path.join(d, 'evil_eval.pth.tar')
    code = f"__import__('os').system({touch('evil_eval.pth.tar')!r})"
    zip_with_pickle(p, pickle.dumps(Payload(eval, code), protocol=2))
    out['eval'] = p
    # a bare pickle (no zip, no torch magic) with the payload
    p = os.path.join(d, 'evil_bare.pkl')
    with open(p, 'wb') as f:
        pickle.dump(Payload(os.system, touch('evil_bare.pkl')), f, protocol=2)
    out['bare'] = p
    # the payload hidden in the target encoder's state dict of an official-looking checkpoint
    enc, pred, tgt = networks(1)
    sd = DDPLike(tgt).state_dict()
    sd['module.norm.weight'] = Payload(os.system, touch('evil_in_target.pth.tar'))
    p = os.path.join(d, 'evil_in_target.pth.tar')
    torch.save({'encoder': DDPLike(enc).state_dict(), 'target_encoder': sd, 'predictor': DDPLike(pred).state_dict(), 'epoch': 1}, p)
    out['in_target'] = p
    # the payload in 'opt', an entry nobody reads: the networks load, the payload is reported, not run
    p = os.path.join(d, 'evil_in_opt.pth.tar')
    torch.save({'encoder': DDPLike(enc).state_dict(), 'target_encoder': DDPLike(tgt).state_dict(), 'predictor': DDPLike(pred).state_dict(),
                'opt': {'state': {}, 'param_groups': [Payload(os.system, touch('evil_in_opt.pth.tar'))]}, 'scaler': None, 'epoch': 1}, p)
    out['in_opt'] = p
    return out


def rezip(src, dst, zip64=False, deflate=False):
    """The same archive rewritten with ZIP64 records everywhere (zipfile's limits lowered, as a
    > 4 GiB checkpoint would have them) and/or DEFLATE-compressed entries."""
    limits = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    if zip64:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 16, 2
    try:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w', zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, zin.read(info.filename))
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = limits
    if zip64:
        # zipfile still fills the classic end record when the values fit; a > 4 GiB archive has
        # 0xFFFF / 0xFFFFFFFF there, sending readers to the ZIP64 record: do as such an archive does
        with open(dst, 'r+b') as f:
            b = f.read()
            i = b.rfind(b'PK\x05\x06')
            f.seek(i + 8)
            f.write(b'\xff\xff' * 2 + b'\xff\xff\xff\xff' * 2)
        with zipfile.ZipFile(dst) as z:  # still a valid archive; entries carry the ZIP64 extra field (id 1)
            assert any(i.extra[:2] == b'\x01\x00' for i in z.infolist()), [i.extra for i in z.infolist()]
            assert z.read(z.namelist()[-1])
