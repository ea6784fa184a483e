"""Learning curves: how accuracy grows with images per class, and where two curves cross.

The benchmark measures each training strategy on nested subsets of the training data (1/8,
1/4, 1/2 and all of it by default; possibly over several seeds); the profiler measures a frozen
linear probe at four or more sample sizes. This module turns such measurements into:

* a fitted saturating power law for the error, ``err(n) = a * n**(-b) + c``
  (:func:`fit_learning_curve` -> :class:`CurveFit`), with a bootstrap band: over the reported
  images, paired across strategies, when the runs carry their per-image records; else over the
  runs with a binomial noise floor;
* predicted accuracy at 2x and 4x the largest measured size (:func:`predict`); never beyond
  :data:`MAX_FACTOR` times that size, where the answer is the :data:`BEYOND_RANGE` marker;
  never from a fit that nothing tests or that sits on a parameter bound (:data:`WITHHELD`,
  with the reason in :attr:`CurveFit.reason`);
* a holdout check (fit without the largest size, predict it) that says how far to trust it;
* crossing points between curves, in images per class (:func:`crossing`): where fine-tuning
  overtakes freezing, or where training from scratch catches up with the pretrained weights,
  judged by the same tolerance as the benchmark's verdict;
* the benchmark's ``data_size`` JSON block (:func:`curves_from_runs`) and one sentence per
  crossing for the verdict (:func:`crossing_sentence`).

Pure numpy/scipy: no torch, no global random state (every bootstrap takes a seed).
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from advisor.protocol import EPS as _EPS

__all__ = [
    "MAX_FACTOR",
    "BEYOND_RANGE",
    "WITHHELD",
    "KINDS",
    "PowerLaw",
    "Prediction",
    "CurveFit",
    "Crossing",
    "fit_learning_curve",
    "predict",
    "crossing",
    "curves_from_runs",
    "crossing_sentence",
]

MAX_FACTOR = 4.0
"""Predictions and crossings go at most this many times past the largest measured size."""

BEYOND_RANGE = "beyond_range"
"""Status of a prediction or crossing further than :data:`MAX_FACTOR` x the data."""

WITHHELD = "withheld"
"""Status of a curve, prediction or crossing that the fit cannot support (see :attr:`CurveFit.reason`)."""

KINDS = ("finetune_beats_freeze", "scratch_catches_pretrained")
"""The crossings :func:`crossing` knows."""

# A beats B by the margin (+), or A comes within the margin of B (-).
_MARGIN_SIGN = {"finetune_beats_freeze": 1.0, "scratch_catches_pretrained": -1.0}

# The exponent's search range. Measured learning-curve exponents sit around 0.05-1 (Hestness
# et al. 2017, "Deep learning scaling is predictable, empirically"); the range is wider so that
# the bound only bites on degenerate data (a flat or falling curve), never on a real one.
_B_MIN, _B_MAX = 0.01, 4.0
_B_GRID = np.geomspace(_B_MIN, _B_MAX, 121)
_GOLDEN_STEPS = 40  # shrinks the bracket by 0.618**40 ~ 4e-9: far below any meaningful b
# A fitted b this close to a bound (in log units) sits on it: a fit that would go further ends
# at the bracket's edge, to within the golden section's last step.
_AT_BOUND = 1e-3
# c < 1 strictly: an error floor of 1 would be a classifier that never gets anything right.
_C_MAX = 1.0 - 1e-9
# Noise floor of a mean accuracy when the validation-set size is unknown: one accuracy point,
# the binomial standard error of ~900 validation images at 90 % accuracy.
_DEFAULT_STD_FLOOR = 0.01
_CROSS_GRID = 401  # log-spaced sizes in [n_ref, 4 n_ref]: steps of 0.35 %


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PowerLaw:
    """``err(n) = a * n**(-b) + c`` with ``a >= 0``, ``b > 0``, ``0 <= c < 1``.

    Attributes:
        a: Scale of the reducible error.
        b: Exponent: how fast the reducible error shrinks with more images per class.
        c: Irreducible error: the accuracy can never exceed ``1 - c``.

    Example:
        >>> law = PowerLaw(a=1.0, b=0.5, c=0.05)
        >>> round(law.accuracy(100.0), 3)
        0.85
    """

    a: float
    b: float
    c: float

    def error(self, n: float | np.ndarray) -> float | np.ndarray:
        """Error at ``n`` images per class."""
        return self.c + self.a * np.power(np.asarray(n, dtype=np.float64), -self.b)

    def accuracy(self, n: float | np.ndarray) -> float | np.ndarray:
        """Accuracy (``1 - err``, at least 0) at ``n`` images per class."""
        acc = np.clip(1.0 - self.error(n), 0.0, 1.0)
        return float(acc) if np.ndim(acc) == 0 else acc

    def to_dict(self) -> dict[str, float]:
        return {"a": float(self.a), "b": float(self.b), "c": float(self.c)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PowerLaw":
        return cls(a=float(d["a"]), b=float(d["b"]), c=float(d["c"]))


@dataclass(frozen=True)
class Prediction:
    """Predicted accuracy at one size, with its bootstrap band.

    Attributes:
        images_per_class: Where the prediction is made.
        accuracy: Predicted accuracy, or ``None`` unless ``status`` is ``"predicted"``.
        low: Lower end of the band (``None`` without an accuracy or without a bootstrap).
        high: Upper end of the band (``None`` without an accuracy or without a bootstrap).
        status: ``"predicted"``, :data:`BEYOND_RANGE`, or :data:`WITHHELD` (the curve's fit
            cannot support a prediction: :attr:`CurveFit.reason` says why).
    """

    images_per_class: float
    accuracy: float | None
    low: float | None
    high: float | None
    status: str = "predicted"

    def to_dict(self) -> dict[str, Any]:
        return {"images_per_class": _plain(self.images_per_class), "accuracy": self.accuracy,
                "low": self.low, "high": self.high, "status": self.status}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Prediction":
        # Documents from before the status was written: no accuracy meant beyond range.
        status = d.get("status") or ("predicted" if d["accuracy"] is not None else BEYOND_RANGE)
        return cls(d["images_per_class"], d["accuracy"], d["low"], d["high"], status)


@dataclass(frozen=True)
class CurveFit:
    """One learning curve: measured points, fitted law, predictions, holdout check.

    Attributes:
        backbone: Backbone name (``None`` when not given).
        strategy: Strategy name (``None`` when not given).
        points: One dict per measured size, ascending: ``images_per_class``, ``accuracy``
            (mean over runs), ``std`` (sample std over runs, 0 with one run) and ``n_runs``.
        law: The fitted :class:`PowerLaw`, or ``None`` with fewer than 3 distinct sizes
            above chance.
        predicted: :class:`Prediction` at 2x and 4x the largest measured size (empty without
            a fit; :data:`WITHHELD` when ``status`` is).
        holdout: ``{images_per_class, predicted, measured, error}``: the law fitted without
            the largest size, evaluated there (``error`` in accuracy units), or ``None``.
        level: Coverage of the bands (0.9: from the 5th to the 95th bootstrap percentile).
        bootstrap: ``(n_boot, 3)`` array of bootstrap ``(a, b, c)``; what bands and crossing
            bands are computed from. Left out of :meth:`to_dict` unless asked for. Row ``r`` of
            two curves comes from the same resample of the reported images when both have
            ``bootstrap_method == "paired_images"``.
        bootstrap_method: ``"parametric"`` (resampled runs plus binomial noise, each curve on
            its own stream), ``"replicates"`` (fitted to the caller's replicates), which
            :func:`curves_from_runs` names ``"paired_images"`` (resampled reported images, one
            resample for every curve), or ``None`` without a bootstrap.

    The verdict on the fit (:attr:`status`, :attr:`reason`, :attr:`at_bound`, :attr:`dof`)
    follows from the points and the law, so a document read back judges it the same way.
    """

    backbone: str | None
    strategy: str | None
    points: tuple[dict[str, Any], ...]
    law: PowerLaw | None
    predicted: tuple[Prediction, ...]
    holdout: dict[str, Any] | None
    level: float = 0.9
    bootstrap: np.ndarray = field(default_factory=lambda: np.empty((0, 3)), repr=False, compare=False)
    bootstrap_method: str | None = None

    @property
    def max_images_per_class(self) -> float:
        """The largest measured size: predictions go up to :data:`MAX_FACTOR` times it."""
        return float(self.points[-1]["images_per_class"])

    @property
    def n_fitted(self) -> int:
        """How many sizes the law was fitted to (the measured ones not at chance)."""
        return sum(1 for p in self.points if not p.get("at_chance"))

    @property
    def dof(self) -> int | None:
        """Degrees of freedom left to test the law: fitted sizes minus its 3 parameters."""
        return None if self.law is None else self.n_fitted - 3

    @property
    def at_bound(self) -> str | None:
        """``"b"`` or ``"c"`` when that parameter sits on its search bound, else ``None``.

        ``b`` at :data:`_B_MAX` is a step: all the reducible error vanishes between two measured
        sizes and the law is flat beyond them. ``b`` at :data:`_B_MIN` never saturates. ``c`` at
        its upper bound is an error floor of 1. In each case the bound, not the data, chose the
        shape, so the law says nothing about larger sizes. Not flagged: ``c = 0`` (no error
        floor, an ordinary power law) and ``a = 0`` (a flat curve, whatever ``b``).
        """
        if self.law is None or self.law.a <= 0.0:
            return None  # a flat law (no reducible error) leaves b free: no bound chose anything
        log_b = math.log(self.law.b)
        if min(abs(log_b - math.log(_B_MAX)), abs(log_b - math.log(_B_MIN))) < _AT_BOUND:
            return "b"
        if self.law.c >= _C_MAX - 1e-6:
            return "c"
        return None

    @property
    def status(self) -> str:
        """``"fitted"``, :data:`WITHHELD` (a law that cannot support predictions), or ``"unfitted"``."""
        if self.law is None:
            return "unfitted"
        return WITHHELD if self.dof <= 0 or self.at_bound else "fitted"

    @property
    def reason(self) -> str | None:
        """Why there are no predictions, in words; ``None`` when there are."""
        if self.law is None:
            distinct = len(self.points)
            if distinct < 3:
                return f"{distinct} size{'s' if distinct != 1 else ''} measured: a law needs 3 or more"
            return f"{self.n_fitted} of {distinct} sizes above chance: a law needs 3 or more"
        reasons = []
        if self.dof <= 0:
            reasons.append("3 sizes for 3 parameters leave nothing to test the law (4 or more sizes would)")
        bound = self.at_bound
        if bound == "b" and self.law.b > 1.0:
            reasons.append(f"exponent at its bound b = {_B_MAX:g}, a step rather than a trend")
        elif bound == "b":
            reasons.append(f"exponent at its bound b = {_B_MIN:g}, a curve with no saturation in sight")
        elif bound == "c":
            reasons.append("error floor at its bound c = 1")
        return ", and ".join(reasons) or None

    def to_dict(self, *, bootstrap: bool = False) -> dict[str, Any]:
        """The JSON contract; ``bootstrap=True`` adds ``level`` and ``bootstrap`` so that
        :meth:`from_dict` restores bands and crossings exactly."""
        d: dict[str, Any] = {
            "backbone": self.backbone,
            "strategy": self.strategy,
            "points": [dict(p) for p in self.points],
            "fit": self.law.to_dict() if self.law is not None else None,
            "status": self.status,
            "reason": self.reason,
            "at_bound": self.at_bound,
            "dof": self.dof,
            "predicted": [p.to_dict() for p in self.predicted],
            "holdout": dict(self.holdout) if self.holdout is not None else None,
            "bootstrap_method": self.bootstrap_method,
        }
        if bootstrap:
            d["level"] = float(self.level)
            d["bootstrap"] = [[float(v) for v in row] for row in self.bootstrap]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CurveFit":
        boot = np.asarray(d.get("bootstrap", []), dtype=np.float64).reshape(-1, 3)
        return cls(
            backbone=d["backbone"],
            strategy=d["strategy"],
            points=tuple(dict(p) for p in d["points"]),
            law=PowerLaw.from_dict(d["fit"]) if d["fit"] is not None else None,
            predicted=tuple(Prediction.from_dict(p) for p in d["predicted"]),
            holdout=dict(d["holdout"]) if d["holdout"] is not None else None,
            level=float(d.get("level", 0.9)),
            bootstrap=boot,
            bootstrap_method=d.get("bootstrap_method"),
        )


@dataclass(frozen=True)
class Crossing:
    """Where one curve overtakes another (or others) by a margin, in images per class.

    Attributes:
        backbone: Backbone of the curves.
        kind: One of :data:`KINDS`.
        images_per_class: Where it happens, for ``"ahead"``; for ``"crossed"``, the smallest
            measured size from which it holds at every larger measured size; for
            ``"borderline"``, the largest measured size; else ``None``.
        low: Lower end of the band (``"ahead"`` only).
        high: Upper end of the band (``"ahead"`` only; ``None`` when the band's upper end lies
            beyond :data:`MAX_FACTOR` x the data).
        status: ``"crossed"`` (true of the measured accuracies at the largest size),
            ``"borderline"`` (the fitted laws say it holds there, the measured accuracies do
            not), ``"ahead"`` (within :data:`MAX_FACTOR` x of it), :data:`BEYOND_RANGE`, or
            :data:`WITHHELD` (a curve's fit cannot support a prediction: ``reason``).
        margin: The gap that counts, as a fraction (0.02 = 2 accuracy points): in the
            benchmark, the verdict's tolerance for this backbone.
        reason: Why a :data:`WITHHELD` crossing is not predicted, else ``None``.
    """

    backbone: str | None
    kind: str
    images_per_class: int | None
    low: int | None
    high: int | None
    status: str
    margin: float
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "kind": self.kind, "images_per_class": self.images_per_class,
                "low": self.low, "high": self.high, "status": self.status, "margin": float(self.margin),
                "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Crossing":
        return cls(d["backbone"], d["kind"], d["images_per_class"], d["low"], d["high"], d["status"],
                   float(d["margin"]), d.get("reason"))


# ----------------------------------------------------------------------------- fitting


def _plain(x: float) -> int | float:
    """A size as JSON likes it: an int when it is whole (25, not 25.0)."""
    x = float(x)
    return int(x) if x.is_integer() else x


def _solve_cd(x: np.ndarray, y: np.ndarray, w: np.ndarray, c_max: float) -> tuple[np.ndarray, ...]:
    """Weighted least squares of ``y ~ c + d * x`` over the box ``0 <= c <= c_max``, ``d >= 0``.

    All arrays broadcast to ``(..., m)`` with ``m`` points on the last axis; returns ``c``,
    ``d`` and the cost, each of shape ``(...)``. The problem is a convex quadratic in two
    variables, so its minimum over the box is the unconstrained one if feasible, else the best
    of the edge minimisers; evaluating the four candidates is exact and vectorises.
    """
    sw, sx, sxx = w.sum(-1), (w * x).sum(-1), (w * x * x).sum(-1)
    sy, sxy = (w * y).sum(-1), (w * x * y).sum(-1)
    sw, sy = np.broadcast_to(sw, sxx.shape), np.broadcast_to(sy, sxx.shape)
    det = sw * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        c_int = (sxx * sy - sx * sxy) / det
        d_int = (sw * sxy - sx * sy) / det
        sxx_safe = np.where(sxx > 0, sxx, 1.0)
        candidates = [
            (c_int, d_int),
            (np.zeros_like(sxx), np.maximum(sxy / sxx_safe, 0.0)),
            (np.full_like(sxx, c_max), np.maximum((sxy - c_max * sx) / sxx_safe, 0.0)),
            (np.clip(sy / sw, 0.0, c_max), np.zeros_like(sxx)),
        ]
    best_c = best_d = best_cost = None
    for k, (c, d) in enumerate(candidates):
        cost = (w * (y - c[..., None] - d[..., None] * x) ** 2).sum(-1)
        if k == 0:
            feasible = (det > 1e-12 * sw * sxx) & (c >= 0) & (c <= c_max) & (d >= 0)
            cost = np.where(feasible & np.isfinite(cost), cost, np.inf)
            c, d = np.where(feasible, c, 0.0), np.where(feasible, d, 0.0)
            best_c, best_d, best_cost = c, d, cost
        else:
            better = cost < best_cost
            best_c, best_d = np.where(better, c, best_c), np.where(better, d, best_d)
            best_cost = np.where(better, cost, best_cost)
    return best_c, best_d, best_cost


def _fit_many(n: np.ndarray, err: np.ndarray, w: np.ndarray, *, c_max: float = _C_MAX) -> np.ndarray:
    """Fit ``err ~ c + a * n**-b`` to each row of ``err`` (``(r, m)``); returns ``(r, 3)`` of a, b, c.

    Variable projection: for a fixed exponent the law is linear in ``(c, d)`` with
    ``d = a * n_ref**-b``, solved exactly by :func:`_solve_cd`; only ``b`` is searched, on a
    log grid and then by golden section inside the best grid cell, vectorised over rows.
    Why not ``curve_fit`` on ``(a, b, c)``: with 3-5 points the three parameters trade off
    against each other (a larger ``b`` with a larger ``a``), so a local optimiser's answer
    depends on its starting point, and ``a`` spans orders of magnitude. Here the residuals stay
    in accuracy units, where the weights (``1 / std**2``) live, the search over ``b`` is global
    on the grid, and the answer is the same for the same data every time.
    """
    n_ref = math.exp(float(np.mean(np.log(n))))  # makes d the excess error at a typical size
    log_ratio = np.log(n / n_ref)

    def profile(b: np.ndarray) -> tuple[np.ndarray, ...]:
        # b: (r, k) candidate exponents per row -> c, d, cost of shape (r, k)
        x = np.exp(-b[..., None] * log_ratio)
        return _solve_cd(x, err[:, None, :], w[:, None, :], c_max)

    rows = err.shape[0]
    grid = np.broadcast_to(np.log(_B_GRID), (rows, _B_GRID.size))
    cost = profile(np.exp(grid))[2]
    k = np.argmin(cost, axis=1)
    lo = np.log(_B_GRID)[np.maximum(k - 1, 0)]
    hi = np.log(_B_GRID)[np.minimum(k + 1, _B_GRID.size - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(_GOLDEN_STEPS):
        x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        f1 = profile(np.exp(np.stack([x1, x2], axis=1)))[2]
        left = f1[:, 0] <= f1[:, 1]
        hi, lo = np.where(left, x2, hi), np.where(left, lo, x1)
    log_b = (lo + hi) / 2.0
    # The grid point can beat the refined one when the profile is flat or kinked: keep the best.
    refined = profile(np.exp(log_b)[:, None])
    on_grid = profile(np.exp(np.log(_B_GRID)[k])[:, None])
    use_grid = on_grid[2][:, 0] < refined[2][:, 0]
    log_b = np.where(use_grid, np.log(_B_GRID)[k], log_b)
    c = np.where(use_grid, on_grid[0][:, 0], refined[0][:, 0])
    d = np.where(use_grid, on_grid[1][:, 0], refined[1][:, 0])
    b = np.exp(log_b)
    return np.stack([d * n_ref**b, b, c], axis=1)


def _std_floor(accuracy: np.ndarray, n_val: int | None) -> np.ndarray:
    """Smallest credible standard error of a mean accuracy.

    With ``n_val`` validation images, the binomial standard error ``sqrt(p (1 - p) / n_val)``
    (``p`` kept half an image away from 0 and 1 so that a perfect score still has some noise).
    It is not divided by the number of runs: every run is scored on the same validation set,
    so that part of the noise does not average out over seeds.
    """
    if n_val is None:
        return np.full_like(accuracy, _DEFAULT_STD_FLOOR)
    p = np.clip(accuracy, 0.5 / n_val, 1.0 - 0.5 / n_val)
    return np.sqrt(p * (1.0 - p) / n_val)


def _validate(sizes: Any, accuracies: Any, std: Any, n_runs: Any) -> tuple[np.ndarray, ...]:
    n = np.asarray(sizes, dtype=np.float64)
    acc = np.asarray(accuracies, dtype=np.float64)
    if n.ndim != 1 or acc.ndim != 1 or n.size != acc.size or n.size == 0:
        raise ValueError(f"sizes and accuracies must be non-empty 1-d arrays of one length, got "
                         f"shapes {n.shape} and {acc.shape}")
    if not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError(f"sizes must be positive images per class, got {n.tolist()}")
    if not np.all(np.isfinite(acc)) or np.any(acc < 0) or np.any(acc > 1):
        raise ValueError(f"accuracies must lie in [0, 1], got {acc.tolist()}")
    if (std is None) != (n_runs is None):
        raise ValueError("give std and n_runs together (per-point summaries), or neither (one accuracy per run)")
    if std is None:
        return n, acc, None, None
    s = np.asarray(std, dtype=np.float64)
    r = np.asarray(n_runs)
    if s.shape != n.shape or r.shape != n.shape:
        raise ValueError(f"std and n_runs need one entry per size, got shapes {s.shape} and {r.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"std must be finite and non-negative, got {s.tolist()}")
    if np.any(r < 1) or not np.all(r == np.round(r)):
        raise ValueError(f"n_runs must be positive integers, got {r.tolist()}")
    if np.unique(n).size != n.size:
        raise ValueError("with std and n_runs, each size is one summarised point: sizes must be distinct")
    return n, acc, s, r.astype(int)


def _summarise(n: np.ndarray, acc: np.ndarray, std: np.ndarray | None,
               n_runs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    """Per distinct size, ascending: mean, sample std, run count and the runs themselves."""
    if std is not None:
        order = np.argsort(n)
        return n[order], acc[order], std[order], n_runs[order], [None] * n.size
    sizes = np.unique(n)
    runs = [acc[n == s] for s in sizes]
    means = np.array([r.mean() for r in runs])
    stds = np.array([r.std(ddof=1) if r.size > 1 else 0.0 for r in runs])
    counts = np.array([r.size for r in runs])
    return sizes, means, stds, counts, runs


def _misfit(sizes: np.ndarray, means: np.ndarray, sigma: np.ndarray, law: PowerLaw) -> float:
    """How much wider the noise must be to cover the law's misfit: the square root of the
    reduced chi-square when above 1 (it needs 4+ sizes), else 1."""
    m = sizes.size
    resid = ((means - law.accuracy(sizes)) / sigma) ** 2
    return math.sqrt(max(1.0, float(resid.sum()) / (m - 3))) if m > 3 else 1.0


def _bootstrap(sizes: np.ndarray, means: np.ndarray, sigma: np.ndarray, se_runs: np.ndarray,
               runs: list, law: PowerLaw, n_boot: int, seed: int | Sequence[int]) -> np.ndarray:
    """Bootstrap replicates of the fitted ``(a, b, c)``.

    Each size's mean is redrawn with spread ``sigma`` (the noise used in the weights): where a
    size has several runs, by resampling its runs (their scatter is the seed-to-seed noise),
    topped up with Gaussian noise to ``sigma`` when the runs agree more closely than the floor;
    a single run (or a summarised point) gets Gaussian noise of ``sigma``. Residual resampling
    is not used: with 3-5 points a 3-parameter law leaves residuals near zero and the band
    would be falsely narrow. If the law misfits (reduced chi-square above 1, needs 4+ sizes),
    ``sigma`` is inflated by its square root so that the band also covers the misfit.
    """
    rng = np.random.default_rng(seed)
    m = sizes.size
    sigma_eff = sigma * _misfit(sizes, means, sigma, law)
    draws = np.empty((n_boot, m))
    resampled_var = np.zeros(m)
    for i, r in enumerate(runs):
        if r is not None and r.size > 1:
            draws[:, i] = r[rng.integers(0, r.size, size=(n_boot, r.size))].mean(axis=1)
            # The variance a resampled mean of k runs has: (k - 1) / k of the squared standard error.
            resampled_var[i] = se_runs[i] ** 2 * (r.size - 1) / r.size
        else:
            draws[:, i] = means[i]
    top_up = np.sqrt(np.maximum(sigma_eff**2 - resampled_var, 0.0))
    draws += top_up * rng.standard_normal((n_boot, m))
    draws = np.clip(draws, 0.0, 1.0)
    return _fit_many(sizes, 1.0 - draws, np.broadcast_to(1.0 / sigma**2, draws.shape))


def _band(fit: CurveFit, n: float, accuracy: float) -> tuple[float | None, float | None]:
    if fit.bootstrap.shape[0] == 0:
        return None, None
    a, b, c = fit.bootstrap.T
    accs = np.clip(1.0 - (c + a * n ** (-b)), 0.0, 1.0)
    tail = 100.0 * (1.0 - fit.level) / 2.0
    low, high = np.percentile(accs, [tail, 100.0 - tail])
    # The band always contains the point estimate, even when the bootstrap is skewed past it.
    return float(min(low, accuracy)), float(max(high, accuracy))


def fit_learning_curve(
    sizes: Sequence[float] | np.ndarray,
    accuracies: Sequence[float] | np.ndarray,
    *,
    std: Sequence[float] | np.ndarray | None = None,
    n_runs: Sequence[int] | np.ndarray | None = None,
    n_val: int | None = None,
    backbone: str | None = None,
    strategy: str | None = None,
    n_boot: int = 200,
    level: float = 0.9,
    seed: int | Sequence[int] = 0,
    chance: float | None = None,
    replicates: np.ndarray | None = None,
) -> CurveFit:
    """Fit ``err(n) = a * n**(-b) + c`` to accuracies measured at several images per class.

    Each size's mean accuracy is fitted with weight ``1 / sigma**2``, where ``sigma`` is the
    standard error over runs (``std / sqrt(n_runs)``) but never below a floor: the binomial
    standard error of the validation set when ``n_val`` is given, else one accuracy point. So a
    single seed (std 0) does not get an infinite weight. The band comes from a seeded bootstrap
    (see :func:`_bootstrap`), or from the caller's ``replicates``: the same input and seed give
    the same output.

    A fit is :data:`WITHHELD` (no predictions; :attr:`CurveFit.reason` says why) when nothing
    tests it, with exactly 3 fitted sizes for its 3 parameters, or when a parameter sits on its
    bound (:attr:`CurveFit.at_bound`). Its law, points and holdout are still reported.

    With fewer than 3 distinct sizes there is no fit (``law is None``, no predictions, no
    holdout). The holdout refits without the largest size and predicts it: with 3+ sizes left
    it uses the full law; with exactly 2 left (3 sizes in all) three parameters cannot be
    fitted to 2 points, so it uses the 2-parameter power law ``a * n**(-b)`` (``c = 0``), which
    two points determine and which is optimistic if the curve already saturates. The holdout is
    ``None`` when the largest size is more than :data:`MAX_FACTOR` x the next one.

    Args:
        sizes: Training images per class of each measurement. Repeated sizes are several runs
            (seeds) at that size.
        accuracies: Validation accuracy of each measurement, in [0, 1].
        std: Optional, with ``n_runs``: each entry is then already a mean over ``n_runs`` runs
            with this sample std (e.g. a cross-validated probe); sizes must then be distinct.
        n_runs: Runs behind each summarised entry (with ``std``).
        n_val: Validation images per run: sets the noise floor of each mean accuracy.
        backbone: Label carried into the result.
        strategy: Label carried into the result.
        n_boot: Bootstrap replicates for the bands (0: no bands).
        level: Coverage of the bands (0.9: 5th to 95th percentile).
        seed: Seed of the bootstrap (an int, or a sequence of ints as numpy's
            ``default_rng`` takes).
        chance: Accuracy of guessing (the majority class). A size whose mean accuracy is within
            two standard errors of it is shown but not fitted (its point says ``at_chance``): a
            network that has not started to learn is not on the law's curve (a network trained
            from scratch on a few images per class sits there, then jumps).
        replicates: ``(n_reps, n_sizes)`` bootstrap replicates of each distinct size's mean
            accuracy, sizes ascending (e.g. from resampling the reported images). They replace
            the parametric bootstrap (``n_boot`` and ``seed`` are then unused), widened about
            the means when the law misfits as the parametric one is. Row ``r`` of the bootstrap
            is fitted to row ``r`` here, so curves given rows of one resample have paired bands.

    Returns:
        A :class:`CurveFit`.

    Example:
        >>> n = [10, 20, 40, 80]
        >>> acc = [1 - (0.5 * x ** -0.5 + 0.05) for x in n]
        >>> fit = fit_learning_curve(n, acc, n_val=1000, n_boot=50)
        >>> round(fit.law.b, 2), round(fit.law.c, 3)
        (0.5, 0.05)
        >>> [p.images_per_class for p in fit.predicted]
        [160, 320]
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_val is not None and n_val < 1:
        raise ValueError(f"n_val must be a positive number of validation images, got {n_val}")
    n, acc, s, r = _validate(sizes, accuracies, std, n_runs)
    sizes_u, means, stds, counts, runs = _summarise(n, acc, s, r)
    if replicates is not None:
        replicates = np.asarray(replicates, dtype=np.float64)
        if replicates.ndim != 2 or replicates.shape[1] != sizes_u.size or not np.all(np.isfinite(replicates)):
            raise ValueError(f"replicates must be a finite (n_reps, {sizes_u.size}) array, one column per "
                             f"distinct size, got shape {replicates.shape}")
    learning = np.ones(sizes_u.size, dtype=bool)
    if chance is not None:
        floor = _std_floor(np.full(sizes_u.size, float(chance)), n_val)
        learning = means > float(chance) + 2.0 * floor
    points = tuple(
        {"images_per_class": _plain(x), "accuracy": float(m), "std": float(sd), "n_runs": int(k),
         **({} if ok else {"at_chance": True})}
        for x, m, sd, k, ok in zip(sizes_u, means, stds, counts, learning)
    )
    if learning.sum() < 3:
        return CurveFit(backbone, strategy, points, None, (), None, level)
    sizes_u, means, stds, counts = sizes_u[learning], means[learning], stds[learning], counts[learning]
    runs = [r_ for r_, ok in zip(runs, learning) if ok]

    se_runs = stds / np.sqrt(counts)
    sigma = np.maximum(se_runs, _std_floor(means, n_val))
    w = 1.0 / sigma**2
    a, b, c = _fit_many(sizes_u, (1.0 - means)[None, :], w[None, :])[0]
    law = PowerLaw(float(a), float(b), float(c))
    method: str | None = None
    boot = np.empty((0, 3))
    if replicates is not None and replicates.shape[0]:
        draws = means + _misfit(sizes_u, means, sigma, law) * (replicates[:, learning] - means)
        draws = np.clip(draws, 0.0, 1.0)
        boot = _fit_many(sizes_u, 1.0 - draws, np.broadcast_to(w, draws.shape))
        method = "replicates"
    elif replicates is None and n_boot:
        boot = _bootstrap(sizes_u, means, sigma, se_runs, runs, law, n_boot, seed)
        method = "parametric"

    holdout = None
    if sizes_u[-1] <= MAX_FACTOR * sizes_u[-2]:
        # With 2 sizes left, c = 0: the 2-parameter law that 2 points determine.
        c_max = _C_MAX if sizes_u.size >= 4 else 0.0
        ha, hb, hc = _fit_many(sizes_u[:-1], (1.0 - means[:-1])[None, :], w[None, :-1], c_max=c_max)[0]
        predicted = PowerLaw(float(ha), float(hb), float(hc)).accuracy(sizes_u[-1])
        holdout = {"images_per_class": _plain(sizes_u[-1]), "predicted": float(predicted),
                   "measured": float(means[-1]), "error": float(abs(predicted - means[-1]))}

    fit = CurveFit(backbone, strategy, points, law, (), holdout, level, boot, method)
    preds = tuple(predict(fit, factor * sizes_u[-1]) for factor in (2.0, MAX_FACTOR))
    return replace(fit, predicted=preds)


def predict(fit: CurveFit, n: float) -> Prediction:
    """Predicted accuracy at ``n`` images per class, with its band.

    Args:
        fit: A fitted curve (``fit.law`` not ``None``).
        n: Images per class; at most :data:`MAX_FACTOR` x the largest measured size.

    Returns:
        A :class:`Prediction`; from a :data:`WITHHELD` fit, or beyond :data:`MAX_FACTOR` x the
        data, its ``status`` says so and ``accuracy``, ``low`` and ``high`` are ``None``.

    Raises:
        ValueError: If the curve has no fit (fewer than 3 sizes) or ``n`` is not positive.

    Example:
        >>> fit = fit_learning_curve([10, 20, 40, 80], [0.80, 0.85, 0.88, 0.90], n_boot=0)
        >>> predict(fit, 160).status, predict(fit, 400).status
        ('predicted', 'beyond_range')
        >>> predict(fit_learning_curve([10, 20, 40], [0.80, 0.85, 0.88], n_boot=0), 80).status
        'withheld'
    """
    if fit.law is None:
        raise ValueError(f"no fitted law for {fit.backbone}/{fit.strategy}: it needs 3 or more distinct sizes, "
                         f"got {len(fit.points)}")
    if not (math.isfinite(n) and n > 0):
        raise ValueError(f"n must be a positive number of images per class, got {n}")
    if fit.status == WITHHELD:
        return Prediction(_plain(n), None, None, None, WITHHELD)
    if n > MAX_FACTOR * fit.max_images_per_class * (1 + _EPS):
        return Prediction(_plain(n), None, None, None, BEYOND_RANGE)
    accuracy = float(fit.law.accuracy(n))
    low, high = _band(fit, n, accuracy)
    return Prediction(_plain(n), accuracy, low, high)


# ----------------------------------------------------------------------------- crossings


def _accuracy_grid(params: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Accuracy of each ``(a, b, c)`` row at each size: ``(r, len(n))``."""
    a, b, c = (params[:, i : i + 1] for i in range(3))
    return np.clip(1.0 - (c + a * n[None, :] ** (-b)), 0.0, 1.0)


def _first_crossing(gap: np.ndarray, grid: np.ndarray, *, strict: bool) -> np.ndarray:
    """First size where each row of ``gap`` passes 0 (``> 0`` when ``strict``, else ``>= 0``),
    log-linear between grid points; inf where it never does."""
    hit = gap > _EPS if strict else gap >= -_EPS
    out = np.full(gap.shape[0], np.inf)
    rows = np.flatnonzero(hit.any(axis=1))
    j = np.argmax(hit, axis=1)[rows]
    before = np.maximum(j - 1, 0)
    g0, g1 = gap[rows, before], gap[rows, j]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(g1 != g0, g0 / (g0 - g1), 1.0)
    log_grid = np.log(grid)
    at = np.exp(log_grid[before] + t * (log_grid[j] - log_grid[before]))
    out[rows] = np.where(j == 0, grid[0], at)
    return out


def crossing(
    fit_a: CurveFit,
    fit_b: CurveFit | Sequence[CurveFit],
    *,
    kind: str,
    margin: float,
) -> Crossing | None:
    """Where curve A reaches the best of the B curves, give or take ``margin``.

    * ``"finetune_beats_freeze"``: A (fine-tuning) beats B (freezing) by more than the margin,
      ``acc_A(n) > acc_B(n) + margin``.
    * ``"scratch_catches_pretrained"``: A (from scratch) comes within the margin of the best
      pretrained curve, ``acc_A(n) >= max_k acc_Bk(n) - margin``.

    These are the benchmark verdict's comparisons when ``margin`` is its tolerance: it calls a
    gap of at most the tolerance a near-tie, which goes to the cheaper strategy. So at the
    measured size a crossing never says more than the verdict does.

    The reference size ``n_ref`` is the largest size measured on every curve. ``"crossed"`` is
    judged from the measured mean accuracies at ``n_ref`` (the same numbers the benchmark's
    verdict uses). Otherwise, when every curve has a law that can be trusted (see
    :attr:`CurveFit.status`; else the crossing is :data:`WITHHELD` with the reason), the laws
    are compared on a fine log grid over ``[n_ref, 4 n_ref]``: the first size where the
    condition holds is the crossing (``"ahead"``), none is :data:`BEYOND_RANGE`. The band is
    the spread of the same search over the bootstrap replicates, row by row (paired when the
    curves' replicates come from one resample of the reported images); a replicate that does
    not cross within range counts as beyond it, so ``high`` is ``None`` when more than the
    upper tail does not cross. When the laws already meet the condition at ``n_ref`` but the
    measured means do not, the crossing is ``"borderline"`` at ``n_ref``: the data cannot tell.

    Args:
        fit_a: The curve that catches up (fine-tuning, or from scratch).
        fit_b: The curve, or curves (their maximum), to catch up with.
        kind: One of :data:`KINDS`.
        margin: Accuracy margin as a fraction (0.02 = 2 points).

    Returns:
        A :class:`Crossing`, or ``None`` when it cannot be told: not crossed on the measured
        points and a curve has no fitted law to look ahead with.

    Example:
        >>> n = [25, 50, 100, 200]
        >>> ft = fit_learning_curve(n, [1 - (2 * x**-0.5 + 0.02) for x in n], n_val=2000)
        >>> fr = fit_learning_curve(n, [1 - (0.5 * x**-0.5 + 0.10) for x in n], n_val=2000)
        >>> x = crossing(ft, fr, kind="finetune_beats_freeze", margin=0.02)
        >>> x.status, 550 < x.images_per_class < 700
        ('ahead', True)
    """
    if kind not in _MARGIN_SIGN:
        raise ValueError(f"unknown crossing kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must lie in [0, 1), got {margin}")
    others = [fit_b] if isinstance(fit_b, CurveFit) else list(fit_b)
    if not others:
        raise ValueError("fit_b is empty: give at least one curve to compare with")
    curves = [fit_a, *others]
    offset = _MARGIN_SIGN[kind] * margin
    # Beating needs more than the margin (the verdict's near-tie includes the margin itself);
    # catching up needs to come within it.
    strict = _MARGIN_SIGN[kind] > 0

    def holds(excess: float) -> bool:
        return excess > _EPS if strict else excess >= -_EPS

    measured = [{float(p["images_per_class"]): float(p["accuracy"]) for p in f.points} for f in curves]
    common = sorted(set.intersection(*(set(m) for m in measured)))
    holds_at = {n: holds(measured[0][n] - max(m[n] for m in measured[1:]) - offset) for n in common}
    if common:
        n_ref = common[-1]
    else:
        # No size measured on every curve: compare the laws at the smallest of the largest sizes.
        n_ref = min(f.max_images_per_class for f in curves)

    def result(status: str, at: int | None = None, low: int | None = None, high: int | None = None,
               reason: str | None = None) -> Crossing:
        return Crossing(fit_a.backbone, kind, at, low, high, status, float(margin), reason)

    if common and holds_at[n_ref]:
        since = n_ref
        for n in reversed(common):
            if not holds_at[n]:
                break
            since = n
        return result("crossed", at=int(math.ceil(since)))
    if any(f.law is None for f in curves):
        return None
    withheld = [f for f in curves if f.status == WITHHELD]
    if withheld:
        return result(WITHHELD, reason="; ".join(f"{f.strategy or 'a curve'}: {f.reason}" for f in withheld))

    grid = np.geomspace(n_ref, MAX_FACTOR * n_ref, _CROSS_GRID)
    laws = np.array([[f.law.a, f.law.b, f.law.c] for f in curves])
    acc = _accuracy_grid(laws, grid)
    gap = acc[0] - (acc[1:].max(axis=0) + offset)
    if holds(gap[0]):
        return result("borderline", at=int(math.ceil(n_ref))) if common else result("crossed")
    at = _first_crossing(gap[None, :], grid, strict=strict)[0]
    if not math.isfinite(at):
        return result(BEYOND_RANGE)

    low = high = None
    n_boot = min(f.bootstrap.shape[0] for f in curves)
    if n_boot:
        boot_acc = np.stack([_accuracy_grid(f.bootstrap[:n_boot], grid) for f in curves])
        boot_gap = boot_acc[0] - (boot_acc[1:].max(axis=0) + offset)
        ns = _first_crossing(boot_gap, grid, strict=strict)
        tail = 100.0 * (1.0 - fit_a.level) / 2.0
        # "lower"/"higher" pick actual replicates, so an inf (beyond range) stays inf, not nan.
        lo_q = float(np.percentile(ns, tail, method="lower"))
        hi_q = float(np.percentile(ns, 100.0 - tail, method="higher"))
        low = int(math.floor(min(lo_q, at)))
        high = int(math.ceil(max(hi_q, at))) if math.isfinite(hi_q) else None
    return result("ahead", at=int(math.ceil(at)), low=low, high=high)


# ----------------------------------------------------------------------------- the benchmark's block


def _group_seed(seed: int, backbone: Any, strategy: Any) -> list[int]:
    # Each curve gets its own stream: the same stream for two curves would make their bootstrap
    # noise identical, correlate them, and narrow every crossing band for no reason.
    return [int(seed), zlib.crc32(f"{backbone}\x00{strategy}".encode())]


_IMAGES_STREAM = zlib.crc32(b"reported images")  # the paired bootstrap's stream, apart from the curves'


def _records(rows: Sequence[Mapping[str, Any]]) -> list[np.ndarray] | None:
    """The runs' per-image records as boolean arrays, or ``None`` when any run lacks a usable
    one (no record, no seed, or a record that does not give the run's accuracy)."""
    out = []
    for r in rows:
        rec = r.get("correct")
        if rec is None or r.get("seed") is None:
            return None
        rec = np.asarray(rec, dtype=bool).ravel()
        if rec.size == 0 or abs(rec.mean() - float(r["accuracy"])) > 0.5 / rec.size + _EPS:
            return None
        out.append(rec)
    return out


def _paired_replicates(groups: Mapping[Any, Sequence[Mapping[str, Any]]], n_boot: int,
                       seed: int) -> dict[Any, np.ndarray]:
    """Bootstrap replicates of each curve's mean accuracy per size, ``(n_boot, n_sizes)``, from
    resampling the reported images; only for the curves whose runs all carry records.

    Two stages, one draw shared by every curve so that the replicates pair up: replicate ``r``
    draws ``k`` seeds with replacement out of the ``k`` (the training noise: initialisation,
    data order, the nested subsets), and each drawn seed its reported images with replacement;
    every strategy and size of that seed is scored on those same images. A size's replicate is
    the mean over the drawn seeds that ran it. So an image that two strategies both get right
    or both get wrong moves neither the gap between them nor its band: the difference of two
    curves carries the paired noise, not the sum of two independent ones.
    """
    recs = {key: _records(rows) for key, rows in groups.items()}
    recs = {key: rs for key, rs in recs.items() if rs is not None}
    # Runs of one seed were scored on one reported split, so their records have one length.
    lengths: dict[int, Counter] = {}
    for key, rs in recs.items():
        for r, rec in zip(groups[key], rs):
            lengths.setdefault(int(r["seed"]), Counter())[rec.size] += 1
    n_of = {s: c.most_common(1)[0][0] for s, c in lengths.items()}
    recs = {key: rs for key, rs in recs.items()
            if all(rec.size == n_of[int(r["seed"])] for r, rec in zip(groups[key], rs))}
    if not recs or not n_boot:
        return {}
    seeds = sorted({int(r["seed"]) for key in recs for r in groups[key]})
    k = len(seeds)
    columns: list[list[np.ndarray]] = [[] for _ in seeds]
    cells: dict[Any, list[tuple[float, int, int]]] = {}  # (size, seed index, column)
    for key, rs in recs.items():
        for r, rec in zip(groups[key], rs):
            i = seeds.index(int(r["seed"]))
            cells.setdefault(key, []).append((float(r["images_per_class"]), i, len(columns[i])))
            columns[i].append(rec)

    rng = np.random.default_rng([int(seed), _IMAGES_STREAM])
    drawn = rng.integers(0, k, size=(n_boot, k))  # replicate r's t-th seed
    scored = []  # per seed: (n_boot, k, runs) accuracy of each run on each slot's resample
    for i in range(k):
        mat = np.stack(columns[i], axis=1).astype(np.float64)
        n = mat.shape[0]
        per_slot = []
        for _ in range(k):  # slot by slot: memory n_boot x n, not k times that
            idx = rng.integers(0, n, size=(n_boot, n))
            counts = np.bincount((idx + n * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n)
            per_slot.append(counts.reshape(n_boot, n) @ mat / n)
        scored.append(np.stack(per_slot, axis=1))

    out = {}
    for key, mine in cells.items():
        sizes = sorted({size for size, _, _ in mine})
        reps = np.empty((n_boot, len(sizes)))
        for j, size in enumerate(sizes):
            total, count = np.zeros((n_boot, k)), np.zeros((n_boot, k))
            for size_, i, col in mine:
                if size_ == size:
                    hit = drawn == i
                    total += np.where(hit, scored[i][:, :, col], 0.0)
                    count += hit
            total, count = total.sum(axis=1), count.sum(axis=1)
            # No drawn seed ran this size (a failed run): the measured mean stands in.
            measured = float(np.mean([columns[i][col].mean() for size_, i, col in mine if size_ == size]))
            reps[:, j] = np.where(count > 0, total / np.maximum(count, 1), measured)
        out[key] = reps
    return out


def curves_from_runs(
    runs: Sequence[Mapping[str, Any]],
    *,
    margin: float,
    tolerance: Mapping[Any, float] | None = None,
    n_val: int | None = None,
    n_boot: int = 200,
    seed: int = 0,
    scratch: str = "scratch",
    chance: float | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The benchmark's ``data_size`` block: one fitted curve per (backbone, strategy), and crossings.

    Runs are grouped by ``(backbone, strategy)`` in first-seen order (runs without an accuracy,
    i.e. failed ones, are skipped) and each group is fitted with :func:`fit_learning_curve`.
    Bands: when every run of a curve carries its per-image record (``correct``), from a
    bootstrap over the reported images and the seeds, one resample shared by every curve, so
    that crossings get the paired noise of a difference (see :func:`_paired_replicates`); else
    from the parametric bootstrap of :func:`fit_learning_curve`, each curve on its own stream.
    Per backbone: ``"finetune_beats_freeze"`` when both ``finetune`` and ``freeze`` exist, and
    ``"scratch_catches_pretrained"`` when ``scratch`` and at least one other (pretrained)
    strategy exist, against the best of them at every size. A crossing that cannot be told
    (see :func:`crossing`) is left out.

    Args:
        runs: Dicts with ``backbone``, ``strategy``, ``images_per_class``, ``accuracy``,
            ``seed``, and optionally ``correct``: which reported images the run got right, in
            the split's order (runs of one seed share the split).
        margin: Accuracy margin as a fraction (0.02 = 2 points).
        tolerance: Per backbone, the gap a crossing must clear (a fraction): the benchmark's
            verdict tolerance, so that crossings and verdict judge a gap alike. A backbone not
            in it uses ``margin``; a tolerance below ``margin`` is raised to it.
        n_val: Validation images per run (the noise floor, see :func:`fit_learning_curve`).
        n_boot: Bootstrap replicates.
        seed: Seed of the bootstraps: the same runs and seed give the same block.
        scratch: Name of the strategy that starts from random weights.
        chance: Accuracy of guessing; sizes at chance level are not fitted (see
            :func:`fit_learning_curve`).

    Returns:
        ``{"curves": [CurveFit.to_dict(), ...], "crossings": [Crossing.to_dict(), ...]}``,
        plain JSON types only.

    Example:
        >>> runs = [{"backbone": "r18", "strategy": s, "images_per_class": n, "accuracy": acc, "seed": 0}
        ...         for s, f in (("freeze", lambda n: 0.9 - 0.5 * n**-0.5), ("finetune", lambda n: 0.98 - 2 * n**-0.5))
        ...         for n in (25, 50, 100, 200) for acc in [f(n)]]
        >>> block = curves_from_runs(runs, margin=0.02, n_val=2000, n_boot=50)
        >>> [c["strategy"] for c in block["curves"]], block["crossings"][0]["status"]
        (['freeze', 'finetune'], 'ahead')
        >>> curves_from_runs(runs, margin=0.02, tolerance={"r18": 0.2}, n_val=2000)["crossings"][0]["status"]
        'beyond_range'
    """
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for run in runs:
        if run.get("accuracy") is None:
            continue
        groups.setdefault((run["backbone"], run["strategy"]), []).append(run)
    paired = _paired_replicates(groups, n_boot, seed)
    fits: dict[tuple[Any, Any], CurveFit] = {}
    for (backbone, strategy), rows in groups.items():
        fit = fit_learning_curve(
            [float(r["images_per_class"]) for r in rows], [float(r["accuracy"]) for r in rows], n_val=n_val,
            backbone=backbone, strategy=strategy, n_boot=n_boot, seed=_group_seed(seed, backbone, strategy),
            chance=chance, replicates=paired.get((backbone, strategy)),
        )
        if fit.bootstrap_method == "replicates":
            fit = replace(fit, bootstrap_method="paired_images")
        fits[(backbone, strategy)] = fit
    crossings = []
    for backbone in dict.fromkeys(b for b, _ in fits):
        gap = max(margin, float((tolerance or {}).get(backbone, margin)))
        mine = {s: f for (b, s), f in fits.items() if b == backbone}
        found = []
        if "finetune" in mine and "freeze" in mine:
            found.append(crossing(mine["finetune"], mine["freeze"], kind="finetune_beats_freeze", margin=gap))
        pretrained = [f for s, f in mine.items() if s != scratch]
        if scratch in mine and pretrained:
            found.append(crossing(mine[scratch], pretrained, kind="scratch_catches_pretrained", margin=gap))
        crossings.extend(x.to_dict() for x in found if x is not None)
    return {"curves": [f.to_dict() for f in fits.values()], "crossings": crossings}


_SENTENCES = {
    "finetune_beats_freeze": {
        "ahead": "fine-tuning would beat freezing by more than {m}",
        "crossed": "fine-tuning already beats freezing by more than {m}",
        "beyond": "fine-tuning is not expected to beat freezing by more than {m}",
        "borderline": "fine-tuning is on the edge of beating freezing by more than {m}",
        "withheld": "whether fine-tuning would beat freezing by more than {m} with more data is not predicted",
    },
    "scratch_catches_pretrained": {
        "ahead": "training from scratch would come within {m} of the best pretrained strategy",
        "crossed": "training from scratch already comes within {m} of the best pretrained strategy",
        "beyond": "training from scratch is not expected to come within {m} of the best pretrained strategy",
        "borderline": "training from scratch is on the edge of coming within {m} of the best pretrained strategy",
        "withheld": "whether training from scratch would come within {m} of the best pretrained strategy with "
                    "more data is not predicted",
    },
}


def crossing_sentence(x: Crossing | Mapping[str, Any]) -> str:
    """One sentence for the verdict.

    Args:
        x: A :class:`Crossing` or its :meth:`~Crossing.to_dict`.

    Returns:
        The sentence, without a final full stop.

    Example:
        >>> crossing_sentence(Crossing("r18", "finetune_beats_freeze", 60, 40, 95, "ahead", 0.02))
        'with about 60 images per class (40-95), fine-tuning would beat freezing by more than 2 points'
        >>> crossing_sentence(Crossing("r18", "finetune_beats_freeze", None, None, None, "withheld", 0.072,
        ...                            "freeze: exponent at its bound b = 4, a step rather than a trend"))
        'whether fine-tuning would beat freezing by more than 7.2 points with more data is not predicted (freeze: exponent at its bound b = 4, a step rather than a trend)'
    """
    if isinstance(x, Mapping):
        x = Crossing.from_dict(x)
    says = _SENTENCES[x.kind]
    points = round(100 * x.margin, 1)  # as the verdict writes its tolerance
    m = f"{points:g} point" + ("" if points == 1 else "s")
    if x.status == "crossed":
        since = f" (from {x.images_per_class} images per class on)" if x.images_per_class is not None else ""
        return says["crossed"].format(m=m) + since
    if x.status == "ahead":
        if x.low is None:
            band = ""
        elif x.high is None:
            band = f" ({x.low} to beyond {MAX_FACTOR:g}x this data)"
        else:
            band = f" ({x.low}-{x.high})"
        return f"with about {x.images_per_class} images per class{band}, " + says["ahead"].format(m=m)
    if x.status == "borderline":
        return (says["borderline"].format(m=m) + f" at {x.images_per_class} images per class: the fitted curves "
                "say it does, the measured accuracies say not yet")
    if x.status == WITHHELD:
        return says["withheld"].format(m=m) + (f" ({x.reason})" if x.reason else "")
    return says["beyond"].format(m=m) + f" within {MAX_FACTOR:g}x this data"
