"""The torch side of loading images: a dataset that never raises on a bad file, and its collate.

:class:`ImageFolder` decodes :class:`~advisor.data.Sample` s with
:func:`~advisor.data.load_image` and hands a file that fails back as a
:class:`~advisor.data.LoadFailure` instead of raising, so one bad JPEG never stops a pass over
100k images; :func:`collate_skipping` drops those from the batch and returns them, ready for
:meth:`~advisor.data.Dataset.with_skipped`. (The torch-free part, listing and decoding, is
:mod:`advisor.data`.)

Example:
    >>> folder = ImageFolder(ds.samples, weights.transforms(),
    ...                      draft_size=(256, 256))  # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(folder, batch_size=64,
    ...                                      collate_fn=collate_skipping)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from advisor.data.decode import DEFAULT_MAX_PIXELS, ImageLoadError, LoadFailure, load_image
from advisor.data.scan import Sample

__all__ = ["ImageFolder", "collate_skipping"]


class ImageFolder(torch.utils.data.Dataset):
    """A torch dataset over :class:`Sample` s that never raises on a bad image.

    ``__getitem__`` returns ``(image, label, index)``, or a :class:`LoadFailure`
    when the file cannot be decoded. Failures are *returned* rather than kept on
    ``self`` because each DataLoader worker has its own copy of this object; pass
    ``collate_fn=collate_skipping`` to drop them from the batch and get them back.

    Args:
        samples: What to load, e.g. ``dataset.samples`` or a split of them.
        transform: Applied to the RGB ``PIL.Image`` (e.g. ``weights.transforms()``).
        draft_size: Passed to :func:`load_image`.
        max_pixels: Passed to :func:`load_image`.

    Example:
        >>> folder = ImageFolder(ds.samples, weights.transforms(),
        ...                      draft_size=(256, 256))  # doctest: +SKIP
        >>> loader = torch.utils.data.DataLoader(folder, batch_size=64,
        ...                                      collate_fn=collate_skipping)  # doctest: +SKIP
        >>> for images, labels, indices, failures in loader:  # doctest: +SKIP
        ...     ds = ds.with_skipped(failures)
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        draft_size: tuple[int, int] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.samples = tuple(samples)
        self.transform = transform
        self.draft_size = draft_size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int, int] | LoadFailure:
        sample = self.samples[i]
        try:
            image = load_image(sample.path, max_pixels=self.max_pixels, draft_size=self.draft_size)
        except ImageLoadError as err:
            return LoadFailure(sample.path, err.reason, int(i))
        if self.transform is not None:
            image = self.transform(image)
        return image, sample.label, int(i)


def collate_skipping(
    batch: Sequence[tuple[Any, int, int] | LoadFailure],
) -> tuple[torch.Tensor | list[Any], torch.Tensor, torch.Tensor, list[LoadFailure]]:
    """``collate_fn`` for :class:`ImageFolder`: drop failed items and report them.

    Args:
        batch: Items from :meth:`ImageFolder.__getitem__`.

    Returns:
        ``(images, labels, indices, failures)``: images stacked into one tensor (a
        list when the transform does not produce tensors; an empty tensor when every
        item failed), int64 ``labels`` and dataset ``indices`` of the kept items, and
        the :class:`LoadFailure` s (each a :class:`~advisor.data.Skipped` with ``.index``), ready
        for :meth:`~advisor.data.Dataset.with_skipped`.

    Example:
        >>> ok = (torch.zeros(3, 2, 2), 1, 0)
        >>> images, labels, indices, failures = collate_skipping(
        ...     [ok, LoadFailure("/d/b.jpg", "truncated image", 1)])
        >>> images.shape, labels.tolist(), indices.tolist(), [f.index for f in failures]
        (torch.Size([1, 3, 2, 2]), [1], [0], [1])
    """
    failures = [item for item in batch if isinstance(item, LoadFailure)]
    kept = [item for item in batch if not isinstance(item, LoadFailure)]
    images: torch.Tensor | list[Any]
    if not kept:
        images = torch.empty(0)
    elif all(isinstance(item[0], torch.Tensor) for item in kept):
        images = torch.stack([item[0] for item in kept])
    else:
        images = [item[0] for item in kept]
    labels = torch.tensor([item[1] for item in kept], dtype=torch.int64)
    indices = torch.tensor([item[2] for item in kept], dtype=torch.int64)
    return images, labels, indices, failures
