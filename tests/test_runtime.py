"""One helper picks the precision for profile and bench alike; runs own their random streams."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from advisor.runtime import choose_precision, derive_seed, isolated_random


@pytest.mark.parametrize("capability, bf16, expected, scaler", [
    ((9, 0), True, "bf16", False),   # Hopper: native bf16
    ((8, 0), True, "bf16", False),   # Ampere
    ((7, 5), False, "fp16", True),   # Turing: fp16 with a gradient scaler
    ((6, 1), False, "fp16", True),   # Pascal
])
def test_cuda_precision_follows_the_device(monkeypatch, capability, bf16, expected, scaler):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    p = choose_precision(torch.device("cuda"))
    assert (p.name, p.scaler) == (expected, scaler)
    assert p.dtype == (torch.bfloat16 if expected == "bf16" else torch.float16)


def test_cpu_stays_in_fp32_without_autocast_or_scaler():
    p = choose_precision("cpu")
    assert (p.name, p.dtype, p.scaler) == ("fp32", None, False)
    with p.autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert not p.grad_scaler(torch.device("cpu")).is_enabled()


def test_a_run_draws_the_same_numbers_whatever_ran_before_and_leaves_the_caller_alone():
    seed = derive_seed("some-run-key", 0)
    assert seed == derive_seed("some-run-key", 0) != derive_seed("some-run-key", 1)

    def draws():
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = draws()  # the caller's streams, with no run in between
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with isolated_random(seed) as gen:
        first = (*draws(), torch.rand(1, generator=gen).item())
    assert draws() == expected  # the run left the caller's streams where they were
    torch.rand(100), np.random.rand(100), random.random()  # something else ran in between
    with isolated_random(seed) as gen:
        second = (*draws(), torch.rand(1, generator=gen).item())
    assert first == second
