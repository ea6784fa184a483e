"""Backbone rankings: the advisor's own, and the two simple baselines it is held against.

Transferability scores rank models on one dataset; recent benchmarks find that few beat a
static ranking by ImageNet top-1 accuracy, and that a k-NN probe on the embeddings does about
as well as any of them. So whenever several backbones are profiled, three rankings are
reported side by side, and after a bench each is scored against the measured accuracies
(weighted Kendall tau, with a bootstrap interval over the reported images):

- ``advisor``: the frozen probe's cross-validated accuracy on the profiled sample (LogME
  breaks ties), the ranking the advice uses;
- ``imagenet_top1``: the weights' published ImageNet top-1 accuracy, the same for every
  dataset (random weights count as chance, 0.1 %);
- ``knn_probe``: the k-NN accuracy on the frozen embeddings.

Torch-free: the scores are read from profiles (objects or their JSON form) and from a table
shipped with the package (``tables/imagenet_top1.csv``, its sources named in its rows).
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advisor import metrics

__all__ = ["CHANCE_TOP1", "RANKINGS", "TOP1_TABLE", "imagenet_top1", "ranking_agreement", "rankings"]

#: The rankings, in the order they are reported, and what each orders the backbones by.
RANKINGS: dict[str, str] = {
    "advisor": "frozen-probe accuracy on the profiled sample (LogME breaks ties)",
    "imagenet_top1": "published ImageNet top-1 accuracy of the weights (the same for every dataset)",
    "knn_probe": "k-NN accuracy on the frozen embeddings",
}
#: ImageNet top-1 of random weights: chance among 1,000 classes.
CHANCE_TOP1 = 0.001
#: The published top-1 figures: ``name,top1,source`` (top-1 as a fraction).
TOP1_TABLE = Path(__file__).with_name("tables") / "imagenet_top1.csv"


@functools.lru_cache(maxsize=1)
def _top1_table() -> dict[str, float]:
    if not TOP1_TABLE.is_file():
        return {}
    with TOP1_TABLE.open(newline="", encoding="utf-8") as f:
        return {row["name"]: float(row["top1"]) for row in csv.DictReader(f) if row.get("top1")}


def imagenet_top1(name: str, weights: str = "imagenet") -> float | None:
    """The published ImageNet top-1 accuracy of ``name``'s weights; ``None`` if unknown.

    Example:
        >>> imagenet_top1("resnet18", weights="random")
        0.001
    """
    if weights != "imagenet":
        return CHANCE_TOP1
    table = _top1_table()
    return table.get(name, table.get(name.removeprefix("timm/")))


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _scores(backbone: Any) -> dict[str, tuple[float, ...] | None]:
    """One backbone's sort key under each ranking (``None`` where it has no score)."""
    t = _get(backbone, "transferability") or {}
    probe, logme, knn = (_finite(t.get(k)) for k in ("linear_probe", "logme", "knn_probe"))
    top1 = imagenet_top1(_get(backbone, "name"), _get(backbone, "weights", "imagenet"))
    return {
        "advisor": None if probe is None else (probe, -math.inf if logme is None else logme),
        "imagenet_top1": None if top1 is None else (top1,),
        "knn_probe": None if knn is None else (knn,),
    }


def rankings(backbones: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """The three rankings of profiled backbones, best first.

    Args:
        backbones: :class:`~advisor.types.BackboneProfile` objects or their ``to_dict()``.

    Returns:
        ``{ranking: {"basis", "order": [{"backbone", "score"}, ...], "unscored": [names]}}``:
        backbones without a score under a ranking are listed apart, never guessed.

    Example:
        >>> bbs = [{"name": "a", "weights": "random", "transferability": {"linear_probe": 0.9, "knn_probe": 0.7}},
        ...        {"name": "b", "weights": "random", "transferability": {"linear_probe": 0.8, "knn_probe": 0.8}}]
        >>> [r["backbone"] for r in rankings(bbs)["knn_probe"]["order"]]
        ['b', 'a']
    """
    keyed = [(_get(b, "name"), _scores(b)) for b in backbones]
    out = {}
    for ranking, basis in RANKINGS.items():
        scored = sorted(((k[ranking], n) for n, k in keyed if k[ranking] is not None), key=lambda x: x[0],
                        reverse=True)
        out[ranking] = {
            "basis": basis,
            "order": [{"backbone": n, "score": key[0]} for key, n in scored],
            "unscored": [n for n, k in keyed if k[ranking] is None],
        }
    return out


def ranking_agreement(ranked: Mapping[str, Mapping[str, Any]], measured: Mapping[str, Sequence[np.ndarray]], *,
                      n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Each ranking's weighted Kendall tau against the measured accuracies, with a 95 % interval.

    Args:
        ranked: :func:`rankings`' result.
        measured: Backbone -> per seed, the per-image record of its measured strategy on the
            reported images (every backbone scored on the same images under a seed).
        n_boot: Bootstrap resamples of images and seeds, shared by every ranking.
        seed: Seed of the bootstrap.

    Returns:
        Per ranking: ``{"ranking", "basis", "n_backbones", "weighted_tau", "low", "high"}``
        over the backbones it scores that were measured (tau ``None`` below two).
    """
    rows = []
    for name, block in ranked.items():
        order = [r for r in block["order"] if r["backbone"] in measured]
        row = {"ranking": name, "basis": block["basis"], "n_backbones": len(order),
               "weighted_tau": None, "low": None, "high": None}
        if len(order) >= 2:
            scores = np.array([r["score"] for r in order], dtype=float)
            tau, low, high = metrics.weighted_tau_interval(scores, [measured[r["backbone"]] for r in order],
                                                            n_boot=n_boot, seed=seed)
            row.update(weighted_tau=_finite(tau), low=low, high=high)
        rows.append(row)
    return rows
