"""The benchmark: train each strategy on the user's data and compare, fairly, fast, resumably.

``advisor recommend`` predicts whether an ImageNet-pretrained CNN is worth using; this module
measures it. For every backbone, seed and strategy it trains one run on the same split and
reports top-1 accuracy, macro-F1, wall time, throughput, peak memory and a per-epoch
validation curve, then applies a cost-aware rule (:func:`verdict`).

Strategies are small objects with named hooks (:class:`Strategy`), registered in
:data:`STRATEGIES`:

- ``freeze``: the backbone is frozen (BatchNorm in eval mode) and a new linear classifier is
  trained on its embeddings, extracted once by :func:`advisor.profile.extract_features` (and
  cached on disk), so no backbone forward pass is repeated per epoch.
- ``partial``: only the last stage(s) of the backbone and the head are trained.
- ``finetune``: every layer is trained, the backbone at a lower learning rate than the head.
- ``freeze_unfreeze``: the head alone for the first third of the epochs, then every layer.
- ``scratch``: the same architecture from random weights (what "not worth using" is measured
  against).

Protocol: the folder's own validation split when it has one, else a seeded stratified split
per seed; the same epochs, image size and augmentation for every strategy that trains the
network; the reported accuracy is the final epoch's (no selection of the best epoch on the
validation split). With ``tune=True`` each strategy sweeps its learning rates and keeps the
best on the validation split, which the recipe says.

Interrupting is safe: each finished run is appended atomically to a JSON-lines results file,
and rerunning the same command skips the finished runs (see :func:`run_key`).

Example:
    >>> from advisor.demo import make_demo                       # doctest: +SKIP
    >>> result = bench(make_demo("/tmp/demo", "digits"), ["efficientnet_lite0"],
    ...                config=BenchConfig(epochs=4, image_size=64),
    ...                results_file="/tmp/demo/runs.jsonl")       # doctest: +SKIP
    >>> result.winner["verdict"]                                  # doctest: +SKIP
    'finetune'
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import platform
import random
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from advisor import __version__, metrics
from advisor.backbones import Backbone, Preprocessing, backbone_info, get_backbone
from advisor.data import (
    Dataset,
    ImageFolder,
    Sample,
    Skipped,
    collate_skipping,
    scan,
    stratified_sample,
    stratified_split,
)
from advisor.profile import default_workers, extract_features, resolve_device, summarize_dataset

__all__ = [
    "STRATEGIES",
    "TUNE_FACTORS",
    "BenchConfig",
    "BenchResult",
    "Finetune",
    "Freeze",
    "FreezeUnfreeze",
    "Partial",
    "Recipe",
    "RunResult",
    "Scratch",
    "Strategy",
    "append_result",
    "bench",
    "freeze",
    "get_strategy",
    "list_strategies",
    "make_trainable",
    "rank_correlation",
    "read_results",
    "run_key",
    "summarize_runs",
    "train_run",
    "verdict",
]

KEY_VERSION = 1
#: Learning-rate multipliers swept per strategy with ``tune=True``.
TUNE_FACTORS: tuple[float, ...] = (0.3, 1.0, 3.0)
#: Decoded, resized images are kept in memory for later epochs when they fit in this.
MEMORY_CACHE_BYTES = 2 * 1024**3
#: Transferability scores compared with the measured ranking of backbones.
RANK_METRICS = ("linear_probe", "knn_probe", "logme", "leep", "nce", "hscore")
_EPS = 1e-9  # accuracies are means of fractions: compare them with a little slack
_BN = nn.modules.batchnorm._BatchNorm


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BenchConfig:
    """Options of a benchmark (configuration, kept apart from results).

    Attributes:
        strategies: Names from :data:`STRATEGIES`, in the order they run.
        epochs: Training epochs of every strategy (the same for all, for fairness).
        image_size: Crop size; ``None`` uses each backbone's default.
        batch_size: Images per training step.
        seeds: One run per seed and strategy; several give a mean and a standard deviation.
        device: ``"auto"`` (cuda, mps, cpu), ``"cpu"``, ``"cuda"``, ``"mps"``.
        tune: Sweep :data:`TUNE_FACTORS` times each default learning rate and keep the best
            run on the validation split.
        margin: Verdict margin, as a fraction (0.02 = 2 accuracy points).
        val_fraction: Held-out share when the folder has no validation split.
        num_workers: DataLoader workers; ``None`` picks from the device and the data path.
        cache_dir: Feature cache of ``freeze`` (passed to ``extract_features``; ``""`` disables).
        max_per_class: Cap of training images per class (seeded), for quick runs.
        weights: Weights of the pretrained strategies: ``"imagenet"``, or ``None`` for random
            initialisation (tests and offline smoke runs; the verdict is then meaningless).

    Example:
        >>> BenchConfig(epochs=2, seeds=(0, 1)).to_dict()["seeds"]
        [0, 1]
    """

    strategies: tuple[str, ...] = ("freeze", "finetune", "scratch")
    epochs: int = 8
    image_size: int | None = None
    batch_size: int = 32
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    tune: bool = False
    margin: float = 0.02
    val_fraction: float = 0.2
    num_workers: int | None = None
    cache_dir: str | None = None
    max_per_class: int | None = None
    weights: str | None = "imagenet"

    def __post_init__(self) -> None:
        for name in ("strategies", "seeds"):
            value = getattr(self, name)
            if isinstance(value, (str, int)):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        if not self.strategies:
            raise ValueError("strategies is empty: name at least one of " + ", ".join(STRATEGIES))
        for name in self.strategies:
            get_strategy(name)
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one seed, e.g. (0,)")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.weights not in ("imagenet", None):
            raise ValueError(f"weights must be 'imagenet' or None, not {self.weights!r}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin is a fraction in [0, 1), got {self.margin}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["strategies"], d["seeds"] = list(self.strategies), list(self.seeds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Recipe:
    """How one strategy trains: what the report's recipe table shows.

    Attributes:
        optimizer: ``"adamw"``; ``freeze``'s head: full-batch L-BFGS.
        lr_head: Peak learning rate of the new classifier (L-BFGS: its initial step).
        lr_backbone: Peak learning rate of the trained backbone layers; ``None`` when frozen.
        weight_decay: Decoupled weight decay (AdamW); for the L-BFGS head the L2 strength
            ``lambda`` of ``lambda / (2 n) * ||W||^2``, i.e. sklearn's ``C = 1 / lambda``.
        epochs: Training epochs (curve points).
        batch_size: Images per step (halved after a CUDA out-of-memory error: the final value).
        augment: Training augmentation, in words.
        crop_scale: Area range of the random resized crop; ``None`` for a centre crop.
        flip: Random horizontal flip.
        label_smoothing: Of the cross-entropy loss.
        schedule: Learning-rate schedule, in words.
        warmup: Share of the steps with a linear warm-up.
        trainable: Which layers train, in words.
        train_bn: Whether BatchNorm layers of the backbone update their statistics.
        head_steps: ``freeze`` only: L-BFGS iterations of the head over all epochs.
        unfreeze_epoch: ``freeze_unfreeze`` only: first epoch (0-based) that trains everything.
        lr_sweep: With ``tune``, the multipliers of the default learning rates that were tried.
        lr_scale: The multiplier used (the chosen one with ``tune``).
        selection: How the learning rate was chosen.
    """

    optimizer: str = "adamw"
    lr_head: float = 1e-3
    lr_backbone: float | None = None
    weight_decay: float = 0.05
    epochs: int = 8
    batch_size: int = 32
    augment: str = "none"
    crop_scale: tuple[float, float] | None = None
    flip: bool = False
    label_smoothing: float = 0.0
    schedule: str = "cosine"
    warmup: float = 0.0
    trainable: str = "head"
    train_bn: bool = False
    head_steps: int | None = None
    unfreeze_epoch: int | None = None
    lr_sweep: tuple[float, ...] = ()
    lr_scale: float = 1.0
    selection: str = "defaults, not tuned"

    def scaled(self, factor: float) -> "Recipe":
        """The same recipe with every learning rate multiplied by ``factor``.

        An L-BFGS head has a line search instead of a learning rate: its L2 strength is divided
        by ``factor`` instead (a larger step and less regularisation both fit harder).
        """
        if self.optimizer.startswith("lbfgs"):
            return replace(self, weight_decay=self.weight_decay / factor, lr_scale=factor)
        return replace(
            self,
            lr_head=self.lr_head * factor,
            lr_backbone=None if self.lr_backbone is None else self.lr_backbone * factor,
            lr_scale=factor,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop_scale"] = None if self.crop_scale is None else list(self.crop_scale)
        d["lr_sweep"] = list(self.lr_sweep)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if d.get("crop_scale") is not None:
            d["crop_scale"] = tuple(d["crop_scale"])
        d["lr_sweep"] = tuple(d.get("lr_sweep", ()))
        return cls(**d)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RunResult:
    """One trained (or failed) run: a backbone, a strategy, a seed.

    Attributes:
        backbone: Registry name.
        strategy: Strategy name.
        seed: Seed of the split, the initialisation and the data order.
        status: ``"ok"`` or ``"failed"``.
        error: The exception, for a failed run.
        val_accuracy: Top-1 accuracy on the validation split after the last epoch.
        macro_f1: Macro-averaged F1 on the validation split.
        train_seconds: Wall time of the run (for ``freeze``: feature extraction + head).
        images_per_second: Training images processed per second of training steps (for
            ``freeze``: training images x epochs over extraction + head time).
        peak_memory_mb: CUDA: ``max_memory_allocated``; CPU: the process's peak RSS so far
            (``details["memory"]`` says which).
        epochs_to_90: First epoch (1-based) reaching 90 % of the run's best accuracy.
        curve: Per epoch ``{"epoch", "train_loss", "val_accuracy"}``.
        recipe: The :class:`Recipe` actually used, as a dict.
        key: Identity for resuming (:func:`run_key`).
        trained: ``True`` when trained by this call, ``False`` when read from a results file.
        details: Extra facts: images, device, feature cache use, timing split.
    """

    backbone: str
    strategy: str
    seed: int
    status: str
    error: str | None = None
    val_accuracy: float | None = None
    macro_f1: float | None = None
    train_seconds: float | None = None
    images_per_second: float | None = None
    peak_memory_mb: float | None = None
    epochs_to_90: int | None = None
    curve: tuple[dict[str, float], ...] = ()
    recipe: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    trained: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.val_accuracy is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["curve"] = [dict(p) for p in self.curve]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunResult":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["curve"] = tuple(dict(p) for p in d.get("curve") or ())
        d["recipe"] = dict(d.get("recipe") or {})
        d["details"] = dict(d.get("details") or {})
        d["seed"] = int(d["seed"])
        return cls(**d)


@dataclass(frozen=True)
class BenchResult:
    """The benchmark's result; :meth:`to_dict` is what :func:`advisor.report.write_bench_report` renders.

    Attributes:
        dataset: :class:`~advisor.profile.DatasetSummary` as a dict.
        protocol: Split, image counts, epochs, image size, batch size, seeds, margin, tuning.
        runs: Every run, finished or failed.
        summary: Per backbone and strategy: seeds, mean and standard deviation of accuracy,
            mean macro-F1, mean time.
        winner: ``{"backbone", "strategy", "verdict", "accuracy", "rule", "per_backbone"}``.
        recommendation: The advice being checked (``advisor recommend``'s dict), if any.
        agreement: Whether the advice's strategy equals the verdict; ``None`` without advice.
        rank_correlation: Weighted Kendall tau of each transferability score against the
            measured accuracy per backbone; ``None`` with fewer than two backbones.
        reproduction: Versions, device, seed, options, seconds, command.
        created: ISO time of the result.
    """

    dataset: dict[str, Any]
    protocol: dict[str, Any]
    runs: tuple[RunResult, ...]
    summary: tuple[dict[str, Any], ...]
    winner: dict[str, Any]
    recommendation: dict[str, Any] | None
    agreement: bool | None
    rank_correlation: dict[str, Any] | None
    reproduction: dict[str, Any]
    created: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "kind": "bench",
            "created": self.created,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "runs": [r.to_dict() for r in self.runs],
            "summary": [dict(s) for s in self.summary],
            "winner": self.winner,
            "recommendation": self.recommendation,
            "agreement": self.agreement,
            "rank_correlation": self.rank_correlation,
            "reproduction": self.reproduction,
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchResult":
        return cls(
            dataset=dict(d.get("dataset") or {}),
            protocol=dict(d.get("protocol") or {}),
            runs=tuple(RunResult.from_dict(r) for r in d.get("runs") or ()),
            summary=tuple(dict(s) for s in d.get("summary") or ()),
            winner=dict(d.get("winner") or {}),
            recommendation=d.get("recommendation"),
            agreement=d.get("agreement"),
            rank_correlation=d.get("rank_correlation"),
            reproduction=dict(d.get("reproduction") or {}),
            created=d.get("created") or datetime.now().isoformat(timespec="seconds"),
        )


def _clean(value: Any) -> Any:
    """JSON-ready copy: tuples become lists, NaN/inf become ``None``, numpy scalars plain."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


# --------------------------------------------------------------------------- freezing hooks


def freeze(modules: Sequence[nn.Module], *, train_bn: bool = False) -> None:
    """Stop ``modules`` from training (Lightning's ``BaseFinetuning.freeze``).

    Args:
        modules: Modules whose parameters stop receiving gradients.
        train_bn: Keep BatchNorm layers trainable and in training mode. With ``False`` (the
            policy of a frozen backbone) they are put in eval mode, so their ImageNet
            running statistics are used and never updated.
    """
    for module in modules:
        for m in module.modules():
            if isinstance(m, _BN) and train_bn:
                continue
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)
            if isinstance(m, _BN):
                m.eval()


def make_trainable(modules: Sequence[nn.Module]) -> None:
    """Undo :func:`freeze`: gradients on, BatchNorm back in training mode."""
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(True)
        for m in module.modules():
            if isinstance(m, _BN):
                m.train()


def _leaf_modules(backbone: Backbone) -> list[tuple[str, nn.Module]]:
    """Leaf modules of the backbone, in network order, without the classifier head."""
    head = backbone.head_name
    return [
        (name, m) for name, m in backbone.model.named_modules()
        if name and not any(True for _ in m.children()) and name != head and not name.startswith(head + ".")
    ]


# --------------------------------------------------------------------------- strategies


@dataclass
class _Fit:
    """What one training of one strategy measured (before it becomes a :class:`RunResult`)."""

    val_accuracy: float
    macro_f1: float
    curve: list[dict[str, float]]
    seconds: float
    images_per_second: float
    recipe: Recipe
    details: dict[str, Any] = field(default_factory=dict)


class Strategy:
    """A way to use a backbone, as named hooks around one training loop.

    Subclasses set the class attributes and override the hooks they need:
    :meth:`default_recipe`, :meth:`configure` (new head, what trains, the BatchNorm policy,
    optimiser parameter groups), :meth:`on_train_epoch_start` and, for a different kind of
    training altogether, :meth:`fit`.

    Attributes:
        name: Registry name.
        cost_rank: Cost order used by the verdict (cheapest wins ties): freeze 0, partial 1,
            finetune 2, scratch 2.
        weights: ``"imagenet"`` or ``None`` (random initialisation).
        verdict: What the verdict calls this strategy when it wins, in the advice's vocabulary
            (``advisor.decide.STRATEGIES``: freeze, finetune, not_worth_using), so that
            ``agreement`` compares like with like; ``winner["strategy"]`` keeps the exact name.
        recipe: The :class:`Recipe` it trains with.

    Example:
        >>> s = get_strategy("finetune")()
        >>> s.recipe.lr_backbone < s.recipe.lr_head
        True
    """

    name: ClassVar[str] = ""
    cost_rank: ClassVar[int] = 2
    weights: ClassVar[str | None] = "imagenet"
    verdict: ClassVar[str] = ""

    def __init__(self, recipe: Recipe | None = None) -> None:
        self.recipe = recipe if recipe is not None else self.default_recipe(BenchConfig())
        self.frozen: list[nn.Module] = []  # modules whose BatchNorm stays in eval mode

    @classmethod
    def is_pretrained(cls) -> bool:
        """Whether it starts from pretrained weights (what the verdict compares with scratch)."""
        return cls.weights is not None

    def with_recipe(self, recipe: Recipe) -> "Strategy":
        return type(self)(recipe)

    def default_recipe(self, config: BenchConfig) -> Recipe:
        raise NotImplementedError

    def build(self, backbone_name: str, *, weights: str | None = "imagenet") -> Backbone:
        """The network this strategy starts from; ``weights=None`` forces random weights."""
        return get_backbone(backbone_name, weights=self.weights if weights is not None else None)

    def configure(self, backbone: Backbone, num_classes: int) -> list[dict[str, Any]]:
        """Replace the head, decide what trains; returns the optimiser's parameter groups."""
        raise NotImplementedError

    def on_train_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called after ``model.train()`` each epoch: frozen BatchNorm goes back to eval."""
        for module in self.frozen:
            for m in module.modules():
                if isinstance(m, _BN):
                    m.eval()

    def fit(self, backbone: Backbone, data: "_RunData", env: "_Env") -> _Fit:
        """Train and evaluate; the default trains the network end to end (:func:`_fit_network`)."""
        return _fit_network(self, backbone, data, env)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr_head={self.recipe.lr_head:g}, lr_backbone={self.recipe.lr_backbone})"


def _network_recipe(config: BenchConfig, **kwargs: Any) -> Recipe:
    """The augmentation and schedule shared by every strategy that trains the network."""
    base = dict(
        optimizer="adamw", weight_decay=0.05, epochs=config.epochs, batch_size=config.batch_size,
        augment="random resized crop, scale (0.5, 1), + horizontal flip", crop_scale=(0.5, 1.0),
        flip=True, label_smoothing=0.1, schedule="linear warm-up (10 % of steps), then cosine to 0",
        warmup=0.1, train_bn=True,
    )
    base.update(kwargs)
    return Recipe(**base)


class Freeze(Strategy):
    """Frozen backbone, BatchNorm in eval mode; a linear head on its cached embeddings.

    The embeddings of the train and validation images are extracted once (eval transform,
    cached on disk by :func:`advisor.profile.extract_features`), standardised, and a linear
    head is fitted on them with full-batch L-BFGS and an L2 penalty; the standardisation is then folded into the head, so
    ``backbone.forward`` gives the same predictions. ``train_seconds`` is the extraction time
    (of the first extraction when the features came from the cache) plus the head's.
    """

    name = "freeze"
    cost_rank = 0
    verdict = "freeze"

    def default_recipe(self, config: BenchConfig) -> Recipe:
        return Recipe(
            optimizer="lbfgs (full batch, strong Wolfe line search)", lr_head=1.0, lr_backbone=None,
            weight_decay=1.0, epochs=config.epochs, batch_size=config.batch_size,
            augment="none (embeddings of the eval transform, cached)", label_smoothing=0.0,
            schedule="none (line search)", trainable="head (on standardised embeddings)", train_bn=False,
            head_steps=400,
        )

    def configure(self, backbone: Backbone, num_classes: int) -> list[dict[str, Any]]:
        head = backbone.replace_head(num_classes)
        self.frozen = [m for _, m in _leaf_modules(backbone)]
        freeze(self.frozen, train_bn=False)
        for p in backbone.backbone_parameters():  # parameters held by non-leaf modules, if any
            p.requires_grad_(False)
        return [{"params": list(head.parameters()), "lr": self.recipe.lr_head, "name": "head"}]

    def fit(self, backbone: Backbone, data: "_RunData", env: "_Env") -> _Fit:
        return _fit_head_on_embeddings(self, backbone, data, env)


class Finetune(Strategy):
    """Every layer trains; the backbone at a third of the head's learning rate.

    Defaults (AdamW, head 3e-3, backbone 1e-3, 10 % warm-up then cosine to 0, label smoothing
    0.1, random resized crop with scale (0.5, 1) + flip) avoid the two ways a plain recipe
    makes fine-tuning lose to freezing in a few epochs: a backbone learning rate too low to
    move, and crops so strong that a small dataset no longer looks like itself. Measured with
    efficientnet_lite0, 6 epochs, seed 0: on digits (64 px, 320 train images) these defaults
    reach 80.0 % where head 2e-3 / backbone 2e-4 reaches 58.8 %, head 1e-3 / backbone 1e-4
    48.8 % and scale (0.08, 1) crops 46.3 % (freeze: 81.2 %); on hymenoptera (128 px, near
    ImageNet) they match the gentler 2e-3 / 2e-4 (88.2 % both; freeze 82.4 %).
    """

    name = "finetune"
    cost_rank = 2
    verdict = "finetune"

    def default_recipe(self, config: BenchConfig) -> Recipe:
        return _network_recipe(config, lr_head=3e-3, lr_backbone=1e-3, trainable="all layers")

    def configure(self, backbone: Backbone, num_classes: int) -> list[dict[str, Any]]:
        head = backbone.replace_head(num_classes)
        make_trainable([backbone.model])
        self.frozen = []
        return [
            {"params": list(backbone.backbone_parameters()), "lr": self.recipe.lr_backbone, "name": "backbone"},
            {"params": list(head.parameters()), "lr": self.recipe.lr_head, "name": "head"},
        ]


class Partial(Strategy):
    """Only the last stage(s) and the head train; the rest is frozen with BatchNorm in eval.

    The trained tail is the shortest run of final stages (``Backbone.stage_of`` on module
    names) that holds at least a quarter of the backbone's parameters: ``layer4`` of a ResNet,
    the last blocks and the 1x1 head convolution of an EfficientNet.
    """

    name = "partial"
    cost_rank = 1
    verdict = "finetune"  # the advice's vocabulary (advisor.decide.STRATEGIES) has no "partial"
    tail_share: ClassVar[float] = 0.25

    def default_recipe(self, config: BenchConfig) -> Recipe:
        return _network_recipe(config, lr_head=3e-3, lr_backbone=1e-3, trainable="last stage(s) + head")

    def configure(self, backbone: Backbone, num_classes: int) -> list[dict[str, Any]]:
        head = backbone.replace_head(num_classes)
        stages: dict[str, list[nn.Module]] = {}
        for name, m in _leaf_modules(backbone):
            stages.setdefault(backbone.stage_of(name), []).append(m)
        sizes = {s: sum(p.numel() for m in ms for p in m.parameters()) for s, ms in stages.items()}
        total, tail, acc = sum(sizes.values()), [], 0
        for stage in reversed([s for s in stages if sizes[s] > 0]):
            tail.append(stage)
            acc += sizes[stage]
            if acc >= self.tail_share * total:
                break
        self.frozen = [m for s, ms in stages.items() if s not in tail for m in ms]
        make_trainable([backbone.model])
        freeze(self.frozen, train_bn=False)
        tail_params = [p for s in tail for m in stages[s] for p in m.parameters()]
        self.recipe = replace(self.recipe, trainable=" + ".join(reversed(tail)) + " + head")
        return [
            {"params": tail_params, "lr": self.recipe.lr_backbone, "name": "backbone"},
            {"params": list(head.parameters()), "lr": self.recipe.lr_head, "name": "head"},
        ]


class FreezeUnfreeze(Finetune):
    """The head alone (backbone frozen, BatchNorm in eval) for the first third, then everything."""

    name = "freeze_unfreeze"
    cost_rank = 2
    verdict = "finetune"

    def default_recipe(self, config: BenchConfig) -> Recipe:
        return _network_recipe(
            config, lr_head=3e-3, lr_backbone=1e-3, unfreeze_epoch=max(1, config.epochs // 3),
            trainable="head, then all layers from unfreeze_epoch",
        )

    def configure(self, backbone: Backbone, num_classes: int) -> list[dict[str, Any]]:
        groups = super().configure(backbone, num_classes)
        self.frozen = [m for _, m in _leaf_modules(backbone)]
        freeze(self.frozen, train_bn=False)
        return groups  # AdamW skips parameters without gradients until they are unfrozen

    def on_train_epoch_start(self, model: nn.Module, epoch: int) -> None:
        if self.frozen and epoch >= (self.recipe.unfreeze_epoch or 0):
            make_trainable(self.frozen)
            self.frozen = []
        super().on_train_epoch_start(model, epoch)


class Scratch(Finetune):
    """The same architecture from random weights, at a higher learning rate everywhere.

    Configured like :class:`Finetune` (every layer trains, two parameter groups), only the
    weights and the recipe differ.
    """

    name = "scratch"
    cost_rank = 2
    weights = None
    verdict = "not_worth_using"

    def default_recipe(self, config: BenchConfig) -> Recipe:
        return _network_recipe(config, lr_head=3e-3, lr_backbone=3e-3, trainable="all layers (random init)")


STRATEGIES: dict[str, type[Strategy]] = {}


def _register(cls: type[Strategy]) -> None:
    if cls.name in STRATEGIES:
        raise ValueError(f"strategy {cls.name!r} is already registered")
    STRATEGIES[cls.name] = cls


for _cls in (Freeze, Partial, Finetune, FreezeUnfreeze, Scratch):
    _register(_cls)


def list_strategies() -> list[str]:
    """Registered strategy names, cheapest first.

    Example:
        >>> list_strategies()
        ['freeze', 'partial', 'finetune', 'freeze_unfreeze', 'scratch']
    """
    return list(STRATEGIES)


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered as ``name``.

    Raises:
        ValueError: Unknown name; the message lists the valid ones.

    Example:
        >>> get_strategy("freeze").cost_rank
        0
    """
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}") from None


# --------------------------------------------------------------------------- data


class _ImageStore:
    """Images decoded and resized once (shorter side = resize size, uint8 CHW), kept in memory.

    Later epochs then only pay for the random crop and flip. The store gives up (and frees
    itself) when the images would take more than ``limit_bytes``; training then streams from
    disk instead.
    """

    def __init__(self, prep: Preprocessing, limit_bytes: int = MEMORY_CACHE_BYTES) -> None:
        self.resize_size = prep.resize_size
        self.interpolation = prep.interpolation
        self.limit_bytes = limit_bytes
        self.images: dict[str, torch.Tensor] = {}
        self.failures: dict[str, Skipped] = {}
        self.nbytes = 0
        self.enabled = True
        self.seconds = 0.0

    def ensure(self, samples: Sequence[Sample], num_workers: int) -> bool:
        """Decode what is missing; ``False`` when the store does not fit in memory."""
        if not self.enabled:
            return False
        todo = [s for s in samples if s.path not in self.images and s.path not in self.failures]
        if self.nbytes + len(todo) * 3 * self.resize_size**2 > self.limit_bytes:
            self._give_up()
            return False
        if not todo:
            return True
        start = time.perf_counter()
        resize = T.Resize(self.resize_size, interpolation=T.InterpolationMode(self.interpolation), antialias=True)
        folder = ImageFolder(todo, lambda im: np.array(resize(im)), draft_size=(self.resize_size,) * 2)
        loader = torch.utils.data.DataLoader(
            folder, batch_size=16, num_workers=num_workers, collate_fn=collate_skipping,
            prefetch_factor=4 if num_workers > 0 else None,
        )
        for arrays, _labels, indices, failed in loader:
            for f in failed:
                self.failures[f.path] = Skipped(f.path, f.reason)
            for array, i in zip(arrays, indices.tolist()):
                image = torch.from_numpy(array).permute(2, 0, 1).contiguous()
                self.images[todo[i].path] = image
                self.nbytes += image.numel()
            if self.nbytes > self.limit_bytes:
                self._give_up()
                return False
        self.seconds += time.perf_counter() - start
        return True

    def _give_up(self) -> None:
        self.images.clear()
        self.enabled = False
        self.nbytes = 0


class _AugmentedImages(torch.utils.data.Dataset):
    """Training view of in-memory images: random resized crop + flip on uint8 tensors."""

    def __init__(self, images: list[torch.Tensor], labels: list[int], size: int, recipe: Recipe,
                 interpolation: str) -> None:
        self.images, self.labels, self.size = images, labels, size
        self.scale, self.flip = recipe.crop_scale, recipe.flip
        self.interpolation = T.InterpolationMode(interpolation)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        img = self.images[i]
        if self.scale is not None:
            top, left, h, w = T.RandomResizedCrop.get_params(img, list(self.scale), [3 / 4, 4 / 3])
            img = TF.resized_crop(img, top, left, h, w, [self.size, self.size],
                                  interpolation=self.interpolation, antialias=True)
        else:
            img = TF.center_crop(img, [self.size, self.size])
        if self.flip and torch.rand(1).item() < 0.5:
            img = img.flip(-1)
        return img, self.labels[i], i


@dataclass
class _RunData:
    """The split one run trains and validates on."""

    train: list[Sample]
    val: list[Sample]
    num_classes: int


@dataclass
class _Env:
    """Everything about where and how runs execute, shared by the runs of one ``bench`` call."""

    device: torch.device
    image_size: int | None
    num_workers: int | None
    cache_dir: str | None
    fingerprint: str
    weights: str | None = "imagenet"
    seed: int = 0
    progress: bool = False
    stores: dict[tuple[int, str], _ImageStore] = field(default_factory=dict)
    failures: dict[str, Skipped] = field(default_factory=dict)
    memory_cache: bool = True

    @property
    def amp_dtype(self) -> torch.dtype | None:
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None

    def workers(self, *, in_memory: bool) -> int:
        if self.num_workers is not None:
            return self.num_workers
        if in_memory and self.device.type == "cpu":
            return 0  # crops of decoded images are cheap; workers would compete for the cores
        return default_workers()

    def store(self, prep: Preprocessing) -> _ImageStore | None:
        if not self.memory_cache:
            return None
        key = (prep.resize_size, prep.interpolation)
        if key not in self.stores:
            self.stores[key] = _ImageStore(prep)
        return self.stores[key]


def _seed_worker(_worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _collate_memory(batch: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    images = torch.stack([b[0] for b in batch])
    labels = torch.tensor([b[1] for b in batch], dtype=torch.int64)
    return images, labels, torch.tensor([b[2] for b in batch]), []


class _Loaders:
    """Training batches (uint8, augmented) and validation batches for one run."""

    def __init__(self, data: _RunData, prep: Preprocessing, recipe: Recipe, env: _Env, seed: int) -> None:
        self.env = env
        size = prep.image_size
        store = env.store(prep)
        self.in_memory = store is not None and store.ensure(
            data.train + data.val, default_workers() if env.num_workers is None else env.num_workers)
        generator = torch.Generator()
        generator.manual_seed(seed)
        if self.in_memory:
            for path, fail in store.failures.items():
                env.failures[path] = fail
            train = [s for s in data.train if s.path in store.images]
            val = [s for s in data.val if s.path in store.images]
            train_set: torch.utils.data.Dataset = _AugmentedImages(
                [store.images[s.path] for s in train], [s.label for s in train], size, recipe, prep.interpolation)
            collate: Callable = _collate_memory
            # Validation crops never change: make them once, as one uint8 tensor.
            self.val_images = torch.stack([TF.center_crop(store.images[s.path], [size, size]) for s in val]) \
                if val else torch.empty(0, 3, size, size, dtype=torch.uint8)
            self.val_labels = torch.tensor([s.label for s in val], dtype=torch.int64)
            self.val_loader = None
        else:
            interp = T.InterpolationMode(prep.interpolation)
            steps: list[Callable] = []
            if recipe.crop_scale is not None:
                steps.append(T.RandomResizedCrop(size, scale=recipe.crop_scale, interpolation=interp, antialias=True))
            else:
                steps += [T.Resize(prep.resize_size, interpolation=interp, antialias=True), T.CenterCrop(size)]
            if recipe.flip:
                steps.append(T.RandomHorizontalFlip())
            steps.append(T.PILToTensor())
            draft = (prep.resize_size, prep.resize_size)
            train_set = ImageFolder(data.train, T.Compose(steps), draft_size=draft)
            collate = collate_skipping
            val_tf = T.Compose([T.Resize(prep.resize_size, interpolation=interp, antialias=True),
                                T.CenterCrop(size), T.PILToTensor()])
            workers = env.workers(in_memory=False)
            self.val_loader = torch.utils.data.DataLoader(
                ImageFolder(data.val, val_tf, draft_size=draft), batch_size=recipe.batch_size * 2,
                num_workers=workers, collate_fn=collate_skipping, pin_memory=env.device.type == "cuda",
                persistent_workers=workers > 0,
            )
            train = data.train
        self.n_train = len(train)
        workers = env.workers(in_memory=self.in_memory)
        self.train_loader = torch.utils.data.DataLoader(
            train_set, batch_size=recipe.batch_size, shuffle=True, drop_last=len(train) > recipe.batch_size,
            num_workers=workers, collate_fn=collate, pin_memory=env.device.type == "cuda",
            persistent_workers=workers > 0, generator=generator, worker_init_fn=_seed_worker,
            prefetch_factor=4 if workers > 0 else None,
        )
        self.batch_size = recipe.batch_size

    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, _indices, failed in self.train_loader:
            for f in failed:
                self.env.failures[f.path] = Skipped(f.path, f.reason)
            if len(labels):
                yield images, labels

    def val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.val_loader is None:
            step = self.batch_size * 2
            for i in range(0, len(self.val_labels), step):
                yield self.val_images[i:i + step], self.val_labels[i:i + step]
            return
        for images, labels, _indices, failed in self.val_loader:
            for f in failed:
                self.env.failures[f.path] = Skipped(f.path, f.reason)
            if len(labels):
                yield images, labels

    def steps_per_epoch(self) -> int:
        return max(1, len(self.train_loader))


# --------------------------------------------------------------------------- training


def _normaliser(prep: Preprocessing, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    def normalise(x: torch.Tensor) -> torch.Tensor:
        # uint8 travels to the device (4x less to copy); the float conversion happens there.
        # channels_last: 1.7x faster training for efficientnet_lite0 on CPU too, 1.1x for resnet18.
        return prep.normalize(x.to(device, non_blocking=True)).contiguous(memory_format=torch.channels_last)

    return normalise


def _schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    warm = int(round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    if len(y_true) == 0:
        return float("nan"), float("nan")
    acc = float(np.mean(y_true == y_pred))
    f1 = float(f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true), zero_division=0))
    return acc, f1


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False)


def _fit_network(strategy: Strategy, backbone: Backbone, data: _RunData, env: _Env) -> _Fit:
    """The end-to-end training loop shared by every strategy that trains the network."""
    start = time.perf_counter()
    recipe = strategy.recipe
    dev = env.device
    prep = backbone.preprocessing.at_size(env.image_size)
    groups = strategy.configure(backbone, data.num_classes)
    recipe = strategy.recipe  # configure may describe what it chose (Partial's tail)
    model = backbone.model.to(dev).to(memory_format=torch.channels_last)
    loaders = _Loaders(data, prep, recipe, env, env.seed)
    normalise = _normaliser(prep, dev)
    optimizer = torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)
    total_steps = recipe.epochs * loaders.steps_per_epoch()
    scheduler = _schedule(optimizer, total_steps, recipe.warmup)
    amp = env.amp_dtype
    curve: list[dict[str, float]] = []
    train_time, images_seen = 0.0, 0
    bar = _progress_bar(total_steps, f"{backbone.name} {strategy.name} s{env.seed}", env.progress)
    y_true = y_pred = np.empty(0, dtype=np.int64)
    try:
        for epoch in range(recipe.epochs):
            model.train()
            strategy.on_train_epoch_start(model, epoch)
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=dev)
            n_seen = 0
            for images, labels in loaders.train_batches():
                x = normalise(images)
                y = labels.to(dev, non_blocking=True)
                with torch.autocast(dev.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                    logits = backbone.forward(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach() * len(y)
                n_seen += len(y)
                if bar is not None:
                    bar.update(1)
            _sync(dev)
            train_time += time.perf_counter() - t0
            images_seen += n_seen
            y_true, y_pred = _predict(backbone, loaders, normalise, amp, dev)
            acc, _ = _scores(y_true, y_pred)
            train_loss = float(loss_sum.item() / max(1, n_seen))
            curve.append({"epoch": epoch + 1, "train_loss": train_loss, "val_accuracy": acc})
            if bar is not None:
                bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{acc:.3f}")
    finally:
        if bar is not None:
            bar.close()
    accuracy, f1 = _scores(y_true, y_pred)
    return _Fit(
        val_accuracy=accuracy, macro_f1=f1, curve=curve, seconds=time.perf_counter() - start,
        images_per_second=images_seen / train_time if train_time > 0 else float("nan"), recipe=recipe,
        details={"n_train": loaders.n_train, "n_val": int(len(y_true)), "in_memory": loaders.in_memory,
                 "train_step_seconds": train_time},
    )


def _predict(backbone: Backbone, loaders: _Loaders, normalise: Callable, amp: torch.dtype | None,
             dev: torch.device) -> tuple[np.ndarray, np.ndarray]:
    backbone.model.eval()
    trues, preds = [], []
    with torch.inference_mode():
        for images, labels in loaders.val_batches():
            with torch.autocast(dev.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                logits = backbone.forward(normalise(images))
            preds.append(logits.argmax(1).cpu())
            trues.append(labels)
    if not trues:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return torch.cat(trues).numpy(), torch.cat(preds).numpy()


def _fit_head_on_embeddings(strategy: Strategy, backbone: Backbone, data: _RunData, env: _Env) -> _Fit:
    """``freeze``: embeddings once (cached), then a linear head trained on them."""
    start = time.perf_counter()
    recipe = strategy.recipe
    # Random weights differ with every seed, and the cache key cannot tell them apart.
    cache_dir = env.cache_dir if backbone.pretrained else ""
    # Freeze needs no BatchNorm statistics: skipping them makes the pass faster (the cache key
    # records the choice, so these entries never answer the profiler).
    common = dict(image_size=env.image_size, batch_size=recipe.batch_size, num_workers=env.num_workers,
                  device=env.device, cache_dir=cache_dir, fingerprint=env.fingerprint,
                  collect_bn=False, progress=env.progress)
    # Extract before the head is replaced, so the cached logits are ImageNet's like every
    # other entry of the feature cache.
    train_f = extract_features(backbone, data.train, **common)
    val_f = extract_features(backbone, data.val, **common)
    for f in train_f.failures + val_f.failures:
        env.failures[f.path] = f
    extraction = (time.perf_counter() - start) if not (train_f.cached and val_f.cached) else 0.0
    # A cached extraction still cost its first pass: report that cost, not zero.
    extraction_cost = sum(f.seconds if f.cached else 0.0 for f in (train_f, val_f)) + extraction

    head_start = time.perf_counter()
    # The extraction's DataLoader draws from the global RNG, a cache hit does not: reseed so
    # the head starts the same either way.
    _seed_everything(env.seed)
    groups = strategy.configure(backbone, data.num_classes)
    head = backbone.head
    x_train = torch.from_numpy(train_f.embeddings).float()
    y_train = torch.from_numpy(train_f.labels).long()
    x_val = torch.from_numpy(val_f.embeddings).float()
    y_val = val_f.labels.astype(np.int64)
    mean = x_train.mean(0)
    std = x_train.std(0, unbiased=False).clamp_min(1e-6)
    xs_train, xs_val = (x_train - mean) / std, (x_val - mean) / std

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        return head(x) if isinstance(head, nn.Linear) else head(x[:, :, None, None]).flatten(1)

    head.to("cpu").train()
    n = len(y_train)
    # Full-batch L-BFGS on the cross-entropy plus an L2 penalty lambda/(2n)*||W||^2: the
    # problem of sklearn's LogisticRegression(C=1/lambda), the profiler's linear probe. It
    # converges in tens of iterations where minibatch AdamW needed hundreds of steps and still
    # ended 11 points lower on digits (efficientnet_lite0, 64 px).
    iters = max(1, math.ceil((recipe.head_steps or 1) / recipe.epochs))
    optimizer = torch.optim.LBFGS([p for g in groups for p in g["params"]], lr=recipe.lr_head, max_iter=iters,
                                  history_size=20, line_search_fn="strong_wolfe")
    l2 = recipe.weight_decay / n

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits_of(xs_train), y_train, label_smoothing=recipe.label_smoothing)
        loss = loss + 0.5 * l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    curve = []
    for epoch in range(recipe.epochs):
        optimizer.step(closure)
        with torch.no_grad():
            train_loss = float(F.cross_entropy(logits_of(xs_train), y_train))
            acc, _ = _scores(y_val, logits_of(xs_val).argmax(1).numpy())
        curve.append({"epoch": epoch + 1, "train_loss": train_loss, "val_accuracy": acc})
    with torch.no_grad():
        y_pred = logits_of(xs_val).argmax(1).numpy()
        # Fold the standardisation into the head: backbone.forward now predicts the same.
        weight = head.weight.view(head.weight.shape[0], -1) / std
        head.bias -= weight @ mean
        head.weight.copy_(weight.view_as(head.weight))
    head.to(env.device)
    head_seconds = time.perf_counter() - head_start
    accuracy, f1 = _scores(y_val, y_pred)
    seconds = extraction_cost + head_seconds
    return _Fit(
        val_accuracy=accuracy, macro_f1=f1, curve=curve, seconds=seconds,
        images_per_second=n * recipe.epochs / seconds if seconds > 0 else float("nan"),
        recipe=replace(recipe, head_steps=recipe.epochs * iters),
        details={"n_train": int(n), "n_val": int(len(y_val)), "features_cached": bool(train_f.cached and val_f.cached),
                 "extraction_seconds": extraction_cost, "head_seconds": head_seconds,
                 "lbfgs_iterations_per_epoch": iters},
    )


# --------------------------------------------------------------------------- one run


def _peak_memory_mb(device: torch.device) -> tuple[float | None, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA max_memory_allocated during the run"
    try:
        import resource
    except ImportError:  # Windows
        return None, "not measured"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, KiB on Linux
    return rss / scale, "peak RSS of the whole process so far (CPU)"


def _epochs_to_90(curve: Sequence[dict[str, float]]) -> int | None:
    accs = [p["val_accuracy"] for p in curve if p.get("val_accuracy") is not None and math.isfinite(p["val_accuracy"])]
    if not accs:
        return None
    target = 0.9 * max(accs)
    return next(int(p["epoch"]) for p in curve if p["val_accuracy"] >= target - _EPS)


def _fit_once(strategy: Strategy, backbone_name: str, data: _RunData, env: _Env) -> _Fit:
    """Build and train; on CUDA out-of-memory halve the batch size and try again."""
    while True:
        _seed_everything(env.seed)
        if env.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(env.device)
        try:
            return strategy.fit(strategy.build(backbone_name, weights=env.weights), data, env)
        except torch.cuda.OutOfMemoryError:
            batch = strategy.recipe.batch_size
            if batch <= 1:
                raise
            strategy = strategy.with_recipe(replace(strategy.recipe, batch_size=batch // 2))
            gc.collect()
            torch.cuda.empty_cache()


def train_run(strategy: str | Strategy, backbone: str, train: Sequence[Sample], val: Sequence[Sample], *,
              num_classes: int, config: BenchConfig = BenchConfig(), seed: int = 0,
              fingerprint: str = "", env: _Env | None = None) -> RunResult:
    """Train one strategy on one split and measure it; exceptions propagate.

    :func:`bench` calls this for every run (and records exceptions as failed runs). With
    ``config.tune`` it trains once per multiplier in :data:`TUNE_FACTORS` and keeps the best
    validation accuracy.

    Args:
        strategy: A registry name or a :class:`Strategy` (its recipe is used as is).
        backbone: Backbone registry name.
        train: Training samples.
        val: Validation samples.
        num_classes: Width of the new head.
        config: Epochs, image size, batch size, device, tuning.
        seed: Seed of initialisation, data order and augmentation.
        fingerprint: Dataset fingerprint (feature cache key).

    Example:
        >>> run = train_run("freeze", "resnet18", train, val, num_classes=10,
        ...                 config=BenchConfig(epochs=2, image_size=32))  # doctest: +SKIP
        >>> run.status, 0 <= run.val_accuracy <= 1  # doctest: +SKIP
        ('ok', True)
    """
    if env is None:
        env = _Env(device=resolve_device(config.device), image_size=config.image_size,
                   num_workers=config.num_workers, cache_dir=config.cache_dir, fingerprint=fingerprint,
                   weights=config.weights)
    env.seed = seed
    if isinstance(strategy, str):
        strategy = get_strategy(strategy)()
        strategy = strategy.with_recipe(strategy.default_recipe(config))
    data = _RunData(list(train), list(val), num_classes)
    start = time.perf_counter()
    factors = TUNE_FACTORS if config.tune else (1.0,)
    best: _Fit | None = None
    for factor in factors:
        fit = _fit_once(strategy.with_recipe(strategy.recipe.scaled(factor)), backbone, data, env)
        if best is None or fit.val_accuracy > best.val_accuracy + _EPS:
            best = fit
    assert best is not None
    recipe = best.recipe
    if config.tune:
        recipe = replace(recipe, lr_sweep=factors,
                         selection=f"learning rate x{recipe.lr_scale:g} of the default (L-BFGS head: L2 strength "
                                   f"/{recipe.lr_scale:g}), best of "
                                   f"{', '.join(f'x{f:g}' for f in factors)} on the validation split")
    memory, memory_note = _peak_memory_mb(env.device)
    details = dict(best.details, device=str(env.device), memory=memory_note,
                   amp=str(env.amp_dtype).replace("torch.", "") if env.amp_dtype else None)
    if config.tune:
        details["tuning_seconds"] = time.perf_counter() - start
    return RunResult(
        backbone=backbone, strategy=strategy.name, seed=int(seed), status="ok",
        val_accuracy=best.val_accuracy, macro_f1=best.macro_f1, train_seconds=best.seconds,
        images_per_second=best.images_per_second, peak_memory_mb=memory,
        epochs_to_90=_epochs_to_90(best.curve), curve=tuple(best.curve), recipe=recipe.to_dict(),
        details=details,
    )


# --------------------------------------------------------------------------- results file


def run_key(*, fingerprint: str, backbone: str, strategy: str, seed: int, recipe: Recipe | dict,
            image_size: int, config: BenchConfig) -> str:
    """Identity of a run: the same key means the same training, so a finished one is reused.

    Hashes the dataset fingerprint, backbone, strategy, seed, the default recipe (which holds
    the epochs and batch size), the image size and the options that change the split or the
    selection (validation fraction, cap per class, tuning).
    """
    payload = {
        "v": KEY_VERSION, "dataset": fingerprint, "backbone": backbone, "strategy": strategy,
        "seed": int(seed), "recipe": recipe.to_dict() if isinstance(recipe, Recipe) else recipe,
        "epochs": config.epochs, "image_size": int(image_size), "batch_size": config.batch_size,
        "val_fraction": config.val_fraction, "max_per_class": config.max_per_class, "tune": config.tune,
    }
    return hashlib.sha256(json.dumps(_clean(payload), sort_keys=True).encode()).hexdigest()[:24]


def read_results(path: str | os.PathLike) -> list[RunResult]:
    """Runs recorded in a JSON-lines results file; unreadable lines (a torn last one) are skipped.

    Every run read back has ``trained=False``.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return []
    runs = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            runs.append(replace(RunResult.from_dict(json.loads(line)), trained=False))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a line cut by a kill, or not ours: that run is simply redone
    return runs


def append_result(path: str | os.PathLike, run: RunResult) -> None:
    """Append one run as one JSON line, atomically enough to survive a kill at any moment.

    The whole line goes out in one ``os.write`` on an ``O_APPEND`` descriptor and is
    ``fsync``-ed before returning. If the file ends in a torn line, a newline is written
    first (in the same write), so the new record never glues onto it.
    """
    text = json.dumps(_clean(run.to_dict()), allow_nan=False, sort_keys=True) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    text = "\n" + text
        data = text.encode()
        written = os.write(fd, data)
        while written < len(data):  # regular files do not short-write in practice
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- analysis


def summarize_runs(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Per (backbone, strategy), in first-seen order: seeds, mean/std accuracy, mean F1 and time.

    ``std_accuracy`` is the sample standard deviation over seeds (0 with one seed).

    Example:
        >>> rows = summarize_runs([RunResult("r", "freeze", s, "ok", val_accuracy=a)
        ...                        for s, a in ((0, 0.8), (1, 0.9))])
        >>> round(rows[0]["mean_accuracy"], 3), rows[0]["n_seeds"]
        (0.85, 2)
    """
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.backbone, r.strategy), []).append(r)
    rows = []
    for (b, s), group in groups.items():
        ok = [r for r in group if r.ok]

        def mean(attr: str) -> float | None:
            values = [getattr(r, attr) for r in ok if getattr(r, attr) is not None]
            return float(np.mean(values)) if values else None

        accs = [r.val_accuracy for r in ok]
        rows.append({
            "backbone": b, "strategy": s, "n_seeds": len(ok), "n_failed": len(group) - len(ok),
            "mean_accuracy": mean("val_accuracy"),
            "std_accuracy": float(np.std(accs, ddof=1)) if len(accs) > 1 else (0.0 if accs else None),
            "mean_f1": mean("macro_f1"), "mean_seconds": mean("train_seconds"),
            "mean_images_per_second": mean("images_per_second"),
        })
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _backbone_verdict(backbone: str, means: dict[str, float], margin: float) -> dict[str, Any]:
    points = f"{100 * margin:.1f} points"
    known = {s: a for s, a in means.items() if s in STRATEGIES}
    pretrained = {s: a for s, a in known.items() if STRATEGIES[s].is_pretrained()}
    scratch = {s: a for s, a in known.items() if not STRATEGIES[s].is_pretrained()}
    top = max(means.values()) if means else None
    base = {"backbone": backbone, "top_accuracy": top}
    if not pretrained:
        return {**base, "strategy": None, "verdict": None, "accuracy": None,
                "rule": f"{backbone}: no pretrained strategy finished, so no verdict (margin {points})."}
    best_name = max(pretrained, key=lambda s: pretrained[s])
    best = pretrained[best_name]
    if scratch:
        s_name = max(scratch, key=lambda s: scratch[s])
        s_acc = scratch[s_name]
        if s_acc >= best - margin - _EPS:
            return {**base, "strategy": s_name, "verdict": "not_worth_using", "accuracy": s_acc,
                    "rule": (f"{backbone}: training from scratch reaches {_pct(s_acc)}, within the {points} "
                             f"margin of the best pretrained strategy ({best_name}, {_pct(best)}), so the "
                             "pretrained weights are not worth using.")}
        scratch_clause = f"training from scratch reaches only {_pct(s_acc)}, more than {points} below it"
    else:
        scratch_clause = "training from scratch was not run, so it was not compared"
    close = [s for s, a in pretrained.items() if a >= best - margin - _EPS]
    order = list(STRATEGIES)
    winner = min(close, key=lambda s: (STRATEGIES[s].cost_rank, -pretrained[s], order.index(s)))
    cheapest = (f"{winner} ({_pct(pretrained[winner])}) is the cheapest strategy within {points} of it"
                if winner != best_name else f"no cheaper strategy comes within {points} of it")
    return {**base, "strategy": winner, "verdict": STRATEGIES[winner].verdict, "accuracy": pretrained[winner],
            "rule": (f"{backbone}: the best pretrained strategy is {best_name} at {_pct(best)}; {scratch_clause}; "
                     f"{cheapest}, so: {STRATEGIES[winner].verdict}.")}


def verdict(runs: Sequence[RunResult], *, margin: float) -> dict[str, Any]:
    """The cost-aware rule, per backbone and overall.

    Per backbone, on mean accuracies over seeds of the finished runs: let ``best`` be the
    highest among the pretrained strategies. If training from scratch reaches
    ``best - margin`` the verdict is ``"not_worth_using"``; otherwise the cheapest pretrained
    strategy within ``margin`` of ``best`` wins (freeze before partial before finetune; equal
    cost: the more accurate). Overall, the backbone with the highest accuracy wins and its
    verdict is the answer.

    Args:
        runs: Runs of any backbones and strategies (failed runs are ignored).
        margin: Accuracy margin as a fraction (0.02 = 2 points).

    Returns:
        ``{"backbone", "strategy", "verdict", "accuracy", "rule", "per_backbone": [...]}``.

    Example:
        >>> runs = [RunResult("r", s, 0, "ok", val_accuracy=a)
        ...         for s, a in (("freeze", 0.84), ("finetune", 0.85), ("scratch", 0.5))]
        >>> verdict(runs, margin=0.02)["verdict"]
        'freeze'
    """
    per_backbone = []
    for row_backbone in dict.fromkeys(r.backbone for r in runs):
        means = {row["strategy"]: row["mean_accuracy"] for row in summarize_runs(runs)
                 if row["backbone"] == row_backbone and row["mean_accuracy"] is not None}
        if means:
            per_backbone.append(_backbone_verdict(row_backbone, means, margin))
    decided = [v for v in per_backbone if v["verdict"] is not None]
    if not decided:
        return {"backbone": None, "strategy": None, "verdict": None, "accuracy": None,
                "rule": f"No pretrained run finished, so there is no verdict (margin {100 * margin:.1f} points).",
                "margin": margin, "per_backbone": per_backbone}
    top = max(decided, key=lambda v: v["top_accuracy"])
    rule = top["rule"]
    if len(decided) > 1:
        rule = (f"Cost-aware rule with a {100 * margin:.1f}-point margin; {top['backbone']} is the most accurate "
                f"backbone ({_pct(top['top_accuracy'])}). {rule}")
    else:
        rule = f"Cost-aware rule with a {100 * margin:.1f}-point margin. {rule}"
    return {"backbone": top["backbone"], "strategy": top["strategy"], "verdict": top["verdict"],
            "accuracy": top["accuracy"], "rule": rule, "margin": margin, "per_backbone": per_backbone}


def rank_correlation(runs: Sequence[RunResult], profiles: dict[str, dict] | None) -> dict[str, Any] | None:
    """Weighted Kendall tau between each transferability score and the measured accuracy.

    The measured accuracy of a backbone is its best mean accuracy over strategies. Needs at
    least two backbones with both a profile and a finished run; otherwise ``None``.

    Args:
        runs: Benchmark runs.
        profiles: Backbone name -> profile dict holding ``"transferability"``.

    Returns:
        ``{"n_backbones": k, "metric": [{"metric", "weighted_tau"}, ...]}`` or ``None``.
    """
    if not profiles:
        return None
    best: dict[str, float] = {}
    for row in summarize_runs(runs):
        if row["mean_accuracy"] is not None:
            best[row["backbone"]] = max(best.get(row["backbone"], -1.0), row["mean_accuracy"])
    names = [b for b in best if isinstance(profiles.get(b), dict)]
    if len(names) < 2:
        return None
    rows = []
    for name in RANK_METRICS:
        values = [(profiles[b].get("transferability") or {}).get(name) for b in names]
        if any(v is None or not math.isfinite(float(v)) for v in values):
            continue
        tau = metrics.weighted_kendall_tau(np.asarray(values, float), np.asarray([best[b] for b in names]))
        rows.append({"metric": name, "weighted_tau": tau if math.isfinite(tau) else None})
    return {"n_backbones": len(names), "metric": rows}


# --------------------------------------------------------------------------- bench


def _split(dataset: Dataset, config: BenchConfig, seed: int) -> tuple[list[Sample], list[Sample]]:
    train, val = stratified_split(dataset, val_fraction=config.val_fraction, seed=seed)
    if config.max_per_class is not None:
        train = stratified_sample(train, per_class=config.max_per_class, total=None, seed=seed)
    return train, val


def _versions() -> dict[str, str]:
    import sklearn
    import timm
    import torchvision

    return {"advisor": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__}


def _failed_run(backbone: str, strategy: str, seed: int, key: str, recipe: Recipe, err: BaseException) -> RunResult:
    message = f"{type(err).__name__}: {err}".strip()
    return RunResult(
        backbone=backbone, strategy=strategy, seed=int(seed), status="failed", error=message[:2000],
        recipe=recipe.to_dict(), key=key,
        details={"traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:]},
    )


def bench(
    data: str | os.PathLike | Dataset,
    backbones: Sequence[str],
    *,
    config: BenchConfig = BenchConfig(),
    results_file: str | os.PathLike | None = None,
    recommendation: dict | None = None,
    profiles: dict[str, dict] | None = None,
    progress: bool = False,
    command: str | None = None,
) -> BenchResult:
    """Train every strategy on every backbone and seed, and decide which is worth it.

    Each finished run is appended to ``results_file`` at once; calling again with the same
    file skips the runs whose :func:`run_key` is already there (finished, not failed). A run
    that raises is recorded as failed and the others go on; Ctrl-C stops at once, losing only
    the run in progress.

    Args:
        data: A data folder or a scanned :class:`~advisor.data.Dataset`.
        backbones: Backbone registry names.
        config: Strategies, epochs, image size, seeds, device, tuning, margin.
        results_file: JSON-lines file of finished runs (resume); ``None`` keeps nothing.
        recommendation: ``advisor recommend``'s recommendation dict, to check against.
        profiles: Backbone -> profile dict with ``"transferability"``, for the rank correlation.
        progress: Progress bars on stderr.
        command: The command line to record for reproduction; by default a Python call.

    Returns:
        The :class:`BenchResult`.

    Raises:
        KeyboardInterrupt: Re-raised after the finished runs are safely on disk.

    Example:
        >>> result = bench("data/flowers", ["resnet18"], config=BenchConfig(epochs=2),
        ...                results_file="runs.jsonl")  # doctest: +SKIP
        >>> result.winner["verdict"], result.agreement  # doctest: +SKIP
        ('freeze', None)
    """
    start = time.perf_counter()
    if isinstance(backbones, str):
        backbones = [backbones]
    if not backbones:
        raise ValueError("name at least one backbone")
    sizes = {name: int(config.image_size or backbone_info(name).image_size) for name in backbones}
    dataset = data if isinstance(data, Dataset) else scan(data)
    fingerprint = dataset.fingerprint()
    device = resolve_device(config.device)
    previous = {r.key: r for r in read_results(results_file) if r.ok} if results_file is not None else {}
    env = _Env(device=device, image_size=config.image_size, num_workers=config.num_workers,
               cache_dir=config.cache_dir, fingerprint=fingerprint, weights=config.weights,
               progress=progress)
    splits = {seed: _split(dataset, config, seed) for seed in config.seeds}
    num_classes = len(dataset.classes)

    runs: list[RunResult] = []
    for name in backbones:
        env.image_size = sizes[name]
        for seed in config.seeds:
            train, val = splits[seed]
            for strategy_name in config.strategies:
                strategy = get_strategy(strategy_name)()
                recipe = strategy.default_recipe(config)
                key = run_key(fingerprint=fingerprint, backbone=name, strategy=strategy_name, seed=seed,
                              recipe=recipe, image_size=sizes[name], config=config)
                if key in previous:
                    runs.append(previous[key])
                    continue
                try:
                    run = train_run(strategy.with_recipe(recipe), name, train, val, num_classes=num_classes,
                                    config=config, seed=seed, fingerprint=fingerprint, env=env)
                    run = replace(run, key=key)
                except Exception as err:  # noqa: BLE001 - one bad run must not cost the others
                    run = _failed_run(name, strategy_name, seed, key, recipe, err)
                    if progress:
                        print(f"advisor bench: {name} {strategy_name} seed {seed} failed: {run.error}",
                              file=sys.stderr)
                runs.append(run)
                if results_file is not None:
                    append_result(results_file, run)

    header_sample = stratified_sample(dataset.samples, per_class=20, total=400, seed=0)
    summary_ds = summarize_dataset(dataset, header_sample, extra_skipped=env.failures.values())
    train0, val0 = splits[config.seeds[0]]
    own_split = dataset.layout == "split" and any(s.split in ("val", "test") for s in dataset.samples)
    split_text = ("the folder's own train / validation split" if own_split else
                  f"stratified {100 * (1 - config.val_fraction):.0f}/{100 * config.val_fraction:.0f}, "
                  "seeded by each run's seed")
    winner = verdict(runs, margin=config.margin)
    protocol = {
        "split": split_text, "n_train": len(train0), "n_val": len(val0), "epochs": config.epochs,
        "image_size": sizes[backbones[0]], "image_sizes": sizes, "batch_size": config.batch_size,
        "seeds": list(config.seeds), "margin": config.margin, "tune": config.tune,
        "weights": config.weights or "random (pretrained strategies too: a smoke run, not a verdict)",
        "strategies": list(config.strategies), "max_per_class": config.max_per_class,
        "device": str(device), "amp": str(env.amp_dtype).replace("torch.", "") if env.amp_dtype else None,
        "accuracy": "top-1 on the validation split after the last epoch",
        "memory_cache": {f"{k[0]}px {k[1]}": s.enabled for k, s in env.stores.items()},
    }
    if command is None:
        command = (f"advisor.bench.bench({os.fspath(dataset.root)!r}, {list(backbones)!r}, "
                   f"config=BenchConfig(**{config.to_dict()!r}), results_file={results_file!r})")
    return BenchResult(
        dataset=summary_ds.to_dict(),
        protocol=protocol,
        runs=tuple(runs),
        summary=tuple(summarize_runs(runs)),
        winner=winner,
        recommendation=recommendation,
        agreement=(recommendation.get("strategy") == winner["verdict"]) if recommendation else None,
        rank_correlation=rank_correlation(runs, profiles),
        reproduction={
            "versions": _versions(), "device": str(device), "seed": config.seeds[0],
            "options": {**config.to_dict(), "backbones": list(backbones),
                        "results_file": None if results_file is None else os.fspath(results_file)},
            "seconds": time.perf_counter() - start, "command": command,
        },
    )
