"""Ray losing one of its own processes mid-grid keeps ``advisor bench --json``'s document.

The command runs in a subprocess, as a user runs it: Ray ends the process that holds its
connection when the node's raylet dies, and the test process must not be that one. The grid is
resnet18 with random weights at 32 px on the digits demo (8 images per class), finetune and
scratch x 4 seeds, 4 epochs, one torch thread per run, on a local Ray instance with two runs at a
time whatever the machine (each run reserves half of its CPUs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")  # Ray brings it (``ray.thirdparty_files``, on the path once ray is imported)

from advisor.bench import read_results  # noqa: E402
from advisor.demo import make_demo  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _runtime_env_agent(root: psutil.Process) -> psutil.Process | None:
    """Ray's runtime-environment agent among ``root``'s descendants (the raylet's command line names it too)."""
    for proc in root.children(recursive=True):
        try:
            name, cmdline = proc.name(), " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if name != "raylet" and ("RuntimeEnvAgent" in cmdline or "runtime_env/agent" in cmdline):
            return proc
    return None


def _first_line_written(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return
        if proc.poll() is not None:
            pytest.fail(f"the command ended before its first run finished:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    pytest.fail("no run finished in time")


def test_killing_rays_runtime_env_agent_mid_grid_keeps_the_document_and_the_results_file(tmp_path):
    data = make_demo(tmp_path, "digits", per_class=8)
    out = tmp_path / "reports"
    cpus = os.cpu_count() or 2
    command = [sys.executable, "-c", "from advisor.cli import main; main()", "bench", str(data),
               "--backbones", "resnet18", "--weights", "random", "--strategies", "finetune,scratch", "--epochs", "4",
               "--image-size", "32", "--seeds", "4", "--per-class", "4", "--executor", "ray",
               "--cpus-per-run", str(cpus / 2), "--threads-per-run", "1", "--out", str(out), "--json", "-q"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "ADVISOR_CACHE": str(tmp_path / "cache")}
    env.pop("RAY_ADDRESS", None)  # a local instance of its own, never a cluster the machine runs
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started: list[psutil.Process] = []
    try:
        results = out / "bench-digits.runs.jsonl"
        _first_line_written(results, proc, timeout=120)
        root = psutil.Process(proc.pid)
        started = root.children(recursive=True)
        agent = _runtime_env_agent(root)
        assert agent is not None, [p.name() for p in started]
        agent.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        for leftover in started:  # whatever the command started and left behind
            try:
                leftover.kill()
            except psutil.Error:
                pass

    assert proc.returncode == 0, stderr[-3000:]  # resnet18 has a finished run: the README's rule
    doc = json.loads(stdout)
    runs = {r["key"]: r for r in doc["runs"]}
    assert len(runs) == len(doc["runs"]) == 8
    ok = {k for k, r in runs.items() if r["status"] == "ok"}
    assert ok and len(ok) < 8  # finished before the kill, and cut short by it
    errors = doc["execution"]["errors"]
    assert any(e["error"].startswith("ClusterLost") and e["exit_code"] is not None for e in errors), errors
    listed = {key for e in errors for key in e["runs"]}
    for key, run in runs.items():
        if key not in ok:
            assert run["status"] == "failed" and run["error"] and key in listed, run
    # The results file holds every run: the finished ones with the same numbers, the others failed.
    recorded = {r.key: r for r in read_results(results)}
    assert set(recorded) == set(runs)
    assert {k for k, r in recorded.items() if r.ok} == ok
    assert all(recorded[k].accuracy == runs[k]["accuracy"] for k in ok)
    assert "lost the Ray connection mid-grid" in stderr
