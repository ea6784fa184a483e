"""Embedded demo datasets built from images that installed packages bundle (no download).

- ``digits``: scikit-learn's 8x8 handwritten digits, upscaled to PNG files. Far from ImageNet.
- ``photos``: crops of scikit-learn's two sample photographs (a temple in China and a flower).
  Natural photos, close to ImageNet.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["DEMOS", "make_demo"]

DEMOS = ("digits", "photos")
_MARKER = ".advisor-demo.json"


def _write_digits(root: Path, *, per_class: int, size: int, seed: int) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(10):
        folder = root / str(label)
        folder.mkdir(parents=True)
        idx = np.flatnonzero(digits.target == label)
        for i in rng.permutation(idx)[:per_class]:
            pixels = (digits.images[i] / 16.0 * 255).astype(np.uint8)
            img = Image.fromarray(255 - pixels, mode="L").resize((size, size), Image.Resampling.BILINEAR)
            img.save(folder / f"digit_{i:04d}.png")


def _write_photos(root: Path, *, per_class: int, size: int, seed: int) -> None:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    rng = np.random.default_rng(seed)
    for name, array in zip(("temple", "flower"), photos.images):
        folder = root / name
        folder.mkdir(parents=True)
        h, w = array.shape[:2]
        for k in range(per_class):
            side = int(rng.integers(min(h, w) // 3, min(h, w)))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(array[top:top + side, left:left + side]).resize((size, size))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(folder / f"{name}_{k:03d}.jpg", quality=90)


def make_demo(out_dir: str | os.PathLike, name: str = "digits", *, per_class: int = 40,
              size: int | None = None, seed: int = 0) -> Path:
    """Write an embedded demo dataset as ``out_dir/<name>/<class>/*`` and return its path.

    An existing copy made with the same options is reused. The folder is built in a
    temporary directory and moved into place, so an interrupted run never leaves half of it.

    Example:
        >>> import tempfile
        >>> root = make_demo(tempfile.mkdtemp(), "digits", per_class=3)
        >>> sorted(p.name for p in root.iterdir())[:3]
        ['0', '1', '2']
    """
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose one of {', '.join(DEMOS)}")
    size = size or (32 if name == "digits" else 160)
    options = {"name": name, "per_class": per_class, "size": size, "seed": seed, "version": 1}
    dest = Path(out_dir) / name
    marker = dest / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == options:
                return dest
        except ValueError:
            pass
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}-"))
    try:
        writer = _write_digits if name == "digits" else _write_photos
        writer(tmp, per_class=per_class, size=size, seed=seed)
        (tmp / _MARKER).write_text(json.dumps(options))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest
