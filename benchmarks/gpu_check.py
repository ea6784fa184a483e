"""Proof on real hardware: advisor's GPU path end to end, in one command of a few minutes.

Every speed is measured in this run and given as a ratio to a baseline measured in the same run,
on the same device:

  environment  the device, its memory, the precision chosen, the versions.
  loader       reads of whole images out of the decoded-image cache (padded uint8 batches) and
               batch augmentation on the device (random resized crop + flip), in img/s, with
               ``benchmarks/loader_speed.py``'s functions; the ratio to the training it feeds.
  training     resnet18 and efficientnet_b0 at 224 px, batch 128, the device's AMP precision
               (``advisor.runtime.choose_precision``), channels_last: the bench's own loop
               (``train_run`` of a finetune run on a fixed budget, after a one-epoch warm-up run)
               against a bare loop of forward + backward + AdamW on synthetic tensors already on
               the device. Target: >= 0.9. timm's published training figures (other cards) are
               printed beside them as a reference.
  inference    the profiler's embedding pass (``extract_features``, BatchNorm statistics
               included) against the bare forward pass on synthetic tensors (same precision, layout).
  bench        a real bench: efficientnet_lite0 (ImageNet weights), --epochs auto, one seed, its
               native size, on --data (hymenoptera by default): verdict, accuracies, epochs and
               wall time, against the README's CPU figures.
  sharing      two runs on one GPU through Ray (gpus per run 0.5) against the same two runs one
               after the other in this process: the wall-time ratio (Ray's start outside it, each
               task's own start inside it, reported apart), and each run's training time, shared
               against alone.

The training and inference sections train on the "photos" demo (crops of photographs that
scikit-learn and scikit-image bundle, written at 256 px); their speed does not depend on the
weights, so they start from random ones. A table is printed as sections finish; the last line
is one JSON object.

    python benchmarks/gpu_check.py [--quick] [--tiny] [--data DIR] [--skip sharing,bench] [--threads N]

``--quick`` fits in 3 minutes on one GPU (fewer images, epochs and seconds per measurement).
``--tiny`` (automatic without CUDA) makes every size tiny (32 px crops, 4 images per class, random
weights, a tiny demo instead of --data) so that a test can run the script on a CPU; the sections
that need CUDA report ``{"skipped": "no CUDA"}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from advisor.backbones import get_backbone
from advisor.bench import BenchConfig, RunEnv, RunSpec, bench, plan_runs, train_run
from advisor.bench.executors import LocalExecutor, RayExecutor
from advisor.data import scan
from advisor.demo import make_demo
from advisor.imagecache import open_image_cache
from advisor.profile import extract_features
from advisor.runtime import Precision, choose_precision, resolve_device
from advisor.utils import json_clean, versions
from loader_speed import batch_aug, mmap_read

REPO = Path(__file__).resolve().parents[1]
#: The README's CPU figures for the real bench (``python benchmarks/budget.py --image-size 128``:
#: hymenoptera, efficientnet_lite0, --epochs auto, one seed, 128 px).
README_CPU = {"freeze": 0.876, "finetune": 0.889, "scratch": 0.601, "verdict": "freeze", "image_size": 128,
              "source": "README, 'Checked against training': python benchmarks/budget.py --image-size 128"}
#: timm's published training throughputs on other cards (batch 512), as a reference, not a target.
TIMM_TRAIN = {
    "resnet18": {"images_per_second": 3482, "card": "RTX 3090, AMP, NHWC (channels_last), batch 512",
                 "source": "timm results/benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv (3481.78 img/s)"},
    "efficientnet_b0": {"images_per_second": 2489, "card": "A100 80GB, AMP",
                        "source": "timm's published training benchmark, A100 80GB, AMP (about 2,489 img/s)"},
}
TARGET = 0.9  # the bench's loop against the bare loop
TRAINED = ("resnet18", "efficientnet_b0")
REAL_BACKBONE = "efficientnet_lite0"


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is in a mode."""

    image_size: int  # crops of the training and inference sections
    batch_size: int
    per_class: int  # photos demo images per class (6 classes, 256 px)
    epochs: int  # of the measured bench loop (and the bare loop's steps to match)
    min_seconds: float  # each loader measurement
    share_epochs: int  # of each of the two shared runs
    real_image_size: int | None  # the real bench (None: the backbone's own)
    real_max_epochs: int | None


SIZES = {
    "full": Sizes(224, 128, per_class=320, epochs=6, min_seconds=3.0, share_epochs=20, real_image_size=None,
                  real_max_epochs=None),
    "quick": Sizes(224, 128, per_class=160, epochs=4, min_seconds=1.0, share_epochs=8, real_image_size=None,
                   real_max_epochs=None),
    "tiny": Sizes(32, 16, per_class=4, epochs=2, min_seconds=0.2, share_epochs=1, real_image_size=32,
                  real_max_epochs=2),
}


# --------------------------------------------------------------------------- helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step: Callable[[], None], *, warmup: int, steps: int, images_per_step: int, device: torch.device) -> float:
    """Images/s of ``step``: ``warmup`` steps, a sync, then ``steps`` timed steps up to a sync."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * images_per_step / (time.perf_counter() - start)


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


class Table:
    """The printed table: one line per figure, as it is measured."""

    def row(self, section: str, what: str, value: Any, ratio: float | None = None, note: str = "") -> None:
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        ratio_text = f"{ratio:.3f}" if isinstance(ratio, float) else ""
        print(f"{section:<11} {what:<54} {shown:>12} {ratio_text:>7}  {note}", flush=True)


# --------------------------------------------------------------------------- sections


def environment(device: torch.device, precision: Precision) -> dict[str, Any]:
    out: dict[str, Any] = {"device": str(device), "precision": precision.name, "versions": versions(),
                           "cuda": torch.version.cuda, "cpu_cores": os.cpu_count(), "host": platform.node()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(name=props.name, memory_gb=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
                   cudnn=torch.backends.cudnn.version())
    else:
        out["name"] = platform.processor() or platform.machine()
    return out


def loader(samples: list, fingerprint: str, sizes: Sizes, device: torch.device, cache_dir: Path) -> dict[str, Any]:
    """Cache reads and batch augmentation on the device (224 px crops of 256 px images, as loader_speed.py)."""
    cache = open_image_cache(samples, fingerprint=fingerprint, size=256, cache_dir=cache_dir)
    if cache is None:
        raise RuntimeError(f"no decoded-image cache could be written under {cache_dir}")
    read_s, read_n = mmap_read(cache, sizes.batch_size, sizes.min_seconds)
    aug_s, aug_n = batch_aug(cache, sizes.batch_size, sizes.min_seconds, str(device))
    read, aug = read_n / read_s, aug_n / aug_s
    return {"images": len(cache), "batch_size": sizes.batch_size, "cache_read_img_s": read,
            "batch_aug_device_img_s": aug, "batch_aug_over_read": aug / read, "device": str(device)}


def _bare_training(name: str, num_classes: int, sizes: Sizes, steps: int, device: torch.device,
                   precision: Precision) -> float:
    """Forward + backward + AdamW of the same network on one synthetic batch already on the device."""
    torch.manual_seed(0)
    backbone = get_backbone(name, weights=None)
    backbone.replace_head(num_classes)
    model = backbone.model.to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    scaler = precision.grad_scaler(device)
    b, s = sizes.batch_size, sizes.image_size
    x = torch.randn(b, 3, s, s, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(num_classes, (b,), device=device)

    def step() -> None:
        with precision.autocast(device):
            logits = backbone.forward(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return _rate(step, warmup=5, steps=steps, images_per_step=b, device=device)


def training(dataset: Any, sizes: Sizes, device: torch.device, precision: Precision, image_cache: Path,
             table: Table) -> dict[str, Any]:
    """The bench's loop (train_run, finetune, fixed budget) against the bare loop, per network."""
    out: dict[str, Any] = {"image_size": sizes.image_size, "batch_size": sizes.batch_size, "target": TARGET,
                           "precision": precision.name, "channels_last": True}
    env = RunEnv(device=device, precision=precision, cache_dir="", image_cache_dir=str(image_cache))

    def spec(name: str, epochs: int) -> RunSpec:
        config = BenchConfig(strategies=("finetune",), epochs=epochs, image_size=sizes.image_size,
                             batch_size=sizes.batch_size, weights=None, cache_dir="",
                             image_cache_dir=str(image_cache))
        (only,) = plan_runs(dataset, [name], config, precision=precision.name)
        return only

    comparable = device.type == "cuda" and sizes.image_size == 224
    for name in TRAINED:
        _release(device)
        warm = train_run(spec(name, 1), env)  # kernels, allocator, the decoded-image cache
        if not warm.ok:
            raise RuntimeError(f"{name}: the warm-up run failed: {warm.error}")
        measured = spec(name, sizes.epochs)
        run = train_run(measured, env)
        if not run.ok:
            raise RuntimeError(f"{name}: the measured run failed: {run.error}")
        n_fit = len(measured.fit)
        steps = max(1, n_fit // sizes.batch_size) * run.epochs_run  # the bench drops a last, smaller batch
        loop_peak = _peak_gb(device)
        _release(device)
        bare = _bare_training(name, len(dataset.classes), sizes, steps, device, precision)
        row: dict[str, Any] = {"bench_loop_img_s": run.images_per_second, "bare_loop_img_s": bare,
                               "ratio": run.images_per_second / bare, "epochs": run.epochs_run, "steps": steps,
                               "images_per_epoch": n_fit, "peak_memory_gb": loop_peak,
                               "bare_peak_memory_gb": _peak_gb(device)}
        row["meets_target"] = row["ratio"] >= TARGET
        ref = TIMM_TRAIN[name]
        row["reference"] = {**ref, "bench_loop_over_reference": run.images_per_second / ref["images_per_second"]
                            if comparable else None,
                            "bare_loop_over_reference": bare / ref["images_per_second"] if comparable else None}
        if not comparable:
            row["reference"]["note"] = f"not comparable here: {device.type}, {sizes.image_size} px"
        out[name] = row
        table.row("training", f"{name} bare loop (img/s)", bare)
        table.row("training", f"{name} bench loop (img/s) / bare", run.images_per_second, row["ratio"],
                  "meets the 0.9 target" if row["meets_target"] else "below the 0.9 target")
        table.row("training", f"{name} timm reference (img/s)", float(ref["images_per_second"]),
                  row["reference"]["bench_loop_over_reference"], f"{ref['card']}; {ref['source']}")
    return out


def _bare_forward(backbone: Any, n_images: int, sizes: Sizes, device: torch.device, precision: Precision) -> float:
    model = backbone.model.to(device).eval().to(memory_format=torch.channels_last)
    b, s = sizes.batch_size, sizes.image_size
    x = torch.randn(b, 3, s, s, device=device).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.inference_mode(), precision.autocast(device):
            model(x)

    return _rate(step, warmup=3, steps=max(1, n_images // b), images_per_step=b, device=device)


def inference(dataset: Any, sizes: Sizes, device: torch.device, precision: Precision, image_cache: Path,
              table: Table) -> dict[str, Any]:
    """The profiler's embedding pass (decoded-image cache, hooks, copies back) against the bare forward."""
    out: dict[str, Any] = {"image_size": sizes.image_size, "batch_size": sizes.batch_size,
                           "images": len(dataset.samples)}
    options = {"image_size": sizes.image_size, "batch_size": sizes.batch_size, "device": device, "cache_dir": "",
               "fingerprint": dataset.fingerprint(), "precision": precision, "image_cache_dir": str(image_cache)}
    for name in TRAINED:
        _release(device)
        backbone = get_backbone(name, weights=None)
        extract_features(backbone, dataset.samples[:sizes.batch_size], **options)  # warm-up
        feats = extract_features(backbone, dataset.samples, **options)
        profiler = len(feats.labels) / feats.seconds
        bare = _bare_forward(backbone, len(dataset.samples), sizes, device, precision)
        out[name] = {"profiler_img_s": profiler, "bare_forward_img_s": bare, "ratio": profiler / bare}
        table.row("inference", f"{name} profiler pass (img/s) / bare forward", profiler, profiler / bare,
                  f"bare forward {bare:,.0f} img/s")
    return out


def _default_data() -> Path | None:
    for root in (REPO.parent / "shared", REPO / "shared"):  # beside the checkout, or inside a copy of it
        if (root / "data" / "hymenoptera").is_dir():
            return root / "data" / "hymenoptera"
    return None


def real_bench(data: Path, sizes: Sizes, weights: str | None, tmp: Path, table: Table) -> dict[str, Any]:
    """efficientnet_lite0, --epochs auto, one seed, native size: what a user runs.

    The README's CPU figures are compared where they apply: hymenoptera with ImageNet weights.
    """
    readme = README_CPU if data.name == "hymenoptera" and weights == "imagenet" else {}
    config = BenchConfig(epochs="auto", seeds=(0,), image_size=sizes.real_image_size, weights=weights,
                         max_epochs=sizes.real_max_epochs, cache_dir=str(tmp / "features"),
                         image_cache_dir=str(tmp / "images"))
    start = time.perf_counter()
    result = bench(data, [REAL_BACKBONE], config=config, executor=LocalExecutor())
    wall = time.perf_counter() - start
    (decision,) = result.winner["per_backbone"] or [{}]
    tolerance = decision.get("tolerance")
    runs = {}
    for r in result.runs:
        runs[r.strategy] = {"status": r.status, "accuracy": r.accuracy, "epochs_run": r.epochs_run,
                            "best_epoch": r.best_epoch, "train_seconds": r.train_seconds, "error": r.error}
        cpu = readme.get(r.strategy)
        within = (abs(r.accuracy - cpu) <= tolerance if r.ok and cpu is not None and tolerance is not None
                  else None)
        runs[r.strategy]["readme_cpu_accuracy"] = cpu
        runs[r.strategy]["within_tolerance_of_readme"] = within
        shown = f"{100 * r.accuracy:.1f} %" if r.ok else f"failed: {r.error}"
        table.row("bench", f"{r.strategy}: accuracy", shown, None,
                  f"epoch {r.best_epoch} of {r.epochs_run}, {r.train_seconds or 0:.1f} s"
                  + (f"; README CPU (128 px) {100 * cpu:.1f} %" if cpu is not None else ""))
    verdict = result.winner.get("verdict")
    table.row("bench", "verdict", str(verdict), None,
              f"{wall:.1f} s wall; tolerance " + (f"{100 * tolerance:.1f} points" if tolerance is not None else "none")
              + (f"; README CPU verdict {readme['verdict']}" if readme else ""))
    return {"data": str(data), "backbone": REAL_BACKBONE, "weights": weights or "random",
            "image_size": result.protocol.get("image_size"), "epochs": "auto", "seeds": [0],
            "device": result.protocol.get("device"), "precision": result.protocol.get("precision"),
            "verdict": verdict, "rule": result.winner.get("rule"), "tolerance": tolerance, "runs": runs,
            "wall_seconds": wall, "readme_cpu": readme or None,
            "verdict_matches_readme": verdict == readme["verdict"] if readme else None,
            "note": ("the README's figures were measured on a CPU at 128 px, this run at "
                     f"{result.protocol.get('image_size')} px" if readme else
                     "no README figures for this data and these weights")}


def sharing(dataset_root: Path, sizes: Sizes, image_cache: Path, table: Table) -> dict[str, Any]:
    """Two finetune runs (seeds 0, 1) on one GPU through Ray, against one after the other here."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"skipped": "ray is not installed (pip install 'transfer-advisor[ray]')"}
    # Ray's workers import advisor from this checkout, and keep their caches with this run's.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    config = BenchConfig(strategies=("finetune",), epochs=sizes.share_epochs, image_size=sizes.image_size,
                         batch_size=sizes.batch_size, seeds=(0, 1), weights=None, cache_dir="",
                         image_cache_dir=str(image_cache))
    cores = os.cpu_count() or 2
    one_after_another = bench(dataset_root, ["resnet18"], config=config, executor=LocalExecutor())
    executor = RayExecutor(gpus_per_run=0.5, cpus_per_run=max(1, cores // 2))
    with executor:
        shared = bench(dataset_root, ["resnet18"], config=config, executor=executor)
    local, ray_info = one_after_another.extra["execution"], shared.extra["execution"]
    ratio = ray_info["wall_seconds"] / local["wall_seconds"]
    # Each run's time on Ray outside its own training: waiting for a worker that imports torch and
    # starts CUDA, the task around the run, the result's way back.
    parts = ("queued_seconds", "task_seconds", "return_seconds", "train_seconds")
    overheads = [row["queued_seconds"] + row["task_seconds"] + row["return_seconds"] - row["train_seconds"]
                 for row in ray_info.get("runs", []) if all(row.get(k) is not None for k in parts)]
    devices = sorted({str(r.details.get("device")) for r in shared.runs if r.ok})
    out = {"runs": len(shared.runs), "ok": sum(r.ok for r in shared.runs), "devices": devices,
           "gpus_per_run": ray_info.get("per_run", {}).get("gpus"), "epochs": sizes.share_epochs,
           "one_after_another_wall_s": local["wall_seconds"], "ray_shared_wall_s": ray_info["wall_seconds"],
           "wall_ratio_shared_over_sequential": ratio, "ray_startup_s": ray_info.get("startup_seconds"),
           "run_seconds_local": local["run_seconds"], "run_seconds_ray": ray_info["run_seconds"],
           "run_seconds_ratio": ray_info["run_seconds"] / local["run_seconds"] if local["run_seconds"] else None,
           "per_run_outside_training_s": sum(overheads) / len(overheads) if overheads else None,
           "errors": ray_info.get("errors")}
    table.row("sharing", "2 runs, 1 GPU via Ray / one after another (s)", ray_info["wall_seconds"], ratio,
              f"sequential {local['wall_seconds']:.1f} s; Ray start {ray_info.get('startup_seconds') or 0:.1f} s "
              "outside the grid")
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fit in 3 minutes on one GPU")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (automatic without CUDA)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the real bench's data folder (default: ../shared/data/hymenoptera)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    mode = "tiny" if args.tiny or not cuda else ("quick" if args.quick else "full")
    sizes = SIZES[mode]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    precision = choose_precision(device)
    tmp = Path(tempfile.mkdtemp(prefix="advisor-gpu-check-"))
    os.environ["ADVISOR_CACHE"] = str(tmp / "cache")  # nothing of this run in the user's caches
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    doc: dict[str, Any] = {"command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "mode": mode}
    table = Table()
    print(f"gpu_check ({mode}) on {device}, precision {precision.name}", flush=True)
    table.row("section", "figure", "value", None, "note")

    def section(name: str, run: Callable[[], dict[str, Any]], *, needs_cuda: bool = False) -> None:
        if name in skip:
            doc[name] = {"skipped": "--skip"}
            return
        if needs_cuda and not cuda:
            doc[name] = {"skipped": "no CUDA"}
            table.row(name, "skipped: no CUDA", "")
            return
        t0 = time.perf_counter()
        try:
            doc[name] = run()
        except Exception as err:  # noqa: BLE001 - one broken section must not cost the others their figures
            traceback.print_exc()
            doc[name] = {"error": f"{type(err).__name__}: {err}"}
            table.row(name, "error", "", None, doc[name]["error"][:200])
        doc[name]["seconds"] = time.perf_counter() - t0

    try:
        section("environment", lambda: environment(device, precision))
        env_doc = doc["environment"]
        memory = f"{env_doc['memory_gb']:.0f} GB, " if env_doc.get("memory_gb") else ""
        table.row("environment", "device", str(env_doc.get("name", device)), None,
                  f"{memory}{precision.name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
        photos = make_demo(tmp / "demo", "photos", per_class=sizes.per_class, size=256)
        dataset = scan(photos)
        image_cache = tmp / "images"

        def run_loader() -> dict[str, Any]:
            out = loader(list(dataset.samples), dataset.fingerprint(), sizes, device, tmp / "loader")
            table.row("loader", "cache reads (img/s)", out["cache_read_img_s"])
            table.row("loader", f"batch augmentation on {device.type} (img/s) / reads", out["batch_aug_device_img_s"],
                      out["batch_aug_over_read"])
            return out

        section("loader", run_loader)
        section("training", lambda: training(dataset, sizes, device, precision, image_cache, table))
        aug = doc["loader"].get("batch_aug_device_img_s")
        for name in TRAINED:  # does the loader feed the training? (> 1: it is not the bottleneck)
            bare = doc["training"].get(name, {}).get("bare_loop_img_s")
            if aug and bare:
                doc["loader"][f"feeds_{name}"] = aug / bare
                table.row("loader", f"batch augmentation / {name} bare training", aug, aug / bare)
        section("inference", lambda: inference(dataset, sizes, device, precision, image_cache, table))

        def run_bench() -> dict[str, Any]:
            if mode == "tiny" and args.data is None:
                data = make_demo(tmp / "demo-bench", "photos", per_class=sizes.per_class, size=64)
            else:
                data = args.data or _default_data()
                if data is None or not Path(data).is_dir():
                    return {"skipped": f"no data folder ({data or '../shared/data/hymenoptera'}): pass --data"}
            return real_bench(Path(data), sizes, None if mode == "tiny" else "imagenet", tmp, table)

        section("bench", run_bench)
        section("sharing", lambda: sharing(photos, sizes, image_cache, table), needs_cuda=True)
    finally:
        doc["seconds"] = time.perf_counter() - started
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            line = json.dumps(json_clean(_rounded(doc)))
        except TypeError:  # a value JSON has no form for: its text, rather than no line at all
            line = json.dumps(_rounded(doc), default=str)
        print(line, flush=True)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


if __name__ == "__main__":
    main()
