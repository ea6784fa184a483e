"""Decoded images on disk, memory-mapped: each image is decoded once, then read at memory speed.

Training reads every image once per epoch. Decoding a JPEG costs milliseconds; copying the
decoded pixels out of the page cache costs microseconds. :func:`open_image_cache` decodes the
images of a dataset once, resized so that the shorter side is the weights' resize size (the
same resize the eval transform does before its centre crop), and writes them into one file per
(dataset fingerprint, stored size, interpolation) under ``<cache root>/images/``. Every later
call, in this process or another, maps that file: the pixels live once in the operating
system's page cache, however many processes or DataLoader workers read them.

Guarantees:

- Each image is decoded once. Asking later for images the file lacks (the profiler's sample
  first, the bench's full train + val next) writes a new file that copies the old bytes and
  decodes only the new images; a source file whose size or modification time changed is
  decoded again.
- Two processes asking at once do not both decode: a :class:`filelock.FileLock` on
  ``<file>.lock`` makes the second wait, then read.
- A file is written to a temporary name in the same folder, fsync-ed, then renamed: a reader
  sees the old file or the new one, never half of one. A corrupt, truncated, foreign or
  outdated file is rebuilt with a one-line notice on stderr.
- A cache folder that cannot be written, or a full disk, never stops a run:
  :func:`open_image_cache` prints one line and returns ``None``, and the caller streams the
  images from their files instead.

File format (version 1, little-endian)::

    offset 0   header, 64 bytes: struct "<8sIIQQ32s"
                 magic          b"ADVIMGC\\0"
                 version        u32 (FORMAT_VERSION)
                 header size    u32 (64)
                 index offset   u64
                 index length   u64
                 index sha256   32 bytes
    offset 64  pixels: each image as uint8 RGB, height x width x 3 (row-major, channels last),
               back to back in index order
    index      UTF-8 JSON: the key (fingerprint, size, interpolation) and, per image, path,
               label, offset, height, width, CRC-32 of its bytes, and the size and mtime of
               its source file; per file that failed to decode, path, reason and the same
               source size and mtime. The index ends the file.

Pixels are stored channels last: torch's uint8 antialiased resize on the CPU, which the random
resized crop uses, runs about twice as fast on such an input (``benchmarks/loader_speed.py``:
3,000 crops/s from cache views against 1,400 from the in-memory store's CHW tensors, one
thread).

Example:
    >>> cache = open_image_cache(dataset.samples, fingerprint=dataset.fingerprint(),
    ...                          size=256, interpolation="bilinear")      # doctest: +SKIP
    >>> cache.image(dataset.samples[0].path).shape                      # doctest: +SKIP
    torch.Size([3, 256, 341])
    >>> cache.to_dict()                                                 # doctest: +SKIP
    {'path': '/home/me/.cache/advisor/images/3fa9...-256-bilinear.u8img', 'built': 0, 'reused': 120}
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import mmap
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from PIL import Image
from torchvision import transforms as T

from advisor import __version__
from advisor.data import Sample, Skipped
from advisor.loading import ImageFolder, collate_skipping
from advisor.utils import CACHE_ENV, cache_root, default_permissions, human_bytes, progress_bar, shown

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "CacheEntry",
    "ImageCache",
    "StoredImage",
    "cache_info",
    "clear_cache",
    "open_image_cache",
    "summarize_use",
    "tally_use",
]

#: Version of the file layout; a file in another version is rebuilt.
FORMAT_VERSION = 1

_MAGIC = b"ADVIMGC\0"
_HEADER = struct.Struct("<8sIIQQ32s")
_SUFFIX = ".u8img"
_NO_STAT = (-1, -1)


def _folder(cache_dir: str | os.PathLike | None) -> Path | None:
    if cache_dir is None:
        return cache_root() / "images"
    return Path(cache_dir) if os.fspath(cache_dir) else None


def _source_stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return _NO_STAT  # a vanished file: never equal to a recorded stat, so it is decoded (and fails) again
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class _Key:
    fingerprint: str
    size: int
    interpolation: str

    @property
    def filename(self) -> str:
        digest = hashlib.sha256(self.fingerprint.encode()).hexdigest()[:16]
        return f"{digest}-{self.size}-{self.interpolation}{_SUFFIX}"


class _Invalid(Exception):
    """The file cannot be served; ``str(err)`` completes "image cache <file> is ..."."""


# --------------------------------------------------------------------------- reading


class ImageCache:
    """Decoded images of one cache file, memory-mapped; returned by :func:`open_image_cache`.

    Images are numbered in file order: :meth:`index_of` maps a path to its number. Every image
    is a ``torch.uint8`` tensor of shape ``(3, height, width)``, a view of the mapped file (no
    copy) with channels-last strides; its shorter side is :attr:`size`. The mapping is private
    (copy on write): writing into a returned tensor changes this process's copy, never the
    file. Pickling (DataLoader workers under ``spawn``) sends the index, not the pixels; the
    worker maps the file again.

    Attributes:
        path: The cache file.
        fingerprint: Dataset fingerprint it was built for.
        size: Shorter side of every stored image.
        interpolation: Resize interpolation (``"bilinear"``, ``"bicubic"``...).
        built: Images this call decoded (failures included).
        reused: Images this call read from an existing file.
        failures: The samples asked for that could not be decoded, with the reason.
    """

    def __init__(self, path: Path, key: _Key, index: dict[str, Any], digest: bytes, file_size: int) -> None:
        self.path = path
        self.fingerprint, self.size, self.interpolation = key.fingerprint, key.size, key.interpolation
        images = index["images"]
        self._paths: list[str] = list(images["path"])
        self._labels = np.asarray(images["label"], dtype=np.int64)
        self._offsets = np.asarray(images["offset"], dtype=np.int64)
        self._shapes = np.stack([np.asarray(images["height"], dtype=np.int64),
                                 np.asarray(images["width"], dtype=np.int64)], axis=1).reshape(-1, 2)
        self._crc = np.asarray(images["crc32"], dtype=np.int64)
        self._stats = np.stack([np.asarray(images["source_size"], dtype=np.int64),
                                np.asarray(images["source_mtime_ns"], dtype=np.int64)], axis=1).reshape(-1, 2)
        failed = index["failures"]
        self._failed: dict[str, tuple[str, tuple[int, int]]] = {
            p: (r, (int(s), int(m)))
            for p, r, s, m in zip(failed["path"], failed["reason"], failed["source_size"], failed["source_mtime_ns"])
        }
        self._pos = {p: i for i, p in enumerate(self._paths)}
        self._digest = digest
        self._file_size = file_size
        self._flat: torch.Tensor | None = None
        self.built = 0
        self.reused = 0
        self.failures: list[Skipped] = []

    # ------------------------------------------------------------------ opening

    @classmethod
    def _open(cls, path: Path, key: _Key) -> ImageCache:
        """Read and check the header and index, then map the file; :class:`_Invalid` if unusable."""
        with open(path, "rb") as fh:
            length = os.fstat(fh.fileno()).st_size
            index, digest, data_end = _read_index(fh, length)
            try:
                k = index["key"]
                found = _Key(str(k["fingerprint"]), int(k["size"]), str(k["interpolation"]))
                cache = cls(path, key, index, digest, length) if found == key else None
            except (KeyError, TypeError, ValueError):
                raise _Invalid("corrupt (its index cannot be parsed)") from None
            if cache is None:
                raise _Invalid(f"foreign (built for fingerprint {found.fingerprint[:12]}..., size {found.size}, "
                               f"{found.interpolation})")
            cache._check_layout(data_end)
            cache._map(fh, length)
        return cache

    def _check_layout(self, data_end: int) -> None:
        n = len(self._paths)
        columns = (self._labels, self._offsets, self._crc, self._stats)
        if any(len(c) != n for c in columns) or len(self._shapes) != n or len(self._pos) != n:
            raise _Invalid("corrupt (its index columns disagree)")
        if n == 0:
            return
        h, w = self._shapes[:, 0], self._shapes[:, 1]
        if (h <= 0).any() or (w <= 0).any() or (np.minimum(h, w) != self.size).any():
            raise _Invalid(f"corrupt (an image's shorter side is not {self.size})")
        ends = self._offsets + h * w * 3
        if self._offsets[0] < _HEADER.size or ends[-1] > data_end or (self._offsets[1:] < ends[:-1]).any():
            raise _Invalid("corrupt (image offsets do not fit the file)")

    def _map(self, fh: Any, length: int) -> None:
        # ACCESS_COPY (MAP_PRIVATE): pages come from the shared page cache and stay shared until
        # written, and a write only ever touches this process's copy. It also makes the buffer
        # writable, which torch.frombuffer needs to avoid its read-only warning.
        mm = mmap.mmap(fh.fileno(), length, access=mmap.ACCESS_COPY)
        self._flat = torch.frombuffer(mm, dtype=torch.uint8)

    def _buffer(self) -> torch.Tensor:
        if self._flat is None:
            self._reattach()
        assert self._flat is not None
        return self._flat

    def _reattach(self) -> None:
        """Map the file again after unpickling; it may have been replaced by a larger one since."""
        try:
            with open(self.path, "rb") as fh:
                length = os.fstat(fh.fileno()).st_size
                head = fh.read(_HEADER.size)
                same = len(head) == _HEADER.size and _HEADER.unpack(head)[5] == self._digest
                if not same:
                    index, digest, _data_end = _read_index(fh, length)
                    other = ImageCache(self.path, _Key(self.fingerprint, self.size, self.interpolation),
                                       index, digest, length)
                    if not self._records_match(other):
                        raise _Invalid("rebuilt since it was opened: open it again with open_image_cache")
                self._map(fh, length)
        except (OSError, _Invalid) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise RuntimeError(f"image cache {shown(self.path)} cannot be read: {reason}") from None

    def _records_match(self, other: ImageCache) -> bool:
        """Whether every image of ``self`` sits at the same place, with the same bytes, in ``other``."""
        idx = [other._pos.get(p, -1) for p in self._paths]
        if -1 in idx:
            return False
        return (np.array_equal(other._offsets[idx], self._offsets) and np.array_equal(other._shapes[idx], self._shapes)
                and np.array_equal(other._crc[idx], self._crc))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_flat"] = None  # the mapping is per process; pickling it would copy every pixel
        return state

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, path: object) -> bool:
        return path in self._pos

    def __repr__(self) -> str:
        return (f"ImageCache({shown(self.path)}, images={len(self)}, size={self.size}, "
                f"built={self.built}, reused={self.reused})")

    @property
    def paths(self) -> list[str]:
        """Path of each stored image, in file order."""
        return list(self._paths)

    @property
    def shapes(self) -> np.ndarray:
        """``(len(self), 2)`` int64 array (read-only): height and width of each stored image."""
        view = self._shapes.view()
        view.flags.writeable = False
        return view

    @property
    def nbytes(self) -> int:
        """Size of the cache file."""
        return self._file_size

    def index_of(self, path: str) -> int:
        """Number of the image decoded from ``path``.

        Raises:
            KeyError: ``path`` is not stored (with the decode error when it failed).
        """
        try:
            return self._pos[path]
        except KeyError:
            failed = self._failed.get(path)
            why = f"it could not be decoded ({failed[0]})" if failed else "it is not in this cache"
            raise KeyError(f"no image for {shown(path)} in {shown(self.path)}: {why}") from None

    def image(self, key: int | str) -> torch.Tensor:
        """One image, ``(3, height, width)`` uint8: a view of the mapped file, no copy.

        Args:
            key: Its number (see :meth:`index_of`) or its path.
        """
        i = self.index_of(key) if isinstance(key, str) else int(key)
        if not 0 <= i < len(self._paths):
            raise IndexError(f"image {i} out of range: {shown(self.path)} holds {len(self._paths)}")
        h, w = (int(v) for v in self._shapes[i])
        start = int(self._offsets[i])
        return self._buffer()[start:start + h * w * 3].view(h, w, 3).permute(2, 0, 1)

    def images(self, indices: Iterable[int]) -> list[torch.Tensor]:
        """:meth:`image` for each index: views of the mapped file, no copy."""
        return [self.image(int(i)) for i in indices]

    def batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor, *, out: torch.Tensor | None = None,
              pin_memory: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The images copied into one zero-padded batch.

        The batch is as large as the largest image in it: for images of very different aspect
        ratios, crop them first (:func:`advisor.augment.random_resized_crop` works on the views
        of :meth:`images` and copies only the crops).

        Args:
            indices: Image numbers.
            out: A contiguous uint8 CPU tensor to hold the batch (it must have at least
                ``N * H * W * 3`` elements), reused from call to call: a fresh batch of tens of
                megabytes costs a page fault per 4 KB page, which can take longer than the copy
                itself. The result is a view of it.
            pin_memory: Allocate the batch in pinned memory (faster, asynchronous copy to CUDA);
                ignored with ``out``.

        Returns:
            ``(images, shapes)``: uint8 ``(N, 3, H, W)`` (channels-last strides) with image ``k``
            in ``images[k, :, :h, :w]``, and int64 ``(N, 2)`` holding each ``(h, w)``.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        shapes = self._shapes[idx]
        height, width = (int(v) for v in shapes.max(0)) if len(idx) else (0, 0)
        size = (len(idx), height, width, 3)
        if out is None:
            batch = torch.empty(size, dtype=torch.uint8, pin_memory=pin_memory)
        else:
            need = int(np.prod(size))
            if out.dtype != torch.uint8 or out.device.type != "cpu" or not out.is_contiguous() or out.numel() < need:
                raise ValueError(f"out must be a contiguous uint8 CPU tensor of at least {need} elements")
            batch = out.reshape(-1)[:need].view(size)
        flat = self._buffer()
        for k, i in enumerate(idx.tolist()):
            h, w = (int(v) for v in shapes[k])
            start = int(self._offsets[i])
            batch[k, :h, :w] = flat[start:start + h * w * 3].view(h, w, 3)
            if h < height:
                batch[k, h:] = 0
            if w < width:
                batch[k, :h, w:] = 0
        return batch.permute(0, 3, 1, 2), torch.from_numpy(shapes)

    def verify(self) -> list[str]:
        """Paths of the stored images whose bytes no longer match their CRC-32 (reads every byte)."""
        flat = self._buffer()
        bad = []
        for i, path in enumerate(self._paths):
            h, w = self._shapes[i]
            start = int(self._offsets[i])
            if zlib.crc32(flat[start:start + int(h * w * 3)].numpy()) != self._crc[i]:
                bad.append(path)
        return bad

    def to_dict(self) -> dict[str, Any]:
        """What a report shows: ``{"path", "built", "reused"}``."""
        return {"path": str(self.path), "built": self.built, "reused": self.reused}

    # ------------------------------------------------------------------ bookkeeping

    def _stale_or_missing(self, wanted: Sequence[Sample]) -> tuple[list[Sample], int]:
        """Samples to decode: not in the file, or whose source file changed since; and how many changed."""
        todo, changed = [], 0
        for s in wanted:
            i = self._pos.get(s.path)
            if i is not None:
                recorded = (int(self._stats[i, 0]), int(self._stats[i, 1]))
            elif s.path in self._failed:
                recorded = self._failed[s.path][1]
            else:
                todo.append(s)
                continue
            if _source_stat(s.path) != recorded:
                todo.append(s)
                changed += 1
        return todo, changed

    def _failures_among(self, wanted: Sequence[Sample]) -> list[Skipped]:
        return [Skipped(s.path, self._failed[s.path][0]) for s in wanted if s.path in self._failed]


def _read_index(fh: Any, length: int) -> tuple[dict[str, Any], bytes, int]:
    """Header checks, then the index checked against its sha256; :class:`_Invalid` otherwise.

    Returns:
        ``(index, its sha256, its offset)``: the pixels end where the index starts.
    """
    fh.seek(0)
    head = fh.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise _Invalid("truncated (shorter than its header)")
    magic, version, header_size, index_offset, index_length, digest = _HEADER.unpack(head)
    if magic != _MAGIC:
        raise _Invalid("not an advisor image cache (wrong magic bytes)")
    if version != FORMAT_VERSION:
        raise _Invalid(f"outdated (format version {version}; this advisor reads version {FORMAT_VERSION})")
    if header_size != _HEADER.size or index_offset < _HEADER.size or index_offset + index_length != length:
        raise _Invalid("truncated or damaged (its length does not match its header)")
    fh.seek(index_offset)
    raw = fh.read(index_length)
    if hashlib.sha256(raw).digest() != digest:
        raise _Invalid("corrupt (its index checksum does not match)")
    try:
        index = json.loads(raw)
        if index["format"] != FORMAT_VERSION:
            raise _Invalid("corrupt (its index and header disagree on the version)")
        index["key"]["fingerprint"], index["images"]["path"], index["failures"]["path"]  # noqa: B018
    except (ValueError, KeyError, TypeError):
        raise _Invalid("corrupt (its index cannot be parsed)") from None
    return index, digest, index_offset


# --------------------------------------------------------------------------- writing


class StoredImage:
    """A decoded image -> what the cache stores (uint8 HWC, shorter side ``size``).

    Also what streaming decodes when there is no cache, so both give the same pixels. A class,
    so that it pickles under the ``spawn`` start method.
    """

    def __init__(self, size: int, interpolation: str) -> None:
        self.size = size
        self.interpolation = interpolation

    def __call__(self, image: Image.Image) -> np.ndarray:
        # The eval transform's own resize (shorter side -> size, antialiased), so that a centre
        # crop of a stored image equals the eval transform's output.
        resize = T.Resize(self.size, interpolation=T.InterpolationMode(self.interpolation), antialias=True)
        return np.asarray(resize(image))


def _write(fh: Any, data: Any) -> None:
    """Every write of a cache file goes through here (one place to simulate a full disk in tests)."""
    fh.write(data)


def _default_workers(todo: int) -> int:
    if todo < 64:
        return 0  # starting workers costs more than decoding a handful of images
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    # The main process only writes, so every core can decode.
    return 0 if cores < 2 else min(8, cores)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open a folder; its rename is durable enough
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_leftovers(folder: Path, name: str) -> None:
    """Temporary files of ``name`` left by a writer that was killed (called under the lock)."""
    for tmp in folder.glob(f".{name}.*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass


def _build(file: Path, key: _Key, old: ImageCache | None, todo: Sequence[Sample], *, num_workers: int | None,
           progress: bool) -> ImageCache | None:
    """Write old images (bytes copied) + ``todo`` (decoded) to a new file; ``None`` after a notice."""
    folder = file.parent
    redo = {s.path for s in todo}
    kept: list[int] = []
    if old is not None:
        # Old images that are not asked for again are kept, unless their source file is gone
        # or changed: the file only grows with images that can still be asked for.
        kept = [i for i, p in enumerate(old._paths)
                if p not in redo and _source_stat(p) == (int(old._stats[i, 0]), int(old._stats[i, 1]))]
    kept_bytes = int(sum(int(old._shapes[i].prod()) * 3 for i in kept)) if old is not None else 0
    need = kept_bytes + len(todo) * 3 * key.size * key.size  # a lower bound: the shorter side is key.size
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < need:
        log.warning(f"no space for the image cache in {shown(folder)} (at least {human_bytes(need)} needed, "
                     f"{human_bytes(free)} free): free some space or set {CACHE_ENV} to a folder on a larger disk; "
                     "reading images from their files instead")
        return None

    _remove_leftovers(folder, file.name)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{file.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    default_permissions(tmp)
    images: dict[str, list] = {k: [] for k in
                               ("path", "label", "offset", "height", "width", "crc32", "source_size", "source_mtime_ns")}
    failures: dict[str, list] = {k: [] for k in ("path", "reason", "source_size", "source_mtime_ns")}
    try:
        with os.fdopen(fd, "wb") as fh:
            _write(fh, bytes(_HEADER.size))
            pos = _HEADER.size
            if old is not None:
                flat = old._buffer().numpy()
                for i in kept:
                    h, w = (int(v) for v in old._shapes[i])
                    start, n = int(old._offsets[i]), h * w * 3
                    _write(fh, memoryview(flat[start:start + n]))
                    _add(images, old._paths[i], int(old._labels[i]), pos, h, w, int(old._crc[i]),
                         (int(old._stats[i, 0]), int(old._stats[i, 1])))
                    pos += n
                for p, (reason, stat) in old._failed.items():
                    if p not in redo:
                        _add_failure(failures, p, reason, stat)
            pos = _decode_into(fh, pos, todo, key, images, failures, num_workers=num_workers, progress=progress)
            index = json.dumps({
                "format": FORMAT_VERSION,
                "key": asdict(key),
                "layout": "uint8 RGB, height x width x 3, shorter side = size",
                "images": images,
                "failures": failures,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "advisor": __version__,
            }, separators=(",", ":")).encode()
            _write(fh, index)
            fh.seek(0)
            _write(fh, _HEADER.pack(_MAGIC, FORMAT_VERSION, _HEADER.size, pos, len(index),
                                    hashlib.sha256(index).digest()))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, file)
        _fsync_dir(folder)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            log.warning(f"disk full while writing the image cache in {shown(folder)}: free some space or set "
                         f"{CACHE_ENV} to a folder on a larger disk; reading images from their files instead")
        else:
            log.warning(f"cannot write the image cache {shown(file)} ({err.strerror or err}); "
                         "reading images from their files instead")
        return None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        return ImageCache._open(file, key)
    except (OSError, _Invalid) as err:  # only if something replaced it under our lock
        log.warning(f"image cache {shown(file)} unreadable right after writing ({err}); "
                     "reading images from their files instead")
        return None


def _add(images: dict[str, list], path: str, label: int, offset: int, h: int, w: int, crc: int,
         stat: tuple[int, int]) -> None:
    for k, v in zip(images, (path, label, offset, h, w, crc, stat[0], stat[1])):
        images[k].append(v)


def _add_failure(failures: dict[str, list], path: str, reason: str, stat: tuple[int, int]) -> None:
    for k, v in zip(failures, (path, reason, stat[0], stat[1])):
        failures[k].append(v)


def _decode_into(fh: Any, pos: int, todo: Sequence[Sample], key: _Key, images: dict[str, list],
                 failures: dict[str, list], *, num_workers: int | None, progress: bool) -> int:
    """Decode ``todo`` in parallel and append the pixels to ``fh``; returns the new end offset."""
    if not todo:
        return pos
    # Stat before decoding: a file that changes meanwhile then looks changed at the next open.
    stats = [_source_stat(s.path) for s in todo]
    workers = _default_workers(len(todo)) if num_workers is None else num_workers
    folder = ImageFolder(todo, StoredImage(key.size, key.interpolation), draft_size=(key.size, key.size))
    # Its own generator: a loader without one draws from the global stream, and whether a run
    # builds the cache or finds it must not change the run's random numbers.
    generator = torch.Generator()
    generator.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        folder, batch_size=8, num_workers=workers, collate_fn=collate_skipping, generator=generator,
        prefetch_factor=4 if workers > 0 else None,
    )
    bar = progress_bar(len(todo), "image cache", unit="img", enabled=progress)
    try:
        for arrays, labels, indices, failed in loader:
            for f in failed:
                _add_failure(failures, f.path, f.reason, stats[f.index])
            for array, label, i in zip(arrays, labels.tolist(), indices.tolist()):
                array = np.ascontiguousarray(array)
                h, w = array.shape[:2]
                _write(fh, memoryview(array).cast("B"))
                _add(images, todo[i].path, label, pos, h, w, zlib.crc32(array), stats[i])
                pos += array.nbytes
            if bar is not None:
                bar.update(len(indices) + len(failed))
    finally:
        if bar is not None:
            bar.close()
    return pos


# --------------------------------------------------------------------------- entry point


def open_image_cache(
    samples: Sequence[Sample],
    *,
    fingerprint: str,
    size: int,
    interpolation: str = "bilinear",
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
    progress: bool = False,
) -> ImageCache | None:
    """The decoded images of ``samples``, from the cache file, decoding only what it lacks.

    Images are decoded with :func:`advisor.data.load_image` (JPEG draft mode) and resized with
    torchvision's ``Resize(size, interpolation, antialias=True)``: pass the weights'
    ``Preprocessing.resize_size`` and ``interpolation`` and a centre crop of a stored image is
    the eval transform's output. A file that fails to decode is reported in ``failures``, never
    raised. Missing images are decoded in parallel by DataLoader workers, written to a new file
    together with the old images' bytes, and the file is replaced atomically.

    Args:
        samples: Images wanted (``Dataset.samples`` or a split of them).
        fingerprint: ``Dataset.fingerprint()``: one file per fingerprint, size and interpolation.
        size: Shorter side of the stored images.
        interpolation: torchvision interpolation name of the resize.
        cache_dir: Folder of the image caches; ``None`` for ``the cache root's ``images/````,
            ``""`` to disable (returns ``None``).
        num_workers: Decoding processes; ``None`` for one per core (up to 8), 0 decodes in this
            process.
        progress: Show a progress bar on stderr while decoding.

    Returns:
        The :class:`ImageCache`, or ``None`` when no file can be used (unwritable folder, full
        disk: a one-line notice says which): stream the images from their files instead.

    Raises:
        ValueError: An unknown ``interpolation`` or a ``size`` below 1.

    Example:
        >>> cache = open_image_cache(train + val, fingerprint=ds.fingerprint(), size=256,
        ...                          interpolation="bilinear")        # doctest: +SKIP
        >>> ok = [s for s in train if s.path in cache]                # doctest: +SKIP
        >>> images = cache.images(cache.index_of(s.path) for s in ok[:64])  # doctest: +SKIP
    """
    T.InterpolationMode(interpolation)  # ValueError naming the valid modes
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    folder = _folder(cache_dir)
    if folder is None:
        return None
    key = _Key(str(fingerprint), int(size), str(interpolation))
    file = folder / key.filename
    wanted = list({s.path: s for s in samples}.values())

    # Fast path, without the lock: the file is only ever replaced whole.
    cache, _problem = _try_open(file, key)
    if cache is not None:
        todo, _changed = cache._stale_or_missing(wanted)
        if not todo:
            return _finish(cache, wanted, built=0)

    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{file}.lock")
        try:
            lock.acquire(timeout=0.1)
        except Timeout:
            log.info(f"waiting for another process to finish the image cache {shown(file)}")
            lock.acquire()
    except OSError as err:
        log.warning(f"cannot write image caches in {shown(folder)} ({err.strerror or err}); reading images "
                     f"from their files instead (set {CACHE_ENV} to a writable folder to cache them)")
        return None
    try:
        # Again under the lock: another process may have written the file meanwhile.
        cache, problem = _try_open(file, key)
        if cache is None:
            if problem:
                log.warning(f"image cache {shown(file)} is {problem}; rebuilding it")
            todo = wanted
        else:
            todo, changed = cache._stale_or_missing(wanted)
            if not todo:
                return _finish(cache, wanted, built=0)
            if changed:
                log.warning(f"image cache {shown(file)}: {changed} source image(s) changed since they were "
                             "cached; decoding them again")
        fresh = _build(file, key, cache, todo, num_workers=num_workers, progress=progress)
        return None if fresh is None else _finish(fresh, wanted, built=len(todo))
    finally:
        lock.release()


def tally_use(use: dict[str, dict[str, int]], info: dict[str, Any] | None) -> None:
    """Add one open's ``{path, built, reused}`` (:meth:`ImageCache.to_dict`) to a per-file tally.

    Per file, ``built`` adds up over opens and ``wanted`` is the most images one open asked for:
    what the command read without decoding is ``wanted - built`` (later opens of the same file
    read images the command itself decoded earlier).
    """
    if not info:
        return
    entry = use.setdefault(str(info["path"]), {"built": 0, "wanted": 0})
    entry["built"] += int(info["built"])
    entry["wanted"] = max(entry["wanted"], int(info["built"]) + int(info["reused"]))


def summarize_use(use: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The ``image_cache`` block of a command's JSON: ``{path, paths, built, reused}``.

    ``built``: images the command decoded into a cache; ``reused``: images it read from one
    without decoding them. ``path`` is the first file (``paths`` lists every one).

    Example:
        >>> use = {}
        >>> tally_use(use, {"path": "/c/a.u8img", "built": 10, "reused": 0})
        >>> tally_use(use, {"path": "/c/a.u8img", "built": 0, "reused": 10})
        >>> summarize_use(use)
        {'path': '/c/a.u8img', 'paths': ['/c/a.u8img'], 'built': 10, 'reused': 0}
    """
    paths = list(use)
    return {"path": paths[0] if paths else None, "paths": paths,
            "built": sum(u["built"] for u in use.values()),
            "reused": sum(max(0, u["wanted"] - u["built"]) for u in use.values())}


def _try_open(file: Path, key: _Key) -> tuple[ImageCache | None, str | None]:
    try:
        return ImageCache._open(file, key), None
    except FileNotFoundError:
        return None, None
    except _Invalid as err:
        return None, str(err)
    except (OSError, ValueError) as err:  # unreadable, or too short to map
        return None, f"unreadable ({getattr(err, 'strerror', None) or err})"


def _finish(cache: ImageCache, wanted: Sequence[Sample], *, built: int) -> ImageCache:
    cache.built = built
    cache.reused = len(wanted) - built
    cache.failures = cache._failures_among(wanted)
    return cache


# --------------------------------------------------------------------------- maintenance


@dataclass(frozen=True)
class CacheEntry:
    """One file of the image cache folder, as :func:`cache_info` lists it.

    Attributes:
        path: The file.
        nbytes: Its size on disk.
        fingerprint: Dataset fingerprint it was built for (``None`` when unreadable).
        size: Shorter side of its images.
        interpolation: Resize interpolation of its images.
        images: Images it holds.
        failures: Files recorded as undecodable.
        created: When it was written (ISO 8601, UTC).
        problem: Why it would be rebuilt (``"corrupt (...)"``, ``"unfinished temporary file"``...),
            ``None`` for a usable file.
    """

    path: str
    nbytes: int
    fingerprint: str | None = None
    size: int | None = None
    interpolation: str | None = None
    images: int = 0
    failures: int = 0
    created: str | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _entry(path: Path) -> CacheEntry:
    try:
        with open(path, "rb") as fh:
            length = os.fstat(fh.fileno()).st_size
            index, _digest, _data_end = _read_index(fh, length)
    except FileNotFoundError:
        raise
    except (OSError, _Invalid) as err:
        size = path.stat().st_size if path.exists() else 0
        return CacheEntry(str(path), size, problem=str(err) if isinstance(err, _Invalid) else
                          f"unreadable ({err.strerror or err})")
    key = index["key"]
    return CacheEntry(str(path), length, fingerprint=key["fingerprint"], size=key["size"],
                      interpolation=key["interpolation"], images=len(index["images"]["path"]),
                      failures=len(index["failures"]["path"]), created=index.get("created"))


def cache_info(cache_dir: str | os.PathLike | None = None) -> list[CacheEntry]:
    """The image cache files in ``cache_dir`` (default: ``the cache root's ``images/````), by name.

    Temporary files left by an interrupted writer are listed too, with a ``problem``.

    Example:
        >>> for entry in cache_info():                                   # doctest: +SKIP
        ...     print(entry.path, entry.nbytes, entry.images, entry.problem)
    """
    folder = _folder(cache_dir)
    if folder is None or not folder.is_dir():
        return []
    entries = []
    for path in sorted(folder.iterdir()):
        try:
            if path.name.endswith(_SUFFIX):
                entries.append(_entry(path))
            elif path.name.startswith(".") and path.name.endswith(".tmp") and _SUFFIX in path.name:
                entries.append(CacheEntry(str(path), path.stat().st_size, problem="unfinished temporary file"))
        except FileNotFoundError:
            continue  # removed by another process while listing
    return entries


def clear_cache(cache_dir: str | os.PathLike | None = None) -> list[CacheEntry]:
    """Delete the image cache files in ``cache_dir`` (default: ``the cache root's ``images/````).

    A file that another process is writing right now is left alone (with a notice). Processes
    that have a file mapped keep reading it: its space is freed when they close it.

    Returns:
        The entries removed (their ``nbytes`` add up to the space freed).
    """
    removed = []
    for entry in cache_info(cache_dir):
        path = Path(entry.path)
        # A temporary file ".<name>.u8img.<random>.tmp" belongs to <name>.u8img, whose lock its
        # writer holds while alive: only a killed writer's file can be taken.
        owner = path.with_name(path.name[1:].split(_SUFFIX)[0] + _SUFFIX) if path.name.endswith(".tmp") else path
        try:
            busy = _locked_elsewhere(owner, path.unlink)
        except OSError as err:
            log.warning(f"cannot remove {shown(path)} ({err.strerror or err})")
            continue
        if busy:
            log.warning(f"image cache {shown(owner)} is being written by another process; left in place")
        else:
            removed.append(entry)
    folder = _folder(cache_dir)
    if folder is not None and folder.is_dir():
        for lock_file in folder.glob(f"*{_SUFFIX}.lock"):
            owner = lock_file.with_suffix("")
            if not owner.exists():
                # Under the lock itself, so that a writer holding it is never left without one.
                try:
                    _locked_elsewhere(owner, lock_file.unlink)
                except OSError:
                    pass  # a lock file left behind costs nothing
    return removed


def _locked_elsewhere(owner: Path, action: Any) -> bool:
    """Run ``action()`` holding ``owner``'s lock; ``True`` (and nothing done) if another process holds it."""
    lock = FileLock(f"{owner}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    try:
        action()
    except FileNotFoundError:
        pass
    finally:
        lock.release()
    return False
