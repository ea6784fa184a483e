"""Embedded demo datasets built from images that installed packages bundle (no download).

- ``digits``: scikit-learn's 8x8 handwritten digits, upscaled to PNG files. Far from ImageNet.
- ``photos``: crops of six photographs that scikit-learn and scikit-image bundle (a cat,
  coffee, a rocket, an astronaut, a temple, a flower). Natural photos, close to ImageNet.
- ``microscopy``: crops of scikit-image's histology, retina and cell images. Far from ImageNet.
- ``shapes``: line drawings of circles, squares and triangles. Far from ImageNet.
- ``noise``: uniform RGB noise, two arbitrary classes. Far from ImageNet.
- ``flat``: single-colour images, two arbitrary classes. Far from ImageNet.

The last three serve calibration and tests of the similarity score.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["DEMOS", "DEMO_BENCH", "make_demo"]

DEMOS = ("digits", "photos", "microscopy", "shapes", "noise", "flat")
#: ``advisor demo``'s bench options (``BenchConfig`` keywords): the digits are 8x8 images, and
#: 112 px holds all they have; 20 epochs at most keeps the demo to a few minutes on a CPU.
DEMO_BENCH = {"max_epochs": 20, "image_size": 112, "batch_size": 32}
_MARKER = ".advisor-demo.json"  # options of the copy on disk


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


def _photo_sources() -> dict[str, np.ndarray]:
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {
        "cat": skdata.chelsea(), "coffee": skdata.coffee(), "rocket": skdata.rocket(),
        "astronaut": skdata.astronaut(), "temple": china, "flower": flower,
    }


def _microscopy_sources() -> dict[str, np.ndarray]:
    from skimage import data as skdata

    return {"histology": skdata.immunohistochemistry(), "retina": skdata.retina(), "cells": skdata.cell()}


def _write_crops(root: Path, sources: dict[str, np.ndarray], *, per_class: int, size: int, seed: int) -> None:
    """Random square crops (and flips) of each source image; the class is the source."""
    rng = np.random.default_rng(seed)
    for name, array in sources.items():
        folder = root / name
        folder.mkdir(parents=True)
        image = Image.fromarray(array).convert("RGB")
        w, h = image.size
        for k in range(per_class):
            side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(folder / f"{name}_{k:03d}.jpg", quality=90)


def _write_photos(root: Path, *, per_class: int, size: int, seed: int) -> None:
    _write_crops(root, _photo_sources(), per_class=per_class, size=size, seed=seed)


def _write_microscopy(root: Path, *, per_class: int, size: int, seed: int) -> None:
    _write_crops(root, _microscopy_sources(), per_class=per_class, size=size, seed=seed)


def _write_shapes(root: Path, *, per_class: int, size: int, seed: int) -> None:
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    for shape in ("circle", "square", "triangle"):
        folder = root / shape
        folder.mkdir(parents=True)
        for k in range(per_class):
            img = Image.new("RGB", (size, size), "white")
            draw = ImageDraw.Draw(img)
            r = rng.uniform(0.15, 0.4) * size
            cx, cy = rng.uniform(r, size - r, size=2)
            width = int(rng.integers(1, max(2, size // 30) + 1))
            if shape == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline="black", width=width)
            elif shape == "square":
                draw.rectangle([cx - r, cy - r, cx + r, cy + r], outline="black", width=width)
            else:
                pts = [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r), (cx, cy - r)]
                draw.line(pts, fill="black", width=width)
            img.save(folder / f"{shape}_{k:03d}.png")


def _write_noise(root: Path, *, per_class: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for cls in ("a", "b"):
        folder = root / cls
        folder.mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"noise_{k:03d}.png")


def _write_flat(root: Path, *, per_class: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for cls in ("a", "b"):
        folder = root / cls
        folder.mkdir(parents=True)
        for k in range(per_class):
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            Image.new("RGB", (size, size), colour).save(folder / f"flat_{k:03d}.png")


_WRITERS = {
    "digits": _write_digits, "photos": _write_photos, "microscopy": _write_microscopy,
    "shapes": _write_shapes,
    "noise": _write_noise, "flat": _write_flat,
}


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
    size = size or {"digits": 32, "photos": 160}.get(name, 96)
    options = {"name": name, "per_class": per_class, "size": size, "seed": seed, "version": 2}
    dest = Path(out_dir) / name
    marker = Path(out_dir) / f".{name}{_MARKER}"  # beside the data: inside it would be a "skipped file"
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == options:
                return dest
        except ValueError:
            pass
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}-"))
    try:
        _WRITERS[name](tmp, per_class=per_class, size=size, seed=seed)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        marker.write_text(json.dumps(options))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest
