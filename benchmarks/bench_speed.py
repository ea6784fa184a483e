"""Is the benchmark harness the bottleneck? Two ratios, each measured in one run.

1. ``freeze`` on cached embeddings (one extraction pass, then a full-batch L-BFGS head)
   against training a linear head *through* the frozen backbone for the same epochs with
   minibatch AdamW (every epoch decodes and forwards every image again): time ratio and both
   accuracies.
2. The training loop's throughput (``advisor.bench``'s ``finetune`` loop: batch augmentation
   of images from the decoded-image cache, normalisation, scheduler, per-epoch evaluation
   excluded) against a bare loop of forward + backward + the same AdamW step on the same model,
   on batches made beforehand. Target: ratio >= 0.8.

Writes one row per measurement, with the command that made it, to
``benchmarks/results/bench_speed.csv``.

    python benchmarks/bench_speed.py [--backbone efficientnet_lite0] [--image-size 64] \
        [--per-class 20] [--epochs 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from advisor.augment import normalize, random_resized_crop
from advisor.backbones import get_backbone
from advisor.bench import BenchConfig, Finetune, RunEnv, plan_runs, train_run
from advisor.data import scan
from advisor.demo import make_demo
from advisor.imagecache import open_image_cache
from advisor.loading import ImageFolder, collate_skipping
from common import save_rows


def _freeze_through_backbone(backbone_name: str, train, val, *, num_classes: int, image_size: int,
                             epochs: int, batch_size: int, lr: float, seed: int) -> tuple[float, float]:
    """The naive way: every epoch decodes, transforms and forwards every image again."""
    torch.manual_seed(seed)
    bb = get_backbone(backbone_name)
    head = bb.replace_head(num_classes)
    bb.model.eval()
    for p in bb.backbone_parameters():
        p.requires_grad_(False)
    tf = bb.eval_transform(image_size)
    loader = torch.utils.data.DataLoader(
        ImageFolder(train, tf), batch_size=batch_size, shuffle=True, collate_fn=collate_skipping,
        generator=torch.Generator().manual_seed(seed))
    val_loader = torch.utils.data.DataLoader(ImageFolder(val, tf), batch_size=64, collate_fn=collate_skipping)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y, _, _ in loader:
            loss = F.cross_entropy(bb.forward(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    correct = total = 0
    with torch.no_grad():
        for x, y, _, _ in val_loader:
            correct += int((bb.forward(x).argmax(1) == y).sum())
            total += len(y)
    return seconds, correct / total


def _bare_loop(backbone_name: str, spec, config: BenchConfig, device: torch.device, *, steps: int,
               seed: int) -> float:
    """Forward + backward + AdamW step on pre-made, pre-normalised batches: images/s."""
    torch.manual_seed(seed)
    strategy = Finetune(Finetune().default_recipe(config))
    bb = strategy.build(backbone_name)
    groups = strategy.configure(bb, spec.num_classes)
    prep = bb.preprocessing.at_size(config.image_size)
    cache = open_image_cache(spec.fit, fingerprint=spec.fingerprint, size=prep.resize_size,
                             interpolation=prep.interpolation)
    generator = torch.Generator().manual_seed(seed)
    images = cache.images(cache.index_of(s.path) for s in spec.fit)
    labels = torch.tensor([s.label for s in spec.fit])
    b = config.batch_size
    batches = []
    while len(batches) < steps + 1:
        for i in range(0, len(images) - b + 1, b):
            crops = random_resized_crop(images[i:i + b], prep.image_size, scale=strategy.recipe.crop_scale,
                                        generator=generator, interpolation=prep.interpolation, device=device)
            batches.append((normalize(crops, prep.mean, prep.std), labels[i:i + b].to(device)))
    opt = torch.optim.AdamW(groups, weight_decay=strategy.recipe.weight_decay)
    model = bb.model.train().to(device).to(memory_format=torch.channels_last)  # as the training loop runs it

    def step(x, y):
        loss = F.cross_entropy(model(x), y, label_smoothing=strategy.recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(*batches[0])  # warm-up: allocator, kernels, optimizer state
    start = time.perf_counter()
    n = 0
    for x, y in batches[1:steps + 1]:
        step(x, y)
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: stable timings on a shared machine)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_speed.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])

    tmp = Path(tempfile.mkdtemp(prefix="advisor-bench-speed-"))
    root = make_demo(tmp, "digits", per_class=args.per_class)
    ds = scan(root)
    config = BenchConfig(epochs=args.epochs, image_size=args.image_size, batch_size=args.batch_size,
                         device=args.device, num_workers=0, cache_dir=str(tmp / "features"),
                         strategies=("freeze", "finetune"))
    freeze_spec, finetune_spec = plan_runs(ds, [args.backbone], config)
    train, val = freeze_spec.fit, freeze_spec.report
    num_classes = len(ds.classes)
    base = {"backbone": args.backbone, "image_size": args.image_size, "n_train": len(train), "n_val": len(val),
            "epochs": args.epochs, "batch_size": args.batch_size, "threads": args.threads, "device": args.device,
            "command": command}
    rows = []

    # 1. freeze: cached embeddings vs the head trained through the frozen backbone.
    env = RunEnv(device=torch.device(args.device), num_workers=0, cache_dir=config.cache_dir,
                 image_cache_dir=str(tmp / "images"))
    cached = train_run(freeze_spec, env)
    naive_s, naive_acc = _freeze_through_backbone(
        args.backbone, train, val, num_classes=num_classes, image_size=args.image_size, epochs=args.epochs,
        batch_size=args.batch_size, lr=3e-3, seed=0)
    rows.append({**base, "benchmark": "freeze", "method": "advisor: L-BFGS head on cached embeddings (extraction included)",
                 "seconds": cached.train_seconds, "accuracy": cached.accuracy, "ratio": None})
    rows.append({**base, "benchmark": "freeze", "method": "naive: head trained through the frozen backbone (minibatch AdamW 3e-3)",
                 "seconds": naive_s, "accuracy": naive_acc, "ratio": naive_s / cached.train_seconds})

    # 2. training-loop throughput vs a bare forward+backward+step loop on pre-made batches.
    (loop_spec,) = plan_runs(ds, [args.backbone], replace(config, epochs=2, strategies=("finetune",)))
    loop = train_run(loop_spec, env)
    steps = max(1, loop.details["n_fit"] // args.batch_size) * 2
    os.environ.setdefault("ADVISOR_CACHE", str(tmp))
    bare = _bare_loop(args.backbone, loop_spec, config, torch.device(args.device), steps=steps, seed=0)
    rows.append({**base, "benchmark": "loop", "method": "bare forward+backward+AdamW on pre-made batches",
                 "images_per_second": bare, "epochs": 2, "ratio": None})
    rows.append({**base, "benchmark": "loop", "method": "advisor finetune training loop (2 epochs)",
                 "images_per_second": loop.images_per_second, "seconds": loop.train_seconds,
                 "accuracy": loop.accuracy, "epochs": 2, "ratio": loop.images_per_second / bare})

    fields = ["benchmark", "method", "backbone", "image_size", "n_train", "n_val", "epochs", "batch_size",
              "seconds", "images_per_second", "accuracy", "ratio", "threads", "device", "command"]
    save_rows(args.out, rows, fields=fields)
    for row in rows:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()
               if k in ("benchmark", "method", "seconds", "images_per_second", "accuracy", "ratio")}, flush=True)


if __name__ == "__main__":
    main()
