"""The decision engine: a :class:`~advisor.profile.Profile` in, one piece of advice out.

The four cases of the source document place a dataset on two axes:

=================  ==========================  ==========================
                   similar to ImageNet         different from ImageNet
=================  ==========================  ==========================
enough data        ``freeze`` (feature         ``finetune``
                   extraction)
little data        ``freeze`` (train only the  ``not_worth_using``
                   classifier)
=================  ==========================  ==========================

The axes are measured, not guessed: the size axis is the median number of images per class that
the bench fits on (the folder's counts converted by the bench's split rule,
:func:`advisor.protocol.fit_share`), corrected by the frozen probe's learning curve (a curve
still rising steeply means more data would still pay: the data is "little" whatever its count);
the similarity axis is the
profiler's similarity score. Measured evidence then overrides the grid where it contradicts it:

- the frozen features are no better than raw pixels and there is enough data -> a network
  trained from scratch catches up: the pretrained model is not worth using;
- the frozen features carry little of the labels' signal (a linear probe barely above chance)
  and no more than raw pixels -> the pretrained features add nothing;
- on "little, different" data the frozen features already separate the classes well -> they
  transfer after all: with little data the same network from scratch falls behind, and
  fine-tuning adapts them (freezing, when there are too few images per class to fine-tune);
- the frozen probe is already near perfect -> fine-tuning cannot win by more than the margin,
  and freezing costs far less.

Every threshold is in :class:`Thresholds` with the measurements behind its default.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from advisor.catalogue import ADVICE
from advisor.curves import MAX_FACTOR, CurveFit, PowerLaw
from advisor.protocol import fit_share
from advisor.ranking import rankings as backbone_rankings
from advisor.types import BackboneProfile, DatasetSummary, Profile

__all__ = ["CASES", "STRATEGIES", "Recommendation", "Thresholds", "insufficient_data", "load_thresholds", "recommend"]

STRATEGIES = tuple(ADVICE)  # the advice's vocabulary

#: The least data that can be measured at all: per class, images to train on and to check on
#: (a flat folder is split, so it needs both), and images in all. Below these no strategy can be
#: compared and the advice says so instead of guessing.
MIN_TRAIN_PER_CLASS = 2
MIN_HELD_OUT_PER_CLASS = 1
MIN_IMAGES = 5

#: (enough data, similar) -> (strategy, case sentence)
CASES: dict[tuple[bool, bool], tuple[str, str]] = {
    (True, True): ("freeze", "enough data, similar to ImageNet"),
    (True, False): ("finetune", "enough data, different from ImageNet"),
    (False, True): ("freeze", "little data, similar to ImageNet"),
    (False, False): ("not_worth_using", "little data, different from ImageNet"),
}


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds (configuration). Override any of them from the CLI or a file.

    Attributes:
        images_per_class: Median training images per class at and above which the data
            counts as "enough". 100 is where, on our measurements (README, "Calibration"),
            fine-tuning stops overfitting a small backbone's head-start away on 10-class data.
        similarity: Similarity score at and above which the data counts as similar to
            ImageNet; the score's calibration puts 0.5 midway between near and far data.
        curve_slope: Accuracy gained per doubling of data, read off the frozen probe's fitted
            learning curve at the data's size, above which more data still pays (the data is
            "little").
        pixel_margin: A frozen probe within this of the raw-pixel probe adds nothing over pixels.
        min_skill: Frozen-probe skill (0 at chance, 1 when perfect) below which the features
            carry too little of the labels' signal: with no lead over pixels either, the
            pretrained features "add nothing".
        transfer_skill: Frozen-probe skill at and above which the features transfer despite a
            domain gap: with little data, the pretrained network beats itself trained from
            scratch (digits, 40 per class: skill 92 %; fine-tune 96 %, scratch 79 %).
        finetune_images_per_class: On little, different data whose features transfer, the
            fewest images per class (the bench fits on) at which fine-tuning beats freezing by
            more than the bench's tolerance. Measured with the issue-18 bench (hold and cool
            down, learning-rate probe, paired tolerance; lite0, one seed; ``benchmarks/budget.py``
            at 96 px and ``benchmarks/demo_seeds.py`` at 112 px): digits at 25.6 per class,
            fine-tune 96.2-97.5 % against freeze 87.5-92.5 % (3 seeds, verdict fine-tune in 3);
            calibration/cifar10 at 24 per class, 52.5 % against 48.5 %, a near-tie that goes to
            freeze. 25 sits between the two: on so few points it is a boundary of this data,
            not a law (the 0.2 bench, which stopped at the peak learning rate, put it at 50).
        probe_ceiling: A frozen-probe accuracy at or above this leaves fine-tuning too little
            room to win by more than the benchmark's tolerance, whatever the case
            (calibration/bccd_cells: probe 98.7 %; the issue-18 bench, ``benchmarks/budget.py``
            at 96 px, freeze 98.9 % against fine-tune 100 % under auto, 8 and 20 epochs: within
            the tolerance every time, so freeze). It rests on that one set.
    """

    images_per_class: float = 100.0
    similarity: float = 0.5
    curve_slope: float = 0.04
    pixel_margin: float = 0.02
    min_skill: float = 0.25
    transfer_skill: float = 0.5
    finetune_images_per_class: float = 25.0
    probe_ceiling: float = 0.98

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Thresholds":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown threshold(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**{k: float(v) for k, v in d.items()})


def load_thresholds(path: str | os.PathLike) -> Thresholds:
    """Thresholds from a JSON or TOML file (top-level keys, or a ``[thresholds]`` table)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise ValueError(f"cannot read config file {p}: {err.strerror}") from err
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI
                import tomli as tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"config file {p} is not valid {p.suffix.lstrip('.').upper() or 'JSON'}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"config file {p} must hold a table of thresholds")
    return Thresholds.from_dict(data.get("thresholds", data))


@dataclass(frozen=True)
class Recommendation:
    """The advice.

    Attributes:
        strategy: ``"freeze"``, ``"finetune"`` or ``"not_worth_using"``; ``"insufficient_data"``
            when there are too few images to measure anything (:func:`insufficient_data`).
        case: The document's case the data falls into (after evidence overrides, the case
            whose strategy was chosen is still the measured one; see ``overrides``).
        backbone: The best backbone for the strategy.
        confidence: In [0, 1]: how far the measurements sit from the thresholds.
        reasons: Sentences with their numbers.
        axes: The two axes' values, thresholds and verdicts.
        ranking: Pretrained backbones, best first, with their scores.
        settings: Suggested training settings for the strategy: empty from :func:`recommend`
            (which never touches the training code); :func:`advisor.pipeline.advise` attaches
            the recipe the bench would train it with.
        overrides: Evidence rules that changed the grid's answer.
        thresholds: The thresholds used.
        data_size: The frozen probe's learning curve, its fitted law, predictions at 2x and 4x
            the sample, and ``flips_at``: where the advice would change (``None`` if not within 4x).
        rankings: With several backbones: the advisor's ranking beside ImageNet top-1 and the
            k-NN probe (:func:`advisor.ranking.rankings`); ``None`` with one.
    """

    strategy: str
    case: str
    backbone: str
    confidence: float
    reasons: tuple[str, ...]
    axes: dict[str, dict[str, Any]]
    ranking: tuple[dict[str, Any], ...]
    settings: dict[str, Any]
    overrides: tuple[str, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    data_size: dict[str, Any] | None = None
    rankings: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        d["ranking"] = [dict(r) for r in self.ranking]
        d["overrides"] = list(self.overrides)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recommendation":
        d = dict(d)
        d["reasons"] = tuple(d["reasons"])
        d["ranking"] = tuple(dict(r) for r in d["ranking"])
        d["overrides"] = tuple(d.get("overrides", ()))
        return cls(**d)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _rank(backbones: tuple[BackboneProfile, ...]) -> list[BackboneProfile]:
    """Best first: the frozen probe's accuracy (the measured freeze accuracy), then LogME."""
    def key(b: BackboneProfile) -> tuple[float, float]:
        t = b.transferability
        probe = t.get("linear_probe")
        logme = t.get("logme")
        return (
            probe if probe is not None and math.isfinite(probe) else -1.0,
            logme if logme is not None and math.isfinite(logme) else -math.inf,
        )

    pretrained = [b for b in backbones if b.weights == "imagenet"] or list(backbones)
    return sorted(pretrained, key=key, reverse=True)


def _distance(value: float, threshold: float, *, log: bool, span: float) -> float:
    """How far from the threshold, in [0, 1] (1 = beyond ``span`` away)."""
    if value is None or not math.isfinite(value):
        return 0.0
    if log:
        d = abs(math.log(max(value, 1e-9) / threshold)) / math.log(span)
    else:
        d = abs(value - threshold) / span
    return float(min(1.0, d))


def _gain_per_doubling(law: PowerLaw, n: float) -> float:
    """The law's slope at ``n`` in accuracy per doubling: ``d acc / d log2(n) = ln 2 * a * b * n**-b``.

    A local slope, so reading it at ``n`` needs the law at ``n`` alone (never beyond 4x).
    """
    return float(math.log(2.0) * law.a * law.b * n ** (-law.b))


def _size_axis(profile: Profile, best: BackboneProfile, th: Thresholds) -> dict[str, Any]:
    """Median training images per class, corrected by the fitted frozen-probe learning curve.

    The curve is measured on the profiled sample; its fitted law is read at the data's own size
    when that lies within 4x of the curve's largest point (no further extrapolation): a slope of
    more than ``curve_slope`` per doubling there means more data would still pay, so the data
    counts as "little" whatever its count.
    """
    ds = profile.dataset
    counts = ds.splits.get("train") if ds.splits.get("train") else ds.class_counts
    nonzero = [c for c in counts.values() if c > 0]
    share, of = fit_share(ds.splits)
    # One unit everywhere: the images per class the bench fits on, by its own split rule.
    folder = float(statistics.median(nonzero)) if nonzero else 0.0
    median = folder * share
    fit = CurveFit.from_dict(best.curve_fit) if best.curve_fit else None
    slope = None
    if fit is not None and fit.law is not None and 0 < median <= MAX_FACTOR * fit.max_images_per_class:
        slope = _gain_per_doubling(fit.law, median)
    rising = slope is not None and slope > th.curve_slope
    enough = median >= th.images_per_class and not rising
    return {
        "value": median,
        "unit": (f"images per class the bench fits on ({100 * share:.0f} % of {of}"
                 + ("" if share == 1 else ": the rest is held out to report and to choose epochs") + ")"),
        "per_class_in_folder": folder,
        "threshold": th.images_per_class,
        "enough": bool(enough),
        "curve_slope": slope,
        "curve_rising": bool(rising),
        "curve_reaches_data": slope is not None,
        "label": "enough data" if enough else "little data",
    }


def _decide(enough: bool, similar: bool, size_value: float, evidence: dict[str, float] | None,
            th: Thresholds) -> tuple[str, list[str], list[str], float | None]:
    """The grid's case, then the evidence overrides: (strategy, overrides, reasons, margin confidence).

    ``evidence`` holds the frozen probe, the raw-pixel probe and chance (``None`` without them).
    A pure function of the axes, so that the advice at another data size can be asked for.
    """
    strategy, _case = CASES[(enough, similar)]
    overrides: list[str] = []
    reasons: list[str] = []
    margin_conf = None
    if evidence is None:
        return strategy, overrides, reasons, margin_conf
    probe, pixels, chance = evidence["probe"], evidence["pixels"], evidence["chance"]
    gap = probe - pixels
    skill = (probe - chance) / (1 - chance)  # 0 at chance, 1 when perfect
    if gap <= th.pixel_margin and enough:
        changed = strategy != "not_worth_using"
        strategy = "not_worth_using"
        if changed:
            overrides.append("features_add_nothing")
        reasons.append(
            ("Override: t" if changed else "T")
            + f"he frozen features are no better than raw pixels ({gap * 100:+.1f} points <= "
            f"{th.pixel_margin * 100:.0f}) and there is enough data: the same network trained from scratch "
            "catches up (measured on 180 digits per class: scratch 98.3 % against fine-tuning 98.9 %)."
        )
        margin_conf = _distance(gap, th.pixel_margin, log=False, span=0.1)
    elif skill < th.min_skill and gap <= th.pixel_margin and strategy == "freeze":
        strategy = "not_worth_using"
        overrides.append("features_add_nothing")
        reasons.append(
            f"Override: the frozen features carry little of the labels' signal ({skill:.0%} < "
            f"{th.min_skill:.0%}) and no more than raw pixels, so the pretrained model is not worth using."
        )
        margin_conf = _distance(skill, th.min_skill, log=False, span=0.25)
    elif strategy == "not_worth_using" and skill >= th.transfer_skill:
        overrides.append("features_transfer")
        ceiling = probe >= th.probe_ceiling
        tunable = size_value >= th.finetune_images_per_class and not ceiling
        strategy = "finetune" if tunable else "freeze"
        if ceiling:
            overrides.append("probe_ceiling")
        reasons.append(
            f"Override: despite the domain gap the frozen features already separate the classes "
            f"({skill:.0%} >= {th.transfer_skill:.0%} of the way from chance to perfect), so the pretrained "
            "model is worth using: the same network trained from scratch on this little data falls behind "
            "(measured on hymenoptera and 5 calibration sets: scratch 2 to 46 points below the best pretrained strategy). "
            + (f"The frozen probe already reaches {probe:.1%} (>= {th.probe_ceiling:.0%}): fine-tuning has too "
               "little room to win, so freeze." if ceiling else
               f"With {size_value:.0f} images per class (>= {th.finetune_images_per_class:.0f}), fine-tuning "
               "adapts the features to the new domain (measured: digits at 26 per class, fine-tuning 96-98 % "
               "against freezing 88-92 %)."
               if tunable else
               f"With {size_value:.0f} images per class (< {th.finetune_images_per_class:.0f}), fine-tuning "
               "does not clearly beat a classifier on the frozen features (measured: cifar10 at 24 per class, "
               "52.5 % against 48.5 %, a near-tie), so freeze.")
            + (f" Raw pixels do as well ({pixels:.1%}): a small model on pixels is a cheaper alternative."
               if gap <= th.pixel_margin else "")
        )
        margin_conf = _distance(skill, th.transfer_skill, log=False, span=0.4)
    elif strategy == "finetune" and probe >= th.probe_ceiling:
        strategy = "freeze"
        overrides.append("probe_ceiling")
        reasons.append(
            f"Override: the frozen probe already reaches {probe:.1%} (>= {th.probe_ceiling:.0%}); fine-tuning "
            "cannot win by more than a couple of points and costs far more, so freeze."
        )
        margin_conf = _distance(probe, th.probe_ceiling, log=False, span=0.02)
    elif strategy == "not_worth_using":
        reasons.append(
            f"The frozen features carry too little of the labels' signal ({skill:.0%} < "
            f"{th.transfer_skill:.0%}) to make up for the domain gap, which confirms the case."
        )
    return strategy, overrides, reasons, margin_conf


def _advice_at(n: float, law: PowerLaw, similar: bool, evidence: dict[str, float] | None, th: Thresholds,
               n_max: float) -> str | None:
    """The advice with ``n`` images per class, the frozen probe read off ``law``; ``None`` beyond
    the 4x range the law may be read in."""
    if n > MAX_FACTOR * n_max * (1 + 1e-9):
        return None
    enough = n >= th.images_per_class and _gain_per_doubling(law, n) <= th.curve_slope
    moved = None if evidence is None else {**evidence, "probe": float(law.accuracy(n))}
    return _decide(enough, similar, n, moved, th)[0]


def _data_size(best: BackboneProfile, size: dict[str, Any], similar: bool, evidence: dict[str, float] | None,
               strategy: str, th: Thresholds) -> dict[str, Any] | None:
    """The recommend JSON's ``data_size``: the probe curve, its fit, predictions at 2x and 4x, and
    the data size (within 4x of the curve) at which the advice would change, with a band."""
    if not best.curve_fit:
        return None
    fit = CurveFit.from_dict(best.curve_fit)
    block = {"probe_curve": [{k: p.get(k) for k in ("images_per_class", "accuracy", "std")}
                             for p in best.learning_curve],
             "fit": fit.law.to_dict() if fit.law else None,
             "predicted": [p.to_dict() for p in fit.predicted], "flips_at": None}
    if fit.law is None:
        return block
    n_max, n0 = fit.max_images_per_class, max(1.0, float(size["value"]))
    grid = np.geomspace(n0, MAX_FACTOR * n_max, 120) if n0 < MAX_FACTOR * n_max else np.empty(0)

    def first_flip(law: PowerLaw) -> tuple[float, str] | None:
        for n in grid:
            advice = _advice_at(float(n), law, similar, evidence, th, n_max)
            if advice is None:
                return None
            if advice != strategy:
                return float(n), advice
        return None

    flip = first_flip(fit.law)
    if flip is None:
        return block
    others = [first_flip(PowerLaw(*row)) for row in fit.bootstrap] if len(fit.bootstrap) else []
    ns = np.array([o[0] for o in others if o is not None and o[1] == flip[1]])
    low = high = None
    if ns.size:
        low = int(round(float(np.percentile(ns, 5))))
        # replicates that never flip within range push the band's top beyond it
        high = None if ns.size < 0.95 * len(others) else int(round(float(np.percentile(ns, 95))))
    block["flips_at"] = {"images_per_class": int(round(flip[0])), "low": low, "high": high, "to": flip[1]}
    return block


def insufficient_data(dataset: DatasetSummary) -> list[str]:
    """What is missing before anything can be measured: one phrase per short class (empty: enough).

    A flat folder needs ``MIN_TRAIN_PER_CLASS + MIN_HELD_OUT_PER_CLASS`` images per class (it is
    split); a folder with ``train/`` and ``val/`` (or ``test/``) needs ``MIN_TRAIN_PER_CLASS`` in
    train and ``MIN_HELD_OUT_PER_CLASS`` in the held-out split per class; and ``MIN_IMAGES`` in all.

    Example:
        >>> ds = DatasetSummary(path="/d", layout="flat", n_images=4, n_classes=2, class_counts={"a": 3, "b": 1},
        ...                     splits={}, per_class={}, imbalance_ratio=3.0, skipped=(), empty_classes=(),
        ...                     image_stats={}, fingerprint="x")
        >>> insufficient_data(ds)
        ["class 'b' has 1 image, needs 3 (2 to train on, 1 to check on)", 'the dataset has 4 images, needs at least 5']
    """
    short = []
    held = next((ds for name, ds in dataset.splits.items() if name in ("val", "test")), None)
    train = dataset.splits.get("train")
    if dataset.layout == "split" and train is not None and held is not None:
        for cls in dataset.class_counts:
            n_train, n_held = train.get(cls, 0), held.get(cls, 0)
            if n_train < MIN_TRAIN_PER_CLASS or n_held < MIN_HELD_OUT_PER_CLASS:
                short.append(f"class {cls!r} has {n_train} training and {n_held} held-out image(s), needs "
                             f"{MIN_TRAIN_PER_CLASS} and {MIN_HELD_OUT_PER_CLASS}")
    else:
        need = MIN_TRAIN_PER_CLASS + MIN_HELD_OUT_PER_CLASS
        for cls, n in dataset.class_counts.items():
            if n < need:
                short.append(f"class {cls!r} has {n} image{'s' if n != 1 else ''}, needs {need} "
                             f"({MIN_TRAIN_PER_CLASS} to train on, {MIN_HELD_OUT_PER_CLASS} to check on)")
    if dataset.n_images < MIN_IMAGES:
        short.append(f"the dataset has {dataset.n_images} images, needs at least {MIN_IMAGES}")
    return short


def recommend(profile: Profile, *, thresholds: Thresholds = Thresholds()) -> Recommendation:
    """Turn a profile into advice: strategy, case, best backbone, confidence and reasons.

    Args:
        profile: The profiler's result (at least one backbone).
        thresholds: Decision thresholds.

    Example:
        >>> rec = recommend(profile("data/", ["efficientnet_lite0"]))  # doctest: +SKIP
        >>> rec.strategy, rec.case  # doctest: +SKIP
        ('freeze', 'little data, similar to ImageNet')
    """
    if not profile.backbones:
        raise ValueError("the profile has no backbone: profile at least one")
    th = thresholds
    ranked = _rank(profile.backbones)
    best = ranked[0]
    missing = insufficient_data(profile.dataset)
    if missing:
        return Recommendation(
            strategy="insufficient_data", case="too few images to measure", backbone=best.name, confidence=0.0,
            reasons=(f"Too few images to measure anything: {'; '.join(missing)}. No strategy can be compared on "
                     "this: add images to the classes named (a few dozen per class make a first answer possible), "
                     "then run advisor again.",),
            axes={}, ranking=tuple({"backbone": b.name, "score": b.transferability.get("linear_probe"),
                                    "linear_probe": b.transferability.get("linear_probe"),
                                    "logme": b.transferability.get("logme"), "similarity": b.similarity}
                                   for b in ranked),
            settings={}, thresholds=th.to_dict(),
        )
    t = best.transferability
    size = _size_axis(profile, best, th)
    sim_value = best.similarity
    similar = sim_value is not None and math.isfinite(sim_value) and sim_value >= th.similarity
    similarity = {
        "value": sim_value,
        "threshold": th.similarity,
        "similar": bool(similar),
        "label": "similar to ImageNet" if similar else "different from ImageNet",
    }
    _, case = CASES[(size["enough"], similar)]
    reasons = [
        f"{_sentence(size['label'])}: median {size['value']:.0f} {size['unit']} "
        f"({'at or above' if size['value'] >= th.images_per_class else 'below'} the threshold of "
        f"{th.images_per_class:.0f})" + (
            f", and the frozen probe's fitted learning curve still gains {size['curve_slope']:+.1%} "
            f"per doubling of data there (threshold {th.curve_slope:.0%})" if size["curve_rising"] else "") + ".",
        f"{_sentence(similarity['label'])}: similarity {sim_value:.2f} on {best.name} "
        f"(threshold {th.similarity:.2f}; " + ", ".join(
            f"{k.replace('_', ' ')} {v:.3g}" for k, v in best.signals.items()
            if v is not None and k != "bn_divergence_all") + ").",
    ]
    untrainable = [c for c, n in (profile.dataset.splits.get("train") or {}).items() if n == 0]
    if untrainable:
        reasons.append(
            f"Warning: {len(untrainable)} class(es) have no training images ({', '.join(untrainable[:5])}"
            f"{', ...' if len(untrainable) > 5 else ''}): no strategy can learn them; add images to train/."
        )
    probe, pixels, chance = t.get("linear_probe"), t.get("pixel_linear_probe"), t.get("chance")
    evidence = ({"probe": probe, "pixels": pixels, "chance": chance}
                if all(v is not None and math.isfinite(v) for v in (probe, pixels, chance)) and chance < 1 else None)
    if evidence is not None:
        gap, skill = probe - pixels, (probe - chance) / (1 - chance)
        reasons.append(
            f"Frozen {best.name} features reach {probe:.1%} with a linear probe (chance {chance:.1%}, so "
            f"{skill:.0%} of the way from chance to perfect), against {pixels:.1%} on raw pixels "
            f"({gap * 100:+.1f} points)."
        )
    strategy, overrides, override_reasons, margin_conf = _decide(size["enough"], similar, size["value"], evidence, th)
    reasons += override_reasons
    data_size = _data_size(best, size, similar, evidence, strategy, th)
    if data_size is not None:
        reasons.append(_data_size_sentence(data_size, strategy))
    d_size = _distance(size["value"], th.images_per_class, log=True, span=4.0)
    d_sim = _distance(sim_value, th.similarity, log=False, span=0.5)
    confidence = (d_size + d_sim) / 2 if margin_conf is None else (min(d_size, d_sim) + margin_conf) / 2
    ranking = tuple(
        {"backbone": b.name, "score": b.transferability.get("linear_probe"),
         "linear_probe": b.transferability.get("linear_probe"), "logme": b.transferability.get("logme"),
         "similarity": b.similarity}
        for b in ranked
    )
    if len(ranked) > 1:
        reasons.append(
            f"{best.name} ranks first of {len(ranked)} backbones by frozen-probe accuracy "
            "(" + ", ".join(f"{r['backbone']} {r['score']:.1%}" for r in ranking if r["score"] is not None) + ")."
        )
    return Recommendation(
        strategy=strategy,
        case=case,
        backbone=best.name,
        confidence=round(float(confidence), 3),
        reasons=tuple(reasons),
        axes={"size": size, "similarity": similarity},
        ranking=ranking,
        settings={},  # the bench's recipe for it: attached by advisor.pipeline.advise
        overrides=tuple(overrides),
        thresholds=th.to_dict(),
        data_size=data_size,
        rankings=backbone_rankings(profile.backbones) if len(profile.backbones) > 1 else None,
    )


def _data_size_sentence(block: dict[str, Any], strategy: str) -> str:
    """Whether more data would change the advice, and at about how many images per class."""
    pred = [p for p in block["predicted"] if p.get("accuracy") is not None]
    ahead = (" The frozen probe would reach " + " and ".join(
        f"{p['accuracy']:.1%} with {p['images_per_class']:.0f} images per class" for p in pred) + ".") if pred else ""
    flip = block.get("flips_at")
    if flip is None:
        return ("More data: the advice stays " + ADVICE[strategy].phrase + " up to 4x the profiled sample"
                + " (the fitted frozen-probe learning curve)." + ahead)
    band = ("" if flip["low"] is None else
            f" ({flip['low']}-{flip['high']})" if flip["high"] is not None else f" ({flip['low']} to beyond 4x)")
    return (f"More data: with about {flip['images_per_class']} images per class{band} the advice would become "
            f"{ADVICE[flip['to']].phrase} (the fitted frozen-probe learning curve)." + ahead)
