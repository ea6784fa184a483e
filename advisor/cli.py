"""Command line: a thin click shell over :mod:`advisor.pipeline` and the registry.

Exit codes: 0 success, 1 a clear error (one line naming the file and the fix), 2 usage.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from advisor import __version__, catalogue

__all__ = ["main"]


class _TerminalHandler(logging.Handler):
    """advisor's log records as one ``advisor: message`` line each on stderr (a cache rebuilt, a
    bad results line skipped): the stderr of the moment, which a test runner may have swapped."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"advisor: {self.format(record)}", file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging's own policy: report, never raise
            self.handleError(record)


_TERMINAL = _TerminalHandler()


def _log_to_terminal() -> None:
    """The library logs (``logging.getLogger("advisor...")``); the CLI shows its notices, once."""
    log = logging.getLogger("advisor")
    if _TERMINAL not in log.handlers:
        log.addHandler(_TERMINAL)
    log.setLevel(logging.INFO)


def _friendly_errors(fn: Callable) -> Callable:
    """Known failures become one clear line and exit code 1 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from advisor.backbones import UnknownBackboneError, WeightsUnavailableError
        from advisor.data import DatasetError, ImageLoadError
        from advisor.utils import OutputError, shown

        try:
            return fn(*args, **kwargs)
        except (DatasetError, WeightsUnavailableError, UnknownBackboneError, ImageLoadError, OutputError,
                FileNotFoundError, ValueError) as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:  # anything else the system refused: name the file, never a traceback
            where = f" {shown(err.filename)}" if err.filename else ""
            raise click.ClickException(f"{err.strerror or err}{where}: check the path and its permissions, "
                                       "or the free disk space") from None
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished work is saved; run the same command again to resume", err=True)
            sys.exit(130)

    return wrapper


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def _echo_json(obj: Any) -> None:
    from advisor.utils import json_clean

    click.echo(json.dumps(json_clean(obj), indent=2, allow_nan=False))


def _version_text() -> str:
    """advisor's version, the libraries its numbers depend on, and the device a run would use."""
    import torch  # here, not at the top: the other commands do not pay for it at start-up

    from advisor.runtime import resolve_device
    from advisor.utils import versions

    v = versions()
    device = resolve_device("auto")
    where = device.type
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)}, {torch.cuda.device_count()} visible)"
    cuda = f" (CUDA {torch.version.cuda})" if torch.version.cuda else ""
    return (f"advisor {__version__} (python {v['python']})\n"
            f"torch {torch.__version__}{cuda}, torchvision {v['torchvision']}\n"
            f"device: {where}")


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_text())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
# A plain option: click.version_option replaces any callback with its own fixed message.
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the versions of advisor, torch and torchvision, and the device, then exit.")
def main() -> None:
    """Should you use an ImageNet-pretrained CNN on your images, and how?

    \b
    advisor recommend ./data      profile the data, advise, write an HTML report
    advisor bench ./data          train each strategy, compare, check the advice
    advisor demo                  both, on an embedded demo dataset (offline)
    """
    _log_to_terminal()


# --------------------------------------------------------------------------- backbones


@main.command("backbones")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list.")
@click.option("--available", is_flag=True, help="Only backbones whose weights are available offline now.")
@_friendly_errors
def backbones_cmd(as_json: bool, available: bool) -> None:
    """List backbones: parameters, embedding size, weights availability."""
    from advisor.backbones import backbone_info, list_backbones

    infos = [backbone_info(n) for n in list_backbones()]
    if available:
        infos = [i for i in infos if i.weights != "needs download"]
    if as_json:
        _echo_json([i.to_dict() for i in infos])
        return
    click.echo(f"{'name':24} {'params':>9} {'embed':>6} {'size':>5} {'BN':>3}  weights")
    for i in infos:
        click.echo(f"{i.name:24} {i.num_params / 1e6:8.1f}M {i.embedding_dim:6d} {i.image_size:5d} "
                   f"{'yes' if i.has_batchnorm else 'no':>3}  {i.weights}")
    ready = [i.name for i in infos if i.weights != "needs download"]
    click.echo(f"\n{len(infos)} backbones; weights available offline: {', '.join(ready) or 'none'}")


@main.group("weights")
def weights_group() -> None:
    """Manage pretrained weight files in torch's hub cache."""


@weights_group.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False))
@_friendly_errors
def weights_import(name: str, file: str) -> None:
    """Check that FILE loads into backbone NAME, then copy it into the cache."""
    from advisor.backbones import import_weights

    dest = import_weights(name, file)
    click.echo(f"{name}: weights imported to {dest}")


# --------------------------------------------------------------------------- shared options


def _executor_options(fn: Callable) -> Callable:
    ray = "With --executor ray: "
    options = [
        click.option("--executor", "executor_name", default="local", show_default=True,
                     type=click.Choice(["local", "ray"]),
                     help="Where the work runs: this process, or one Ray task per run (bench) or backbone "
                          "(recommend). Ray: pip install 'transfer-advisor[ray]'."),
        click.option("--address", help=ray + "the cluster: auto, HOST:6379 or ray://HOST:10001 (default: "
                                             "$RAY_ADDRESS, else a local Ray instance for this command)."),
        click.option("--cpus-per-run", type=click.FloatRange(0, min_open=True), help=ray + "CPUs per task [default: 1]."),
        click.option("--gpus-per-run", type=click.FloatRange(0),
                     help=ray + "GPUs per task, fractions share a GPU [default: 1 where the cluster has GPUs, else 0]."),
        click.option("--threads-per-run", type=click.IntRange(1),
                     help="torch threads of each run (default: --cpus-per-run with ray, torch's own with local); "
                          "the same value gives the same numbers with either executor on a CPU."),
        click.option("--max-retries", type=click.IntRange(0),
                     help=ray + "reruns of a task whose worker or node died, then it is recorded as failed [default: 2]."),
        click.option("--ship-data", is_flag=True,
                     help=ray + "send the images (under 1 GB) through Ray's object store, for clusters without a "
                                "shared filesystem."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _executor(name: str, address: str | None, cpus_per_run: float | None, gpus_per_run: float | None,
              threads_per_run: int | None, max_retries: int | None, ship_data: bool) -> Any:
    from advisor.bench.executors import make_executor

    return make_executor(name, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                         threads_per_run=threads_per_run, max_retries=max_retries, ship_data=ship_data)


@contextlib.contextmanager
def _cluster_errors() -> Iterator[None]:
    """A Ray that is missing or a cluster that cannot be reached: one line, exit 1."""
    from advisor.bench.executors import ExecutorError

    try:
        yield
    except ExecutorError as err:
        raise click.ClickException(str(err)) from None


@contextlib.contextmanager
def _stdout_for_json_only(active: bool) -> Iterator[None]:
    """With ``--json``, stdout carries the JSON document and nothing else.

    While the work runs, whatever else is written to stdout (Ray's worker and raylet messages, a
    library's print) goes to stderr instead: in Python, and at the file-descriptor level so that
    native code and the processes started meanwhile (Ray's) write there too.
    """
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = None
    try:
        os.fstat(1), os.fstat(2)
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no real descriptors (an embedding host): the Python-level redirect still applies
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _profile_options(fn: Callable) -> Callable:
    options = [
        click.option("--backbones", "backbones", help="Comma-separated backbone names (default: available ones)."),
        click.option("--per-class", default=50, show_default=True, type=click.IntRange(2), help="Sample cap per class."),
        click.option("--sample-size", default=1000, show_default=True, type=click.IntRange(4), help="Sample cap in total."),
        click.option("--image-size", type=click.IntRange(16, 1024), help="Crop size of the profile (default: each backbone's native size, where the similarity score is calibrated)."),
        click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"])),
        click.option("--seed", default=0, show_default=True, type=int),
        click.option("--weights", "weights", default="imagenet", show_default=True, type=click.Choice(["imagenet", "random"])),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="JSON/TOML file of decision thresholds."),
        click.option("--threshold", "threshold", multiple=True, metavar="KEY=VALUE", help="Override one threshold, e.g. similarity=0.6."),
        click.option("--no-cache", is_flag=True,
                     help="Do not read or write the feature and decoded-image caches (images are decoded on the fly)."),
        click.option("--reference", type=click.Path(dir_okay=False),
                     help="Reference statistics from `advisor reference build` (adds a Frechet distance)."),
        click.option("--out", default="reports", show_default=True, type=click.Path(), help="Report folder."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _thresholds(config_file: str | None, overrides: tuple[str, ...]):
    from advisor.decide import Thresholds, load_thresholds

    th = load_thresholds(config_file) if config_file else Thresholds()
    if overrides:
        values = th.to_dict()
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--threshold")
            values[key.strip().replace("-", "_")] = value
        try:
            th = Thresholds.from_dict(values)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--threshold") from None
    return th


def _profile_config(per_class: int, sample_size: int, image_size: int | None, device: str, seed: int,
                    weights: str, no_cache: bool, reference: str | None = None):
    from advisor.profile import ProfileConfig
    from advisor.runtime import resolve_device

    resolve_device(device)  # fail early on --device cuda without CUDA
    return ProfileConfig(per_class=per_class, total=sample_size, image_size=image_size, device=device,
                         seed=seed, weights=None if weights == "random" else "imagenet",
                         cache_dir="" if no_cache else None, image_cache_dir="" if no_cache else None,
                         reference=reference)


def _print_recommendation(result: dict[str, Any], html: Path) -> None:
    rec = result["recommendation"]
    axes = rec["axes"]
    ds = result["dataset"]
    click.echo(f"\n{ds['path']}: {ds['n_images']} images, {ds['n_classes']} classes"
               + (f", {ds.get('skipped_total') or len(ds['skipped'])} files skipped" if ds["skipped"] else ""))
    click.secho(f"\n  {catalogue.ADVICE[rec['strategy']].headline}", bold=True)
    click.echo(f"  case: {rec['case']}; backbone: {rec['backbone']}; confidence {rec['confidence']:.2f}")
    best = next(b for b in result["backbones"] if b["name"] == rec["backbone"])
    t = best["transferability"]
    if not axes:  # too few images: the reason is the answer
        click.echo(f"  {rec['reasons'][0]}\n\nreport: {html}")
        return
    click.echo(f"  images per class the bench fits on {axes['size']['value']:.0f} "
               f"(threshold {axes['size']['threshold']:.0f}) | "
               f"similarity {axes['similarity']['value']:.2f} (threshold {axes['similarity']['threshold']:.2f}) | "
               f"frozen probe {t.get('linear_probe', float('nan')):.1%} vs pixels {t.get('pixel_linear_probe', float('nan')):.1%}")
    if rec.get("overrides"):
        click.echo(f"  evidence override: {', '.join(rec['overrides'])}")
    click.echo(f"\nreport: {html}")


# --------------------------------------------------------------------------- recommend


@main.command("recommend")
@click.argument("data", default="data", type=click.Path())
@_profile_options
@_executor_options
@_friendly_errors
def recommend_cmd(data, backbones, per_class, sample_size, image_size, device, seed, weights,
                  config_file, threshold, no_cache, reference, out, as_json, quiet, executor_name, address,
                  cpus_per_run, gpus_per_run, threads_per_run, max_retries, ship_data) -> None:
    """Profile DATA (default ./data), advise freeze / fine-tune / not worth using, write a report.

    DATA holds one folder per class, or train/ and val/ folders that each hold one per class.
    """
    from advisor.pipeline import run_recommend

    th = _thresholds(config_file, threshold)
    config = _profile_config(per_class, sample_size, image_size, device, seed, weights, no_cache, reference)
    executor = _executor(executor_name, address, cpus_per_run, gpus_per_run, threads_per_run, max_retries, ship_data)
    with _cluster_errors(), _stdout_for_json_only(as_json):
        job = run_recommend(data, _csv(backbones), config=config, thresholds=th, out=out, progress=not quiet,
                            executor=executor)
    if as_json:
        _echo_json(job.result)
    else:
        _print_recommendation(job.result, job.html)


# --------------------------------------------------------------------------- bench


def _epochs(_ctx: click.Context, _param: click.Parameter, value: str) -> int | str:
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise click.BadParameter(f"{value!r} is neither 'auto' nor a whole number >= 1")


def _fractions(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[float, ...]:
    from advisor.bench.config import AUTO, AUTO_FRACTIONS

    if not value:
        return (1.0,)
    if value.strip().lower() == AUTO:
        return AUTO_FRACTIONS
    try:
        values = tuple(float(v) for v in _csv(value) or ())
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither 'auto' nor a comma-separated list of numbers, e.g. "
                                 "0.25,0.5,1 (a bare --fractions takes the next word as its value: put DATA "
                                 "before it)") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise click.BadParameter(f"fractions must lie in (0, 1], got {value!r}")
    return values


def _bench_options(fn: Callable) -> Callable:
    options = [
        click.option("--strategies", default="freeze,finetune,scratch", show_default=True,
                     help="Comma-separated, from: " + "; ".join(
                         f"{s.name} ({s.help})" for s in catalogue.STRATEGIES.values()) + "."),
        click.option("--epochs", default="auto", show_default=True, callback=_epochs,
                     help="'auto': warm up, hold the peak learning rate while the selection accuracy improves, "
                          "then restore the best weights and cool down to 0; N: a fixed budget of N epochs "
                          "(warm-up, cosine to 0), the last one evaluated."),
        click.option("--lr-probe/--no-lr-probe", default=True, show_default=True,
                     help="Choose each network's learning rate by a short probe (0.3x, 1x, 3x the default, "
                          "2 epochs each) on the selection split."),
        click.option("--lpft", is_flag=True,
                     help="Fine-tune from the frozen strategy's fitted head (LP-FT) instead of a random one "
                          "(it helped on data near ImageNet, collapsed on data far from it)."),
        click.option("--max-epochs", type=click.IntRange(1),
                     help="With --epochs auto: cap of every strategy (default 30, scratch 60)."),
        click.option("--patience", default=5, show_default=True, type=click.IntRange(1),
                     help="With --epochs auto: epochs without improvement before stopping."),
        click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1)),
        click.option("--seeds", default=1, show_default=True, type=click.IntRange(1), help="Number of seeds per run."),
        click.option("--tune", is_flag=True,
                     help="Sweep a few learning rates per strategy; keep the best on the selection split."),
        click.option("--margin", default=0.02, show_default=True, type=click.FloatRange(0, 1),
                     help="Accuracy margin of the cost-aware verdict."),
        click.option("--max-per-class", type=click.IntRange(1), help="Cap training images per class (quick runs)."),
        click.option("--fractions", callback=_fractions, metavar="[auto|F,F,...]", is_flag=False,
                     flag_value="auto",
                     help="Also train on nested, class-stratified fractions of the training split: fitted "
                          "learning curves and where more data would change the answer. Bare --fractions "
                          "or 'auto': 1/8, 1/4, 1/2 and all of it; or a list, e.g. 0.25,0.5,1 (with fewer "
                          "than 4 sizes nothing tests the fitted law, and its predictions are withheld)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@main.command("bench")
@click.argument("data", default="data", type=click.Path())
@_profile_options
@_bench_options
@_executor_options
@_friendly_errors
def bench_cmd(data, backbones, per_class, sample_size, image_size, device, seed, weights, config_file,
              threshold, no_cache, reference, out, as_json, quiet, strategies, epochs, lr_probe, lpft, max_epochs,
              patience, batch_size, seeds, tune, margin, max_per_class, fractions, executor_name, address, cpus_per_run, gpus_per_run,
              threads_per_run, max_retries, ship_data) -> None:
    """Train each strategy on DATA for each backbone, compare, and check the advice.

    Finished runs are saved as they end: interrupt at any time and run the same command again.
    A run that fails is reported in the table; the exit code is 0 when every backbone has at
    least one finished run, 1 otherwise.
    """
    from advisor.bench import BenchConfig
    from advisor.pipeline import run_bench

    th = _thresholds(config_file, threshold)
    pconfig = _profile_config(per_class, sample_size, None, device, seed, weights, no_cache, reference)
    config = BenchConfig(
        strategies=tuple(_csv(strategies) or ()), epochs=epochs, image_size=image_size, batch_size=batch_size,
        seeds=tuple(range(seed, seed + seeds)), device=device, tune=tune, margin=margin, max_epochs=max_epochs,
        patience=patience, cache_dir=pconfig.cache_dir, image_cache_dir=pconfig.image_cache_dir,
        max_per_class=max_per_class, fractions=fractions, weights=pconfig.weights, lr_probe=lr_probe, lpft=lpft,
    )
    executor = _executor(executor_name, address, cpus_per_run, gpus_per_run, threads_per_run, max_retries, ship_data)
    with _cluster_errors(), _stdout_for_json_only(as_json):
        job = run_bench(data, _csv(backbones), config=config, profile_config=pconfig, thresholds=th, out=out,
                        progress=not quiet, executor=executor)
    if as_json:
        _echo_json(job.result)
    else:
        _print_bench(job.result, job.html)
    unfinished = _backbones_without_finished_runs(job.result)
    if unfinished:
        click.echo(f"advisor bench: no run finished on {', '.join(unfinished)}; see the errors above and "
                   f"the report {job.html}", err=True)
        sys.exit(1)


def _backbones_without_finished_runs(result: dict[str, Any]) -> list[str]:
    runs = result.get("runs") or []
    backbones = list(dict.fromkeys(r.get("backbone") for r in runs))
    return [b for b in backbones if not any(r.get("backbone") == b and r.get("status") == "ok" for r in runs)]


def _num(x: Any, spec: str, missing: str = "-") -> str:
    return format(x, spec) if isinstance(x, (int, float)) and math.isfinite(x) else missing


def _print_bench(result: dict[str, Any], html: Path) -> None:
    protocol = result.get("protocol") or {}
    click.echo(f"\nreported on: {protocol.get('reported_on')}; selected on: {protocol.get('selected_on') or 'nothing'}"
               f"; {protocol.get('n_seeds') or len(protocol.get('seeds') or ())} seed(s); budget: {protocol.get('budget')}")
    click.echo(f"\n{'backbone':20} {'strategy':16} {'accuracy':>9} {'±':>6} {'macro-F1':>8} {'epochs':>6} {'seconds':>8}")
    for row in result.get("summary", []):
        name = f"{row['backbone']:20} {row['strategy']:16}"
        if row.get("mean_accuracy") is None:
            error = (row.get("errors") or ["unknown error"])[0]
            click.echo(f"{name} {'failed':>9}  {error[:100]}")
            continue
        epochs = (_num(row.get("mean_epochs"), ".0f") + ("+" if row.get("converged") is False else "")
                  + ("°" if row.get("learned") is False else ""))
        click.echo(f"{name} {_num(row['mean_accuracy'], '9.1%')} {_num(row.get('std_accuracy') or 0.0, '6.1%')} "
                   f"{_num(row.get('mean_f1'), '8.3f')} {epochs:>6} {_num(row.get('mean_seconds'), '8.1f')}"
                   + (f"  ({row['n_failed']} failed: {(row.get('errors') or [''])[0][:80]})" if row.get("n_failed") else ""))
    if any(row.get("converged") is False for row in result.get("summary", [])):
        click.echo("(+: still improving when its budget ran out; its accuracy is a lower bound)")
    if any(row.get("learned") is False for row in result.get("summary", [])):
        click.echo("(°: never left chance on the selection split: it learned nothing to judge by)")
    if protocol.get("selection_warning"):
        click.echo(f"note: {protocol['selection_warning']}")
    winner = result.get("winner") or {}
    if winner.get("verdict"):
        click.secho(f"\n  measured winner: {winner.get('verdict')} ({winner.get('backbone')}/{winner.get('strategy')}, "
                    f"{_num(winner.get('accuracy'), '.1%')})", bold=True)
    click.echo(f"  rule: {winner.get('rule')}")
    rec = result.get("recommendation") or {}
    agreement = result.get("agreement")
    if rec:
        word = {True: "agrees with", False: "disagrees with", None: "could not be compared with"}[agreement]
        click.echo(f"  the measurement {word} the advice ({rec.get('strategy')} on {rec.get('backbone')})"
                   + (f": {result['agreement_note']}" if result.get("agreement_note") else ""))
    click.echo(f"\nreport: {html}")


# --------------------------------------------------------------------------- caches


@main.group("cache")
def cache_group() -> None:
    """Show or free what advisor keeps on disk (features, decoded images, references, backbone facts)."""


@cache_group.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list.")
@_friendly_errors
def cache_info_cmd(as_json: bool) -> None:
    """Each cache: its folder, files and size."""
    from advisor.caches import cache_usage
    from advisor.utils import human_bytes

    usage = cache_usage()
    if as_json:
        _echo_json([u.to_dict() for u in usage])
        return
    for u in usage:
        click.echo(f"{u.kind:11} {u.files:6d} files {human_bytes(u.bytes):>10}  {u.path}  ({u.description})")
    click.echo(f"total: {human_bytes(sum(u.bytes for u in usage))}; `advisor cache clear` frees it (rebuilt when needed)")


@cache_group.command("clear")
@click.argument("kinds", nargs=-1)
@_friendly_errors
def cache_clear_cmd(kinds: tuple[str, ...]) -> None:
    """Delete the caches named by KINDS (features, images, references, backbones; default: all)."""
    from advisor.caches import clear_caches
    from advisor.utils import human_bytes

    freed = clear_caches(list(kinds) or None)
    click.echo(f"freed {human_bytes(sum(u.bytes for u in freed))} in {sum(u.files for u in freed)} files "
               f"({', '.join(u.kind for u in freed)})")


# --------------------------------------------------------------------------- reference


@main.group("reference")
def reference_group() -> None:
    """Reference embedding statistics from image folders you own."""


@reference_group.command("build")
@click.argument("folder", type=click.Path())
@click.option("--backbone", default="efficientnet_lite0", show_default=True)
@click.option("--sample-size", default=1000, show_default=True, type=click.IntRange(2))
@click.option("--out", type=click.Path(dir_okay=False), help="File to write (default: in advisor's cache).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--quiet", "-q", is_flag=True)
@_friendly_errors
def reference_build(folder: str, backbone: str, sample_size: int, out: str | None, device: str, quiet: bool) -> None:
    """Embed up to --sample-size images of FOLDER (any layout) and save their mean/covariance.

    Pass the file to `advisor recommend --reference FILE` to add a Frechet distance to it.
    """
    from advisor.profile import build_reference

    dest = build_reference(folder, backbone, out=out, total=sample_size, device=device, progress=not quiet)
    click.echo(f"reference for {backbone} written to {dest}")


# --------------------------------------------------------------------------- demo


@main.command("demo")
@click.option("--dataset", "name", default="digits", show_default=True,
              type=click.Choice(["digits", "photos", "microscopy"]), help="Which embedded dataset.")
@click.option("--out", default="reports", show_default=True, type=click.Path())
@click.option("--per-class", default=40, show_default=True, type=click.IntRange(4), help="Images per class.")
@click.option("--epochs", default="auto", show_default=True, callback=_epochs,
              help="'auto' (early stopping) or a fixed number of epochs for the bench.")
@click.option("--max-epochs", default=20, show_default=True, type=click.IntRange(1),
              help="With --epochs auto: the most any strategy may train (the demo's budget).")
@click.option("--image-size", default=112, show_default=True, type=click.IntRange(16, 1024),
              help="Crop size of the bench (the digits are 8x8 images: 112 px holds all they have; the profile "
                   "stays at the backbone's native size, where the similarity is calibrated).")
@click.option("--weights", "weights", default="imagenet", show_default=True, type=click.Choice(["imagenet", "random"]),
              help="random: a smoke run of the whole pipeline, whose verdict means nothing.")
@click.option("--profile-size", type=click.IntRange(16, 1024),
              help="Crop size of the profile (default: native; smaller is faster but uncalibrated).")
@click.option("--quiet", "-q", is_flag=True)
@_friendly_errors
def demo_cmd(name: str, out: str, per_class: int, epochs: int | str, max_epochs: int, image_size: int,
             weights: str, profile_size: int | None, quiet: bool) -> None:
    """Run recommend, then bench, on an embedded dataset (no download needed)."""
    from advisor.bench import BenchConfig
    from advisor.demo import DEMO_BENCH, make_demo
    from advisor.pipeline import run_bench, run_recommend
    from advisor.profile import ProfileConfig

    root = make_demo(Path(out) / "demo-data", name, per_class=per_class)
    click.echo(f"demo dataset: {root} (embedded {name}, {per_class} images per class)")
    pweights = None if weights == "random" else "imagenet"
    pconfig = ProfileConfig(per_class=per_class, image_size=profile_size, weights=pweights)
    job = run_recommend(root, ["efficientnet_lite0"], config=pconfig, out=out, progress=not quiet)
    _print_recommendation(job.result, job.html)
    click.echo(f"\nbenchmarking freeze / finetune / scratch at {image_size} px to check the advice...")
    config = BenchConfig(**{**DEMO_BENCH, "max_epochs": max_epochs, "image_size": image_size}, epochs=epochs,
                         weights=pweights)
    job = run_bench(root, ["efficientnet_lite0"], config=config, profile_config=pconfig, out=out,
                    progress=not quiet)
    _print_bench(job.result, job.html)
    click.echo(f"index of reports: {Path(out) / 'index.html'}")


if __name__ == "__main__":  # pragma: no cover
    main()
