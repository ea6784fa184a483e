"""Seeded, stratified subsets of a dataset: the train/validation split and the profile's sample.

Example:
    >>> ds = scan("photos")                                          # doctest: +SKIP
    >>> train, val = stratified_split(ds, val_fraction=0.2, seed=0)  # doctest: +SKIP
    >>> few = stratified_sample(train, per_class=50, total=500)      # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from advisor.data.scan import Dataset, Sample

__all__ = ["stratified_sample", "stratified_split"]


def stratified_split(
    dataset: Dataset, *, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Train and validation samples: the folder's own split if it has one.

    With a split layout, ``train`` is returned against ``val`` (or ``test`` when
    there is no ``val``) and ``val_fraction`` is ignored. Otherwise every sample is
    split per class with sklearn's stratified ``train_test_split``; classes with a
    single image stay in train. Both lists keep the dataset's order.

    Args:
        dataset: Result of :func:`~advisor.data.scan`.
        val_fraction: Share of the images held out, in (0, 1).
        seed: Same seed, same split.

    Returns:
        ``(train, val)`` lists of :class:`Sample`.

    Raises:
        ValueError: ``val_fraction`` outside (0, 1).

    Example:
        >>> ds = Dataset("/d", "flat", ("a", "b"), tuple(
        ...     Sample(f"/d/{c}/{i}.jpg", label, "all")
        ...     for label, c in enumerate("ab") for i in range(5)))
        >>> train, val = stratified_split(ds, val_fraction=0.2, seed=0)
        >>> len(train), len(val), sorted(s.label for s in val)
        (8, 2, [0, 1])
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    splits = dataset.splits
    held_out = "val" if "val" in splits else "test" if "test" in splits else None
    if "train" in splits and held_out is not None:
        return (
            [s for s in dataset.samples if s.split == "train"],
            [s for s in dataset.samples if s.split == held_out],
        )

    # A split folder with an empty val/test still gets a validation set, from train.
    pool = [s for s in dataset.samples if s.split in ("train", "all")]
    counts: dict[int, int] = {}
    for s in pool:
        counts[s.label] = counts.get(s.label, 0) + 1
    eligible = [i for i, s in enumerate(pool) if counts[s.label] >= 2]
    n_classes = sum(1 for c in counts.values() if c >= 2)
    val_idx: set[int] = set()
    if eligible:
        n = len(eligible)
        # Stratification needs >= 1 image per class on each side; n >= 2 * n_classes
        # always holds because every eligible class has two images.
        n_val = min(max(math.ceil(val_fraction * n), n_classes), n - n_classes)
        _, val_pos = train_test_split(
            np.arange(n),
            test_size=n_val,
            random_state=seed,
            stratify=[pool[i].label for i in eligible],
        )
        val_idx = {eligible[p] for p in val_pos}
    train = [s for i, s in enumerate(pool) if i not in val_idx]
    val = [s for i, s in enumerate(pool) if i in val_idx]
    return train, val


def stratified_sample(
    samples: Sequence[Sample], *, per_class: int | None, total: int | None, seed: int = 0
) -> list[Sample]:
    """A seeded subset with at most ``per_class`` images per class and ``total`` in all.

    Each class is shuffled with its own seed-derived generator and its first
    ``per_class`` images kept. When ``total`` cuts further, classes are drawn
    round-robin (lowest label first within a round), so they stay balanced and a
    small class keeps all it has. Asking for a larger ``total`` with the same seed
    returns a superset. The result is in the input order.

    Args:
        samples: Samples to draw from.
        per_class: Cap per class; ``None`` for no cap.
        total: Cap on the result size; ``None`` for no cap.
        seed: Same seed, same subset.

    Returns:
        The chosen samples, in their order in ``samples``.

    Raises:
        ValueError: A negative cap.

    Example:
        >>> pool = [Sample(f"/d/{i}.jpg", i % 2, "all") for i in range(10)]
        >>> picked = stratified_sample(pool, per_class=4, total=5, seed=0)
        >>> len(picked), sorted(s.label for s in picked)
        (5, [0, 0, 0, 1, 1])
    """
    for name, cap in (("per_class", per_class), ("total", total)):
        if cap is not None and cap < 0:
            raise ValueError(f"{name} must be >= 0 or None, got {cap}")
    by_label: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_label.setdefault(s.label, []).append(i)

    queues: list[list[int]] = []
    for label in sorted(by_label):
        idx = np.asarray(by_label[label])
        # Per-class generators: a class's draw does not depend on which other classes exist.
        rng = np.random.default_rng([seed, label])
        order = idx[rng.permutation(len(idx))].tolist()
        queues.append(order[:per_class] if per_class is not None else order)

    limit = sum(len(q) for q in queues) if total is None else total
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(chosen) < limit:
                chosen.append(q[depth])
        depth += 1
    return [samples[i] for i in sorted(chosen)]
