"""Profiler speed, as ratios measured in one run (never as timed asserts in tests).

1. Profiler throughput over the backbone's pure forward throughput, at the same batch size,
   image size and threads (target >= 0.8: decoding and hooks must not be the bottleneck).
2. Profiling a dataset 10x larger than the per-class cap over profiling one at the cap
   (target <= 1.5: the sample, not the dataset, sets the cost).

Rows are appended to ``benchmarks/results/profile_speed.csv``.

    python benchmarks/profile_speed.py [--data ../shared/data/hymenoptera] [--backbones efficientnet_lite0,resnet18]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

from advisor.backbones import get_backbone
from advisor.data import load_image, scan, stratified_sample
from advisor.demo import make_demo
from advisor.profile import ProfileConfig, extract_features, profile, resolve_device
from common import save_rows


def pure_forward(backbone, images, *, batch_size: int, device: torch.device, repeats: int = 1) -> tuple[float, str]:
    """Images per second of the bare forward pass on pre-made batches, in its faster layout.

    Both memory layouts are timed and the faster one is the reference, so the ratio never
    flatters the profiler by comparing against a slow baseline.
    """
    best = (0.0, "")
    for layout in (torch.contiguous_format, torch.channels_last):
        speed = _forward(backbone, images, batch_size=batch_size, device=device, repeats=repeats, layout=layout)
        if speed > best[0]:
            best = (speed, "channels_last" if layout == torch.channels_last else "contiguous")
    return best


def _forward(backbone, images, *, batch_size, device, repeats, layout) -> float:
    model = backbone.model.to(device).eval().to(memory_format=layout)
    batches = [torch.stack(images[i:i + batch_size]).to(device).contiguous(memory_format=layout)
               for i in range(0, len(images), batch_size)]
    with torch.inference_mode():
        model(batches[0])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            for b in batches:
                model(b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return repeats * len(images) / (time.perf_counter() - start)


def grow(root: Path, dest: Path, factor: int) -> Path:
    """A copy of ``root`` with every image present ``factor`` times (hard links when possible)."""
    for src in root.rglob("*"):
        if src.is_file() and not src.name.startswith("."):
            rel = src.relative_to(root)
            for k in range(factor):
                target = dest / rel.parent / f"{src.stem}_{k}{src.suffix}"
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, target)
                except OSError:
                    shutil.copyfile(src, target)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"
    parser.add_argument("--data", default=str(default_data))
    parser.add_argument("--backbones", default="efficientnet_lite0,resnet18")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads for both measurements (default: torch's choice)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "profile_speed.csv"))
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="advisor-speed-"))
    data = Path(args.data) if Path(args.data).is_dir() else make_demo(tmp, "photos", per_class=args.per_class)
    device = resolve_device(args.device)
    dataset = scan(data)
    sample = stratified_sample(dataset.samples, per_class=args.per_class, total=None, seed=0)
    rows = []
    for name in args.backbones.split(","):
        # weights do not change speed; random weights work for every backbone offline
        bb = get_backbone(name, weights=None)
        prep = bb.preprocessing.at_size(args.image_size)
        tf = prep.eval_transform()
        images = [tf(load_image(s.path)) for s in sample]
        forward, layout = pure_forward(bb, images, batch_size=args.batch_size, device=device)
        # warm-up (first-call allocations), then the timed pass
        extract_features(bb, sample[:args.batch_size], image_size=args.image_size, batch_size=args.batch_size,
                         device=device, cache_dir="")
        feats = extract_features(bb, sample, image_size=args.image_size, batch_size=args.batch_size,
                                 device=device, cache_dir="")
        prof_ips = len(feats.labels) / feats.seconds
        rows.append({"measure": "profiler_over_forward", "backbone": name, "value": round(prof_ips / forward, 3),
                     "detail": f"profiler {prof_ips:.1f} img/s, forward {forward:.1f} img/s ({layout}), n={len(sample)}, "
                               f"batch {args.batch_size}, {args.image_size}px, threads {torch.get_num_threads()}"})
        print(rows[-1], flush=True)

    # 10x larger dataset, same caps: the time should barely move
    big = grow(data, tmp / "big", 10)
    config = ProfileConfig(per_class=args.per_class, image_size=args.image_size, batch_size=args.batch_size,
                           device=args.device, cache_dir="")
    name = args.backbones.split(",")[0]
    times = {}
    profile(data, [name], config=ProfileConfig(**{**config.to_dict(), "weights": None}))  # warm-up
    for label, root in (("base", data), ("10x", big)):
        start = time.perf_counter()
        profile(root, [name], config=ProfileConfig(**{**config.to_dict(), "weights": None}))
        times[label] = time.perf_counter() - start
    rows.append({"measure": "time_10x_dataset_over_base", "backbone": name,
                 "value": round(times["10x"] / times["base"], 3),
                 "detail": f"base {len(dataset.samples)} images {times['base']:.1f}s, "
                           f"10x {10 * len(dataset.samples)} images {times['10x']:.1f}s, per-class cap {args.per_class}"})
    print(rows[-1], flush=True)

    where = {"date": datetime.now().isoformat(timespec="seconds"),
             "machine": f"{platform.machine()} {os.cpu_count()} cpu", "device": str(device),
             "command": "python " + " ".join(sys.argv)}
    out = save_rows(args.out, [{**where, **row} for row in rows],
                    fields=["date", "machine", "device", "command", "measure", "backbone", "value", "detail"])
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
