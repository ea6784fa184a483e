"""The bench's split rule and its slack, torch-free: what share of a class's images the bench fits
on, and how close two accuracies may be and still count as equal.

The decision (:mod:`advisor.decide`) counts data in the bench's unit, images per class the
bench fits on, so it reads the rule here rather than from the bench; :class:`BenchConfig
<advisor.bench.config.BenchConfig>` takes its default fractions from here.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["EPS", "SELECTION_FRACTION", "VAL_FRACTION", "fit_share"]

#: Accuracies are means of fractions: the bench, its verdict and the curves compare them with
#: this much slack.
EPS = 1e-9

#: Held-out (reported) share of a folder without a validation split.
VAL_FRACTION = 0.2
#: Share of the training split carved out to select epochs, learning rates and regularisation.
SELECTION_FRACTION = 0.2


def fit_share(splits: Iterable[str], *, val_fraction: float = VAL_FRACTION,
              selection_fraction: float = SELECTION_FRACTION, selection: bool = True) -> tuple[float, str]:
    """The share of a class's images that the bench fits on, by its split rule, and what it is a
    share of: the unit of "images per class" everywhere (thresholds, advice, curves, reports).

    Args:
        splits: The data folder's split names (``Dataset.splits``; empty for one folder per class).
        val_fraction: Held-out share of a folder without ``val/`` or ``test/``.
        selection_fraction: Share of the training split carved out for selection.
        selection: Whether a selection split is carved (``BenchConfig.needs_selection``).

    Returns:
        ``(share, of)``: ``of`` is ``"train/"`` or ``"the folder"``.

    Example:
        >>> fit_share([])
        (0.64, 'the folder')
        >>> fit_share(["train", "val"]), fit_share(["train", "val", "test"])
        ((0.8, 'train/'), (1.0, 'train/'))
    """
    splits = set(splits)
    carve = (1.0 - selection_fraction) if selection else 1.0
    if "train" in splits and "val" in splits and "test" in splits:
        return 1.0, "train/"
    if "train" in splits and splits & {"val", "test"}:
        return round(carve, 6), "train/"
    return round((1.0 - val_fraction) * carve, 6), "the folder"
