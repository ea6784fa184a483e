"""The benchmark's options (configuration, kept apart from results)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from advisor.catalogue import STRATEGIES, get_strategy_info
from advisor.protocol import SELECTION_FRACTION, VAL_FRACTION

__all__ = ["AUTO", "AUTO_FRACTIONS", "BenchConfig", "START_METHODS"]

#: ``epochs=AUTO``: train until the selection accuracy stops improving (early stopping).
AUTO = "auto"
#: ``fractions=AUTO``: the learning curve's sizes, halving from the full data. Four sizes leave one
#: degree of freedom to test the three-parameter law (:mod:`advisor.curves`); each size doubles
#: the last, as the recommend probe's curve does, for 1.875x the training of the full data alone.
AUTO_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
START_METHODS = (None, "fork", "spawn", "forkserver")


@dataclass(frozen=True)
class BenchConfig:
    """Options of a benchmark.

    Attributes:
        strategies: Names from :data:`advisor.catalogue.STRATEGIES`, in the order they run.
        epochs: ``"auto"`` (default): each network strategy trains until its accuracy on the
            selection split stops improving (``patience`` epochs without a gain of
            ``min_delta``), at most ``max_epochs`` (per strategy by default: 30, scratch 60),
            and the best epoch's weights are evaluated. An integer: a fixed budget without
            early stopping, for every strategy (reproduces results of advisor 0.1).
        image_size: Crop size; ``None`` uses each backbone's default.
        batch_size: Images per training step.
        seeds: One run per seed and strategy; several give a mean and a standard deviation.
        device: ``"auto"`` (cuda, mps, cpu), ``"cpu"``, ``"cuda"``, ``"mps"``.
        tune: Sweep :data:`advisor.bench.TUNE_FACTORS` times each default learning rate (the
            frozen head: its L2 strength) and keep the best on the selection split.
        margin: Verdict margin, as a fraction (0.02 = 2 accuracy points).
        val_fraction: Held-out (reported) share when the folder has no validation split.
        selection_fraction: Share of the training split carved out (stratified, seeded) to
            select epochs, learning rates and regularisation, when the folder has no split
            for it. A folder with ``train/``, ``val/`` and ``test/`` selects on ``val`` instead
            and reports ``test``.
        patience: ``epochs="auto"``: epochs without improvement before the cool-down starts. 5:
            on a selection split of about 50 images the accuracy moves in jumps 3 to 5 epochs
            apart (hymenoptera, fine-tuning: with 3, the hold stopped at epoch 5 and reported
            83.0 % where 20 annealed epochs reached 86.9 %).
        min_delta: ``epochs="auto"``: smallest gain of selection accuracy that counts (0.005 =
            half a point).
        max_epochs: ``epochs="auto"``: cap of every strategy; ``None`` uses each strategy's own.
        num_workers: DataLoader workers; ``None`` picks from the device and the data path.
        start_method: Start method of DataLoader worker processes (``None``: the platform's).
        cache_dir: Feature cache of ``freeze`` (passed to ``extract_features``; ``""`` disables).
        image_cache_dir: Decoded-image cache folder (``None``: under the cache root; ``""``: no
            cache, images are decoded on the fly into the same pixels, with the same results).
        max_per_class: Cap of training images per class (seeded), for quick runs.
        fractions: Train every strategy also on nested, class-stratified subsets of the fit split
            (``(0.25, 0.5, 1.0)``: the 25 % subset lies inside the 50 % one); the selection and
            reported splits stay the same. The runs at 1.0 give the verdict, all of them the
            learning curves (``data_size``). 1.0 is always included. ``"auto"``:
            :data:`AUTO_FRACTIONS`. Fewer than 4 sizes leave the fitted law untested, and its
            predictions are withheld.
        weights: Weights of the pretrained strategies: ``"imagenet"``, or ``None`` for random
            initialisation (tests and offline smoke runs; the verdict is then meaningless).
        lr_probe: Choose each network's learning rate as the frozen head's L2 is chosen: a
            3-point sweep (``TUNE_FACTORS`` times the default) over the first epochs, judged on
            the selection split; the best goes on from where its probe stopped.
        lpft: Fine-tuning starts from the frozen strategy's fitted linear head (LP-FT, Kumar
            et al. 2022), with the BatchNorm statistics it was fitted on, instead of a random
            head. Off by default: on hymenoptera and the calibration sets (``benchmarks/budget.py``,
            docs/benchmarks.md) it won 3 of 6 by 4.6 to 8 points, but collapsed towards chance
            on the data furthest from ImageNet (magnetic_tile, digits), where fine-tuning is
            advised most.

    Example:
        >>> BenchConfig(epochs=2, seeds=(0, 1)).to_dict()["seeds"]
        [0, 1]
        >>> BenchConfig().early_stopping
        True
        >>> BenchConfig(fractions="auto").fractions
        (0.125, 0.25, 0.5, 1.0)
    """

    strategies: tuple[str, ...] = ("freeze", "finetune", "scratch")
    epochs: int | str = AUTO
    image_size: int | None = None
    batch_size: int = 32
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    tune: bool = False
    margin: float = 0.02
    val_fraction: float = VAL_FRACTION
    selection_fraction: float = SELECTION_FRACTION
    patience: int = 5
    min_delta: float = 0.005
    max_epochs: int | None = None
    num_workers: int | None = None
    start_method: str | None = None
    cache_dir: str | None = None
    image_cache_dir: str | None = None
    max_per_class: int | None = None
    fractions: tuple[float, ...] | str = (1.0,)
    weights: str | None = "imagenet"
    lr_probe: bool = True
    lpft: bool = False

    def __post_init__(self) -> None:
        if self.fractions == AUTO:
            object.__setattr__(self, "fractions", AUTO_FRACTIONS)
        for name in ("strategies", "seeds", "fractions"):
            value = getattr(self, name)
            if isinstance(value, (str, int, float)):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        for f in self.fractions:
            if not (isinstance(f, (int, float)) and 0.0 < float(f) <= 1.0):
                raise ValueError(f"fractions must lie in (0, 1], got {f!r}")
        object.__setattr__(self, "fractions", tuple(sorted({float(f) for f in self.fractions} | {1.0})))
        if not self.strategies:
            raise ValueError("strategies is empty: name at least one of " + ", ".join(STRATEGIES))
        for name in self.strategies:
            get_strategy_info(name)  # an unknown name raises, listing the valid ones
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies lists a name twice: {', '.join(self.strategies)}")
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one seed, e.g. (0,)")
        if isinstance(self.epochs, str) and self.epochs.isdigit():
            object.__setattr__(self, "epochs", int(self.epochs))
        if self.epochs != AUTO and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ValueError(f"epochs must be 'auto' or an integer >= 1, got {self.epochs!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.weights not in ("imagenet", None):
            raise ValueError(f"weights must be 'imagenet' or None, not {self.weights!r}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin is a fraction in [0, 1), got {self.margin}")
        for name in ("val_fraction", "selection_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {START_METHODS}, got {self.start_method!r}")

    @property
    def early_stopping(self) -> bool:
        """Whether runs stop on the selection split (``epochs="auto"``)."""
        return self.epochs == AUTO

    @property
    def needs_selection(self) -> bool:
        """Whether a selection split is carved: to stop early or to tune."""
        return self.early_stopping or self.tune or self.lr_probe

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["strategies"], d["seeds"], d["fractions"] = list(self.strategies), list(self.seeds), list(self.fractions)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
