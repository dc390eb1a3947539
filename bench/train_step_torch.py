"""PyTorch side of bench/train_step.ts: the same C-JEPA / I-JEPA step (test/py/ref_jepa.py, the official
model structure), timed on the same images and masks. Prints one JSON line of per-step times (s)."""
import json, os, sys, time
import torch
import torch.nn.functional as F
here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(here, '..', 'test', 'py')]
import st, ref_jepa as R

inp = st.load(sys.argv[1])
cfg = json.loads(sys.argv[2])
torch.set_num_threads(cfg['threads'])
torch.manual_seed(0)
enc = R.VisionTransformer(**cfg['encoder'])
pred = R.VisionTransformerPredictor(**cfg['predictor'])
tgt = R.VisionTransformer(**cfg['encoder'])
tgt.load_state_dict(enc.state_dict())
for p in tgt.parameters():
    p.requires_grad = False
opt = torch.optim.AdamW(R.param_groups(enc, pred, weight_decay=0.04), lr=1e-4)
imgs = inp['images']
menc = [inp['masks_enc.0']]
mpred = [inp[f'masks_pred.{i}'] for i in range(cfg['n_targets'])]
times = []
for it in range(cfg['warmup'] + cfg['steps']):
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=bool(cfg.get('bf16'))):
        h = tgt(imgs)
        h = F.layer_norm(h, (h.size(-1),))
        h = R.repeat_interleave_batch(R.apply_masks(h, mpred), len(imgs), repeat=1)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bool(cfg.get('bf16'))):
        ctx = enc(imgs, menc)
        z = pred(ctx, menc, mpred)
    loss = F.smooth_l1_loss(z.float(), h.float())
    if cfg['beta_vicreg'] > 0:
        loss = loss + cfg['beta_vicreg'] * R.cjepa_regulariser(z.float(), ctx.float(), len(mpred), 'block-pair', dict(inv=25, var=25, cov=1))['loss']
    loss.backward()
    opt.step()
    opt.zero_grad()
    R.ema_update(enc, tgt, 0.996)
    if it >= cfg['warmup']:
        times.append(time.perf_counter() - t0)
print(json.dumps({'times': times}))
