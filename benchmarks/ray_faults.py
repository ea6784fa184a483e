"""What happens to ``advisor bench --executor ray --json`` when Ray loses a part mid-grid.

For each fault, the same grid (resnet18, random weights, 32 px, the digits demo with 8 images per
class, finetune + scratch x 4 seeds, 4 epochs, one torch thread per run) runs as a user runs it,
in a subprocess; once its first run is in the results file, one of Ray's processes is hit:

  worker         a task worker (``ray::_run_task``), kill -9
  runtime-env    the runtime-environment agent (``ray::RuntimeEnvAgent``), kill -9
  dashboard      the dashboard agent (``ray::DashboardAgent``), kill -9
  raylet         the raylet, kill -9
  gcs            the GCS server, kill -9
  gcs-stopped    an existing cluster (``ray start --head``): its GCS server frozen (SIGSTOP)
  head-killed    an existing cluster: every process of its head node, kill -9

The first five hit a local Ray instance that the command starts; the last two a cluster started
here with ``ray start --head --temp-dir`` in a temporary folder (and stopped by pid, never by
``ray stop``, which would stop every Ray on the machine). Printed per fault: the exit code,
whether stdout held the JSON document, the runs finished / failed (and why), the
``execution.errors`` entries, the results file's lines, seconds from the fault to the exit, and
the command's Ray processes left behind (then killed). The last line is one JSON object.

    python benchmarks/ray_faults.py [--faults worker,runtime-env,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray  # noqa: F401 - puts Ray's own psutil on the path
import psutil

from advisor.demo import make_demo

REPO = Path(__file__).resolve().parents[1]
LOCAL = ("worker", "runtime-env", "dashboard", "raylet", "gcs")
CLUSTER = ("gcs-stopped", "head-killed")
PORT = 6399


def _matches(proc: psutil.Process, fault: str) -> bool:
    try:
        name, cmdline = proc.name(), " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return {"worker": name.startswith("ray::_run_task"),
            "runtime-env": name != "raylet" and ("RuntimeEnvAgent" in cmdline or "runtime_env/agent" in cmdline),
            "dashboard": "DashboardAgent" in cmdline,
            "raylet": name == "raylet",
            "gcs": name == "gcs_server"}[fault]


def _cluster_processes(temp_dir: Path) -> list[psutil.Process]:
    """The processes of the cluster started with ``--temp-dir temp_dir``, and what they started."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            if str(temp_dir) in " ".join(proc.cmdline()):
                found[proc.pid] = proc
                found.update((c.pid, c) for c in proc.children(recursive=True))
        except psutil.Error:
            continue
    return list(found.values())


def _kill(procs: list[psutil.Process]) -> list[str]:
    """Kill what is still running; the names of those that were."""
    left = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc.name())
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        except psutil.Error:
            continue
    return left


def run_fault(fault: str, data: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    out = work / fault
    temp_dir = Path(tempfile.mkdtemp(prefix="rayf-"))  # short: Ray's socket paths must fit in 107 bytes
    address: list[str] = []
    if fault in CLUSTER:
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={PORT}",
                        "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                        f"--temp-dir={temp_dir}"], env=env, check=True, capture_output=True)
        address = ["--address", f"127.0.0.1:{PORT}"]
    command = [sys.executable, "-c", "from advisor.cli import main; main()", "bench", str(data),
               "--backbones", "resnet18", "--weights", "random", "--strategies", "finetune,scratch", "--epochs", "4",
               "--image-size", "32", "--seeds", "4", "--per-class", "4", "--executor", "ray", *address,
               "--threads-per-run", "1", "--out", str(out), "--json", "-q"]
    start = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = out / "bench-digits.runs.jsonl"
    while not (results.exists() and results.read_text().strip()) and proc.poll() is None:
        time.sleep(0.2)
    own = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    cluster = _cluster_processes(temp_dir) if fault in CLUSTER else []
    if fault in LOCAL:
        victims = [p for p in own if _matches(p, fault)][:1]
        deadline = time.monotonic() + 10
        while not victims and proc.poll() is None and time.monotonic() < deadline:  # a worker between two runs
            time.sleep(0.1)
            own = psutil.Process(proc.pid).children(recursive=True)
            victims = [p for p in own if _matches(p, fault)][:1]
    elif fault == "gcs-stopped":
        victims = [p for p in cluster if p.name() == "gcs_server"]
    else:
        victims = cluster
    names = [v.name() for v in victims]
    hit = time.monotonic()
    for victim in victims:
        victim.send_signal(signal.SIGSTOP if fault == "gcs-stopped" else signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    ended = time.monotonic()
    time.sleep(3)  # what dies with the driver has died by now
    left = _kill(own)  # the command's own Ray processes that outlived it
    _kill(list({p.pid: p for p in cluster + _cluster_processes(temp_dir)}.values()))  # the cluster started here
    shutil.rmtree(temp_dir, ignore_errors=True)
    row: dict[str, Any] = {"fault": fault, "hit": names, "exit_code": proc.returncode,
                           "seconds_to_fault": hit - start, "seconds_fault_to_exit": ended - hit, "left_behind": left}
    try:
        doc = json.loads(stdout)
    except ValueError:
        row.update(document=False, last_stderr=[ln for ln in stderr.splitlines() if ln.strip()][-1:])
    else:
        runs = doc["runs"]
        row.update(document=True, ok=sum(r["status"] == "ok" for r in runs), failed=sum(r["status"] != "ok" for r in runs),
                   why=sorted({(r.get("error") or "").split(":")[0] for r in runs if r["status"] != "ok"}),
                   errors=[e["error"][:120] for e in doc["execution"].get("errors", [])])
    lines = results.read_text().splitlines() if results.exists() else []
    row["results_file"] = [json.loads(line)["status"] for line in lines]
    row["warning"] = [ln for ln in stderr.splitlines() if "lost the Ray connection" in ln]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(LOCAL + CLUSTER))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="advisor-ray-faults-"))
    data = make_demo(work / "demo", "digits", per_class=8)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "ADVISOR_CACHE": str(work / "cache"), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    rows = []
    for fault in args.faults.split(","):
        row = run_fault(fault.strip(), data, work, env)
        rows.append(row)
        print(f"{row['fault']:<12} exit {row['exit_code']}, document {row['document']}, "
              f"ok {row.get('ok', '-')}, failed {row.get('failed', '-')} {row.get('why', '')}; file {row['results_file']}; "
              f"{row['seconds_fault_to_exit']:.0f} s to exit; left behind {row['left_behind']}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
