"""Shared fixtures: tiny inputs that every stage's tests can build on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def tiny_image_folder(tmp_path: Path) -> Path:
    """A flat data folder: 2 classes ("cat", "dog") x 4 RGB JPEGs of 16x16 px.

    The two classes differ in colour, so any sensible feature separates them.
    """
    root = tmp_path / "tiny"
    rng = np.random.default_rng(0)
    for name, base in (("cat", (200, 40, 40)), ("dog", (40, 40, 200))):
        (root / name).mkdir(parents=True)
        for i in range(4):
            noise = rng.integers(-20, 21, size=(16, 16, 3))
            pixels = np.clip(np.array(base) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg")
    return root


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """One BLAS thread for numpy/scipy/sklearn: on a shared 2-core machine, several BLAS threads
    made scipy's L-BFGS in the probes 40x slower (contention), and the tests' arrays are tiny."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Each test leaves torch's, numpy's and Python's global RNGs as it found them."""
    import random

    import torch

    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()
    yield
    torch.set_rng_state(torch_state)
    np.random.set_state(np_state)
    random.setstate(py_state)


@pytest.fixture(autouse=True)
def _isolated_feature_cache(tmp_path_factory, monkeypatch):
    """Feature caches go to a per-session temporary folder, never the user's ~/.cache."""
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A session-wide folder to build embedded demo datasets into (built once, reused)."""
    return tmp_path_factory.mktemp("demo")
