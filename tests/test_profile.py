"""The profiler: one pass collects embeddings, logits, BN statistics; similarity orders real data."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from advisor.backbones import get_backbone
from advisor.data import load_image, scan
from advisor.demo import make_demo
from advisor.profile import (
    Profile,
    ProfileConfig,
    _ChannelStats,
    extract_features,
    profile,
    similarity_score,
)


def test_channel_stats_merge_batches_exactly():
    torch.manual_seed(0)
    xs = [torch.randn(n, 4, 5, 5) * 3 + 1 for n in (1, 7, 2)]
    xs.append((torch.randn(3, 4, 5, 5) + 100).contiguous(memory_format=torch.channels_last))  # large mean
    acc = _ChannelStats(max_images=8)
    for x in xs:
        acc(None, (x,))
    mean, var = acc.result()
    full = torch.cat([x.contiguous() for x in xs]).double()
    assert np.allclose(mean, full.mean(dim=(0, 2, 3)).numpy(), atol=1e-6)
    assert np.allclose(var, full.var(dim=(0, 2, 3), unbiased=False).numpy(), atol=1e-4)
    # only the first max_images of a batch are measured
    few = _ChannelStats(max_images=2)
    few(None, (xs[1],))
    assert np.allclose(few.result()[0], xs[1][:2].double().mean(dim=(0, 2, 3)).numpy(), atol=1e-6)


def test_one_pass_collects_everything_and_is_cached(tiny_image_folder, tmp_path):
    ds = scan(tiny_image_folder)
    bb = get_backbone("resnet18", weights=None)
    kwargs = dict(image_size=32, batch_size=3, num_workers=0, cache_dir=tmp_path / "c", fingerprint=ds.fingerprint())
    first = extract_features(bb, ds.samples, **kwargs)
    assert first.embeddings.shape == (8, 512) and first.logits.shape == (8, 1000)
    assert first.pixels.shape == (8, 3 * 16 * 16)
    assert sorted(first.labels.tolist()) == [0] * 4 + [1] * 4
    assert set(first.bn_mean) == {n for n, _ in bb.batchnorm_layers()}
    assert first.cached is False
    # the hooks saw the same activations as a plain forward pass: the embedding matches
    x = torch.stack([bb.eval_transform(32)(load_image(p)) for p in first.paths])
    with torch.no_grad():
        emb, _ = bb.embed(x)
    assert np.allclose(emb.numpy(), first.embeddings, atol=1e-4)
    again = extract_features(bb, ds.samples, **kwargs)
    assert again.cached is True
    assert np.array_equal(again.embeddings, first.embeddings)
    assert again.paths == first.paths
    # another image size is another cache entry
    assert extract_features(bb, ds.samples, **{**kwargs, "image_size": 48}).cached is False


def test_bad_image_in_the_sample_is_listed_not_fatal(tiny_image_folder):
    bad = tiny_image_folder / "cat" / "broken.jpg"
    data = (tiny_image_folder / "cat" / "0.jpg").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    result = profile(tiny_image_folder, ["resnet18"],
                     config=ProfileConfig(weights=None, image_size=32, num_workers=0, cache_dir="", cv=2))
    skipped = {s["path"]: s["reason"] for s in result.dataset.skipped}
    assert str(bad) in skipped and "truncated" in skipped[str(bad)]
    assert result.backbones[0].n_sample == 8
    assert result.dataset.n_images == 9  # the listing still counts it; decoding did not


def test_profile_round_trips_through_json(tiny_image_folder):
    result = profile(tiny_image_folder, ["resnet18"],
                     config=ProfileConfig(weights=None, image_size=32, num_workers=0, cv=2))
    text = json.dumps(result.to_dict())
    back = Profile.from_dict(json.loads(text))
    assert back == result
    assert result.dataset.class_counts == {"cat": 4, "dog": 4}
    notes = " ".join(result.backbones[0].notes)
    assert "random weights" in notes and "instead of the native 224 px" in notes


def test_similarity_formula_is_monotone_and_bounded():
    near = {"bn_divergence": 0.1, "max_softmax": 0.5, "entropy": 0.35, "energy": -9.5}
    far = {"bn_divergence": 0.6, "max_softmax": 0.08, "entropy": 0.8, "energy": -7.8}
    assert 0.9 < similarity_score(near) <= 1.0
    assert 0.0 <= similarity_score(far) < 0.1
    without_bn = dict(near, bn_divergence=None)  # vgg16-style: the head's signals alone
    assert 0.9 < similarity_score(without_bn) <= 1.0


@pytest.mark.slow
def test_similarity_orders_real_data_near_above_far(demo_root):
    """Natural photos above microscopy, digits, drawings, noise and flat images (real weights)."""
    sizes = {"photos": 8, "microscopy": 10, "digits": 5, "shapes": 10, "noise": 12, "flat": 12}
    config = ProfileConfig(per_class=12, cache_dir="", cv=2)
    scores = {}
    for name, per_class in sizes.items():
        root = make_demo(demo_root, name, per_class=per_class)
        scores[name] = profile(root, ["efficientnet_lite0"], config=config).backbones[0].similarity
    assert scores["photos"] > 0.6, scores
    for far in ("microscopy", "digits", "shapes", "noise", "flat"):
        assert scores[far] < 0.4, scores
        assert scores["photos"] - scores[far] > 0.3, scores


@pytest.mark.slow
def test_reference_frechet_is_smaller_for_data_like_the_reference(demo_root, tmp_path):
    from advisor.profile import build_reference, load_reference

    ref_root = make_demo(tmp_path / "ref", "photos", per_class=6, seed=1)  # other crops than the target's
    ref = build_reference(ref_root, out=tmp_path / "photos.npz")
    meta = load_reference(ref)
    assert meta["n"] == 36 and meta["mean"].shape == (1280,) and meta["cov"].shape == (1280, 1280)
    config = ProfileConfig(per_class=5, cache_dir="", cv=2, reference=str(ref))
    near = profile(make_demo(demo_root, "photos", per_class=8), ["efficientnet_lite0"], config=config)
    far = profile(make_demo(demo_root, "digits", per_class=5), ["efficientnet_lite0"], config=config)
    d_near = near.backbones[0].signals["frechet_to_reference"]
    d_far = far.backbones[0].signals["frechet_to_reference"]
    assert 0 < d_near < d_far
    with pytest.raises(ValueError, match="advisor reference build"):
        load_reference(tmp_path / "missing.npz")


def test_a_second_backbone_with_the_same_resize_decodes_nothing(tiny_image_folder, tmp_path):
    """The decoded-image cache is shared by every backbone that resizes to the same size."""
    config = ProfileConfig(per_class=4, image_size=32, weights=None, num_workers=0, cache_dir="",
                           image_cache_dir=str(tmp_path / "images"))
    first = profile(tiny_image_folder, ["resnet18"], config=config)
    assert first.image_cache["built"] == 8 and first.image_cache["reused"] == 0
    second = profile(tiny_image_folder, ["mobilenet_v3_small"], config=config)  # also resizes to 256 px
    assert second.image_cache["built"] == 0 and second.image_cache["reused"] == 8
    assert second.image_cache["path"] == first.image_cache["path"]
    streamed = profile(tiny_image_folder, ["resnet18"], config=replace(config, image_cache_dir=""))
    assert streamed.image_cache["path"] is None
    # The same pixels and (seeded) random weights either way: every number agrees exactly.
    a, b = first.backbones[0].transferability, streamed.backbones[0].transferability
    assert a["pixel_linear_probe"] == b["pixel_linear_probe"] and a["logme"] == b["logme"]
