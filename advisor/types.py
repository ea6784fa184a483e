"""The records of the data and profile stages, torch-free: options and results.

:class:`ProfileConfig` (configuration) and :class:`DatasetSummary`, :class:`BackboneProfile`
and :class:`Profile` (results) are read by the decision (:mod:`advisor.decide`), the reports
and the bench without the training stack; :mod:`advisor.profile` fills them in (and re-exports
them, so ``from advisor.profile import Profile`` works too). :class:`Skipped` and
:func:`summarize_skipped` are :mod:`advisor.data`'s (re-exported there too).

Example:
    >>> ProfileConfig(per_class=20).to_dict()["per_class"]
    20
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SKIPPED_LIMIT", "BackboneProfile", "DatasetSummary", "Profile", "ProfileConfig", "Skipped",
           "summarize_skipped"]

#: Skipped entries listed in a report's JSON; the total and counts per reason cover all.
SKIPPED_LIMIT: int = 200


@dataclass(frozen=True)
class ProfileConfig:
    """Options of the profiling pass (configuration, kept apart from results).

    Attributes:
        per_class: At most this many images per class in the sample.
        total: At most this many images in the sample.
        seed: Seed of the sample and of the cross-validation folds.
        image_size: Crop size; ``None`` uses each backbone's native size. The similarity
            score is calibrated at the native size: the ImageNet head's confidence and the
            activation statistics shift with resolution, so another size makes it unreliable
            (the profile then carries a note saying so).
        batch_size: Images per forward pass.
        num_workers: DataLoader workers; ``None`` picks from the core count.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
        weights: ``"imagenet"`` or ``None`` (random initialisation).
        cache_dir: Where features are cached; ``None`` for the default, ``""`` disables.
        cv: Folds of the probes.
        reference: A reference-statistics file from :func:`build_reference`; backbones it was
            built with get a Frechet distance of their embeddings to it.
        image_cache_dir: Decoded-image cache folder (``None``: under the cache root; ``""``:
            decode on the fly).
    """

    per_class: int = 50
    total: int = 1000
    seed: int = 0
    image_size: int | None = None
    batch_size: int = 32
    num_workers: int | None = None
    device: str = "auto"
    weights: str | None = "imagenet"
    cache_dir: str | None = None
    cv: int = 5
    reference: str | None = None
    image_cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProfileConfig":
        return cls(**d)


@dataclass(frozen=True)
class DatasetSummary:
    """Size profile: exact counts from the listing, decoded properties from the sample.

    Attributes:
        path: The data folder.
        layout: ``"flat"`` or ``"split"``.
        n_images: Usable images (listing).
        n_classes: Classes with at least one image.
        class_counts: Images per class.
        splits: Per split, images per class (empty for a flat layout).
        per_class: min / median / max images per class.
        imbalance_ratio: Largest class over smallest class.
        skipped: Files left out, each ``{"path", "reason"}`` (capped: the first ones, every
            reason at least once).
        empty_classes: Class folders without a usable image.
        image_stats: From the headers of ``n_sampled`` sampled images: width/height
            min/median/max, modes, formats.
        fingerprint: Digest of the listing (cache key).
        thumbnails: A few sample paths per class, for the report.
    """

    path: str
    layout: str
    n_images: int
    n_classes: int
    class_counts: dict[str, int]
    splits: dict[str, dict[str, int]]
    per_class: dict[str, float]
    imbalance_ratio: float
    skipped: tuple[dict[str, str], ...]
    empty_classes: tuple[str, ...]
    image_stats: dict[str, Any]
    fingerprint: str
    thumbnails: dict[str, list[str]] = field(default_factory=dict)
    skipped_total: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped"] = list(d["skipped"])
        d["empty_classes"] = list(d["empty_classes"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetSummary":
        d = dict(d)
        d["skipped"] = tuple(d["skipped"])
        d["empty_classes"] = tuple(d["empty_classes"])
        return cls(**d)


@dataclass(frozen=True)
class BackboneProfile:
    """Everything the profiler measured for one backbone.

    Attributes:
        name: Backbone name.
        weights: ``"imagenet"`` or ``"random"``.
        image_size: Crop size used.
        n_sample: Images that went through the network.
        similarity: Combined similarity to ImageNet in [0, 1].
        signals: Raw signals (``bn_divergence`` is ``None`` without BatchNorm).
        signal_scores: Each signal's closeness score in [0, 1].
        stage_divergence: BN divergence per network stage, in network order.
        transferability: Probe accuracies on embeddings and on raw pixels, chance level,
            LogME, LEEP, NCE, H-score.
        learning_curve: Linear-probe accuracy at 1/8, 1/4, 1/2 and all of each training fold of
            the sample (test folds full-size): ``images_per_class``, ``accuracy``, ``std``.
        curve_fit: The saturating power law fitted to it (:meth:`advisor.curves.CurveFit.to_dict`
            with its bootstrap), or ``None`` when the curve has fewer than 3 sizes.
        seconds: Time of the forward pass (excluding metrics); 0 when cached.
        images_per_second: Throughput of the pass.
        cached: Whether the features came from the cache.
        notes: Caveats, e.g. "no BatchNorm layers".
    """

    name: str
    weights: str
    image_size: int
    n_sample: int
    similarity: float
    signals: dict[str, float | None]
    signal_scores: dict[str, float]
    stage_divergence: dict[str, float]
    transferability: dict[str, float]
    learning_curve: tuple[dict[str, float], ...]
    curve_fit: dict[str, Any] | None
    seconds: float
    images_per_second: float
    cached: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["learning_curve"] = [dict(p) for p in self.learning_curve]
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BackboneProfile":
        d = dict(d)
        d["learning_curve"] = tuple(dict(p) for p in d["learning_curve"])
        d["notes"] = tuple(d.get("notes", ()))
        return cls(**d)


@dataclass(frozen=True)
class Profile:
    """The profiler's result: dataset summary plus one :class:`BackboneProfile` each.

    ``image_cache`` is ``{path, built, reused}`` of the decoded-image cache the passes read
    (``paths`` when several resize sizes needed several files).
    """

    dataset: DatasetSummary
    backbones: tuple[BackboneProfile, ...]
    config: ProfileConfig
    device: str
    seconds: float
    image_cache: dict[str, Any] | None = None

    def backbone(self, name: str) -> BackboneProfile:
        for b in self.backbones:
            if b.name == name:
                return b
        raise KeyError(f"no profile for backbone {name!r}; profiled: {[b.name for b in self.backbones]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.to_dict(),
            "backbones": [b.to_dict() for b in self.backbones],
            "config": self.config.to_dict(),
            "device": self.device,
            "seconds": self.seconds,
            "image_cache": self.image_cache,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Profile":
        return cls(
            dataset=DatasetSummary.from_dict(d["dataset"]),
            backbones=tuple(BackboneProfile.from_dict(b) for b in d["backbones"]),
            config=ProfileConfig.from_dict(d["config"]),
            device=d["device"],
            seconds=float(d["seconds"]),
            image_cache=d.get("image_cache"),
        )


@dataclass(frozen=True)
class Skipped:
    """A file or folder that is not used, and why.

    Attributes:
        path: Path of the file or folder.
        reason: Short cause, e.g. ``"zero-byte file"`` or ``"not an image (.txt)"``.
    """

    path: str
    reason: str


def summarize_skipped(
    skipped: Iterable[Skipped], *, limit: int = SKIPPED_LIMIT, max_reasons: int = 50
) -> dict[str, Any]:
    """A bounded view of a skipped list for reports: the total, counts per reason, a few entries.

    A folder of 100,000 stray files still gives a readable report and a small JSON file.
    A path listed twice counts once, with its first reason. ``shown`` holds the first
    ``limit`` entries in the given order, except that every reason gets at least one
    entry while ``limit`` allows, so one truncated JPEG is not hidden behind thousands
    of text files. Paths and reasons are copied as given: pass them through
    :func:`display_name` first when the result goes into JSON or HTML.

    Args:
        skipped: Records, e.g. :attr:`Dataset.skipped`.
        limit: Most entries in ``shown``.
        max_reasons: Most keys in ``by_reason``; the rarer reasons are added up
            under ``"(other reasons)"``.

    Returns:
        ``{"total": int, "by_reason": {reason: count}, "shown": [{"path", "reason"}]}``,
        ``by_reason`` most common first.

    Example:
        >>> junk = [Skipped(f"/d/a/{i}.txt", "not an image (.txt)") for i in range(1000)]
        >>> out = summarize_skipped(junk + [Skipped("/d/b/x.jpg", "zero-byte file")], limit=3)
        >>> out["total"], out["by_reason"], [s["path"] for s in out["shown"]]
        (1001, {'not an image (.txt)': 1000, 'zero-byte file': 1}, ['/d/a/0.txt', '/d/a/1.txt', '/d/b/x.jpg'])
    """
    first: dict[str, Skipped] = {}
    for item in skipped:
        first.setdefault(item.path, item)
    unique = list(first.values())
    counts = Counter(item.reason for item in unique)

    picked: list[int] = []
    reasons_seen: set[str] = set()
    for i, item in enumerate(unique):
        if len(picked) >= limit:
            break
        if item.reason not in reasons_seen:
            reasons_seen.add(item.reason)
            picked.append(i)
    chosen = set(picked)
    for i in range(len(unique)):
        if len(chosen) >= limit:
            break
        chosen.add(i)

    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    by_reason = dict(ranked[:max_reasons])
    if len(ranked) > max_reasons:
        by_reason["(other reasons)"] = sum(n for _, n in ranked[max_reasons:])
    return {
        "total": len(unique),
        "by_reason": by_reason,
        "shown": [{"path": unique[i].path, "reason": unique[i].reason} for i in sorted(chosen)],
    }
