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

The axes are measured, not guessed: the size axis is the median number of training images per
class, corrected by the frozen probe's learning curve (a curve still rising steeply means more
data would still pay: the data is "little" whatever its count); the similarity axis is the
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

from advisor.bench.strategies import suggested_settings
from advisor.profile import BackboneProfile, Profile

__all__ = ["CASES", "STRATEGIES", "Recommendation", "Thresholds", "load_thresholds", "recommend"]

STRATEGIES = ("freeze", "finetune", "not_worth_using")

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
        curve_slope: Accuracy gained per doubling of the sample at the end of the frozen
            probe's learning curve above which more data still pays (the data is "little").
        pixel_margin: A frozen probe within this of the raw-pixel probe adds nothing over pixels.
        min_skill: Frozen-probe skill (0 at chance, 1 when perfect) below which the features
            carry too little of the labels' signal: with no lead over pixels either, the
            pretrained features "add nothing".
        transfer_skill: Frozen-probe skill at and above which the features transfer despite a
            domain gap: with little data, the pretrained network beats itself trained from
            scratch (digits, 40 per class: skill 92 %; fine-tune 96 %, scratch 79 %).
        finetune_images_per_class: On little, different data whose features transfer, the
            fewest images per class at which fine-tuning beats freezing (digits at 224 px:
            10 per class freeze 80 % vs fine-tune 40 %; 20 per class 78 % vs 90 %).
        probe_ceiling: A frozen-probe accuracy at or above this leaves fine-tuning too little
            room to win by more than the benchmark's margin.
    """

    images_per_class: float = 100.0
    similarity: float = 0.5
    curve_slope: float = 0.04
    pixel_margin: float = 0.02
    min_skill: float = 0.25
    transfer_skill: float = 0.5
    finetune_images_per_class: float = 15.0
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
            import tomllib

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
        strategy: ``"freeze"``, ``"finetune"`` or ``"not_worth_using"``.
        case: The document's case the data falls into (after evidence overrides, the case
            whose strategy was chosen is still the measured one; see ``overrides``).
        backbone: The best backbone for the strategy.
        confidence: In [0, 1]: how far the measurements sit from the thresholds.
        reasons: Sentences with their numbers.
        axes: The two axes' values, thresholds and verdicts.
        ranking: Pretrained backbones, best first, with their scores.
        settings: Suggested training settings for the strategy.
        overrides: Evidence rules that changed the grid's answer.
        thresholds: The thresholds used.
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


def _size_axis(profile: Profile, best: BackboneProfile, th: Thresholds) -> dict[str, Any]:
    ds = profile.dataset
    counts = ds.splits.get("train") if ds.splits.get("train") else ds.class_counts
    nonzero = [c for c in counts.values() if c > 0]
    median = float(statistics.median(nonzero)) if nonzero else 0.0
    slope = best.curve_slope
    # The curve runs over the profiled sample: its slope speaks for the whole dataset only
    # when the sample holds (nearly) all of it; a capped sample's curve says nothing of the rest.
    covered = best.n_sample >= 0.8 * sum(nonzero)
    rising = covered and slope is not None and math.isfinite(slope) and slope > th.curve_slope
    enough = median >= th.images_per_class and not rising
    return {
        "value": median,
        "threshold": th.images_per_class,
        "enough": bool(enough),
        "curve_slope": slope,
        "curve_rising": bool(rising),
        "curve_covers_dataset": bool(covered),
        "label": "enough data" if enough else "little data",
    }


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
    strategy, case = CASES[(size["enough"], similar)]
    reasons = [
        f"{_sentence(size['label'])}: median {size['value']:.0f} training images per class "
        f"({'at or above' if size['value'] >= th.images_per_class else 'below'} the threshold of "
        f"{th.images_per_class:.0f})" + (
            f", and the frozen probe's learning curve is still rising by {size['curve_slope']:+.1%} "
            f"per doubling of data (threshold {th.curve_slope:.0%})" if size["curve_rising"] else "") + ".",
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
    overrides: list[str] = []
    probe, pixels, chance = t.get("linear_probe"), t.get("pixel_linear_probe"), t.get("chance")
    evidence = all(v is not None and math.isfinite(v) for v in (probe, pixels, chance)) and chance < 1
    margin_conf = None
    if evidence:
        gap = probe - pixels
        skill = (probe - chance) / (1 - chance)  # 0 at chance, 1 when perfect
        reasons.append(
            f"Frozen {best.name} features reach {probe:.1%} with a linear probe (chance {chance:.1%}, so "
            f"{skill:.0%} of the way from chance to perfect), against {pixels:.1%} on raw pixels "
            f"({gap * 100:+.1f} points)."
        )
        if gap <= th.pixel_margin and size["enough"]:
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
            tunable = size["value"] >= th.finetune_images_per_class
            strategy = "finetune" if tunable else "freeze"
            reasons.append(
                f"Override: despite the domain gap the frozen features already separate the classes "
                f"({skill:.0%} >= {th.transfer_skill:.0%} of the way from chance to perfect), so the pretrained "
                "model is worth using: the same network trained from scratch on this little data falls behind. "
                + (f"With {size['value']:.0f} images per class (>= {th.finetune_images_per_class:.0f}), fine-tuning "
                   "adapts the features to the new domain (measured on 40 digits per class: fine-tune 96 %, "
                   "freeze 89 %, scratch 79 %)."
                   if tunable else
                   f"With {size['value']:.0f} images per class (< {th.finetune_images_per_class:.0f}), fine-tuning "
                   "overfits: train only a classifier on the frozen features (measured on 10 digits per class: "
                   "freeze 80 %, fine-tune 40 %).")
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
        settings=suggested_settings(strategy, best.name, best.image_size),
        overrides=tuple(overrides),
        thresholds=th.to_dict(),
    )
