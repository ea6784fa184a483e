"""Calibrate and check the similarity-to-ImageNet score on data near to and far from ImageNet.

Writes one row per (dataset, backbone) with every raw signal, its score and the combined
similarity to ``benchmarks/results/similarity.csv``.

    python benchmarks/similarity.py [--hymenoptera ../shared/data/hymenoptera]
        [--calibration ../shared/data/calibration] [--per-class 40] [--backbones a,b]

The calibration folder's six real datasets (its README gives sources) join the embedded ones:
cifar10 and flowers are near ImageNet, potato_leaf in between, bccd_cells, omniglot_alphabets
and magnetic_tile far from it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from advisor.demo import make_demo
from advisor.profile import ProfileConfig, profile
from common import save_rows

NEAR = ("hymenoptera", "photos", "cifar10", "flowers")
MEDIUM = ("potato_leaf",)
FAR = ("microscopy", "digits", "shapes", "noise", "flat", "bccd_cells", "omniglot_alphabets", "magnetic_tile")
EMBEDDED = ("photos", "microscopy", "digits", "shapes", "noise", "flat")
_SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hymenoptera", default=str(_SHARED / "hymenoptera"))
    parser.add_argument("--calibration", default=str(_SHARED / "calibration"))
    parser.add_argument("--backbones", default="efficientnet_lite0")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "similarity.csv"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="advisor-sim-"))
    datasets = {}
    if Path(args.hymenoptera).is_dir():
        datasets["hymenoptera"] = Path(args.hymenoptera)
    for name in MEDIUM + NEAR + FAR:
        if name in EMBEDDED:
            datasets[name] = make_demo(tmp, name, per_class=args.per_class)
        elif (Path(args.calibration) / name).is_dir():
            datasets[name] = Path(args.calibration) / name

    rows = []
    config = ProfileConfig(per_class=args.per_class, cache_dir="")
    for name, root in datasets.items():
        result = profile(root, args.backbones.split(","), config=config)
        for bb in result.backbones:
            group = "near" if name in NEAR else "medium" if name in MEDIUM else "far"
            row = {"dataset": name, "group": group, "backbone": bb.name,
                   "n_sample": bb.n_sample, "similarity": round(bb.similarity, 4)}
            row.update({k: (round(v, 4) if v is not None else None) for k, v in bb.signals.items()})
            row.update({f"score_{k}": round(v, 4) for k, v in bb.signal_scores.items()})
            row.update({"linear_probe": round(bb.transferability.get("linear_probe", float("nan")), 4),
                        "pixel_linear_probe": round(bb.transferability.get("pixel_linear_probe", float("nan")), 4)})
            rows.append(row)
            print(row, flush=True)
    print(f"wrote {save_rows(args.out, rows, append=False)}")


if __name__ == "__main__":
    main()
