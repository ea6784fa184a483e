"""Run records, the results file, and what the runs say: summaries, verdicts, agreement.

Torch-free on purpose: reading a results file, judging it and rendering its report need no
deep-learning stack (a report can be rebuilt on any machine from the JSON-lines file).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any

import numpy as np

from advisor import metrics, ranking
from advisor.catalogue import STRATEGIES, StrategyInfo, carried_by
from advisor.protocol import EPS as _EPS
from advisor.utils import OutputError, json_clean, shown, versions

log = logging.getLogger(__name__)

__all__ = [
    "KEY_VERSION",
    "KEY_VERSIONS",
    "RANK_METRICS",
    "BenchResult",
    "RunResult",
    "agreement",
    "append_result",
    "code_versions",
    "decode_correct",
    "encode_correct",
    "rank_correlation",
    "read_results",
    "run_key",
    "select_trials",
    "summarize_runs",
    "paired_noise",
    "verdict",
]

#: Version of the run key. 2: the key holds weights, precision, split, budget and data
#: fingerprint (version 1 left out the weights: random runs answered for ImageNet ones).
#: 3: the recipe as codes, without its prose, and the versions of advisor, torch, torchvision
#: and timm; the bench's protocol of issue 18 (hold and cool down, learning-rate probe, LP-FT,
#: cross-validated head).
KEY_VERSION = 3
#: The libraries whose versions the run key holds: a new release may train to other numbers.
KEY_VERSIONS = ("advisor", "torch", "torchvision", "timm")
#: Transferability scores compared with the measured ranking of backbones.
RANK_METRICS = ("linear_probe", "knn_probe", "logme", "leep", "nce", "hscore")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RunResult:
    """One trained (or failed) run: a backbone, a strategy, a seed (and a learning-rate factor).

    Attributes:
        backbone: Registry name.
        strategy: Strategy name.
        seed: Seed of the split, the initialisation and the data order.
        status: ``"ok"`` or ``"failed"``.
        error: The exception, for a failed run.
        accuracy: Top-1 accuracy on the reported split, with the weights the run selected
            (the best epoch on the selection split, or the last epoch of a fixed budget).
        macro_f1: Macro-averaged F1 on the reported split.
        selection_accuracy: Accuracy on the selection split of the selected weights (what
            chose the epoch and, with ``tune``, the learning rate); ``None`` without one.
        train_seconds: Wall time of the run (for ``freeze``: feature extraction + head).
        images_per_second: Training images processed per second of training steps.
        peak_memory_mb: CUDA: ``max_memory_allocated``; CPU: the process's peak RSS so far.
        epochs_to_90: First epoch (1-based) reaching 90 % of the run's best monitored accuracy.
        epochs_run: Epochs trained (fewer than the budget when it stopped early).
        best_epoch: The epoch whose weights were evaluated.
        converged: ``False`` when the run hit its maximum while still improving (its accuracy
            is then a lower bound); ``True`` otherwise.
        learned: ``False`` when the best selection accuracy never left chance (within two
            standard errors of the majority-class share): the run learned nothing to judge by;
            ``None`` without a selection split.
        curve: Per epoch ``{"epoch", "train_loss", "selection_accuracy", "accuracy"}`` (the
            monitored split's accuracy; the other is ``None``).
        recipe: The recipe actually used, as a dict.
        lr_factor: Multiplier of the default learning rates (``tune`` tries several).
        fraction: Share of the fit split it trained on (learning curves; 1.0 otherwise).
        key: Identity for resuming (:func:`run_key`).
        correct: Per-image record on the reported split: which images the selected weights
            classified correctly, in the split's order, packed (:func:`encode_correct`). Every
            strategy of one seed is scored on the same images, so two runs' records pair up.
        trained: ``True`` when trained by this call, ``False`` when read from a results file.
        details: Extra facts: split sizes and names, device, precision, cache use, timings.
    """

    backbone: str
    strategy: str
    seed: int
    status: str
    error: str | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    selection_accuracy: float | None = None
    train_seconds: float | None = None
    images_per_second: float | None = None
    peak_memory_mb: float | None = None
    epochs_to_90: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    converged: bool | None = None
    learned: bool | None = None
    curve: tuple[dict[str, Any], ...] = ()
    recipe: dict[str, Any] = field(default_factory=dict)
    lr_factor: float = 1.0
    fraction: float = 1.0
    key: str = ""
    correct: str | None = None
    trained: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.accuracy is not None

    def correctness(self) -> np.ndarray | None:
        """The per-image record as a boolean array, or ``None`` when the run has none."""
        n = self.details.get("n_report")
        return None if self.correct is None or not n else decode_correct(self.correct, int(n))

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
        d["lr_factor"] = float(d.get("lr_factor", 1.0))
        d["fraction"] = float(d.get("fraction", 1.0))
        return cls(**d)


@dataclass(frozen=True)
class BenchResult:
    """The benchmark's result; :meth:`to_dict` is what the bench report renders.

    Attributes:
        dataset: The dataset summary, as a dict.
        protocol: Splits (which selected, which was reported), image counts, budget, image
            size, batch size, seeds, margin, tuning, precision.
        runs: The selected run of every (backbone, strategy, seed), finished or failed.
        summary: Per backbone and strategy: seeds, mean and standard deviation of accuracy,
            mean macro-F1, mean time, epochs, convergence.
        winner: ``{"backbone", "strategy", "verdict", "accuracy", "rule", "per_backbone"}``.
        recommendation: The advice being checked (``advisor recommend``'s dict), if any.
        agreement: Whether the measured verdict for the advised backbone is the advice;
            ``None`` when it cannot be judged (``agreement_note`` says why) or without advice.
        agreement_note: Why agreement is ``None``, or a caveat of the comparison.
        rank_correlation: Weighted Kendall tau of each transferability score against the
            measured accuracy per backbone; ``None`` with fewer than two backbones.
        reproduction: Versions, device, seed, options, seconds, command.
        trials: With ``tune``: every learning-rate trial, the selected ones included.
        extra: Further blocks of the JSON document (execution, data size, image cache).
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
    agreement_note: str | None = None
    trials: tuple[RunResult, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return json_clean({
            "kind": "bench",
            "created": self.created,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "runs": [r.to_dict() for r in self.runs],
            "summary": [dict(s) for s in self.summary],
            "winner": self.winner,
            "recommendation": self.recommendation,
            "agreement": self.agreement,
            "agreement_note": self.agreement_note,
            "rank_correlation": self.rank_correlation,
            "trials": [r.to_dict() for r in self.trials],
            "reproduction": self.reproduction,
            **self.extra,
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchResult":
        known = {"kind", "created", "dataset", "protocol", "runs", "summary", "winner", "recommendation",
                 "agreement", "agreement_note", "rank_correlation", "trials", "reproduction"}
        return cls(
            dataset=dict(d.get("dataset") or {}),
            protocol=dict(d.get("protocol") or {}),
            runs=tuple(RunResult.from_dict(r) for r in d.get("runs") or ()),
            summary=tuple(dict(s) for s in d.get("summary") or ()),
            winner=dict(d.get("winner") or {}),
            recommendation=d.get("recommendation"),
            agreement=d.get("agreement"),
            agreement_note=d.get("agreement_note"),
            rank_correlation=d.get("rank_correlation"),
            reproduction=dict(d.get("reproduction") or {}),
            trials=tuple(RunResult.from_dict(r) for r in d.get("trials") or ()),
            extra={k: v for k, v in d.items() if k not in known},
            created=d.get("created") or datetime.now().isoformat(timespec="seconds"),
        )


def encode_correct(correct: Sequence[bool] | np.ndarray) -> str:
    """A boolean per image, packed eight to a byte and base64-encoded (about n/6 characters).

    Example:
        >>> encode_correct([True, False, True])
        'oA=='
        >>> decode_correct("oA==", 3).tolist()
        [True, False, True]
    """
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode("ascii")


def decode_correct(text: str, n: int) -> np.ndarray:
    """Undo :func:`encode_correct`: ``n`` booleans."""
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))
    if bits.size < n:
        raise ValueError(f"the per-image record holds {bits.size} images, not {n}")
    return bits[:n].astype(bool)


# --------------------------------------------------------------------------- results file


def code_versions() -> dict[str, str | None]:
    """The versions of :data:`KEY_VERSIONS`: part of every run key and of every run's record."""
    return {k: v for k, v in versions().items() if k in KEY_VERSIONS}


def run_key(payload: dict[str, Any]) -> str:
    """Identity of a run: the same key means the same training, so a finished one is reused.

    ``payload`` holds everything that changes a result (the benchmark builds it: data
    fingerprint, backbone, strategy, seed, weights, image size, recipe, split, precision,
    learning-rate factor); :data:`KEY_VERSION` is added, so keys of older versions never match.

    Example:
        >>> run_key({"backbone": "resnet18", "seed": 0}) == run_key({"seed": 0, "backbone": "resnet18"})
        True
    """
    text = json.dumps(json_clean({"v": KEY_VERSION, **payload}), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def read_results(path: str | os.PathLike, *, report: bool = False) -> list[RunResult]:
    """Runs recorded in a JSON-lines results file; every good line is kept, bad ones skipped.

    A line that is not a run record (cut by a kill, damaged, or written by something else) is
    skipped: that run is simply redone. With ``report``, each is named in one line on stderr.
    Every run read back has ``trained=False``.

    Raises:
        OutputError: The file exists but cannot be read (the message names it and the fix).
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return []
    except IsADirectoryError:
        raise OutputError(f"the results file {shown(path)} is a folder: remove it or pass another --out") from None
    except OSError as err:
        raise OutputError(f"cannot read the results file {shown(path)} ({err.strerror or err}): fix its "
                          "permissions, or pass another --out to start a new one") from None
    runs = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            runs.append(replace(RunResult.from_dict(json.loads(line)), trained=False))
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            if report:
                cut = number == len(lines) and not raw.endswith(b"\n")
                log.warning(f"results file {shown(path)}, line {number}: "
                            + ("cut short (an interrupted write)" if cut else "not a run record")
                            + "; skipped, that run will be trained again")
    return runs


def append_result(path: str | os.PathLike, run: RunResult) -> None:
    """Append one run as one JSON line, atomically enough to survive a kill at any moment.

    The whole line goes out in one ``os.write`` on an ``O_APPEND`` descriptor and is
    ``fsync``-ed before returning. If the file ends in a torn line, a newline is written
    first (in the same write), so the new record never glues onto it.
    """
    text = json.dumps(json_clean(run.to_dict()), allow_nan=False, sort_keys=True) + "\n"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputError(f"cannot write the results file {shown(path)} ({err.strerror or err}): runs finished "
                          "so far are in it; fix its permissions or free space, then run the same command again"
                          ) from None
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    text = "\n" + text
        data = text.encode()
        try:
            written = os.write(fd, data)
            while written < len(data):  # regular files do not short-write in practice
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError as err:
            # A line cut by a full disk is skipped when read back: the runs before it stay.
            raise OutputError(f"cannot write the results file {shown(path)} ({err.strerror or err}): runs "
                              "finished so far are in it; free some space, then run the same command again") from None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- analysis


def select_trials(trials: Sequence[RunResult]) -> list[RunResult]:
    """The selected run of each (backbone, strategy, seed, fraction): the best on the selection split.

    Without ``tune`` every group holds one trial, which is returned. With several learning-rate
    trials the highest ``selection_accuracy`` wins (ties: the factor nearest 1, then the
    smaller); the reported accuracy never takes part in the choice. A group whose trials all
    failed yields its first failure. Groups keep their first-seen order.
    """
    groups: dict[tuple[str, str, int, float], list[RunResult]] = {}
    for r in trials:
        groups.setdefault((r.backbone, r.strategy, r.seed, r.fraction), []).append(r)
    chosen = []
    for group in groups.values():
        ok = [r for r in group if r.ok]
        if not ok:
            chosen.append(group[0])
            continue

        def rank(r: RunResult) -> tuple[float, float, float]:
            sel = r.selection_accuracy if r.selection_accuracy is not None else -1.0
            return (-sel, abs(math.log(r.lr_factor)), r.lr_factor)

        chosen.append(min(ok, key=rank))
    return chosen


def summarize_runs(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Per (backbone, strategy), in first-seen order: seeds, mean/std accuracy, F1, time, epochs.

    ``std_accuracy`` is the sample standard deviation over seeds (0 with one seed).

    Example:
        >>> rows = summarize_runs([RunResult("r", "freeze", s, "ok", accuracy=a)
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

        accs = [r.accuracy for r in ok]
        n_report = [r.details.get("n_report") for r in ok if r.details.get("n_report")]
        rows.append({
            "backbone": b, "strategy": s, "n_seeds": len(ok), "n_failed": len(group) - len(ok),
            "mean_accuracy": mean("accuracy"),
            "std_accuracy": float(np.std(accs, ddof=1)) if len(accs) > 1 else (0.0 if accs else None),
            "mean_f1": mean("macro_f1"), "mean_seconds": mean("train_seconds"),
            "mean_images_per_second": mean("images_per_second"),
            "mean_epochs": mean("epochs_run"),
            "converged": all(r.converged is not False for r in ok) if ok else None,
            "learned": (False if ok and all(r.learned is False for r in ok) else
                        True if any(r.learned for r in ok) else None),
            "n_report": int(np.mean(n_report)) if n_report else None,
            "errors": sorted({(r.error or "").splitlines()[0] for r in group if not r.ok and r.error}),
        })
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _info(name: str) -> StrategyInfo:
    """The catalogue's entry; a name it lacks (a results file from elsewhere) is costly and pretrained."""
    return STRATEGIES.get(name) or StrategyInfo(name, 2, True, name, name, None, "")


def _noise(p: float, n: int | None) -> float | None:
    """One standard error of the difference of two *independent* accuracies near ``p`` on ``n``
    images: the fallback for runs without per-image records (read from older results files).

    ``p`` is kept half an image away from 0 and 1: a perfect score on few images is not certain.
    """
    if not n:
        return None
    p = min(max(p, 0.5 / n), 1.0 - 0.5 / n)
    return math.sqrt(2 * p * (1 - p) / n)


#: Bootstrap resamples of the paired difference between two strategies.
N_BOOT = 2000
PAIRED = f"paired bootstrap over images and seeds ({N_BOOT} resamples)"
UNPAIRED = "unpaired binomial sqrt(2p(1-p)/n) (runs without per-image records)"


def paired_noise(runs_a: Sequence[RunResult], runs_b: Sequence[RunResult]) -> dict[str, Any] | None:
    """The difference of two strategies' mean accuracies and its standard error, paired.

    Runs are matched by seed (and fraction); a pair counts when both runs carry per-image
    records of the same length. Without such pairs, the unpaired binomial error is the fallback.
    ``None`` when nothing is known of the reported split.

    Returns:
        ``{"gap", "se", "method", "n_seeds", "n_images"}`` (``gap`` is ``mean(a) - mean(b)``).
    """
    by_seed = {(r.seed, r.fraction): r for r in runs_b if r.ok}
    xs, ys = [], []
    for r in runs_a:
        other = by_seed.get((r.seed, r.fraction))
        if not r.ok or other is None:
            continue
        x, y = r.correctness(), other.correctness()
        if x is None or y is None or x.shape != y.shape or not x.size:
            xs = []
            break
        xs.append(x)
        ys.append(y)
    mean_a = float(np.mean([r.accuracy for r in runs_a if r.ok]))
    mean_b = float(np.mean([r.accuracy for r in runs_b if r.ok]))
    if xs:
        # A stream of its own per pair, so the same pair gets the same answer in any grid.
        seed = int.from_bytes(hashlib.sha256("\0".join(sorted(r.key for r in runs_a + runs_b if r.ok)).encode())
                              .digest()[:4], "little")
        gap, se = metrics.paired_difference(xs, ys, n_boot=N_BOOT, seed=seed)
        return {"gap": gap, "se": se, "method": PAIRED, "n_seeds": len(xs), "n_images": int(np.mean([len(x) for x in xs]))}
    n = [r.details.get("n_report") for r in list(runs_a) + list(runs_b) if r.ok and r.details.get("n_report")]
    if not n:
        return None
    n_report = int(max(n))
    seeds = max(1, min(len([r for r in runs_a if r.ok]), len([r for r in runs_b if r.ok])))
    se = _noise(max(mean_a, mean_b), n_report)
    return {"gap": mean_a - mean_b, "se": se / math.sqrt(seeds), "method": UNPAIRED, "n_seeds": seeds,
            "n_images": n_report}


def _settle(gap: float, noise: dict[str, Any], margin: float) -> str:
    """What would settle a near-tie, computed from the paired error: seeds or reported images."""
    if abs(gap) < margin - _EPS:
        return (f"the gap is below the {100 * margin:.1f}-point margin that counts as a difference, so more data "
                "would not change the verdict")
    if abs(gap) < _EPS:
        return "they score the same, so no amount of data is expected to separate them"
    factor = (noise["se"] / abs(gap)) ** 2  # the standard error shrinks as 1/sqrt(images x seeds)
    seeds = math.ceil(noise["n_seeds"] * factor)
    images = math.ceil(noise["n_images"] * factor)
    return (f"if the gap held, about {seeds} seeds (now {noise['n_seeds']}) or {images} reported images "
            f"(now {noise['n_images']}) would settle it")


def _backbone_verdict(backbone: str, rows: dict[str, dict[str, Any]], runs: dict[str, list[RunResult]],
                      margin: float) -> dict[str, Any]:
    means = {s: r["mean_accuracy"] for s, r in rows.items()}
    pretrained = {s: a for s, a in means.items() if _info(s).pretrained}
    scratch = {s: a for s, a in means.items() if not _info(s).pretrained}
    top = max(means.values()) if means else None
    n_report = max((r.get("n_report") or 0 for r in rows.values()), default=0) or None
    base = {"backbone": backbone, "top_accuracy": top, "n_report": n_report}
    if not pretrained:
        return {**base, "strategy": None, "verdict": None, "accuracy": None, "near_tie": None, "notes": [],
                "tolerance": margin, "tolerance_method": "margin", "pairs": [],
                "rule": f"{backbone}: no pretrained strategy finished, so no verdict (margin {100 * margin:.1f} points)."}
    order = list(STRATEGIES)
    best_name = max(means, key=lambda s: means[s])
    best = means[best_name]
    # Each strategy is compared with the best on the same images: the tolerance of that pair is
    # the margin or the standard error of their paired difference, whichever is larger. A
    # strategy within it is a near-tie with the best, and a near-tie goes to the cheaper one.
    pairs = {}
    for s in means:
        noise = paired_noise(runs[best_name], runs[s]) if s != best_name else None
        se = noise["se"] if noise else 0.0
        pairs[s] = {"strategy": s, "against": best_name, "gap": best - means[s], "se": se,
                    "tolerance": max(margin, se), "method": noise["method"] if noise else "margin",
                    "noise": noise}
    close = [s for s, a in means.items() if best - a <= pairs[s]["tolerance"] + _EPS]
    winner = min(close, key=lambda s: (_info(s).cost_rank, _info(s).pretrained, -means[s],
                                       order.index(s) if s in order else 99))
    tol_pair = pairs[winner] if winner != best_name else max(
        (pairs[s] for s in means if s != best_name), key=lambda p: p["tolerance"], default=pairs[best_name])
    tol = tol_pair["tolerance"]
    by_noise = tol > margin + _EPS

    def points(pair: dict[str, Any]) -> str:
        if pair["tolerance"] > margin + _EPS:
            n = pair["noise"]
            return (f"{100 * pair['tolerance']:.1f}-point tolerance (one standard error of the paired difference "
                    f"over {n['n_images']} reported images x {n['n_seeds']} seed{'s' if n['n_seeds'] > 1 else ''}, "
                    f"larger than the {100 * margin:.1f}-point margin)")
        return f"{100 * margin:.1f}-point margin"

    scratch_clause = ("" if winner in scratch else
                      f" (scratch reaches {_pct(max(scratch.values()))})" if scratch else " (scratch was not run)")
    cheapest = (f"{winner} ({_pct(means[winner])}) is the cheapest strategy within the {points(tol_pair)}"
                if winner != best_name else f"nothing cheaper comes within the {points(tol_pair)}")
    if winner in scratch:
        rule = (f"{backbone}: training from scratch reaches {_pct(means[winner])}, within the {points(tol_pair)} of "
                "the best" + ("" if winner == best_name else f" ({best_name}, {_pct(best)})")
                + ", and no cheaper pretrained strategy does as well, so the pretrained weights are not worth using.")
    else:
        rule = f"{backbone}: {best_name} is best at {_pct(best)}{scratch_clause}; {cheapest}, so: {_info(winner).verdict}."
    acc = means[winner]
    # Honesty about noise: the closest rival of another verdict, and whether the gap to it is
    # within the tolerance of that pair (the same tolerance the verdict used).
    rivals = {s: a for s, a in means.items() if _info(s).verdict != _info(winner).verdict}
    near_tie = None
    if rivals:
        rival = max(rivals, key=lambda s: rivals[s])
        noise = paired_noise(runs[winner], runs[rival])
        if noise is not None:
            gap = acc - rivals[rival]
            pair_tol = max(margin, noise["se"])
            near_tie = {"rival": rival, "rival_accuracy": rivals[rival], "gap": gap, "noise": noise["se"],
                        "tolerance": pair_tol, "method": noise["method"],
                        "within_noise": abs(gap) <= pair_tol + _EPS}
            if near_tie["within_noise"]:
                near_tie["settle"] = _settle(gap, noise, margin)
                rule += (f" Near-tie: {winner} ({_pct(acc)}) and {rival} ({_pct(rivals[rival])}) are "
                         f"{100 * abs(gap):.1f} points apart, within the {100 * pair_tol:.1f}-point tolerance of "
                         f"that pair; {near_tie['settle']}.")
    notes = []
    for s, row in rows.items():
        if row.get("converged") is False and row.get("mean_epochs"):
            notes.append(f"{s} was still improving at {row['mean_epochs']:.0f} epochs; its accuracy "
                         f"({_pct(row['mean_accuracy'])}) is a lower bound")
        if row.get("learned") is False:
            notes.append(f"{s} never left chance on the selection split: it learned nothing to judge by")
    if notes:
        rule += " Caveat: " + "; ".join(notes) + "."
    return {**base, "strategy": winner, "verdict": _info(winner).verdict, "accuracy": acc, "rule": rule,
            "near_tie": near_tie, "notes": notes, "tolerance": tol,
            "tolerance_method": tol_pair["method"] if by_noise else "margin",
            "pairs": [{k: v for k, v in p.items() if k != "noise"} for s, p in pairs.items() if s != best_name]}


def verdict(runs: Sequence[RunResult], *, margin: float) -> dict[str, Any]:
    """The cost-aware rule, per backbone and overall.

    Per backbone, on mean accuracies over seeds of the finished runs: let ``best`` be the
    highest. Every strategy is scored on the same reported images, so each is compared with the
    best through their *paired* difference (:func:`paired_noise`: a bootstrap over images and
    seeds of the per-image records); the tolerance of that pair is the larger of ``margin`` and
    its standard error, and a smaller gap is a near-tie, which the data cannot settle. More
    seeds and more reported images narrow it. The cheapest strategy within its tolerance of
    ``best`` wins (freeze before partial before finetune; at equal cost training from scratch
    first, then the more accurate), so a near-tie goes to the cheaper strategy and the verdict
    is ``"not_worth_using"`` only when scratch does as well as the best pretrained strategy and
    freezing does not. Overall, the backbone with the highest accuracy wins and its verdict is
    the answer. Each backbone's verdict also says whether its gap to the closest rival verdict
    is within the tolerance of that pair (a near-tie, with what would settle it), and which
    runs had not converged or never learned.

    Args:
        runs: Selected runs of any backbones and strategies (failed runs are ignored).
        margin: Accuracy margin as a fraction (0.02 = 2 points).

    Returns:
        ``{"backbone", "strategy", "verdict", "accuracy", "rule", "margin", "per_backbone"}``.

    Example:
        >>> runs = [RunResult("r", s, 0, "ok", accuracy=a)
        ...         for s, a in (("freeze", 0.84), ("finetune", 0.85), ("scratch", 0.5))]
        >>> verdict(runs, margin=0.02)["verdict"]
        'freeze'
    """
    rows = summarize_runs(runs)
    per_backbone = []
    for name in dict.fromkeys(r.backbone for r in runs):
        mine = {row["strategy"]: row for row in rows
                if row["backbone"] == name and row["mean_accuracy"] is not None}
        if mine:
            by_strategy = {s: [r for r in runs if r.backbone == name and r.strategy == s] for s in mine}
            per_backbone.append(_backbone_verdict(name, mine, by_strategy, margin))
    decided = [v for v in per_backbone if v["verdict"] is not None]
    if not decided:
        return {"backbone": None, "strategy": None, "verdict": None, "accuracy": None,
                "rule": f"No pretrained run finished, so there is no verdict (margin {100 * margin:.1f} points).",
                "margin": margin, "per_backbone": per_backbone}
    top = max(decided, key=lambda v: v["top_accuracy"])
    rule = top["rule"]
    if len(decided) > 1:
        rule = (f"Cost-aware rule: {top['backbone']} is the most accurate backbone "
                f"({_pct(top['top_accuracy'])}). {rule}")
    else:
        rule = f"Cost-aware rule: {rule}"
    return {"backbone": top["backbone"], "strategy": top["strategy"], "verdict": top["verdict"],
            "accuracy": top["accuracy"], "rule": rule, "margin": margin, "per_backbone": per_backbone}


def agreement(recommendation: dict[str, Any] | None, winner: dict[str, Any],
              runs: Sequence[RunResult]) -> tuple[bool | None, str | None]:
    """Whether the measured verdict for the advised backbone is the advice, and a note.

    ``(None, why)`` when it cannot be judged: no advice, the advised backbone was not benched
    or has no verdict, or the advised strategy was not benched or all its runs failed.

    Example:
        >>> runs = [RunResult("r", s, 0, "ok", accuracy=a)
        ...         for s, a in (("freeze", 0.9), ("finetune", 0.8), ("scratch", 0.5))]
        >>> w = verdict(runs, margin=0.02)
        >>> agreement({"strategy": "freeze", "backbone": "r"}, w, runs)
        (True, None)
        >>> agreement({"strategy": "not_worth_using", "backbone": "r"}, w, runs[:2])[0] is None
        True
    """
    if not recommendation:
        return None, None
    advice, backbone = recommendation.get("strategy"), recommendation.get("backbone")
    per = {v["backbone"]: v for v in winner.get("per_backbone") or ()}
    if backbone not in per:
        return None, f"the advised backbone {backbone} was not benched, or none of its runs finished"
    mine = [r for r in runs if r.backbone == backbone]
    carriers = carried_by(advice)
    benched = [r for r in mine if r.strategy in carriers]
    if not benched:
        return None, (f"the advice ({advice}) was not benched on {backbone}: run the bench with "
                      f"--strategies including {carriers[0]}")
    if not any(r.ok for r in benched):
        first = next((r.error for r in benched if r.error), "unknown error")
        return None, f"every {'/'.join(sorted({r.strategy for r in benched}))} run on {backbone} failed ({first.splitlines()[0]})"
    v = per[backbone]
    if v["verdict"] is None:
        return None, f"no pretrained strategy finished on {backbone}, so there is no verdict to compare"
    note = None
    if advice != "not_worth_using" and not any(r.ok and not _info(r.strategy).pretrained for r in mine):
        note = "scratch was not benched, so the verdict could not say 'not worth using'"
    elif v.get("near_tie") and v["near_tie"].get("within_noise"):
        nt = v["near_tie"]
        note = (f"near-tie: {v['strategy']} and {nt['rival']} are {100 * abs(nt['gap']):.1f} points apart, within "
                f"the noise of the reported split ({100 * nt['noise']:.1f} points)")
    return advice == v["verdict"], note


def _measured(runs: Sequence[RunResult]) -> dict[str, dict[str, Any]]:
    """Per backbone, its best strategy on the full fit split: mean accuracy and the seeds' runs."""
    best: dict[str, dict[str, Any]] = {}
    for row in summarize_runs([r for r in runs if r.fraction == 1.0]):
        if row["mean_accuracy"] is not None and row["mean_accuracy"] > best.get(row["backbone"], {}).get("accuracy", -1):
            best[row["backbone"]] = {"strategy": row["strategy"], "accuracy": row["mean_accuracy"]}
    for b, m in best.items():
        m["runs"] = sorted((r for r in runs if r.ok and r.fraction == 1.0 and r.backbone == b
                            and r.strategy == m["strategy"]), key=lambda r: r.seed)
    return best


def _paired_records(best: dict[str, dict[str, Any]]) -> dict[str, list[np.ndarray]] | None:
    """Per backbone, its per-image records over the seeds every backbone has; ``None`` if they
    do not pair up (a run without a record, or reported splits of different sizes)."""
    seeds = set.intersection(*({r.seed for r in m["runs"]} for m in best.values()))
    out: dict[str, list[np.ndarray]] = {}
    for b, m in best.items():
        records = [r.correctness() for r in m["runs"] if r.seed in seeds]
        if not records or any(x is None for x in records):
            return None
        out[b] = records
    lengths = {tuple(len(x) for x in v) for v in out.values()}
    return out if len(lengths) == 1 else None


def rank_correlation(runs: Sequence[RunResult], profiles: dict[str, dict] | None) -> dict[str, Any] | None:
    """How well the profile ranked the backbones: weighted Kendall tau against the measured accuracy.

    The measured accuracy of a backbone is its best mean accuracy over strategies (full fit
    split). Scored are each transferability score (``metric``) and the three rankings of
    :mod:`advisor.ranking` (``rankings``: the advisor's, ImageNet top-1 and k-NN), each with a
    95 % bootstrap interval over the reported images and seeds when the runs' per-image records
    pair up. Needs at least two backbones with both a profile and a finished run; otherwise
    ``None``.

    Returns:
        ``{"n_backbones", "measured": [{"backbone", "strategy", "accuracy"}], "metric": [{"metric",
        "weighted_tau"}], "rankings": [{"ranking", "basis", "n_backbones", "weighted_tau", "low",
        "high"}], "best_ranking"}``; ``best_ranking`` names the ranking with the highest tau
        (``None`` on a tie or without taus).
    """
    if not profiles:
        return None
    best = {b: m for b, m in _measured(runs).items() if isinstance(profiles.get(b), dict)}
    if len(best) < 2:
        return None
    names = list(best)
    rows = []
    for name in RANK_METRICS:
        values = [(profiles[b].get("transferability") or {}).get(name) for b in names]
        if any(v is None or not math.isfinite(float(v)) for v in values):
            continue
        tau = metrics.weighted_kendall_tau(np.asarray(values, float), np.asarray([best[b]["accuracy"] for b in names]))
        rows.append({"metric": name, "weighted_tau": tau if math.isfinite(tau) else None})
    ranked = ranking.rankings([{**profiles[b], "name": b} for b in names])
    records = _paired_records(best)
    if records is not None:
        agreement = ranking.ranking_agreement(ranked, records)
    else:  # no per-image records to resample: the point value alone
        agreement = []
        for rname, block in ranked.items():
            order = block["order"]
            tau = (metrics.weighted_kendall_tau(np.array([r["score"] for r in order], float),
                                                np.array([best[r["backbone"]]["accuracy"] for r in order]))
                   if len(order) >= 2 else math.nan)
            agreement.append({"ranking": rname, "basis": block["basis"], "n_backbones": len(order),
                              "weighted_tau": tau if math.isfinite(tau) else None, "low": None, "high": None})
    taus = sorted(((r["weighted_tau"], r["ranking"]) for r in agreement if r["weighted_tau"] is not None), reverse=True)
    top = taus[0][1] if taus and (len(taus) == 1 or taus[0][0] > taus[1][0]) else None
    return {
        "n_backbones": len(names),
        "measured": [{"backbone": b, "strategy": best[b]["strategy"], "accuracy": best[b]["accuracy"]} for b in names],
        "metric": rows,
        "rankings": agreement,
        "best_ranking": top,
    }
