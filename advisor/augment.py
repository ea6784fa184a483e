"""Batch augmentation where the model trains: random resized crop + flip for a whole uint8 batch.

torchvision's ``RandomResizedCrop`` + ``RandomHorizontalFlip`` work one image at a time, in
the DataLoader. Here the parameters of a whole batch are drawn at once, from an explicit CPU
:class:`torch.Generator` (a seed gives the same boxes on any device), with the same
distribution as ``RandomResizedCrop.get_params``: area fraction uniform in ``scale``, log
aspect ratio uniform in ``log(ratio)``, up to 10 tries per image, then torchvision's centre
crop fallback. The images may differ in size (e.g. views of :class:`advisor.imagecache.ImageCache`);
only the crops are copied.

How the crops are resized (``python benchmarks/loader_speed.py --methods``: 64 crops of 224 px
at scale (0.5, 1) from cache views, one thread; mean absolute difference from torchvision's
``resized_crop`` in grey levels):

====================  ==============  ===================  ==========
method                CPU, 2-core VM  H200 (+ CPU gather)  difference
====================  ==============  ===================  ==========
one call per image    3,150 img/s     3,900 img/s          0 on CPU
roi_align             180 img/s       12,800 img/s         0.39
grid_sample           200 img/s       3,400 img/s          0.40
====================  ==============  ===================  ==========

- On the CPU, one torch call per image on the uint8 pixels (``F.interpolate(antialias=True)``,
  the kernel torchvision's ``resized_crop`` uses, so the result is identical). The batched
  float32 kernels are 15x slower there.
- On an accelerator, one ``torchvision.ops.roi_align`` call for the whole batch, one box per
  image (``sampling_ratio=-1``): when it shrinks it averages ceil(box/output)^2 bilinear
  samples per output pixel, close to an antialiased resize, where ``grid_sample`` takes one
  sample and aliases; only the boxes travel to the device, where ``grid_sample`` needs the
  padded whole images; per-image calls launch several kernels per image. ``roi_align`` is
  bilinear only: with ``interpolation="bicubic"`` pass ``method="per_image"`` for torchvision's
  exact result on an accelerator.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> images = [torch.randint(0, 256, (3, 256, 340), dtype=torch.uint8) for _ in range(4)]
    >>> crops = random_resized_crop(images, 224, scale=(0.5, 1.0), generator=g)
    >>> crops.shape, crops.dtype
    (torch.Size([4, 3, 224, 224]), torch.uint8)
    >>> x = normalize(crops, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    >>> x.dtype, x.is_contiguous(memory_format=torch.channels_last)
    (torch.float32, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

__all__ = [
    "center_crop",
    "normalize",
    "random_resized_crop",
    "resized_crops",
    "sample_boxes",
    "sample_flips",
]

_TRIES = 10  # torchvision's RandomResizedCrop tries this many boxes before its fallback
_METHODS = ("auto", "per_image", "roi_align")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _check_generator(generator: torch.Generator | None) -> None:
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("pass a CPU torch.Generator: parameters are drawn on the CPU so that a seed gives "
                         f"the same boxes on every device (got one on {generator.device})")


def _as_list(images: Sequence[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
    images = list(images)
    for img in images:
        if img.dim() != 3 or img.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (3, H, W) tensors, got {img.dtype} {tuple(img.shape)}")
    return images


def sample_boxes(
    shapes: Sequence[Sequence[int]] | np.ndarray | torch.Tensor,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random resized crop box per image, as ``RandomResizedCrop.get_params`` draws it.

    Every image gets its own box; all are drawn with a fixed number of draws from
    ``generator`` (20 per image for the tries, 2 for the position), so the same seed and
    shapes give the same boxes.

    Args:
        shapes: ``(N, 2)`` heights and widths of the images.
        scale: Range of the box area, as a fraction of the image area.
        ratio: Range of the box aspect ratio (width / height).
        generator: A CPU generator; ``None`` uses torch's global one.

    Returns:
        int64 ``(N, 4)`` on the CPU: ``top, left, height, width`` of each box.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample_boxes([[256, 340], [300, 256]], scale=(0.5, 1.0), generator=g).shape
        torch.Size([2, 4])
    """
    _check_generator(generator)
    hw = torch.as_tensor(np.asarray(shapes), dtype=torch.int64).reshape(-1, 2)
    n = len(hw)
    height, width = hw[:, 0:1].double(), hw[:, 1:2].double()
    draws = torch.rand((n, _TRIES, 2), generator=generator, dtype=torch.float64)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    target = height * width * (scale[0] + (scale[1] - scale[0]) * draws[..., 0])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * draws[..., 1])
    # torch.round rounds half to even, as Python's round() in get_params does.
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first try that fits
    found = fits.any(dim=1)
    h = h.gather(1, first)[:, 0].long()
    w = w.gather(1, first)[:, 0].long()
    position = torch.rand((n, 2), generator=generator, dtype=torch.float64)
    H, W = hw[:, 0], hw[:, 1]
    top = torch.floor(position[:, 0] * (H - h + 1).double()).long().minimum(H - h)
    left = torch.floor(position[:, 1] * (W - w + 1).double()).long().minimum(W - w)

    # torchvision's fallback: the largest centred box whose aspect ratio is within `ratio`.
    in_ratio = W.double() / H.double()
    lo, hi = min(ratio), max(ratio)
    fb_w = torch.where(in_ratio < lo, W, torch.where(in_ratio > hi, torch.round(H.double() * hi).long(), W))
    fb_h = torch.where(in_ratio < lo, torch.round(W.double() / lo).long(), H)
    fb = torch.stack([(H - fb_h) // 2, (W - fb_w) // 2, fb_h, fb_w], dim=1)
    boxes = torch.stack([top, left, h, w], dim=1)
    return torch.where(found[:, None], boxes, fb)


def sample_flips(n: int, p: float = 0.5, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` booleans, each ``True`` with probability ``p`` (one draw each from ``generator``)."""
    _check_generator(generator)
    return torch.rand(n, generator=generator) < p


def resized_crops(
    images: Sequence[torch.Tensor] | torch.Tensor,
    boxes: torch.Tensor,
    size: int | tuple[int, int],
    *,
    flips: torch.Tensor | None = None,
    interpolation: str = "bilinear",
    device: str | torch.device | None = None,
    method: str = "auto",
) -> torch.Tensor:
    """Each image's box resized to ``size`` (then flipped where ``flips``), as one uint8 batch.

    Args:
        images: uint8 ``(3, H, W)`` images, any sizes and strides (cache views are fine).
        boxes: int ``(N, 4)`` ``top, left, height, width`` per image (:func:`sample_boxes`).
        size: Output side, or ``(height, width)``.
        flips: bool ``(N,)``: mirror these outputs left-right.
        interpolation: ``"bilinear"`` or ``"bicubic"`` (``method="roi_align"`` is bilinear).
        device: Where the batch is made and returned; ``None``: where the images are.
        method: ``"per_image"`` (torchvision's antialiased resize, one call per image: exact),
            ``"roi_align"`` (one call for the batch, close to it), or ``"auto"``: per image on
            the CPU, ``roi_align`` elsewhere (see the module's notes for the measurements).

    Returns:
        uint8 ``(N, 3, height, width)`` on ``device``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
    images = _as_list(images)
    out_hw = _pair(size)
    dev = torch.device(device) if device is not None else (images[0].device if images else torch.device("cpu"))
    n = len(images)
    boxes = torch.as_tensor(boxes, dtype=torch.int64).reshape(-1, 4).cpu()
    if len(boxes) != n:
        raise ValueError(f"{n} images but {len(boxes)} boxes")
    flips = torch.zeros(n, dtype=torch.bool) if flips is None else torch.as_tensor(flips, dtype=torch.bool).cpu()
    if n == 0:
        return torch.empty((0, 3, *out_hw), dtype=torch.uint8, device=dev)
    if method == "auto":
        method = "per_image" if dev.type == "cpu" else "roi_align"
    if method == "per_image":
        return _per_image(images, boxes, out_hw, flips, interpolation, dev)
    return _roi_align(images, boxes, out_hw, flips, dev)


def _per_image(images: list[torch.Tensor], boxes: torch.Tensor, out_hw: tuple[int, int], flips: torch.Tensor,
               interpolation: str, dev: torch.device) -> torch.Tensor:
    out = torch.empty((len(images), 3, *out_hw), dtype=torch.uint8, device=dev)
    for k, ((top, left, h, w), flip) in enumerate(zip(boxes.tolist(), flips.tolist())):
        crop = images[k][:, top:top + h, left:left + w].unsqueeze(0).to(dev, non_blocking=True)
        if dev.type == "cpu":
            # The uint8 kernel torchvision's resized_crop calls on the CPU: identical output.
            resized = F.interpolate(crop, size=out_hw, mode=interpolation, antialias=True, align_corners=False)
        else:
            # torchvision's path for uint8 elsewhere: float, resize, clamp, round.
            resized = F.interpolate(crop.float(), size=out_hw, mode=interpolation, antialias=True,
                                    align_corners=False).clamp_(0, 255).round_()
        out[k] = resized[0].flip(-1) if flip else resized[0]
    return out


def _roi_align(images: list[torch.Tensor], boxes: torch.Tensor, out_hw: tuple[int, int], flips: torch.Tensor,
               dev: torch.device) -> torch.Tensor:
    n = len(images)
    src = images[0].device
    canvas_h, canvas_w = int(boxes[:, 2].max()) + 2, int(boxes[:, 3].max()) + 2
    # Only the boxes travel, each with a one-pixel border; channels last so that each row is
    # one contiguous copy out of a channels-last cache view.
    canvas = torch.empty((n, canvas_h, canvas_w, 3), dtype=torch.uint8, device=src,
                         pin_memory=src.type == "cpu" and dev.type == "cuda")
    for k, (top, left, h, w) in enumerate(boxes.tolist()):
        canvas[k, 1:h + 1, 1:w + 1] = images[k][:, top:top + h, left:left + w].permute(1, 2, 0)
    canvas = canvas.to(dev, non_blocking=True)
    h = boxes[:, 2].to(dev)
    w = boxes[:, 3].to(dev)
    k = torch.arange(n, device=dev)
    # The border repeats the box's edge pixels, which is what torchvision's crop-then-resize
    # sees past the crop: roi_align's bilinear samples reach half a pixel beyond the box.
    # Rows first, then columns, so the corners repeat the box's corners.
    canvas[:, 0] = canvas[:, 1]
    canvas[k, h + 1] = canvas[k, h]
    canvas[:, :, 0] = canvas[:, :, 1]
    canvas[k, :, w + 1] = canvas[k, :, w]
    rois = torch.stack([k.to(torch.float32), torch.ones_like(h, dtype=torch.float32),
                        torch.ones_like(h, dtype=torch.float32), (w + 1).float(), (h + 1).float()], dim=1)
    x = canvas.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    # aligned=True: pixel i covers [i, i + 1), so box [1, 1 + w] is exactly the crop's pixels;
    # sampling_ratio=-1: ceil(box / output) samples per output pixel and axis (averaged).
    out = roi_align(x, rois, output_size=out_hw, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    out = out.round_().clamp_(0, 255).to(torch.uint8)
    flips = flips.to(dev)
    return torch.where(flips[:, None, None, None], out.flip(-1), out)


def random_resized_crop(
    images: Sequence[torch.Tensor] | torch.Tensor,
    size: int | tuple[int, int],
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    generator: torch.Generator | None = None,
    interpolation: str = "bilinear",
    device: str | torch.device | None = None,
    method: str = "auto",
) -> torch.Tensor:
    """``RandomResizedCrop(size, scale, ratio)`` + ``RandomHorizontalFlip(flip_p)`` for a batch.

    Boxes come from :func:`sample_boxes`, flips from :func:`sample_flips` (in that order, from
    ``generator``), the pixels from :func:`resized_crops`.

    Args:
        images: uint8 ``(3, H, W)`` images of any sizes (e.g. ``ImageCache.images(indices)``).
        size: Output side, or ``(height, width)``.
        scale: Range of the crop area as a fraction of the image area.
        ratio: Range of the crop aspect ratio.
        flip_p: Probability of a left-right flip.
        generator: A CPU generator; ``None`` uses torch's global one.
        interpolation: ``"bilinear"`` or ``"bicubic"``.
        device: Where the batch is made and returned; ``None``: where the images are.
        method: See :func:`resized_crops`.

    Returns:
        uint8 ``(N, 3, height, width)`` on ``device``.
    """
    images = _as_list(images)
    boxes = sample_boxes([img.shape[-2:] for img in images] or np.zeros((0, 2)), scale=scale, ratio=ratio,
                         generator=generator)
    flips = sample_flips(len(images), flip_p, generator=generator)
    return resized_crops(images, boxes, size, flips=flips, interpolation=interpolation, device=device,
                         method=method)


def center_crop(
    images: Sequence[torch.Tensor] | torch.Tensor,
    size: int | tuple[int, int],
    *,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """torchvision's ``center_crop`` of each image (same anchor, same pixels), as one uint8 batch.

    Of images stored at ``Preprocessing.resize_size`` this is the eval transform's output.

    Args:
        images: uint8 ``(3, H, W)`` images at least ``size`` large.
        size: Output side, or ``(height, width)``.
        device: Where the batch is returned; ``None``: where the images are.

    Returns:
        uint8 ``(N, 3, height, width)`` with channels-last strides.

    Raises:
        ValueError: An image smaller than ``size``.
    """
    images = _as_list(images)
    oh, ow = _pair(size)
    src = images[0].device if images else torch.device("cpu")
    dev = torch.device(device) if device is not None else src
    out = torch.empty((len(images), oh, ow, 3), dtype=torch.uint8, device=src,
                      pin_memory=src.type == "cpu" and dev.type == "cuda").permute(0, 3, 1, 2)
    for k, img in enumerate(images):
        height, width = img.shape[-2:]
        if height < oh or width < ow:
            raise ValueError(f"image {k} is {height}x{width} px, smaller than the {oh}x{ow} crop")
        # torchvision's anchor: int(round((image - crop) / 2)).
        top, left = int(round((height - oh) / 2.0)), int(round((width - ow) / 2.0))
        out[k] = img[:, top:top + oh, left:left + ow]
    return out.to(dev, non_blocking=True)


def normalize(
    batch: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` -> ``dtype``, normalised, channels last, on the batch's device.

    Computed in float32 as ``(x - 255 * mean) / (255 * std)``, the same operations as
    ``Preprocessing.normalize`` (identical values in float32), then cast to ``dtype``.

    Args:
        batch: uint8 images.
        mean: Per-channel mean on the 0-1 scale (``Preprocessing.mean``).
        std: Per-channel standard deviation on the 0-1 scale.
        dtype: Floating dtype of the result (e.g. ``torch.bfloat16`` for mixed precision).
    """
    m = torch.tensor(mean, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1) * 255.0
    x = batch.to(torch.float32, memory_format=torch.channels_last).sub_(m).div_(s)
    return x if dtype == torch.float32 else x.to(dtype)
