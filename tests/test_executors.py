"""Tests for advisor.bench.executors: the same numbers from the local and the Ray executor, resume
across executors, retries of killed workers, failures without retries, halved batches, the
frozen strategy's feature task, shipped data, two drivers on one results file, and the CLI.

One local Ray instance (2 CPUs) serves the module; grids are resnet18 with random weights at
32 px on the digits demo (8 images per class), one epoch, one torch thread per run.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from threadpoolctl import threadpool_limits

from advisor import report
from advisor.bench import BenchConfig, RunResult, bench, read_results, train_run
from advisor.bench import runner as runner_mod
from advisor.bench.executors import (
    LocalExecutor,
    RayExecutor,
    ResultsLedger,
    make_executor,
    public_address,
)
from advisor.cli import main
from advisor.demo import make_demo
from advisor.pipeline import run_recommend
from advisor.profile import ProfileConfig

TINY = BenchConfig(strategies=("freeze", "finetune"), epochs=1, image_size=32, batch_size=16, seeds=(0, 1),
                   weights=None, num_workers=0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread and one BLAS thread, as each Ray task with one CPU has: the same numbers,
    and no spinning threads on a shared 2-core machine (scipy's L-BFGS of the probes ran 40x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("executors-demo"), "digits", per_class=8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("executors-cache")


@pytest.fixture(scope="module")
def ray_cluster(cache):
    """One local Ray instance for the module; its workers' caches stay in a temporary folder."""
    import ray
    from ray import cloudpickle

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning",
             runtime_env={"env_vars": {"ADVISOR_CACHE": str(cache / "workers")}})
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the failing train functions below
    yield ray
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(digits, cache):
    """The grid on the local executor, one thread per run: the numbers every executor must give."""
    return bench(digits, ["resnet18"], config=replace(TINY, cache_dir=str(cache / "features")),
                 executor=LocalExecutor(threads_per_run=1))


def numbers(result) -> dict:
    return {r.key: (r.status, r.accuracy, r.selection_accuracy, r.macro_f1, [p["train_loss"] for p in r.curve])
            for r in result.runs}


# --------------------------------------------------------------------------- train functions run in workers


def _dies_once(markers: str, spec, env) -> RunResult:
    """Kills its own worker process the first time it trains finetune (a marker file remembers)."""
    marker = Path(markers) / spec.key
    if spec.strategy == "finetune" and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os._exit(1)
    return train_run(spec, env)


def _breaks(attempts: str, spec, env) -> RunResult:
    """finetune raises; freeze runs out of host memory above a batch of 4. Every attempt is logged."""
    with open(Path(attempts) / f"{spec.strategy}-{spec.seed}", "a") as fh:
        fh.write(f"{spec.recipe.batch_size}\n")
    if spec.strategy == "finetune":
        raise ValueError("broken on purpose")
    if spec.recipe.batch_size > 4:
        raise MemoryError("simulated: the host ran out of memory")
    return train_run(spec, env)


# --------------------------------------------------------------------------- no Ray needed


@pytest.mark.parametrize("address, shown", [
    ("ray://alice:s3cret@head.example:10001", "ray://head.example:10001"),
    ("token@10.1.2.3:6379", "10.1.2.3:6379"),
    ("ray://head:10001?token=abc", "ray://head:10001"),
    ("auto", "auto"),
])
def test_public_address_drops_credentials(address, shown):
    assert public_address(address) == shown


def test_ray_only_options_are_refused_with_the_local_executor():
    with pytest.raises(ValueError, match="--address, --ship-data apply only to --executor ray"):
        make_executor("local", address="auto", ship_data=True)
    assert make_executor("local", threads_per_run=2).threads_per_run == 2


def test_ledger_claims_exclude_another_driver_and_take_its_results(tmp_path):
    """Two ledgers on one file, as two drivers have: each lock is the OS's, per open file."""
    path = tmp_path / "runs.jsonl"
    first, second = ResultsLedger(path), ResultsLedger(path)
    assert first.claim("k1") and not second.claim("k1")  # held: the second driver does other runs first
    assert second.claim("k2")
    first.record(RunResult("resnet18", "freeze", 0, "ok", accuracy=0.75, key="k1"))
    first.release("k1")
    assert second.claim("k1")
    assert second.finished("k1").accuracy == 0.75  # finished meanwhile: taken from the file, not retrained
    second.record(RunResult("resnet18", "finetune", 0, "failed", error="ValueError: x", key="k2"))
    second.release_all()
    assert first.finished("k2").status == "failed"  # failed during this call: not tried twice at once
    later = ResultsLedger(path)
    assert set(later.previous) == {"k1"} and later.finished("k2") is None  # a later call retries the failure


def test_two_driver_processes_share_one_results_file(digits, tmp_path):
    """Two terminals, one results file: every run is trained once, every line is whole."""
    results, barrier = tmp_path / "runs.jsonl", tmp_path / "barrier"
    barrier.mkdir()
    script = textwrap.dedent("""
        import json, os, sys, time
        import torch
        from advisor.bench import BenchConfig, bench
        torch.set_num_threads(1)
        data, results, barrier, me, cache = sys.argv[1:]
        open(os.path.join(barrier, me), "w").close()
        while len(os.listdir(barrier)) < 2:  # start together, so that both want the first run
            time.sleep(0.02)
        config = BenchConfig(strategies=("freeze", "finetune"), epochs=1, image_size=32, batch_size=16,
                             seeds=(0, 1), weights=None, num_workers=0, cache_dir=cache)
        result = bench(data, ["resnet18"], config=config, results_file=results)
        print(json.dumps([[r.key, r.trained, r.accuracy] for r in result.runs]))
    """)
    env = {**os.environ, "ADVISOR_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(digits), str(results), str(barrier), name,
                               str(tmp_path / "features")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
             for name in ("a", "b")]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    lines = results.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["status"] == "ok" for line in lines)
    assert len({json.loads(line)["key"] for line in lines}) == 4
    trained = [sum(t for _k, t, _a in out) for out in outputs]
    assert sum(trained) == 4 and min(trained) >= 1, trained  # split between them, never twice
    assert [(k, a) for k, _t, a in outputs[0]] == [(k, a) for k, _t, a in outputs[1]]


def test_executor_ray_without_ray_says_how_to_install_it(digits, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    out = CliRunner().invoke(main, ["bench", str(digits), "--executor", "ray", "--out", str(tmp_path), "-q"])
    assert out.exit_code == 1
    assert "pip install 'transfer-advisor[ray]'" in out.output and len(out.output.strip().splitlines()) == 1


def test_unreachable_cluster_names_the_address_without_credentials(digits, tmp_path):
    out = CliRunner().invoke(main, ["recommend", str(digits), "--executor", "ray", "--address",
                                    "ray://bob:hunter2@127.0.0.1:1", "--out", str(tmp_path), "-q"])
    assert out.exit_code == 1 and len(out.output.strip().splitlines()) == 1, out.output
    assert "ray://127.0.0.1:1" in out.output and "ray start --head" in out.output
    assert "hunter2" not in out.output


# --------------------------------------------------------------------------- on Ray


def test_ray_gives_the_local_numbers_and_both_resume_from_each_others_file(ray_cluster, digits, cache, reference,
                                                                          tmp_path):
    results = tmp_path / "runs.jsonl"
    config = replace(TINY, cache_dir=str(cache / "features"))
    on_ray = bench(digits, ["resnet18"], config=config, results_file=results, executor=RayExecutor())
    assert numbers(on_ray) == numbers(reference)  # same keys, same accuracies, curves and losses
    assert len(on_ray.runs) == 4 and all(r.ok and r.trained for r in on_ray.runs)

    ex = on_ray.extra["execution"]
    assert ex["executor"] == "ray" and ex["per_run"] == {"cpus": 1.0, "gpus": 0.0, "threads": 1, "device": "cpu",
                                                         "loader_workers": 0}
    assert ex["n_trained"] == 4 and ex["n_resumed"] == 0 and ex["slots"] == 2 and ex["resources"]["CPU"] == 2
    assert {row["key"] for row in ex["runs"]} == {r.key for r in on_ray.runs}
    assert all(row["node_id"] and row["pid"] and row["task_seconds"] >= row["train_seconds"] > 0 for row in ex["runs"])
    assert ex["wall_seconds"] > 0 and ex["run_seconds"] == pytest.approx(sum(r.train_seconds for r in on_ray.runs))
    assert len(results.read_text().splitlines()) == 4

    # The keys are the same on every executor: the local one reads the Ray file and trains nothing.
    resumed = bench(digits, ["resnet18"], config=config, results_file=results, executor=LocalExecutor())
    assert numbers(resumed) == numbers(reference) and not any(r.trained for r in resumed.runs)
    assert resumed.extra["execution"]["n_resumed"] == 4
    html, js = report.write_bench_report(on_ray.to_dict(), tmp_path / "reports")
    assert "<h2>Execution</h2>" in html.read_text() and json.loads(js.read_text())["execution"]["executor"] == "ray"


def test_an_interrupted_ray_driver_keeps_finished_runs_and_resumes(ray_cluster, digits, cache, reference, tmp_path,
                                                                    monkeypatch):
    results = tmp_path / "runs.jsonl"
    config = replace(TINY, cache_dir=str(cache / "features"))
    wait, calls = ray_cluster.wait, []

    def interrupted(*args, **kwargs):  # Ctrl-C in the driver after its first finished run
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return wait(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(ray_cluster, "wait", interrupted)
        with pytest.raises(KeyboardInterrupt):
            bench(digits, ["resnet18"], config=config, results_file=results, executor=RayExecutor())
    assert len(read_results(results)) == 1
    resumed = bench(digits, ["resnet18"], config=config, results_file=results, executor=RayExecutor())
    assert resumed.extra["execution"]["n_resumed"] == 1 and resumed.extra["execution"]["n_trained"] == 3
    assert numbers(resumed) == numbers(reference)


def test_a_killed_worker_is_retried_and_without_retries_recorded_as_failed(ray_cluster, digits, tmp_path,
                                                                          monkeypatch):
    config = replace(TINY, seeds=(0,))
    results = tmp_path / "runs.jsonl"
    monkeypatch.setattr(runner_mod, "train_run", functools.partial(_dies_once, str(tmp_path / "a")))
    retried = bench(digits, ["resnet18"], config=config, results_file=results, executor=RayExecutor(max_retries=1))
    assert [r.status for r in retried.runs] == ["ok", "ok"], [r.error for r in retried.runs]
    assert len(list((tmp_path / "a").iterdir())) == 1  # it did die once

    monkeypatch.setattr(runner_mod, "train_run", functools.partial(_dies_once, str(tmp_path / "b")))
    lost = bench(digits, ["resnet18"], config=config, results_file=tmp_path / "lost.jsonl",
                 executor=RayExecutor(max_retries=0))
    freeze, finetune = lost.runs
    assert finetune.status == "failed"
    assert finetune.error.startswith("WorkerLost: the worker running it died 1 time(s) (--max-retries 0)")
    # Ray may have queued freeze on the same worker: then it died with it (no retries allowed);
    # either way it is recorded, and the grid finished.
    assert freeze.ok or freeze.error.startswith("WorkerLost"), freeze.error
    recorded = {r.strategy: r.status for r in read_results(tmp_path / "lost.jsonl")}
    assert recorded == {"freeze": freeze.status, "finetune": "failed"}  # nothing finished is lost


def test_an_exception_is_not_retried_and_out_of_memory_halves_the_batch(ray_cluster, digits, tmp_path, monkeypatch):
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    monkeypatch.setattr(runner_mod, "train_run", functools.partial(_breaks, str(attempts)))
    result = bench(digits, ["resnet18"], config=replace(TINY, seeds=(0,)), executor=RayExecutor(max_retries=2))
    freeze, finetune = result.runs
    assert finetune.status == "failed" and finetune.error == "ValueError: broken on purpose"
    assert (attempts / "finetune-0").read_text().split() == ["16"]  # once: an exception is not retried
    assert freeze.ok and freeze.recipe["batch_size"] == 4
    assert (attempts / "freeze-0").read_text().split() == ["16", "8", "4"]
    rows = {row["strategy"]: row for row in result.extra["execution"]["runs"]}
    assert rows["freeze"]["batch_halvings"] == 2


def test_freeze_features_are_one_task_per_backbone_that_every_freeze_run_reuses(ray_cluster, digits, tmp_path):
    config = BenchConfig(strategies=("freeze",), epochs=1, image_size=32, batch_size=16, seeds=(0, 1, 2),
                         num_workers=0, cache_dir=str(tmp_path / "features"))  # ImageNet weights: cacheable
    result = bench(digits, ["efficientnet_lite0"], config=config, executor=RayExecutor())
    (extraction,) = result.extra["execution"]["extractions"]
    assert extraction["backbone"] == "efficientnet_lite0" and extraction["cached"] is False
    assert all(r.ok and r.details["features_cached"] for r in result.runs)
    assert len(list((tmp_path / "features").glob("*.npz"))) == 1


def test_shipped_data_gives_the_same_numbers(ray_cluster, digits, cache, reference, tmp_path):
    config = replace(TINY, cache_dir=str(cache / "features"))
    shipped = bench(digits, ["resnet18"], config=config, executor=RayExecutor(ship_data=True))
    assert numbers(shipped) == numbers(reference)  # the keys come from the driver's paths
    assert shipped.extra["execution"]["data"].startswith("shipped: 80 files")
    copies = list(Path(tempfile.gettempdir(), "advisor-shipped").glob("*/0/*.png"))
    assert copies  # the workers read node-local copies, in the data folder's layout


def test_recommend_profiles_backbones_as_parallel_tasks(ray_cluster, digits, tmp_path):
    config = ProfileConfig(per_class=8, image_size=32, weights=None, num_workers=0,
                           cache_dir=str(tmp_path / "features"))
    names = ["resnet18", "mobilenet_v3_small"]
    local = run_recommend(digits, names, config=config, out=None)
    on_ray = run_recommend(digits, names, config=config, out=None, executor=RayExecutor())

    def scores(job):
        return [(b["name"], b["similarity"], b["transferability"]) for b in job.result["backbones"]]

    assert scores(on_ray) == scores(local)
    assert on_ray.result["recommendation"] == local.result["recommendation"]
    assert on_ray.result["reproduction"]["options"]["executor"] == "ray"


def test_cli_bench_on_ray_reports_its_execution(ray_cluster, digits, tmp_path):
    out = CliRunner().invoke(main, [
        "bench", str(digits), "--backbones", "resnet18", "--weights", "random", "--strategies", "freeze",
        "--epochs", "1", "--image-size", "32", "--per-class", "4", "--executor", "ray", "--threads-per-run", "1",
        "--out", str(tmp_path), "-q"])
    assert out.exit_code == 0, out.output
    (twin,) = tmp_path.glob("bench-*.json")
    ex = json.loads(twin.read_text())["execution"]
    assert ex["executor"] == "ray" and ex["n_trained"] == 1 and ex["runs"][0]["node_ip"]
    assert "<h2>Execution</h2>" in twin.with_suffix(".html").read_text()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_share_a_gpu_by_fraction_with_the_keys_of_local_runs(ray_cluster, digits, cache):
    config = replace(TINY, device="auto", cache_dir=str(cache / "features"))
    ex = RayExecutor(gpus_per_run=0.5)
    with ex:
        device, precision = ex.placement("auto")
        assert device.type == "cuda" and precision.name == LocalExecutor().placement("cuda")[1].name
        on_ray = bench(digits, ["resnet18"], config=config, executor=ex)
    local = bench(digits, ["resnet18"], config=config)
    assert [r.key for r in on_ray.runs] == [r.key for r in local.runs]  # the same precision in every key
    assert all(r.ok and r.details["device"].startswith("cuda") for r in on_ray.runs)
    info = on_ray.extra["execution"]
    assert info["per_run"]["gpus"] == 0.5 and info["per_run"]["loader_workers"] == 1
