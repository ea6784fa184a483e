"""Does the data loader feed the accelerator? Images/s of five ways to make training batches.

Each way makes 224 px training batches of 64 from the same images and hands them to a
consumer that only touches each batch, so the number is the loader's own ceiling:

  streaming      today's fallback: PIL decode (JPEG draft) + per-image RandomResizedCrop + flip in
                 DataLoader workers (``advisor.bench``'s streaming branch)
  memory         today's in-memory store: decoded, resized uint8 CHW tensors in RAM, per-image
                 ``resized_crop`` + flip in the main process (as ``advisor.bench``'s store does)
  mmap_read      whole stored images read out of the memory-mapped cache into a padded uint8 batch,
                 before augmentation (two batch buffers used in turn; the CSV row mmap_read_fresh
                 allocates a new batch each time)
  batch_aug_cpu  cache views -> ``advisor.augment.random_resized_crop`` on the CPU (reading included)
  batch_aug_cuda the same with the crops made on CUDA (when a GPU is present)

Then 4 processes open the same cache at once (after a first process cached half of the images,
as the profiler does before the bench) and read an epoch each: ``decodes_per_image`` counts every
image decoded by all of them together (target 1.0).

Writes one CSV row per measurement to ``benchmarks/results/loader_speed.csv``; the last line
printed is one JSON object with the images/s of each way.

    python benchmarks/loader_speed.py [--data DIR] [--batch-size 64] [--threads 1] [--min-seconds 3] [--methods]

``--methods`` also times the ways to resize the crops (one call per image, ``roi_align``,
``grid_sample``) on each device, with their mean absolute difference from torchvision.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from advisor.augment import random_resized_crop, resized_crops, sample_boxes
from advisor.data import Sample, scan
from advisor.imagecache import open_image_cache
from advisor.loading import ImageFolder, collate_skipping
from advisor.profile import default_workers
from common import save_rows

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hymenoptera"
CROP, STORED, SCALE = 224, 256, (0.5, 1.0)  # advisor's recipes: 224 px crops, scale (0.5, 1)


def _touch(batch: torch.Tensor) -> int:
    """What the consumer does with a batch: read one pixel (no reshape: that would copy a permuted view)."""
    return int(batch[(-1,) * batch.dim()])


def _timed(run_epoch, *, min_seconds: float, sync=lambda: None) -> tuple[float, int]:
    """One warm-up epoch, then whole epochs until ``min_seconds`` have passed: (seconds, images)."""
    run_epoch()
    sync()
    images, start = 0, time.perf_counter()
    while True:
        images += run_epoch()
        sync()
        seconds = time.perf_counter() - start
        if seconds >= min_seconds:
            return seconds, images


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    order = torch.randperm(n, generator=generator).numpy()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


# --------------------------------------------------------------------------- the five ways


def streaming(samples: list[Sample], batch_size: int, workers: int, min_seconds: float) -> tuple[float, int]:
    steps = T.Compose([T.RandomResizedCrop(CROP, scale=SCALE, antialias=True), T.RandomHorizontalFlip(),
                       T.PILToTensor()])
    loader = torch.utils.data.DataLoader(
        ImageFolder(samples, steps, draft_size=(STORED, STORED)), batch_size=batch_size, shuffle=True,
        num_workers=workers, collate_fn=collate_skipping, persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None, generator=torch.Generator().manual_seed(0))

    def epoch() -> int:
        n = 0
        for images, _labels, _indices, _failed in loader:
            _touch(images)
            n += len(images)
        return n

    return _timed(epoch, min_seconds=min_seconds)


class _InMemoryCrops(torch.utils.data.Dataset):
    """Today's in-memory training view, with public calls: per-image random resized crop + flip."""

    def __init__(self, images: list[torch.Tensor]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self.images[i]
        top, left, h, w = T.RandomResizedCrop.get_params(img, list(SCALE), [3 / 4, 4 / 3])
        img = TF.resized_crop(img, top, left, h, w, [CROP, CROP], antialias=True)
        return img.flip(-1) if torch.rand(1).item() < 0.5 else img


def memory(images: list[torch.Tensor], batch_size: int, min_seconds: float) -> tuple[float, int]:
    # num_workers=0: what the bench does for in-memory images on the CPU.
    loader = torch.utils.data.DataLoader(_InMemoryCrops(images), batch_size=batch_size, shuffle=True,
                                         num_workers=0, generator=torch.Generator().manual_seed(0))

    def epoch() -> int:
        n = 0
        for batch in loader:
            _touch(batch)
            n += len(batch)
        return n

    return _timed(epoch, min_seconds=min_seconds)


def mmap_read(cache, batch_size: int, min_seconds: float, *, reuse: bool = True) -> tuple[float, int]:
    """Padded uint8 batches copied out of the mapped file.

    ``reuse``: into two buffers used in turn (a loader handing batch i to the consumer while it
    fills batch i + 1), else into a fresh tensor per batch, which pays a page fault per 4 KB.
    """
    g = torch.Generator().manual_seed(0)
    largest = int(cache.shapes.max()) if len(cache) else 0
    buffers = [torch.empty(batch_size * largest * largest * 3, dtype=torch.uint8) for _ in range(2 * reuse)]

    def epoch() -> int:
        n = 0
        for step, idx in enumerate(_batches(len(cache), batch_size, g)):
            batch, _shapes = cache.batch(idx, out=buffers[step % 2] if reuse else None)
            _touch(batch)
            n += len(idx)
        return n

    return _timed(epoch, min_seconds=min_seconds)


def batch_aug(cache, batch_size: int, min_seconds: float, device: str) -> tuple[float, int]:
    g = torch.Generator().manual_seed(0)
    dev = torch.device(device)
    total = torch.zeros((), dtype=torch.int64, device=dev)

    def epoch() -> int:
        n = 0
        for idx in _batches(len(cache), batch_size, g):
            out = random_resized_crop(cache.images(idx), CROP, scale=SCALE, generator=g, device=dev)
            total.add_(out[-1, 0, 0, 0])  # touched where it was made, without a sync per batch
            n += len(idx)
        return n

    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    return _timed(epoch, min_seconds=min_seconds, sync=sync)


# --------------------------------------------------------------------------- choosing the resize method


def _grid_sample_crops(images: list[torch.Tensor], boxes: torch.Tensor, size: int, dev: torch.device) -> torch.Tensor:
    """The alternative not taken: one affine grid per box over a padded batch, bilinear, no antialiasing."""
    height = max(int(img.shape[1]) for img in images)
    width = max(int(img.shape[2]) for img in images)
    canvas = torch.zeros((len(images), 3, height, width), dtype=torch.uint8)
    for k, img in enumerate(images):
        canvas[k, :, :img.shape[1], :img.shape[2]] = img
    x = canvas.to(dev, non_blocking=True).float()
    b = boxes.to(dev).double()
    theta = torch.zeros((len(images), 2, 3), dtype=torch.float32, device=dev)
    # align_corners=False: [-1, 1] spans the outer edges; map the output onto the box's edges.
    theta[:, 0, 0] = (b[:, 3] / width).float()
    theta[:, 0, 2] = ((2 * b[:, 1] + b[:, 3]) / width - 1).float()
    theta[:, 1, 1] = (b[:, 2] / height).float()
    theta[:, 1, 2] = ((2 * b[:, 0] + b[:, 2]) / height - 1).float()
    grid = F.affine_grid(theta, [len(images), 3, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def compare_methods(cache, batch_size: int, min_seconds: float, device: str) -> list[dict]:
    """Images/s and mean absolute difference from torchvision's resized_crop of each resize method."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    images = cache.images(range(min(batch_size, len(cache))))
    boxes = sample_boxes([img.shape[-2:] for img in images], scale=SCALE, generator=g)
    reference = torch.stack([TF.resized_crop(img.contiguous(), *box, [CROP, CROP], antialias=True)
                             for img, box in zip(images, boxes.tolist())]).float()
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    methods = {
        "per_image": lambda: resized_crops(images, boxes, CROP, device=dev, method="per_image"),
        "roi_align": lambda: resized_crops(images, boxes, CROP, device=dev, method="roi_align"),
        "grid_sample": lambda: _grid_sample_crops(images, boxes, CROP, dev),
    }
    rows = []
    for name, run in methods.items():
        error = (run().cpu().float() - reference).abs().mean().item()
        seconds, n = _timed(lambda: len(run()), min_seconds=min_seconds / 2, sync=sync)
        rows.append({"method": f"resize:{name}", "images_per_second": n / seconds, "seconds": seconds,
                     "images": n, "workers": 0, "device": device, "note": f"mean abs diff {error:.3f}"})
        print(f"  resize {name:12s} on {device:4s} {n / seconds:9.0f} img/s, mean abs diff from torchvision "
              f"{error:.3f}", flush=True)
    return rows


# --------------------------------------------------------------------------- 4 processes, one cache


def grid_worker(args: argparse.Namespace) -> None:
    """One of the 4 processes: open the cache for every image, read an epoch, report what it decoded."""
    torch.set_num_threads(1)
    ds = scan(args.data)
    cache = open_image_cache(ds.samples, fingerprint=ds.fingerprint(), size=STORED, cache_dir=args.cache_dir)
    start = time.perf_counter()
    n = 0
    for idx in _batches(len(cache), args.batch_size, torch.Generator().manual_seed(0)):
        _touch(cache.batch(idx)[0])
        n += len(idx)
    print(json.dumps({**cache.to_dict(), "read": n, "seconds": time.perf_counter() - start}))


def grid(data: Path, cache_dir: Path, batch_size: int, processes: int = 4) -> dict:
    ds = scan(data)
    first = open_image_cache(ds.samples[::2], fingerprint=ds.fingerprint(), size=STORED, cache_dir=cache_dir)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--grid-worker", "--data", str(data),
           "--cache-dir", str(cache_dir), "--batch-size", str(batch_size)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    reports = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"grid process failed:\n{err}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    decoded = first.built + sum(r["built"] for r in reports)
    return {"images": len(ds.samples), "first_built": first.built, "built": [r["built"] for r in reports],
            "reused": [r["reused"] for r in reports], "decoded": decoded,
            "decodes_per_image": decoded / len(ds.samples)}


# --------------------------------------------------------------------------- data


def _demo_photos(root: Path, per_class: int = 100) -> Path:
    """Large JPEG photos (about 800 x 600) cut from scikit-image's photographs, one class per photo."""
    from PIL import Image
    from skimage import data as skdata

    rng = np.random.default_rng(0)
    for name, array in {"cat": skdata.chelsea(), "coffee": skdata.coffee(), "astronaut": skdata.astronaut(),
                        "rocket": skdata.rocket()}.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(array).convert("RGB")
        w, h = image.size
        for k in range(per_class):
            cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            side = (800, 600) if rng.random() < 0.7 else (600, 800)
            image.crop((left, top, left + cw, top + ch)).resize(side, Image.Resampling.BICUBIC).save(
                folder / f"{name}_{k:03d}.jpg", quality=90)
    return root


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help=f"image folder (default: {DEFAULT_DATA} if present, else generated photos)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: stable timings on a shared machine)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time each way for at least this long")
    parser.add_argument("--methods", action="store_true",
                        help="also time the resize methods (per image, roi_align, grid_sample) on each device")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "loader_speed.csv")
    parser.add_argument("--grid-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.grid_worker:
        grid_worker(args)
        return
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    tmp = Path(tempfile.mkdtemp(prefix="advisor-loader-speed-"))
    data = args.data or (DEFAULT_DATA if DEFAULT_DATA.is_dir() else _demo_photos(tmp / "photos"))
    ds = scan(data)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    start = time.perf_counter()
    cache = open_image_cache(ds.samples, fingerprint=ds.fingerprint(), size=STORED, cache_dir=tmp / "images")
    build_s = time.perf_counter() - start
    print(f"data {data}: {len(ds.samples)} images; cache built in {build_s:.1f} s ({cache.nbytes / 1e6:.0f} MB, "
          f"{len(cache.failures)} failures), {cores} cores", flush=True)
    ok = [s for s in ds.samples if s.path in cache]
    in_memory = [cache.image(s.path).contiguous() for s in ok]  # the store's CHW tensors, same pixels

    workers = default_workers()
    results: dict[str, float | None] = {}
    rows = []
    ways = [
        ("streaming", lambda: streaming(ok, args.batch_size, workers, args.min_seconds), workers, "cpu"),
        ("memory", lambda: memory(in_memory, args.batch_size, args.min_seconds), 0, "cpu"),
        ("mmap_read", lambda: mmap_read(cache, args.batch_size, args.min_seconds), 0, "cpu"),
        ("mmap_read_fresh", lambda: mmap_read(cache, args.batch_size, args.min_seconds, reuse=False), 0, "cpu"),
        ("batch_aug_cpu", lambda: batch_aug(cache, args.batch_size, args.min_seconds, "cpu"), 0, "cpu"),
    ]
    if torch.cuda.is_available():
        ways.append(("batch_aug_cuda", lambda: batch_aug(cache, args.batch_size, args.min_seconds, "cuda"), 0,
                     torch.cuda.get_device_name()))
    else:
        results["batch_aug_cuda"] = None
    for name, run, n_workers, device in ways:
        seconds, images = run()
        results[name] = images / seconds
        rows.append({"method": name, "images_per_second": images / seconds, "seconds": seconds, "images": images,
                     "workers": n_workers, "device": device})
        print(f"{name:15s} {images / seconds:9.0f} img/s  ({images} images in {seconds:.2f} s)", flush=True)

    if args.methods:
        for device in ["cpu"] + ["cuda"] * torch.cuda.is_available():
            rows += compare_methods(cache, args.batch_size, args.min_seconds, device)

    g = grid(data, tmp / "grid", args.batch_size)
    results["decodes_per_image"] = g["decodes_per_image"]
    rows.append({"method": "decodes_per_image", "ratio": g["decodes_per_image"], "images": g["images"],
                 "workers": 4, "device": "cpu", "note": json.dumps({k: g[k] for k in ("first_built", "built", "reused")})})
    print(f"4 processes: first process decoded {g['first_built']}, then {g['built']} (reused {g['reused']}) "
          f"-> {g['decodes_per_image']:.2f} decodes per image", flush=True)

    base = {"batch_size": args.batch_size, "crop_size": CROP, "stored_size": STORED, "n_images": len(ok),
            "threads": args.threads, "cores": cores, "data": str(data), "host": platform.node(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command}
    for row in rows:
        if "images_per_second" in row and row["method"] != "streaming":
            row["ratio"] = row["images_per_second"] / results["streaming"]
    fields = ["method", "images_per_second", "ratio", "seconds", "images", "batch_size", "crop_size", "stored_size",
              "n_images", "workers", "threads", "cores", "device", "data", "host", "date", "note", "command"]
    save_rows(args.out, [{**base, **row} for row in rows], fields=fields)
    print(f"mmap_read / streaming = {results['mmap_read'] / results['streaming']:.1f}x; "
          f"batch_aug_cpu / memory = {results['batch_aug_cpu'] / results['memory']:.2f}x", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    keys = ("streaming", "memory", "mmap_read", "batch_aug_cpu", "batch_aug_cuda", "decodes_per_image")
    print(json.dumps({k: None if results[k] is None else round(results[k], 3) for k in keys}))


if __name__ == "__main__":
    main()
