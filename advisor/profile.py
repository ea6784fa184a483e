"""The profiler: how big the dataset is and how far its features are from ImageNet's.

One pass over a stratified sample per backbone collects, with forward hooks and at the same
time, the penultimate embeddings, the ImageNet head's logits, the per-channel mean/variance of
the input of every BatchNorm layer, and a downsampled copy of the input (the raw-pixel
baseline). Everything after that pass works on cached arrays.

Similarity to ImageNet, without ImageNet data
---------------------------------------------
A BatchNorm layer's running mean/variance are ImageNet's own activation statistics at that
layer. The profiler measures the target's statistics at the same layers and takes the mean
per-channel Gaussian KL divergence ``KL(target || ImageNet)`` per stage, over all layers, and
over the deeper half of the layers (the one the score uses: early layers react to colour and
contrast, deep layers to content).
The ImageNet head adds three signals: the mean max-softmax probability, the mean normalised
entropy, and the mean energy ``-logsumexp(logits)``.

Each signal ``s`` is mapped to a closeness score in [0, 1] with a logistic curve,
``score = 1 / (1 + exp(direction * (s - midpoint) / width))``, whose midpoint and width were
calibrated on real data near to and far from ImageNet (see :data:`SIGNAL_CALIBRATION` and
``benchmarks/similarity.py``). The similarity is the weighted mean of the available scores
(BatchNorm divergence weight 3, each softmax signal weight 1); backbones without BatchNorm use
the softmax signals alone, and the output says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advisor import metrics
from advisor.augment import center_crop
from advisor.backbones import Backbone, Preprocessing, get_backbone
from advisor.curves import fit_learning_curve
from advisor.data import (
    Dataset,
    ImageLoadError,
    Sample,
    Skipped,
    display_name,
    read_header,
    scan,
    stratified_sample,
    summarize_skipped,
)
from advisor.imagecache import ImageCache, open_image_cache, summarize_use, tally_use
from advisor.loading import ImageFolder, collate_skipping
from advisor.runtime import (
    Precision,
    choose_precision,
    default_workers,
    derive_seed,
    isolated_random,
    resolve_device,
)
from advisor.types import BackboneProfile, DatasetSummary, Profile, ProfileConfig
from advisor.utils import atomic_writer, cache_root, progress_bar, safe_name, shown

log = logging.getLogger(__name__)

__all__ = [
    "BackboneProfile",
    "DatasetSummary",
    "Features",
    "Profile",
    "ProfileConfig",
    "SIGNAL_CALIBRATION",
    "build_reference",
    "extract_features",
    "load_reference",
    "profile",
    "profile_backbone",
    "profile_one",
    "similarity_score",
    "summarize_dataset",
]

CACHE_VERSION = 2  # 2: keys hold the precision; EfficientNet-Lite inputs scaled to [-1, 1]
PIXEL_SIZE = 16  # side of the raw-pixel baseline's downsampled image
# The shallow half of the BatchNorm layers (large maps, only drawn in the per-stage plot) is
# measured on 4 images per batch, 64 images in all: millions of values per channel already.
SHALLOW_BN_IMAGES = 4
SHALLOW_BN_TOTAL = 64

#: signal -> (midpoint, width, direction). direction=+1: larger values are farther from
#: ImageNet; -1: larger values are closer. ``bn_divergence`` is compared on a log10 scale.
#: Calibrated with ``benchmarks/similarity.py`` (``benchmarks/results/similarity_all.csv``) on
#: efficientnet_lite0, lite1 and lite2 with their [-1, 1] input scaling, 40 images per class:
#: the midpoints sit between the near-ImageNet datasets (hymenoptera, scikit-learn/scikit-image
#: photos, calibration/flowers) and the far ones (microscopy, digits, line drawings, noise, flat
#: colours, calibration/bccd_cells, omniglot_alphabets, magnetic_tile). BatchNorm divergence
#: separates them best (near 0.073-0.117, far 0.196-0.78), so it weighs most; entropy and
#: energy overlap between the groups (flowers on lite1/lite2 reads like far data) and weigh
#: least. Low-resolution cifar10 (32 px) and lab photos of leaves (potato_leaf) measure 0.19-0.22,
#: like microscopy: "different" by these signals.
SIGNAL_CALIBRATION: dict[str, tuple[float, float, int]] = {
    "bn_divergence": (math.log10(0.15), 0.06, +1),
    "max_softmax": (0.195, 0.025, -1),
    "entropy": (0.70, 0.03, +1),
    "energy": (-8.15, 0.12, +1),
}
SIGNAL_WEIGHTS = {"bn_divergence": 3.0, "max_softmax": 1.0, "entropy": 1.0, "energy": 1.0}


def _default_cache_dir() -> Path:
    return cache_root() / "features"


# --------------------------------------------------------------------------- dataset summary


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"min": None, "median": None, "max": None}
    arr = np.asarray(values, dtype=float)
    return {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max())}


def summarize_dataset(dataset: Dataset, sample: Sequence[Sample], *, thumbnails: int = 6,
                      extra_skipped: Iterable[Skipped] = ()) -> DatasetSummary:
    """Counts from the listing plus header facts (size, mode, format) of ``sample``.

    Every name and path goes through :func:`~advisor.data.display_name`, so the summary is
    valid UTF-8 text whatever bytes the file names hold (names stay one-to-one, so classes
    stay distinct). ``skipped`` is capped by :func:`~advisor.data.summarize_skipped`.
    """
    counts = dataset.class_counts()
    nonzero = [c for c in counts.values() if c > 0]
    widths, heights, modes, formats = [], [], {}, {}
    skipped = list(dataset.skipped) + list(extra_skipped)
    for s in sample:
        try:
            w, h, mode, fmt = read_header(s.path)
        except ImageLoadError as err:
            skipped.append(Skipped(s.path, err.reason))
            continue
        widths.append(w)
        heights.append(h)
        modes[mode] = modes.get(mode, 0) + 1
        formats[fmt] = formats.get(fmt, 0) + 1
    splits = {}
    if dataset.layout == "split":
        splits = {
            name: {display_name(c): n for c, n in dataset.class_counts(name).items()}
            for name in dataset.splits
        }
    thumbs: dict[str, list[str]] = {}
    for s in sample:
        cls = display_name(dataset.classes[s.label])
        if len(thumbs.setdefault(cls, [])) < thumbnails:
            thumbs[cls].append(display_name(s.path))
    listing = summarize_skipped(Skipped(display_name(s.path), display_name(s.reason)) for s in skipped)
    return DatasetSummary(
        path=display_name(dataset.root),
        layout=dataset.layout,
        n_images=len(dataset.samples),
        n_classes=len(dataset.classes),
        class_counts={display_name(c): n for c, n in counts.items()},
        splits=splits,
        per_class=_stats(nonzero),
        imbalance_ratio=float(max(nonzero) / min(nonzero)) if nonzero else float("nan"),
        skipped=tuple(listing["shown"]),
        skipped_total=int(listing["total"]),
        skipped_by_reason=dict(listing["by_reason"]),
        empty_classes=tuple(display_name(c) for c in dataset.empty_classes),
        image_stats={
            "n_sampled": len(widths),
            "width": _stats(widths),
            "height": _stats(heights),
            "modes": modes,
            "formats": formats,
        },
        fingerprint=dataset.fingerprint(),
        thumbnails=thumbs,
    )


# --------------------------------------------------------------------------- feature pass


@dataclass
class Features:
    """What one pass over a sample collects (arrays; cached as ``.npz``).

    Attributes:
        embeddings: (n, d) penultimate-layer features.
        logits: (n, 1000) ImageNet-head logits.
        labels: (n,) target labels.
        paths: The n image paths, in row order.
        pixels: (n, 3*16*16) downsampled network input: the raw-pixel baseline.
        bn_mean / bn_var: per BatchNorm layer, the target's per-channel input statistics.
        failures: Images that failed to decode during the pass.
        seconds: Wall time of the pass (0 when loaded from the cache).
        cached: Whether it came from the cache.
        image_cache: ``{path, built, reused}`` of the decoded-image cache the pass read, if any.
    """

    embeddings: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    paths: list[str]
    pixels: np.ndarray
    bn_mean: dict[str, np.ndarray]
    bn_var: dict[str, np.ndarray]
    failures: list[Skipped]
    seconds: float = 0.0
    cached: bool = False
    image_cache: dict[str, Any] | None = None

    def save(self, path: Path, *, key: str = "") -> None:
        arrays = {
            "embeddings": self.embeddings, "logits": self.logits, "labels": self.labels,
            "pixels": self.pixels,
        }
        for name in self.bn_mean:
            arrays[f"bn_mean::{name}"] = self.bn_mean[name]
            arrays[f"bn_var::{name}"] = self.bn_var[name]
        meta = {
            "version": CACHE_VERSION, "key": key, "paths": self.paths, "seconds": self.seconds,
            "failures": [[f.path, f.reason] for f in self.failures],
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with atomic_writer(path, "wb") as fh:  # a partial file never replaces a good one
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path, *, key: str | None = None) -> "Features":
        """Read a cache entry; ``ValueError`` (with the reason) when it is not a whole, current one.

        Checked: the file is an ``.npz`` with every array, written by this cache version for
        this ``key``, and its arrays agree in length with its list of images.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                if meta.get("version") != CACHE_VERSION:
                    raise ValueError(f"written by another version of advisor (cache version {meta.get('version')})")
                if key is not None and meta.get("key") != key:
                    raise ValueError("it holds another sample or backbone than its name says")
                bn_mean = {k.split("::", 1)[1]: z[k] for k in z.files if k.startswith("bn_mean::")}
                bn_var = {k.split("::", 1)[1]: z[k] for k in z.files if k.startswith("bn_var::")}
                feats = cls(
                    embeddings=z["embeddings"], logits=z["logits"], labels=z["labels"],
                    paths=list(meta["paths"]), pixels=z["pixels"], bn_mean=bn_mean, bn_var=bn_var,
                    failures=[Skipped(p, r) for p, r in meta["failures"]],
                    seconds=float(meta["seconds"]), cached=True,
                )
        except ValueError:
            raise
        except Exception as err:  # truncated zip, other content, unreadable: all mean "not a cache entry"
            raise ValueError(getattr(err, "strerror", None) or f"{type(err).__name__}: {err}") from None
        n = len(feats.paths)
        if not (len(feats.embeddings) == len(feats.logits) == len(feats.labels) == len(feats.pixels) == n):
            raise ValueError("its arrays do not agree in length (a damaged file)")
        return feats


class _ChannelStats:
    """Running per-channel mean/variance of a BatchNorm layer's input (exact merge, Chan et al.).

    With ``max_images`` only the first images of each batch are measured, and with
    ``max_total`` measuring stops after that many images: on the large feature maps of early
    layers a few images give every channel many thousands of values, and the hooks stop costing
    a sizeable share of the forward pass (each reads every activation it measures).
    """

    def __init__(self, max_images: int | None = None, max_total: int | None = None) -> None:
        self.max_images = max_images
        self.max_total = max_total  # stop measuring after this many images
        self.images = 0
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def __call__(self, _module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if self.max_total is not None and self.images >= self.max_total:
            return
        x = inputs[0].detach()[: self.max_images].float()
        self.images += x.shape[0]
        channels = x.shape[1]
        # (values, channels); a view when the input is channels_last.
        y = x.movedim(1, -1).reshape(-1, channels)
        n = y.shape[0]
        # Column sums as a matrix product: far faster than a strided reduction on CPU.
        ones = torch.ones(1, n, dtype=y.dtype, device=y.device)
        mean = (ones @ y)[0] / n
        centred = y - mean
        m2 = (ones @ (centred * centred))[0].double()
        mean = mean.double()
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.pow(2) * (self.count * n / total)
        self.count = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean.cpu().numpy(), (self.m2 / self.count).cpu().numpy()


def _cache_key(backbone: Backbone, samples: Sequence[Sample], image_size: int, fingerprint: str,
               collect_bn: bool, precision: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({
        "v": CACHE_VERSION, "backbone": backbone.name, "weights": backbone.weights,
        "image_size": image_size, "dataset": fingerprint, "bn": collect_bn, "precision": precision,
        "preprocessing": backbone.preprocessing.to_dict(),
    }, sort_keys=True).encode())
    for s in samples:  # fsencode: a name need not be valid UTF-8
        h.update(os.fsencode(s.path) + f"\0{s.label}\n".encode())
    return f"{backbone.name}-{backbone.weights}-{image_size}-{precision}-{h.hexdigest()[:20]}"


def _cached_batches(cache: ImageCache, samples: Sequence[Sample], prep: Preprocessing,
                    batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Skipped]]]:
    """Centre crops of cached images: the eval transform's output, without decoding anything."""
    failed = {f.path: f for f in cache.failures}
    for start in range(0, len(samples), batch_size):
        chunk = range(start, min(start + batch_size, len(samples)))
        kept = [i for i in chunk if samples[i].path in cache]
        bad = [failed.get(samples[i].path) or Skipped(samples[i].path, "not decoded") for i in chunk
               if samples[i].path not in cache]
        images = (center_crop(cache.images(cache.index_of(samples[i].path) for i in kept), prep.image_size)
                  if kept else torch.empty(0, 3, prep.image_size, prep.image_size, dtype=torch.uint8))
        yield (images, torch.tensor([samples[i].label for i in kept], dtype=torch.int64),
               torch.tensor(kept, dtype=torch.int64), bad)


def _streamed_batches(samples: Sequence[Sample], prep: Preprocessing, batch_size: int, num_workers: int | None,
                      dev: torch.device, start_method: str | None) -> Iterator[tuple[Any, ...]]:
    """The eval transform in DataLoader workers; they send uint8 crops (a quarter of the bytes)."""
    folder = ImageFolder(samples, prep.eval_transform(normalize=False),
                         draft_size=(prep.resize_size, prep.resize_size))
    workers = default_workers() if num_workers is None else num_workers
    # Its own generator: a loader without one draws from the global stream, and whether this
    # pass runs (cache miss) or not must not change any later random number.
    generator = torch.Generator()
    generator.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        folder, batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=collate_skipping, pin_memory=dev.type == "cuda", generator=generator,
        persistent_workers=False, prefetch_factor=4 if workers > 0 else None,
        multiprocessing_context=start_method if workers > 0 else None,
    )
    for images, labels, indices, failed in loader:
        yield images, labels, indices, [Skipped(f.path, f.reason) for f in failed]


def extract_features(
    backbone: Backbone,
    samples: Sequence[Sample],
    *,
    image_size: int | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    device: str | torch.device = "auto",
    cache_dir: str | os.PathLike | None = None,
    fingerprint: str = "",
    collect_bn: bool = True,
    progress: bool = False,
    precision: Precision | None = None,
    start_method: str | None = None,
    image_cache_dir: str | os.PathLike | None = None,
) -> Features:
    """One inference pass: embeddings, logits, BN-input statistics and raw pixels together.

    Results are cached on disk under a key made of the dataset fingerprint, backbone,
    weights, image size and the exact sample, and reused by later calls.

    Args:
        backbone: A built :class:`~advisor.backbones.Backbone`.
        samples: The images to pass (their order is the row order).
        image_size: Crop size; ``None`` for the backbone's default.
        batch_size: Images per forward pass.
        num_workers: Decoding workers (``None``: from the core count; 0: in-process).
        device: Where to run.
        cache_dir: Feature cache folder; ``None`` for the default, ``""`` to disable.
        fingerprint: Dataset fingerprint for the cache key.
        collect_bn: Hook every BatchNorm layer for its input statistics.
        progress: Show a progress bar on stderr.
        precision: Autocast precision; ``None`` chooses from the device
            (:func:`advisor.runtime.choose_precision`). Part of the cache key.
        start_method: Start method of the decoding workers (``None``: the platform's).
        image_cache_dir: Decoded-image cache folder (``None``: under the cache root; ``""``:
            decode on the fly). With a ``fingerprint``, images come from the cache: a second
            pass over the same data at the same resize size, by any backbone, decodes nothing.

    Example:
        >>> feats = extract_features(get_backbone("resnet18", weights=None),
        ...                          dataset.samples, image_size=64)  # doctest: +SKIP
        >>> feats.embeddings.shape  # doctest: +SKIP
        (120, 512)
    """
    size = int(image_size or backbone.image_size)
    dev = resolve_device(device)
    precision = precision or choose_precision(dev)
    folder_root = _default_cache_dir() if cache_dir is None else (Path(cache_dir) if cache_dir else None)
    cache_file = None
    if folder_root is not None:
        key = _cache_key(backbone, samples, size, fingerprint, collect_bn, precision.name)
        cache_file = folder_root / f"{key}.npz"
        if cache_file.exists():
            try:
                return Features.load(cache_file, key=key)
            except ValueError as err:  # never a wrong number: recompute and overwrite it
                log.warning(f"feature cache {shown(cache_file)} is unusable ({err}); computing the features again")

    # channels_last speeds convolutions up on CPU too (1.7x for efficientnet_lite0 at 224 px).
    backbone.model.to(dev).eval().to(memory_format=torch.channels_last)  # in place
    stats: dict[str, _ChannelStats] = {}
    handles = []
    if collect_bn:
        layers = backbone.batchnorm_layers()
        for i, (name, module) in enumerate(layers):
            # The similarity score reads the deeper half (small maps, cheap): every image. The
            # shallow half, whose large maps cost most, is only drawn in the per-stage plot.
            deep = i >= len(layers) // 2
            stats[name] = (_ChannelStats() if deep else
                           _ChannelStats(max_images=SHALLOW_BN_IMAGES, max_total=SHALLOW_BN_TOTAL))
            handles.append(module.register_forward_pre_hook(stats[name]))

    prep = backbone.preprocessing.at_size(size)
    image_cache = None
    if fingerprint:
        image_cache = open_image_cache(samples, fingerprint=fingerprint, size=prep.resize_size,
                                       interpolation=prep.interpolation, cache_dir=image_cache_dir,
                                       num_workers=num_workers, progress=progress)
    batches = (_cached_batches(image_cache, samples, prep, batch_size) if image_cache is not None else
               _streamed_batches(samples, prep, batch_size, num_workers, dev, start_method))
    emb_parts, logit_parts, label_parts, pixel_parts, index_parts = [], [], [], [], []
    failures: list[Skipped] = []
    bar = progress_bar(len(samples), f"profile {backbone.name}", unit="img", enabled=progress)
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for images, labels, indices, failed in batches:
                failures.extend(Skipped(f.path, f.reason) for f in failed)
                if bar is not None:
                    bar.update(len(indices) + len(failed))
                if len(indices) == 0:
                    continue
                x = prep.normalize(images.to(dev, non_blocking=True)).contiguous(memory_format=torch.channels_last)
                with precision.autocast(dev):
                    emb, logits = backbone.embed(x)
                emb_parts.append(emb.float().cpu())
                logit_parts.append(logits.float().cpu())
                pixel_parts.append(F.adaptive_avg_pool2d(x.float(), PIXEL_SIZE).flatten(1).cpu())
                label_parts.append(labels)
                index_parts.append(indices)
    finally:
        for h in handles:
            h.remove()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if not emb_parts:
        raise ImageLoadError(samples[0].path if samples else "", "no image in the sample could be decoded")
    order = torch.cat(index_parts).argsort()
    kept_index = torch.cat(index_parts)[order].tolist()
    bn_mean, bn_var = {}, {}
    for name, acc in stats.items():
        if acc.mean is not None:
            bn_mean[name], bn_var[name] = acc.result()
    feats = Features(
        embeddings=torch.cat(emb_parts)[order].numpy().astype(np.float32),
        logits=torch.cat(logit_parts)[order].numpy().astype(np.float32),
        labels=torch.cat(label_parts)[order].numpy().astype(np.int64),
        paths=[samples[i].path for i in kept_index],
        pixels=torch.cat(pixel_parts)[order].numpy().astype(np.float32),
        bn_mean=bn_mean,
        bn_var=bn_var,
        failures=failures,
        seconds=seconds,
        image_cache=None if image_cache is None else image_cache.to_dict(),
    )
    if cache_file is not None:
        try:
            feats.save(cache_file, key=key)
        except OSError as err:  # a read-only or full cache costs speed, not correctness
            log.warning(f"cannot write the feature cache {shown(cache_file)} ({err.strerror or err}); going on "
                        f"without it (set ADVISOR_CACHE to a writable folder, or pass --no-cache)")
    return feats


# --------------------------------------------------------------------------- signals


def bn_divergence(backbone: Backbone, feats: Features) -> tuple[float | None, float | None, dict[str, float]]:
    """Per-channel ``KL(target || ImageNet)`` at the BN layers: (deep half, all layers, per stage).

    The score uses the deeper half of the layers: early layers react to colour and contrast
    (a photo of histology looks "natural" there), deep layers to content.
    """
    per_layer: list[tuple[str, float]] = []
    for name, module in backbone.batchnorm_layers():
        if name not in feats.bn_mean:
            continue
        kl = metrics.gaussian_kl(
            feats.bn_mean[name], feats.bn_var[name],
            module.running_mean.detach().cpu().numpy(), module.running_var.detach().cpu().numpy(),
        )
        per_layer.append((name, float(np.mean(kl))))
    if not per_layer:
        return None, None, {}
    stages: dict[str, list[float]] = {}
    for name, value in per_layer:
        stages.setdefault(backbone.stage_of(name), []).append(value)
    values = [v for _, v in per_layer]
    deep = values[len(values) // 2:]
    return float(np.mean(deep)), float(np.mean(values)), {k: float(np.mean(v)) for k, v in stages.items()}


def signal_scores(signals: dict[str, float | None]) -> dict[str, float]:
    """Each raw signal mapped to a closeness score in [0, 1] (1 = ImageNet-like)."""
    scores = {}
    for name, (mid, width, direction) in SIGNAL_CALIBRATION.items():
        value = signals.get(name)
        if value is None or not np.isfinite(value):
            continue
        if name == "bn_divergence":
            value = math.log10(max(value, 1e-6))
        z = direction * (value - mid) / width
        scores[name] = float(1.0 / (1.0 + math.exp(min(max(z, -60.0), 60.0))))
    return scores


def similarity_score(signals: dict[str, float | None]) -> float:
    """The documented combination: weighted mean of :func:`signal_scores`.

    Example:
        >>> round(similarity_score({"max_softmax": 0.195, "entropy": 0.70, "energy": -8.15}), 2)
        0.5
    """
    scores = signal_scores(signals)
    if not scores:
        return float("nan")
    total = sum(SIGNAL_WEIGHTS[k] for k in scores)
    return float(sum(SIGNAL_WEIGHTS[k] * v for k, v in scores.items()) / total)


# --------------------------------------------------------------------------- reference


def _embedding_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = embeddings.astype(np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _reference_dir() -> Path:
    return cache_root() / "references"


def build_reference(
    folder: str | os.PathLike,
    backbone: str = "efficientnet_lite0",
    *,
    out: str | os.PathLike | None = None,
    total: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
    device: str = "auto",
    weights: str | None = "imagenet",
    progress: bool = False,
) -> Path:
    """Embedding mean/covariance of any image folder you own, for Frechet distances later.

    Any layout works (class folders are not needed). Up to ``total`` images are sampled
    with ``seed``. Returns the ``.npz`` file written (atomically).

    Example:
        >>> ref = build_reference("~/photos/imagenet-val-subset")  # doctest: +SKIP
        >>> profile("data/", config=ProfileConfig(reference=str(ref)))  # doctest: +SKIP
    """
    from advisor.data import find_images

    paths, _ = find_images(folder)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(paths), size=min(total, len(paths)), replace=False).tolist())
    samples = [Sample(paths[i], 0, "all") for i in chosen]
    bb = get_backbone(backbone, weights=weights)
    feats = extract_features(bb, samples, batch_size=batch_size, device=device, cache_dir="",
                             collect_bn=False, progress=progress)
    if len(feats.labels) < 2:
        raise ImageLoadError(os.fspath(folder), "fewer than 2 images could be decoded for the reference")
    mean, cov = _embedding_stats(feats.embeddings)
    name = safe_name(Path(folder).resolve().name, default="data")
    dest = Path(out) if out else _reference_dir() / f"{name}-{backbone}.npz"
    meta = {"backbone": backbone, "weights": bb.weights, "folder": str(Path(folder).resolve()),
            "n": int(len(feats.labels)), "image_size": bb.image_size}
    with atomic_writer(dest, "wb") as fh:
        np.savez(fh, mean=mean, cov=cov, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return dest


def load_reference(path: str | os.PathLike) -> dict[str, Any]:
    """Read a reference file: ``mean``, ``cov`` and its metadata."""
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            return {**meta, "mean": z["mean"], "cov": z["cov"]}
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"reference file {path} cannot be read ({err}): build one with "
                         "`advisor reference build DIR`") from None


# --------------------------------------------------------------------------- results


def _transferability(feats: Features, *, cv: int, seed: int) -> tuple[dict[str, float], list[dict], dict | None]:
    labels = feats.labels
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    out: dict[str, float] = {"chance": float(counts.max() / counts.sum())}
    probs = torch.from_numpy(feats.logits).softmax(-1).numpy()
    out["logme"] = metrics.logme(feats.embeddings, labels)
    out["leep"] = metrics.leep(probs, labels)
    out["nce"] = metrics.nce(probs.argmax(1), labels)
    out["hscore"] = metrics.hscore(feats.embeddings, labels, shrinkage=True)
    curve: list[dict] = []
    fit: dict[str, Any] | None = None
    if counts.min() >= 2:
        rep = metrics.probe_report(feats.embeddings, labels, cv=cv, seed=seed)
        out["linear_probe"] = float(rep["linear_accuracy"])
        out["knn_probe"] = float(rep["knn_accuracy"])
        out["linear_probe_std"] = float(rep["linear_std"])
        pix = metrics.probe_report(feats.pixels, labels, cv=cv, seed=seed)
        out["pixel_linear_probe"] = float(pix["linear_accuracy"])
        out["pixel_knn_probe"] = float(pix["knn_accuracy"])
        try:
            curve = metrics.learning_curve(feats.embeddings, labels, seed=seed, cv=cv)
        except ValueError:
            curve = []  # too few images per class: the curve is not measurable
        if len(curve) >= 3:
            folds = min(cv, int(counts.min()))
            law = fit_learning_curve([p["images_per_class"] for p in curve], [p["accuracy"] for p in curve],
                                     std=[p["std"] for p in curve], n_runs=[folds] * len(curve),
                                     n_val=max(1, len(labels) // folds), strategy="freeze", seed=seed)
            fit = law.to_dict(bootstrap=True)
    return out, curve, fit


def profile_backbone(backbone: Backbone, samples: Sequence[Sample], config: ProfileConfig, *,
                     fingerprint: str, progress: bool = False) -> tuple[BackboneProfile, Features]:
    """Feature pass (cached) plus every signal and transferability metric for one backbone."""
    feats = extract_features(
        backbone, samples, image_size=config.image_size, batch_size=config.batch_size,
        num_workers=config.num_workers, device=config.device, cache_dir=config.cache_dir,
        fingerprint=fingerprint, progress=progress, image_cache_dir=config.image_cache_dir,
    )
    divergence, divergence_all, stages = bn_divergence(backbone, feats)
    signals: dict[str, float | None] = {"bn_divergence": divergence, "bn_divergence_all": divergence_all}
    signals.update(metrics.softmax_signals(feats.logits))
    notes = []
    if divergence is None:
        notes.append("no BatchNorm layers: similarity from the ImageNet head's signals only")
    if not backbone.pretrained:
        notes.append("random weights: similarity and transferability are not meaningful")
    if config.image_size and config.image_size != backbone.image_size:
        notes.append(
            f"profiled at {config.image_size} px instead of the native {backbone.image_size} px: the similarity "
            "score is calibrated at the native size and is unreliable at this one"
        )
    if config.reference:
        ref = load_reference(config.reference)
        if ref["backbone"] == backbone.name and ref["weights"] == backbone.weights:
            mu, cov = _embedding_stats(feats.embeddings)
            signals["frechet_to_reference"] = metrics.frechet_distance(mu, cov, ref["mean"], ref["cov"])
            notes.append(f"Frechet distance to the reference built from {ref['folder']} ({ref['n']} images)")
        else:
            notes.append(f"the reference was built with {ref['backbone']} ({ref['weights']}), not this backbone")
    transfer, curve, fit = _transferability(feats, cv=config.cv, seed=config.seed)
    n = len(feats.labels)
    return BackboneProfile(
        name=backbone.name,
        weights=backbone.weights,
        image_size=int(config.image_size or backbone.image_size),
        n_sample=n,
        similarity=similarity_score(signals),
        signals=signals,
        signal_scores=signal_scores(signals),
        stage_divergence=stages,
        transferability=transfer,
        learning_curve=tuple(curve),
        curve_fit=fit,
        seconds=feats.seconds,
        images_per_second=n / feats.seconds if feats.seconds > 0 else float("nan"),
        cached=feats.cached,
        notes=tuple(notes),
    ), feats


def profile_one(name: str, samples: Sequence[Sample], config: ProfileConfig, *, fingerprint: str,
                progress: bool = False) -> tuple[BackboneProfile, Features]:
    """Build backbone ``name`` (random weights from a seeded stream: the same every time) and
    profile ``samples`` with it: what :func:`profile` does per backbone, in any process."""
    with isolated_random(derive_seed("profile", name, config.seed)):
        backbone = get_backbone(name, weights=config.weights)
    return profile_backbone(backbone, samples, config, fingerprint=fingerprint, progress=progress)


def profile(
    data: str | os.PathLike | Dataset,
    backbones: Sequence[str] = ("efficientnet_lite0",),
    *,
    config: ProfileConfig = ProfileConfig(),
    progress: bool = False,
) -> Profile:
    """Profile a dataset: size, similarity to ImageNet and transferability per backbone.

    Args:
        data: A data folder (see :func:`advisor.data.scan`) or a scanned dataset.
        backbones: Registry names to profile.
        config: Sample size, image size, device, cache.
        progress: Progress bars on stderr.

    Example:
        >>> p = profile("data/", ["efficientnet_lite0"])  # doctest: +SKIP
        >>> p.backbones[0].similarity  # doctest: +SKIP
        0.83
    """
    start = time.perf_counter()
    dataset = data if isinstance(data, Dataset) else scan(data)
    sample = stratified_sample(dataset.samples, per_class=config.per_class, total=config.total, seed=config.seed)
    results, failures = [], []
    use: dict[str, dict[str, int]] = {}
    for name in backbones:
        result, feats = profile_one(name, sample, config, fingerprint=dataset.fingerprint(), progress=progress)
        results.append(result)
        failures.extend(feats.failures)
        tally_use(use, feats.image_cache)
    summary = summarize_dataset(dataset, sample, extra_skipped=failures)
    return Profile(
        dataset=summary,
        backbones=tuple(results),
        config=config,
        device=str(resolve_device(config.device)),
        seconds=time.perf_counter() - start,
        image_cache=summarize_use(use),
    )
