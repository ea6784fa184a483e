"""The decision engine: the document's four cases, evidence overrides, thresholds, confidence."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from advisor.curves import PowerLaw, fit_learning_curve
from advisor.decide import Recommendation, Thresholds, load_thresholds, recommend
from advisor.profile import BackboneProfile, DatasetSummary, Profile, ProfileConfig

FLAT = PowerLaw(a=0.0, b=1.0, c=0.1)  # a probe that more data does not move


def _curve(law: PowerLaw, sizes=(5, 10, 20, 40)) -> dict:
    """A frozen-probe learning curve measured exactly on ``law``, fitted as the profiler does."""
    accs = [law.accuracy(n) for n in sizes]
    return fit_learning_curve(list(sizes), accs, n_val=1000, strategy="freeze").to_dict(bootstrap=True)


def _profile(per_class: int, similarity: float, *, probe: float = 0.9, pixels: float = 0.5,
             law: PowerLaw = FLAT, sizes=(5, 10, 20, 40), extra: tuple[BackboneProfile, ...] = ()) -> Profile:
    counts = {"a": per_class, "b": per_class}
    ds = DatasetSummary(
        path="/d", layout="flat", n_images=2 * per_class, n_classes=2, class_counts=counts, splits={},
        per_class={"min": per_class, "median": per_class, "max": per_class}, imbalance_ratio=1.0,
        skipped=(), empty_classes=(), image_stats={}, fingerprint="x",
    )
    return Profile(dataset=ds, backbones=(_backbone("efficientnet_lite0", similarity, probe, pixels, law, sizes),) + extra,
                   config=ProfileConfig(), device="cpu", seconds=1.0)


def _backbone(name, similarity, probe, pixels, law=FLAT, sizes=(5, 10, 20, 40)):
    return BackboneProfile(
        name=name, weights="imagenet", image_size=224, n_sample=100, similarity=similarity,
        signals={"bn_divergence": 0.1, "max_softmax": 0.4, "entropy": 0.4, "energy": -9.0},
        signal_scores={}, stage_divergence={},
        transferability={"linear_probe": probe, "pixel_linear_probe": pixels, "chance": 0.5, "logme": 0.1},
        learning_curve=tuple({"images_per_class": n, "accuracy": law.accuracy(n), "std": 0.0} for n in sizes),
        curve_fit=_curve(law, sizes), seconds=1.0, images_per_second=10.0,
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
    # One unit: the images per class the bench fits on (64 % of a flat folder), named as such.
    assert any(f"median {0.64 * per_class:.0f} images per class the bench fits on (64 % of the folder" in r
               for r in rec.reasons)


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
    rec = recommend(_profile(50, 0.1, probe=0.95, pixels=0.95))
    assert rec.strategy == "finetune" and rec.overrides == ("features_transfer",)
    # too few images per class to fine-tune (cifar10, 24 per class fitted on): freeze
    few = recommend(_profile(30, 0.1, probe=0.95, pixels=0.5))
    assert few.strategy == "freeze" and few.overrides == ("features_transfer",)
    assert rec.case == "little data, different from ImageNet"  # the measured case is kept
    assert any("Raw pixels do as well" in r for r in rec.reasons)
    # a probe near perfect leaves fine-tuning no room, however many images (bccd_cells: 98.7 %)
    full = recommend(_profile(60, 0.1, probe=0.987, pixels=0.987))
    assert full.strategy == "freeze" and full.overrides == ("features_transfer", "probe_ceiling")
    # weak features on little, different data: the case stands
    rec = recommend(_profile(20, 0.1, probe=0.70, pixels=0.72))
    assert rec.strategy == "not_worth_using" and rec.overrides == ()


def test_near_perfect_probe_leaves_finetuning_no_room():
    rec = recommend(_profile(500, 0.1, probe=0.99, pixels=0.5))
    assert rec.strategy == "freeze" and rec.overrides == ("probe_ceiling",)


RISING = PowerLaw(a=1.5, b=0.5, c=0.0)  # gains about 6 points per doubling at 50 images per class


def test_rising_learning_curve_means_little_data():
    rec = recommend(_profile(50, 0.1, probe=0.9, pixels=0.5, law=RISING))
    size = rec.axes["size"]
    assert size["curve_rising"] is True and size["curve_slope"] == pytest.approx(
        math.log(2) * 1.5 * 0.5 * 32 ** -0.5, abs=2e-3)  # the slope per doubling at 32 (64 % of 50 fitted on)
    assert recommend(_profile(50, 0.1, probe=0.9, pixels=0.5)).axes["size"]["curve_rising"] is False
    # data far beyond the curve's reach (500 > 4 x 40 per class): the curve says nothing of it
    rec = recommend(_profile(500, 0.1, probe=0.9, pixels=0.5, law=RISING))
    assert rec.axes["size"]["curve_reaches_data"] is False and rec.axes["size"]["curve_rising"] is False
    assert rec.strategy == "finetune"


def test_rising_curve_on_enough_images_turns_the_case_to_little():
    rec = recommend(_profile(120, 0.1, probe=0.9, pixels=0.5, law=PowerLaw(a=3.0, b=0.5, c=0.0),
                             sizes=(10, 20, 40, 80)))
    assert rec.axes["size"]["curve_rising"] is True
    assert rec.strategy == "finetune"  # little + different, but the features transfer (0.9 vs 0.5)
    assert rec.case == "little data, different from ImageNet"


def test_the_fitted_curve_says_where_more_data_would_change_the_advice():
    # 40 per class, far from ImageNet, features that carry little (skill 0.4): not worth using now;
    # the probe's curve has levelled off, so from the size threshold on the data counts as enough.
    law = PowerLaw(a=0.5, b=1.0, c=0.3)
    rec = recommend(_profile(40, 0.1, probe=0.7, pixels=0.5, law=law))
    assert rec.strategy == "not_worth_using"
    flip = rec.data_size["flips_at"]
    assert flip["to"] == "finetune" and 100 <= flip["images_per_class"] <= 103
    assert any("with about 10" in r and "fine-tuning" in r for r in rec.reasons)
    assert [p["images_per_class"] for p in rec.data_size["predicted"]] == [80, 160]
    assert rec.data_size["predicted"][0]["accuracy"] == pytest.approx(law.accuracy(80), abs=0.01)
    # similar data stays "freeze" whatever its size: nothing to flip to
    same = recommend(_profile(40, 0.9, probe=0.7, pixels=0.5, law=law))
    assert same.strategy == "freeze" and same.data_size["flips_at"] is None
    assert any("stays freezing" in r for r in same.reasons)


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


@pytest.mark.parametrize("per_class, similarity, probe", [(500, 0.9, 0.9), (500, 0.1, 0.9), (20, 0.1, 0.55)])
def test_the_pipeline_attaches_the_benchs_recipe_and_the_decision_stays_pure(per_class, similarity, probe):
    from advisor.catalogue import suggested_strategy
    from advisor.pipeline import advise

    prof = _profile(per_class, similarity, probe=probe, pixels=0.5)
    pure, rec = recommend(prof), advise(prof)
    assert pure.settings == {} and replace(rec, settings={}) == pure
    assert rec.settings["strategy"] == suggested_strategy(rec.strategy)
    assert (rec.settings["backbone"], rec.settings["image_size"]) == ("efficientnet_lite0", 224)
    if rec.strategy == "finetune":
        assert rec.settings["backbone_lr"] < rec.settings["head_lr"]
