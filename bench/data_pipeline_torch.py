"""PyTorch DataLoader + torchvision baseline for bench/data_pipeline.ts (run with /usr/bin/python3).

Usage: data_pipeline_torch.py <files.json>   (files.json: {name: [paths...]})
Then reads one JSON run per stdin line ({"files", "size", "views", "workers", "batch", "sigma"}) and
answers each with a JSON line {"images_per_s": ...}, so the caller can interleave its own runs. The transforms are the official VICReg pair
(facebookresearch/vicreg augmentations.py) and I-JEPA's crop, at the requested size.
"""
import json
import sys
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter, ImageOps
from torch.utils.data import DataLoader, Dataset

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class Blur:
    def __init__(self, p, lo, hi):
        self.p, self.lo, self.hi = p, lo, hi

    def __call__(self, img):
        if np.random.rand() < self.p:
            return img.filter(ImageFilter.GaussianBlur(self.lo + np.random.rand() * (self.hi - self.lo)))
        return img


class Solarize:
    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        return ImageOps.solarize(img) if np.random.rand() < self.p else img


def vicreg(size, blur_p, sol_p, sigma):
    return T.Compose([
        T.RandomResizedCrop(size, interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T.RandomGrayscale(0.2),
        Blur(blur_p, sigma[0], sigma[1]),
        Solarize(sol_p),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])


class Files(Dataset):
    def __init__(self, paths, transforms):
        self.paths, self.transforms = paths, transforms

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = Image.open(self.paths[i]).convert("RGB")
        return [t(img) for t in self.transforms]


def run(paths, cfg):
    size = cfg["size"]
    if cfg["views"] == "vicreg":
        tf = [vicreg(size, 1.0, 0.0, cfg["sigma"]), vicreg(size, 0.1, 0.2, cfg["sigma"])]
    else:
        tf = [T.Compose([T.RandomResizedCrop(size, scale=(0.3, 1.0)), T.ToTensor(), T.Normalize(MEAN, STD)])]
    loader = DataLoader(Files(paths, tf), batch_size=cfg["batch"], shuffle=True, drop_last=True,
                        num_workers=cfg["workers"])
    n = 0
    t0 = time.perf_counter()  # worker start-up included, as in the TypeScript bench
    for views in loader:
        n += views[0].shape[0]
    return n / (time.perf_counter() - t0)


def main():
    torch.set_num_threads(1)
    files = json.load(open(sys.argv[1]))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cfg = json.loads(line)
        print(json.dumps({"images_per_s": run(files[cfg["files"]], cfg)}), flush=True)


if __name__ == "__main__":
    main()
