"""Small helpers every stage shares: atomic files, JSON-ready values, progress bars, versions.

Torch-free on import (``versions`` imports the libraries it reports only when called), so the
torch-free modules (``advisor.bench.results``) can use it.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CACHE_ENV",
    "OutputError",
    "atomic_write",
    "atomic_writer",
    "cache_root",
    "check_writable",
    "default_permissions",
    "human_bytes",
    "json_clean",
    "progress_bar",
    "safe_name",
    "shown",
    "versions",
]

#: Environment variable naming the root folder of every advisor cache.
CACHE_ENV = "ADVISOR_CACHE"


class OutputError(RuntimeError):
    """An output (report folder, results file) cannot be written; the message names it and the fix."""


def shown(path: str | os.PathLike) -> str:
    """A path quoted for a one-line message: a newline or an undecodable byte in a name must not
    break the line (or the terminal)."""
    text = os.fspath(path)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(text, str) else repr(text)
    return "'" + text.replace("\n", "\\n").replace("\r", "\\r") + "'"


def safe_name(text: str, *, default: str) -> str:
    """``text`` as a file name that is safe everywhere (timm's ``make_safe``): every run of
    characters other than ASCII letters, digits, ``.``, ``_`` and ``-`` becomes one ``_``, leading
    and trailing dots and underscores go; ``default`` when nothing is left.

    Example:
        >>> safe_name("my pets (v2)!", default="data"), safe_name("données", default="data")
        ('my_pets_v2', 'donn_es')
        >>> safe_name("../..", default="report")
        'report'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or default


def human_bytes(nbytes: float) -> str:
    """A size in binary units, as ``advisor cache info`` prints it.

    Example:
        >>> human_bytes(512), human_bytes(3 * 2**20), human_bytes(5 * 2**40)
        ('512 B', '3.0 MiB', '5120.0 GiB')
    """
    for unit in ("B", "KiB", "MiB"):
        if nbytes < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """Make sure ``folder`` exists and a file can be created in it, before any work is done.

    Raises:
        OutputError: One line naming the folder, why it cannot be written, and what to do.
    """
    path = Path(folder)
    try:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{what} {shown(path)} is a file, not a folder: pass another folder with --out")
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".advisor-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OutputError:
        raise
    except OSError as err:
        reason = err.strerror or str(err)
        fix = ("free some disk space or choose a folder on another disk with --out" if err.errno == 28 else
               "choose a writable folder with --out (or fix its permissions)")
        raise OutputError(f"cannot write the {what} {shown(path)} ({reason}): {fix}") from None
    return path


def cache_root() -> Path:
    """Root of advisor's caches: ``$ADVISOR_CACHE``, else ``$XDG_CACHE_HOME/advisor`` (``~/.cache/advisor``).

    Features live in ``features/``, decoded images in ``images/``, reference statistics in
    ``references/`` and architecture facts in ``backbones/`` below it.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "advisor"


def default_permissions(path: str | os.PathLike) -> None:
    """Give a file made by ``tempfile.mkstemp`` (0600) the permissions a plain ``open()`` gives.

    Reports and caches are then readable wherever the user's umask says, e.g. by the other
    workers of a cluster that share the filesystem.
    """
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):  # a filesystem without modes (some network mounts) keeps its own
        os.chmod(path, 0o666 & ~umask)


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
        default_permissions(tmp)
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
    """A JSON-ready copy: tuples become lists, NaN/inf ``None``, numpy values plain ones, paths text.

    Raises:
        TypeError: A value JSON has no form for (so a bad result fails before any file is written).

    Example:
        >>> json_clean({"a": (1.0, float("nan")), 2: {"b": float("inf")}})
        {'a': [1.0, None], '2': {'b': None}}
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars, torch tensors
        return json_clean(value.tolist())
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else None
    raise TypeError(f"cannot write a {type(value).__name__} as JSON: {value!r}")


def progress_bar(total: int | None, desc: str, *, unit: str = "it", enabled: bool = True) -> Any:
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
