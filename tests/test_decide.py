"""The decision engine: the document's four cases, evidence overrides, thresholds, confidence."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from advisor.decide import Recommendation, Thresholds, load_thresholds, recommend
from advisor.profile import BackboneProfile, DatasetSummary, Profile, ProfileConfig


def _profile(per_class: int, similarity: float, *, probe: float = 0.9, pixels: float = 0.5,
             slope: float = 0.0, extra: tuple[BackboneProfile, ...] = ()) -> Profile:
    counts = {"a": per_class, "b": per_class}
    ds = DatasetSummary(
        path="/d", layout="flat", n_images=2 * per_class, n_classes=2, class_counts=counts, splits={},
        per_class={"min": per_class, "median": per_class, "max": per_class}, imbalance_ratio=1.0,
        skipped=(), empty_classes=(), image_stats={}, fingerprint="x",
    )
    return Profile(dataset=ds, backbones=(_backbone("efficientnet_lite0", similarity, probe, pixels, slope),) + extra,
                   config=ProfileConfig(), device="cpu", seconds=1.0)


def _backbone(name, similarity, probe, pixels, slope=0.0):
    return BackboneProfile(
        name=name, weights="imagenet", image_size=224, n_sample=100, similarity=similarity,
        signals={"bn_divergence": 0.1, "max_softmax": 0.4, "entropy": 0.4, "energy": -9.0},
        signal_scores={}, stage_divergence={},
        transferability={"linear_probe": probe, "pixel_linear_probe": pixels, "chance": 0.5, "logme": 0.1},
        learning_curve=(), curve_slope=slope, seconds=1.0, images_per_second=10.0,
    )


@pytest.mark.parametrize(
    "per_class, similarity, probe, strategy, case",
    [
        (500, 0.9, 0.90, "freeze", "enough data, similar to ImageNet"),
        (500, 0.1, 0.90, "finetune", "enough data, different from ImageNet"),
        (20, 0.9, 0.90, "freeze", "little data, similar to ImageNet"),
        (20, 0.1, 0.55, "not_worth_using", "little data, different from ImageNet"),
    ],
)
def test_the_four_cases(per_class, similarity, probe, strategy, case):
    rec = recommend(_profile(per_class, similarity, probe=probe, pixels=0.5))
    assert (rec.strategy, rec.case) == (strategy, case)
    assert rec.overrides == ()
    assert 0.0 <= rec.confidence <= 1.0
    assert any(f"{per_class}" in r for r in rec.reasons)
    assert rec.settings["strategy"] == {"not_worth_using": "scratch"}.get(strategy, strategy)


def test_features_that_add_nothing_override_freeze():
    # chance is 50 %: a 55 % probe is 10 % of the way to perfect, and pixels do as well
    rec = recommend(_profile(20, 0.9, probe=0.55, pixels=0.56))
    assert rec.strategy == "not_worth_using" and "features_add_nothing" in rec.overrides
    # enough data and features no better than pixels: scratch catches up
    rec = recommend(_profile(500, 0.9, probe=0.95, pixels=0.95))
    assert rec.strategy == "not_worth_using" and "features_add_nothing" in rec.overrides
    rec = recommend(_profile(500, 0.1, probe=0.93, pixels=0.925))  # full digits, measured
    assert rec.strategy == "not_worth_using"
    # an easy task where pixels match strong features is no reason to drop them
    assert recommend(_profile(20, 0.9, probe=0.95, pixels=0.95)).strategy == "freeze"


def test_features_that_transfer_override_not_worth_using():
    rec = recommend(_profile(20, 0.1, probe=0.95, pixels=0.95))
    assert rec.strategy == "finetune" and rec.overrides == ("features_transfer",)
    assert rec.settings["backbone_lr"] < rec.settings["head_lr"]
    # too few images per class to fine-tune: freeze the features that transfer
    few = recommend(_profile(10, 0.1, probe=0.95, pixels=0.5))
    assert few.strategy == "freeze" and few.overrides == ("features_transfer",)
    assert rec.case == "little data, different from ImageNet"  # the measured case is kept
    assert any("Raw pixels do as well" in r for r in rec.reasons)
    # weak features on little, different data: the case stands
    rec = recommend(_profile(20, 0.1, probe=0.70, pixels=0.72))
    assert rec.strategy == "not_worth_using" and rec.overrides == ()


def test_near_perfect_probe_leaves_finetuning_no_room():
    rec = recommend(_profile(500, 0.1, probe=0.99, pixels=0.5))
    assert rec.strategy == "freeze" and rec.overrides == ("probe_ceiling",)


def test_rising_learning_curve_means_little_data():
    # the sample (n_sample=100) holds the whole dataset: its curve speaks for all of it
    rec = recommend(_profile(50, 0.1, probe=0.9, pixels=0.5, slope=0.10))
    assert rec.axes["size"]["curve_rising"] is True
    assert recommend(_profile(50, 0.1, probe=0.9, pixels=0.5, slope=0.0)).axes["size"]["curve_rising"] is False
    # a capped sample of a larger dataset: the curve's end says nothing about the rest
    rec = recommend(_profile(500, 0.1, probe=0.9, pixels=0.5, slope=0.10))
    assert rec.axes["size"]["curve_rising"] is False and rec.strategy == "finetune"


def test_rising_curve_on_enough_images_turns_the_case_to_little():
    prof = _profile(120, 0.1, probe=0.9, pixels=0.5, slope=0.10)
    prof = replace(prof, backbones=(replace(prof.backbones[0], n_sample=240),))
    rec = recommend(prof)
    assert rec.axes["size"]["curve_rising"] is True
    assert rec.strategy == "finetune"  # little + different, but the features transfer (0.9 vs 0.5)
    assert rec.case == "little data, different from ImageNet"


def test_confidence_grows_with_distance_from_thresholds():
    close = recommend(_profile(110, 0.55)).confidence
    far = recommend(_profile(2000, 0.98)).confidence
    assert far > close + 0.4


def test_ranking_prefers_the_better_probe():
    other = _backbone("resnet18", 0.8, 0.97, 0.5)
    rec = recommend(_profile(500, 0.9, probe=0.9, extra=(other,)))
    assert rec.backbone == "resnet18"
    assert [r["backbone"] for r in rec.ranking] == ["resnet18", "efficientnet_lite0"]


def test_thresholds_override_and_files(tmp_path):
    prof = _profile(150, 0.6)
    assert recommend(prof).strategy == "freeze"
    strict = Thresholds(images_per_class=200, similarity=0.7)
    assert recommend(prof, thresholds=strict).case == "little data, different from ImageNet"
    (tmp_path / "t.toml").write_text("[thresholds]\nsimilarity = 0.7\nimages_per_class = 200\n")
    assert load_thresholds(tmp_path / "t.toml") == strict
    (tmp_path / "t.json").write_text(json.dumps({"similarity": 0.7, "images_per_class": 200}))
    assert load_thresholds(tmp_path / "t.json") == strict
    (tmp_path / "bad.json").write_text('{"simlarity": 0.7}')
    with pytest.raises(ValueError, match="unknown threshold.*simlarity"):
        load_thresholds(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="missing.json"):
        load_thresholds(tmp_path / "missing.json")


def test_recommendation_round_trips_through_json():
    rec = recommend(_profile(500, 0.1))
    assert Recommendation.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec


def test_a_class_without_training_images_is_called_out():
    prof = _profile(500, 0.9)
    ds = replace(prof.dataset, layout="split",
                 splits={"train": {"a": 500, "b": 500, "c": 0}, "val": {"a": 50, "b": 50, "c": 3}})
    rec = recommend(replace(prof, dataset=ds))
    assert any("no training images (c)" in r for r in rec.reasons)
    assert not any("no training images" in r for r in recommend(prof).reasons)
