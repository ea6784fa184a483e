"""Finding, validating and splitting an image dataset.

This is the first stage of the pipeline: files on disk -> :class:`Dataset`. It is
written for real folders, which hold hidden files, stray CSVs, empty class folders,
broken or looping symlinks, truncated downloads and 16-bit scans. Nothing here
crashes on such a folder: every file that is not used is listed in
:attr:`Dataset.skipped` with a short reason, and the only fatal errors are the ones
where no advice is possible (:class:`DatasetError`, one line naming the path and the
fix).

Two layouts are recognised::

    root/<class>/**/<image>                      "flat"
    root/{train,val|valid|validation,test}/<class>/**/<image>    "split"

:func:`scan` only lists files (fast, no decoding); images are decoded later by
:func:`load_image`, usually through :class:`ImageFolder` and :func:`collate_skipping`,
which turn a file that fails to decode into a :class:`LoadFailure` instead of an
exception, so one bad JPEG never stops a pass over 100k images.

Example:
    >>> ds = scan("photos")                               # doctest: +SKIP
    >>> train, val = stratified_split(ds, val_fraction=0.2, seed=0)  # doctest: +SKIP
    >>> few = stratified_sample(train, per_class=50, total=500)      # doctest: +SKIP
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from sklearn.model_selection import train_test_split

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "Dataset",
    "DatasetError",
    "ImageFolder",
    "ImageLoadError",
    "LoadFailure",
    "Sample",
    "Skipped",
    "collate_skipping",
    "find_images",
    "load_image",
    "read_header",
    "scan",
    "stratified_sample",
    "stratified_split",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

# 64 MP is bigger than any camera photo a user would profile, yet an RGB decode of it
# (about 190 MB) is still survivable; past it we assume a decompression bomb.
DEFAULT_MAX_PIXELS: int = 64_000_000

# Names that operating systems and archivers leave behind; never user data.
_JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})

_SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
_SPLIT_ORDER = ("train", "val", "test", "all")


class DatasetError(Exception):
    """The folder cannot be used at all; ``str(err)`` is one line: the path and the fix."""


class ImageLoadError(Exception):
    """One image could not be read or decoded.

    Attributes:
        path: The file that failed.
        reason: Short, user-facing cause, e.g. ``"truncated image"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keeps the two-argument constructor picklable across workers
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class Skipped:
    """A file or folder that is not used, and why.

    Attributes:
        path: Path of the file or folder.
        reason: Short cause, e.g. ``"zero-byte file"`` or ``"not an image (.txt)"``.
    """

    path: str
    reason: str


@dataclass(frozen=True)
class LoadFailure(Skipped):
    """A :class:`Skipped` produced while decoding, which also remembers the sample index.

    :meth:`ImageFolder.__getitem__` returns one instead of raising, so the failure
    survives the trip back from a DataLoader worker process; :func:`collate_skipping`
    hands these back, and :meth:`Dataset.with_skipped` accepts them directly.

    Attributes:
        index: Position of the failed sample in the :class:`ImageFolder`.
    """

    index: int = -1

    def to_skipped(self) -> Skipped:
        """Drop the index: the plain record kept in :attr:`Dataset.skipped`."""
        return Skipped(self.path, self.reason)


@dataclass(frozen=True)
class Sample:
    """One image file and its class.

    Attributes:
        path: Path of the image file.
        label: Index into :attr:`Dataset.classes`.
        split: ``"train"``, ``"val"`` or ``"test"`` for a split layout, ``"all"`` otherwise.
    """

    path: str
    label: int
    split: str


@dataclass(frozen=True)
class Dataset:
    """The result of :func:`scan`: what was found in a data folder.

    Attributes:
        root: Absolute path of the data folder.
        layout: ``"flat"`` (``root/<class>/...``) or ``"split"`` (``root/train/<class>/...``).
        classes: Class names, sorted; a sample's label indexes this tuple.
        samples: Every file that passed the listing checks (not yet decoded).
        skipped: Files and folders left out, each with a reason.
        empty_classes: Class folders without a usable image, dropped from ``classes``.

    Example:
        >>> ds = Dataset(root="/d", layout="flat", classes=("cat", "dog"),
        ...              samples=(Sample("/d/cat/1.jpg", 0, "all"),
        ...                       Sample("/d/dog/1.jpg", 1, "all")))
        >>> ds.class_counts()
        {'cat': 1, 'dog': 1}
        >>> Dataset.from_dict(ds.to_dict()) == ds
        True
    """

    root: str
    layout: str
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    skipped: tuple[Skipped, ...] = ()
    empty_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.layout not in ("flat", "split"):
            raise ValueError(f"layout must be 'flat' or 'split', got {self.layout!r}")
        # Callers may pass lists; tuples keep the result immutable and equal to itself
        # after a JSON round trip.
        for name in ("classes", "samples", "skipped", "empty_classes"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        """Images per class, in class order, zeros included.

        Args:
            split: Count only this split (``"train"``, ``"val"``, ``"test"``, ``"all"``);
                ``None`` counts every sample.

        Raises:
            ValueError: ``split`` is not one of :attr:`splits`.
        """
        if split is not None and split not in self.splits:
            raise ValueError(f"split {split!r} not in this dataset; splits: {list(self.splits)}")
        counts = dict.fromkeys(self.classes, 0)
        for s in self.samples:
            if split is None or s.split == split:
                counts[self.classes[s.label]] += 1
        return counts

    @property
    def splits(self) -> tuple[str, ...]:
        """Splits that hold at least one sample, in the order train, val, test, all."""
        present = {s.split for s in self.samples}
        return tuple(name for name in _SPLIT_ORDER if name in present)

    @property
    def labels(self) -> np.ndarray:
        """Labels of :attr:`samples` as an int64 array (a fresh copy on each call)."""
        return np.fromiter((s.label for s in self.samples), dtype=np.int64, count=len(self.samples))

    @property
    def paths(self) -> list[str]:
        """Paths of :attr:`samples`, in order."""
        return [s.path for s in self.samples]

    def fingerprint(self) -> str:
        """Hex digest that changes when a sample file, a label or the class list changes.

        Files are stat-ed when this is called (not at scan time), so a result cached
        under a fingerprint can be checked against the folder as it is now. Paths are
        hashed relative to :attr:`root`, so moving the whole folder keeps the digest.
        """
        h = hashlib.sha256()
        h.update(json.dumps(list(self.classes)).encode())
        for s in self.samples:
            try:
                st = os.stat(s.path)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, -1  # a vanished file must change the digest, not crash
            rel = os.path.relpath(s.path, self.root)
            h.update(json.dumps([rel, s.label, s.split, size, mtime]).encode())
        return h.hexdigest()

    def with_skipped(self, more: Iterable[Skipped]) -> Dataset:
        """A copy without the samples named in ``more``, which join :attr:`skipped`.

        Used when decoding fails after the scan. ``classes`` (and so every label) is
        kept unchanged even if a class loses all its samples, so labels computed
        before stay valid.

        Example:
            >>> ds = Dataset("/d", "flat", ("a", "b"),
            ...              (Sample("/d/a/1.jpg", 0, "all"), Sample("/d/b/1.jpg", 1, "all")))
            >>> ds.with_skipped([Skipped("/d/a/1.jpg", "truncated image")]).class_counts()
            {'a': 0, 'b': 1}
        """
        extra: list[Skipped] = []
        seen = set(self.skipped)
        for item in more:
            plain = Skipped(item.path, item.reason)
            if plain not in seen:
                seen.add(plain)
                extra.append(plain)
        gone = {s.path for s in extra}
        return Dataset(
            root=self.root,
            layout=self.layout,
            classes=self.classes,
            samples=tuple(s for s in self.samples if s.path not in gone),
            skipped=self.skipped + tuple(extra),
            empty_classes=self.empty_classes,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` rebuilds an equal :class:`Dataset`."""
        return {
            "root": self.root,
            "layout": self.layout,
            "classes": list(self.classes),
            "samples": [asdict(s) for s in self.samples],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "empty_classes": list(self.empty_classes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dataset:
        """Inverse of :meth:`to_dict`."""
        return cls(
            root=d["root"],
            layout=d["layout"],
            classes=tuple(d["classes"]),
            samples=tuple(Sample(s["path"], int(s["label"]), s["split"]) for s in d["samples"]),
            skipped=tuple(Skipped(s["path"], s["reason"]) for s in d.get("skipped", ())),
            empty_classes=tuple(d.get("empty_classes", ())),
        )


# --------------------------------------------------------------------------- scanning


def _q(path: str | os.PathLike) -> str:
    """Quote a path for a one-line message (a newline in a file name must not split it)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return "'" + text.replace("\n", "\\n").replace("\r", "\\r") + "'"


def _ignored_name(entry: os.DirEntry) -> str | None:
    """Reason to skip an entry by its name alone, or ``None``."""
    name = entry.name
    if name.startswith("."):
        kind = "hidden"
    elif name.lower() in _JUNK_NAMES:
        kind = "system"
    else:
        return None
    try:
        is_dir = entry.is_dir()  # only asked for ignored names: it may cost a stat on a symlink
    except OSError:
        is_dir = False
    return f"{kind} folder" if is_dir else f"{kind} file"


def _os_reason(err: OSError, is_link: bool) -> str:
    if err.errno == errno.ELOOP:
        return "symlink loop"
    if is_link and isinstance(err, FileNotFoundError):
        return "broken symlink"
    return f"unreadable: {err.strerror or type(err).__name__}"


def _stat_entry(entry: os.DirEntry) -> os.stat_result | str:
    """The entry's stat (following symlinks), or the reason it cannot be stat-ed."""
    try:
        return entry.stat()
    except OSError as err:
        try:
            is_link = entry.is_symlink()
        except OSError:
            is_link = False
        return _os_reason(err, is_link)


def _list_dir(path: str, skipped: list[Skipped]) -> list[os.DirEntry]:
    """Entries of ``path`` sorted by name; an unreadable folder is recorded, not raised."""
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as err:
        skipped.append(Skipped(path, _os_reason(err, os.path.islink(path))))
        return []


def _image_reason(path: str, name: str, st: os.stat_result) -> str | None:
    """Why a stat-ed directory entry is not a usable image file, or ``None``."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    ext = os.path.splitext(name)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        return f"not an image ({ext})" if ext else "not an image (no extension)"
    if st.st_size == 0:
        return "zero-byte file"
    # Under root, access() always passes; the later decode still catches PermissionError.
    if not os.access(path, os.R_OK):
        return "unreadable: Permission denied"
    return None


def _entries(folder: str, skipped: list[Skipped]) -> Iterator[tuple[os.DirEntry, os.stat_result]]:
    """Entries of ``folder`` with their stat; hidden, system and unreadable ones go to ``skipped``."""
    for entry in _list_dir(folder, skipped):
        why = _ignored_name(entry)
        if why:
            skipped.append(Skipped(entry.path, why))
            continue
        st = _stat_entry(entry)
        if isinstance(st, str):
            skipped.append(Skipped(entry.path, st))
            continue
        yield entry, st


def _walk_class(
    top: str,
    ancestors: frozenset[tuple[int, int]],
    visited: set[tuple[int, int]],
    skipped: list[Skipped],
) -> list[str]:
    """Image files under ``top`` (recursive, sorted, directory symlinks followed).

    Folders are identified by (st_dev, st_ino). ``ancestors`` holds those of ``top``
    and the folders above it (root, split): a link back to one is a loop. ``visited``
    holds every folder walked so far in this scan: a second link to one is reported
    rather than listing its images twice.
    """
    found: list[str] = []
    # Iterative so that a very deep tree cannot hit Python's recursion limit.
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [(top, ancestors)]
    while stack:
        folder, ancestors = stack.pop()
        subfolders: list[tuple[str, frozenset[tuple[int, int]]]] = []
        for entry, st in _entries(folder, skipped):
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    skipped.append(Skipped(entry.path, "symlink loop"))
                elif key in visited:
                    skipped.append(Skipped(entry.path, "folder already listed (linked twice)"))
                else:
                    visited.add(key)
                    subfolders.append((entry.path, ancestors | {key}))
                continue
            why = _image_reason(entry.path, entry.name, st)
            if why:
                skipped.append(Skipped(entry.path, why))
            else:
                found.append(entry.path)
        stack.extend(reversed(subfolders))  # pop order = sorted order
    return found


def find_images(root: str | os.PathLike) -> tuple[list[str], list[Skipped]]:
    """Every usable image file under ``root`` whatever the layout (no classes needed).

    The same listing checks as :func:`scan` (hidden, non-image, zero-byte, loops...).

    Raises:
        DatasetError: ``root`` is missing, not a folder, or holds no usable image.
    """
    shown = os.fspath(root)
    path = os.path.abspath(shown)
    st = _check_root(path, shown)
    skipped: list[Skipped] = []
    key = (st.st_dev, st.st_ino)
    found = _walk_class(path, frozenset({key}), {key}, skipped)
    if not found:
        raise DatasetError(f"no usable image in {_q(shown)}: add .jpg/.png files to it")
    return found, skipped


def _subfolders(
    folder: str, skipped: list[Skipped], visited: set[tuple[int, int]]
) -> tuple[list[tuple[str, str, tuple[int, int]]], list[str]]:
    """Non-hidden sub-folders of ``folder`` as (name, path, (st_dev, st_ino)), and its files.

    Hidden, unreadable and already-listed entries are recorded in ``skipped``; the
    caller decides what the returned files mean at its level.
    """
    folders, files = [], []
    for entry, st in _entries(folder, skipped):
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in visited:
                skipped.append(Skipped(entry.path, "folder already listed (linked twice)"))
            else:
                visited.add(key)
                folders.append((entry.name, entry.path, key))
        else:
            files.append(entry.path)
    return folders, files


def _check_root(root: str, shown: str) -> os.stat_result:
    if not os.path.exists(root):
        if os.path.islink(root):
            raise DatasetError(
                f"data folder {shown} is a broken symlink: "
                "pass the folder that holds one sub-folder per class"
            )
        raise DatasetError(
            f"data folder {shown} does not exist: "
            "pass the folder that holds one sub-folder per class"
        )
    if not os.path.isdir(root):
        raise DatasetError(
            f"data folder {shown} is a file, not a folder: unpack it if it is an archive, "
            "then pass the folder that holds one sub-folder per class"
        )
    try:
        with os.scandir(root):
            pass
        return os.stat(root)
    except OSError as err:
        raise DatasetError(
            f"data folder {shown} cannot be read ({err.strerror or type(err).__name__}): "
            "check its permissions or copy it somewhere readable"
        ) from None


def scan(root: str | os.PathLike) -> Dataset:
    """List the images of a data folder, without decoding any of them.

    One ``os.scandir`` per folder and one ``stat`` per file, so 100k files list in
    about a second. Problems with single files never raise: they end up in
    :attr:`Dataset.skipped`. Classes are the sorted names of the class folders that
    hold at least one usable image; labels index that order.

    The layout is "split" when the root's sub-folders include ``train`` and at least
    one of ``val``/``valid``/``validation``/``test`` (case-insensitive); other
    sub-folders of such a root are skipped with a note. Otherwise it is "flat" and
    every sub-folder is a class.

    Args:
        root: The data folder.

    Returns:
        The :class:`Dataset`, samples sorted by split, class and path.

    Raises:
        DatasetError: The folder is missing, not a folder or unreadable; it has no
            class folders, no usable image, or images for fewer than two classes.

    Example:
        >>> ds = scan("photos")            # doctest: +SKIP
        >>> ds.classes, ds.class_counts()  # doctest: +SKIP
        (('cat', 'dog'), {'cat': 120, 'dog': 95})
    """
    given = os.fspath(root)
    if isinstance(given, bytes):
        given = os.fsdecode(given)
    shown = _q(given)
    root_st = _check_root(given, shown)
    abs_root = os.path.abspath(given)

    skipped: list[Skipped] = []
    root_key = (root_st.st_dev, root_st.st_ino)
    visited = {root_key}
    top, top_files = _subfolders(abs_root, skipped, visited)
    top_names = {name.lower() for name, _, _ in top}
    is_split = "train" in top_names and bool(top_names & {"val", "valid", "validation", "test"})

    # (split, class name, class folder, keys of it and the folders above it);
    # several splits may hold one class.
    folders: list[tuple[str, str, str, frozenset[tuple[int, int]]]] = []
    if is_split:
        skipped.extend(Skipped(p, "not inside a split folder") for p in top_files)
        seen_split: dict[str, str] = {}
        for name, path, key in top:
            split = _SPLIT_ALIASES.get(name.lower())
            if split is None:
                skipped.append(Skipped(path, "not a split folder (expected train/val/test)"))
                visited.discard(key)  # not walked, so a link into it elsewhere is still fine
                continue
            if split in seen_split:
                raise DatasetError(
                    f"data folder {shown} has two folders for the {split} split "
                    f"({seen_split[split]!r} and {name!r}): merge or rename one of them"
                )
            seen_split[split] = name
            class_dirs, stray = _subfolders(path, skipped, visited)
            skipped.extend(Skipped(p, "not inside a class folder") for p in stray)
            folders.extend(
                (split, cname, cpath, frozenset({root_key, key, ckey}))
                for cname, cpath, ckey in class_dirs
            )
    else:
        skipped.extend(Skipped(p, "not inside a class folder") for p in top_files)
        folders.extend(
            ("all", cname, cpath, frozenset({root_key, ckey})) for cname, cpath, ckey in top
        )

    if not folders:
        found = f" (found {len(top_files)} file(s) directly in it)" if top_files else ""
        example = os.path.join(given, "train" if is_split else "", "cat", "001.jpg")
        raise DatasetError(
            f"data folder {shown} has no class folders{found}: put each class's images "
            f"in its own sub-folder, e.g. {_q(example)}"
        )

    found_files: list[tuple[str, str, str]] = []  # (split, class, path)
    all_class_names: set[str] = set()
    for split, cname, cpath, ancestors in folders:
        all_class_names.add(cname)
        for path in _walk_class(cpath, ancestors, visited, skipped):
            found_files.append((split, cname, path))

    classes = tuple(sorted({cname for _, cname, _ in found_files}))
    empty = tuple(sorted(all_class_names - set(classes)))
    if not found_files:
        hint = ""
        if skipped:
            first = skipped[0]
            hint = f" ({len(skipped)} file(s) skipped, e.g. {_q(first.path)}: {first.reason})"
        raise DatasetError(
            f"data folder {shown} has no usable images{hint}: add image files "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}) inside the class folders"
        )
    if len(classes) < 2:
        raise DatasetError(
            f"data folder {shown} has images for only {len(classes)} class ({classes[0]!r}): "
            "a classifier needs >= 2 classes; add one sub-folder of images per class"
        )
    if is_split and not any(split == "train" for split, _, _ in found_files):
        raise DatasetError(
            f"data folder {shown} has a split layout but its train folder holds no usable images: "
            "put the training images in train/<class>/, or drop the split folders"
        )

    index = {name: i for i, name in enumerate(classes)}
    order = {name: i for i, name in enumerate(_SPLIT_ORDER)}
    samples = sorted(
        (Sample(path, index[cname], split) for split, cname, path in found_files),
        key=lambda s: (order[s.split], s.label, s.path),
    )
    return Dataset(
        root=abs_root,
        layout="split" if is_split else "flat",
        classes=classes,
        samples=tuple(samples),
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
        empty_classes=empty,
    )


# --------------------------------------------------------------------------- decoding


def _decode_reason(err: BaseException) -> str:
    """Short reason for an exception raised while opening or decoding an image."""
    if isinstance(err, Image.DecompressionBombError):
        return f"decompression bomb: {str(err).split(',')[0]}"  # drop PIL's "DOS attack" tail
    if isinstance(err, Image.UnidentifiedImageError):
        return "not a readable image (unknown or corrupt format)"
    text = str(err)
    low = text.lower()
    if isinstance(err, EOFError) or "truncated" in low or "broken data stream" in low:
        return f"truncated image ({text})" if text else "truncated image"
    if isinstance(err, OSError) and err.strerror:
        return f"unreadable: {err.strerror}"
    kind = type(err).__name__
    return f"corrupt image: {kind}: {text}" if text else f"corrupt image: {kind}"


def read_header(path: str | os.PathLike) -> tuple[int, int, str, str]:
    """Width, height, mode and format of an image, read from its header only.

    Args:
        path: Image file.

    Returns:
        ``(width, height, mode, format)``, e.g. ``(640, 480, "RGB", "JPEG")``.

    Raises:
        ImageLoadError: The file cannot be opened or is not an image PIL knows; also
            headers so large that PIL itself refuses them as a decompression bomb.

    Example:
        >>> read_header("photos/cat/001.jpg")  # doctest: +SKIP
        (640, 480, 'RGB', 'JPEG')
    """
    try:
        with Image.open(path) as im:
            return im.size[0], im.size[1], im.mode, im.format or ""
    except Exception as err:  # PIL raises many types for bad files; all mean "this file".
        raise ImageLoadError(path, _decode_reason(err)) from err


def _scaled_gray(arr: np.ndarray, lo: float, hi: float) -> Image.Image:
    """Map ``[lo, hi]`` linearly onto 0..255 and return an RGB image."""
    arr = np.nan_to_num(arr.astype(np.float64), nan=lo, posinf=hi, neginf=lo)
    span = hi - lo
    scaled = (arr - lo) * (255.0 / span) if span > 0 else np.zeros_like(arr)
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB version of a decoded image of any PIL mode."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16"):
        # PIL's own conversion clips at 255, which turns a 16-bit scan white.
        return _scaled_gray(np.asarray(im), 0.0, 65535.0)
    if mode == "I":
        arr = np.asarray(im)
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 65535:  # 16-bit data stored as 32-bit (PGM, TIFF, older PNG)
            return _scaled_gray(arr, 0.0, 65535.0)
        return _scaled_gray(arr, float(lo), float(hi))
    if mode == "F":
        arr = np.asarray(im)
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        return _scaled_gray(arr, lo, hi)
    if mode == "P" and "transparency" not in im.info:
        return im.convert("RGB")
    if mode in ("P", "PA", "LA", "La", "RGBA", "RGBa"):
        # Composite onto white as image viewers do; dropping alpha would expose
        # whatever colour the transparent pixels happen to store (often black).
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # 1, L, CMYK, YCbCr, LAB, HSV


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an image fully into 8-bit RGB, or raise :class:`ImageLoadError`.

    The pixel count is checked from the header before any pixel is decoded. All
    modes end up as RGB: greyscale and 1-bit are replicated, palette and alpha
    images are composited onto white, CMYK/YCbCr are converted, 16-bit images are
    scaled by their 0..65535 range (not clipped), float images by their min..max.
    An EXIF rotation is applied. Animated images give their first frame.

    Args:
        path: Image file.
        max_pixels: Refuse images with more pixels than this (decompression bombs).
            PIL's own limit (``Image.MAX_IMAGE_PIXELS``, doubled) still applies above it.
        draft_size: ``(width, height)`` the caller will resize to. JPEGs are then
            decoded at the smallest power-of-two reduction that is still at least
            this size in both sides, which is several times faster for photos;
            other formats decode at full size.

    Returns:
        A loaded RGB ``PIL.Image.Image`` (the file is closed).

    Raises:
        ImageLoadError: Unreadable file, unknown format, truncated data, or too many
            pixels; ``.reason`` says which.

    Example:
        >>> im = load_image("photos/cat/001.jpg", draft_size=(256, 256))  # doctest: +SKIP
        >>> im.mode  # doctest: +SKIP
        'RGB'
    """
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    path, f"decompression bomb: {width}x{height} px > limit of {max_pixels} px"
                )
            if draft_size is not None:
                im.draft("RGB", (int(draft_size[0]), int(draft_size[1])))  # no-op unless JPEG
            im.load()
            try:
                upright = ImageOps.exif_transpose(im)
            except Exception:  # a broken EXIF block should not cost the image
                upright = im
            try:
                rgb = _to_rgb(upright)
            except ValueError:
                raise ImageLoadError(path, f"unsupported colour mode {upright.mode}") from None
            # Leaving the `with` closes `im`; hand back an image that does not share it.
            return rgb.copy() if rgb is im else rgb
    except ImageLoadError:
        raise
    except Exception as err:  # PIL raises many types for bad files; all mean "this file".
        raise ImageLoadError(path, _decode_reason(err)) from err


# --------------------------------------------------------------------------- torch glue


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
        the :class:`LoadFailure` s (each a :class:`Skipped` with ``.index``), ready
        for :meth:`Dataset.with_skipped`.

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


# --------------------------------------------------------------------------- splitting


def stratified_split(
    dataset: Dataset, *, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Train and validation samples: the folder's own split if it has one.

    With a split layout, ``train`` is returned against ``val`` (or ``test`` when
    there is no ``val``) and ``val_fraction`` is ignored. Otherwise every sample is
    split per class with sklearn's stratified ``train_test_split``; classes with a
    single image stay in train. Both lists keep the dataset's order.

    Args:
        dataset: Result of :func:`scan`.
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
