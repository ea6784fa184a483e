"""Is the bench a fair fight? The default protocol against annealed fixed budgets, LP-FT against
plain fine-tuning, and what the learning-rate probe buys.

For each dataset, on one backbone and seed, the bench runs under:

- ``auto``: the default (warm-up, hold, cool down on the plateau; learning-rate probe),
  with the advice of ``advisor recommend`` beside it;
- ``8`` and ``20``: fixed budgets of 8 and 20 epochs, warm-up then cosine to 0 (with the same
  learning-rate probe);
- ``auto-lpft``: fine-tuning from the linear probe's head (LP-FT) instead of a random one;
- ``auto-noprobe``: the networks at their default learning rate, never swept (the probe's control).

Every strategy is scored on the same reported images under every budget, so each comparison is
paired: a difference within its tolerance (the larger of the 2-point margin and the standard
error of the paired difference, :func:`advisor.bench.results.paired_noise`) is a tie.

Finished runs are kept in ``benchmarks/results/budget/<dataset>-<budget>.runs.jsonl`` (an
interrupted run resumes); rows go to ``benchmarks/results/budget.csv``; the tables, with this
command, to ``docs/benchmarks.md``.

    python benchmarks/budget.py [--data ../shared/data/hymenoptera ../shared/data/calibration/*]
        [--backbone efficientnet_lite0] [--threads 2] [--image-size 96] [--budgets auto,8,...]

Two processes may share the work (``--data`` split between them, one thread each): each
dataset's runs and files are its own. ``--tables-only`` rebuilds the tables from the results
files without training anything new (every run is found by its key).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from advisor.bench import BenchConfig, bench
from advisor.bench.results import paired_noise
from advisor.pipeline import run_bench
from advisor.profile import ProfileConfig
from common import save_rows, write_section

_SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
_RESULTS = Path(__file__).parent / "results"
_DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
NETWORKS = ("finetune", "scratch")


def _default_data() -> list[str]:
    found = [str(_SHARED / "hymenoptera")] + sorted(glob.glob(str(_SHARED / "calibration" / "*" / "train")))
    return [str(Path(p).parent) if p.endswith("train") else p for p in found if Path(p).is_dir()]


def _budgets(base: BenchConfig) -> dict[str, BenchConfig]:
    return {
        "auto": base,
        "8": replace(base, epochs=8),
        "20": replace(base, epochs=20),
        "auto-lpft": replace(base, strategies=("finetune",), lpft=True),
        "auto-noprobe": replace(base, strategies=NETWORKS, lr_probe=False),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _compare(a, b, margin: float) -> tuple[float, float, str]:
    """Paired gap a - b, its tolerance, and "a" / "b" / "tie"."""
    noise = paired_noise([a], [b])
    tol = max(margin, noise["se"]) if noise else margin
    gap = a.accuracy - b.accuracy
    return gap, tol, ("tie" if abs(gap) <= tol + 1e-9 else "a" if gap > 0 else "b")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", default=_default_data())
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--budgets", default="auto,8,20,auto-lpft,auto-noprobe")
    parser.add_argument("--out", default=str(_RESULTS / "budget.csv"))
    parser.add_argument("--docs", default=str(_DOCS))
    parser.add_argument("--tables-only", action="store_true", help="write the tables only (runs are read back)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    (_RESULTS / "budget").mkdir(parents=True, exist_ok=True)
    base = BenchConfig(image_size=args.image_size)
    wanted = args.budgets.split(",")
    rows, summaries = [], []
    for data in args.data:
        name = Path(data).name
        runs, wall, verdicts = {}, {}, {}
        advice = None
        for budget, config in _budgets(base).items():
            if budget not in wanted:
                continue
            results_file = _RESULTS / "budget" / f"{name}-{budget}.runs.jsonl"
            if args.tables_only and not results_file.exists():
                continue  # not measured: its cells stay empty
            start = time.perf_counter()
            if budget == "auto":
                job = run_bench(data, [args.backbone], config=config, profile_config=ProfileConfig(), out=None,
                                results_file=results_file)
                result = job.result
                advice = result["recommendation"]["strategy"]
                from advisor.bench import BenchResult

                result = BenchResult.from_dict(result)
            else:
                result = bench(data, [args.backbone], config=config, results_file=results_file)
            wall[budget] = time.perf_counter() - start
            runs[budget] = {r.strategy: r for r in result.runs if r.ok}
            verdicts[budget] = result.winner["verdict"]
            for r in result.runs:
                rows.append({
                    "dataset": name, "budget": budget, "strategy": r.strategy, "accuracy": r.accuracy,
                    "epochs_run": r.epochs_run, "best_epoch": r.best_epoch, "converged": r.converged,
                    "learned": r.learned, "lr_scale": r.recipe.get("lr_scale"),
                    "probe_epochs": r.details.get("probe_epochs"), "train_seconds": r.train_seconds,
                    "n_fit": r.details.get("n_fit"), "n_report": r.details.get("n_report"),
                    "images_per_class": r.details.get("images_per_class"), "verdict": result.winner["verdict"],
                    "advice": advice, "backbone": args.backbone, "image_size": args.image_size, "command": command,
                })
            print(f"{name} [{budget}] verdict {result.winner['verdict']} ({wall[budget]:.0f} s): "
                  + ", ".join(f"{s} {_pct(r.accuracy)} ({r.epochs_run} ep)" for s, r in runs[budget].items()),
                  flush=True)
        summaries.append({"dataset": name, "advice": advice, "runs": runs, "verdicts": verdicts})
        if not args.tables_only:
            save_rows(args.out, [r for r in rows if r["dataset"] == name])
    if args.tables_only:  # the table of every run read back replaces the file
        save_rows(args.out, rows, append=False)
    if (args.tables_only or set(wanted) >= set(_budgets(base))) and summaries:
        write_section(args.docs, "budget", _tables(summaries, base.margin, command))
        print(f"tables written to {args.docs}")


def _seconds(runs: dict, names) -> float:
    return sum(runs[s].train_seconds or 0.0 for s in names if s in runs)


def _tables(summaries: list[dict], margin: float, command: str) -> str:
    lines = [f"Measured with `{command}` on {time.strftime('%Y-%m-%d')} (efficientnet_lite0, one seed; "
             "accuracy on the reported split; a gap within its tolerance, the larger of the 2-point margin and the "
             "standard error of the paired difference over the reported images, is a tie; with one seed that "
             "error cannot see the run-to-run noise of training).", "",
             "### The default (`auto`) against annealed fixed budgets", "",
             "Fine-tuning starts from a random head (the default) under every budget; the LP-FT column is "
             "`--lpft` under `auto`.", "",
             "| data | fit/class | advice | freeze | LP-FT auto | fine-tune auto / 8 / 20 "
             "| scratch auto / 8 / 20 | verdict auto / 8 / 20 | auto vs the better fixed budget | time auto/8 |",
             "|---|---:|---|---:|---:|---|---|---|---|---:|"]
    worst = []
    for s in summaries:
        r = s["runs"]
        auto, plain, lpft = r.get("auto", {}), r.get("auto", {}), r.get("auto-lpft", {})
        checks = []
        for net in NETWORKS:
            fixed = [r[b][net] for b in ("8", "20") if net in r.get(b, {})]
            if net not in plain or not fixed:
                continue
            better = max(fixed, key=lambda x: x.accuracy)
            gap, tol, who = _compare(plain[net], better, margin)
            checks.append(f"{net}: {100 * gap:+.1f} (tol {100 * tol:.1f})" + (" **below**" if who == "b" else ""))
            worst.append((s["dataset"], net, gap, tol, who))
        ratio = (_seconds(plain, NETWORKS + ("freeze",)) / max(1e-9, _seconds(r["8"], NETWORKS + ("freeze",)))
                 if "8" in r else float("nan"))
        ipc = auto["freeze"].details.get("images_per_class") if "freeze" in auto else None
        cell = {b: r.get(b, {}) for b in ("8", "20")}
        cell["auto"] = plain
        lines.append(
            f"| {s['dataset']} | {ipc or 0:.0f} | {s['advice']} | {_pct(auto['freeze'].accuracy if 'freeze' in auto else None)} | "
            f"{_pct(lpft['finetune'].accuracy if 'finetune' in lpft else None)} | "
            + " / ".join(_pct(cell[b]["finetune"].accuracy) if "finetune" in cell[b] else "-" for b in ("auto", "8", "20"))
            + " | " + " / ".join(_pct(cell[b]["scratch"].accuracy) if "scratch" in cell[b] else "-"
                                 for b in ("auto", "8", "20")) + " | "
            + " / ".join(str(s["verdicts"].get(b)) for b in ("auto", "8", "20")) + " | "
            + "; ".join(checks) + f" | {ratio:.2f} |")
    below = [w for w in worst if w[4] == "b"]
    lines += ["", f"`auto` falls below the better fixed budget by more than the tolerance in {len(below)} of "
              f"{len(worst)} (dataset, strategy) pairs" + (": " + ", ".join(f"{d} {n}" for d, n, *_ in below) if below else "")
              + ". Time auto/8 counts every strategy's runs (scratch needs more than 8 epochs to leave chance).", "",
              "### LP-FT (fine-tuning from the linear probe's head) against plain fine-tuning, both under `auto`", "",
              "| data | LP-FT | plain | gap (tol) | winner | LP-FT epochs | plain epochs |", "|---|---:|---:|---|---|---:|---:|"]
    wins = {"a": 0, "b": 0, "tie": 0}
    for s in summaries:
        r = s["runs"]
        if "finetune" not in r.get("auto", {}) or "finetune" not in r.get("auto-lpft", {}):
            continue
        a, b = r["auto-lpft"]["finetune"], r["auto"]["finetune"]
        gap, tol, who = _compare(a, b, margin)
        wins[who] += 1
        lines.append(f"| {s['dataset']} | {_pct(a.accuracy)} | {_pct(b.accuracy)} | {100 * gap:+.1f} ({100 * tol:.1f}) | "
                     f"{ {'a': 'LP-FT', 'b': 'plain', 'tie': 'tie'}[who] } | {a.epochs_run} | {b.epochs_run} |")
    lines += ["", f"LP-FT wins {wins['a']}, plain fine-tuning wins {wins['b']}, ties {wins['tie']}.", "",
              "### What the learning-rate probe buys (`auto` against `auto` at the default learning rate)", "",
              "| data | strategy | probe | default lr | gap (tol) | chosen factor | time probe/default |",
              "|---|---|---:|---:|---|---:|---:|"]
    ratios = []
    for s in summaries:
        r = s["runs"]
        plain = r.get("auto", {})
        for net in NETWORKS:
            if net not in plain or net not in r.get("auto-noprobe", {}):
                continue
            a, b = plain[net], r["auto-noprobe"][net]
            gap, tol, _ = _compare(a, b, margin)
            ratio = (a.train_seconds or 0) / max(1e-9, b.train_seconds or 0)
            ratios.append(ratio)
            lines.append(f"| {s['dataset']} | {net} | {_pct(a.accuracy)} | {_pct(b.accuracy)} | {100 * gap:+.1f} "
                         f"({100 * tol:.1f}) | x{a.recipe.get('lr_scale'):g} | {ratio:.2f} |")
    if ratios:
        lines += ["", f"Median time ratio with the probe: {sorted(ratios)[len(ratios) // 2]:.2f}. Where the probe "
                  "chose x1, the default, the two runs differ only in their random streams: that gap is the "
                  "run-to-run noise of one seed."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
