"""End-to-end jobs with the same names as the CLI commands: ``run_recommend``, ``run_bench``.

Each composes the stages (scan -> profile -> decide -> [bench] -> report) and returns the
JSON-ready result dict, with the paths of the HTML report and its JSON twin.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from advisor.backbones import list_backbones, offline_backbones
from advisor.data import Dataset, scan
from advisor.bench.strategies import suggested_settings
from advisor.decide import Recommendation, Thresholds, recommend
from advisor.profile import Profile, ProfileConfig
from advisor.utils import check_writable, safe_name, versions

if TYPE_CHECKING:
    from advisor.bench.executors import Executor

__all__ = ["DEFAULT_BACKBONES", "JobResult", "advise", "default_backbones", "reproduction", "run_bench",
           "run_recommend"]

#: Preferred backbones, in order; the default set is those whose weights are available now.
DEFAULT_BACKBONES = ("efficientnet_lite0", "resnet18", "resnet50", "mobilenet_v3_large",
                     "efficientnet_b0", "convnext_tiny", "efficientnet_lite1", "efficientnet_lite2")


@dataclass(frozen=True)
class JobResult:
    """A finished job: the result dict (as in the JSON twin) and where it was written."""

    result: dict[str, Any]
    html: Path
    json: Path


def default_backbones(limit: int = 3) -> list[str]:
    """A sensible set of backbones whose ImageNet weights are available without a network."""
    ready = set(offline_backbones())
    chosen = [name for name in DEFAULT_BACKBONES if name in ready][:limit]
    return chosen or ["efficientnet_lite0"]


def reproduction(*, device: str, seed: int, options: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Versions, device, seed, options and time: enough to run the job again."""
    return {
        "versions": versions(),
        "device": device,
        "seed": seed,
        "options": options,
        "seconds": round(seconds, 3),
        "command": _cli_command(),
    }


def advise(prof: Profile, *, thresholds: Thresholds = Thresholds()) -> Recommendation:
    """The advice for a profile (:func:`advisor.decide.recommend`, which never touches the training
    code), with the recipe the bench would train its strategy with attached as ``settings``.

    Example:
        >>> rec = advise(profile("data/", ["efficientnet_lite0"]))  # doctest: +SKIP
        >>> rec.settings["strategy"]  # doctest: +SKIP
        'freeze'
    """
    rec = recommend(prof, thresholds=thresholds)
    if rec.strategy == "insufficient_data":  # nothing can be trained: no recipe to suggest
        return rec
    best = prof.backbone(rec.backbone)
    return replace(rec, settings=suggested_settings(rec.strategy, best.name, best.image_size))


def _cli_command() -> str | None:
    """The command line, when this process is the ``advisor`` CLI."""
    if sys.argv and "advisor" in Path(sys.argv[0]).name:
        return " ".join(["advisor"] + sys.argv[1:])
    return None


def _local_executor() -> Executor:
    from advisor.bench.executors import LocalExecutor

    return LocalExecutor()


def _check_backbones(names: Sequence[str]) -> list[str]:
    valid = set(list_backbones())
    unknown = [n for n in names if n not in valid]
    if unknown:
        from advisor.backbones import UnknownBackboneError

        raise UnknownBackboneError(
            f"unknown backbone(s) {', '.join(unknown)}; run `advisor backbones` for the {len(valid)} valid names"
        )
    return list(names)


def run_recommend(
    data: str | os.PathLike | Dataset = "data",
    backbones: Sequence[str] | None = None,
    *,
    config: ProfileConfig = ProfileConfig(),
    thresholds: Thresholds = Thresholds(),
    out: str | os.PathLike | None = "reports",
    progress: bool = False,
    executor: Executor | None = None,
) -> JobResult:
    """Profile ``data``, decide, and write the HTML report (+ JSON twin) into ``out``.

    ``executor`` profiles the backbones (:mod:`advisor.bench.executors`): one after another in
    this process by default, or one Ray task per backbone, in parallel; the decision is made here.

    Example:
        >>> job = run_recommend("data/")  # doctest: +SKIP
        >>> job.result["recommendation"]["strategy"]  # doctest: +SKIP
        'freeze'
    """
    start = time.perf_counter()
    names = _check_backbones(backbones or default_backbones())
    if out is not None:
        check_writable(out, "report folder")  # before any work, not after it
    dataset = data if isinstance(data, Dataset) else scan(data)
    executor = executor if executor is not None else _local_executor()
    with executor:
        prof: Profile = executor.profile(dataset, names, config=config, progress=progress)
    rec = advise(prof, thresholds=thresholds)
    result = {
        "kind": "recommend",
        "created": datetime.now().isoformat(timespec="seconds"),
        "dataset": prof.dataset.to_dict(),
        "backbones": [b.to_dict() for b in prof.backbones],
        "recommendation": rec.to_dict(),
        "data_size": rec.data_size,
        "image_cache": prof.image_cache,
        "reproduction": reproduction(
            device=prof.device, seed=config.seed, seconds=time.perf_counter() - start,
            options={"backbones": names, **config.to_dict(), "thresholds": thresholds.to_dict(),
                     "executor": executor.name},
        ),
    }
    return _write(result, out, "recommend")


def _write(result: dict[str, Any], out: str | os.PathLike | None, kind: str) -> JobResult:
    from advisor import report

    if out is None:
        return JobResult(result, Path(), Path())
    writer = report.write_recommend_report if kind == "recommend" else report.write_bench_report
    html, js = writer(result, out)
    result = dict(result, report=str(html))
    return JobResult(result, html, js)


def run_bench(
    data: str | os.PathLike | Dataset = "data",
    backbones: Sequence[str] | None = None,
    *,
    config: Any = None,
    profile_config: ProfileConfig = ProfileConfig(),
    thresholds: Thresholds = Thresholds(),
    out: str | os.PathLike | None = "reports",
    results_file: str | os.PathLike | None = None,
    progress: bool = False,
    executor: Executor | None = None,
) -> JobResult:
    """Train each strategy on each backbone, compare with the advice, write the report.

    The advice comes from the same profile as ``advisor recommend`` (its features are cached,
    so this costs little after a ``recommend``). When the advice is "not worth using", the
    strategy that carries it out (``scratch``) is benched even if ``config`` leaves it out:
    otherwise the advice could not be checked. Finished runs are appended to
    ``results_file`` (default: ``<out>/bench-<data>.runs.jsonl``) and skipped when the
    same command runs again. ``executor`` profiles and trains (:mod:`advisor.bench.executors`:
    this process by default, or a Ray cluster, connected once for both); the results file and
    the reports are written here, on the driver.
    """
    from advisor.bench import BenchConfig, bench

    config = config or BenchConfig()
    names = _check_backbones(backbones or default_backbones(limit=2))
    if out is not None:
        check_writable(out, "report folder")  # before any training, not after it
    dataset = data if isinstance(data, Dataset) else scan(data)
    executor = executor if executor is not None else _local_executor()
    with executor:
        # Profiling builds every backbone with its weights first: a missing weight file stops the
        # job here, with the message that says how to add it, before any training starts.
        prof = executor.profile(dataset, names, config=profile_config, progress=progress)
        rec = advise(prof, thresholds=thresholds)
        if rec.strategy == "insufficient_data":  # nothing to compare: say so before training anything
            from advisor.data import DatasetError

            raise DatasetError(f"{dataset.root}: {rec.reasons[0]}")
        if rec.strategy == "not_worth_using" and "scratch" not in config.strategies:
            config = replace(config, strategies=(*config.strategies, "scratch"))
        if results_file is None and out is not None:
            results_file = Path(out) / f"bench-{safe_name(Path(dataset.root).name, default='data')}.runs.jsonl"
            Path(out).mkdir(parents=True, exist_ok=True)
        result = bench(
            dataset, names, config=config, results_file=results_file,
            recommendation=rec.to_dict(), profiles={b.name: b.to_dict() for b in prof.backbones},
            progress=progress, command=_cli_command(), executor=executor,
        ).to_dict()
    result["dataset"] = {**prof.dataset.to_dict(), **{k: v for k, v in result.get("dataset", {}).items() if v}}
    result["image_cache"] = _combined_cache_use(prof.image_cache, result.get("image_cache"))
    return _write(result, out, "bench")


def _combined_cache_use(*blocks: dict[str, Any] | None) -> dict[str, Any]:
    """One ``image_cache`` block for a command with several stages (the profile, then the runs).

    Example:
        >>> _combined_cache_use({"path": "a", "paths": ["a"], "built": 40, "reused": 0},
        ...                     {"path": "b", "paths": ["b"], "built": 0, "reused": 40})
        {'path': 'a', 'paths': ['a', 'b'], 'built': 40, 'reused': 40}
    """
    paths = list(dict.fromkeys(p for b in blocks if b for p in (b.get("paths") or [b.get("path")]) if p))
    return {"path": paths[0] if paths else None, "paths": paths,
            "built": sum(int(b.get("built") or 0) for b in blocks if b),
            "reused": sum(int(b.get("reused") or 0) for b in blocks if b)}

