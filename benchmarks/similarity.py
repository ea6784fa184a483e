"""Calibrate and check the similarity-to-ImageNet score on data near to and far from ImageNet.

Writes one row per (dataset, backbone) with every raw signal, its score and the combined
similarity to ``benchmarks/results/similarity.csv``.

    python benchmarks/similarity.py [--hymenoptera ../shared/data/hymenoptera] [--per-class 40]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

from advisor.demo import make_demo
from advisor.profile import ProfileConfig, profile

NEAR = ("hymenoptera", "photos")
FAR = ("microscopy", "digits", "shapes", "noise", "flat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hymenoptera", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hymenoptera"))
    parser.add_argument("--backbones", default="efficientnet_lite0")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "similarity.csv"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="advisor-sim-"))
    datasets = {}
    if Path(args.hymenoptera).is_dir():
        datasets["hymenoptera"] = Path(args.hymenoptera)
    for name in NEAR[1:] + FAR:
        datasets[name] = make_demo(tmp, name, per_class=args.per_class)

    rows = []
    config = ProfileConfig(per_class=args.per_class, cache_dir="")
    for name, root in datasets.items():
        result = profile(root, args.backbones.split(","), config=config)
        for bb in result.backbones:
            row = {"dataset": name, "group": "near" if name in NEAR else "far", "backbone": bb.name,
                   "n_sample": bb.n_sample, "similarity": round(bb.similarity, 4)}
            row.update({k: (round(v, 4) if v is not None else None) for k, v in bb.signals.items()})
            row.update({f"score_{k}": round(v, 4) for k, v in bb.signal_scores.items()})
            row.update({"linear_probe": round(bb.transferability.get("linear_probe", float("nan")), 4),
                        "pixel_linear_probe": round(bb.transferability.get("pixel_linear_probe", float("nan")), 4)})
            rows.append(row)
            print(row, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
