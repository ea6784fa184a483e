"""Small helpers every stage shares: atomic files, JSON-ready values, progress bars, versions.

Torch-free on import (``versions`` imports the libraries it reports only when called), so the
torch-free modules (``advisor.bench.results``) can use it.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CACHE_ENV",
    "atomic_write",
    "atomic_writer",
    "cache_root",
    "json_clean",
    "progress_bar",
    "versions",
]

#: Environment variable naming the root folder of every advisor cache.
CACHE_ENV = "ADVISOR_CACHE"


def cache_root() -> Path:
    """Root of advisor's caches: ``$ADVISOR_CACHE``, else ``$XDG_CACHE_HOME/advisor`` (``~/.cache/advisor``).

    Features live in ``features/``, decoded images in ``images/``, reference statistics in
    ``references/`` and architecture facts in ``backbones/`` below it.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "advisor"


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is fsync-ed and renamed onto ``path``.

    A failure (or Ctrl-C) inside the block removes the temporary file, so a partial file never
    replaces a good one. The folder is created when missing.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a" / "x.txt"
        >>> with atomic_writer(p) as fh:
        ...     _ = fh.write("whole")
        >>> p.read_text()
        'whole'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes | Iterable[str]) -> Path:
    """Write ``data`` (text, bytes, or text chunks) to ``path`` atomically; returns the path."""
    binary = isinstance(data, (bytes, bytearray))
    with atomic_writer(path, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
        if isinstance(data, (str, bytes, bytearray)):
            fh.write(data)
        else:
            for chunk in data:
                fh.write(chunk)
    return Path(path)


def json_clean(value: Any) -> Any:
    """A JSON-ready copy: tuples become lists, NaN/inf become ``None``, numpy scalars plain values.

    Example:
        >>> json_clean({"a": (1.0, float("nan")), 2: {"b": float("inf")}})
        {'a': [1.0, None], '2': {'b': None}}
    """
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy and torch scalars
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def progress_bar(total: int, desc: str, *, unit: str = "it", enabled: bool = True) -> Any:
    """A tqdm bar on stderr, or ``None`` when disabled (callers test for ``None``)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)


def versions() -> dict[str, str | None]:
    """Versions of advisor and the libraries its numbers depend on, plus the platform."""
    from importlib import metadata

    from advisor import __version__

    out: dict[str, str | None] = {"advisor": __version__, "python": platform.python_version()}
    for name in ("torch", "torchvision", "timm", "numpy", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["platform"] = platform.platform()
    return out
