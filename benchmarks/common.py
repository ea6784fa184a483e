"""What the scripts in ``benchmarks/`` share: how a table of measurements is saved.

The scripts run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path`` and they
import it as ``from common import save_rows``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from advisor.utils import atomic_writer


def save_rows(path: str | os.PathLike, rows: Iterable[dict[str, Any]], *, fields: Sequence[str] | None = None,
              append: bool = True) -> Path:
    """Save measurement rows as CSV, floats rounded to 4 decimals; returns the path.

    ``append``: add them under the file's header (written when the file is new), so that the
    file keeps the history of runs; else replace the file whole, atomically. ``fields``: the
    columns, in order (default: the header of the file appended to, else the first row's keys);
    keys outside them are left out.
    """
    rows = [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in rows]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not (append and out.exists() and out.stat().st_size)
    if fields is not None:
        columns = list(fields)
    elif not new:  # appended rows follow the header already there
        with open(out, newline="") as fh:
            columns = next(csv.reader(fh), [])
    else:
        columns = list(rows[0]) if rows else []

    def write(fh: Any, header: bool) -> None:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        if header:
            writer.writeheader()
        writer.writerows(rows)

    if append:
        with open(out, "a", newline="") as fh:
            write(fh, new)
    else:
        with atomic_writer(out, "w", newline="", encoding="utf-8") as fh:
            write(fh, True)
    return out


def write_section(path: str | os.PathLike, name: str, markdown: str) -> Path:
    """Replace the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in a Markdown file.

    A measured table is written only by the script that measured it: the markers are added at
    the end of the file the first time, and everything else in the file is left as it is. The
    file is replaced atomically.
    """
    out = Path(path)
    text = out.read_text(encoding="utf-8") if out.exists() else ""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n<!-- written by a script in benchmarks/: do not edit by hand -->\n{markdown.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(out, "w", encoding="utf-8") as fh:
        fh.write(text)
    return out
