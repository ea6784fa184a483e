"""Finding, validating, decoding and splitting an image dataset: files on disk -> :class:`Dataset`.

Written for real folders, which hold hidden files, stray CSVs, empty class folders, broken or
looping symlinks, truncated downloads and 16-bit scans: a file that is not used is listed in
:attr:`Dataset.skipped` with a short reason, and the only fatal errors are the ones where no
advice is possible (:class:`DatasetError`, one line naming the path and the fix).

Modules, in the order data flows through them (all import without torch):

- :mod:`~advisor.data.names`: names as people read them, :func:`display_name` and its inverse.
- :mod:`~advisor.data.scan`: the folder walk, the layouts and :class:`Dataset` (with its
  fingerprint); :func:`scan` lists files without decoding them.
- :mod:`~advisor.data.decode`: :func:`load_image`, any image as 8-bit RGB or an
  :class:`ImageLoadError` with its reason.
- :mod:`~advisor.data.split`: the seeded :func:`stratified_split` and :func:`stratified_sample`.

The torch dataset and its collate (``ImageFolder``, ``collate_skipping``) live in
:mod:`advisor.loading`; importing them from here still works and loads torch only then.

Example:
    >>> ds = scan("photos")                                          # doctest: +SKIP
    >>> train, val = stratified_split(ds, val_fraction=0.2, seed=0)  # doctest: +SKIP
    >>> few = stratified_sample(train, per_class=50, total=500)      # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from advisor.data.decode import DEFAULT_MAX_PIXELS, ImageLoadError, LoadFailure, load_image, read_header
from advisor.data.names import display_name, parse_display_name
from advisor.data.scan import (
    IMAGE_EXTENSIONS,
    MAX_DEPTH,
    MAX_ENTRIES,
    NO_IMAGE_LIMIT,
    Dataset,
    DatasetError,
    Sample,
    find_images,
    scan,
)
from advisor.data.split import stratified_sample, stratified_split
from advisor.types import SKIPPED_LIMIT, Skipped, summarize_skipped

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "NO_IMAGE_LIMIT",
    "SKIPPED_LIMIT",
    "Dataset",
    "DatasetError",
    "ImageLoadError",
    "LoadFailure",
    "Sample",
    "Skipped",
    "display_name",
    "find_images",
    "load_image",
    "parse_display_name",
    "read_header",
    "scan",
    "stratified_sample",
    "stratified_split",
    "summarize_skipped",
]

#: Names that moved to :mod:`advisor.loading` (they need torch), loaded from there on first use.
_MOVED = {"ImageFolder": "advisor.loading", "collate_skipping": "advisor.loading"}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'advisor.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MOVED[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MOVED))
