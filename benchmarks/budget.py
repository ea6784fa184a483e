"""Does the training budget decide the verdict? ``--epochs 8`` against ``--epochs auto``.

For each dataset: the advice (``advisor recommend``'s profile and decision), then the bench with
a fixed budget of 8 epochs and with early stopping (``auto``), both on the same backbone and
seed. Prints, per dataset, each strategy's accuracy and epochs under both budgets, the two
verdicts, whether each agrees with the advice, and the wall-time ratio auto / fixed.

Finished runs are kept in ``benchmarks/results/budget/<dataset>-<budget>.runs.jsonl``: an
interrupted run of this script resumes where it stopped. One row per (dataset, budget,
strategy) goes to ``benchmarks/results/budget.csv``.

    python benchmarks/budget.py [--data ../shared/data/hymenoptera ../shared/data/calibration/*]
        [--backbone efficientnet_lite0] [--threads 2] [--image-size N]
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from advisor.bench import BenchConfig
from advisor.pipeline import run_bench
from advisor.profile import ProfileConfig
from common import save_rows

_SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
_RESULTS = Path(__file__).parent / "results"


def _default_data() -> list[str]:
    found = [str(_SHARED / "hymenoptera")] + sorted(glob.glob(str(_SHARED / "calibration" / "*" / "train")))
    return [str(Path(p).parent) if p.endswith("train") else p for p in found if Path(p).is_dir()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", default=_default_data())
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--fixed", type=int, default=8, help="epochs of the fixed budget")
    parser.add_argument("--out", default=str(_RESULTS / "budget.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    (_RESULTS / "budget").mkdir(parents=True, exist_ok=True)
    rows = []
    for data in args.data:
        name = Path(data).name
        summary = {}
        for budget in (args.fixed, "auto"):
            config = BenchConfig(epochs=budget, image_size=args.image_size)
            start = time.perf_counter()
            job = run_bench(data, [args.backbone], config=config, profile_config=ProfileConfig(), out=None,
                            results_file=_RESULTS / "budget" / f"{name}-{budget}.runs.jsonl")
            seconds = time.perf_counter() - start
            result = job.result
            rec = result["recommendation"]
            train_seconds = sum(r.get("train_seconds") or 0.0 for r in result["runs"])
            summary[budget] = (result, train_seconds)
            for r in result["runs"]:
                rows.append({
                    "dataset": name, "budget": budget, "strategy": r["strategy"], "accuracy": r.get("accuracy"),
                    "epochs_run": r.get("epochs_run"), "best_epoch": r.get("best_epoch"),
                    "converged": r.get("converged"), "train_seconds": r.get("train_seconds"),
                    "n_report": r.get("details", {}).get("n_report"), "verdict": result["winner"]["verdict"],
                    "advice": rec["strategy"], "agreement": result["agreement"], "wall_seconds": round(seconds, 1),
                    "backbone": args.backbone, "image_size": result["protocol"]["image_size"], "command": command,
                })
            print(f"{name} [{budget}] advice {rec['strategy']} ({rec['case']}); verdict {result['winner']['verdict']}; "
                  f"agreement {result['agreement']}; runs' time {train_seconds:.0f} s", flush=True)
            for r in result["runs"]:
                print(f"    {r['strategy']:10} {100 * (r.get('accuracy') or float('nan')):5.1f}%  epochs "
                      f"{r.get('epochs_run')} (kept {r.get('best_epoch')}, converged {r.get('converged')})", flush=True)
            print(f"    rule: {result['winner']['rule']}", flush=True)
        fixed_s, auto_s = summary[args.fixed][1], summary["auto"][1]
        print(f"{name}: verdict {summary[args.fixed][0]['winner']['verdict']} -> {summary['auto'][0]['winner']['verdict']}; "
              f"time auto / fixed = {auto_s / max(fixed_s, 1e-9):.2f}", flush=True)
        save_rows(args.out, rows)
        rows = []


if __name__ == "__main__":
    main()
