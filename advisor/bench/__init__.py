"""The benchmark: train each strategy on the user's data and compare, honestly and resumably.

``advisor recommend`` predicts whether an ImageNet-pretrained CNN is worth using; this package
measures it. For every backbone, seed and strategy (and, with ``tune``, learning-rate factor)
it plans one run, trains it, and reports top-1 accuracy, macro-F1, wall time, throughput, peak
memory, the epochs it took and whether it had converged, then applies a cost-aware rule.

Modules, in the order data flows through them:

- :mod:`~advisor.bench.config`: :class:`BenchConfig`, the options.
- :mod:`~advisor.bench.strategies`: recipes, strategies (small objects with named hooks), the
  registry, freezing by parameter, and the settings ``advisor recommend`` suggests.
- :mod:`~advisor.bench.training`: one run: its :class:`RunSpec`, loaders, fit loops,
  :func:`train_run`.
- :mod:`~advisor.bench.runner`: the splits, the grid of runs, and :func:`bench`.
- :mod:`~advisor.bench.executors`: where the runs train: this process, or one Ray task each;
  the results file shared safely between drivers.
- :mod:`~advisor.bench.results`: torch-free run records, the results file, summaries, verdicts,
  agreement and rank correlation.

Names are loaded on first use, so that ``advisor.bench.results`` and ``BenchConfig`` can be
used (to read results files, render reports) without importing torch.

Example:
    >>> from advisor.bench import BenchConfig
    >>> BenchConfig(epochs=4).early_stopping
    False
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it.
_WHERE = {
    **dict.fromkeys(("AUTO", "BenchConfig"), "config"),
    **dict.fromkeys(("KEY_VERSION", "BenchResult", "RunResult", "agreement", "append_result", "rank_correlation",
                     "read_results", "run_key", "select_trials", "summarize_runs", "verdict"), "results"),
    **dict.fromkeys(("MAX_EPOCHS", "STRATEGIES", "TUNE_FACTORS", "Finetune", "Freeze", "FreezeUnfreeze",
                     "Partial", "Recipe", "Scratch", "Strategy", "freeze", "get_strategy", "list_strategies",
                     "make_trainable", "suggested_settings"), "strategies"),
    **dict.fromkeys(("RunEnv", "RunSpec", "failed_run", "train_run"), "training"),
    **dict.fromkeys(("Splits", "bench", "make_splits", "plan_runs"), "runner"),
    **dict.fromkeys(("EXECUTORS", "Execution", "Executor", "ExecutorError", "LocalExecutor", "RayExecutor",
                     "ResultsLedger", "RunOptions", "make_executor"), "executors"),
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'advisor.bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"advisor.bench.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
