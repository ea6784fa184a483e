"""Executors: where the runs of a grid train, in this process or as tasks on a Ray cluster.

The driver (:func:`advisor.bench.bench`) plans the grid; an executor trains the runs that are
not finished and hands them back in grid order, with an ``execution`` block saying how. The
driver's process is the only writer of the results file whichever executor trains: each run
is appended as soon as it finishes, so an interrupted grid resumes where it stopped.

- :class:`LocalExecutor` trains one run after another in this process (advisor's default).
- :class:`RayExecutor` sends each run to a Ray cluster as one task built from the run's
  :class:`~advisor.bench.training.RunSpec` and a small :class:`RunOptions`; each worker builds
  its own :class:`~advisor.bench.training.RunEnv` from them. Ray schedules, retries lost workers
  and places tasks on GPUs; advisor writes no scheduler. Unless the caller connected to Ray
  itself, the connection lives in a driver process of its own: Ray ends the process that holds
  it when the node's raylet, object store or GCS is lost, and that must not take the grid's
  finished runs and the command's document with it.

Every run draws its random numbers from streams seeded by its key, so on a CPU the same grid
gives the same numbers with either executor, as long as each run gets the same number of
torch threads (``threads_per_run``; Ray's default is one thread per reserved CPU).

Two drivers may share a results file (two terminals, or a rerun while the first still runs):
:class:`ResultsLedger` claims each run with a lock of its own before training it, so no run
trains twice at the same time and no line is torn.

Example:
    >>> from advisor.bench import BenchConfig, bench
    >>> from advisor.bench.executors import RayExecutor
    >>> result = bench("data/flowers", ["resnet18"], config=BenchConfig(seeds=(0, 1, 2)),
    ...                results_file="runs.jsonl", executor=RayExecutor("auto"))  # doctest: +SKIP
    >>> result.extra["execution"]["executor"]  # doctest: +SKIP
    'ray'
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from filelock import FileLock, Timeout

from advisor.bench.results import RunResult, append_result, read_results
from advisor.bench.strategies import Freeze, get_strategy
from advisor.bench.training import RunEnv, RunSpec, failed_run, pool_features, train_run
from advisor.data import Dataset, Sample, Skipped, stratified_sample
from advisor.imagecache import summarize_use, tally_use
from advisor.profile import Profile, ProfileConfig, profile, profile_one, summarize_dataset
from advisor.runtime import Precision, choose_precision, resolve_device
from advisor.utils import cache_root, versions

__all__ = [
    "EXECUTORS",
    "SHIP_LIMIT_BYTES",
    "ClusterLost",
    "Execution",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "RayExecutor",
    "ResultsLedger",
    "RunOptions",
    "WorkerLost",
    "make_executor",
    "public_address",
]

log = logging.getLogger(__name__)

#: ``--ship-data`` sends every sample's bytes through Ray's object store: for small datasets only.
SHIP_LIMIT_BYTES = 1024**3
_INSTALL_RAY = "pip install 'transfer-advisor[ray]'"
_START_CLUSTER = ("start one with `ray start --head` on the head node (then --address auto there, or "
                  "--address HEAD:6379 from another machine of the cluster), or leave out --address for "
                  "a local Ray instance")


class ExecutorError(RuntimeError):
    """An executor cannot run: Ray is missing, the cluster cannot be reached, resources do not fit."""


class WorkerLost(RuntimeError):
    """The process or node running a run died more often than the retries allow."""


class ClusterLost(RuntimeError):
    """The Ray connection was lost mid-grid: the runs that had not come back are unfinished."""


# --------------------------------------------------------------------------- what a worker needs


@dataclass(frozen=True)
class RunOptions:
    """How a worker builds its :class:`RunEnv`: small and picklable, so every task carries it.

    Attributes:
        device: Where runs train (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``), as the
            executor placed them.
        precision: Name of the precision the grid was planned with (it is in every run key);
            a worker whose device computes in another one refuses to train.
        num_workers: DataLoader workers (``None``: from the device and the data path).
        start_method: Start method of DataLoader workers (``None``: the platform's).
        cache_dir: Feature cache folder (``None``: the default, ``""``: off).
        image_cache_dir: Decoded-image cache folder (``None``: the default, ``""``: off).
        threads: torch intra-op threads of each run (``None``: leave torch's setting).
        progress: Progress bars on stderr.

    Example:
        >>> RunOptions(device="cpu", threads=1).build_env().device.type
        'cpu'
    """

    device: str = "cpu"
    precision: str = "fp32"
    num_workers: int | None = None
    start_method: str | None = None
    cache_dir: str | None = None
    image_cache_dir: str | None = None
    threads: int | None = None
    progress: bool = False

    def build_env(self) -> RunEnv:
        """The run environment of this process (device, precision, loaders, caches)."""
        device = resolve_device(self.device)
        precision = choose_precision(device)
        if precision.name != self.precision:
            raise ExecutorError(
                f"this worker's {device} computes in {precision.name}, but the grid was planned in {self.precision} "
                "(it is part of every run key): use one kind of GPU per cluster, or --device cpu")
        return RunEnv(device=device, precision=precision, num_workers=self.num_workers,
                      start_method=self.start_method, cache_dir=self.cache_dir,
                      image_cache_dir=self.image_cache_dir, progress=self.progress)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads for one run; the results of a run depend on this number."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- the results file


class ResultsLedger:
    """The results file of a grid, safe to share between drivers.

    A driver claims a run before training it: an exclusive, non-blocking lock on
    ``<results>.locks/<key>.lock``, held until the run is recorded. A driver that finds a claim
    taken trains other runs first and comes back later; once it holds the claim it re-reads
    the file and takes the run from there if it finished meanwhile (or failed meanwhile: the
    other driver's failure stands for this call, a later call retries it). Each append holds
    ``<results>.lock`` for the length of one write.

    The locks are the operating system's (``flock``, one per open file, through
    :class:`filelock.FileLock`): they exclude processes, and threads with their own ledger, and
    a killed driver drops its claims with its process. Without a file nothing is kept and every
    claim succeeds.

    Example:
        >>> a, b = ResultsLedger("runs.jsonl"), ResultsLedger("runs.jsonl")  # doctest: +SKIP
        >>> a.claim("k1"), b.claim("k1")  # doctest: +SKIP
        (True, False)
    """

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = None if path is None else Path(path)
        self._seen: tuple[tuple[int, int] | None, dict[str, list[RunResult]]] = (None, {})
        records = self._records(report=True)  # a damaged line is named once, when the grid starts
        #: Finished runs in the file when this ledger was made: not trained again.
        self.previous = {k: ok[-1] for k, runs in records.items() if (ok := [r for r in runs if r.ok])}
        self._failed_at_start = Counter({k: sum(not r.ok for r in runs) for k, runs in records.items()})
        self._claims: dict[str, FileLock] = {}

    def _records(self, report: bool = False) -> dict[str, list[RunResult]]:
        """Records by key, read again only when the file changed (``report``: name bad lines)."""
        if self.path is None:
            return {}
        try:
            st = os.stat(self.path)
            stamp: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if stamp is None or stamp != self._seen[0]:
            records: dict[str, list[RunResult]] = {}
            for run in read_results(self.path, report=report) if stamp is not None else ():
                records.setdefault(run.key, []).append(run)
            self._seen = (stamp, records)
        return self._seen[1]

    def claim(self, key: str) -> bool:
        """Take the run ``key`` for this driver; ``False`` when another driver holds it now."""
        if self.path is None or key in self._claims:
            return True
        folder = Path(f"{self.path}.locks")
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(os.fspath(folder / f"{key}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        self._claims[key] = lock
        return True

    def release(self, key: str) -> None:
        lock = self._claims.pop(key, None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        for key in list(self._claims):
            self.release(key)

    def finished(self, key: str) -> RunResult | None:
        """The run as the file has it now, if another driver finished (or failed) it since."""
        runs = self._records().get(key, [])
        ok = [r for r in runs if r.ok]
        if ok:
            return ok[-1]
        failed = [r for r in runs if not r.ok]
        return failed[-1] if len(failed) > self._failed_at_start[key] else None

    def record(self, run: RunResult) -> None:
        """Append one run (a short lock keeps two drivers' lines apart)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{self.path}.lock"):
            append_result(self.path, run)


def _pending(specs: Sequence[RunSpec], ledger: ResultsLedger) -> deque[RunSpec]:
    """Runs to train, once each, in grid order."""
    seen: set[str] = set()
    todo: deque[RunSpec] = deque()
    for spec in specs:
        if spec.key not in ledger.previous and spec.key not in seen:
            seen.add(spec.key)
            todo.append(spec)
    return todo


# --------------------------------------------------------------------------- what an executor returns


@dataclass(frozen=True)
class Execution:
    """What an executor did: the runs in grid order, what workers skipped, and how it ran.

    Attributes:
        runs: One result per spec, in grid order (read from the results file or trained now).
        failures: Images that could not be decoded, by the driver's path.
        image_cache_use: Per decoded-image cache file, images built and wanted by the runs
            (:func:`advisor.imagecache.tally_use`, added up over workers).
        info: The report's ``execution`` block (:meth:`to_dict`).
    """

    runs: tuple[RunResult, ...]
    failures: dict[str, Skipped] = field(default_factory=dict)
    image_cache_use: dict[str, dict[str, int]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``execution`` block: executor, address, resources, per-run node, wall against run time."""
        return dict(self.info)


def _summary_times(info: dict[str, Any], rows: Sequence[dict[str, Any]], runs: Sequence[RunResult],
                   wall: float) -> dict[str, Any]:
    trained = [r for r in runs if r.trained]
    run_seconds = float(sum(r.train_seconds or 0.0 for r in trained))
    return {
        **info,
        "n_runs": len(runs), "n_trained": len(trained), "n_resumed": len(runs) - len(trained),
        "n_failed": sum(not r.ok for r in trained),
        "workers": len({(row.get("node_id"), row.get("pid")) for row in rows}),
        "nodes_used": sorted({row.get("node_ip") or row.get("node_id") for row in rows} - {None}),
        "wall_seconds": wall, "run_seconds": run_seconds,
        "speedup": run_seconds / wall if wall > 0 and trained else None,
        "runs": list(rows), "errors": list(info.get("errors") or []),
    }


def _add_use(total: dict[str, dict[str, int]], use: dict[str, dict[str, int]]) -> None:
    """Add one worker's image-cache tally to the grid's (the same rule as :func:`tally_use`)."""
    for path, u in use.items():
        entry = total.setdefault(path, {"built": 0, "wanted": 0})
        entry["built"] += int(u["built"])
        entry["wanted"] = max(entry["wanted"], int(u["wanted"]))


def _run_row(spec: RunSpec, run: RunResult, **where: Any) -> dict[str, Any]:
    return {"key": spec.key, "backbone": spec.backbone, "strategy": spec.strategy, "seed": spec.seed,
            "lr_factor": spec.lr_factor, "status": run.status, "train_seconds": run.train_seconds, **where}


def _say(progress: bool, done: int, total: int, spec: RunSpec, run: RunResult, where: str = "") -> None:
    if not progress:
        return
    what = f"{100 * run.accuracy:.1f} %" if run.ok else f"failed: {(run.error or '').splitlines()[0][:160]}"
    seconds = f", {run.train_seconds:.1f} s" if run.train_seconds is not None else ""
    print(f"advisor bench: [{done}/{total}] {spec.backbone} {spec.strategy} seed {spec.seed}"
          + (f" lr x{spec.lr_factor:g}" if spec.lr_factor != 1 else "") + f": {what}{seconds}{where}",
          file=sys.stderr)


# --------------------------------------------------------------------------- executors


class Executor:
    """Where the runs of a grid train. Subclasses implement :meth:`placement`, :meth:`run`, :meth:`profile`.

    An executor is opened once (a context manager, or :meth:`open`) and can serve several
    calls: ``advisor bench`` profiles, then trains, on one Ray connection.
    """

    name: ClassVar[str] = ""

    def open(self) -> bool:
        """Connect or start; ``True`` when this call did (the caller then closes it)."""
        return False

    def close(self) -> None:
        """Release what :meth:`open` took."""

    def __enter__(self) -> "Executor":
        self.__dict__.setdefault("_entered", []).append(self.open())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.__dict__["_entered"].pop():  # only the ``with`` that opened it closes it
            self.close()

    def placement(self, device: str = "auto") -> tuple[torch.device, Precision]:
        """The device runs train on and its precision (it goes into every run key)."""
        raise NotImplementedError

    def run(self, specs: Sequence[RunSpec], options: RunOptions, *, results_file: str | os.PathLike | None = None,
            train: Callable[[RunSpec, RunEnv], RunResult] = train_run, progress: bool = False) -> Execution:
        """Train what the results file does not hold yet; every run in grid order."""
        raise NotImplementedError

    def profile(self, dataset: Dataset, backbones: Sequence[str], *, config: ProfileConfig = ProfileConfig(),
                progress: bool = False) -> Profile:
        """:func:`advisor.profile.profile` of every backbone."""
        raise NotImplementedError


class LocalExecutor(Executor):
    """One run after another in this process: advisor's default.

    Args:
        threads_per_run: torch intra-op threads of each run (``None`` leaves torch's setting);
            set it to the Ray executor's to get identical numbers from both on a CPU.
        poll_seconds: How often to look again at runs another driver holds.

    Example:
        >>> LocalExecutor(threads_per_run=1).placement("cpu")[1].name
        'fp32'
    """

    name = "local"

    def __init__(self, *, threads_per_run: int | None = None, poll_seconds: float = 0.5) -> None:
        if threads_per_run is not None and threads_per_run < 1:
            raise ValueError(f"threads_per_run must be >= 1, got {threads_per_run}")
        self.threads_per_run = threads_per_run
        self.poll_seconds = poll_seconds

    def placement(self, device: str = "auto") -> tuple[torch.device, Precision]:
        dev = resolve_device(device)
        return dev, choose_precision(dev)

    def run(self, specs: Sequence[RunSpec], options: RunOptions, *, results_file: str | os.PathLike | None = None,
            train: Callable[[RunSpec, RunEnv], RunResult] = train_run, progress: bool = False) -> Execution:
        start = time.perf_counter()
        if self.threads_per_run is not None:
            options = replace(options, threads=self.threads_per_run)
        env = options.build_env()
        ledger = ResultsLedger(results_file)
        todo = _pending(specs, ledger)
        total, done_now = len(todo), 0
        runs: dict[str, RunResult] = {}
        rows: list[dict[str, Any]] = []
        deferred: list[RunSpec] = []
        node = socket.gethostname()
        try:
            while todo or deferred:
                if not todo:  # all that is left, other drivers hold: wait for them
                    time.sleep(self.poll_seconds)
                    todo.extend(deferred)
                    deferred.clear()
                spec = todo.popleft()
                if not ledger.claim(spec.key):
                    deferred.append(spec)
                    continue
                try:
                    run = ledger.finished(spec.key)
                    if run is None:
                        t0 = time.perf_counter()
                        with _torch_threads(options.threads):
                            try:
                                run = train(spec, env)
                            except Exception as err:  # noqa: BLE001 - one bad run must not cost the others
                                run = failed_run(spec, err)
                        ledger.record(run)
                        done_now += 1
                        rows.append(_run_row(spec, run, node_id=node, node_ip=None, pid=os.getpid(),
                                             task_seconds=time.perf_counter() - t0))
                        _say(progress and not run.ok, done_now, total, spec, run)
                    runs[spec.key] = run
                finally:
                    ledger.release(spec.key)
        finally:
            ledger.release_all()
        ordered = tuple(ledger.previous.get(s.key) or runs[s.key] for s in specs)
        info = {"executor": self.name, "address": None, "nodes": [{"node_id": node, "ip": None}],
                "per_run": {"threads": options.threads, "device": options.device}, "slots": 1,
                "data": "read from the driver's paths"}
        return Execution(
            runs=ordered, failures=dict(env.failures), image_cache_use=env.image_cache_use,
            info=_summary_times(info, rows, ordered, time.perf_counter() - start),
        )

    def profile(self, dataset: Dataset, backbones: Sequence[str], *, config: ProfileConfig = ProfileConfig(),
                progress: bool = False) -> Profile:
        with _torch_threads(self.threads_per_run):
            return profile(dataset, backbones, config=config, progress=progress)


# --------------------------------------------------------------------------- Ray: addresses


def public_address(address: str | None) -> str | None:
    """The address without credentials: ``user:password@`` and any query string are dropped.

    Example:
        >>> public_address("ray://alice:s3cret@head.example:10001?token=x")
        'ray://head.example:10001'
    """
    if address is None:
        return None
    address = re.sub(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?)[^@/]*@", r"\1", address.strip())
    return address.split("?", 1)[0].split("#", 1)[0]


def _endpoint(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of an explicit address; ``None`` for ``auto`` and the like."""
    rest = public_address(address) or ""
    rest = rest.split("://", 1)[1] if "://" in rest else rest
    host, sep, port = rest.split("/", 1)[0].rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes: Ray waits a long time for an address nobody answers."""
    endpoint = _endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as err:
        raise ExecutorError(f"cannot reach the Ray cluster at {public_address(address)} "
                            f"({err.strerror or err}); {_START_CLUSTER}") from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed: {_INSTALL_RAY}") from None
    return ray


# --------------------------------------------------------------------------- Ray: data shipping


@dataclass(frozen=True)
class _Shipment:
    """Every sample's file, in Ray's object store, for clusters without a shared filesystem.

    ``blob`` holds the bytes of every file one after the other (a uint8 array: workers map it
    without a copy); ``index`` lists ``(driver path, relative path, offset, length)``. Workers
    write the files under ``<tmp>/advisor-shipped/<digest>/`` with the same relative layout.
    """

    blob: Any
    index: Any
    digest: str
    n_files: int
    nbytes: int


def _relative(path: str, root: str, i: int) -> str:
    rel = os.path.relpath(path, root)
    if rel.startswith(os.pardir) or os.path.isabs(rel):  # a file outside the data folder
        rel = os.path.join("_outside", f"{i:06d}-{os.path.basename(path)}")
    return rel


def _ship(ray: Any, samples: Iterable[Sample], root: str) -> _Shipment:
    paths = sorted({s.path for s in samples})
    sizes = []
    for p in paths:
        try:
            sizes.append(os.path.getsize(p))
        except OSError:
            sizes.append(-1)
    total = sum(max(0, n) for n in sizes)
    if total > SHIP_LIMIT_BYTES:
        raise ExecutorError(f"--ship-data is for datasets under {SHIP_LIMIT_BYTES / 2**30:.0f} GB; {root} holds "
                            f"{total / 2**30:.1f} GB: put it on a filesystem every node mounts at the same path")
    blob = np.empty(total, dtype=np.uint8)
    index, offset = [], 0
    digest = hashlib.sha256()
    for i, (path, size) in enumerate(zip(paths, sizes)):
        try:
            with open(path, "rb") as fh:
                n = fh.readinto(memoryview(blob)[offset:offset + max(0, size)]) if size >= 0 else None
        except OSError:
            n = None
        if n is None:  # unreadable here: the worker finds no file and skips it, as this machine would
            continue
        rel = _relative(path, root, i)
        index.append((path, rel, offset, n))
        digest.update(os.fsencode(rel) + f"\0{n}\0".encode())
        digest.update(memoryview(blob)[offset:offset + n])
        offset += n
    return _Shipment(blob=ray.put(blob[:offset]), index=ray.put(index), digest=digest.hexdigest()[:20],
                     n_files=len(index), nbytes=offset)


_MATERIALISED: dict[str, dict[str, str]] = {}  # per worker process: digest -> driver path -> local path


def _materialise(shipment: _Shipment) -> dict[str, str]:
    """Write the shipped files into this node's temporary folder (once per node); driver path -> local."""
    if shipment.digest in _MATERIALISED:
        return _MATERIALISED[shipment.digest]
    import ray

    root = Path(tempfile.gettempdir()) / "advisor-shipped" / shipment.digest
    index = ray.get(shipment.index)
    complete = root / ".complete"
    if not complete.exists():
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{root}.lock"):  # the workers of one node write it once
            if not complete.exists():
                blob = ray.get(shipment.blob)
                for _path, rel, offset, n in index:
                    dest = root / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(blob[offset:offset + n].tobytes())
                complete.touch()
    where = {path: os.fspath(root / rel) for path, rel, _o, _n in index}
    _MATERIALISED[shipment.digest] = where
    return where


def _move(samples: Sequence[Sample], where: dict[str, str]) -> tuple[Sample, ...]:
    return tuple(replace(s, path=where.get(s.path, s.path)) for s in samples)


def _localise(spec: RunSpec, shipment: _Shipment | None) -> tuple[RunSpec, dict[str, str]]:
    """The spec with this node's copies of the samples, and local path -> driver path."""
    if shipment is None:
        return spec, {}
    where = _materialise(shipment)
    spec = replace(spec, fit=_move(spec.fit, where), select=_move(spec.select, where),
                   report=_move(spec.report, where), pool=_move(spec.pool, where))
    return spec, {local: path for path, local in where.items()}


# --------------------------------------------------------------------------- Ray: tasks (run in workers)


def _where() -> dict[str, Any]:
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "pid": os.getpid()}


def _probe_task(device: str) -> tuple[str, Precision]:
    """What a worker with the runs' resources (its GPU) computes on, and in which precision."""
    dev = resolve_device(device)
    return str(dev), choose_precision(dev)


def _run_task(spec: RunSpec, pool: tuple[Sample, ...], options: RunOptions,
              train: Callable[[RunSpec, RunEnv], RunResult], shipment: _Shipment | None) -> dict[str, Any]:
    """One run on a worker. A Python exception becomes a failed run here (never retried);
    running out of host memory is raised, for the driver to retry with half the batch."""
    started = time.time()
    spec, back = _localise(replace(spec, pool=pool), shipment)
    env = options.build_env()
    with _torch_threads(options.threads):
        try:
            run = train(spec, env)
        except MemoryError:
            raise
        except Exception as err:  # noqa: BLE001 - recorded as the run's failure, without a retry
            run = failed_run(spec, err)
    failures = [Skipped(back.get(p, p), f.reason) for p, f in env.failures.items()]
    return {"run": run, "failures": failures, "started": started, "finished": time.time(),
            "image_cache_use": env.image_cache_use, "versions": versions(), **_where()}


def _extract_task(spec: RunSpec, pool: tuple[Sample, ...], options: RunOptions,
                  shipment: _Shipment | None) -> dict[str, Any]:
    """The frozen strategy's embeddings of ``pool``, into the feature cache its runs read.

    The arguments are those :func:`advisor.bench.training.fit_head_on_embeddings` passes, so
    that its cache key matches and every freeze run of the backbone finds the features.
    """
    started = time.time()
    spec, _ = _localise(replace(spec, pool=pool), shipment)
    env = options.build_env()
    with _torch_threads(options.threads):
        backbone = get_strategy(spec.strategy)(spec.recipe).build(spec.backbone, weights=spec.weights)
        if not backbone.pretrained:  # random weights are never cached: each run draws its own
            return {"cached": None, "seconds": 0.0, **_where()}
        samples = list(spec.pool) or sorted({s.path: s for s in spec.fit + spec.select + spec.report}.values(),
                                            key=lambda s: s.path)
        env.image_size, env.fingerprint = spec.image_size, spec.fingerprint
        feats = pool_features(backbone, samples, spec.recipe.batch_size, env)
    return {"cached": bool(feats.cached), "seconds": time.time() - started, "started": started, **_where()}


def _profile_task(name: str, sample: list[Sample], config: ProfileConfig, fingerprint: str, threads: int | None,
                  shipment: _Shipment | None) -> tuple[Any, list[Skipped], dict[str, Any] | None]:
    """One backbone of :func:`advisor.profile.profile`, built from the same random stream."""
    back: dict[str, str] = {}
    if shipment is not None:
        where = _materialise(shipment)
        sample = list(_move(sample, where))
        back = {local: path for path, local in where.items()}
    with _torch_threads(threads):
        result, feats = profile_one(name, sample, config, fingerprint=fingerprint)
    return result, [Skipped(back.get(f.path, f.path), f.reason) for f in feats.failures], feats.image_cache


# --------------------------------------------------------------------------- Ray: the driver


@dataclass
class _Flight:
    spec: RunSpec
    submitted: float
    halvings: int = 0


def _first_line(err: BaseException, limit: int = 300) -> str:
    return (str(err).strip().splitlines() or [""])[0][:limit]


def _close_out(specs: Sequence[RunSpec], ledger: ResultsLedger, runs: dict[str, RunResult],
               error: BaseException) -> list[str]:
    """The runs that neither came back nor are in the file become failed with ``error``; returns their keys.

    Each is recorded (a later call trains it again) unless another driver holds it now.
    """
    unfinished = []
    for spec in specs:
        if spec.key in runs or spec.key in ledger.previous:
            continue
        claimed = ledger.claim(spec.key)
        done = ledger.finished(spec.key) if claimed else None
        if done is not None and done.ok:
            runs[spec.key] = done
            ledger.release(spec.key)
            continue
        runs[spec.key] = failed_run(spec, error)
        unfinished.append(spec.key)
        if claimed:
            ledger.record(runs[spec.key])
            ledger.release(spec.key)
    return unfinished


class _DriverGone(ExecutorError):
    """The driver process ended while the parent waited on it."""

    def __init__(self, exit_code: int | None) -> None:
        super().__init__(
            f"the driver process holding the Ray connection ended (exit code {exit_code}); Ray ends it when the "
            "node's raylet, object store or GCS is lost (one of Ray's processes killed, the cluster unreachable)")
        self.exit_code = exit_code


class _DriverProcess:
    """A process of its own that holds the Ray connection (:func:`_driver_main`), called over a socket pair.

    A plain ``python -c`` child, not ``multiprocessing``: a ``spawn`` child runs the caller's
    main module again (a script without an ``if __name__ == "__main__"`` guard would start over),
    and a fork of a process that imported torch is unsafe. It imports modules from the caller's
    ``sys.path``, so that it runs the same advisor (and the same ``train`` function).
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        ours, theirs = socket.socketpair()
        path = os.pathsep.join(p for p in sys.path if p)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [path, os.environ.get("PYTHONPATH")]))}
        code = "import sys; from advisor.bench.executors import _driver_main; _driver_main(int(sys.argv[1]))"
        with theirs:
            self.process = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())], env=env,
                                            pass_fds=[theirs.fileno()])
        self.conn = Connection(ours.detach())
        self.conn.send(settings)  # over the socket, not the command line: an address may hold credentials
        self.busy = False

    def _receive(self) -> Any:
        """The driver's next message; ``EOFError`` once it has ended (even if a process it started
        still held the socket)."""
        while not self.conn.poll(1.0):
            if self.process.poll() is not None and not self.conn.poll(0):
                raise EOFError
        return self.conn.recv()

    def call(self, name: str, *args: Any, on_note: Callable[[str, Any], None] | None = None, **kwargs: Any) -> Any:
        """Run the driver's ``name`` and return its value or raise its exception; ``on_note`` gets
        the messages it sends meanwhile. Raises :class:`_DriverGone` when the driver ends."""
        self.busy = True
        try:
            self.conn.send((name, args, kwargs))
            while True:
                kind, payload = self._receive()
                if kind != "note":
                    break
                if on_note is not None:
                    on_note(*payload)
        except (EOFError, OSError):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
            raise _DriverGone(self.process.returncode) from None
        self.busy = False
        if kind == "raise":
            raise payload
        return payload

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the driver to disconnect and end; interrupt it first when a call is in flight (Ctrl-C)."""
        if self.process.poll() is None:
            if self.busy:  # the grid cancels its tasks, as on Ctrl-C in the foreground
                with contextlib.suppress(OSError):
                    self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(("close", (), {}))
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                try:
                    if self.conn.poll(0.2):
                        self.conn.recv()  # drain what it still sends, so that it never blocks on a full socket
                except (EOFError, OSError):
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            if self.process.poll() is None:
                self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        self.conn.close()


def _sendable(value: tuple[str, Any]) -> tuple[str, Any]:
    """A reply that pickles: an exception that does not becomes an :class:`ExecutorError` with its text."""
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - anything unpicklable is described instead
        err = value[1]
        return "raise", ExecutorError(f"{type(err).__name__}: {err}" if isinstance(err, BaseException) else repr(err))
    return value


def _driver_main(fd: int) -> None:
    """The driver process: connects to Ray and runs the parent's calls, one at a time, until ``close``."""
    os.set_inheritable(fd, False)  # the processes Ray starts must not keep the parent's socket open
    conn = Connection(fd)
    executor = RayExecutor(**conn.recv())
    executor._note = lambda kind, payload: conn.send(("note", (kind, payload)))
    calls = {"connect": executor._connect, "placement": executor.placement, "run": executor.run,
             "profile": executor.profile}
    try:
        while True:
            try:
                name, args, kwargs = conn.recv()
            except KeyboardInterrupt:  # Ctrl-C between calls: the parent decides
                continue
            except EOFError:  # the parent is gone
                break
            if name == "close":
                break
            try:
                reply: tuple[str, Any] = ("return", calls[name](*args, **kwargs))
            except BaseException as err:  # noqa: BLE001 - the parent raises it
                reply = ("raise", err)
            conn.send(_sendable(reply))
    finally:
        executor.close()


def _is_out_of_memory(ray: Any, err: BaseException) -> bool:
    if isinstance(err, ray.exceptions.OutOfMemoryError):
        return True
    return isinstance(err, ray.exceptions.RayTaskError) and isinstance(err.cause, MemoryError)


class RayExecutor(Executor):
    """Each run is a Ray task; Ray places it, retries it when its worker dies, and returns it.

    Args:
        address: A running cluster: ``"auto"`` (on one of its machines), ``"HOST:6379"``,
            ``"ray://HOST:10001"`` (Ray Client). ``None``: ``$RAY_ADDRESS``, else a local Ray
            instance with this machine's CPUs and GPUs, stopped at the end. A process that is
            already connected (``ray.init`` was called) keeps its connection.
        cpus_per_run: CPUs each run reserves (fractions allowed).
        gpus_per_run: GPUs each run reserves (fractions share a GPU); ``None``: 1 where the
            cluster has GPUs, else 0.
        threads_per_run: torch threads of each run; ``None``: ``cpus_per_run`` rounded down (at
            least 1).
        max_retries: How often Ray runs a task again when its process or node dies; then the
            run is recorded as failed with the reason. A Python exception is never retried; a
            worker that runs out of memory is retried with half the batch.
        ship_data: Send every sample's bytes through Ray's object store (datasets under
            :data:`SHIP_LIMIT_BYTES`) instead of reading them from a shared filesystem.
        poll_seconds: How often to look again at runs another driver holds.

    Where the connection lives: a process that called ``ray.init`` keeps its connection, and
    with it Ray's rule that ends the process when the node's raylet, object store or GCS is lost
    (so does any process on Windows). Otherwise the executor starts a driver process of its own
    that connects and runs the grid; when Ray ends it, :meth:`run` still returns every run that
    came back (they are in the results file too), the others failed with :class:`ClusterLost`,
    and an ``errors`` entry in the ``execution`` block.

    Example:
        >>> with RayExecutor("auto", gpus_per_run=0.5) as ex:  # doctest: +SKIP
        ...     ex.placement()
        (device(type='cuda'), Precision(name='bf16', ...))
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_run: float = 1.0, gpus_per_run: float | None = None,
                 threads_per_run: int | None = None, max_retries: int = 2, ship_data: bool = False,
                 poll_seconds: float = 0.5) -> None:
        if cpus_per_run <= 0:
            raise ValueError(f"cpus_per_run must be > 0, got {cpus_per_run}")
        if gpus_per_run is not None and gpus_per_run < 0:
            raise ValueError(f"gpus_per_run must be >= 0, got {gpus_per_run}")
        if threads_per_run is not None and threads_per_run < 1:
            raise ValueError(f"threads_per_run must be >= 1, got {threads_per_run}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus_per_run = float(cpus_per_run)
        self.gpus_per_run = gpus_per_run
        self.threads_per_run = threads_per_run or max(1, math.floor(cpus_per_run))
        self.max_retries = int(max_retries)
        self.ship_data = ship_data
        self.poll_seconds = poll_seconds
        self._ray: Any = None
        self._driver: _DriverProcess | None = None  # the process holding the connection, when not this one
        self._shutdown = False  # whether close() disconnects (this executor connected or started Ray)
        self._how = ""
        self.startup_seconds = 0.0
        self._placed: dict[str, tuple[torch.device, Precision, float]] = {}
        self._note: Callable[[str, Any], None] = lambda _kind, _payload: None  # a driver process's messages

    def _settings(self) -> dict[str, Any]:
        return {"address": self.address, "cpus_per_run": self.cpus_per_run, "gpus_per_run": self.gpus_per_run,
                "threads_per_run": self.threads_per_run, "max_retries": self.max_retries,
                "ship_data": self.ship_data, "poll_seconds": self.poll_seconds}

    # ---------------------------------------------------------------- connection

    def open(self) -> bool:
        if self._ray is not None or self._driver is not None:
            return False
        ray = _import_ray()
        if self.address is not None:
            _check_reachable(self.address)
        if ray.is_initialized() or os.name != "posix":  # the driver process needs POSIX descriptor passing
            self._connect()
            return True
        start = time.perf_counter()
        driver = _DriverProcess(self._settings())
        try:
            how = driver.call("connect")
        except BaseException:
            driver.stop()
            raise
        self._driver, self._how = driver, f"{how}, held by a driver process of its own"
        self.startup_seconds = time.perf_counter() - start
        return True

    def _connect(self) -> str:
        """Connect in this process (or keep its connection); returns how, in words."""
        ray = _import_ray()
        start = time.perf_counter()
        if ray.is_initialized():
            self._how, self._shutdown = "this process's Ray connection", False
        else:
            kwargs: dict[str, Any] = {"logging_level": "warning", "include_dashboard": False}
            try:
                if self.address is None:
                    ray.init(address="local", **kwargs)
                    self._how = "local Ray instance started for this command"
                else:
                    kwargs.pop("include_dashboard")
                    ray.init(address=self.address, **kwargs)
                    self._how = "existing cluster"
            except ConnectionError as err:
                where = public_address(self.address) or "a local instance"
                raise ExecutorError(f"cannot reach the Ray cluster at {where} ({str(err).splitlines()[0]}); "
                                    f"{_START_CLUSTER}") from None
            except ImportError as err:  # ray:// needs Ray Client (grpcio)
                raise ExecutorError(f"{public_address(self.address)} needs Ray Client ({err}): {_INSTALL_RAY}") from None
            self._shutdown = True
        self._ray = ray
        self._remote = {fn.__name__: ray.remote(fn) for fn in (_probe_task, _run_task, _extract_task, _profile_task)}
        self.startup_seconds = time.perf_counter() - start
        return self._how

    def close(self) -> None:
        if self._driver is not None:
            self._driver.stop()
            self._driver = None
        if self._ray is not None and self._shutdown:
            self._ray.shutdown()
        self._ray = None
        self._placed.clear()

    def _in_driver(self) -> _DriverProcess | None:
        """Open if needed; the driver process that holds the connection, ``None`` when this one does."""
        if self._ray is None and self._driver is None:
            self.open()
        return self._driver

    def _connected(self) -> Any:
        if self._ray is None:
            self.open()
        return self._ray

    # ---------------------------------------------------------------- resources

    def _gpus(self, device: str) -> float:
        ray = self._connected()
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        if device == "cpu" or device == "mps":
            return 0.0
        gpus = self.gpus_per_run if self.gpus_per_run is not None else (1.0 if cluster_gpus > 0 else 0.0)
        if (gpus > 0 or device.startswith("cuda")) and cluster_gpus == 0:
            raise ExecutorError(f"the Ray cluster ({public_address(self.address) or self._how}) has no GPU; "
                                "use --device cpu or --gpus-per-run 0")
        if device.startswith("cuda") and gpus == 0:
            gpus = 1.0
        return gpus

    def _task_options(self, gpus: float) -> dict[str, Any]:
        return {"num_cpus": self.cpus_per_run, "num_gpus": gpus, "max_retries": self.max_retries,
                "retry_exceptions": False}

    def placement(self, device: str = "auto") -> tuple[torch.device, Precision]:
        """On GPUs, one worker with a run's resources says what it computes on (the driver may
        have no GPU, or another one); a CPU computes in fp32 everywhere."""
        if (driver := self._in_driver()) is not None:
            return driver.call("placement", device)
        if device not in self._placed:
            ray = self._connected()
            gpus = self._gpus(device)
            want = "cuda" if gpus > 0 else ("cpu" if device == "auto" else device)
            if want == "cpu":
                name, precision = "cpu", choose_precision(torch.device("cpu"))
            else:
                probe = self._remote["_probe_task"].options(**self._task_options(gpus)).remote(want)
                name, precision = ray.get(probe)
            self._placed[device] = (torch.device(name), precision, gpus)
        dev, precision, _ = self._placed[device]
        return dev, precision

    def _slots(self, gpus: float) -> int:
        resources = self._ray.cluster_resources()
        slots = math.floor(float(resources.get("CPU", 1)) / self.cpus_per_run)
        if gpus > 0:
            slots = min(slots, math.floor(float(resources.get("GPU", 0)) / gpus))
        return max(1, slots)

    def _reason(self, err: BaseException) -> BaseException:
        """What a failed run records: the run's own exception, or how its worker was lost."""
        ex = self._ray.exceptions
        if isinstance(err, ex.RayTaskError) and err.cause is not None:
            return err.cause
        lost = (ex.WorkerCrashedError, ex.NodeDiedError, ex.ObjectLostError, ex.OwnerDiedError,
                ex.LocalRayletDiedError, ex.OutOfMemoryError)
        if isinstance(err, (ex.WorkerCrashedError, ex.OutOfMemoryError)):
            return WorkerLost(f"the worker running it died {1 + self.max_retries} time(s) (--max-retries "
                              f"{self.max_retries}): {type(err).__name__}: {_first_line(err)}")
        if isinstance(err, lost):  # its node, raylet or owner: Ray does not run it again
            return WorkerLost(f"Ray lost the worker running it: {type(err).__name__}: {_first_line(err)}")
        return err

    def _describe(self, gpus: float, options: RunOptions) -> dict[str, Any]:
        ray = self._ray
        nodes = [{"node_id": n.get("NodeID"), "ip": n.get("NodeManagerAddress"),
                  "cpus": n.get("Resources", {}).get("CPU", 0), "gpus": n.get("Resources", {}).get("GPU", 0)}
                 for n in ray.nodes() if n.get("Alive")]
        resources = ray.cluster_resources()
        return {
            "executor": self.name, "address": public_address(self.address) or "local", "connection": self._how,
            "ray_version": ray.__version__, "nodes": nodes,
            "resources": {k: resources.get(k, 0) for k in ("CPU", "GPU")},
            "per_run": {"cpus": self.cpus_per_run, "gpus": gpus, "threads": options.threads,
                        "device": options.device, "loader_workers": options.num_workers},
            "slots": self._slots(gpus), "max_retries": self.max_retries, "startup_seconds": self.startup_seconds,
        }

    # ---------------------------------------------------------------- runs

    def _options_for_workers(self, options: RunOptions, gpus: float, *, cpu: bool) -> RunOptions:
        workers = options.num_workers
        if workers is None:  # the task's CPUs: torch threads on a CPU, image decoding beside a GPU
            workers = 0 if cpu else max(1, math.floor(self.cpus_per_run) - 1)
        return replace(options, threads=self.threads_per_run, num_workers=workers, progress=False,
                       **self._cache_dirs(options.cache_dir, options.image_cache_dir))

    def _cache_dirs(self, features: str | None, images: str | None) -> dict[str, str | None]:
        """The driver's default cache folders, so that workers on a shared filesystem share them;
        with shipped data each node keeps its own."""
        if self.ship_data:
            return {"cache_dir": features, "image_cache_dir": images}
        root = cache_root()
        return {"cache_dir": os.fspath(root / "features") if features is None else features,
                "image_cache_dir": os.fspath(root / "images") if images is None else images}

    def run(self, specs: Sequence[RunSpec], options: RunOptions, *, results_file: str | os.PathLike | None = None,
            train: Callable[[RunSpec, RunEnv], RunResult] = train_run, progress: bool = False) -> Execution:
        if (driver := self._in_driver()) is not None:
            return self._run_in_driver(driver, specs, options, results_file=results_file, train=train,
                                       progress=progress)
        ray = self._connected()
        start = time.perf_counter()
        gpus = next((g for d, _p, g in self._placed.values() if str(d) == options.device), None)
        if gpus is None:
            gpus = self._gpus(options.device)
        options = self._options_for_workers(options, gpus, cpu=options.device == "cpu")
        task = self._remote["_run_task"].options(**self._task_options(gpus))
        extract = self._remote["_extract_task"].options(**self._task_options(gpus))
        ledger = ResultsLedger(results_file)
        todo = _pending(specs, ledger)
        total = len(todo)
        info = self._describe(gpus, options)
        shipment = None
        if self.ship_data and todo:
            samples = {s.path: s for spec in todo for s in spec.fit + spec.select + spec.report + spec.pool}
            root = _data_root(list(samples))
            shipment = _ship(ray, samples.values(), root)
            info["data"] = (f"shipped: {shipment.n_files} files, {shipment.nbytes / 2**20:.1f} MB through Ray's "
                            "object store into each node's temporary folder")
        else:
            info["data"] = "shared filesystem: workers read the data and the caches from the driver's paths"
        self._note("info", info)
        pools: dict[int, Any] = {}  # one copy of each pool in the object store, not one per task

        def pool_ref(spec: RunSpec) -> Any:
            if id(spec.pool) not in pools:
                pools[id(spec.pool)] = ray.put(spec.pool)
            return pools[id(spec.pool)]

        inflight: dict[Any, _Flight] = {}
        extractions: dict[Any, tuple] = {}  # ref -> group
        waiting: dict[tuple, list[RunSpec]] = {}
        extracted: set[tuple] = set()
        extraction_rows: list[dict[str, Any]] = []
        deferred: list[RunSpec] = []
        runs: dict[str, RunResult] = {}
        rows: list[dict[str, Any]] = []
        failures: dict[str, Skipped] = {}
        image_cache_use: dict[str, dict[str, int]] = {}
        errors: list[dict[str, Any]] = []  # what Ray lost: workers beyond the retries, the connection
        window = 2 * self._slots(gpus)

        def submit(spec: RunSpec, halvings: int = 0) -> None:
            ref = task.remote(replace(spec, pool=()), pool_ref(spec), options, train, shipment)
            inflight[ref] = _Flight(spec, time.time(), halvings)

        def group_of(spec: RunSpec) -> tuple | None:
            """Freeze runs of one backbone share one feature pass (only cached features can be shared)."""
            if options.cache_dir == "" or spec.weights is None or not issubclass(get_strategy(spec.strategy), Freeze):
                return None
            return (spec.backbone, spec.weights, spec.image_size, spec.recipe.batch_size, spec.fingerprint,
                    id(spec.pool))

        def finish(flight: _Flight, run: RunResult, where: dict[str, Any],
                   report: dict[str, Any] | None = None) -> None:
            spec = flight.spec
            ledger.record(run)
            ledger.release(spec.key)
            runs[spec.key] = run
            rows.append(_run_row(spec, run, **where, batch_halvings=flight.halvings))
            self._note("run", {"run": run, "row": rows[-1], "failures": report["failures"] if report else [],
                               "image_cache_use": report["image_cache_use"] if report else {}})
            _say(progress, len(rows), total, spec, run, f" on {where.get('node_ip')}")

        try:
            while todo or deferred or inflight or extractions:
                while todo and len(inflight) + sum(map(len, waiting.values())) < window:
                    spec = todo.popleft()
                    if not ledger.claim(spec.key):
                        deferred.append(spec)
                        continue
                    done = ledger.finished(spec.key)
                    if done is not None:
                        ledger.release(spec.key)
                        runs[spec.key] = done
                        continue
                    group = group_of(spec)
                    if group is None or group in extracted:
                        submit(spec)
                        continue
                    if group not in waiting:
                        ref = extract.remote(replace(spec, pool=()), pool_ref(spec), options, shipment)
                        extractions[ref] = group
                        waiting[group] = []
                    waiting[group].append(spec)
                refs = list(inflight) + list(extractions)
                if not refs:
                    if deferred:  # everything left is held by another driver: wait for it
                        time.sleep(self.poll_seconds)
                        todo.extend(deferred)
                        deferred.clear()
                    continue
                ready, _ = ray.wait(refs, num_returns=1, timeout=self.poll_seconds if deferred else None)
                for ref in ready:
                    if ref in extractions:
                        group = extractions.pop(ref)
                        extracted.add(group)
                        try:
                            row = ray.get(ref)
                        except ray.exceptions.RayError as err:  # the runs then extract on their own
                            row = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
                        extraction_rows.append({"backbone": group[0], "image_size": group[2], **row})
                        for spec in waiting.pop(group):
                            submit(spec)
                        continue
                    flight = inflight.pop(ref)
                    try:
                        report = ray.get(ref)
                    except ray.exceptions.RayError as err:
                        batch = flight.spec.recipe.batch_size
                        if _is_out_of_memory(ray, err) and batch > 1:
                            spec = replace(flight.spec, recipe=replace(flight.spec.recipe, batch_size=batch // 2))
                            submit(spec, flight.halvings + 1)
                            continue
                        reason = self._reason(err)
                        if not isinstance(err, ray.exceptions.RayTaskError):  # Ray's loss, not the run's error
                            errors.append({"error": f"{type(reason).__name__}: {reason}", "runs": [flight.spec.key]})
                            self._note("error", errors[-1])
                        finish(flight, failed_run(flight.spec, reason), {})
                        continue
                    for f in report["failures"]:
                        failures[f.path] = f
                    _add_use(image_cache_use, report["image_cache_use"])
                    info.setdefault("worker_versions", report["versions"])
                    received = time.time()
                    finish(flight, report["run"], {
                        "node_id": report["node_id"], "node_ip": report["node_ip"], "pid": report["pid"],
                        "queued_seconds": report["started"] - flight.submitted,
                        "task_seconds": report["finished"] - report["started"],
                        "return_seconds": received - report["finished"]}, report)
                if deferred and not todo:
                    todo.extend(deferred)
                    deferred.clear()
        except BaseException as err:
            for ref in list(inflight) + list(extractions):  # an interrupted driver stops its runs
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            if not isinstance(err, ray.exceptions.RayError):
                raise
            # The connection itself failed (a put, a wait): what came back stays, the rest is unfinished.
            lost = ClusterLost(f"Ray failed mid-grid ({type(err).__name__}: {_first_line(err)}); "
                               "this run did not come back")
            errors.append({"error": f"ClusterLost: {lost}", "runs": _close_out(specs, ledger, runs, lost)})
        finally:
            ledger.release_all()
        ordered = tuple(ledger.previous.get(s.key) or runs[s.key] for s in specs)
        info["extractions"] = extraction_rows
        info["errors"] = errors
        return Execution(runs=ordered, failures=failures, image_cache_use=image_cache_use,
                         info=_summary_times(info, rows, ordered, time.perf_counter() - start))

    def _run_in_driver(self, driver: _DriverProcess, specs: Sequence[RunSpec], options: RunOptions, *,
                       results_file: str | os.PathLike | None, train: Callable[[RunSpec, RunEnv], RunResult],
                       progress: bool) -> Execution:
        """:meth:`run` in the driver process; if Ray ends that process, the runs that came back
        (streamed here as they finished, and in the results file) and the others as unfinished."""
        start = time.perf_counter()
        info: dict[str, Any] = {}
        runs: dict[str, RunResult] = {}
        rows: list[dict[str, Any]] = []
        failures: dict[str, Skipped] = {}
        image_cache_use: dict[str, dict[str, int]] = {}
        errors: list[dict[str, Any]] = []

        def note(kind: str, payload: Any) -> None:
            if kind == "info":
                info.update(payload)
            elif kind == "error":
                errors.append(payload)
            else:
                note_run(payload)

        def note_run(payload: dict[str, Any]) -> None:
            runs[payload["run"].key] = payload["run"]
            rows.append(payload["row"])
            failures.update((f.path, f) for f in payload["failures"])
            _add_use(image_cache_use, payload["image_cache_use"])

        try:
            execution = driver.call("run", specs, options, results_file=results_file, train=train, progress=progress,
                                    on_note=note)
        except _DriverGone as gone:
            self._driver = None
            driver.stop()
            lost = ClusterLost(f"{gone}; this run did not come back")
            error: dict[str, Any] = {"error": f"ClusterLost: {gone}", "exit_code": gone.exit_code}
        else:
            execution.info.update(connection=self._how, startup_seconds=self.startup_seconds)
            return execution
        ledger = ResultsLedger(results_file)
        try:
            error["runs"] = _close_out(specs, ledger, runs, lost)
        finally:
            ledger.release_all()
        ordered = tuple(runs.get(s.key) or ledger.previous[s.key] for s in specs)
        info = {"executor": self.name, "address": public_address(self.address) or "local", "extractions": [],
                **info, "connection": self._how, "startup_seconds": self.startup_seconds}
        info["errors"] = [*errors, error]
        log.warning(f"lost the Ray connection mid-grid ({error['error']}): {len(error['runs'])} run(s) unfinished, "
                    "recorded as failed; run the same command again to train them")
        return Execution(runs=ordered, failures=failures, image_cache_use=image_cache_use,
                         info=_summary_times(info, rows, ordered, time.perf_counter() - start))

    # ---------------------------------------------------------------- profiles

    def profile(self, dataset: Dataset, backbones: Sequence[str], *, config: ProfileConfig = ProfileConfig(),
                progress: bool = False) -> Profile:
        """One task per backbone; the dataset summary and the decision stay on the driver."""
        if (driver := self._in_driver()) is not None:
            return driver.call("profile", dataset, backbones, config=config, progress=progress)
        ray = self._connected()
        start = time.perf_counter()
        device, _ = self.placement(config.device)
        gpus = self._placed[config.device][2]
        sample = stratified_sample(dataset.samples, per_class=config.per_class, total=config.total, seed=config.seed)
        worker_config = replace(
            config, device=str(device),
            num_workers=config.num_workers if config.num_workers is not None else (
                0 if device.type == "cpu" else max(1, math.floor(self.cpus_per_run) - 1)),
            **self._cache_dirs(config.cache_dir, config.image_cache_dir))
        shipment = _ship(ray, sample, os.fspath(dataset.root)) if self.ship_data else None
        task = self._remote["_profile_task"].options(**self._task_options(gpus))
        refs = [task.remote(name, sample, worker_config, dataset.fingerprint(), self.threads_per_run, shipment)
                for name in backbones]
        results, failures = [], []
        use: dict[str, dict[str, int]] = {}
        for name, ref in zip(backbones, refs):
            try:
                result, skipped, image_cache = ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                if isinstance(err.cause, Exception):
                    raise err.cause from None  # e.g. missing weights: the same message as locally
                raise ExecutorError(f"profiling {name} failed on the cluster: {str(err).splitlines()[0]}") from None
            except ray.exceptions.RayError as err:
                raise ExecutorError(f"profiling {name} failed on the cluster: {type(err).__name__}: "
                                    f"{str(err).splitlines()[0]}") from None
            if progress:
                print(f"advisor: profiled {name} on the Ray cluster", file=sys.stderr)
            results.append(result)
            failures.extend(skipped)
            tally_use(use, image_cache)
        return Profile(dataset=summarize_dataset(dataset, sample, extra_skipped=failures), backbones=tuple(results),
                       config=config, device=str(device), seconds=time.perf_counter() - start,
                       image_cache=summarize_use(use))


def _data_root(paths: Sequence[str]) -> str:
    """The deepest folder holding every path (the shipped layout is relative to it)."""
    if not paths:
        return os.sep
    root = os.path.commonpath(paths)
    return root if os.path.isdir(root) else os.path.dirname(root)


# --------------------------------------------------------------------------- by name


#: Executor registry: ``--executor`` name -> class.
EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor, "ray": RayExecutor}


def make_executor(name: str = "local", *, address: str | None = None, cpus_per_run: float | None = None,
                  gpus_per_run: float | None = None, threads_per_run: int | None = None,
                  max_retries: int | None = None, ship_data: bool = False) -> Executor:
    """An executor from the command line's options; Ray-only options with ``local`` are an error.

    Example:
        >>> make_executor("local", threads_per_run=1).threads_per_run
        1
    """
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; valid executors: {', '.join(EXECUTORS)}")
    if name == "local":
        given = [flag for flag, value in (("--address", address), ("--cpus-per-run", cpus_per_run),
                                          ("--gpus-per-run", gpus_per_run), ("--max-retries", max_retries),
                                          ("--ship-data", ship_data or None)) if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to --executor ray")
        return LocalExecutor(threads_per_run=threads_per_run)
    return RayExecutor(address, cpus_per_run=1.0 if cpus_per_run is None else cpus_per_run, gpus_per_run=gpus_per_run,
                       threads_per_run=threads_per_run, max_retries=2 if max_retries is None else max_retries,
                       ship_data=ship_data)
