"""Does a grid train faster on Ray, and what does the Ray path cost per run? One run measures both.

The same grid (``--strategies`` x ``--seeds`` of resnet18 with random weights at 64 px on the
digits demo, 20 images per class, a fixed number of epochs, one torch thread per run) trains
with the local executor (one run after another) and with the Ray executor on a local Ray
instance of ``--workers`` workers. The Ray figure includes starting and stopping Ray. Printed:

- the wall-time ratio ray / local (target on a 2-core machine: <= 0.7);
- Ray's start-up, and the per-run cost of the Ray path: per worker slot, the grid's time not
  spent training (``(workers x wall after start-up - sum of train_seconds) / runs``), split into
  the task's own time around the training (building the run environment, unpickling the spec,
  the first import of torch in each worker), the wait before a task starts, and the time from
  the task's end to the driver's append (serialisation and the driver's loop);
- whether both executors gave identical accuracies (they must).

A warm-up run (another seed) fills the decoded-image cache and the imports first, so that
neither executor pays for them. One CSV row per run goes to ``benchmarks/results/bench_scale.csv``.

    python benchmarks/bench_scale.py [--epochs 5] [--seeds 4] [--workers 2] \
        [--strategies finetune,scratch] [--image-size 64] [--per-class 20]
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

from advisor.bench import BenchConfig, bench
from advisor.bench.executors import LocalExecutor, RayExecutor
from advisor.demo import make_demo
from common import save_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--strategies", default="finetune,scratch")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (CPUs of the local Ray instance)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_scale.csv"))
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    torch.set_num_threads(1)

    tmp = Path(tempfile.mkdtemp(prefix="advisor-bench-scale-"))
    os.environ["ADVISOR_CACHE"] = str(tmp / "cache")  # before Ray starts: its workers inherit it
    root = make_demo(tmp, "digits", per_class=args.per_class)
    config = BenchConfig(strategies=tuple(args.strategies.split(",")), epochs=args.epochs,
                         image_size=args.image_size, batch_size=args.batch_size,
                         seeds=tuple(range(args.seeds)), weights=None, num_workers=0, device="cpu")

    # Warm-up: imports, the decoded-image cache of the dataset at this size, torch's first calls.
    bench(root, [args.backbone], config=replace(config, strategies=config.strategies[:1], seeds=(1000,), epochs=1),
          executor=LocalExecutor(threads_per_run=1))

    start = time.perf_counter()
    local = bench(root, [args.backbone], config=config, results_file=tmp / "local.jsonl",
                  executor=LocalExecutor(threads_per_run=1))
    local_wall = time.perf_counter() - start

    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, logging_level="warning")
    ray_start = time.perf_counter() - start
    try:
        on_ray = bench(root, [args.backbone], config=config, results_file=tmp / "ray.jsonl",
                       executor=RayExecutor(cpus_per_run=1, threads_per_run=1))
    finally:
        ray.shutdown()
    ray_wall = time.perf_counter() - start

    ex = on_ray.extra["execution"]
    n = len(on_ray.runs)
    startup = ray_wall - ex["wall_seconds"]  # everything outside the grid's loop: start, probe, stop
    train_sum = sum(r.train_seconds for r in on_ray.runs)
    slot_overhead = (args.workers * ex["wall_seconds"] - train_sum) / n
    rows = ex["runs"]
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    task_overhead = sum(r["task_seconds"] - r["train_seconds"] for r in rows) / len(rows)
    identical = [(r.key, r.accuracy) for r in local.runs] == [(r.key, r.accuracy) for r in on_ray.runs]

    print(f"grid: {n} runs ({args.strategies} x {args.seeds} seeds, {args.backbone}, random weights, "
          f"{args.image_size} px, {args.epochs} epochs, 1 thread per run)")
    print(f"local: {local_wall:.1f} s (sum of train_seconds {sum(r.train_seconds for r in local.runs):.1f} s)")
    print(f"ray ({args.workers} workers): {ray_wall:.1f} s, of which {startup:.1f} s outside the grid's loop "
          f"(ray.init {ray_start:.1f} s, the device probe, planning, ray.shutdown); sum of train_seconds "
          f"{train_sum:.1f} s")
    print(f"ratio ray / local: {ray_wall / local_wall:.2f}  (target <= 0.7)")
    print(f"Ray path per run: {slot_overhead:.2f} s of a worker slot not training; inside the task "
          f"{task_overhead:.2f} s around the training; queued {mean('queued_seconds'):.2f} s (waiting for a slot "
          f"included); task end -> driver {1000 * mean('return_seconds'):.1f} ms")
    print(f"identical accuracies: {identical}")

    fields = ["executor", "backbone", "strategy", "seed", "key", "accuracy", "train_seconds", "task_seconds",
              "queued_seconds", "return_seconds", "node", "pid", "grid_wall_seconds", "ray_startup_seconds",
              "ratio_ray_local", "workers", "epochs", "image_size", "n_runs", "identical", "command"]
    common = {"backbone": args.backbone, "workers": args.workers, "epochs": args.epochs, "image_size": args.image_size,
              "n_runs": n, "ratio_ray_local": ray_wall / local_wall, "identical": identical, "command": command}
    by_key = {r["key"]: r for r in rows}
    local_rows = {r["key"]: r for r in local.extra["execution"]["runs"]}
    table = []
    for executor, result, wall, where in (("local", local, local_wall, local_rows), ("ray", on_ray, ray_wall, by_key)):
        for r in result.runs:
            row = where.get(r.key, {})
            table.append({**common, "executor": executor, "strategy": r.strategy, "seed": r.seed, "key": r.key,
                          "accuracy": r.accuracy, "train_seconds": r.train_seconds,
                          "task_seconds": row.get("task_seconds"), "queued_seconds": row.get("queued_seconds"),
                          "return_seconds": row.get("return_seconds"), "node": row.get("node_ip") or row.get("node_id"),
                          "pid": row.get("pid"), "grid_wall_seconds": wall,
                          "ray_startup_seconds": ray_start if executor == "ray" else None})
    out = save_rows(args.out, table, fields=fields)
    print(f"rows appended to {out}")


if __name__ == "__main__":
    main()
