"""The decoded-image cache: same pixels as the eval transform, decoded once, safe on disk."""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import advisor.imagecache as imagecache
from advisor.augment import center_crop
from advisor.backbones import Preprocessing
from advisor.data import Sample, load_image
from advisor.imagecache import cache_info, clear_cache, open_image_cache
from advisor.utils import cache_root as default_cache_root

SIZE = 64


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _photos(root: Path) -> list[Sample]:
    """Real photos (scikit-image's) as JPEG and PNG at several sizes, one elongated, one broken."""
    from skimage import data as skdata

    sources = {"cat": skdata.chelsea(), "coffee": skdata.coffee(), "astronaut": skdata.astronaut()}
    sizes = [(451, 300), (200, 290), (120, 90), (512, 96)]  # (width, height); the last one elongated
    samples = []
    for label, (name, array) in enumerate(sources.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for k, wh in enumerate(sizes):
            ext = "png" if k == 1 else "jpg"
            path = folder / f"{name}_{k}.{ext}"
            Image.fromarray(array).resize(wh, Image.Resampling.BICUBIC).save(path, quality=90)
            samples.append(Sample(str(path), label, "all"))
    broken = root / "cat" / "broken.jpg"
    broken.write_bytes((root / "cat" / "cat_0.jpg").read_bytes()[:300])
    samples.append(Sample(str(broken), 0, "all"))
    return samples


@pytest.fixture
def photos(tmp_path: Path) -> list[Sample]:
    return _photos(tmp_path / "data")


def _open(samples, cache_dir, **kwargs):
    kwargs.setdefault("num_workers", 0)
    return open_image_cache(samples, fingerprint="fp-1", size=SIZE, cache_dir=cache_dir, **kwargs)


def _expected(path: str, size: int = SIZE, interpolation: str = "bilinear") -> torch.Tensor:
    """Today's pipeline: draft decode, torchvision Resize of the shorter side, CHW uint8."""
    resize = T.Resize(size, interpolation=T.InterpolationMode(interpolation), antialias=True)
    return torch.from_numpy(np.array(resize(load_image(path, draft_size=(size, size))))).permute(2, 0, 1)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_stores_the_eval_resize_and_reports_failures(photos, tmp_path, caplog, interpolation):
    cache = open_image_cache(photos, fingerprint="fp-1", size=SIZE, interpolation=interpolation,
                             cache_dir=tmp_path / "c", num_workers=0)
    good = photos[:-1]
    assert (cache.built, cache.reused, len(cache)) == (len(photos), 0, len(good))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o666 & ~umask  # as open() makes it, not mkstemp's 0600
    assert [f.path for f in cache.failures] == [photos[-1].path]
    assert "truncated" in cache.failures[0].reason or "not a readable image" in cache.failures[0].reason
    for s in good:
        assert torch.equal(cache.image(s.path), _expected(s.path, interpolation=interpolation))
    # A centre crop of the stored images is the eval transform's output, exactly.
    prep = Preprocessing(image_size=56, resize_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation=interpolation)
    evaluated = torch.stack([prep.eval_transform(normalize=False)(load_image(s.path, draft_size=(SIZE, SIZE)))
                             for s in good])
    assert torch.equal(center_crop(cache.images(range(len(cache))), 56), evaluated)
    with pytest.raises(KeyError, match="could not be decoded"):
        cache.index_of(photos[-1].path)

    again = open_image_cache(photos, fingerprint="fp-1", size=SIZE, interpolation=interpolation,
                             cache_dir=tmp_path / "c", num_workers=0)
    assert (again.built, again.reused, again.path) == (0, len(photos), cache.path)
    assert [f.path for f in again.failures] == [photos[-1].path]  # reported again, not decoded again
    assert again.to_dict() == {"path": str(cache.path), "built": 0, "reused": len(photos)}
    assert caplog.messages == []


def test_new_samples_extend_the_file_and_old_ones_are_not_decoded_again(photos, tmp_path, monkeypatch):
    decoded = []
    original = imagecache.StoredImage.__call__
    monkeypatch.setattr(imagecache.StoredImage, "__call__", lambda self, im: decoded.append(1) or original(self, im))
    first = _open(photos[:5], tmp_path / "c")  # the profiler's sample
    old = {s.path: first.image(s.path).clone() for s in photos[:5]}
    both = _open(photos, tmp_path / "c")  # then the bench's train + val
    assert (both.built, both.reused) == (len(photos) - 5, 5)
    assert len(decoded) == len(photos) - 1  # every image once; the broken file has no pixels to resize
    assert both.path == first.path and len(both) == len(photos) - 1
    for path, pixels in old.items():
        assert torch.equal(both.image(path), pixels)
    # The old object still reads its own (replaced) file.
    assert torch.equal(first.image(photos[0].path), old[photos[0].path])


def test_two_openers_at_once_decode_each_image_once(photos, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="advisor")  # waiting is news, not a problem
    # Two threads, each with its own FileLock on its own file descriptor: the OS lock excludes
    # them exactly as it excludes two processes (benchmarks/loader_speed.py runs 4 processes).
    decode = imagecache.StoredImage.__call__
    monkeypatch.setattr(imagecache.StoredImage, "__call__", lambda self, im: time.sleep(0.03) or decode(self, im))
    start = threading.Barrier(2)
    reports = []

    def opener():
        start.wait()
        reports.append(_open(photos, tmp_path / "c").to_dict())

    threads = [threading.Thread(target=opener) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(r["built"] for r in reports) == len(photos)
    assert sorted(r["reused"] for r in reports) == [0, len(photos)]
    assert "waiting for another process" in caplog.text


def _rewrite_index(path: Path, edit) -> None:
    """Apply ``edit`` to the index and write it back with a valid checksum (a well-formed lie)."""
    import hashlib

    raw = bytearray(path.read_bytes())
    magic, version, hsize, off, length, _ = imagecache._HEADER.unpack(raw[:64])
    index = json.loads(raw[off:off + length])
    edit(index)
    new = json.dumps(index).encode()
    header = imagecache._HEADER.pack(magic, version, hsize, off, len(new), hashlib.sha256(new).digest())
    path.write_bytes(header + raw[64:off] + new)


def _damage(path: Path, how: str, other: Path) -> None:
    raw = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "index_byte":
        raw[-10] ^= 0xFF
        path.write_bytes(raw)
    elif how == "magic":
        raw[:8] = b"GARBAGE!"
        path.write_bytes(raw)
    elif how == "old_version":
        raw[8:12] = (99).to_bytes(4, "little")
        path.write_bytes(raw)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "foreign":
        path.write_bytes(other.read_bytes())
    elif how == "bad_offsets":
        _rewrite_index(path, lambda index: index["images"]["offset"].__setitem__(0, len(raw) * 2))
    elif how == "bad_shape":
        _rewrite_index(path, lambda index: index["images"]["height"].__setitem__(0, 7))


@pytest.mark.parametrize("how", ["truncated", "index_byte", "magic", "old_version", "empty", "foreign",
                                 "bad_offsets", "bad_shape"])
def test_damaged_file_is_rebuilt_with_a_one_line_notice(photos, tmp_path, caplog, how):
    some = photos[:4]
    cache = _open(some, tmp_path / "c")
    foreign = open_image_cache(some, fingerprint="fp-1", size=SIZE + 8, cache_dir=tmp_path / "other", num_workers=0)
    _damage(cache.path, how, foreign.path)
    caplog.clear()
    again = _open(some, tmp_path / "c")
    lines = caplog.messages
    assert len(lines) == 1 and str(cache.path) in lines[0] and "rebuilding" in lines[0], lines
    assert "Traceback" not in lines[0]
    assert (again.built, again.reused) == (len(some), 0)
    for s in some:
        assert torch.equal(again.image(s.path), _expected(s.path))


def test_changed_source_file_is_decoded_again(photos, tmp_path, caplog):
    cache = _open(photos[:4], tmp_path / "c")
    target = photos[0].path
    Image.open(target).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target, format="JPEG", quality=95)
    os.utime(target, ns=(1, 10**18))  # a different mtime even on a coarse clock
    again = _open(photos[:4], tmp_path / "c")
    assert (again.built, again.reused) == (1, 3)
    assert torch.equal(again.image(target), _expected(target))
    assert not torch.equal(again.image(target), cache.image(target))
    assert "1 source image(s) changed" in caplog.text


def test_unwritable_cache_folder_falls_back_to_streaming(photos, tmp_path, caplog, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert _open(photos[:3], blocker / "images") is None
    lines = caplog.messages
    assert len(lines) == 1 and str(blocker / "images") in lines[0] and "from their files" in lines[0]

    # A complete file in a folder that has become read-only is still served (no lock needed);
    # one that lacks images cannot be extended there: stream instead.
    _open(photos[:3], tmp_path / "c")

    def no_lock(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(imagecache, "FileLock", no_lock)
    caplog.clear()
    assert _open(photos[:3], tmp_path / "c").built == 0
    assert _open(photos[:5], tmp_path / "c") is None
    lines = caplog.messages
    assert len(lines) == 1 and "Permission denied" in lines[0]


def test_disk_full_leaves_no_partial_file(photos, tmp_path, caplog, monkeypatch):
    calls = []

    def full_disk(fh, data):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        fh.write(data)

    monkeypatch.setattr(imagecache, "_write", full_disk)
    folder = tmp_path / "c"
    assert _open(photos, folder) is None
    lines = caplog.messages
    assert len(lines) == 1 and str(folder) in lines[0] and "free some space" in lines[0], lines
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) == []

    # Not even started when the folder's free space is below what the images need.
    monkeypatch.setattr(imagecache, "_write", lambda fh, data: fh.write(data))
    monkeypatch.setattr(imagecache.shutil, "disk_usage", lambda _p: type("U", (), {"free": 1000})())
    assert _open(photos, folder) is None
    assert "no space for the image cache" in caplog.messages[-1]
    assert cache_info(folder) == []


def test_images_are_views_of_one_mapping_and_pickle_without_pixels(photos, tmp_path):
    cache = _open(photos, tmp_path / "c")
    a, b = cache.image(0), cache.image(1)
    assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()  # one buffer: the mapped file
    assert a.stride() == (1, 3 * a.shape[2], 3)  # channels last: each row one contiguous run
    assert cache.verify() == []
    original = a.clone()
    a.zero_()  # copy-on-write: this process's pages only, never the file
    assert torch.equal(_open(photos, tmp_path / "c").image(0), original)

    clone = pickle.loads(pickle.dumps(_open(photos, tmp_path / "c")))
    assert len(pickle.dumps(cache)) < cache.nbytes / 10
    assert torch.equal(clone.image(3), cache.image(3))


def test_unpickled_cache_survives_the_file_growing(photos, tmp_path):
    small = pickle.dumps(_open(photos[:4], tmp_path / "c"))
    _open(photos, tmp_path / "c")  # replaced by a file with more images, the old ones copied first
    clone = pickle.loads(small)
    assert torch.equal(clone.image(photos[2].path), _expected(photos[2].path))


def test_batch_pads_images_of_different_sizes(photos, tmp_path):
    cache = _open(photos, tmp_path / "c")
    idx = [0, 3, 5]
    batch, shapes = cache.batch(idx)
    assert shapes.tolist() == cache.shapes[idx].tolist()
    assert batch.shape == (3, 3, int(shapes[:, 0].max()), int(shapes[:, 1].max()))
    for k, i in enumerate(idx):
        h, w = shapes[k].tolist()
        assert torch.equal(batch[k, :, :h, :w], cache.image(i))
        assert int(batch[k, :, h:].sum()) == 0 and int(batch[k, :, :, w:].sum()) == 0


def test_cache_info_and_clear(photos, tmp_path):
    folder = tmp_path / "c"
    cache = _open(photos, folder)
    _open(photos[:2], folder, interpolation="bicubic")
    leftover = folder / f".{cache.path.name}.abc123.tmp"
    leftover.write_bytes(b"half a file")
    entries = cache_info(folder)
    assert len(entries) == 3
    main = next(e for e in entries if e.path == str(cache.path))
    assert (main.images, main.failures, main.size, main.interpolation, main.fingerprint, main.problem) == \
        (len(photos) - 1, 1, SIZE, "bilinear", "fp-1", None)
    assert main.nbytes == cache.path.stat().st_size
    assert next(e for e in entries if e.path == str(leftover)).problem == "unfinished temporary file"
    removed = clear_cache(folder)
    assert sorted(e.path for e in removed) == sorted(e.path for e in entries)
    assert list(folder.iterdir()) == []


def test_default_cache_root_and_folder(photos, tmp_path, monkeypatch):
    monkeypatch.delenv("ADVISOR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "advisor"
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "root"))
    assert default_cache_root() == tmp_path / "root"
    cache = open_image_cache(photos[:2], fingerprint="fp-1", size=SIZE, num_workers=0)
    assert cache.path.parent == tmp_path / "root" / "images"
    assert open_image_cache(photos[:2], fingerprint="fp-1", size=SIZE, cache_dir="") is None
    with pytest.raises(ValueError):
        open_image_cache(photos[:2], fingerprint="fp-1", size=SIZE, interpolation="sideways")
