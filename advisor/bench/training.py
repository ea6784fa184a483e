"""One run: its specification, its data loaders, the fit loops, and :func:`train_run`.

A :class:`RunSpec` says everything a run depends on (it is small and pickles, so any executor
can ship it); :func:`train_run` trains it inside its own random streams, seeded from its key,
so its numbers do not depend on what ran before it, in this process or another.
"""

from __future__ import annotations

import copy
import gc
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advisor.backbones import Backbone, Preprocessing
from advisor.bench.results import RunResult, code_versions, encode_correct
from advisor.bench.strategies import FALLBACK_EPOCHS, MIN_COOLDOWN, Recipe, Strategy, get_strategy
from advisor.augment import center_crop, random_resized_crop
from advisor.data import Sample, Skipped
from advisor.imagecache import ImageCache, StoredImage, open_image_cache, tally_use
from advisor.loading import ImageFolder
from advisor.profile import Features, extract_features
from advisor.protocol import EPS as _EPS
from advisor.runtime import FP32, Precision, default_workers, derive_seed, isolated_random, seed_worker
from advisor.utils import progress_bar

__all__ = [
    "Fit",
    "pool_features",
    "RunData",
    "RunEnv",
    "RunSpec",
    "failed_run",
    "fit_head_on_embeddings",
    "fit_network",
    "train_run",
]


@dataclass(frozen=True)
class RunSpec:
    """Everything one run depends on; its :attr:`key` identifies it in the results file.

    Attributes:
        backbone: Backbone registry name.
        strategy: Strategy registry name.
        seed: The run's seed (split, initialisation, data order, augmentation derive from it
            and the key).
        recipe: The recipe to train with (learning rates already multiplied by ``lr_factor``).
        lr_factor: Multiplier of the default learning rates.
        image_size: Crop size.
        weights: ``"imagenet"`` or ``None`` (random initialisation for every strategy).
        fit: Samples the weights are trained on.
        select: Samples that choose the epoch (and learning rate); empty without selection.
        report: Samples the reported accuracy is measured on.
        pool: Samples whose embeddings ``freeze`` extracts in one cached pass (a superset of
            the three splits shared by every run of a bench, so seeds and fractions reuse it).
        num_classes: Width of the new head.
        fingerprint: Dataset fingerprint (feature cache key).
        splits: Names of the three splits, for the record (``{"fit", "select", "report"}``).
        fraction: Share of the full fit split that ``fit`` holds (learning curves).
        key: The run key (:func:`advisor.bench.results.run_key`).
        stream: What seeds the run's random streams: the key without the data fingerprint's
            file sizes and times, so the same files and options give the same numbers on any
            copy of the data.
    """

    backbone: str
    strategy: str
    seed: int
    recipe: Recipe
    lr_factor: float
    image_size: int
    weights: str | None
    fit: tuple[Sample, ...]
    select: tuple[Sample, ...]
    report: tuple[Sample, ...]
    num_classes: int
    fingerprint: str
    pool: tuple[Sample, ...] = ()
    splits: dict[str, str] = field(default_factory=dict)
    fraction: float = 1.0
    key: str = ""
    stream: str = ""

    @property
    def images_per_class(self) -> float:
        """Mean training images per class that has any (the learning curves' x axis)."""
        counts: dict[int, int] = {}
        for s in self.fit:
            counts[s.label] = counts.get(s.label, 0) + 1
        return float(np.mean(list(counts.values()))) if counts else 0.0


@dataclass
class RunData:
    """The splits one run trains, selects and reports on."""

    fit: list[Sample]
    select: list[Sample]
    report: list[Sample]
    num_classes: int
    pool: list[Sample] = field(default_factory=list)


@dataclass
class Fit:
    """What one training of one strategy measured (before it becomes a :class:`RunResult`)."""

    accuracy: float
    macro_f1: float
    selection_accuracy: float | None
    curve: list[dict[str, Any]]
    seconds: float
    images_per_second: float
    recipe: Recipe
    epochs_run: int
    best_epoch: int
    converged: bool
    learned: bool | None = None
    correct: np.ndarray | None = None  # per reported image, in the split's order
    details: dict[str, Any] = field(default_factory=dict)


class _StreamedImages(torch.utils.data.Dataset):
    """Samples decoded on the fly into exactly what the image cache stores (the no-cache path)."""

    def __init__(self, samples: Sequence[Sample], size: int, interpolation: str) -> None:
        self.folder = ImageFolder(samples, StoredImage(size, interpolation), draft_size=(size, size))

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> Any:
        return self.folder[i]


def _collate_arrays(batch: list[Any]) -> tuple[list[torch.Tensor], list[int], list[Skipped]]:
    """uint8 HWC arrays -> CHW tensors (views), their positions, and the failures."""
    images, positions, failures = [], [], []
    for item in batch:
        if isinstance(item, Skipped):
            failures.append(Skipped(item.path, item.reason))
            continue
        array, _label, i = item
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # PIL hands out read-only buffers; torch wants to own one
            array = array.copy()
        images.append(torch.from_numpy(array).permute(2, 0, 1))
        positions.append(i)
    return images, positions, failures


@dataclass
class RunEnv:
    """Where and how runs execute; shared by the runs of one executor (one process).

    Attributes:
        device: The torch device.
        precision: Autocast dtype and gradient scaling (:func:`advisor.runtime.choose_precision`).
        num_workers: DataLoader workers; ``None`` picks from the core count.
        start_method: Start method of worker processes (``None``: the platform's).
        cache_dir: Feature cache folder (``None``: default, ``""``: off).
        image_cache_dir: Decoded-image cache folder (``None``: default, ``""``: off, images are
            then decoded on the fly, into the same pixels).
        progress: Progress bars on stderr.
        image_cache_use: Per cache file, images decoded by this process and read from the file.
    """

    device: torch.device
    precision: Precision = FP32
    num_workers: int | None = None
    start_method: str | None = None
    cache_dir: str | None = None
    image_cache_dir: str | None = None
    progress: bool = False
    failures: dict[str, Skipped] = field(default_factory=dict)
    image_cache_use: dict[str, dict[str, int]] = field(default_factory=dict)
    image_size: int | None = None  # of the run in progress
    fingerprint: str = ""  # of the run in progress
    run_label: str = ""  # of the run in progress, for progress bars

    def loader_options(self, workers: int, *, generator: torch.Generator | None = None) -> dict[str, Any]:
        """DataLoader options: workers, start method, pinning, and an explicit generator.

        Every loader gets its own generator: a DataLoader without one draws its workers' base
        seed from the global stream, so a loader that runs in one run and not in another would
        shift every later random number.
        """
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(0)
        options: dict[str, Any] = {"num_workers": workers, "pin_memory": self.device.type == "cuda",
                                   "generator": generator}
        if workers > 0:
            options.update(worker_init_fn=seed_worker, multiprocessing_context=self.start_method, prefetch_factor=4)
        return options

    def images(self, samples: Sequence[Sample], prep: Preprocessing) -> ImageCache | None:
        """The decoded-image cache holding ``samples`` at ``prep``'s resize, or ``None`` (stream)."""
        cache = open_image_cache(samples, fingerprint=self.fingerprint, size=prep.resize_size,
                                 interpolation=prep.interpolation, cache_dir=self.image_cache_dir,
                                 num_workers=self.num_workers, progress=self.progress)
        if cache is not None:
            tally_use(self.image_cache_use, cache.to_dict())
            for f in cache.failures:
                self.failures[f.path] = f
        return cache


class _Loaders:
    """Training batches (uint8, augmented on the training device) and evaluation batches.

    Images come from the decoded-image cache (memory-mapped: each image decoded once for every
    run, process and worker) or, without one, are decoded on the fly into the same pixels. The
    order of the training images and every crop and flip are drawn from the run's generators,
    in the main process, so both sources give the same batches.
    """

    def __init__(self, data: RunData, prep: Preprocessing, recipe: Recipe, env: RunEnv,
                 generator: torch.Generator) -> None:
        self.env, self.prep, self.recipe = env, prep, recipe
        self.size = prep.image_size
        self.batch_size = recipe.batch_size
        self.order_gen = generator
        self.aug_gen = torch.Generator()
        self.aug_gen.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        self.cache = env.images(data.pool or data.fit + data.select + data.report, prep)
        self.splits = {"fit": data.fit, "select": data.select, "report": data.report}
        if self.cache is not None:
            self.splits = {k: [s for s in v if s.path in self.cache] for k, v in self.splits.items()}
        self.n_fit = len(self.splits["fit"])
        self.workers = default_workers() if env.num_workers is None else env.num_workers

    def steps_per_epoch(self) -> int:
        n, b = self.n_fit, self.batch_size
        return max(1, n // b if n > b else 1)

    def _batches_of(self, samples: list[Sample], order: list[int], batch_size: int, *,
                    drop_last: bool) -> Iterator[tuple[list[torch.Tensor], list[int]]]:
        """Decoded images (CHW uint8) of ``samples`` in ``order``, one batch at a time."""
        b = batch_size
        groups = [order[i:i + b] for i in range(0, len(order), b)]
        if drop_last and len(order) > b and len(groups[-1]) < b:
            groups.pop()  # the last, smaller batch: batch statistics of a few images are noise
        if self.cache is not None:
            for group in groups:
                yield self.cache.images(self.cache.index_of(samples[i].path) for i in group), group
            return
        loader = torch.utils.data.DataLoader(
            _StreamedImages(samples, self.prep.resize_size, self.prep.interpolation), batch_sampler=groups,
            collate_fn=_collate_arrays, **self.env.loader_options(self.workers))
        for images, positions, failures in loader:
            for f in failures:
                self.env.failures[f.path] = f
            yield images, positions

    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        fit = self.splits["fit"]
        order = torch.randperm(len(fit), generator=self.order_gen).tolist()
        recipe, dev = self.recipe, self.env.device
        for images, positions in self._batches_of(fit, order, self.batch_size, drop_last=True):
            if not images:
                continue
            labels = torch.tensor([fit[i].label for i in positions], dtype=torch.int64)
            if recipe.crop_scale is not None:
                batch = random_resized_crop(images, self.size, scale=recipe.crop_scale, flip_p=0.5 if recipe.flip else 0.0,
                                            generator=self.aug_gen, interpolation=self.prep.interpolation, device=dev)
            else:
                batch = center_crop(images, self.size, device=dev)
            yield batch, labels

    def eval_batches(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        samples = self.splits[split]
        for images, positions in self._batches_of(samples, list(range(len(samples))), self.batch_size * 2,
                                                  drop_last=False):
            if images:
                yield (center_crop(images, self.size, device=self.env.device),
                       torch.tensor([samples[i].label for i in positions], dtype=torch.int64))


# --------------------------------------------------------------------------- fit loops


def _normaliser(prep: Preprocessing, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    def normalise(x: torch.Tensor) -> torch.Tensor:
        # uint8 travels to the device (4x less to copy); the float conversion happens there.
        # channels_last: 1.7x faster training for efficientnet_lite0 on CPU too, 1.1x for resnet18.
        return prep.normalize(x.to(device, non_blocking=True)).contiguous(memory_format=torch.channels_last)

    return normalise


def _lr_factor(recipe: Recipe, steps_per_epoch: int) -> Callable[[int, int | None, int], float]:
    """The learning-rate multiplier at a step, given where the cool-down started and how long it is.

    Fixed budget: linear warm-up over ``warmup`` of the steps, then cosine to 0 at the last
    epoch. ``auto``: linear warm-up over ``warmup_epochs``, then the peak is held; once the
    cool-down starts (at step ``cool_start``, ``cool_steps`` long) it falls linearly to 0.
    """
    if not recipe.early_stopping:
        total = recipe.epochs * steps_per_epoch
        warm = int(round(recipe.warmup * total))

        def fixed(step: int, _cool_start: int | None, _cool_steps: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        return fixed
    warm = recipe.warmup_epochs * steps_per_epoch

    def held(step: int, cool_start: int | None, cool_steps: int) -> float:
        if cool_start is not None:
            return max(0.0, (cool_steps - (step - cool_start)) / max(1, cool_steps))
        return (step + 1) / (warm + 1) if step < warm else 1.0

    return held


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


@dataclass
class _Eval:
    """Predictions on one split: labels, predicted classes, and the mean cross-entropy."""

    y_true: np.ndarray
    y_pred: np.ndarray
    loss: float

    @property
    def accuracy(self) -> float:
        return _scores(self.y_true, self.y_pred)[0]


def _predict(backbone: Backbone, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], normalise: Callable,
             env: RunEnv) -> _Eval:
    backbone.model.eval()
    trues, preds, loss, n = [], [], 0.0, 0
    with torch.inference_mode():
        for images, labels in batches:
            with env.precision.autocast(env.device):
                logits = backbone.forward(normalise(images))
            loss += float(F.cross_entropy(logits.float(), labels.to(logits.device), reduction="sum"))
            n += len(labels)
            preds.append(logits.argmax(1).cpu())
            trues.append(labels)
    if not trues:
        return _Eval(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), float("nan"))
    return _Eval(torch.cat(trues).numpy(), torch.cat(preds).numpy(), loss / max(1, n))


def _chance(samples: Sequence[Sample]) -> tuple[float, int]:
    """Majority-class share of ``samples`` and their number."""
    counts = np.bincount([s.label for s in samples]) if samples else np.zeros(1)
    return (float(counts.max() / counts.sum()) if counts.sum() else 0.0), int(counts.sum())


def learned(best_selection: float | None, select: Sequence[Sample]) -> bool | None:
    """Whether a run's best selection accuracy left chance: above the majority-class share by more
    than two binomial standard errors of the selection split (``None`` without one).

    Example:
        >>> from advisor.data import Sample
        >>> sel = [Sample(f"{i}.png", i % 2, "train") for i in range(40)]
        >>> learned(0.55, sel), learned(0.9, sel)
        (False, True)
    """
    chance, n = _chance(select)
    if best_selection is None or not n:
        return None
    return bool(best_selection > chance + 2.0 * math.sqrt(chance * (1.0 - chance) / n) + _EPS)


def _snapshot(obj: Any) -> Any:
    """A detached copy of a state dict (tensors cloned), to restore later."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_snapshot(v) for v in obj]
    return copy.deepcopy(obj)


class _Trainer:
    """One network's optimiser, learning-rate schedule and data streams, at one learning-rate factor.

    Its state (weights, optimiser, gradient scaler, step, random streams) can be saved and
    restored: the learning-rate probes start from one state, the winner goes on from its own,
    and the cool-down starts from the best epoch's.
    """

    def __init__(self, strategy: Strategy, backbone: Backbone, groups: list[dict[str, Any]], loaders: "_Loaders",
                 normalise: Callable, env: RunEnv, factor: float, bar: Any) -> None:
        self.strategy, self.backbone, self.loaders, self.normalise, self.env = strategy, backbone, loaders, normalise, env
        self.recipe, self.factor, self.bar = strategy.recipe, factor, bar
        self.base_lrs = [g["lr"] * factor for g in groups]
        self.optimizer = torch.optim.AdamW([{**g, "lr": lr} for g, lr in zip(groups, self.base_lrs)],
                                           weight_decay=self.recipe.weight_decay)
        self.scaler = env.precision.grad_scaler(env.device)
        self.steps_per_epoch = loaders.steps_per_epoch()
        self.lr_at = _lr_factor(self.recipe, self.steps_per_epoch)
        self.step = 0
        self.cool_start: int | None = None
        self.cool_steps = 0
        self.train_time = 0.0
        self.images_seen = 0

    def state(self, *, streams: bool = True) -> dict[str, Any]:
        state = {"model": _snapshot(self.backbone.model.state_dict()), "optimizer": _snapshot(self.optimizer.state_dict()),
                 "scaler": _snapshot(self.scaler.state_dict()), "step": self.step}
        if streams:
            state["streams"] = (self.loaders.order_gen.get_state(), self.loaders.aug_gen.get_state())
        return state

    def load(self, state: dict[str, Any]) -> None:
        self.backbone.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(_snapshot(state["optimizer"]))
        self.scaler.load_state_dict(state["scaler"])
        if "streams" in state:
            self.loaders.order_gen.set_state(state["streams"][0])
            self.loaders.aug_gen.set_state(state["streams"][1])
        self.step = state["step"]

    def cool_down(self, epochs: int) -> None:
        self.cool_start, self.cool_steps = self.step, epochs * self.steps_per_epoch

    def train_epoch(self, epoch: int) -> float:
        """One epoch (0-based index ``epoch``); returns the mean training loss."""
        model, dev, recipe = self.backbone.model, self.env.device, self.recipe
        model.train()
        self.strategy.on_train_epoch_start(model, epoch)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=dev)
        n_seen = 0
        for images, labels in self.loaders.train_batches():
            factor = self.lr_at(self.step, self.cool_start, self.cool_steps)
            for group, lr in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = lr * factor
            x = self.normalise(images)
            y = labels.to(dev, non_blocking=True)
            with self.env.precision.autocast(dev):
                logits = self.backbone.forward(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            loss_sum += loss.detach() * len(y)
            n_seen += len(y)
            if self.bar is not None:
                self.bar.update(1)
        _sync(dev)
        self.train_time += time.perf_counter() - t0
        self.images_seen += n_seen
        return float(loss_sum.item() / max(1, n_seen))

    def evaluate(self, split: str) -> _Eval:
        return _predict(self.backbone, self.loaders.eval_batches(split), self.normalise, self.env)


def _point(epoch: int, loss: float, ev: _Eval | None, monitor: str, phase: str, lr: float) -> dict[str, Any]:
    acc = ev.accuracy if ev is not None else None
    return {"epoch": epoch, "train_loss": loss, "selection_accuracy": acc if monitor == "select" else None,
            "accuracy": acc if monitor == "report" else None, "phase": phase, "lr_factor": lr}


def _choose_probe(probes: Sequence[dict[str, Any]], n_select: int) -> int:
    """The probe that goes on: the best selection accuracy; within one image of it, the lowest
    selection loss (a finer judge on small data); then the factor nearest 1."""
    best = max(p["selection_accuracy"] for p in probes)
    close = [i for i, p in enumerate(probes) if p["selection_accuracy"] >= best - 1.0 / max(1, n_select) - _EPS]
    return min(close, key=lambda i: (probes[i]["selection_loss"], abs(math.log(probes[i]["factor"]))))


def fit_network(strategy: Strategy, backbone: Backbone, data: RunData, env: RunEnv) -> Fit:
    """The end-to-end training loop shared by every strategy that trains the network.

    1. Learning rate (``probe_epochs`` > 0, with a selection split): each of ``probe_factors``
       times the default learning rates trains ``probe_epochs`` epochs from the same start and
       the same random streams; the best on the selection split (:func:`_choose_probe`) goes on
       from where it stopped, the others are dropped (their epochs count in the run's time).
    2. ``auto`` budget: warm-up, then the peak learning rate is held while the selection
       accuracy improves; after ``patience`` epochs without a gain of ``min_delta`` (or at the
       cap), the best weights are restored and the learning rate cools down linearly to 0 over
       ``max(MIN_COOLDOWN, ceil(cooldown * epochs run))`` epochs. The best epoch of the
       cool-down (annealed weights only) is evaluated on the reported split.
    3. Fixed budget: warm-up and cosine over ``epochs``; the last epoch is evaluated.

    The reported split never chooses anything: without a selection split there is no probe
    and no early stopping (the runner gives such runs a fixed budget), and the curve's
    accuracies on the reported split only draw the figure.
    """
    start = time.perf_counter()
    dev = env.device
    prep = backbone.preprocessing.at_size(env.image_size)
    groups = strategy.configure(backbone, data.num_classes)
    recipe = strategy.recipe  # configure may describe what it chose (Partial's tail)
    backbone.model.to(dev).to(memory_format=torch.channels_last)
    generator = torch.Generator()
    generator.manual_seed(torch.initial_seed())  # the run's seed (isolated_random set it)
    loaders = _Loaders(data, prep, recipe, env, generator)
    normalise = _normaliser(prep, dev)
    monitor = "select" if loaders.splits["select"] else "report"
    n_select = len(loaders.splits["select"])
    auto = recipe.early_stopping and monitor == "select"
    if recipe.early_stopping and monitor != "select":
        # Never select on the reported split: without a selection split, a fixed budget.
        recipe = strategy.recipe = replace(recipe, budget="fixed", epochs=FALLBACK_EPOCHS, warmup=0.1,
                                           schedule="linear warm-up (10 % of steps), then cosine to 0 "
                                                    "(no selection split: fixed budget, last epoch)")
    factors = tuple(recipe.probe_factors) if recipe.probe_epochs and monitor == "select" else ()
    if recipe.unfreeze_epoch is not None and recipe.unfreeze_epoch < recipe.probe_epochs:
        factors = ()  # a probe would unfreeze, and the next would start from an unfrozen network
    probe_epochs = min(recipe.probe_epochs, recipe.epochs) if factors else 0
    bar = progress_bar(None, env.run_label or strategy.name, unit="step", enabled=env.progress)

    def trainer(factor: float) -> _Trainer:
        return _Trainer(strategy, backbone, groups, loaders, normalise, env, factor, bar)

    curve: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []
    spent = {"train_time": 0.0, "images": 0, "probe_epochs": 0}
    try:
        if factors:
            initial = trainer(1.0).state()
            finished = []
            for factor in factors:
                t = trainer(factor)
                t.load({**initial, "optimizer": t.optimizer.state_dict(), "scaler": t.scaler.state_dict()})
                points = []
                for epoch in range(probe_epochs):
                    loss = t.train_epoch(epoch)
                    ev = t.evaluate("select")
                    points.append(_point(epoch + 1, loss, ev, "select", f"probe x{factor:g}", factor))
                probes.append({"factor": factor, "selection_accuracy": ev.accuracy, "selection_loss": ev.loss})
                finished.append((t, t.state(), points))
                spent["probe_epochs"] += probe_epochs
            chosen = _choose_probe(probes, n_select)
            for i, (t, _, _) in enumerate(finished):
                if i != chosen:
                    spent["train_time"] += t.train_time
                    spent["images"] += t.images_seen
            t, state, curve = finished[chosen]
            t.load(state)
            del finished, initial
        else:
            t = trainer(1.0)
        first = len(curve)
        best: dict[str, Any] = {"accuracy": -math.inf, "epoch": 0, "state": None}
        since, cooling, cool_left, hit_cap = 0, False, 0, False
        for p in curve:  # the winning probe's epochs count towards the best and the patience
            if p["selection_accuracy"] > best["accuracy"] + recipe.min_delta - _EPS or best["epoch"] == 0:
                best = {"accuracy": p["selection_accuracy"], "epoch": p["epoch"], "state": None}
        if auto and best["epoch"] == first and first:
            best["state"] = t.state(streams=False)
        epoch = first
        while True:
            if not cooling and epoch >= recipe.epochs:
                if not auto:
                    break
                hit_cap = True
            if not cooling and auto and (since >= recipe.patience or hit_cap):
                if best["state"] is not None:
                    t.load(best["state"])
                cooling, cool_left = True, max(MIN_COOLDOWN, math.ceil(recipe.cooldown * epoch))
                t.cool_down(cool_left)
                # Only annealed weights are evaluated: the best epoch of the cool-down. An epoch
                # held at the peak learning rate can top a noisy selection split and still report
                # less (hymenoptera, scratch: selection 67 % at peak, 57.5 % reported).
                best = {"accuracy": -math.inf, "epoch": 0, "state": None}
            if cooling and cool_left == 0:
                break
            lr = t.lr_at(t.step, t.cool_start, t.cool_steps) * t.factor
            loss = t.train_epoch(epoch)
            epoch += 1
            ev = t.evaluate(monitor)
            curve.append(_point(epoch, loss, ev, monitor, "cool-down" if cooling else "train", lr))
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{ev.accuracy:.3f}")
            acc = ev.accuracy if math.isfinite(ev.accuracy) else 0.0
            if cooling:
                cool_left -= 1
                if acc >= best["accuracy"] - _EPS:  # a tie goes to the later, cooler weights
                    best = {"accuracy": acc, "epoch": epoch, "state": t.state(streams=False) if cool_left else None}
            elif acc > best["accuracy"] + recipe.min_delta - _EPS or best["epoch"] == 0:
                best = {"accuracy": acc, "epoch": epoch, "state": t.state(streams=False) if auto else None}
                since = 0
            elif epoch > recipe.patience_from:
                since += 1
    finally:
        if bar is not None:
            bar.close()
    epochs_run = len(curve) - first + (probe_epochs if factors else 0)
    if auto and best["state"] is not None and best["epoch"] != curve[-1]["epoch"]:  # an earlier cool-down epoch
        t.load(best["state"])
        selected = best["epoch"]
    else:
        selected = curve[-1]["epoch"] if curve else 0
    report = t.evaluate("report")
    accuracy, f1 = _scores(report.y_true, report.y_pred)
    selection = curve[selected - 1]["selection_accuracy"] if curve else None
    best_selection = max((p["selection_accuracy"] for p in curve if p["selection_accuracy"] is not None), default=None)
    train_time = t.train_time + spent["train_time"]
    images_seen = t.images_seen + spent["images"]
    converged = (not hit_cap) if auto else (epochs_run - _best_monitored(curve) >= recipe.patience)
    return Fit(
        accuracy=accuracy, macro_f1=f1, selection_accuracy=selection, curve=curve,
        seconds=time.perf_counter() - start,
        images_per_second=images_seen / train_time if train_time > 0 else float("nan"),
        recipe=replace(recipe, lr_scale=recipe.lr_scale * t.factor), epochs_run=epochs_run, best_epoch=selected,
        converged=converged, correct=report.y_true == report.y_pred, learned=learned(best_selection, loaders.splits["select"]),
        details={"n_fit": loaders.n_fit, "n_report": int(len(report.y_true)), "n_select": n_select,
                 "image_cache": None if loaders.cache is None else str(loaders.cache.path),
                 "train_step_seconds": train_time, "budget": "auto" if auto else "fixed",
                 "lr_probe": probes, "probe_epochs": spent["probe_epochs"],
                 "cooldown_epochs": sum(1 for p in curve if p.get("phase") == "cool-down")},
    )


def _best_monitored(curve: Sequence[dict[str, Any]]) -> int:
    """The epoch of the best monitored accuracy (the first of equals)."""
    values = [(p.get("selection_accuracy") if p.get("selection_accuracy") is not None else p.get("accuracy")) or 0.0
              for p in curve]
    return int(curve[int(np.argmax(values))]["epoch"]) if curve else 0


def _lbfgs_head(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, recipe: Recipe,
                chunks: int, on_chunk: Callable[[int, nn.Linear], None] | None = None) -> nn.Linear:
    """Full-batch L-BFGS on cross-entropy + ``l2 / (2 n) * ||W||^2``, from zeros (no randomness).

    The problem of sklearn's ``LogisticRegression(C=1/l2)``, the profiler's linear probe. It
    converges in tens of iterations where minibatch AdamW needed hundreds of steps and still
    ended 11 points lower on digits (efficientnet_lite0, 64 px).
    """
    head = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    iters = max(1, math.ceil((recipe.head_steps or 1) / chunks))
    optimizer = torch.optim.LBFGS(head.parameters(), lr=recipe.lr_head, max_iter=iters, history_size=20,
                                  line_search_fn="strong_wolfe")
    penalty = l2 / max(1, len(y))

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(x), y, label_smoothing=recipe.label_smoothing)
        loss = loss + 0.5 * penalty * head.weight.pow(2).sum()
        loss.backward()
        return loss

    for chunk in range(chunks):
        optimizer.step(closure)
        if on_chunk is not None:
            on_chunk(chunk, head)
    return head


def pool_features(backbone: Backbone, pool: Sequence[Sample], batch_size: int, env: RunEnv) -> Features:
    """The frozen strategy's embeddings of ``pool`` (one cached pass shared by every freeze run).

    Random weights differ with every seed and the cache key cannot tell them apart, so they are
    never cached. Freeze needs no BatchNorm statistics (the key records it). Any executor that
    extracts ahead of the runs calls this, so the runs find the same cache entry.
    """
    return extract_features(backbone, list(pool), image_size=env.image_size, batch_size=batch_size,
                            num_workers=env.num_workers, device=env.device,
                            cache_dir=env.cache_dir if backbone.pretrained else "", fingerprint=env.fingerprint,
                            collect_bn=False, progress=env.progress, precision=env.precision,
                            start_method=env.start_method, image_cache_dir=env.image_cache_dir)


def _standardised(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero mean, unit variance per dimension; a dimension (nearly) constant on these images keeps
    scale 1. Dividing by its tiny spread would give it a huge weight once folded into the head: no
    harm on the same frozen embeddings, but a network that starts from that head (LP-FT) sees the
    dimension move in training and its logits explode (measured: training loss 425 at the first
    epoch on digits, and a run stuck at chance)."""
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    typical = std[std > 0].median() if bool((std > 0).any()) else torch.tensor(1.0)
    std = torch.where(std > 1e-3 * typical, std, torch.ones_like(std))
    return (x - mean) / std, mean, std


def _head_accuracy(head: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((head(x).argmax(1) == y).float().mean()) if len(y) else float("nan")


def choose_l2(x: torch.Tensor, y: torch.Tensor, num_classes: int, recipe: Recipe, *, seed: int,
              ) -> tuple[float, list[dict[str, Any]], int]:
    """The L2 strength of a linear head, by stratified k-fold cross-validation over ``x``.

    Every image takes part in both fitting and choosing, which a single 20 % carve cannot
    afford on small data (34 selection images chose the strongest L2 of the grid on a 166-image
    set and cost 8 points). Each fold is standardised on its own training part. Ties (within
    half an image of the mean fold size) go to the stronger L2, the simpler head.

    Returns:
        The chosen strength, one ``{"l2", "cv_accuracy"}`` row per candidate, and the folds used
        (0 when a class has fewer than two images: the recipe's default strength is used).
    """
    from sklearn.model_selection import StratifiedKFold

    grid = tuple(recipe.l2_grid) or (recipe.weight_decay,)
    counts = np.bincount(y.numpy(), minlength=num_classes)
    folds = min(recipe.cv_folds, int(counts[counts > 0].min()) if counts.any() else 0)
    if len(grid) < 2 or folds < 2:
        return recipe.weight_decay, [], 0
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**31)
    split = list(splitter.split(np.zeros(len(y)), y.numpy()))
    few = recipe.head_steps and max(1, recipe.head_steps // 2)  # a cheaper solve per fold
    fold_recipe = replace(recipe, head_steps=few)
    rows = []
    for l2 in grid:
        correct = 0
        for train_idx, test_idx in split:
            xs, mean, std = _standardised(x[train_idx])
            head = _lbfgs_head(xs, y[train_idx], num_classes, l2, fold_recipe, 1)
            correct += _head_accuracy(head, (x[test_idx] - mean) / std, y[test_idx]) * len(test_idx)
        rows.append({"l2": l2, "cv_accuracy": correct / len(y)})
    best = max(r["cv_accuracy"] for r in rows)
    slack = 0.5 * folds / len(y)
    chosen = max((r for r in rows if r["cv_accuracy"] >= best - slack - _EPS), key=lambda r: r["l2"])
    return chosen["l2"], rows, folds


@dataclass
class _Head:
    """A linear head fitted on standardised embeddings, folded back onto raw ones."""

    weight: torch.Tensor
    bias: torch.Tensor
    l2: float
    cv: list[dict[str, Any]]
    folds: int
    curve: list[dict[str, Any]]
    n_train: int

    def fold_into(self, backbone: Backbone) -> None:
        """Copy into the network's head: ``backbone.forward`` then predicts the same."""
        new = backbone.head
        with torch.no_grad():
            new.weight.copy_(self.weight.view_as(new.weight).to(new.weight.device))
            new.bias.copy_(self.bias.to(new.bias.device))

    def predict(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return (x @ self.weight.T + self.bias).argmax(1).numpy()


def _embeddings(backbone: Backbone, data: RunData, env: RunEnv, batch_size: int
                ) -> tuple[Callable[[Sequence[Sample]], tuple[torch.Tensor, torch.Tensor]], Features, float]:
    """The pool's embeddings (one cached pass) and a lookup of any split's rows and labels."""
    start = time.perf_counter()
    pool = data.pool or sorted({s.path: s for s in data.fit + data.select + data.report}.values(),
                               key=lambda s: s.path)
    # Extract before the head is replaced, so the cached logits are ImageNet's like every other
    # entry of the feature cache.
    feats = pool_features(backbone, pool, batch_size, env)
    for f in feats.failures:
        env.failures[f.path] = f
    tally_use(env.image_cache_use, feats.image_cache)
    seconds = feats.seconds if feats.cached else time.perf_counter() - start
    row = {p: i for i, p in enumerate(feats.paths)}
    embeddings = torch.from_numpy(feats.embeddings).float()

    def rows(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = [row[s.path] for s in samples if s.path in row]
        return embeddings[idx], torch.tensor([s.label for s in samples if s.path in row], dtype=torch.int64)

    return rows, feats, seconds


def _fit_head(x: torch.Tensor, y: torch.Tensor, num_classes: int, recipe: Recipe) -> _Head:
    """L2 chosen by cross-validation over ``x``, then one head fitted on all of it."""
    l2, cv, folds = choose_l2(x, y, num_classes, recipe, seed=torch.initial_seed())
    xs, mean, std = _standardised(x)
    curve: list[dict[str, Any]] = []

    def record(chunk: int, head: nn.Linear) -> None:
        with torch.no_grad():
            loss = float(F.cross_entropy(head(xs), y))
        curve.append({"epoch": chunk + 1, "train_loss": loss, "selection_accuracy": None, "accuracy": None,
                      "train_accuracy": _head_accuracy(head, xs, y)})

    head = _lbfgs_head(xs, y, num_classes, l2, recipe, recipe.epochs, record)
    weight = head.weight.detach() / std
    return _Head(weight, head.bias.detach() - weight @ mean, l2, cv, folds, curve, int(len(y)))


def probe_head(backbone: Backbone, data: RunData, env: RunEnv, *, batch_size: int) -> dict[str, Any]:
    """LP-FT's first step: a new head for ``backbone``, fitted on its frozen embeddings of the
    fit split (never the selection split, which later judges the fine-tuning epochs)."""
    start = time.perf_counter()
    rows, feats, extraction = _embeddings(backbone, data, env, batch_size)
    recipe = get_strategy("freeze")().recipe  # the frozen strategy's own head recipe
    x, y = rows(data.fit)
    head = _fit_head(x, y, data.num_classes, recipe)
    backbone.replace_head(data.num_classes)
    head.fold_into(backbone)
    return {"l2": head.l2, "cv_folds": head.folds, "l2_cv": head.cv, "features_cached": bool(feats.cached),
            "extraction_seconds": extraction,
            "seconds": (extraction if feats.cached else 0.0) + time.perf_counter() - start}


def fit_head_on_embeddings(strategy: Strategy, backbone: Backbone, data: RunData, env: RunEnv) -> Fit:
    """``freeze``: embeddings once (cached), then a linear head on them.

    The head trains on the fit split, the images every strategy trains on: its L2 strength is
    chosen by stratified k-fold cross-validation over them (:func:`choose_l2`), then it is
    refitted on all of them and evaluated on the reported split. (The selection split, which
    the networks need to choose their epochs and learning rate, is left out: every strategy
    learns from the same images.) The standardisation is folded into the network's new head,
    so ``backbone.forward`` predicts the same.
    """
    recipe = strategy.recipe
    rows, feats, extraction = _embeddings(backbone, data, env, recipe.batch_size)
    head_start = time.perf_counter()
    strategy.configure(backbone, data.num_classes)
    train = list(data.fit)
    x, y = rows(train)
    head = _fit_head(x, y, data.num_classes, recipe)
    head.fold_into(backbone)
    x_rep, y_rep = rows(data.report)
    y_pred = head.predict(x_rep)
    head_seconds = time.perf_counter() - head_start
    acc, f1 = _scores(y_rep.numpy(), y_pred)
    seconds = extraction + head_seconds
    cv_acc = next((r["cv_accuracy"] for r in head.cv if r["l2"] == head.l2), None)
    return Fit(
        accuracy=acc, macro_f1=f1, selection_accuracy=cv_acc, curve=head.curve, seconds=seconds,
        images_per_second=head.n_train * recipe.epochs / seconds if seconds > 0 else float("nan"),
        recipe=replace(recipe, weight_decay=head.l2), epochs_run=recipe.epochs, best_epoch=recipe.epochs,
        converged=True, correct=y_rep.numpy() == y_pred,
        learned=learned(cv_acc, train) if head.cv else None,
        details={"n_fit": head.n_train, "n_report": int(len(y_rep)), "n_select": head.n_train if head.cv else 0,
                 "features_cached": bool(feats.cached), "extraction_seconds": extraction,
                 "head_seconds": head_seconds, "l2_chosen": head.l2, "l2_grid": list(recipe.l2_grid),
                 "l2_cv": head.cv, "cv_folds": head.folds},
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


def _epochs_to_90(curve: Sequence[dict[str, Any]]) -> int | None:
    def monitored(p: dict[str, Any]) -> float | None:
        return next((p[k] for k in ("selection_accuracy", "accuracy", "train_accuracy") if p.get(k) is not None), None)

    points = [(p["epoch"], monitored(p)) for p in curve]
    points = [(e, a) for e, a in points if a is not None and math.isfinite(a)]
    if not points:
        return None
    target = 0.9 * max(a for _, a in points)
    return next(int(e) for e, a in points if a >= target - _EPS)


def _fit_once(strategy: Strategy, spec: RunSpec, data: RunData, env: RunEnv) -> Fit:
    """Build and train; on CUDA out-of-memory halve the batch size and try again."""
    while True:
        if env.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(env.device)
        try:
            return strategy.fit(strategy.build(spec.backbone, weights=spec.weights), data, env)
        except torch.cuda.OutOfMemoryError:
            batch = strategy.recipe.batch_size
            if batch <= 1:
                raise
            strategy = strategy.with_recipe(replace(strategy.recipe, batch_size=batch // 2))
            gc.collect()
            torch.cuda.empty_cache()


def train_run(spec: RunSpec, env: RunEnv) -> RunResult:
    """Train one run and measure it; exceptions propagate (:func:`failed_run` records them).

    The run draws every random number (initialisation, data order, augmentation, dropout)
    from streams seeded by ``derive_seed(spec.stream)``, inside :func:`advisor.runtime.isolated_random`:
    the same spec gives the same numbers whatever ran before it, and the caller's streams are
    left as they were.

    Example:
        >>> run = train_run(spec, RunEnv(torch.device("cpu")))  # doctest: +SKIP
        >>> run.status, 0 <= run.accuracy <= 1  # doctest: +SKIP
        ('ok', True)
    """
    env.image_size, env.fingerprint = spec.image_size, spec.fingerprint
    env.run_label = f"{spec.backbone} {spec.strategy} s{spec.seed}" + (f" lr x{spec.lr_factor:g}" if spec.lr_factor != 1 else "")
    data = RunData(list(spec.fit), list(spec.select), list(spec.report), spec.num_classes, list(spec.pool))
    strategy = get_strategy(spec.strategy)(spec.recipe)
    with isolated_random(derive_seed(spec.stream or spec.key or (spec.backbone, spec.strategy), spec.seed)):
        fit = _fit_once(strategy, spec, data, env)
    memory, memory_note = _peak_memory_mb(env.device)
    details = dict(fit.details, device=str(env.device), memory=memory_note, precision=env.precision.name,
                   n_select=fit.details.get("n_select", len(spec.select)), splits=dict(spec.splits),
                   images_per_class=spec.images_per_class,
                   versions=code_versions())
    return RunResult(
        backbone=spec.backbone, strategy=spec.strategy, seed=int(spec.seed), status="ok",
        accuracy=fit.accuracy, macro_f1=fit.macro_f1, selection_accuracy=fit.selection_accuracy,
        train_seconds=fit.seconds, images_per_second=fit.images_per_second, peak_memory_mb=memory,
        epochs_to_90=_epochs_to_90(fit.curve), epochs_run=fit.epochs_run, best_epoch=fit.best_epoch,
        converged=fit.converged, learned=fit.learned, curve=tuple(fit.curve), recipe=fit.recipe.to_dict(), lr_factor=spec.lr_factor,
        fraction=spec.fraction, key=spec.key, details=details,
        correct=None if fit.correct is None else encode_correct(fit.correct),
    )


def failed_run(spec: RunSpec, err: BaseException) -> RunResult:
    """A run that raised, as a result: the error's type and message, and the traceback's end."""
    message = f"{type(err).__name__}: {err}".strip()
    return RunResult(
        backbone=spec.backbone, strategy=spec.strategy, seed=int(spec.seed), status="failed",
        error=message[:2000], recipe=spec.recipe.to_dict(), lr_factor=spec.lr_factor, fraction=spec.fraction,
        key=spec.key,
        details={"traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:]},
    )
