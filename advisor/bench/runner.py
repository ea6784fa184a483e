"""The driver: plan the grid of runs, train what is not finished, judge, and assemble the result.

Honest selection: three roles of data are kept apart. The weights are trained on the *fit*
split; epochs (``epochs="auto"``), learning rates (``tune``) and the frozen head's
regularisation are chosen on the *selection* split, carved from the training data (or the
folder's ``val/`` when it also has ``test/``); the accuracy is *reported* on a split that chose
nothing (the folder's ``val/`` or ``test/``, or a seeded stratified hold-out).

Reproducible: each run draws its random numbers from streams seeded by its key, so the same
grid gives the same numbers in any order, interrupted and resumed or not.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from advisor.backbones import backbone_info
from advisor.bench.config import AUTO, BenchConfig
from advisor.bench.executors import Executor, LocalExecutor, RunOptions
from advisor.bench.results import (
    code_versions,
    BenchResult,
    RunResult,
    agreement,
    rank_correlation,
    run_key,
    select_trials,
    summarize_runs,
    verdict,
)
from advisor.bench.strategies import COOLDOWN, CV_FOLDS, FALLBACK_EPOCHS, MAX_EPOCHS, MIN_COOLDOWN, PROBE_EPOCHS, TUNE_FACTORS, get_strategy
from advisor.bench.training import RunSpec, train_run
from advisor.curves import crossing_sentence, curves_from_runs
from advisor.data import Dataset, Sample, scan, stratified_sample, stratified_split
from advisor.imagecache import summarize_use
from advisor.profile import summarize_dataset
from advisor.utils import versions

#: Below this many selection images, the report warns that epochs and learning rates were chosen
#: on noise (one image is 1 point or more; on 34 images a choice cost 8 points, issue 18).
MIN_SELECTION = 100
__all__ = ["Splits", "bench", "data_size", "make_splits", "nested_subset", "plan_runs"]


@dataclass(frozen=True)
class Splits:
    """The three roles of data for one seed.

    Attributes:
        fit: Trains the weights.
        select: Chooses epochs, learning rates, regularisation; empty when nothing is chosen.
        report: Measures the reported accuracy; it chooses nothing.
        names: How each was made, in words (``{"fit", "select", "report"}``).
        rule: What the run key records of how they were made.
    """

    fit: tuple[Sample, ...]
    select: tuple[Sample, ...]
    report: tuple[Sample, ...]
    names: dict[str, str | None]
    rule: dict[str, Any]


def _carve(dataset: Dataset, samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """A stratified, seeded hold-out of ``fraction`` of ``samples`` (classes with one image stay)."""
    pool = Dataset(dataset.root, "flat", dataset.classes, tuple(samples))
    return stratified_split(pool, val_fraction=fraction, seed=seed)


def make_splits(dataset: Dataset, config: BenchConfig, seed: int) -> Splits:
    """Fit, selection and reported splits for ``seed`` (see the module's "Honest selection").

    - ``train/`` + ``val/`` + ``test/``: fit on train, select on val, report test.
    - ``train/`` + ``val/`` (or ``test/``): report that split; with something to select, a
      stratified ``selection_fraction`` of train is carved out (seeded) to select on.
    - One folder per class: a stratified ``val_fraction`` is held out (seeded) and reported;
      the selection split is carved from the rest as above.

    ``max_per_class`` then caps the fit split (seeded).
    """
    splits = dataset.splits
    own = "train" in splits and ("val" in splits or "test" in splits)
    rule: dict[str, Any] = {"kind": "folder" if own else "seeded", "max_per_class": config.max_per_class}
    if own and "val" in splits and "test" in splits:
        train = [s for s in dataset.samples if s.split == "train"]
        select = [s for s in dataset.samples if s.split == "val"] if config.needs_selection else []
        report = [s for s in dataset.samples if s.split == "test"]
        names = {"fit": "train/", "select": "val/" if select else None, "report": "test/"}
        fit = train
    else:
        train, report = stratified_split(dataset, val_fraction=config.val_fraction, seed=seed)
        reported = ("val/" if "val" in splits else "test/") if own else (
            f"held out: stratified {100 * config.val_fraction:.0f} %, seeded")
        if not own:
            rule["val_fraction"] = config.val_fraction
        if config.needs_selection:
            fit, select = _carve(dataset, train, config.selection_fraction, seed)
            rule["selection_fraction"] = config.selection_fraction
            carved = f"carved from train: stratified {100 * config.selection_fraction:.0f} %, seeded"
        else:
            fit, select, carved = train, [], None
        names = {"fit": "train (the rest)" if select else "train", "select": carved, "report": reported}
    if config.max_per_class is not None:
        fit = stratified_sample(fit, per_class=config.max_per_class, total=None, seed=seed)
    return Splits(tuple(fit), tuple(select), tuple(report), names, rule)


def _digest(samples: Sequence[Sample], root: str) -> str:
    """The split's files (relative to the data folder) and labels: its content, not its place."""
    h = hashlib.sha256()
    for s in samples:  # fsencode: a name need not be valid UTF-8
        h.update(os.fsencode(os.path.relpath(s.path, root)) + f"\0{s.label}\n".encode())
    return h.hexdigest()[:16]


def nested_subset(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[Sample, ...]:
    """A class-stratified ``fraction`` of ``samples`` (at least one per class), nested across fractions.

    Each class is shuffled once with a generator seeded by ``seed`` and its label, and the
    subset keeps the first ``round(fraction * n_c)``: with the same seed, the 25 % subset lies
    inside the 50 % one, so a learning curve measures data, not resampling. Order is kept.

    Example:
        >>> from advisor.data import Sample
        >>> pool = [Sample(f"/d/{i}.png", i % 2, "train") for i in range(20)]
        >>> small, half = nested_subset(pool, 0.25, 0), nested_subset(pool, 0.5, 0)
        >>> len(small), len(half), set(small) <= set(half)
        (6, 10, True)
    """
    if fraction >= 1.0:
        return tuple(samples)
    by_label: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_label.setdefault(s.label, []).append(i)
    keep: set[int] = set()
    for label, idx in by_label.items():
        order = np.random.default_rng([seed, label]).permutation(len(idx))
        keep.update(idx[j] for j in order[: max(1, round(fraction * len(idx)))])
    return tuple(s for i, s in enumerate(samples) if i in keep)


def plan_runs(dataset: Dataset, backbones: Sequence[str], config: BenchConfig, *,
              precision: str = "fp32") -> list[RunSpec]:
    """Every run of the grid (backbone x seed x strategy x fraction x learning-rate factor), keyed.

    The key holds everything that changes a result: data fingerprint, backbone, strategy,
    seed, weights, image size, recipe (budget included), the split rule and the exact split
    (the fraction's subset included), precision and learning-rate factor.
    """
    fingerprint = dataset.fingerprint()
    splits = {seed: make_splits(dataset, config, seed) for seed in config.seeds}
    pool = tuple(sorted({s.path: s for sp in splits.values() for s in sp.fit + sp.select + sp.report}.values(),
                        key=lambda s: s.path))
    factors = TUNE_FACTORS if config.tune else (1.0,)
    code = code_versions()
    specs = []
    for name in backbones:
        size = int(config.image_size or backbone_info(name).image_size)
        for seed in config.seeds:
            sp = splits[seed]
            for fraction in sorted(config.fractions, reverse=True):  # the full data first: the verdict
                fit = nested_subset(sp.fit, fraction, seed)
                rule = {**sp.rule, "fraction": fraction} if fraction < 1.0 else sp.rule
                for strategy_name in config.strategies:
                    base = get_strategy(strategy_name)().default_recipe(config)
                    for factor in factors:
                        recipe = replace(base.scaled(factor), lr_sweep=factors) if config.tune else base
                        payload = {
                            "backbone": name, "strategy": strategy_name, "seed": int(seed),
                            "weights": config.weights, "image_size": size, "recipe": recipe.key_dict(),
                            "lr_factor": factor, "precision": precision, "split": rule,
                            "samples": [_digest(fit, dataset.root), _digest(sp.select, dataset.root),
                                        _digest(sp.report, dataset.root)],
                        }
                        # The random streams follow what the run is, not when its files were
                        # written (the data fingerprint holds sizes and modification times) nor
                        # which release trained it; the key holds both, so a new release or
                        # new files train again.
                        stream = run_key(payload)
                        key = run_key({**payload, "dataset": fingerprint, "versions": code})
                        specs.append(RunSpec(
                            backbone=name, strategy=strategy_name, seed=int(seed), recipe=recipe, lr_factor=factor,
                            image_size=size, weights=config.weights, fit=fit, select=sp.select, report=sp.report,
                            num_classes=len(dataset.classes), fingerprint=fingerprint, pool=pool,
                            splits={k: v for k, v in sp.names.items() if v}, fraction=fraction, key=key, stream=stream,
                        ))
    return specs


def data_size(runs: Sequence[RunResult], *, margin: float, seed: int = 0, chance: float | None = None,
              tolerance: dict[str, float] | None = None) -> dict[str, Any] | None:
    """The ``data_size`` block: fitted learning curves and crossing points (:mod:`advisor.curves`).

    ``chance`` is the reported split's majority-class share: sizes at chance level are drawn but
    not fitted. ``tolerance`` maps each backbone to its verdict's tolerance, the gap a crossing
    must clear, so that a crossing never contradicts the verdict. The runs' per-image records
    give the bands a bootstrap over the reported images, paired across strategies (runs read
    from older results files have none: their curves fall back to the parametric bootstrap).
    ``None`` when every run used the full data (no ``fractions``).
    """
    if len({r.fraction for r in runs if r.ok}) < 2:
        return None
    points = [{"backbone": r.backbone, "strategy": r.strategy, "seed": r.seed, "accuracy": r.accuracy,
               "images_per_class": r.details.get("images_per_class"), "correct": r.correctness()}
              for r in runs if r.ok]
    n_report = [r.details.get("n_report") for r in runs if r.ok and r.details.get("n_report")]
    return curves_from_runs([p for p in points if p["images_per_class"]], margin=margin, tolerance=tolerance,
                            n_val=int(np.median(n_report)) if n_report else None, seed=seed, chance=chance)


def _with_tolerances(runs: Sequence[RunResult], winner: dict[str, Any]) -> list[RunResult]:
    """Each run carries the tolerance it was judged by: its pair with its backbone's best strategy."""
    pairs = {(v["backbone"], p["strategy"]): p for v in winner.get("per_backbone") or () for p in v.get("pairs") or ()}
    out = []
    for r in runs:
        pair = pairs.get((r.backbone, r.strategy))
        if r.ok:
            tol = ({k: pair[k] for k in ("against", "gap", "se", "tolerance", "method")} if pair else
                   {"against": None, "note": "the best strategy of its backbone: the others are judged against it"})
            r = replace(r, details={**r.details, "tolerance": tol})
        out.append(r)
    return out


def _crossing_tolerance(v: dict[str, Any]) -> float:
    """The tolerance of the freeze / fine-tune pair in a backbone's verdict (else its own)."""
    pair = {"freeze", "finetune"}
    return next((p["tolerance"] for p in v.get("pairs") or () if {p["strategy"], p["against"]} == pair),
                v["tolerance"])


def _add_crossings(winner: dict[str, Any], crossings: Sequence[dict[str, Any]]) -> None:
    """Each backbone's verdict gains one sentence per crossing point of its learning curves."""
    for v in winner.get("per_backbone") or ():
        sentences = [crossing_sentence(c) for c in crossings if c["backbone"] == v["backbone"]]
        if sentences:
            v["data_size"] = "; ".join(sentences)
            v["rule"] += " More data: " + v["data_size"] + "."
            if v["backbone"] == winner.get("backbone"):
                winner["rule"] += " More data: " + v["data_size"] + "."


def _selection_text(run: RunResult, factors: Sequence[float]) -> str:
    parts = []
    if run.recipe.get("budget") == AUTO:
        parts.append(f"epoch {run.best_epoch} of {run.epochs_run} (early stopping on the selection split)")
    if len(factors) > 1:
        parts.append(f"learning rate x{run.lr_factor:g} of the default, best of "
                     + ", ".join(f"x{f:g}" for f in factors) + " on the selection split")
    if run.strategy == "freeze" and run.details.get("l2_grid") and len(run.details["l2_grid"]) > 1:
        parts.append(f"L2 strength {run.details['l2_chosen']:g} from {run.details['l2_grid']} on the selection split")
    return "; ".join(parts) or "defaults, not tuned (fixed budget, last epoch)"


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
    executor: Executor | None = None,
) -> BenchResult:
    """Train every strategy on every backbone and seed, and decide which is worth it.

    Each finished run is appended to ``results_file`` at once; calling again with the same
    file skips the runs whose key is already there (finished, not failed). A run that raises
    is recorded as failed and the others go on; Ctrl-C stops at once, losing only the run in
    progress.

    Args:
        data: A data folder or a scanned :class:`~advisor.data.Dataset`.
        backbones: Backbone registry names.
        config: Strategies, budget, image size, seeds, device, tuning, margin.
        results_file: JSON-lines file of finished runs (resume); ``None`` keeps nothing.
        recommendation: ``advisor recommend``'s recommendation dict, to check against.
        profiles: Backbone -> profile dict with ``"transferability"``, for the rank correlation.
        progress: Progress bars on stderr.
        command: The command line to record for reproduction; by default a Python call.
        executor: Where the runs train (:mod:`advisor.bench.executors`): this process by
            default, or a Ray cluster. Opened here unless the caller opened it.

    Returns:
        The :class:`BenchResult` (its ``execution`` block says where and how the runs trained).

    Raises:
        KeyboardInterrupt: Re-raised after the finished runs are safely on disk.

    Example:
        >>> result = bench("data/flowers", ["resnet18"], results_file="runs.jsonl")  # doctest: +SKIP
        >>> result.winner["verdict"], result.agreement  # doctest: +SKIP
        ('freeze', None)
    """
    start = time.perf_counter()
    if isinstance(backbones, str):
        backbones = [backbones]
    if not backbones:
        raise ValueError("name at least one backbone")
    dataset = data if isinstance(data, Dataset) else scan(data)
    executor = executor if executor is not None else LocalExecutor()
    opened = executor.open()
    device, precision = executor.placement(config.device)  # the workers' device: the keys hold its precision
    specs = plan_runs(dataset, backbones, config, precision=precision.name)
    options = RunOptions(device=str(device), precision=precision.name, num_workers=config.num_workers,
                         start_method=config.start_method, cache_dir=config.cache_dir,
                         image_cache_dir=config.image_cache_dir, progress=progress)
    try:
        # train_run is looked up here, at call time, so that it can be replaced (tests count runs so).
        execution = executor.run(specs, options, results_file=results_file, train=train_run, progress=progress)
    finally:
        if opened:
            executor.close()
    trials = list(execution.runs)

    selected = select_trials(trials)
    factors = TUNE_FACTORS if config.tune else (1.0,)
    selected = [replace(r, recipe={**r.recipe, "selection": _selection_text(r, factors)}) if r.ok else r
                for r in selected]
    runs = [r for r in selected if r.fraction == 1.0]  # the verdict rests on the full data
    report_labels = np.bincount([s.label for s in specs[0].report]) if specs and specs[0].report else None
    chance = float(report_labels.max() / report_labels.sum()) if report_labels is not None else None
    header_sample = stratified_sample(dataset.samples, per_class=20, total=400, seed=0)
    summary_ds = summarize_dataset(dataset, header_sample, extra_skipped=execution.failures.values())
    first = make_splits(dataset, config, config.seeds[0])
    winner = verdict(runs, margin=config.margin)
    runs = _with_tolerances(runs, winner)
    sizes = data_size(selected, margin=config.margin, seed=config.seeds[0], chance=chance,
                      tolerance={v["backbone"]: _crossing_tolerance(v) for v in winner["per_backbone"]})
    if sizes:
        _add_crossings(winner, sizes["crossings"])
    agrees, note = agreement(recommendation, winner, runs)
    budget = ("auto: warm-up, then the peak learning rate is held while the selection accuracy improves "
              f"(patience {config.patience} epochs, at least {100 * config.min_delta:g} points, at most "
              + (f"{config.max_epochs}" if config.max_epochs else
                 ", ".join(f"{MAX_EPOCHS[s]} ({s})" for s in config.strategies if s in MAX_EPOCHS))
              + f" epochs); then the best weights are restored and cooled down linearly to 0 over "
              f"max({MIN_COOLDOWN}, {100 * COOLDOWN:.0f} % of the epochs run); the best cool-down epoch is evaluated"
              if config.early_stopping and first.select else
              f"fixed: {FALLBACK_EPOCHS if config.early_stopping else config.epochs} epochs, warm-up then cosine to 0, "
              "the last one is evaluated" + (" (auto without a selection split: nothing to stop on)"
                                              if config.early_stopping else ""))
    protocol = {
        "split": first.names, "selected_on": first.names.get("select"), "reported_on": first.names["report"],
        "n_fit": len(first.fit), "n_select": len(first.select), "n_report": len(first.report),
        "epochs": config.epochs, "budget": budget,
        "image_sizes": {name: int(config.image_size or backbone_info(name).image_size) for name in backbones},
        "batch_size": config.batch_size, "seeds": list(config.seeds), "margin": config.margin, "tune": config.tune,
        "lr_factors": list(factors),
        "weights": config.weights or "random (pretrained strategies too: a smoke run, not a verdict)",
        "strategies": list(config.strategies), "max_per_class": config.max_per_class,
        "fractions": list(config.fractions), "n_seeds": len(config.seeds),
        "lr_choice": (f"probe: {', '.join(f'x{f:g}' for f in TUNE_FACTORS)} the default for {PROBE_EPOCHS} epochs each "
                      "on the selection split, the best goes on" if config.lr_probe and first.select else
                      "default learning rates, not swept"),
        "finetune_head": "the linear probe's head (LP-FT)" if config.lpft else "a new, random head",
        "freeze_head": f"L2 by {CV_FOLDS}-fold cross-validation over the fit split",
        "selection_warning": (
            f"the selection split that chose epochs and learning rates holds {len(first.select)} images (one image "
            f"is {100 / len(first.select):.1f} points): on fewer than about {MIN_SELECTION} images that choice is "
            "noisy" if first.select and len(first.select) < MIN_SELECTION else None),
        "tolerance": {v["backbone"]: {"value": v["tolerance"], "method": v.get("tolerance_method")}
                      for v in winner.get("per_backbone") or ()},
        "device": str(device), "precision": precision.name,
        "accuracy": ("top-1 on the reported split, of the weights the selection split chose"
                     if first.select else "top-1 on the reported split after the last epoch"),
    }
    protocol["image_size"] = protocol["image_sizes"][backbones[0]]
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
        agreement=agrees,
        agreement_note=note,
        rank_correlation=rank_correlation(runs, profiles),
        trials=tuple(trials) if config.tune else (),
        extra={"image_cache": summarize_use(execution.image_cache_use), "execution": execution.to_dict(),
               **({"data_size": sizes, "curve_runs": [r.to_dict() for r in selected if r.fraction != 1.0]}
                  if sizes else {})},
        reproduction={
            "versions": versions(), "device": str(device), "seed": config.seeds[0],
            "options": {**config.to_dict(), "backbones": list(backbones),
                        "results_file": None if results_file is None else os.fspath(results_file)},
            "seconds": time.perf_counter() - start, "command": command,
        },
    )
