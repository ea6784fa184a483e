"""``benchmarks/gpu_check.py`` runs on a CPU at tiny sizes, so that the GPU measurement never rots.

The script runs as a user runs it (a subprocess, one torch thread); its last line is one JSON
object with every section, each measured or skipped with a reason, none failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_tiny_on_a_cpu_and_ends_with_its_json_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "ADVISOR_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--tiny", "--device", "cpu",
                          "--threads", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    doc = json.loads(lines[-1])
    assert len(lines) > 10  # the table came first

    assert doc["mode"] == "tiny" and doc["environment"]["device"] == "cpu"
    assert doc["environment"]["precision"] == "fp32" and doc["environment"]["versions"]["torch"]
    for section in ("environment", "loader", "training", "inference", "bench"):
        assert "error" not in doc[section] and "skipped" not in doc[section], (section, doc[section])
    assert doc["sharing"] == {"skipped": "no CUDA"}  # never a number it did not measure

    assert doc["loader"]["cache_read_img_s"] > 0 and doc["loader"]["batch_aug_device_img_s"] > 0
    for name in ("resnet18", "efficientnet_b0"):
        row = doc["training"][name]
        assert row["bench_loop_img_s"] > 0 and row["bare_loop_img_s"] > 0
        assert abs(row["ratio"] - row["bench_loop_img_s"] / row["bare_loop_img_s"]) < 1e-3
        assert row["reference"]["bench_loop_over_reference"] is None  # a CPU at 32 px is no match for timm's cards
        assert doc["inference"][name]["ratio"] > 0
    bench = doc["bench"]
    assert bench["backbone"] == "efficientnet_lite0" and bench["verdict"] in ("freeze", "finetune", "not_worth_using")
    assert set(bench["runs"]) == {"freeze", "finetune", "scratch"}
    assert all(r["status"] == "ok" and 0 <= r["accuracy"] <= 1 for r in bench["runs"].values())
    assert bench["readme_cpu"] is None  # the README's figures are for hymenoptera, not the tiny demo
