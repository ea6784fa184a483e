"""How far can the learning curves be trusted? Fitted curves, holdout errors and crossing points.

Runs ``advisor bench --fractions auto`` (1/8, 1/4, 1/2 and all of the training split: four sizes,
so one degree of freedom tests each three-parameter law) on the digits demo at 40 images per
class and on hymenoptera, and prints each fitted curve's status (withheld fits say why), its
holdout error (the curve fitted without its largest size, predicting it) and the predicted
crossing points. Then checks the digits crossing
``finetune_beats_freeze`` against direct runs at 10, 20 and 40 digits per class: where the
measured fine-tune - freeze gap exceeds the margin, the prediction should say "crossed" or put
the crossing below that size.

Finished runs are kept in ``benchmarks/results/learning_curves/*.runs.jsonl`` (resumable);
one row per curve goes to ``benchmarks/results/learning_curves.csv``.

    python benchmarks/learning_curves.py [--hymenoptera ../shared/data/hymenoptera]
        [--digits-size 112] [--hymenoptera-size 224] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import torch

from advisor.bench import BenchConfig, bench
from advisor.bench.config import AUTO_FRACTIONS
from advisor.demo import make_demo
from common import save_rows

_SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
_RESULTS = Path(__file__).parent / "results"


def _run(name: str, data: Path, config: BenchConfig, backbone: str) -> dict:
    result = bench(data, [backbone], config=config,
                   results_file=_RESULTS / "learning_curves" / f"{name}.runs.jsonl").to_dict()
    print(f"\n{name}: verdict {result['winner']['verdict']}; {result['winner']['rule']}", flush=True)
    for r in result["runs"] + result.get("curve_runs", []):
        print(f"    {r['strategy']:10} fraction {r['fraction']:.2f} ({r['details'].get('images_per_class', 0):.1f}/class) "
              f"{100 * (r.get('accuracy') or float('nan')):5.1f}%  epochs {r.get('epochs_run')}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hymenoptera", default=str(_SHARED / "hymenoptera"))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--digits-size", type=int, default=112, help="crop size on digits (8x8 images: 112 is plenty)")
    parser.add_argument("--hymenoptera-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(_RESULTS / "learning_curves.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    (_RESULTS / "learning_curves").mkdir(parents=True, exist_ok=True)
    # A fixed folder: the demo files keep their modification times, so their runs resume.
    tmp = _RESULTS / "learning_curves" / "demo-data"
    fractions = AUTO_FRACTIONS

    jobs = [("digits40", make_demo(tmp, "digits", per_class=40), args.digits_size)]
    if Path(args.hymenoptera).is_dir():
        jobs.append(("hymenoptera", Path(args.hymenoptera), args.hymenoptera_size))
    rows = []
    results = {}
    for name, data, size in jobs:
        result = _run(name, data, BenchConfig(fractions=fractions, image_size=size), args.backbone)
        results[name] = result
        for c in result["data_size"]["curves"]:
            hold = c.get("holdout") or {}
            rows.append({"dataset": name, "strategy": c["strategy"], "image_size": size,
                         "sizes": " ".join(f"{p['images_per_class']:.1f}" for p in c["points"]),
                         "accuracies": " ".join(f"{p['accuracy']:.3f}" for p in c["points"]),
                         "fit": c.get("fit"), "status": c.get("status"), "reason": c.get("reason"),
                         "holdout_error": hold.get("error"),
                         "predicted_2x": (c["predicted"] or [{}])[0].get("accuracy"), "command": command})
            print(f"    curve {c['strategy']:10} {c.get('status')}"
                  + (f" ({c['reason']})" if c.get("reason") else "") + ", holdout error "
                  + (f"{100 * hold['error']:.1f} points (at {hold['images_per_class']:.1f}/class)" if hold else "-"),
                  flush=True)
        for x in result["data_size"]["crossings"]:
            print(f"    crossing {x['kind']} (gap {100 * x['margin']:.1f} points): {x['status']} "
                  f"{x.get('images_per_class')} ({x.get('low')}-{x.get('high')})"
                  + (f": {x['reason']}" if x.get("reason") else ""), flush=True)

    # The digits crossing against direct runs at 10, 20 and 40 per class.
    print("\ndirect runs on digits:", flush=True)
    for per_class in (10, 20, 40):
        root = make_demo(tmp / f"d{per_class}", "digits", per_class=per_class)
        result = bench(root, [args.backbone], config=BenchConfig(image_size=args.digits_size,
                                                                 strategies=("freeze", "finetune")),
                       results_file=_RESULTS / "learning_curves" / f"digits{per_class}-direct.runs.jsonl").to_dict()
        acc = {r["strategy"]: r["accuracy"] for r in result["runs"]}
        n_fit = result["runs"][0]["details"]["images_per_class"]
        gap = acc["finetune"] - acc["freeze"]
        print(f"    {per_class}/class ({n_fit:.1f} fit per class): freeze {100 * acc['freeze']:.1f}%  finetune "
              f"{100 * acc['finetune']:.1f}%  gap {100 * gap:+.1f} points", flush=True)
        rows.append({"dataset": f"digits{per_class}-direct", "strategy": "finetune-freeze", "image_size": args.digits_size,
                     "sizes": f"{n_fit:.1f}", "accuracies": f"{acc['freeze']:.3f} {acc['finetune']:.3f}",
                     "fit": None, "status": None, "reason": None, "holdout_error": None, "predicted_2x": None,
                     "command": command})
    save_rows(args.out, rows, append=False)
    errors = [r["holdout_error"] for r in rows if r["holdout_error"] is not None]
    if errors:
        print(f"\nmean absolute holdout error: {100 * sum(errors) / len(errors):.1f} points over {len(errors)} curves")


if __name__ == "__main__":
    main()
