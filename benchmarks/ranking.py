"""Which ranking of backbones should the advisor trust? Its own against ImageNet top-1 and k-NN.

For each dataset, every backbone available offline is profiled as ``advisor recommend`` does
(default profile: native image size) and benched as ``advisor bench`` does (the default
protocol; freeze and fine-tune, plus scratch on efficientnet_lite0; one seed, at a reduced
image size so that the suite fits a CPU). A random-weights control (efficientnet_lite0 with
random weights: its frozen features, and the scratch network, which is the same architecture
trained from random weights) joins the pretrained ones.

A backbone's measured accuracy is its best strategy's. Each ranking of :mod:`advisor.ranking`
(the advisor's frozen probe, ImageNet top-1, the k-NN probe) is scored by its weighted Kendall
tau against the measured accuracies, with a 95 % bootstrap interval over the reported images
(every backbone is scored on the same images), twice: over every backbone (the control
included) and over the pretrained ones only.

Finished runs are kept in ``benchmarks/results/ranking/<dataset>.runs.jsonl`` (an interrupted
run resumes). Rows go to ``benchmarks/results/ranking.csv``, the table with this command to
``docs/benchmarks.md``. ``--tables-only`` reads the runs back (every one found by its key) and
trains nothing: a dataset whose runs have not all finished is left out of the table.

    python benchmarks/ranking.py [--data ../shared/data/hymenoptera ../shared/data/calibration/*]
        [--threads 2] [--image-size 96] [--tables-only]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from advisor import ranking
from advisor.bench import BenchConfig, bench
from advisor.data import scan
from advisor.profile import ProfileConfig, profile
from common import save_rows, write_section
from budget import _default_data

_RESULTS = Path(__file__).parent / "results"
_DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
PRETRAINED = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CONTROL = "efficientnet_lite0"
CONTROL_NAME = f"{CONTROL} (random weights)"


def _measured(result, backbone: str, strategies) -> tuple[str, float, list[np.ndarray]] | None:
    """The best of ``strategies`` for ``backbone``: its name, accuracy and per-image records."""
    runs = [r for r in result.runs if r.ok and r.backbone == backbone and r.strategy in strategies and r.fraction == 1.0]
    if not runs:
        return None
    best = max(runs, key=lambda r: r.accuracy)
    return best.strategy, best.accuracy, [best.correctness()]


def _dataset(data: str, image_size: int, tables_only: bool) -> dict | None:
    name = Path(data).name
    results_file = _RESULTS / "ranking" / f"{name}.runs.jsonl"
    done = results_file.with_suffix(".done")  # every run of the dataset finished
    if tables_only and not done.exists():
        return None
    ds = scan(data)
    start = time.perf_counter()
    profiles = {b.name: b.to_dict() for b in profile(ds, PRETRAINED, config=ProfileConfig()).backbones}
    control = profile(ds, [CONTROL], config=ProfileConfig(weights=None)).backbones[0].to_dict()
    profiles[CONTROL_NAME] = {**control, "name": CONTROL_NAME, "weights": "random"}
    base = BenchConfig(image_size=image_size)
    lite0 = bench(ds, [CONTROL], config=base, results_file=results_file)
    others = bench(ds, list(PRETRAINED[1:]), config=BenchConfig(image_size=image_size, strategies=("freeze", "finetune")),
                   results_file=results_file)
    random = bench(ds, [CONTROL], config=BenchConfig(image_size=image_size, strategies=("freeze",), weights=None),
                   results_file=results_file)
    measured = {CONTROL: _measured(lite0, CONTROL, ("freeze", "finetune"))}
    measured.update({b: _measured(others, b, ("freeze", "finetune")) for b in PRETRAINED[1:]})
    frozen_random, scratch = _measured(random, CONTROL, ("freeze",)), _measured(lite0, CONTROL, ("scratch",))
    measured[CONTROL_NAME] = max((m for m in (frozen_random, scratch) if m), key=lambda m: m[1], default=None)
    measured = {b: m for b, m in measured.items() if m is not None}
    done.touch()
    return {"dataset": name, "profiles": profiles, "measured": measured, "seconds": time.perf_counter() - start}


def _agreement(entry: dict, names) -> dict[str, dict]:
    ranked = ranking.rankings([entry["profiles"][b] for b in names if b in entry["profiles"]])
    records = {b: entry["measured"][b][2] for b in names if b in entry["measured"]}
    return {row["ranking"]: row for row in ranking.ranking_agreement(ranked, records)}


def _fmt(row: dict) -> str:
    if row["weighted_tau"] is None:
        return "-"
    band = f" ({row['low']:+.2f} to {row['high']:+.2f})" if row["low"] is not None else ""
    return f"{row['weighted_tau']:+.2f}{band}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", default=_default_data())
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--out", default=str(_RESULTS / "ranking.csv"))
    parser.add_argument("--docs", default=str(_DOCS))
    parser.add_argument("--tables-only", action="store_true", help="write the tables only (runs are read back)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    (_RESULTS / "ranking").mkdir(parents=True, exist_ok=True)
    entries, rows = [], []
    for data in args.data:
        entry = _dataset(data, args.image_size, args.tables_only)
        if entry is None:
            continue
        entries.append(entry)
        for b, (strategy, acc, _) in entry["measured"].items():
            t = entry["profiles"][b]["transferability"]
            rows.append({"dataset": entry["dataset"], "backbone": b, "measured_strategy": strategy, "accuracy": acc,
                         "linear_probe": t.get("linear_probe"), "knn_probe": t.get("knn_probe"),
                         "imagenet_top1": ranking.imagenet_top1(entry["profiles"][b]["name"],
                                                                entry["profiles"][b]["weights"]),
                         "image_size": args.image_size, "command": command})
        print(f"{entry['dataset']} ({entry['seconds']:.0f} s): " + ", ".join(
            f"{b} {m[1]:.1%} ({m[0]})" for b, m in entry["measured"].items()), flush=True)
    save_rows(args.out, rows, append=False)
    if entries:
        write_section(args.docs, "ranking", _table(entries, command))
        print(f"table written to {args.docs}")


def _table(entries: list[dict], command: str) -> str:
    names = list(ranking.RANKINGS)
    lines = [f"Measured with `{command}` on {time.strftime('%Y-%m-%d')}: weighted Kendall tau of each ranking against "
             "the measured accuracy (each backbone's best strategy, one seed), with its 95 % bootstrap interval over "
             "the reported images. *All*: the three EfficientNet-Lite checkpoints and the random-weights control; "
             "*pretrained*: the three checkpoints only.", "",
             "| data | measured (best strategy) | " + " | ".join(f"{n} all | {n} pretrained" for n in names) + " |",
             "|---|---|" + "---|---|" * len(names)]
    totals: dict[str, list[float]] = {f"{n} {s}": [] for n in names for s in ("all", "pretrained")}
    for e in entries:
        every = _agreement(e, list(e["profiles"]))
        pre = _agreement(e, PRETRAINED)
        for n in names:
            for scope, block in (("all", every), ("pretrained", pre)):
                if block[n]["weighted_tau"] is not None:
                    totals[f"{n} {scope}"].append(block[n]["weighted_tau"])
        measured = ", ".join(f"{b.replace('efficientnet_', '')} {m[1]:.1%}" for b, m in e["measured"].items())
        lines.append(f"| {e['dataset']} | {measured} | "
                     + " | ".join(f"{_fmt(every[n])} | {_fmt(pre[n])}" for n in names) + " |")
    lines.append("| **mean** | | " + " | ".join(
        " | ".join(f"{np.mean(totals[f'{n} {s}']):+.2f}" if totals[f"{n} {s}"] else "-" for s in ("all", "pretrained"))
        for n in names) + " |")
    means = {n: np.mean(totals[f"{n} pretrained"]) for n in names if totals[f"{n} pretrained"]}
    if means:
        top = max(means, key=means.get)
        lines += ["", f"Among the pretrained checkpoints, the highest mean tau is **{top}** ({means[top]:+.2f}); "
                  + ", ".join(f"{n} {v:+.2f}" for n, v in means.items() if n != top) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
