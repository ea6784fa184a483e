"""Decoding images: any file PIL reads, as 8-bit RGB, or a short reason why not.

:func:`load_image` decodes one file fully (EXIF rotation applied, 16-bit and float images scaled
by their range, transparency composited onto white, decompression bombs refused from the header);
:func:`read_header` reads only the size, mode and format. A file that cannot be used raises
:class:`ImageLoadError` with a one-line ``reason``; :class:`LoadFailure` carries that reason back
from a DataLoader worker (see :class:`advisor.loading.ImageFolder`).

Example:
    >>> im = load_image("photos/cat/001.jpg", draft_size=(256, 256))  # doctest: +SKIP
    >>> im.mode  # doctest: +SKIP
    'RGB'
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from advisor.data.names import display_name
from advisor.types import Skipped

__all__ = ["DEFAULT_MAX_PIXELS", "ImageLoadError", "LoadFailure", "load_image", "read_header"]

# 64 MP is bigger than any camera photo a user would profile, yet an RGB decode of it
# (about 190 MB) is still survivable; past it we assume a decompression bomb.
DEFAULT_MAX_PIXELS: int = 64_000_000


class ImageLoadError(Exception):
    """One image could not be read or decoded.

    Attributes:
        path: The file that failed.
        reason: Short, user-facing cause, e.g. ``"truncated image"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        shown = os.fsdecode(self.path) if isinstance(self.path, bytes) else self.path
        super().__init__(f"{display_name(shown)}: {display_name(reason)}")

    def __reduce__(self):  # keeps the two-argument constructor picklable across workers
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class LoadFailure(Skipped):
    """A :class:`Skipped` produced while decoding, which also remembers the sample index.

    :meth:`~advisor.loading.ImageFolder.__getitem__` returns one instead of raising, so the
    failure survives the trip back from a DataLoader worker process;
    :func:`~advisor.loading.collate_skipping` hands these back, and
    :meth:`~advisor.data.Dataset.with_skipped` accepts them directly.

    Attributes:
        index: Position of the failed sample in the :class:`~advisor.loading.ImageFolder`.
    """

    index: int = -1


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
