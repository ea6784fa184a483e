"""Backbone rankings: the advisor's beside ImageNet top-1 and k-NN, scored against measured accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from advisor import ranking
from advisor.bench.results import RunResult, encode_correct, rank_correlation
from advisor.metrics import weighted_tau_interval


def _profile(name, probe, knn, weights="imagenet"):
    return {"name": name, "weights": weights, "transferability": {"linear_probe": probe, "knn_probe": knn}}


def test_three_rankings_order_the_backbones_by_their_own_scores(monkeypatch):
    monkeypatch.setattr(ranking, "_top1_table", lambda: {"a": 0.70, "b": 0.80})
    ranked = ranking.rankings([_profile("a", 0.9, 0.6), _profile("b", 0.8, 0.7), _profile("c", 0.5, 0.9, "random"),
                               _profile("d", 0.4, 0.1)])
    assert list(ranked) == list(ranking.RANKINGS)
    assert [r["backbone"] for r in ranked["advisor"]["order"]] == ["a", "b", "c", "d"]
    assert [r["backbone"] for r in ranked["knn_probe"]["order"]] == ["c", "b", "a", "d"]
    # random weights sit at chance; a name without a published figure is listed apart, not guessed
    assert [(r["backbone"], r["score"]) for r in ranked["imagenet_top1"]["order"]] == [
        ("b", 0.80), ("a", 0.70), ("c", ranking.CHANCE_TOP1)]
    assert ranked["imagenet_top1"]["unscored"] == ["d"]


def test_tau_interval_is_tight_when_images_separate_the_models_and_wide_when_they_do_not():
    rng = np.random.default_rng(0)
    far = [[rng.random(400) < p] for p in (0.95, 0.75, 0.55)]  # 20 points apart on 400 images
    tau, low, high = weighted_tau_interval(np.array([3.0, 2.0, 1.0]), far, seed=1)
    assert tau == pytest.approx(1.0) and low == pytest.approx(1.0) and high == pytest.approx(1.0)
    near = [[rng.random(40) < p] for p in (0.80, 0.79, 0.78)]  # 1 point apart on 40 images
    tau, low, high = weighted_tau_interval(np.array([3.0, 2.0, 1.0]), near, seed=1)
    assert low < 0 < high and low <= tau <= high
    # the same inputs and seed give the same interval
    assert weighted_tau_interval(np.array([3.0, 2.0, 1.0]), near, seed=1) == (tau, low, high)


def test_tau_interval_rejects_records_that_do_not_pair():
    with pytest.raises(ValueError, match="pair up"):
        weighted_tau_interval(np.array([1.0, 2.0]), [[np.ones(5, bool)], [np.ones(6, bool)]])


def _run(backbone, strategy, correct, seed=0):
    correct = np.asarray(correct, bool)
    return RunResult(backbone, strategy, seed, "ok", accuracy=float(correct.mean()), correct=encode_correct(correct),
                     details={"n_report": len(correct)})


def test_bench_scores_each_ranking_against_the_best_strategy_of_each_backbone(monkeypatch):
    monkeypatch.setattr(ranking, "_top1_table", lambda: {"a": 0.60, "b": 0.70, "c": 0.80})
    rng = np.random.default_rng(3)
    n = 300
    truth = {"a": 0.95, "b": 0.80, "c": 0.60}  # measured: a > b > c
    runs = []
    for b, p in truth.items():
        runs.append(_run(b, "finetune", rng.random(n) < p))
        runs.append(_run(b, "freeze", rng.random(n) < p - 0.2))  # never the backbone's best
    profiles = {"a": _profile("a", 0.9, 0.5), "b": _profile("b", 0.8, 0.6), "c": _profile("c", 0.7, 0.7)}
    rc = rank_correlation(runs, profiles)
    assert [m["strategy"] for m in rc["measured"]] == ["finetune"] * 3
    taus = {r["ranking"]: r for r in rc["rankings"]}
    assert taus["advisor"]["weighted_tau"] == pytest.approx(1.0)  # probe orders them as measured
    assert taus["imagenet_top1"]["weighted_tau"] == pytest.approx(-1.0)  # top-1 orders them backwards
    assert taus["knn_probe"]["weighted_tau"] == pytest.approx(-1.0)
    assert taus["advisor"]["low"] > 0.5 and taus["imagenet_top1"]["high"] < -0.5
    assert rc["best_ranking"] == "advisor"


def test_bench_without_per_image_records_reports_tau_without_an_interval():
    runs = [RunResult(b, "freeze", 0, "ok", accuracy=a) for b, a in (("a", 0.9), ("b", 0.7))]
    rc = rank_correlation(runs, {"a": _profile("a", 0.8, 0.8), "b": _profile("b", 0.6, 0.9)})
    taus = {r["ranking"]: r for r in rc["rankings"]}
    assert taus["advisor"]["weighted_tau"] == pytest.approx(1.0) and taus["advisor"]["low"] is None
    assert taus["knn_probe"]["weighted_tau"] == pytest.approx(-1.0)


def test_recommend_reports_the_three_rankings_when_several_backbones_were_profiled():
    from advisor.decide import Thresholds, recommend
    from advisor.types import BackboneProfile, DatasetSummary, Profile, ProfileConfig

    ds = DatasetSummary(path="/d", layout="flat", n_images=1000, n_classes=2, class_counts={"a": 500, "b": 500},
                        splits={}, per_class={}, imbalance_ratio=1.0, skipped=(), empty_classes=(), image_stats={},
                        fingerprint="x")

    def bb(name, probe, knn):
        return BackboneProfile(name=name, weights="imagenet", image_size=224, n_sample=100, similarity=0.9,
                               signals={}, signal_scores={}, stage_divergence={},
                               transferability={"linear_probe": probe, "knn_probe": knn, "pixel_linear_probe": 0.5,
                                                "chance": 0.5},
                               learning_curve=(), curve_fit=None, seconds=1.0, images_per_second=1.0)

    def rec(*backbones):
        return recommend(Profile(dataset=ds, backbones=backbones, config=ProfileConfig(), device="cpu", seconds=1.0),
                         thresholds=Thresholds())

    two = rec(bb("x", 0.9, 0.7), bb("y", 0.8, 0.95))
    assert [r["backbone"] for r in two.rankings["advisor"]["order"]] == ["x", "y"] and two.backbone == "x"
    assert [r["backbone"] for r in two.rankings["knn_probe"]["order"]] == ["y", "x"]
    assert type(two).from_dict(two.to_dict()) == two
    assert rec(bb("x", 0.9, 0.7)).rankings is None
