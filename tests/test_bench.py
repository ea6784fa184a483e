"""Tests for advisor.bench: the verdict rule, real tiny runs, resuming, determinism, freezing."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from advisor import bench as bench_mod
from advisor import report
from advisor.backbones import get_backbone
from advisor.bench import (
    STRATEGIES,
    BenchConfig,
    BenchResult,
    Freeze,
    Partial,
    RunResult,
    append_result,
    bench,
    get_strategy,
    rank_correlation,
    read_results,
    train_run,
    verdict,
)
from advisor.data import scan, stratified_split
from advisor.demo import make_demo

# Random weights and 32 px images: every path runs offline in a few seconds on a CPU.
TINY = BenchConfig(epochs=2, image_size=32, batch_size=16, weights=None, num_workers=0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads with one core busy stall
    each other at every barrier (measured: 30x slower), and the tests only need tiny models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("bench-demo"), "digits", per_class=8)


@pytest.fixture
def config(tmp_path) -> BenchConfig:
    return replace(TINY, cache_dir=str(tmp_path / "features"))


def run(strategy: str, acc: float | None, *, backbone: str = "resnet18", seed: int = 0,
        status: str = "ok", seconds: float = 1.0) -> RunResult:
    return RunResult(backbone=backbone, strategy=strategy, seed=seed, status=status, val_accuracy=acc,
                     macro_f1=acc, train_seconds=seconds)


# --------------------------------------------------------------------------- verdict rule


@pytest.mark.parametrize("accuracies, expected, strategy", [
    ({"freeze": 0.84, "finetune": 0.85, "scratch": 0.50}, "freeze", "freeze"),        # within margin
    ({"freeze": 0.80, "finetune": 0.90, "scratch": 0.50}, "finetune", "finetune"),    # clearly best
    ({"freeze": 0.70, "finetune": 0.80, "scratch": 0.79}, "not_worth_using", "scratch"),
    ({"freeze": 0.70, "finetune": 0.80, "scratch": 0.78}, "not_worth_using", "scratch"),  # exactly margin
    ({"freeze": 0.70, "finetune": 0.80, "scratch": 0.95}, "not_worth_using", "scratch"),
    ({"freeze": 0.85, "finetune": 0.87, "scratch": 0.10}, "freeze", "freeze"),        # exactly margin
    ({"freeze": 0.90, "finetune": 0.90, "scratch": 0.10}, "freeze", "freeze"),        # tie: cheaper
    ({"freeze": 0.70, "partial": 0.86, "finetune": 0.87, "scratch": 0.1}, "finetune", "partial"),  # cheaper
    ({"freeze": 0.80, "finetune": 0.90}, "finetune", "finetune"),                     # no scratch run
])
def test_verdict_rule(accuracies, expected, strategy):
    runs = [run(s, a) for s, a in accuracies.items()]
    w = verdict(runs, margin=0.02)
    assert (w["verdict"], w["strategy"], w["backbone"]) == (expected, strategy, "resnet18")
    assert w["accuracy"] == pytest.approx(accuracies[strategy])
    assert "2.0 points" in w["rule"] and "2.0-point margin" in w["rule"]


def test_verdict_uses_seed_means_ignores_failures_and_picks_best_backbone():
    runs = [run("freeze", 0.80, seed=0), run("freeze", 0.90, seed=1),      # mean 0.85
            run("finetune", 0.86, seed=0), run("finetune", None, seed=1, status="failed"),
            run("scratch", 0.3),
            run("freeze", 0.60, backbone="vgg"), run("finetune", 0.95, backbone="vgg"), run("scratch", 0.2, backbone="vgg")]
    w = verdict(runs, margin=0.02)
    assert (w["backbone"], w["verdict"], w["accuracy"]) == ("vgg", "finetune", pytest.approx(0.95))
    per = {v["backbone"]: v for v in w["per_backbone"]}
    assert per["resnet18"]["verdict"] == "freeze" and per["resnet18"]["accuracy"] == pytest.approx(0.85)
    assert "vgg" in w["rule"]
    wider = verdict(runs, margin=0.8)  # scratch is within 80 points of everything: not worth using
    assert wider["verdict"] == "not_worth_using" and "80.0 points" in wider["rule"]


def test_verdict_without_finished_pretrained_runs():
    w = verdict([run("scratch", 0.5), run("freeze", None, status="failed")], margin=0.02)
    assert w["verdict"] is None and "no verdict" in w["rule"].lower()


@pytest.mark.parametrize("advice, expected", [("freeze", True), ("finetune", False), (None, None)])
def test_agreement(digits, config, advice, expected, monkeypatch):
    fake = {"freeze": 0.9, "finetune": 0.91, "scratch": 0.2}
    monkeypatch.setattr(bench_mod, "train_run", lambda strategy, backbone, *a, seed=0, **k: run(
        strategy.name, fake[strategy.name], backbone=backbone, seed=seed))
    rec = {"strategy": advice, "backbone": "resnet18"} if advice else None
    result = bench(digits, ["resnet18"], config=config, recommendation=rec)
    assert result.winner["verdict"] == "freeze"
    assert result.agreement is expected


def test_rank_correlation_of_transferability_scores():
    runs = [run("freeze", a, backbone=b) for b, a in (("a", 0.9), ("b", 0.7), ("c", 0.5))]
    profiles = {b: {"transferability": {"linear_probe": p, "logme": -p}} for b, p in (("a", 0.8), ("b", 0.6), ("c", 0.4))}
    rc = rank_correlation(runs, profiles)
    taus = {m["metric"]: m["weighted_tau"] for m in rc["metric"]}
    assert rc["n_backbones"] == 3
    assert taus["linear_probe"] == pytest.approx(1.0) and taus["logme"] == pytest.approx(-1.0)
    assert rank_correlation(runs[:1], profiles) is None
    assert rank_correlation(runs, None) is None


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(ValueError, match="freeze, partial, finetune"):
        get_strategy("fine-tune")
    with pytest.raises(ValueError, match="valid strategies"):
        BenchConfig(strategies=("freeze", "linear"))
    assert [STRATEGIES[n].cost_rank for n in ("freeze", "partial", "finetune", "scratch")] == [0, 1, 2, 2]


# --------------------------------------------------------------------------- a real tiny run


def test_tiny_real_run_measures_and_reports(digits, config, tmp_path):
    result = bench(digits, ["resnet18"], config=config)
    assert [r.strategy for r in result.runs] == ["freeze", "finetune", "scratch"]
    for r in result.runs:
        assert r.status == "ok", r.error
        assert 0.0 <= r.val_accuracy <= 1.0 and 0.0 <= r.macro_f1 <= 1.0
        assert len(r.curve) == config.epochs == r.recipe["epochs"]
        assert [p["epoch"] for p in r.curve] == [1, 2]
        assert r.images_per_second > 0 and r.train_seconds > 0 and r.peak_memory_mb > 0
        assert 1 <= r.epochs_to_90 <= config.epochs
        assert r.curve[-1]["val_accuracy"] == r.val_accuracy
        assert r.details["n_train"] == result.protocol["n_train"] == 64
        assert r.details["n_val"] == result.protocol["n_val"] == 16
    recipes = {r.strategy: r.recipe for r in result.runs}
    assert recipes["finetune"]["lr_backbone"] < recipes["finetune"]["lr_head"]
    assert recipes["scratch"]["lr_backbone"] > recipes["finetune"]["lr_backbone"]
    assert recipes["finetune"]["augment"] == recipes["scratch"]["augment"]
    for s in result.summary:
        accs = [r.val_accuracy for r in result.runs if r.strategy == s["strategy"]]
        assert s["mean_accuracy"] == pytest.approx(np.mean(accs)) and s["n_seeds"] == 1
    d = result.to_dict()
    assert d["kind"] == "bench" and set(d) >= {"created", "dataset", "protocol", "runs", "summary", "winner",
                                              "recommendation", "agreement", "rank_correlation", "reproduction"}
    text = json.dumps(d, allow_nan=False)
    again = BenchResult.from_dict(json.loads(text))
    assert again == result and again.to_dict() == d
    html, twin = report.write_bench_report(d, tmp_path / "reports")
    assert html.stat().st_size > 5000 and json.loads(twin.read_text())["winner"] == d["winner"]
    assert "resnet18" in html.read_text()


def test_several_seeds_give_mean_and_std(digits, config):
    result = bench(digits, ["resnet18"], config=replace(config, strategies=("freeze",), seeds=(0, 1)))
    accs = [r.val_accuracy for r in result.runs]
    (row,) = result.summary
    assert row["n_seeds"] == 2 and row["mean_accuracy"] == pytest.approx(np.mean(accs))
    assert row["std_accuracy"] == pytest.approx(np.std(accs, ddof=1))


@pytest.mark.slow
def test_freeze_trains_on_cached_pretrained_embeddings(demo_root, tmp_path):
    """Real ImageNet weights (efficientnet_lite0, bundled): a linear head on its embeddings
    reads digits far above the 10 % chance level, and the second call reuses the features."""
    root = make_demo(demo_root, "digits", per_class=20)
    cfg = BenchConfig(strategies=("freeze",), epochs=4, image_size=64, cache_dir=str(tmp_path / "cache"))
    first = bench(root, ["efficientnet_lite0"], config=cfg).runs[0]
    assert first.status == "ok", first.error
    assert first.val_accuracy >= 0.6  # measured 0.80 (40 validation images; chance 0.10)
    assert first.details["features_cached"] is False
    t0 = time.perf_counter()
    second = bench(root, ["efficientnet_lite0"], config=cfg).runs[0]
    assert second.details["features_cached"] is True and second.trained
    assert time.perf_counter() - t0 < first.details["extraction_seconds"]
    assert second.val_accuracy == first.val_accuracy
    # The reported cost still includes the (first) extraction, not zero.
    assert second.train_seconds >= second.details["extraction_seconds"] > 0


# --------------------------------------------------------------------------- resume


def _count_fits(monkeypatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    original = bench_mod._fit_once

    def counting(strategy, backbone_name, data, env):
        calls.append((strategy.name, backbone_name))
        return original(strategy, backbone_name, data, env)

    monkeypatch.setattr(bench_mod, "_fit_once", counting)
    return calls


def test_resume_skips_finished_runs_and_reruns_changed_ones(digits, config, tmp_path, monkeypatch):
    cfg = replace(config, strategies=("freeze", "scratch"), epochs=1)
    results = tmp_path / "runs.jsonl"
    calls = _count_fits(monkeypatch)
    first = bench(digits, ["resnet18"], config=cfg, results_file=results)
    assert len(calls) == 2 and all(r.trained for r in first.runs)
    assert len(results.read_text().splitlines()) == 2

    second = bench(digits, ["resnet18"], config=cfg, results_file=results)
    assert len(calls) == 2  # nothing retrained
    assert [r.trained for r in second.runs] == [False, False]
    assert [replace(r, trained=True) for r in second.runs] == list(first.runs)
    assert second.winner == first.winner

    third = bench(digits, ["resnet18"], config=replace(cfg, epochs=2), results_file=results)
    assert len(calls) == 4 and all(r.trained for r in third.runs)
    assert {r.key for r in third.runs}.isdisjoint({r.key for r in first.runs})


def test_torn_last_line_is_skipped_and_that_run_redone(digits, config, tmp_path, monkeypatch):
    cfg = replace(config, strategies=("freeze", "scratch"), epochs=1)
    results = tmp_path / "runs.jsonl"
    bench(digits, ["resnet18"], config=cfg, results_file=results)
    raw = results.read_bytes()
    results.write_bytes(raw[: len(raw) - 40])  # a kill in the middle of the last write
    assert len(read_results(results)) == 1
    calls = _count_fits(monkeypatch)
    again = bench(digits, ["resnet18"], config=cfg, results_file=results)
    assert calls == [("scratch", "resnet18")]
    assert [r.trained for r in again.runs] == [False, True]
    # The new record starts on its own line: the file reads back whole.
    assert [r.strategy for r in read_results(results)] == ["freeze", "scratch"]


def test_failed_run_is_recorded_others_complete_and_it_is_retried(digits, config, tmp_path, monkeypatch):
    cfg = replace(config, epochs=1)
    results = tmp_path / "runs.jsonl"

    original = bench_mod.Finetune.configure

    def broken(self, backbone, num_classes):
        if self.name == "finetune":  # Scratch shares the hook; only fine-tuning breaks
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, backbone, num_classes)

    with monkeypatch.context() as m:
        m.setattr(bench_mod.Finetune, "configure", broken)
        result = bench(digits, ["resnet18"], config=cfg, results_file=results)
    status = {r.strategy: r for r in result.runs}
    assert status["finetune"].status == "failed" and "out of memory" in status["finetune"].error
    assert status["freeze"].status == status["scratch"].status == "ok"
    assert result.summary[1]["n_failed"] == 1 and result.summary[1]["mean_accuracy"] is None
    assert result.winner["verdict"] is not None
    report.write_bench_report(result.to_dict(), tmp_path / "reports")  # a failed run still renders

    calls = _count_fits(monkeypatch)
    again = bench(digits, ["resnet18"], config=cfg, results_file=results)
    assert calls == [("finetune", "resnet18")]
    assert all(r.status == "ok" for r in again.runs)


def test_keyboard_interrupt_keeps_finished_runs(digits, config, tmp_path, monkeypatch):
    cfg = replace(config, strategies=("freeze", "scratch", "finetune"), epochs=1)
    results = tmp_path / "runs.jsonl"
    original = bench_mod._fit_once
    seen = []

    def interrupted(strategy, backbone_name, data, env):
        seen.append(strategy.name)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return original(strategy, backbone_name, data, env)

    monkeypatch.setattr(bench_mod, "_fit_once", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench(digits, ["resnet18"], config=cfg, results_file=results)
    assert [r.strategy for r in read_results(results)] == ["freeze"]

    calls = _count_fits(monkeypatch)
    again = bench(digits, ["resnet18"], config=cfg, results_file=results)
    assert calls == [("scratch", "resnet18"), ("finetune", "resnet18")]
    assert [r.trained for r in again.runs] == [False, True, True]


def test_append_result_writes_whole_lines(tmp_path):
    path = tmp_path / "deep" / "runs.jsonl"
    append_result(path, run("freeze", 0.5))
    path.write_bytes(path.read_bytes() + b'{"backbone": "res')  # torn by another process
    append_result(path, run("scratch", float("nan")))
    runs = read_results(path)
    assert [r.strategy for r in runs] == ["freeze", "scratch"] and runs[1].val_accuracy is None
    assert not any(r.trained for r in runs)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("strategy", ["finetune", "freeze"])
def test_same_seed_same_numbers_on_cpu(digits, config, strategy):
    ds = scan(digits)
    train, val = stratified_split(ds, seed=0)
    cfg = replace(config, device="cpu")
    a = train_run(strategy, "resnet18", train, val, num_classes=10, config=cfg, seed=3)
    b = train_run(strategy, "resnet18", train, val, num_classes=10, config=cfg, seed=3)
    assert a.val_accuracy == b.val_accuracy
    assert [p["train_loss"] for p in a.curve] == [p["train_loss"] for p in b.curve]
    assert [p["val_accuracy"] for p in a.curve] == [p["val_accuracy"] for p in b.curve]
    c = train_run(strategy, "resnet18", train, val, num_classes=10, config=cfg, seed=4)
    assert [p["train_loss"] for p in c.curve] != [p["train_loss"] for p in a.curve]


# --------------------------------------------------------------------------- freezing


def _held(cls, backbone):
    """A subclass of ``cls`` whose build hook hands back ``backbone``, so the test can inspect it."""
    return type(f"Held{cls.__name__}", (cls,), {"build": lambda self, name, weights=None: backbone})


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_freeze_keeps_backbone_and_bn_statistics_and_folds_the_head(digits, config):
    ds = scan(digits)
    train, val = stratified_split(ds, seed=0)
    backbone = get_backbone("resnet18", weights=None)
    before = _snapshot(backbone.model)
    strategy = _held(Freeze, backbone)(Freeze().default_recipe(config))
    result = train_run(strategy, "resnet18", train, val, num_classes=10, config=config)
    after = backbone.model.state_dict()
    for name, tensor in before.items():
        if not name.startswith("fc."):
            assert torch.equal(tensor, after[name]), name  # weights and BN running stats untouched
    assert backbone.model.fc.out_features == 10
    assert all(not m.training for _, m in backbone.batchnorm_layers())
    # The standardisation is folded into the head: the network itself predicts as reported.
    tf = backbone.eval_transform(32)
    from advisor.data import load_image
    x = torch.stack([tf(load_image(s.path)) for s in val])
    with torch.no_grad():
        pred = backbone.forward(x).argmax(1).numpy()
    assert np.mean(pred == np.array([s.label for s in val])) == pytest.approx(result.val_accuracy)


def test_partial_trains_only_the_last_stage(digits, config):
    ds = scan(digits)
    train, val = stratified_split(ds, seed=0)
    backbone = get_backbone("resnet18", weights=None)
    before = _snapshot(backbone.model)
    cfg = replace(config, epochs=1)
    strategy = _held(Partial, backbone)(Partial().default_recipe(cfg))
    result = train_run(strategy, "resnet18", train, val, num_classes=10, config=cfg)
    assert result.recipe["trainable"] == "layer4 + head"
    after = backbone.model.state_dict()
    for name, tensor in before.items():
        if name.startswith(("conv1", "bn1", "layer1", "layer2", "layer3")):
            assert torch.equal(tensor, after[name]), name  # frozen, BN statistics included
    assert not torch.equal(before["layer4.1.conv2.weight"], after["layer4.1.conv2.weight"])
    assert not torch.equal(before["layer4.1.bn2.running_mean"], after["layer4.1.bn2.running_mean"])


@pytest.mark.parametrize("name", ["freeze", "partial", "freeze_unfreeze"])
def test_frozen_batchnorm_stays_in_eval_after_model_train(name):
    strategy = get_strategy(name)(get_strategy(name)().default_recipe(BenchConfig(epochs=3)))
    backbone = get_backbone("resnet18", weights=None)
    strategy.configure(backbone, 5)
    backbone.model.train()
    strategy.on_train_epoch_start(backbone.model, 0)
    assert not backbone.model.bn1.training and not backbone.model.conv1.weight.requires_grad
    assert backbone.model.fc.weight.requires_grad and backbone.model.fc.out_features == 5
    trains = name == "partial"
    assert backbone.model.layer4[1].bn2.training is trains
    assert backbone.model.layer4[1].conv2.weight.requires_grad is trains
    if name == "freeze_unfreeze":
        assert strategy.recipe.unfreeze_epoch == 1
        backbone.model.train()
        strategy.on_train_epoch_start(backbone.model, 1)
        assert backbone.model.bn1.training and backbone.model.conv1.weight.requires_grad


def test_tune_sweeps_learning_rates_and_says_how_it_chose(digits, config):
    cfg = replace(config, strategies=("freeze",), tune=True)
    (r,) = bench(digits, ["resnet18"], config=cfg).runs
    assert r.recipe["lr_sweep"] == [0.3, 1.0, 3.0] and r.recipe["lr_scale"] in (0.3, 1.0, 3.0)
    assert "validation split" in r.recipe["selection"]
    # The L-BFGS head has no learning rate to scale: its L2 strength is divided instead.
    assert r.recipe["weight_decay"] == pytest.approx(Freeze().recipe.weight_decay / r.recipe["lr_scale"])


def test_out_of_memory_halves_the_batch_and_records_it(digits, config, monkeypatch):
    original = Freeze.fit

    def fit(self, backbone, data, env):
        if self.recipe.batch_size > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, backbone, data, env)

    monkeypatch.setattr(Freeze, "fit", fit)
    (r,) = bench(digits, ["resnet18"], config=replace(config, strategies=("freeze",), batch_size=16)).runs
    assert r.status == "ok" and r.recipe["batch_size"] == 4


def test_max_per_class_caps_training_images_only(digits, config):
    result = bench(digits, ["resnet18"], config=replace(config, strategies=("freeze",), max_per_class=3))
    assert result.protocol["n_train"] == result.runs[0].details["n_train"] == 30
    assert result.protocol["n_val"] == 16
