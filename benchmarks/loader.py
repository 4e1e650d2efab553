"""Input-pipeline throughput: PNG files + per-image transforms vs. the uint8 cache + batched transforms.

On the same release folder and in one run, it times one pass of the paper's *training*
transform (resize 256, RandomResizedCrop 224, horizontal flip, ImageNet normalization) over
every image, in batches of 64, two ways:

(a) the usual per-image pipeline: a ``torch.utils.data.DataLoader`` with worker processes,
    each decoding PNGs with PIL and applying ``torchvision.transforms`` image by image;
(b) the library's pipeline: the uint8 image cache (``cral prepare``, built once beforehand and
    not timed in (b); its build time is reported apart), read by ``BatchLoader`` and
    transformed batch-wise by ``TrainTransform`` on the device.

It prints images per second of both and their ratio, and with ``--json PATH`` writes them
(with the settings and the machine) as JSON. Each pipeline runs one untimed warm-up epoch
(worker start-up, page cache), then ``--repeats`` timed epochs; the best epoch counts. (a)'s
workers are kept between epochs (``persistent_workers``) and use one torch thread each, as
DataLoader sets them; (b) is timed with 1 torch thread and with torch's default (``--threads``),
and the better one counts: on a small, busy machine, spreading memory-bound operations over
threads that other processes keep busy makes them slower, not faster.

Without ``--data`` it makes a synthetic release with ``cral_lib.data.make_synthetic`` (1024 px
PNGs like the real release by default; ``--image-size`` for smaller ones) in a folder under the
system's temporary directory, reused by later runs.

Usage::

    python benchmarks/loader.py                                 # 256 synthetic 1024 px images, CPU
    python benchmarks/loader.py --images 512 --json results/loader.json
    python benchmarks/loader.py --data data/nih --images 2000   # the first 2000 images of a release
                                                                # (its cache is built first if missing)
    python benchmarks/loader.py --image-size 256 --images 128   # a quick smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from cral_lib._io import default_workers
from cral_lib.data import BatchLoader, ChestXray14, ImageCache, TrainTransform, build_cache

from _common import synthetic_release, write_json

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="a release folder (default: a synthetic one made here)")
    p.add_argument("--images", type=int, default=256, help="images per pass (default 256)")
    p.add_argument("--image-size", type=int, default=1024, help="PNG side of the synthetic release (default 1024)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--crop", type=int, default=224, help="output side (default 224)")
    p.add_argument("--cache-size", type=int, default=256, help="side of the cached images (default 256)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers for (a) (default: CPU cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per pipeline, after a warm-up one; the best counts")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="torch threads to try for (b) (default: 1 and torch's default); the best counts")
    p.add_argument("--device", default="cpu", help="where (b) transforms and both deliver batches: cpu, cuda, auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda, but torch finds no CUDA device")
    if args.workers is None:
        args.workers = default_workers()
    return args


def release_folder(args: argparse.Namespace) -> Path:
    """The --data folder, or a synthetic release made (once) under the temporary directory."""
    if args.data:
        return Path(args.data)
    parent = Path(tempfile.gettempdir()) / "cral-bench-loader"
    print(f"synthetic release under {parent} ({args.images} images, {args.image_size} px; made once, then reused)")
    return synthetic_release(parent, args.images, args.image_size, args.seed)


# --------------------------------------------------------------------------- (a) per image


class PngDataset(torch.utils.data.Dataset):
    """What many CXR repositories do: PIL decode, RGB, torchvision transforms, image by image."""

    def __init__(self, paths: list[str], labels: np.ndarray, crop: int, resize: int) -> None:
        self.paths, self.labels = paths, labels
        self.transform = T.Compose([
            T.Resize((resize, resize)),
            T.RandomResizedCrop(crop),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.paths[i]) as img:
            x = self.transform(img.convert("RGB"))
        return x, torch.from_numpy(self.labels[i])


def time_epoch(batches, device: torch.device) -> tuple[float, int, tuple[int, ...]]:
    """Seconds and images of one whole pass over ``batches`` (delivered on ``device``)."""
    n, shape = 0, ()
    start = time.perf_counter()
    for x, *_ in batches:
        x = x.to(device, non_blocking=True)
        n += x.shape[0]
        shape = tuple(x.shape[1:])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, n, shape


def best_rate(label: str, make_epoch, repeats: int, device: torch.device) -> tuple[float, tuple[int, ...]]:
    """Best images/s over ``repeats`` timed epochs, after one untimed warm-up epoch."""
    time_epoch(make_epoch(-1), device)  # warm-up: worker start-up, page cache, allocator
    best, shape = 0.0, ()
    for r in range(repeats):
        seconds, n, shape = time_epoch(make_epoch(r), device)
        print(f"  {label} epoch {r + 1}: {n} images in {seconds:.2f} s = {n / seconds:.0f} img/s")
        best = max(best, n / seconds)
    return best, shape


def per_image(args, paths, labels, device) -> dict[str, Any]:
    dataset = PngDataset(paths, labels, args.crop, args.cache_size)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
        pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(args.seed),
    )
    rate, shape = best_rate("(a)", lambda r: loader, args.repeats, device)
    return {"images_per_s": rate, "output_shape": list(shape), "workers": args.workers}


# --------------------------------------------------------------------------- (b) cache + batched


def cached(args, root: Path, names, labels, device) -> dict[str, Any]:
    start = time.perf_counter()
    path = build_cache(root, size=args.cache_size, progress=True)  # the whole release, once
    build_s = time.perf_counter() - start
    cache = ImageCache(path)
    rows = cache.rows(names)
    transform = TrainTransform(args.crop)
    generator = torch.Generator().manual_seed(args.seed)
    loader = BatchLoader(cache, rows, labels, args.batch_size, shuffle=True, seed=args.seed, device=device)

    def epoch(r: int):
        loader.set_epoch(r + 1)
        return ((transform(x, generator=generator), y, pos) for x, y, pos in loader)

    default_threads = torch.get_num_threads()
    by_threads = {}
    for threads in sorted(set(args.threads or [1, default_threads])):
        torch.set_num_threads(threads)
        print(f"  torch threads: {threads}")
        by_threads[threads], shape = best_rate("(b)", epoch, args.repeats, device)
    torch.set_num_threads(default_threads)
    best = max(by_threads, key=by_threads.get)
    return {"images_per_s": by_threads[best], "best_torch_threads": best,
            "images_per_s_by_torch_threads": by_threads, "output_shape": list(shape),
            "cache_build_s": build_s, "cache_reused": build_s < 1.0}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    root = release_folder(args)
    ds = ChestXray14(root, "all")
    n = min(args.images, len(ds))
    paths = list(ds.frame["path"][:n])
    names = list(ds.frame["Image Index"][:n])
    labels = ds.labels[:n]
    size = ds[0]["img"].shape
    print(f"{n} images of {size[1]} x {size[0]} px from {root}; batch {args.batch_size}, crop {args.crop}, "
          f"device {device}, {os.cpu_count()} CPU cores")
    print("(a) PNG + per-image torchvision transforms, DataLoader with", args.workers, "workers")
    a = per_image(args, paths, labels, device)
    print("(b) uint8 cache + BatchLoader + batched TrainTransform")
    b = cached(args, root, names, labels, device)
    ratio = b["images_per_s"] / a["images_per_s"]
    print(f"(a) {a['images_per_s']:.0f} img/s   (b) {b['images_per_s']:.0f} img/s   ratio (b)/(a) = {ratio:.1f}x"
          f"   [cache built once in {b['cache_build_s']:.1f} s]")
    result = {
        "benchmark": "loader",
        "per_image": a,
        "cache_batched": b,
        "ratio": ratio,
        "settings": {k: v for k, v in vars(args).items() if k != "json"} | {"data": str(root), "images": n,
                                                                            "png_size": list(size)},
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                    "cpu_count": os.cpu_count(),
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"},
    }
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
