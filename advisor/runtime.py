"""Where and how computations run: device, decoding workers, precision, random streams.

One helper each, shared by the profiler and the benchmark, so that both pick the same device,
the same precision and the same seeding rules.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Precision",
    "choose_precision",
    "default_workers",
    "derive_seed",
    "isolated_random",
    "resolve_device",
    "seed_worker",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``.

    Raises:
        ValueError: CUDA (or MPS) was asked for and is not available.

    Example:
        >>> resolve_device("cpu").type
        'cpu'
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available; use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} was asked for but MPS is not available; use --device cpu")
    return dev


def default_workers() -> int:
    """Decoding workers beside the compute: one core is left to the forward pass, at most 8."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True)
class Precision:
    """The arithmetic a device trains and infers in.

    Attributes:
        name: ``"bf16"``, ``"fp16"`` or ``"fp32"`` (part of every cache and run key).
        dtype: The autocast dtype; ``None`` for fp32 (no autocast).
        scaler: Whether training needs a gradient scaler (fp16 only: its range is narrow).
    """

    name: str
    dtype: torch.dtype | None
    scaler: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast for this precision on ``device`` (a no-op context for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only where the precision needs one."""
        return torch.amp.GradScaler(device.type, enabled=self.scaler)


FP32 = Precision("fp32", None, False)


def choose_precision(device: torch.device | str) -> Precision:
    """bf16 where the device supports it natively, else fp16 with a gradient scaler, else fp32.

    CUDA devices from Ampere on run bf16 natively; older CUDA devices get fp16 with a
    ``GradScaler``. MPS gets fp16. The CPU stays in fp32: without native bf16 units, autocast on
    a CPU is slower and less accurate, and fp32 keeps CPU results bit-reproducible.

    Example:
        >>> choose_precision("cpu").name
        'fp32'
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    if dev.type == "cuda":
        major, _ = torch.cuda.get_device_capability(dev)
        if major >= 8 and torch.cuda.is_bf16_supported():
            return Precision("bf16", torch.bfloat16, False)
        return Precision("fp16", torch.float16, True)
    if dev.type == "mps":
        return Precision("fp16", torch.float16, True)
    return FP32


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (a run key, a seed, a factor): stable across processes.

    Python's ``hash`` is salted per process; this is not, so the same run draws the same
    random numbers in any process, on any executor.

    Example:
        >>> derive_seed("abc", 0) == derive_seed("abc", 0) != derive_seed("abc", 1)
        True
    """
    text = "\x1f".join(repr(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


@contextlib.contextmanager
def isolated_random(seed: int) -> Iterator[torch.Generator]:
    """Seed python, numpy and torch (CPU and CUDA) for one run, and restore them afterwards.

    Whatever ran before, the block draws the same numbers; whatever the block draws, the
    caller's streams continue as if it had not run. Yields a ``torch.Generator`` seeded from
    ``seed`` for explicit use (DataLoader order, augmentation).
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        generator = torch.Generator()
        generator.manual_seed(seed)
        try:
            yield generator
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def seed_worker(_worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy and python streams follow the worker's torch seed.

    A module-level function, so it pickles under the ``spawn`` start method.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
