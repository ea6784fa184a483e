"""Recipes and strategies: the ways to use a backbone, as small objects with named hooks.

Registered in :data:`STRATEGIES`, cheapest first: one class per entry of the torch-free
:data:`advisor.catalogue.STRATEGIES`, whose facts (cost rank, weights, verdict word) the classes
read from there.

Each recipe is defined once here: the benchmark trains with it and ``advisor recommend``
suggests it (:func:`suggested_settings`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from advisor import catalogue
from advisor.backbones import Backbone, get_backbone
from advisor.bench.config import AUTO, BenchConfig

if TYPE_CHECKING:  # the training module imports this one
    from advisor.bench.training import Fit, RunData, RunEnv

__all__ = [
    "MAX_EPOCHS",
    "STRATEGIES",
    "TUNE_FACTORS",
    "Finetune",
    "Freeze",
    "FreezeUnfreeze",
    "Partial",
    "Recipe",
    "Scratch",
    "Strategy",
    "freeze",
    "get_strategy",
    "list_strategies",
    "make_trainable",
    "suggested_settings",
]

#: Learning-rate multipliers swept per strategy with ``tune=True``.
TUNE_FACTORS: tuple[float, ...] = (0.3, 1.0, 3.0)
#: ``epochs="auto"``: the most epochs a strategy may take. Scratch starts from nothing and on
#: small data needs about twice the epochs of fine-tuning to level off.
MAX_EPOCHS = {"finetune": 30, "partial": 30, "freeze_unfreeze": 30, "scratch": 60}
#: L2 strengths (``lambda`` of ``lambda / (2 n) * ||W||^2``, sklearn's ``C = 1 / lambda``) the
#: frozen head chooses from on the selection split.
FREEZE_L2_GRID: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
_BN = nn.modules.batchnorm._BatchNorm


@dataclass(frozen=True)
class Recipe:
    """How one strategy trains: what the report's recipe table shows and the run key hashes.

    Attributes:
        optimizer: ``"adamw"``; ``freeze``'s head: full-batch L-BFGS.
        lr_head: Peak learning rate of the new classifier (L-BFGS: its initial step).
        lr_backbone: Peak learning rate of the trained backbone layers; ``None`` when frozen.
        weight_decay: Decoupled weight decay (AdamW); for the L-BFGS head the L2 strength
            ``lambda`` of ``lambda / (2 n) * ||W||^2``, i.e. sklearn's ``C = 1 / lambda``.
        epochs: Training epochs; with ``budget="auto"`` the most it may take.
        budget: ``"fixed"`` (every epoch runs, the last one is evaluated) or ``"auto"``
            (early stopping on the selection split; the best epoch is evaluated).
        patience: ``auto``: epochs without an improvement of ``min_delta`` before stopping.
        min_delta: ``auto``: smallest gain of selection accuracy that counts.
        batch_size: Images per step (halved after a CUDA out-of-memory error: the final value).
        augment: Training augmentation, in words.
        crop_scale: Area range of the random resized crop; ``None`` for a centre crop.
        flip: Random horizontal flip.
        label_smoothing: Of the cross-entropy loss.
        schedule: Learning-rate schedule, in words (defined over ``epochs``: a run that stops
            early never reaches its end).
        warmup: Share of the steps with a linear warm-up.
        trainable: Which layers train, in words.
        train_bn: Whether BatchNorm layers of the backbone update their statistics.
        head_steps: ``freeze`` only: L-BFGS iterations of the head over all epochs.
        l2_grid: ``freeze`` with a selection split: the L2 strengths it chooses from.
        unfreeze_epoch: ``freeze_unfreeze`` only: first epoch (0-based) that trains everything.
        lr_sweep: With ``tune``, the multipliers of the default learning rates that were tried.
        lr_scale: The multiplier used (the chosen one with ``tune``).
        selection: How the learning rate (and stopping point) was chosen.
        warmup_epochs: ``auto``: epochs of linear warm-up to the peak learning rate, which is
            then held until the selection accuracy stops improving.
        patience_from: ``auto``: epochs that never count towards the patience (the warm-up;
            twice the warm-up for a network from scratch, which sits at chance at first).
        cooldown: ``auto``: once the patience runs out, the best weights are restored and the
            learning rate falls linearly to 0 over ``max(MIN_COOLDOWN, ceil(cooldown * epochs
            run))`` epochs; the best epoch of the cool-down (annealed weights) is evaluated.
        probe_epochs: Epochs of each probe of the learning-rate sweep (0: no sweep). Each of
            ``probe_factors`` times the default learning rates trains that long from the same
            start; the best on the selection split goes on, the others stop.
        probe_factors: Multipliers of the default learning rates the sweep tries.
        init_head: How the new classifier starts: ``"zeros"`` / ``"random"``, or
            ``"linear_probe"`` (LP-FT: the frozen strategy's fitted head, then fine-tuning).
        cv_folds: ``freeze``: folds of the stratified cross-validation that chooses the L2
            strength over all the training images (0: chosen on the selection split).
    """

    optimizer: str = "adamw"
    lr_head: float = 1e-3
    lr_backbone: float | None = None
    weight_decay: float = 0.05
    epochs: int = 8
    budget: str = "fixed"
    patience: int = 3
    min_delta: float = 0.005
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
    l2_grid: tuple[float, ...] = ()
    unfreeze_epoch: int | None = None
    lr_sweep: tuple[float, ...] = ()
    lr_scale: float = 1.0
    selection: str = "defaults, not tuned"
    warmup_epochs: int = 0
    patience_from: int = 0
    cooldown: float = 0.0
    probe_epochs: int = 0
    probe_factors: tuple[float, ...] = ()
    init_head: str = "random"
    cv_folds: int = 0

    #: Fields in words, for the report: the run key and the random streams never read them
    #: (the codes beside them say the same), so rewording a description changes no number.
    PROSE: ClassVar[tuple[str, ...]] = ("augment", "schedule", "trainable", "selection")

    @property
    def early_stopping(self) -> bool:
        return self.budget == AUTO

    def key_dict(self) -> dict[str, Any]:
        """What the run key and the random streams hash: every setting, as codes, no prose.

        Example:
            >>> a = Recipe(augment="crops")
            >>> a.key_dict() == Recipe(augment="random crops and flips").key_dict()
            True
        """
        d = {k: v for k, v in self.to_dict().items() if k not in self.PROSE}
        d["optimizer"] = self.optimizer.split()[0]
        return d

    def scaled(self, factor: float) -> "Recipe":
        """The same recipe with every learning rate multiplied by ``factor``.

        An L-BFGS head has a line search instead of a learning rate: its L2 strength (and its
        grid) is divided by ``factor`` instead (a larger step and less regularisation both fit
        harder).
        """
        if self.optimizer.startswith("lbfgs"):
            return replace(self, weight_decay=self.weight_decay / factor,
                           l2_grid=tuple(v / factor for v in self.l2_grid), lr_scale=factor)
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
        d["l2_grid"] = list(self.l2_grid)
        d["probe_factors"] = list(self.probe_factors)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if d.get("crop_scale") is not None:
            d["crop_scale"] = tuple(d["crop_scale"])
        for name in ("lr_sweep", "l2_grid", "probe_factors"):
            d[name] = tuple(d.get(name, ()))
        return cls(**d)


# --------------------------------------------------------------------------- freezing hooks


def freeze(parameters: Any, bn_modules: Any = (), *, train_bn: bool = False) -> None:
    """Stop ``parameters`` from training (Lightning's ``BaseFinetuning.freeze``, by parameter).

    Acting on parameters rather than leaf modules also catches parameters owned by parent
    modules (ConvNeXt's layer scale, ViT's class token and position embedding, Swin's
    relative-position tables).

    Args:
        parameters: Parameters that stop receiving gradients.
        bn_modules: BatchNorm layers of the frozen part.
        train_bn: Keep those BatchNorm layers trainable and in training mode. With ``False``
            (the policy of a frozen backbone) they are put in eval mode, so their ImageNet
            running statistics are used and never updated.
    """
    bn_params = {id(p) for m in bn_modules for p in m.parameters(recurse=False)} if train_bn else set()
    for p in parameters:
        if id(p) not in bn_params:
            p.requires_grad_(False)
    if not train_bn:
        for m in bn_modules:
            m.eval()


def make_trainable(parameters: Any, bn_modules: Any = ()) -> None:
    """Undo :func:`freeze`: gradients on, BatchNorm back in training mode."""
    for p in parameters:
        p.requires_grad_(True)
    for m in bn_modules:
        m.train()


def _backbone_bn(backbone: Backbone) -> list[nn.Module]:
    head = backbone.head_name
    return [m for name, m in backbone.model.named_modules()
            if isinstance(m, _BN) and name != head and not name.startswith(head + ".")]


# --------------------------------------------------------------------------- strategies


class Strategy:
    """A way to use a backbone, as named hooks around one training loop.

    Subclasses set :attr:`name` and override the hooks they need:
    :meth:`default_recipe`, :meth:`configure` (new head, what trains, the BatchNorm policy,
    optimiser parameter groups), :meth:`on_train_epoch_start` and, for a different kind of
    training altogether, :meth:`fit`.

    Attributes:
        name: Registry name: an entry of :data:`advisor.catalogue.STRATEGIES`.
        info: That entry; ``cost_rank``, ``weights`` (``"imagenet"`` or ``None``, random
            initialisation) and ``verdict`` are read from it.
        recipe: The :class:`Recipe` it trains with.

    Example:
        >>> s = get_strategy("finetune")()
        >>> s.recipe.lr_backbone < s.recipe.lr_head
        True
    """

    name: ClassVar[str] = ""
    info: ClassVar[catalogue.StrategyInfo]
    cost_rank: ClassVar[int]
    weights: ClassVar[str | None]
    verdict: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.info = catalogue.get_strategy_info(cls.name)  # a name outside the catalogue raises here
        cls.cost_rank, cls.verdict = cls.info.cost_rank, cls.info.verdict
        cls.weights = "imagenet" if cls.info.pretrained else None

    def __init__(self, recipe: Recipe | None = None) -> None:
        self.recipe = recipe if recipe is not None else self.default_recipe(BenchConfig())
        self.frozen_params: list[nn.Parameter] = []
        self.frozen_bn: list[nn.Module] = []  # BatchNorm layers kept in eval mode

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

    def freeze_backbone(self, backbone: Backbone) -> None:
        """Freeze every backbone parameter, BatchNorm statistics included (the head trains)."""
        self.frozen_params = list(backbone.backbone_parameters())
        self.frozen_bn = _backbone_bn(backbone)
        freeze(self.frozen_params, self.frozen_bn, train_bn=False)

    def on_train_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called after ``model.train()`` each epoch: frozen BatchNorm goes back to eval."""
        for m in self.frozen_bn:
            m.eval()

    def fit(self, backbone: Backbone, data: "RunData", env: "RunEnv") -> "Fit":
        """Train and evaluate; the default trains the network end to end."""
        from advisor.bench.training import fit_network

        return fit_network(self, backbone, data, env)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr_head={self.recipe.lr_head:g}, lr_backbone={self.recipe.lr_backbone})"


#: ``epochs="auto"``: warm-up epochs of a pretrained network and of one from scratch.
WARMUP_EPOCHS = {"pretrained": 1, "scratch": 2}
#: ``epochs="auto"``: share of the epochs run that the cool-down takes, and its fewest epochs.
#: The issue asked for max(2, 20 %); measured on hymenoptera (96 px), fine-tuning held at its
#: peak, then cooled for 2 epochs, reached 83.7 % where 20 epochs of cosine reached 86.9 %: the
#: gain is in the annealing, so the cool-down is longer.
COOLDOWN = 0.3
MIN_COOLDOWN = 3
#: Epochs each learning-rate probe trains before the sweep keeps the best.
PROBE_EPOCHS = 2
#: ``epochs="auto"`` without a selection split (nothing to stop on): a fixed, annealed budget.
FALLBACK_EPOCHS = 20
#: Folds of the cross-validation that chooses the frozen head's L2 strength.
CV_FOLDS = 5


def _budget(config: BenchConfig, name: str, *, pretrained: bool = True) -> dict[str, Any]:
    sweep = config.lr_probe and config.needs_selection
    if config.early_stopping:
        warm = WARMUP_EPOCHS["pretrained" if pretrained else "scratch"]
        return {"epochs": config.max_epochs or MAX_EPOCHS[name], "budget": AUTO, "patience": config.patience,
                "min_delta": config.min_delta, "warmup": 0.0, "warmup_epochs": warm,
                "patience_from": warm if pretrained else 2 * warm, "cooldown": COOLDOWN,
                "schedule": (f"linear warm-up ({warm} epoch{'s' if warm > 1 else ''}), then held at the peak until "
                             "the selection accuracy stops improving; best weights restored, then a linear "
                             f"cool-down to 0 over max({MIN_COOLDOWN}, {100 * COOLDOWN:.0f} % of the epochs run); "
                             "the best cool-down epoch is evaluated"),
                "probe_epochs": PROBE_EPOCHS if sweep else 0, "probe_factors": TUNE_FACTORS if sweep else ()}
    probe = PROBE_EPOCHS if sweep and int(config.epochs) >= 2 * PROBE_EPOCHS else 0
    return {"epochs": int(config.epochs), "budget": "fixed", "warmup": 0.1,
            "schedule": "linear warm-up (10 % of steps), then cosine to 0",
            "probe_epochs": probe, "probe_factors": TUNE_FACTORS if probe else ()}


def _network_recipe(config: BenchConfig, name: str, *, pretrained: bool = True, **kwargs: Any) -> Recipe:
    """The augmentation and schedule shared by every strategy that trains the network."""
    base = dict(
        optimizer="adamw", weight_decay=0.05, batch_size=config.batch_size,
        augment="random resized crop, scale (0.5, 1), + horizontal flip", crop_scale=(0.5, 1.0),
        flip=True, label_smoothing=0.1, train_bn=True, **_budget(config, name, pretrained=pretrained),
    )
    base.update(kwargs)
    return Recipe(**base)


class Freeze(Strategy):
    """Frozen backbone, BatchNorm in eval mode; a linear head on its cached embeddings.

    The embeddings are extracted once (eval transform, cached on disk by
    :func:`advisor.profile.extract_features`), standardised, and a linear head is fitted on
    them with full-batch L-BFGS and an L2 penalty (the problem of sklearn's
    ``LogisticRegression``); with a selection split its L2 strength is chosen from
    :data:`FREEZE_L2_GRID` there. The standardisation is then folded into the head, so
    ``backbone.forward`` gives the same predictions.
    """

    name = "freeze"

    def default_recipe(self, config: BenchConfig) -> Recipe:
        return Recipe(
            optimizer="lbfgs (full batch, strong Wolfe line search)", lr_head=1.0, lr_backbone=None,
            weight_decay=1.0, epochs=8 if config.early_stopping else int(config.epochs), budget="fixed", batch_size=config.batch_size,
            augment="none (embeddings of the eval transform, cached)", label_smoothing=0.0,
            schedule="none (line search)", trainable="head (on standardised embeddings)", train_bn=False,
            head_steps=400, l2_grid=FREEZE_L2_GRID, cv_folds=CV_FOLDS, init_head="zeros",
        )

    def configure(self, backbone: Backbone, num_classes: int) -> list[dict[str, Any]]:
        head = backbone.replace_head(num_classes)
        self.freeze_backbone(backbone)
        return [{"params": list(head.parameters()), "lr": self.recipe.lr_head, "name": "head"}]

    def fit(self, backbone: Backbone, data: "RunData", env: "RunEnv") -> "Fit":
        from advisor.bench.training import fit_head_on_embeddings

        return fit_head_on_embeddings(self, backbone, data, env)


class Finetune(Strategy):
    """Every layer trains; the backbone at a third of the head's learning rate.

    Defaults (AdamW, head 3e-3, backbone 1e-3, 10 % warm-up then cosine to 0, label smoothing
    0.1, random resized crop with scale (0.5, 1) + flip) avoid the two ways a plain recipe
    makes fine-tuning lose to freezing: a backbone learning rate too low to move, and crops so
    strong that a small dataset no longer looks like itself. Measured with efficientnet_lite0,
    6 epochs, seed 0, on digits (64 px, 320 train images): these defaults reach 80.0 % where
    head 2e-3 / backbone 2e-4 reaches 58.8 %, head 1e-3 / backbone 1e-4 48.8 % and scale
    (0.08, 1) crops 46.3 % (freeze: 81.2 %).
    """

    name = "finetune"

    head_fitted: bool = False

    def fit(self, backbone: Backbone, data: "RunData", env: "RunEnv") -> "Fit":
        """LP-FT when the recipe says so: fit the linear probe's head first, then fine-tune."""
        from advisor.bench.training import fit_network, probe_head

        if self.recipe.init_head != "linear_probe":
            return fit_network(self, backbone, data, env)
        head = probe_head(backbone, data, env, batch_size=self.recipe.batch_size)
        self.head_fitted = True
        fit = fit_network(self, backbone, data, env)
        return replace(fit, seconds=fit.seconds + head["seconds"], details={**fit.details, "linear_probe": head})

    def default_recipe(self, config: BenchConfig) -> Recipe:
        return _network_recipe(config, self.name, lr_head=3e-3, lr_backbone=1e-3, trainable="all layers",
                               init_head="linear_probe" if config.lpft else "random")

    def configure(self, backbone: Backbone, num_classes: int) -> list[dict[str, Any]]:
        # LP-FT: the linear probe's head was fitted and folded into the network just before.
        head = backbone.head if self.head_fitted else backbone.replace_head(num_classes)
        make_trainable(backbone.model.parameters(), _backbone_bn(backbone))
        # LP-FT keeps the BatchNorm statistics the head was fitted on (their weights still train):
        # in training mode, batch statistics move every embedding, and the fitted head, read off
        # the eval-mode embeddings, then gives a loss of 58 where it gave 0.15 (digits, lite0).
        self.frozen_params, self.frozen_bn = [], (_backbone_bn(backbone) if self.head_fitted else [])
        return [
            {"params": list(backbone.backbone_parameters()), "lr": self.recipe.lr_backbone, "name": "backbone"},
            {"params": list(head.parameters()), "lr": self.recipe.lr_head, "name": "head"},
        ]


class Partial(Strategy):
    """Only the last stage(s) and the head train; the rest is frozen with BatchNorm in eval.

    The trained tail is the shortest run of final stages (``Backbone.stage_of`` on parameter
    names) that holds at least a quarter of the backbone's parameters: ``layer4`` of a ResNet,
    the last blocks and the 1x1 head convolution of an EfficientNet.
    """

    name = "partial"
    tail_share: ClassVar[float] = 0.25

    def default_recipe(self, config: BenchConfig) -> Recipe:
        return _network_recipe(config, self.name, lr_head=3e-3, lr_backbone=1e-3, trainable="last stage(s) + head")

    def configure(self, backbone: Backbone, num_classes: int) -> list[dict[str, Any]]:
        head = backbone.replace_head(num_classes)
        head_ids = {id(p) for p in head.parameters()}
        stages: dict[str, list[nn.Parameter]] = {}
        for name, p in backbone.model.named_parameters():
            if id(p) not in head_ids:
                stages.setdefault(backbone.stage_of(name), []).append(p)
        sizes = {s: sum(p.numel() for p in ps) for s, ps in stages.items()}
        total, tail, acc = sum(sizes.values()), [], 0
        for stage in reversed([s for s in stages if sizes[s] > 0]):
            tail.append(stage)
            acc += sizes[stage]
            if acc >= self.tail_share * total:
                break
        make_trainable(backbone.model.parameters(), _backbone_bn(backbone))
        self.frozen_params = [p for s, ps in stages.items() if s not in tail for p in ps]
        self.frozen_bn = [m for name, m in backbone.model.named_modules()
                          if isinstance(m, _BN) and backbone.stage_of(name) not in tail]
        freeze(self.frozen_params, self.frozen_bn, train_bn=False)
        self.recipe = replace(self.recipe, trainable=" + ".join(reversed(tail)) + " + head")
        return [
            {"params": [p for s in tail for p in stages[s]], "lr": self.recipe.lr_backbone, "name": "backbone"},
            {"params": list(head.parameters()), "lr": self.recipe.lr_head, "name": "head"},
        ]


class FreezeUnfreeze(Finetune):
    """The head alone (backbone frozen, BatchNorm in eval) for the first epochs, then everything.

    The frozen phase lasts a third of the fixed budget, or 3 epochs with early stopping (whose
    patience counts only from the unfreezing on).
    """

    name = "freeze_unfreeze"

    def default_recipe(self, config: BenchConfig) -> Recipe:
        unfreeze = 3 if config.early_stopping else max(1, int(config.epochs) // 3)
        return _network_recipe(
            config, self.name, lr_head=3e-3, lr_backbone=1e-3, unfreeze_epoch=unfreeze,
            trainable="head, then all layers from unfreeze_epoch",
        )

    def configure(self, backbone: Backbone, num_classes: int) -> list[dict[str, Any]]:
        groups = super().configure(backbone, num_classes)
        self.freeze_backbone(backbone)
        return groups  # AdamW skips parameters without gradients until they are unfrozen

    def on_train_epoch_start(self, model: nn.Module, epoch: int) -> None:
        if self.frozen_params and epoch >= (self.recipe.unfreeze_epoch or 0):
            make_trainable(self.frozen_params, self.frozen_bn)
            self.frozen_params, self.frozen_bn = [], []
        super().on_train_epoch_start(model, epoch)


class Scratch(Finetune):
    """The same architecture from random weights, at a higher learning rate everywhere.

    Configured like :class:`Finetune` (every layer trains, two parameter groups), only the
    weights, the budget and the recipe differ.
    """

    name = "scratch"

    def default_recipe(self, config: BenchConfig) -> Recipe:
        return _network_recipe(config, self.name, pretrained=False, lr_head=3e-3, lr_backbone=3e-3,
                               trainable="all layers (random init)", init_head="random")


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


def suggested_settings(advice: str, backbone: str, image_size: int, *,
                       config: BenchConfig = BenchConfig()) -> dict[str, Any]:
    """The recipe ``advisor bench`` trains an advised strategy with, as settings to suggest.

    Example:
        >>> s = suggested_settings("finetune", "resnet18", 224)
        >>> s["strategy"], s["backbone_lr"], s["epochs"]
        ('finetune', 0.001, 'auto: until the selection accuracy stops improving, at most 30')
    """
    name = catalogue.suggested_strategy(advice)
    recipe = get_strategy(name)().default_recipe(config)
    if name == "freeze":
        epochs = None
        note = ("logistic-regression head (L-BFGS, L2 chosen on a selection split) on cached embeddings; "
                "BatchNorm stays in eval mode")
    else:
        epochs = (f"auto: until the selection accuracy stops improving, at most {recipe.epochs}"
                  if recipe.early_stopping else recipe.epochs)
        note = (f"AdamW, {recipe.schedule}, label smoothing {recipe.label_smoothing:g}, {recipe.augment}"
                + ("; random initialisation: with little data, collecting more labelled data pays more"
                   if name == "scratch" else ""))
    return {"strategy": name, "backbone": backbone, "head_lr": None if name == "freeze" else recipe.lr_head,
            "backbone_lr": recipe.lr_backbone, "epochs": epochs, "image_size": int(image_size),
            "batch_size": recipe.batch_size, "note": note}
