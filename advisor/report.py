"""HTML + JSON reports for ``advisor recommend`` and ``advisor bench``.

Every report is one self-contained HTML file (inline CSS, figures as base64 PNG, thumbnails as
base64 JPEG, no external URL) written next to a JSON twin holding the same result, plus an
``index.html`` listing every report in the folder. The renderers take the plain, JSON-serialisable
dicts that the stage results produce with ``to_dict()``, so a report can be re-rendered from its
JSON twin alone; any optional field may be missing or null.

Example:
    >>> from advisor.report import write_recommend_report
    >>> result = {"kind": "recommend", "dataset": {"path": "data/flowers"},
    ...           "recommendation": {"strategy": "freeze"}}
    >>> html_path, json_path = write_recommend_report(result, "reports")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import math
import numbers
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from advisor import __version__, catalogue
from advisor.utils import OutputError, atomic_writer, check_writable, json_clean, safe_name, shown

__all__ = [
    "render_bench_html",
    "render_recommend_html",
    "write_bench_report",
    "write_index",
    "write_recommend_report",
]

MISSING = "\u2014"  # em dash: what a missing value looks like in every table
THUMB_PX = 96
THUMBS_PER_CLASS = 6
THUMB_CLASSES = 20
MAX_BARS = 40
MAX_SKIPPED = 50
_DPI = 144  # figures are shown at about half their pixel width: sharp on high-DPI screens

#: Strategies and advice words with a colour of their own (:mod:`advisor.catalogue`).
STRATEGY_COLOURS = catalogue.colours()
#: Strategies in tables and figures: those with a colour of their own, cheapest first; the others
#: after them, by name.
_STRATEGY_ORDER = tuple(name for name, info in catalogue.STRATEGIES.items() if info.colour)
_FALLBACK_COLOURS = ("#0891b2", "#db2777", "#65a30d", "#9333ea", "#ea580c")
SIGNAL_LABELS = {
    "bn_divergence": "BN divergence",
    "max_softmax": "Max softmax",
    "entropy": "Entropy",
    "energy": "Energy",
}
_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": "#374151",
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
    "legend.frameon": False,
    "legend.fontsize": 8,
}


# --------------------------------------------------------------------------- public API


def render_recommend_html(result: Mapping[str, Any]) -> str:
    """Render the HTML page of a ``recommend`` result.

    Args:
        result: the dict form of a recommendation run (see the module docstring).

    Returns:
        The whole self-contained HTML document.

    Example:
        >>> html = render_recommend_html({"recommendation": {"strategy": "freeze"}})
        >>> "Freeze" in html
        True
    """
    return "".join(_recommend_template().generate(_recommend_context(result)))


def render_bench_html(result: Mapping[str, Any]) -> str:
    """Render the HTML page of a ``bench`` result.

    Example:
        >>> html = render_bench_html({"winner": {"verdict": "finetune"}})
        >>> "Fine-tune" in html
        True
    """
    return "".join(_bench_template().generate(_bench_context(result)))


def write_recommend_report(
    result: Mapping[str, Any], out_dir: str | Path, *, name: str | None = None
) -> tuple[Path, Path]:
    """Write ``<name>.html`` and its JSON twin ``<name>.json`` into ``out_dir``, then the index.

    Args:
        result: the dict form of a recommendation run.
        out_dir: folder for the reports; created if missing.
        name: file stem; by default ``recommend-<dataset folder>-<YYYYmmdd-HHMMSS>`` from
            ``result["created"]``. Characters outside ``[A-Za-z0-9._-]`` become ``_``.

    Returns:
        ``(html_path, json_path)``.

    Example:
        >>> write_recommend_report({"dataset": {"path": "data/pets"}}, "reports")  # doctest: +SKIP
        (PosixPath('reports/recommend-pets-20261127-235900.html'), ...)
    """
    return _write_report(result, out_dir, "recommend", name, _recommend_template, _recommend_context)


def write_bench_report(
    result: Mapping[str, Any], out_dir: str | Path, *, name: str | None = None
) -> tuple[Path, Path]:
    """Write a ``bench`` report and its JSON twin into ``out_dir``, then the index.

    Same contract as :func:`write_recommend_report`, with ``bench-`` file names.
    """
    return _write_report(result, out_dir, "bench", name, _bench_template, _bench_context)


def write_index(out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html`` listing every report found through its JSON twin, newest first.

    JSON files that are not report twins (no ``kind`` of ``recommend``/``bench``, or unreadable)
    are ignored. Links are relative file names, so the folder can be moved or served as is.

    Example:
        >>> write_index("reports")  # doctest: +SKIP
        PosixPath('reports/index.html')
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for json_path in sorted(out.glob("*.json")):
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(data, Mapping) or data.get("kind") not in ("recommend", "bench"):
            continue
        entries.append(_index_entry(data, json_path))
    entries.sort(key=lambda e: e["sort_key"], reverse=True)
    index = out / "index.html"
    template = _environment().get_template("index.html")
    _write_atomic(index, template.generate({"entries": entries, "folder": out.resolve().name}))
    return index


# --------------------------------------------------------------------------- writing


def _write_report(result, out_dir, kind, name, template_getter, context_builder) -> tuple[Path, Path]:
    out = check_writable(out_dir, "report folder")
    try:
        stem, reserved = (safe_name(name, default="report"), None) if name else _reserve(out, _default_stem(result, kind))
    except OSError as err:
        raise OutputError(f"cannot write the report in {shown(out)} ({err.strerror or err}): choose a writable "
                          "folder with --out") from None
    html_path, json_path = out / f"{stem}.html", out / f"{stem}.json"
    try:
        twin = dict(json_clean(result))
        twin["report"] = str(html_path)
        # Serialise first: a result that cannot become JSON fails before the report is touched.
        json_text = json.dumps(twin, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        _write_atomic(html_path, template_getter().generate(context_builder(result)))
        _write_atomic(json_path, [json_text])
        write_index(out)
    except BaseException as err:
        if reserved is not None and reserved.exists() and reserved.stat().st_size == 0:
            reserved.unlink()  # the empty placeholder of a report that was never written
        if isinstance(err, OSError):
            fix = "free some disk space" if err.errno == 28 else "choose a writable folder with --out"
            raise OutputError(f"cannot write the report in {shown(out)} ({err.strerror or err}): {fix}; "
                              "finished runs are kept in the results file") from None
        raise
    return html_path, json_path


def _reserve(out: Path, stem: str) -> tuple[str, Path]:
    """A report name no other command is writing: ``stem``, else ``stem-2``, ``stem-3``...

    The JSON twin's name is claimed by creating it exclusively (empty until the report is
    written): two commands finishing in the same second never write over each other's report.
    """
    for n in range(1, 10_000):
        candidate = stem if n == 1 else f"{stem}-{n}"
        path = out / f"{candidate}.json"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return candidate, path
    raise OSError(f"no free report name for {stem} in {out}")


def _write_atomic(path: Path, chunks: Iterable[str]) -> None:
    """Stream ``chunks`` into a temp file beside ``path``, then rename it over ``path``.

    The rename is atomic on one file system, so a reader sees the old file or the new one, and a
    render that fails midway leaves the old file untouched and no temp file behind. A name that
    is not valid UTF-8 never stops the write: it is written backslash-escaped.
    """
    with atomic_writer(path, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as fh:
        for chunk in chunks:
            fh.write(chunk)


def _default_stem(result: Mapping[str, Any], kind: str) -> str:
    path = str(_mapping(result.get("dataset")).get("path") or "").rstrip("/\\")
    folder = re.split(r"[/\\]", path)[-1] if path else "dataset"
    created = _parse_date(result.get("created")) or datetime.now()
    return safe_name(f"{kind}-{folder}-{created:%Y%m%d-%H%M%S}", default="report")


def _index_entry(data: Mapping[str, Any], json_path: Path) -> dict[str, Any]:
    html_path = json_path.with_suffix(".html")
    if not html_path.exists() and isinstance(data.get("report"), str):
        html_path = Path(data["report"])
    created = _parse_date(data.get("created"))
    if created is None:
        created = datetime.fromtimestamp(json_path.stat().st_mtime)
    kind = data.get("kind")
    if kind == "bench":
        winner = _mapping(data.get("winner"))
        answer = winner.get("verdict")
        detail = " · ".join(
            str(x) for x in (winner.get("backbone"), _strategy_label(winner.get("strategy"))) if x
        )
        detail = f"best: {detail}" if detail else ""
    else:
        rec = _mapping(data.get("recommendation"))
        answer = rec.get("strategy")
        detail = " · ".join(str(x) for x in (rec.get("backbone"), rec.get("case")) if x)
    return {
        "kind": kind,
        "dataset": _mapping(data.get("dataset")).get("path"),
        "created": f"{created:%Y-%m-%d %H:%M}",
        "sort_key": created.timestamp(),
        "answer": _badge(answer),
        "detail": detail,
        "href": html_path.name,
    }


# --------------------------------------------------------------------------- templates


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,  # class names, paths and error messages are user data
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters.update(
        pct=fmt_pct, num=fmt_num, int=fmt_int, seconds=fmt_seconds, points=fmt_points, text=fmt_text
    )
    env.globals.update(MISSING=MISSING, advisor_version=__version__, strategy_colours=STRATEGY_COLOURS)
    return env


def _recommend_template() -> jinja2.Template:
    return _environment().get_template("recommend.html")


def _bench_template() -> jinja2.Template:
    return _environment().get_template("bench.html")


# --------------------------------------------------------------------------- formatting


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(float(x))


def fmt_pct(x: Any, digits: int = 1) -> str:
    """An accuracy in [0, 1] as a percentage: ``0.9234 -> '92.3%'``; missing -> '—'."""
    return f"{100 * float(x):.{digits}f}%" if _is_number(x) else MISSING


def fmt_points(x: Any) -> str:
    """A difference of two accuracies in percentage points: ``0.12 -> '+12.0 pts'``."""
    return f"{100 * float(x):+.1f} pts" if _is_number(x) else MISSING


def fmt_num(x: Any) -> str:
    """Three significant digits, thousands separated above 1000: ``0.012345 -> '0.0123'``."""
    if not _is_number(x):
        return MISSING
    if isinstance(x, numbers.Integral):
        return f"{int(x):,}"
    f = float(x)
    if abs(f) >= 1000:
        return f"{f:,.0f}"
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{f:.3g}")  # 1e-05 -> 1e-5


def fmt_int(x: Any) -> str:
    return f"{round(float(x)):,}" if _is_number(x) else MISSING


def fmt_seconds(x: Any) -> str:
    """A duration: ``12.34 -> '12.3 s'``, ``252 -> '4 min 12 s'``, ``3720 -> '1 h 02 min'``."""
    if not _is_number(x):
        return MISSING
    s = float(x)
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(round(s % 60)):02d} s"
    return f"{int(s // 3600)} h {int(round(s % 3600 / 60)):02d} min"


def fmt_text(x: Any) -> str:
    """Any option value as short text: strings as they are, the rest as JSON."""
    if x is None:
        return MISSING
    if isinstance(x, str):
        return x or MISSING
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return fmt_num(x)
    return json.dumps(json_clean(x), ensure_ascii=False)


def _strategy_label(strategy: Any) -> str:
    if not strategy:
        return ""
    return catalogue.label(str(strategy))


def _badge(strategy: Any) -> dict[str, str] | None:
    if not strategy:
        return None
    key = str(strategy)
    css = key if key in STRATEGY_COLOURS else "other"
    return {"label": _strategy_label(key), "css": css, "key": key}


def _parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Aware and naive dates cannot be compared: show everything in local time.
    return parsed.astimezone().replace(tzinfo=None) if parsed.tzinfo else parsed


def _display_date(value: Any) -> str:
    parsed = _parse_date(value)
    if parsed:
        return f"{parsed:%d %b %Y, %H:%M}"
    return str(value) if value else MISSING


def _mapping(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _items(x: Any) -> list[Any]:
    """A list field as a list: one string becomes one item, anything else that is not a list none."""
    if isinstance(x, str):
        return [x]
    return [v for v in x if v is not None] if isinstance(x, (list, tuple)) else []


def _records(x: Any) -> list[Mapping[str, Any]]:
    return [r for r in x if isinstance(r, Mapping)] if isinstance(x, Sequence) and not isinstance(x, str) else []


def _mpl_text(s: Any, limit: int = 32) -> str:
    """A label matplotlib will draw literally: no mathtext from ``$``; long names lose their middle,
    since class names often share a prefix and differ at the end."""
    text = str(s)
    if len(text) > limit:
        head = (limit - 1) // 2
        text = text[:head] + "\u2026" + text[-(limit - 1 - head):]
    return text.replace("$", r"\$")


def _colour(strategy: str, others: list[str]) -> str:
    if strategy in STRATEGY_COLOURS:
        return STRATEGY_COLOURS[strategy]
    if strategy not in others:
        others.append(strategy)
    return _FALLBACK_COLOURS[others.index(strategy) % len(_FALLBACK_COLOURS)]


def _strategy_order(strategies: Iterable[str]) -> list[str]:
    found = set(strategies)
    return [s for s in _STRATEGY_ORDER if s in found] + sorted(found - set(_STRATEGY_ORDER))


# --------------------------------------------------------------------------- figures


@contextlib.contextmanager
def _figure(width: float, height: float) -> Iterator[Any]:
    """A pyplot-free figure (no global state, nothing to close) drawn under the report style."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        yield Figure(figsize=(width, height), layout="constrained")


def _png_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _log_x(ax: Any) -> None:
    """Log-scale x axis with plain tick labels (10, 20, 50, 100) instead of 2x10^1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    axis = ax.xaxis
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _percent_axis(axis: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))


def _decision_grid_png(axes_info: Mapping[str, Any]) -> str | None:
    """The seed document's 2x2 grid with this dataset's point and its quadrant highlighted."""
    size, sim = _mapping(axes_info.get("size")), _mapping(axes_info.get("similarity"))
    xt, yt = size.get("threshold"), sim.get("threshold")
    if not (_is_number(xt) and _is_number(yt)):
        return None
    xv, yv = size.get("value"), sim.get("value")
    xv = float(xv) if _is_number(xv) else None
    yv = float(yv) if _is_number(yv) else None
    xt, yt = float(xt), float(yt)
    log_x = xt > 0 and (xv is None or xv > 0)
    if log_x:
        lo, hi = min(xt, xv or xt) / 6, max(xt, xv or xt) * 6
        mid_lo, mid_hi = math.sqrt(lo * xt), math.sqrt(xt * hi)
    else:
        span = max(abs(xt), abs(xv or xt), 1.0)
        lo, hi = min(0.0, xv or 0.0) - 0.05 * span, max(xt, xv or xt) + span
        mid_lo, mid_hi = (lo + xt) / 2, (xt + hi) / 2
    y_lo, y_hi = min(0.0, yv if yv is not None else 0.0), max(1.0, yv if yv is not None else 1.0)

    enough = size.get("enough") if isinstance(size.get("enough"), bool) else None
    similar = sim.get("similar") if isinstance(sim.get("similar"), bool) else None
    if enough is None and xv is not None:
        enough = xv >= xt
    if similar is None and yv is not None:
        similar = yv >= yt
    quadrants = [  # (enough, similar, strategy, label)
        (True, True, "freeze", "Freeze: train the classifier\non frozen features"),
        (True, False, "finetune", "Fine-tune the backbone"),
        (False, True, "freeze", "Freeze: train only\nthe classifier"),
        (False, False, "not_worth_using", "Pretrained not\nworth using"),
    ]
    with _figure(6.4, 4.4) as fig:
        ax = fig.subplots()
        ax.grid(False)
        if log_x:
            _log_x(ax)
        for q_enough, q_similar, strategy, label in quadrants:
            chosen = q_enough == enough and q_similar == similar
            x0, x1 = (xt, hi) if q_enough else (lo, xt)
            y0, y1 = (yt, y_hi) if q_similar else (y_lo, yt)
            colour = STRATEGY_COLOURS[strategy]
            ax.fill_between(
                [x0, x1], y0, y1, color=colour, alpha=0.22 if chosen else 0.06,
                edgecolor=colour if chosen else "none", linewidth=2.5 if chosen else 0,
            )
            ax.text(
                mid_hi if q_enough else mid_lo, (yt + y1) / 2 if q_similar else (y0 + yt) / 2, label,
                ha="center", va="center", fontsize=9.5 if chosen else 8.5, color=colour,
                fontweight="bold" if chosen else "normal", alpha=1.0 if chosen else 0.75,
            )
        ax.axvline(xt, color="#374151", linestyle="--", linewidth=1)
        ax.axhline(yt, color="#374151", linestyle="--", linewidth=1)
        ax.annotate(f"threshold {fmt_num(xt)}", (xt, y_lo), xytext=(3, 3), textcoords="offset points",
                    fontsize=7.5, color="#374151")
        ax.annotate(f"threshold {fmt_num(yt)}", (lo, yt), xytext=(3, 3), textcoords="offset points",
                    fontsize=7.5, color="#374151")
        if xv is not None and yv is not None:
            ax.scatter([xv], [yv], s=90, color="#111827", edgecolor="white", linewidth=1.5, zorder=5)
            low = yv < y_lo + 0.2 * (y_hi - y_lo)  # near the bottom: label above, off the tick labels
            ax.annotate(
                f"this dataset\n({fmt_num(xv)}, {fmt_num(yv)})", (xv, yv), xytext=(8, 6 if low else -4),
                textcoords="offset points", fontsize=8, color="#111827", va="bottom" if low else "top", zorder=6,
            )
        ax.set_xlim(lo, hi)
        ax.set_ylim(y_lo, y_hi)
        ax.set_xlabel("images per class the bench fits on (median)  \u2192 enough data")
        ax.set_ylabel("similarity to ImageNet  \u2192 similar")
        return _png_uri(fig)


def _class_counts_png(dataset: Mapping[str, Any]) -> tuple[str | None, int]:
    """Bar chart of images per class (per split when the dataset has splits); and how many are cut."""
    import pandas as pd
    import seaborn as sns

    counts = {str(k): v for k, v in _mapping(dataset.get("class_counts")).items() if _is_number(v)}
    splits = {str(s): _mapping(c) for s, c in _mapping(dataset.get("splits")).items() if _mapping(c)}
    if not counts and splits:
        for per_class in splits.values():
            for cls, n in per_class.items():
                if _is_number(n):
                    counts[str(cls)] = counts.get(str(cls), 0) + n
    if not counts:
        return None, 0
    ordered = sorted(counts, key=lambda c: (-counts[c], c))
    shown, hidden = ordered[:MAX_BARS], max(0, len(ordered) - MAX_BARS)
    labels: dict[str, str] = {}
    for c in shown:  # shortened names may collide; seaborn would then merge their bars
        label = _mpl_text(c, 28)
        labels[c] = label if label not in labels.values() else f"{label} ({len(labels) + 1})"
    if splits:
        rows = [
            {"class": labels[c], "split": split, "images": per_class.get(c, 0) or 0}
            for c in shown for split, per_class in splits.items()
        ]
    else:
        rows = [{"class": labels[c], "split": "all", "images": counts[c]} for c in shown]
    frame = pd.DataFrame(rows)
    horizontal = len(shown) > 12
    hue = "split" if splits else None
    split_colours = ["#2563eb", "#f59e0b", "#10b981", "#6b7280"]
    palette = split_colours[: len(splits)] if 0 < len(splits) <= len(split_colours) else None
    height = max(2.6, 0.2 * len(shown) * (1 + 0.3 * (len(splits) > 1)) + 1.0) if horizontal else 3.4
    with _figure(6.4, height) as fig:
        ax = fig.subplots()
        sns.barplot(
            data=frame, x="images" if horizontal else "class", y="class" if horizontal else "images",
            hue=hue, palette=palette, color=None if splits else "#2563eb", orient="h" if horizontal else "v",
            saturation=1.0, ax=ax, errorbar=None,
        )
        ax.set_xlabel("images" if horizontal else "")
        ax.set_ylabel("" if horizontal else "images")
        if horizontal:
            ax.grid(axis="y", visible=False)
        else:
            ax.grid(axis="x", visible=False)
            ax.tick_params(axis="x", rotation=45 if len(shown) > 5 else 0)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right" if len(shown) > 5 else "center")
        if splits:
            ax.legend(title=None, loc="best")
        return _png_uri(fig), hidden


def _stage_divergence_png(backbones: list[Mapping[str, Any]], chosen: Any) -> str | None:
    series = [
        (b.get("name"), {str(k): float(v) for k, v in _mapping(b.get("stage_divergence")).items() if _is_number(v)})
        for b in backbones
    ]
    series = [(name, stages) for name, stages in series if stages]
    if not series:
        return None
    with _figure(6.4, 3.3) as fig:
        ax = fig.subplots()
        for name, stages in series:
            ax.plot(
                [_mpl_text(s) for s in stages], list(stages.values()), marker="o",
                linewidth=2.4 if name == chosen else 1.4, label=_mpl_text(name),
            )
        ax.set_ylabel("BN divergence")
        ax.set_xlabel("network stage (input \u2192 output)")
        ax.set_ylim(bottom=0)
        ax.legend(loc="best")
        return _png_uri(fig)


def _learning_curve_png(backbones: list[Mapping[str, Any]], chosen: Any,
                        data_size: Mapping[str, Any] | None = None, data_n: Any = None) -> str | None:
    """Frozen-probe accuracy against training images per class (log x), one line per backbone;
    for the chosen one its fitted law, dashed up to 4x with the band, and where the advice flips."""
    import numpy as np

    lines = []
    for b in backbones:
        points = [(p.get("images_per_class"), p.get("accuracy")) for p in _records(b.get("learning_curve"))]
        points = sorted((float(x), float(y)) for x, y in points if _is_number(x) and _is_number(y))
        if points:
            lines.append((b.get("name"), points))
    if not lines:
        return None
    chance = next(
        (_mapping(b.get("transferability")).get("chance") for b in backbones
         if _is_number(_mapping(b.get("transferability")).get("chance"))),
        None,
    )
    block = _mapping(data_size)
    with _figure(6.4, 3.4) as fig:
        ax = fig.subplots()
        _log_x(ax)
        for name, points in lines:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", linestyle="-" if not block or name != chosen else "none",
                    linewidth=2.4 if name == chosen else 1.4, label=_mpl_text(name), zorder=3)
            fit = _mapping(block.get("fit"))
            if name == chosen and fit:
                colour = ax.lines[-1].get_color()
                inside = np.geomspace(xs[0], xs[-1], 50)
                ax.plot(inside, _power_law_accuracy(fit, inside), color=colour, linewidth=2.0)
                ahead = np.geomspace(xs[-1], 4 * xs[-1], 50)
                ax.plot(ahead, _power_law_accuracy(fit, ahead), color=colour, linewidth=1.6, linestyle="--")
                pred = [p for p in _records(block.get("predicted")) if _is_number(p.get("low"))]
                if pred:
                    last = float(_power_law_accuracy(fit, xs[-1]))
                    ax.fill_between([xs[-1]] + [float(p["images_per_class"]) for p in pred],
                                    [last] + [float(p["low"]) for p in pred], [last] + [float(p["high"]) for p in pred],
                                    color=colour, alpha=0.15, linewidth=0)
        flip = _mapping(block.get("flips_at"))
        if _is_number(flip.get("images_per_class")):
            x = float(flip["images_per_class"])
            ax.axvline(x, color="#374151", linestyle=":", linewidth=1.2)
            ax.annotate(f"advice becomes\n{_strategy_label(flip.get('to'))} ≈ {x:.0f}/class", (x, 0.03),
                        xycoords=("data", "axes fraction"), xytext=(4, 0), textcoords="offset points", fontsize=7,
                        color="#374151", va="bottom")
        if _is_number(data_n):
            ax.axvline(float(data_n), color="#9ca3af", linewidth=1.0)
            ax.annotate("your data", (float(data_n), 0.97), xycoords=("data", "axes fraction"), xytext=(3, 0),
                        textcoords="offset points", fontsize=7, color="#6b7280", va="top")
        if chance is not None:
            ax.axhline(float(chance), color="#9ca3af", linestyle=":", linewidth=1.2, label="chance")
        ax.set_xlabel("training images per class (log scale; dashed: fitted law extrapolated up to 4x)")
        ax.set_ylabel("frozen-probe accuracy")
        _percent_axis(ax.yaxis)
        ax.legend(loc="best")
        return _png_uri(fig)


def _ok_runs(runs: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in runs if r.get("status", "ok") == "ok"]


def _group_runs(runs: list[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in _ok_runs(runs):
        groups.setdefault((str(r.get("backbone")), str(r.get("strategy"))), []).append(r)
    return groups


def _accuracy_png(runs: list[Mapping[str, Any]], summary: list[Mapping[str, Any]]) -> str | None:
    """Validation accuracy per backbone and strategy: mean bar, spread over seeds, each seed a dot."""
    import pandas as pd
    import seaborn as sns

    rows = [
        {"backbone": _mpl_text(r.get("backbone")), "strategy": str(r.get("strategy")),
         "accuracy": float(r["accuracy"])}
        for r in _ok_runs(runs) if _is_number(r.get("accuracy"))
    ]
    if not rows:  # no per-seed runs: bars of the summary means, without spread
        rows = [
            {"backbone": _mpl_text(s.get("backbone")), "strategy": str(s.get("strategy")),
             "accuracy": float(s["mean_accuracy"])}
            for s in summary if _is_number(s.get("mean_accuracy"))
        ]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    order = _strategy_order(frame["strategy"])
    others: list[str] = []
    palette = {s: _colour(s, others) for s in order}
    with _figure(6.4, 3.5) as fig:
        ax = fig.subplots()
        sns.barplot(data=frame, x="backbone", y="accuracy", hue="strategy", hue_order=order,
                    palette=palette, saturation=1.0, errorbar="sd", capsize=0.15,
                    err_kws={"linewidth": 1.2, "color": "#111827"}, ax=ax)
        if frame.groupby(["backbone", "strategy"]).size().max() > 1:
            sns.stripplot(data=frame, x="backbone", y="accuracy", hue="strategy", hue_order=order,
                          dodge=True, palette={s: "#111827" for s in order}, size=3, alpha=0.7, legend=False, ax=ax)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[: len(order)], [_strategy_label(s) for s in labels[: len(order)]],
                  loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(4, len(order)))
        ax.set_ylim(0, 1)
        _percent_axis(ax.yaxis)
        ax.set_xlabel("")
        ax.set_ylabel("accuracy (reported split)")
        ax.grid(axis="x", visible=False)
        return _png_uri(fig)


def _monitored(point: Mapping[str, Any]) -> float | None:
    """The accuracy an epoch was judged by: the selection split's, else the reported split's."""
    for key in ("selection_accuracy", "accuracy"):
        if _is_number(point.get(key)):
            return float(point[key])
    return None


def _validation_curves_png(runs: list[Mapping[str, Any]]) -> str | None:
    """Accuracy per epoch (mean over seeds), with a ring on the epoch each run kept."""
    groups = _group_runs(runs)
    lines = []
    for (backbone, strategy), group in groups.items():
        per_epoch: dict[float, list[float]] = {}
        kept: list[tuple[float, float]] = []
        for r in group:
            curve = _records(r.get("curve"))
            for p in curve:
                acc = _monitored(p)
                if _is_number(p.get("epoch")) and acc is not None:
                    per_epoch.setdefault(float(p["epoch"]), []).append(acc)
            best = r.get("best_epoch")
            point = next((p for p in curve if p.get("epoch") == best), None)
            if point is not None and _monitored(point) is not None:
                kept.append((float(best), _monitored(point)))
        if per_epoch:
            epochs = sorted(per_epoch)
            lines.append((backbone, strategy, epochs, [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs], kept))
    if not lines:
        return None
    from matplotlib.ticker import MaxNLocator

    backbones = sorted({line[0] for line in lines})
    styles = ["-", "--", ":", "-."]
    others: list[str] = []
    with _figure(6.4, 3.5) as fig:
        ax = fig.subplots()
        for backbone, strategy, epochs, accs, kept in sorted(lines, key=lambda l: (l[0], _strategy_order([l[1]]))):
            colour = _colour(strategy, others)
            ax.plot(
                epochs, accs, marker="o", markersize=3, color=colour,
                linestyle=styles[backbones.index(backbone) % len(styles)],
                label=f"{_mpl_text(backbone)} \u00b7 {_strategy_label(strategy)}",
            )
            if kept:
                xs, ys = zip(*kept)
                ax.scatter(xs, ys, s=70, facecolors="none", edgecolors=colour, linewidths=1.6, zorder=4)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy, monitored split (mean over seeds)")
        _percent_axis(ax.yaxis)
        ax.legend(loc="lower right", ncols=2 if len(lines) > 4 else 1)
        return _png_uri(fig)


_CROSSING_LABELS = {"finetune_beats_freeze": "fine-tune > freeze", "scratch_catches_pretrained": "scratch catches up"}


def _power_law_accuracy(fit: Mapping[str, Any], n: Any) -> Any:
    import numpy as np

    return 1.0 - (float(fit["a"]) * np.power(n, -float(fit["b"])) + float(fit["c"]))


def _curve_status(curve: Mapping[str, Any]) -> str:
    """``"fitted"``, ``"withheld"`` or ``"unfitted"``; documents written before the status was
    recorded say it by their fit alone."""
    status = curve.get("status")
    if status in ("fitted", "withheld", "unfitted"):
        return str(status)
    return "fitted" if _mapping(curve.get("fit")) else "unfitted"


def _learning_curves_pngs(data_size: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One figure per backbone: accuracy against images per class (log x), each strategy's
    measured points with error bars, the fitted law, its dashed extrapolation to 4x with a band,
    and the crossing points marked. A curve without a law to trust (too few sizes above chance,
    or a fit withheld) shows its measured points joined by a thin line, and says so in the
    legend; sizes at chance are hollow."""
    import numpy as np

    curves = _records(data_size.get("curves"))
    crossings = _records(data_size.get("crossings"))
    figures = []
    for backbone in dict.fromkeys(str(c.get("backbone")) for c in curves):
        mine = [c for c in curves if str(c.get("backbone")) == backbone]
        others: list[str] = []
        with _figure(6.4, 3.6) as fig:
            ax = fig.subplots()
            _log_x(ax)
            n_max = 0.0
            for c in sorted(mine, key=lambda c: _strategy_order([str(c.get("strategy"))])):
                strategy = str(c.get("strategy"))
                colour = _colour(strategy, others)
                pts = [p for p in _records(c.get("points")) if _is_number(p.get("images_per_class"))
                       and _is_number(p.get("accuracy"))]
                if not pts:
                    continue
                xs = np.array([float(p["images_per_class"]) for p in pts])
                ys = np.array([float(p["accuracy"]) for p in pts])
                err = np.array([float(p.get("std") or 0.0) for p in pts])
                chance = np.array([bool(p.get("at_chance")) for p in pts])
                n_max = max(n_max, float(xs.max()))
                status = _curve_status(c)
                label = _strategy_label(strategy) + {"fitted": "", "withheld": " (law withheld)",
                                                     "unfitted": " (no law)"}[status]
                ax.errorbar(xs, ys, yerr=err, fmt="none", ecolor=colour, capsize=3, zorder=3)
                if (~chance).any():
                    ax.plot(xs[~chance], ys[~chance], "o", color=colour, markersize=5, label=label, zorder=3)
                if chance.any():
                    ax.plot(xs[chance], ys[chance], "o", markerfacecolor="white", markeredgecolor=colour,
                            markersize=5, zorder=3, label=None if (~chance).any() else label)
                fit = _mapping(c.get("fit"))
                if status != "fitted" or not fit:
                    ax.plot(xs, ys, color=colour, linewidth=0.9, alpha=0.6, zorder=2)
                    continue
                inside = np.geomspace(xs.min(), xs.max(), 50)
                ax.plot(inside, _power_law_accuracy(fit, inside), color=colour, linewidth=1.6, zorder=2)
                ahead = np.geomspace(xs.max(), 4 * xs.max(), 50)
                ax.plot(ahead, _power_law_accuracy(fit, ahead), color=colour, linewidth=1.4, linestyle="--", zorder=2)
                pred = [p for p in _records(c.get("predicted")) if _is_number(p.get("low")) and _is_number(p.get("high"))]
                if pred:
                    bx = [float(xs.max())] + [float(p["images_per_class"]) for p in pred]
                    last = float(_power_law_accuracy(fit, xs.max()))
                    ax.fill_between(bx, [last] + [float(p["low"]) for p in pred],
                                    [last] + [float(p["high"]) for p in pred], color=colour, alpha=0.15, linewidth=0)
            for cr in crossings:
                if str(cr.get("backbone")) != backbone or cr.get("status") != "ahead":
                    continue
                x = cr.get("images_per_class")
                if not _is_number(x):
                    continue
                ax.axvline(float(x), color="#374151", linestyle=":", linewidth=1.2)
                if _is_number(cr.get("low")):
                    hi = float(cr["high"]) if _is_number(cr.get("high")) else 4 * n_max
                    ax.axvspan(float(cr["low"]), hi, color="#9ca3af", alpha=0.12, linewidth=0)
                ax.annotate(f"{_CROSSING_LABELS.get(str(cr.get('kind')), cr.get('kind'))}\n≈ {float(x):.0f}/class",
                            (float(x), 0.02), xycoords=("data", "axes fraction"), xytext=(4, 0),
                            textcoords="offset points", fontsize=7, color="#374151", va="bottom")
            if n_max:
                ax.axvline(n_max, color="#d1d5db", linewidth=1.0, zorder=1)
            ax.set_xlabel("training images per class (log scale; dashed: extrapolated, up to 4x)"
                          if any(_curve_status(c) == "fitted" for c in mine) else
                          "training images per class (log scale; measured points only)")
            ax.set_ylabel("accuracy (reported split)")
            _percent_axis(ax.yaxis)
            # Above the axes: inside, the legend sat on the crossing's label at the lower right.
            ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(3, len(mine)), frameon=False)
            figures.append({"backbone": backbone, "png": _png_uri(fig)})
    return figures


def _data_size_rows(data_size: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in _records(data_size.get("curves")):
        pred = {round(float(p["images_per_class"]), 3): p for p in _records(c.get("predicted"))
                if _is_number(p.get("images_per_class"))}
        pts = [float(p["images_per_class"]) for p in _records(c.get("points")) if _is_number(p.get("images_per_class"))]
        n = max(pts) if pts else None
        at = [pred.get(round(k * n, 3)) if n else None for k in (2, 4)]
        hold = _mapping(c.get("holdout"))
        status = _curve_status(c)
        rows.append({
            "backbone": c.get("backbone"), "strategy": _badge(c.get("strategy")), "n": n,
            "measured": next((p.get("accuracy") for p in _records(c.get("points"))
                              if _is_number(p.get("images_per_class")) and float(p["images_per_class"]) == n), None),
            "at2": _mapping(at[0]), "at4": _mapping(at[1]), "fitted": status == "fitted",
            "why_not": c.get("reason") or ("withheld" if status == "withheld" else "fewer than 3 sizes: no fit"),
            "holdout_error": hold.get("error"), "holdout_n": hold.get("images_per_class"),
        })
    return rows


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both cost (lower) and accuracy (higher), cheapest first."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def _cost_png(runs: list[Mapping[str, Any]], summary: list[Mapping[str, Any]]) -> str | None:
    epochs = {(str(s.get("backbone")), str(s.get("strategy"))): s.get("mean_epochs") for s in summary}
    points = [
        (str(s.get("backbone")), str(s.get("strategy")), float(s["mean_seconds"]), float(s["mean_accuracy"]))
        for s in summary if _is_number(s.get("mean_seconds")) and _is_number(s.get("mean_accuracy"))
    ]
    if not points:  # no summary: average the runs ourselves
        for (backbone, strategy), group in _group_runs(runs).items():
            pairs = [(float(r["train_seconds"]), float(r["accuracy"])) for r in group
                     if _is_number(r.get("train_seconds")) and _is_number(r.get("accuracy"))]
            if pairs:
                points.append((backbone, strategy, sum(p[0] for p in pairs) / len(pairs),
                               sum(p[1] for p in pairs) / len(pairs)))
    if not points:
        return None
    front = _pareto_front([(c, a) for _, _, c, a in points])
    others: list[str] = []
    with _figure(6.4, 3.6) as fig:
        ax = fig.subplots()
        if all(c > 0 for _, _, c, _ in points):
            _log_x(ax)
        fx, fy = zip(*front)
        ax.step(fx, fy, where="post", color="#111827", linewidth=1.2, alpha=0.6, label="Pareto front", zorder=2)
        seen: set[str] = set()
        names: dict[tuple[float, float], list[str]] = {}
        for backbone, strategy, cost, acc in points:
            on_front = (cost, acc) in front
            ax.scatter([cost], [acc], s=70 if on_front else 40, color=_colour(strategy, others),
                       edgecolor="#111827" if on_front else "white", linewidth=1.2, zorder=3,
                       label=_strategy_label(strategy) if strategy not in seen else None)
            seen.add(strategy)
            n_epochs = epochs.get((backbone, strategy))
            names.setdefault((cost, acc), []).append(
                _mpl_text(backbone, 20) + (f", {n_epochs:.0f} ep" if _is_number(n_epochs) and strategy != "freeze" else ""))
        for (cost, acc), labels in names.items():  # one label per spot: tied points do not overprint
            ax.annotate(", ".join(labels), (cost, acc), xytext=(5, 4), textcoords="offset points",
                        fontsize=7, color="#374151")
        ax.set_xlabel("training time per run (s, log scale)")
        ax.set_ylabel("accuracy (reported split)")
        _percent_axis(ax.yaxis)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=len(seen) + 1)
        return _png_uri(fig)


# --------------------------------------------------------------------------- thumbnails


def _thumbnails(dataset: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per class, up to six 96 px JPEG thumbnails as data URIs; images that fail to load are skipped.

    The JSON holds paths as :func:`~advisor.data.display_name` text; the file is opened under its
    raw name (:func:`~advisor.data.parse_display_name`), or as written when only that exists.
    """
    if not _mapping(dataset.get("thumbnails")):
        return []  # nothing to decode: the decoder (advisor.data, which loads torch) is not needed
    from PIL import ImageOps

    from advisor.data import ImageLoadError, display_name, load_image, parse_display_name

    root = Path(parse_display_name(str(dataset.get("path") or ".")))
    groups = []
    for cls, paths in list(_mapping(dataset.get("thumbnails")).items())[:THUMB_CLASSES]:
        if isinstance(paths, str) or not isinstance(paths, Sequence):
            continue
        images = []
        for raw in paths[:THUMBS_PER_CLASS]:
            path = _thumbnail_path(str(raw), root)
            try:
                image = load_image(path, draft_size=(2 * THUMB_PX, 2 * THUMB_PX))
                thumb = ImageOps.fit(image.convert("RGB"), (THUMB_PX, THUMB_PX))
            except (ImageLoadError, OSError, ValueError):
                continue
            buf = io.BytesIO()
            thumb.save(buf, format="JPEG", quality=82)
            uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
            images.append({"uri": uri, "name": display_name(path.name)})
        groups.append({"cls": str(cls), "images": images, "n_failed": min(len(paths), THUMBS_PER_CLASS) - len(images)})
    return groups


def _thumbnail_path(text: str, root: Path) -> Path:
    """The file behind a thumbnail entry: its raw name, else the text as written; relative to ``root``."""
    from advisor.data import parse_display_name

    for candidate in dict.fromkeys((parse_display_name(text), text)):
        path = Path(candidate)
        if not path.is_absolute() and not path.exists():
            path = root / path
        if path.exists():
            return path
    return Path(parse_display_name(text))


# --------------------------------------------------------------------------- page contexts


def _dataset_view(dataset: Mapping[str, Any], *, thumbnails: bool) -> dict[str, Any]:
    per_class = _mapping(dataset.get("per_class"))
    stats = _mapping(dataset.get("image_stats"))
    counts_png, counts_more = _class_counts_png(dataset)
    splits = [
        {"name": str(name), "n_images": sum(v for v in _mapping(c).values() if _is_number(v)),
         "n_classes": sum(1 for v in _mapping(c).values() if _is_number(v) and v > 0)}
        for name, c in _mapping(dataset.get("splits")).items()
    ]
    dims = [
        {"name": axis, **{k: _mapping(stats.get(axis)).get(k) for k in ("min", "median", "max")}}
        for axis in ("width", "height") if _mapping(stats.get(axis))
    ]
    skipped = _skipped_view(dataset)
    return {
        "path": dataset.get("path"),
        "layout": dataset.get("layout"),
        "n_images": dataset.get("n_images"),
        "n_classes": dataset.get("n_classes"),
        "per_class": {k: per_class.get(k) for k in ("min", "median", "max")},
        "imbalance_ratio": dataset.get("imbalance_ratio"),
        "empty_classes": [str(c) for c in _items(dataset.get("empty_classes"))],
        "splits": splits,
        "counts_png": counts_png,
        "counts_more": counts_more,
        "n_sampled": stats.get("n_sampled"),
        "dims": dims,
        "modes": _tally(stats.get("modes")),
        "formats": _tally(stats.get("formats")),
        "thumbnails": _thumbnails(dataset) if thumbnails else [],
        **skipped,
    }


def _skipped_view(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """The skipped-files section: at most ``MAX_SKIPPED`` rows, the total and counts per reason.

    The JSON lists only the first entries (:func:`~advisor.data.summarize_skipped`); its
    ``skipped_total`` and ``skipped_by_reason`` cover all of them. An older JSON without
    them lists every entry, so the counts are taken from the list.
    """
    from advisor.types import Skipped, summarize_skipped

    def text(x: Any) -> str:
        return "" if x is None else str(x)

    records = [Skipped(text(s.get("path")), text(s.get("reason"))) for s in _records(dataset.get("skipped"))]
    listing = summarize_skipped(records, limit=MAX_SKIPPED)
    total = dataset.get("skipped_total")
    total = int(total) if _is_number(total) and total >= listing["total"] else listing["total"]
    by_reason = {str(k): v for k, v in _mapping(dataset.get("skipped_by_reason")).items() if _is_number(v)}
    return {
        "skipped": listing["shown"],
        "skipped_total": total,
        "skipped_by_reason": list((by_reason or listing["by_reason"]).items()),
        "skipped_more": max(0, total - len(listing["shown"])),
    }


def _tally(counts: Any) -> str:
    items = sorted(((str(k), v) for k, v in _mapping(counts).items() if _is_number(v)), key=lambda kv: -kv[1])
    return " \u00b7 ".join(f"{k} {fmt_int(v)}" for k, v in items)


def _recommendation_view(rec: Mapping[str, Any]) -> dict[str, Any]:
    axes = _mapping(rec.get("axes"))
    axis_rows = []
    for key, flag, yes, no in (("size", "enough", "enough data", "little data"),
                               ("similarity", "similar", "similar to ImageNet", "different from ImageNet")):
        a = _mapping(axes.get(key))
        if a:
            verdict = a.get(flag)
            axis_rows.append({
                "name": a.get("label") or key, "value": a.get("value"), "threshold": a.get("threshold"),
                "verdict": (yes if verdict else no) if isinstance(verdict, bool) else None,
            })
    settings = _mapping(rec.get("settings"))
    return {
        "strategy": rec.get("strategy"),
        "badge": _badge(rec.get("strategy")),
        "case": rec.get("case"),
        "backbone": rec.get("backbone"),
        "confidence": rec.get("confidence"),
        "reasons": [str(r) for r in _items(rec.get("reasons")) if r],
        "axis_rows": axis_rows,
        "grid_png": _decision_grid_png(axes),
        "ranking": [
            {"rank": i, "backbone": r.get("backbone"), "score": r.get("score"),
             "linear_probe": r.get("linear_probe"), "chosen": r.get("backbone") == rec.get("backbone")}
            for i, r in enumerate(_records(rec.get("ranking")), start=1)
        ],
        "settings": {
            "strategy": _strategy_label(settings.get("strategy")) or None,
            **{k: settings.get(k) for k in ("head_lr", "backbone_lr", "epochs", "image_size", "batch_size")},
        } if settings else None,
    }


def _reproduction_view(repro: Any) -> dict[str, Any] | None:
    repro = _mapping(repro)
    if not repro:
        return None
    return {
        "versions": [(str(k), v) for k, v in _mapping(repro.get("versions")).items()],
        "device": repro.get("device"),
        "seed": repro.get("seed"),
        "options": [(str(k), v) for k, v in _mapping(repro.get("options")).items()],
        "seconds": repro.get("seconds"),
        "command": repro.get("command"),
    }


def _page(result: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {"kind": kind, "created": _display_date(result.get("created"))}


def _recommend_context(result: Mapping[str, Any]) -> dict[str, Any]:
    rec = _recommendation_view(_mapping(result.get("recommendation")))
    chosen = rec["backbone"]
    backbones = _records(result.get("backbones"))
    signal_keys: list[str] = []
    for b in backbones:
        for key in list(_mapping(b.get("signals"))) + list(_mapping(b.get("signal_scores"))):
            if key not in signal_keys:
                signal_keys.append(key)
    signal_rows = [
        {"name": b.get("name"), "weights": b.get("weights"), "n_sample": b.get("n_sample"),
         "similarity": b.get("similarity"), "chosen": b.get("name") == chosen,
         "cells": [{"value": _mapping(b.get("signals")).get(k), "score": _mapping(b.get("signal_scores")).get(k)}
                   for k in signal_keys]}
        for b in backbones
    ]
    transfer_rows = []
    for b in backbones:
        t = _mapping(b.get("transferability"))
        lin, pix = t.get("linear_probe"), t.get("pixel_linear_probe")
        transfer_rows.append({
            "name": b.get("name"), "chosen": b.get("name") == chosen,
            **{k: t.get(k) for k in ("linear_probe", "knn_probe", "pixel_linear_probe", "pixel_knn_probe",
                                     "chance", "logme", "leep", "nce", "hscore")},
            "gain": float(lin) - float(pix) if _is_number(lin) and _is_number(pix) else None,
            "seconds": b.get("seconds"), "images_per_second": b.get("images_per_second"),
        })
    return {
        **_page(result, "recommend"),
        "dataset": _dataset_view(_mapping(result.get("dataset")), thumbnails=True),
        "rec": rec,
        "signal_keys": [SIGNAL_LABELS.get(k, k.replace("_", " ").capitalize()) for k in signal_keys],
        "signal_rows": signal_rows,
        "stage_png": _stage_divergence_png(backbones, chosen),
        "no_batchnorm": [b.get("name") for b in backbones
                         if "stage_divergence" in b and not _mapping(b.get("stage_divergence"))],
        "transfer_rows": transfer_rows,
        "curve_png": _learning_curve_png(backbones, chosen, _mapping(result.get("recommendation")).get("data_size"),
                                         _mapping(_mapping(_mapping(result.get("recommendation")).get("axes")).get("size")).get("value")),
        "repro": _reproduction_view(result.get("reproduction")),
    }


def _recipe_rows(runs: list[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per distinct (strategy, recipe), listing the backbones that used it."""
    preferred = ["optimizer", "lr_head", "lr_backbone", "epochs", "augment"]
    keys: list[str] = []
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in runs:
        recipe = _mapping(r.get("recipe"))
        if not recipe:
            continue
        for k in recipe:
            if k not in keys:
                keys.append(str(k))
        strategy = str(r.get("strategy"))
        ident = (strategy, json.dumps(json_clean(recipe), sort_keys=True))
        row = rows.setdefault(ident, {"strategy": strategy, "backbones": [], "recipe": recipe})
        if r.get("backbone") not in row["backbones"]:
            row["backbones"].append(r.get("backbone"))
    keys = [k for k in preferred if k in keys] + [k for k in keys if k not in preferred]
    order = _strategy_order(row["strategy"] for row in rows.values())
    ordered = sorted(rows.values(), key=lambda row: order.index(row["strategy"]))
    return keys, [
        {"strategy": _badge(row["strategy"]), "backbones": ", ".join(str(b) for b in row["backbones"]),
         "cells": [row["recipe"].get(k) for k in keys]}
        for row in ordered
    ]


def _rank_tables(rank: Any) -> list[dict[str, Any]]:
    groups = {"": rank} if isinstance(rank, list) else dict(_mapping(rank))
    tables = []
    for title, rows in groups.items():
        rows = _records(rows)
        if not rows:
            continue
        columns: list[str] = []
        for r in rows:
            columns += [str(k) for k in r if k != "metric" and str(k) not in columns]
        tables.append({
            "title": "" if title in ("", "metric") or len(groups) == 1 else str(title),
            "columns": [c.replace("_", " ") for c in columns],
            "rows": [{"metric": r.get("metric"), "cells": [r.get(c) for c in columns]} for r in rows],
        })
    return tables


def _tolerance_text(tol: Any) -> str | None:
    """"2.6 points (paired bootstrap ...)" for the protocol line."""
    tol = _mapping(tol)
    if not isinstance(tol.get("value"), (int, float)):
        return None
    method = tol.get("method") or "margin"
    return f"{100 * tol['value']:.1f} points ({'the margin' if method == 'margin' else method})"


def _bench_context(result: Mapping[str, Any]) -> dict[str, Any]:
    runs = _records(result.get("runs"))
    summary = _records(result.get("summary"))
    winner = _mapping(result.get("winner"))
    rec = _mapping(result.get("recommendation"))
    protocol = _mapping(result.get("protocol"))
    agreement = result.get("agreement")
    recipe_keys, recipe_rows = _recipe_rows(runs)
    key = (winner.get("backbone"), winner.get("strategy"))
    sizes = _mapping(result.get("data_size"))
    return {
        **_page(result, "bench"),
        "dataset": _dataset_view(_mapping(result.get("dataset")), thumbnails=False),
        "winner": {
            "badge": _badge(winner.get("verdict")), "backbone": winner.get("backbone"),
            "strategy": _strategy_label(winner.get("strategy")) or None, "rule": winner.get("rule"),
            "accuracy": winner.get("accuracy"),
        },
        "advice": {"badge": _badge(rec.get("strategy")), "backbone": rec.get("backbone"), "case": rec.get("case")},
        "agreement": agreement if isinstance(agreement, bool) else None,
        "agreement_note": result.get("agreement_note"),
        "protocol": {
            **{k: protocol.get(k) for k in ("selected_on", "reported_on", "n_fit", "n_select", "n_report", "budget",
                                            "image_size", "batch_size", "margin", "tune", "precision")},
            "fit_name": _mapping(protocol.get("split")).get("fit"),
            "seeds": len(_items(protocol.get("seeds"))) or None,
            **{k: protocol.get(k) for k in ("lr_choice", "finetune_head", "freeze_head", "selection_warning")},
            "tolerance": _tolerance_text(_mapping(protocol.get("tolerance")).get(winner.get("backbone"))),
        } if protocol else None,
        "accuracy_png": _accuracy_png(runs, summary),
        "curves_png": _validation_curves_png(runs),
        "cost_png": _cost_png(runs, summary),
        "summary": [
            {**{k: s.get(k) for k in ("backbone", "n_seeds", "mean_accuracy", "std_accuracy", "mean_f1",
                                      "mean_seconds", "mean_epochs", "converged", "learned")},
             "strategy": _badge(s.get("strategy")),
             "failed": s.get("mean_accuracy") is None,
             "error": (_items(s.get("errors")) or ["no run finished"])[0],
             "winner": (s.get("backbone"), s.get("strategy")) == key}
            for s in summary
        ],
        "any_unconverged": any(s.get("converged") is False for s in summary),
        "any_unlearned": any(s.get("learned") is False for s in summary),
        "runs": [
            {**{k: r.get(k) for k in ("backbone", "seed", "accuracy", "selection_accuracy", "macro_f1",
                                      "train_seconds", "images_per_second", "peak_memory_mb", "epochs_run",
                                      "best_epoch", "converged", "error")},
             "strategy": _badge(r.get("strategy")), "failed": r.get("status", "ok") != "ok",
             "status": r.get("status") or "ok"}
            for r in runs
        ],
        "recipe_keys": [k.replace("_", " ") for k in recipe_keys],
        "recipe_rows": recipe_rows,
        "rank_tables": _rank_tables(result.get("rank_correlation")),
        "data_size_pngs": _learning_curves_pngs(sizes),
        "data_size_rows": _data_size_rows(sizes),
        "data_size_fitted": any(_curve_status(c) == "fitted" for c in _records(sizes.get("curves"))),
        "data_size_paired": any(c.get("bootstrap_method") == "paired_images" for c in _records(sizes.get("curves"))),
        "crossing_sentences": [v.get("data_size") for v in _records(winner.get("per_backbone")) if v.get("data_size")],
        "execution": _execution_view(_mapping(result.get("execution"))),
        "repro": _reproduction_view(result.get("reproduction")),
    }


def _execution_view(execution: Mapping[str, Any]) -> dict[str, Any] | None:
    """Where the runs trained (executor, cluster, resources, nodes) and the grid's wall time."""
    if not execution:
        return None
    nodes: dict[str, dict[str, Any]] = {}
    for row in _records(execution.get("runs")):
        name = str(row.get("node_ip") or row.get("node_id") or MISSING)
        node = nodes.setdefault(name, {"node": name, "runs": 0, "failed": 0, "seconds": 0.0, "workers": set()})
        node["runs"] += 1
        node["failed"] += row.get("status", "ok") != "ok"
        node["seconds"] += float(row.get("train_seconds") or 0.0)
        node["workers"].add(row.get("pid"))
    resources = _mapping(execution.get("resources"))
    return {
        **{k: execution.get(k) for k in ("executor", "address", "connection", "ray_version", "slots", "max_retries",
                                         "data", "wall_seconds", "run_seconds", "speedup", "startup_seconds",
                                         "n_trained", "n_resumed", "n_failed")},
        "n_nodes": len(_records(execution.get("nodes"))) or None,
        "cpus": resources.get("CPU"), "gpus": resources.get("GPU"),
        "per_run": _mapping(execution.get("per_run")),
        "nodes": [{**n, "workers": len(n["workers"])} for n in nodes.values()],
    }
