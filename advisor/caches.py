"""What advisor keeps on disk between commands, and how to free it (``advisor cache info|clear``).

Every cache lives under one root (:func:`advisor.utils.cache_root`, ``$ADVISOR_CACHE``):

- ``features/``: embeddings, ImageNet logits and BatchNorm statistics of profiled samples (.npz);
- ``images/``: decoded, resized images, memory-mapped by every run (:mod:`advisor.imagecache`);
- ``references/``: reference statistics built by ``advisor reference build``;
- ``backbones/``: architecture facts of the registry (parameter counts, embedding sizes).

Every entry is rebuilt when missing, so clearing costs time, never results.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from advisor.utils import cache_root

__all__ = ["KINDS", "CacheUsage", "cache_usage", "clear_caches"]

#: Cache kind -> its folder under the root, and what it holds.
KINDS = {
    "features": ("features", "embeddings, logits and BatchNorm statistics of profiled samples"),
    "images": ("images", "decoded images, memory-mapped by training and profiling"),
    "references": ("references", "reference statistics from `advisor reference build`"),
    "backbones": ("backbones", "architecture facts of the backbone registry"),
}


@dataclass(frozen=True)
class CacheUsage:
    """One kind of cache: where it is, what it holds, how many files and bytes."""

    kind: str
    path: str
    description: str
    files: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _files(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.rglob("*") if p.is_file()]
    except OSError:
        return []


def cache_usage(root: str | Path | None = None) -> list[CacheUsage]:
    """Files and bytes of each kind of cache under ``root`` (default: the cache root).

    Example:
        >>> import tempfile
        >>> [u.files for u in cache_usage(tempfile.mkdtemp())]
        [0, 0, 0, 0]
    """
    base = Path(root) if root is not None else cache_root()
    out = []
    for kind, (sub, description) in KINDS.items():
        files = _files(base / sub)
        size = 0
        for f in files:
            try:
                size += f.stat().st_size
            except OSError:
                pass
        out.append(CacheUsage(kind, str(base / sub), description, len(files), size))
    return out


def clear_caches(kinds: list[str] | None = None, root: str | Path | None = None) -> list[CacheUsage]:
    """Delete the named kinds of cache (default: all); returns what was there before.

    Decoded-image files are removed through :func:`advisor.imagecache.clear_cache`, which leaves
    a file that another process is writing alone.

    Raises:
        ValueError: An unknown kind (the message lists the valid ones).
    """
    chosen = list(KINDS) if not kinds else list(kinds)
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown cache kind(s) {', '.join(unknown)}; valid: {', '.join(KINDS)}")
    base = Path(root) if root is not None else cache_root()
    before = [u for u in cache_usage(base) if u.kind in chosen]
    for kind in chosen:
        folder = base / KINDS[kind][0]
        if kind == "images":
            from advisor.imagecache import clear_cache

            clear_cache(folder)
        elif folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
    return before
