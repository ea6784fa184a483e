"""Is the demo's answer stable? ``advisor demo``'s advice and bench, over several seeds.

Runs what ``advisor demo`` runs (the embedded digits, 40 per class; efficientnet_lite0; the bench at
112 px, at most 20 epochs), once per seed, and writes the range of what it measured into the
README (between the ``demo-numbers`` markers): the advice, the verdict in how many seeds, and
each strategy's accuracy range. Finished runs are kept in ``<work>/demo-seeds.runs.jsonl``.

    python benchmarks/demo_seeds.py [--seeds 0,1,2] [--work /tmp/advisor-demo] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from advisor.bench import BenchConfig, BenchResult
from advisor.demo import DEMO_BENCH, make_demo
from advisor.pipeline import run_bench
from advisor.profile import ProfileConfig
from common import save_rows, write_section

_ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--work", default="/tmp/advisor-demo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--readme", default=str(_ROOT / "README.md"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "demo_seeds.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    root = make_demo(Path(args.work), "digits", per_class=args.per_class)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        config = BenchConfig(seeds=(seed,), **DEMO_BENCH)
        start = time.perf_counter()
        job = run_bench(root, ["efficientnet_lite0"], config=config, profile_config=ProfileConfig(per_class=args.per_class),
                        out=None, results_file=Path(args.work) / "demo-seeds.runs.jsonl")
        result = BenchResult.from_dict(job.result)
        accs = {r.strategy: r.accuracy for r in result.runs if r.ok}
        rows.append({"seed": seed, "advice": result.recommendation["strategy"], "verdict": result.winner["verdict"],
                     "agreement": result.agreement, **{f"{s}_accuracy": a for s, a in accs.items()},
                     "seconds": time.perf_counter() - start, "command": command})
        print(f"seed {seed}: advice {rows[-1]['advice']}, verdict {rows[-1]['verdict']}, "
              + ", ".join(f"{s} {100 * a:.1f}" for s, a in accs.items()), flush=True)
    save_rows(args.out, rows, append=False)  # the latest measurement, whole
    verdicts = [r["verdict"] for r in rows]
    common = max(set(verdicts), key=verdicts.count)
    advice = sorted({r["advice"] for r in rows})

    def span(strategy: str) -> str:
        values = [100 * r[f"{strategy}_accuracy"] for r in rows if r.get(f"{strategy}_accuracy") is not None]
        return "-" if not values else f"{min(values):.1f}" + ("" if max(values) == min(values) else f"-{max(values):.1f}")

    text = (f"Measured over seeds {args.seeds} with `{command}` ({time.strftime('%Y-%m-%d')}, 2 CPU cores): "
            f"advice **{' / '.join(advice)}**; verdict **{common}** in {verdicts.count(common)} of {len(rows)} seeds; "
            f"freeze {span('freeze')} %, fine-tune {span('finetune')} %, scratch {span('scratch')} %; advice and "
            f"bench agree in {sum(1 for r in rows if r['agreement'])} of {len(rows)}.")
    write_section(args.readme, "demo-numbers", text)
    print(text)


if __name__ == "__main__":
    main()
