"""Finding and validating the images of a data folder, without decoding them: :class:`Dataset`.

This is the first stage of the pipeline: files on disk -> :class:`Dataset`. It is
written for real folders, which hold hidden files, stray CSVs, empty class folders,
broken or looping symlinks and names that are not valid UTF-8. Nothing here crashes on
such a folder: every file that is not used is listed in :attr:`Dataset.skipped` with a
short reason, and the only fatal errors are the ones where no advice is possible
(:class:`DatasetError`, one line naming the path and the fix).

Two layouts are recognised::

    root/<class>/**/<image>                      "flat"
    root/{train,val|valid|validation,test}/<class>/**/<image>    "split"

:func:`scan` only lists files (one ``stat`` each); images are decoded later
(:mod:`advisor.data.decode`). Symlinks are followed, also out of the data folder, within
the bounds :data:`MAX_DEPTH`, :data:`MAX_ENTRIES` and :data:`NO_IMAGE_LIMIT` (see
:func:`scan`).

Example:
    >>> ds = scan("photos")            # doctest: +SKIP
    >>> ds.classes, ds.class_counts()  # doctest: +SKIP
    (('cat', 'dog'), {'cat': 120, 'dog': 95})
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from advisor.data.names import display_name, quoted
from advisor.types import Skipped

__all__ = ["IMAGE_EXTENSIONS", "MAX_DEPTH", "MAX_ENTRIES", "NO_IMAGE_LIMIT", "Dataset", "DatasetError", "Sample",
           "find_images", "scan"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

# Bounds of one listing, so that a symlink to "/" or to a huge tree costs seconds, not hours.
#: Deepest folder level walked below the data folder. Real datasets nest a few levels;
#: a chain of links or a mirrored file system is what goes deeper.
MAX_DEPTH: int = 32
#: Most directory entries one listing reads: ImageNet-1k's 1.28M training images fit about
#: four times over.
MAX_ENTRIES: int = 5_000_000
#: Files inside class folders after which a listing that found no usable image gives up:
#: a wrong folder (a home directory, a folder of CSVs) is reported in a second.
NO_IMAGE_LIMIT: int = 10_000


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


_Key = tuple[int, int]  # (st_dev, st_ino): a folder's identity, whatever path reaches it


def _key(st: os.stat_result) -> _Key:
    return (st.st_dev, st.st_ino)


def _keys_above(path: str) -> set[_Key]:
    """Identities of every folder that holds ``path``, through its given and its real path."""
    keys: set[_Key] = set()
    for start in {os.path.abspath(path), os.path.realpath(path)}:
        current = start
        while True:
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
            try:
                keys.add(_key(os.stat(current)))
            except OSError:
                pass  # an unreadable parent cannot be walked into either
    return keys


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


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _image_reason(path: str, name: str, st: os.stat_result) -> str | None:
    """Why a stat-ed directory entry is not a usable image file, or ``None``."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    ext = _extension(name)
    if ext not in IMAGE_EXTENSIONS:
        return f"not an image ({ext})" if ext else "not an image (no extension)"
    if st.st_size == 0:
        return "zero-byte file"
    # Under root, access() always passes; the later decode still catches PermissionError.
    if not os.access(path, os.R_OK):
        return "unreadable: Permission denied"
    return None


class _Walk:
    """One listing of a data folder: the skipped records, the folders seen, the work done.

    Symlinks to files and folders are followed wherever they point, within bounds:

    - a folder is walked once, however many links lead to it (identity by
      ``(st_dev, st_ino)``); a link to the folder it sits in, or to any folder above it
      up to the data folder, is a loop; a link to a folder that holds the data folder
      (``/``, the home folder...) is not followed either, since it leads back in;
    - folders deeper than ``max_depth`` levels below the data folder are not walked;
    - at most ``max_entries`` directory entries are read in all; what is left is listed
      as not walked;
    - after ``no_image_limit`` files inside class folders without one usable image,
      the listing stops with a :class:`DatasetError` that says what it found instead.

    Each of these leaves a :class:`Skipped` record with its reason.
    """

    def __init__(
        self, root: str, root_st: os.stat_result, shown: str, *,
        max_depth: int, max_entries: int, no_image_limit: int,
    ) -> None:
        self.shown = shown
        self.max_depth = max_depth
        self.max_entries = max_entries
        self.no_image_limit = no_image_limit
        self.skipped: list[Skipped] = []
        self.root_key = _key(root_st)
        self.visited: set[_Key] = {self.root_key}
        self.above = _keys_above(root) - {self.root_key}
        self.n_entries = 0
        self.n_files = 0  # files met inside class folders
        self.n_images = 0
        self.extensions: Counter[str] = Counter()
        self.full = False  # max_entries reached

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append(Skipped(path, reason))

    def _stop_reason(self, partly: bool) -> str:
        what = "listed in part" if partly else "not walked"
        return f"{what}: the walk stops after {self.max_entries:,} entries"

    def list_dir(self, path: str) -> list[os.DirEntry]:
        """Entries of ``path`` sorted by name; an unreadable folder is recorded, not raised."""
        if self.full:
            self.skip(path, self._stop_reason(partly=False))
            return []
        left = self.max_entries - self.n_entries
        try:
            with os.scandir(path) as it:
                # One more than allowed tells a folder that fits from one that does not.
                entries = list(itertools.islice(it, left + 1))
        except OSError as err:
            self.skip(path, _os_reason(err, os.path.islink(path)))
            return []
        if len(entries) > left:
            entries = entries[:left]
            self.full = True
            self.skip(path, self._stop_reason(partly=True))
        self.n_entries += len(entries)
        return sorted(entries, key=lambda e: e.name)

    def entries(self, folder: str) -> Iterator[tuple[os.DirEntry, os.stat_result]]:
        """Entries of ``folder`` with their stat; hidden, system and unreadable ones are skipped."""
        for entry in self.list_dir(folder):
            why = _ignored_name(entry)
            if why:
                self.skip(entry.path, why)
                continue
            st = _stat_entry(entry)
            if isinstance(st, str):
                self.skip(entry.path, st)
                continue
            yield entry, st

    def folder_reason(self, key: _Key, ancestors: frozenset[_Key], depth: int) -> str | None:
        """Why a folder met at ``depth`` is not walked, or ``None``: then it is marked as seen."""
        if key in ancestors:
            return "symlink loop"
        if key in self.above:
            return "symlink to a folder that holds the data folder (not followed)"
        if key in self.visited:
            return "folder already listed (linked twice)"
        if depth > self.max_depth:
            return f"too deep: more than {self.max_depth} folder levels below the data folder"
        self.visited.add(key)
        return None

    def subfolders(self, folder: str, depth: int) -> tuple[list[tuple[str, str, _Key]], list[str]]:
        """Sub-folders of ``folder`` (at ``depth``) as (name, path, key), and its other entries."""
        folders, files = [], []
        for entry, st in self.entries(folder):
            if stat.S_ISDIR(st.st_mode):
                key = _key(st)
                why = self.folder_reason(key, frozenset({self.root_key}), depth)
                if why:
                    self.skip(entry.path, why)
                else:
                    folders.append((entry.name, entry.path, key))
            else:
                files.append(entry.path)
        return folders, files

    def images(self, top: str, ancestors: frozenset[_Key], depth: int) -> list[str]:
        """Image files under ``top`` (at ``depth``), recursive, sorted, links followed.

        ``ancestors`` holds the identities of ``top`` and the folders above it (root,
        split): a link back to one of them is a loop.
        """
        found: list[str] = []
        # Iterative so that a very deep tree cannot hit Python's recursion limit.
        stack: list[tuple[str, frozenset[_Key], int]] = [(top, ancestors, depth)]
        while stack:
            folder, ancestors, depth = stack.pop()
            subfolders: list[tuple[str, frozenset[_Key], int]] = []
            for entry, st in self.entries(folder):
                if stat.S_ISDIR(st.st_mode):
                    key = _key(st)
                    why = self.folder_reason(key, ancestors, depth + 1)
                    if why:
                        self.skip(entry.path, why)
                    else:
                        subfolders.append((entry.path, ancestors | {key}, depth + 1))
                    continue
                self.n_files += 1
                self.extensions[_extension(entry.name) or "(no extension)"] += 1
                why = _image_reason(entry.path, entry.name, st)
                if why:
                    self.skip(entry.path, why)
                    if not self.n_images and self.n_files >= self.no_image_limit:
                        self._give_up()
                else:
                    found.append(entry.path)
                    self.n_images += 1
            stack.extend(reversed(subfolders))  # pop order = sorted order
        return found

    def _give_up(self) -> None:
        common = self.extensions.most_common()
        kinds = ", ".join(f"{n:,} {display_name(ext)}" for ext, n in common[:5])
        if len(common) > 5:
            kinds += f", {len(common) - 5} other kinds"
        example = self.skipped[-1]  # the file that reached the limit
        raise DatasetError(
            f"data folder {self.shown} has no usable image among the first {self.n_files:,} files "
            f"walked ({kinds}; e.g. {quoted(example.path)}: {display_name(example.reason)}): pass the "
            f"folder that holds the images ({', '.join(sorted(IMAGE_EXTENSIONS))}), one sub-folder per class"
        )


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


def _start(root: str | os.PathLike, **limits: int) -> tuple[str, str, _Walk]:
    """The root as given (text), its absolute path, and a fresh walk over it."""
    given = os.fspath(root)
    if isinstance(given, bytes):
        given = os.fsdecode(given)
    shown = quoted(given)
    root_st = _check_root(given, shown)
    abs_root = os.path.abspath(given)
    return given, abs_root, _Walk(abs_root, root_st, shown, **limits)


def find_images(
    root: str | os.PathLike,
    *,
    max_depth: int = MAX_DEPTH,
    max_entries: int = MAX_ENTRIES,
    no_image_limit: int = NO_IMAGE_LIMIT,
) -> tuple[list[str], list[Skipped]]:
    """Every usable image file under ``root`` whatever the layout (no classes needed).

    The same listing checks and bounds as :func:`scan` (hidden, non-image, zero-byte,
    loops, depth, entries...).

    Raises:
        DatasetError: ``root`` is missing, not a folder, or holds no usable image.
    """
    given, abs_root, walk = _start(
        root, max_depth=max_depth, max_entries=max_entries, no_image_limit=no_image_limit
    )
    found = walk.images(abs_root, frozenset({walk.root_key}), 0)
    if not found:
        raise DatasetError(f"no usable image in {walk.shown}: add .jpg/.png files to it")
    return found, walk.skipped


def scan(
    root: str | os.PathLike,
    *,
    max_depth: int = MAX_DEPTH,
    max_entries: int = MAX_ENTRIES,
    no_image_limit: int = NO_IMAGE_LIMIT,
) -> Dataset:
    """List the images of a data folder, without decoding any of them.

    One ``os.scandir`` per folder and one ``stat`` per file, so 100k files list in
    about a second. Problems with single files never raise: they end up in
    :attr:`Dataset.skipped`. Classes are the sorted names of the class folders that
    hold at least one usable image; labels index that order. A class is its folder's
    raw name (bytes that are not valid in the file-system encoding included); use
    :func:`display_name` to show it.

    The layout is "split" when the root's sub-folders include ``train`` and at least
    one of ``val``/``valid``/``validation``/``test`` (case-insensitive); other
    sub-folders of such a root are skipped with a note. Otherwise it is "flat" and
    every sub-folder is a class.

    Symlinks to files and folders are followed, also out of the data folder (datasets
    often live on shared storage), within bounds that keep a link to ``/`` or to a
    huge tree harmless: loops and links to a folder holding the data folder are not
    followed, a folder is walked once however many links reach it, and the walk
    stops at ``max_depth`` levels and ``max_entries`` entries. Each of these leaves
    a :class:`Skipped` record that says so.

    Args:
        root: The data folder.
        max_depth: Deepest folder level walked below ``root`` (class folders are
            level 1, or 2 under a split folder).
        max_entries: Most directory entries read in all.
        no_image_limit: Files inside class folders after which a walk that has not
            found one usable image stops with a :class:`DatasetError`.

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
    given, abs_root, walk = _start(
        root, max_depth=max_depth, max_entries=max_entries, no_image_limit=no_image_limit
    )
    shown = walk.shown
    top, top_files = walk.subfolders(abs_root, 1)
    top_names = {name.lower() for name, _, _ in top}
    is_split = "train" in top_names and bool(top_names & {"val", "valid", "validation", "test"})

    # (split, class name, class folder, keys of it and the folders above it, depth);
    # several splits may hold one class.
    folders: list[tuple[str, str, str, frozenset[_Key], int]] = []
    if is_split:
        for p in top_files:
            walk.skip(p, "not inside a split folder")
        seen_split: dict[str, str] = {}
        for name, path, key in top:
            split = _SPLIT_ALIASES.get(name.lower())
            if split is None:
                walk.skip(path, "not a split folder (expected train/val/test)")
                walk.visited.discard(key)  # not walked, so a link into it elsewhere is still fine
                continue
            if split in seen_split:
                raise DatasetError(
                    f"data folder {shown} has two folders for the {split} split "
                    f"({quoted(seen_split[split])} and {quoted(name)}): merge or rename one of them"
                )
            seen_split[split] = name
            class_dirs, stray = walk.subfolders(path, 2)
            for p in stray:
                walk.skip(p, "not inside a class folder")
            folders.extend(
                (split, cname, cpath, frozenset({walk.root_key, key, ckey}), 2)
                for cname, cpath, ckey in class_dirs
            )
    else:
        for p in top_files:
            walk.skip(p, "not inside a class folder")
        folders.extend(
            ("all", cname, cpath, frozenset({walk.root_key, ckey}), 1) for cname, cpath, ckey in top
        )

    if not folders:
        found = f" (found {len(top_files)} file(s) directly in it)" if top_files else ""
        example = os.path.join(given, "train" if is_split else "", "cat", "001.jpg")
        raise DatasetError(
            f"data folder {shown} has no class folders{found}: put each class's images "
            f"in its own sub-folder, e.g. {quoted(example)}"
        )

    found_files: list[tuple[str, str, str]] = []  # (split, class, path)
    all_class_names: set[str] = set()
    for split, cname, cpath, ancestors, depth in folders:
        all_class_names.add(cname)
        for path in walk.images(cpath, ancestors, depth):
            found_files.append((split, cname, path))

    skipped = walk.skipped
    classes = tuple(sorted({cname for _, cname, _ in found_files}))
    empty = tuple(sorted(all_class_names - set(classes)))
    if not found_files:
        hint = ""
        if skipped:
            first = skipped[0]
            hint = f" ({len(skipped)} file(s) skipped, e.g. {quoted(first.path)}: {display_name(first.reason)})"
        raise DatasetError(
            f"data folder {shown} has no usable images{hint}: add image files "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}) inside the class folders"
        )
    if len(classes) < 2:
        raise DatasetError(
            f"data folder {shown} has images for only {len(classes)} class ({quoted(classes[0])}): "
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

