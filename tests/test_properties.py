"""Property tests: any folder a user has is read or skipped and listed, never a traceback.

Hypothesis builds random folder trees that mix good images, bad files, names the file
system allows but that need escaping (bytes invalid in UTF-8, newlines, markup, bidi
overrides, 255-byte names), symlinks (to files, to folders, loops, out of the tree, to
``/``) and nesting. The listing is checked on many trees (cheap), the whole CLI on a few.
"""

from __future__ import annotations

import html.parser
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from advisor.cli import main
from advisor.data import (
    IMAGE_EXTENSIONS,
    DatasetError,
    Skipped,
    display_name,
    parse_display_name,
    scan,
    summarize_skipped,
)
from advisor.profile import summarize_dataset
from advisor.report import render_recommend_html

# Class names in any script reach the class-count chart; a font without the glyph is no failure.
pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")

# Failing examples are replayed first from .hypothesis/ (which ignores itself in git).
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- file contents


def _encoded(fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


PNG = _encoded("PNG", 0)
JPEG = _encoded("JPEG", 1)
CONTENTS = {
    "png": PNG,
    "jpeg": JPEG,
    "zero": b"",
    "truncated": PNG[: len(PNG) // 2],
    "text": b"not an image\n",
}
FILE_KINDS = (*CONTENTS, "fifo")
LINK_KINDS = ("link_file", "link_dir", "link_outside_file", "link_outside_dir", "link_broken",
              "link_self", "link_parent", "link_root", "link_above", "link_slash")


# --------------------------------------------------------------------------- names

ODD_NAMES = [
    "cat", "dog", "<script>", "q\"'x", "a&b", "..foo", ".hidden", "   ", "-rf", "--help",
    "new\nline", "tab\there", "bell\x07", "猫", "café", "cafe\u0301", "\u202eevil", "back\\slash",
    "Thumbs.db", "__MACOSX", "train", "val", "test", "x" * 250,
    os.fsdecode(b"\xff\xfe"), os.fsdecode(b"caf\xe9"),
]


def _allowed(name: str) -> bool:
    raw = os.fsencode(name)
    return 0 < len(raw) <= 255 and b"/" not in raw and b"\0" not in raw and name not in (".", "..")


names = st.one_of(
    st.sampled_from(ODD_NAMES),
    # Any bytes a name may hold; most are not valid UTF-8.
    st.binary(min_size=1, max_size=10).map(lambda b: os.fsdecode(b.replace(b"/", b"_").replace(b"\0", b"_"))),
    st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=10),
).filter(_allowed)
extensions = st.sampled_from([".png", ".jpg", ".JPG", ".jpeg", ".txt", ""])


@dataclass(frozen=True)
class Entry:
    folders: tuple[str, ...]
    name: str
    kind: str
    target: int  # which earlier folder a folder link points to


@st.composite
def trees(draw) -> tuple[str, list[Entry]]:
    """(layout of two good classes: "flat", "split" or "none", entries).

    Folder names come from a small pool, so that entries share folders and nest.
    """
    pool = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    entry = st.builds(
        Entry,
        folders=st.lists(st.sampled_from(pool), max_size=3).map(tuple),
        name=st.tuples(names, extensions).map("".join).filter(_allowed),
        kind=st.sampled_from(FILE_KINDS + LINK_KINDS),
        target=st.integers(0, 50),
    )
    layout = draw(st.sampled_from(["flat", "split", "none"]))
    return layout, draw(st.lists(entry, min_size=1, max_size=15))


# --------------------------------------------------------------------------- building a tree


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def build(base: str, layout: str, entries: list[Entry]) -> str:
    """Write the tree under ``base``/data (plus ``base``/outside for links) and return the data folder."""
    root = os.path.join(base, "data")
    outside = os.path.join(base, "outside")
    os.makedirs(os.path.join(outside, "sub"))
    for name, data in (("o1.png", PNG), ("o2.jpg", JPEG), ("notes.txt", b"x")):
        Path(outside, name).write_bytes(data)
    Path(outside, "sub", "o3.png").write_bytes(PNG)
    os.makedirs(root)
    splits = {"flat": [""], "split": ["train", "val"], "none": []}[layout]
    for split in splits:
        for cls, data, ext in (("c0", PNG, "png"), ("c1", JPEG, "jpg")):
            os.makedirs(os.path.join(root, split, cls))
            for i in range(2):
                Path(root, split, cls, f"{i}.{ext}").write_bytes(data)
    real_root = os.path.realpath(root)
    folders = [root]
    for e in entries:
        folder = os.path.join(root, *e.folders)
        if not _inside(folder, real_root):
            continue  # a generated link leads out: never write outside the tree
        path = os.path.join(folder, e.name)
        try:
            os.makedirs(folder, exist_ok=True)
            if os.path.lexists(path):
                continue
            _make(path, e, folders, root, outside, base)
        except OSError:
            continue  # a file already holds a folder's name, or the name is too long
        if os.path.isdir(folder) and folder not in folders:
            folders.append(folder)
    return root


def _make(path: str, e: Entry, folders: list[str], root: str, outside: str, base: str) -> None:
    if e.kind in CONTENTS:
        Path(path).write_bytes(CONTENTS[e.kind])
    elif e.kind == "fifo":
        os.mkfifo(path)
    else:
        target = {
            "link_file": os.path.join(outside, "o2.jpg"),
            "link_dir": folders[e.target % len(folders)],
            "link_outside_file": os.path.join(outside, "o1.png"),
            "link_outside_dir": outside,
            "link_broken": os.path.join(base, "gone"),
            "link_self": os.path.basename(path),  # ELOOP
            "link_parent": ".",  # the folder the link sits in
            "link_root": root,
            "link_above": base,  # holds the data folder
            "link_slash": "/",
        }[e.kind]
        os.symlink(target, path)


def reachable_files(root: str) -> list[str]:
    """Every non-folder entry under ``root``, folder links followed once (the oracle).

    Folders that hold the root are not entered: everything under them is either outside
    the dataset or the dataset again.
    """
    real_root = os.path.realpath(root)
    seen: set[str] = set()
    found = []
    for folder, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        above = real != real_root and (real_root + os.sep).startswith(real.rstrip(os.sep) + os.sep)
        if real in seen or above:
            dirnames[:] = []
            continue
        seen.add(real)
        found.extend(os.path.join(folder, name) for name in filenames)
    return found


# --------------------------------------------------------------------------- the listing


def _check_text(text: str) -> None:
    """Text that any JSON or HTML writer can encode, that says which name it was."""
    shown = display_name(text)
    shown.encode("utf-8")  # raises on a lone surrogate
    assert parse_display_name(shown) == text


@FAST
@given(trees())
def test_scan_reads_or_lists_every_file(tree):
    layout, entries = tree
    with tempfile.TemporaryDirectory() as base:
        root = build(base, layout, entries)
        try:
            ds = scan(root)
        except DatasetError as err:
            msg = str(err)
            assert "\n" not in msg  # one line
            msg.encode("utf-8")  # printable anywhere
            event("DatasetError")
            return
        skipped = {s.path: s.reason for s in ds.skipped}
        event(f"read: {ds.layout}")
        for reason in {r.split(" (")[0].split(":")[0] for r in skipped.values()}:
            event(f"skipped: {reason}")  # what the trees exercise (--hypothesis-show-statistics)
        assert len(skipped) == len(ds.skipped) and all(skipped.values())
        paths = ds.paths
        assert len(set(paths)) == len(paths) and not set(paths) & set(skipped)

        listed = set(paths) | set(skipped)
        for path in reachable_files(ds.root):
            p = path
            while p not in listed and len(p) > len(ds.root):
                p = os.path.dirname(p)  # a folder skipped as a whole covers its files
            assert p in listed, f"{path!r} is neither read nor listed as skipped"

        depth = 1 if ds.layout == "split" else 0
        for s in ds.samples:
            assert os.path.isfile(s.path)
            assert os.path.splitext(s.path)[1].lower() in IMAGE_EXTENSIONS
            # A class is its folder's raw name, the same for every file in it.
            assert os.path.relpath(s.path, ds.root).split(os.sep)[depth] == ds.classes[s.label]

        for text in (ds.root, *ds.classes, *paths, *skipped, *skipped.values()):
            _check_text(text)
        summary = summarize_skipped(ds.skipped, limit=5)
        assert summary["total"] == len(skipped) and sum(summary["by_reason"].values()) == len(skipped)
        assert len(summary["shown"]) == min(5, len(skipped))


any_text = st.text(
    alphabet=st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(any_text, any_text)
def test_display_name_is_one_to_one_and_valid_utf8(a, b):
    shown = display_name(a)
    shown.encode("utf-8")  # raises on a lone surrogate
    assert all(ch.isprintable() for ch in shown)
    assert parse_display_name(shown) == a
    assert (display_name(b) == shown) == (a == b)


# --------------------------------------------------------------------------- through the CLI


class _Balance(html.parser.HTMLParser):
    """Counts end tags that close nothing, and elements left open."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(f"</{tag}> while open: {self.stack[-3:]}")


def check_html(path: Path) -> str:
    text = path.read_bytes().decode("utf-8")  # strict: no lone surrogate made it in
    parser = _Balance()
    parser.feed(text)
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors[:3], parser.stack)
    return text


def recommend(data: str, out: str, *extra: str):
    args = ["recommend", data, "--weights", "random", "--image-size", "32", "--per-class", "4",
            "--out", out, "--json", "-q", "--backbones", "resnet18", *extra]
    return CliRunner().invoke(main, args)


def check_run(result, root: str, out: str) -> dict | None:
    """The CLI's contract on any folder: exit 0 with a readable report, or 1 with one line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1), result.output[-2000:]
    if result.exit_code == 1:
        assert result.stdout == "" and result.stderr.startswith("Error: ")
        assert result.stderr.count("\n") == 1, result.stderr
        return None
    doc = json.loads(result.stdout)
    html_path = Path(doc["report"])
    on_disk = json.loads(html_path.with_suffix(".json").read_bytes().decode("utf-8"))
    assert on_disk["dataset"] == doc["dataset"]
    check_html(html_path)
    ds = doc["dataset"]
    assert len(ds["skipped"]) <= 200
    # One raw name, one class: the report's classes are the listing's, escaped one-to-one.
    assert set(ds["class_counts"]) == {display_name(c) for c in scan(root).classes}
    return doc


@SLOW
@given(trees())
def test_cli_never_shows_a_traceback(tree):
    layout, entries = tree
    with tempfile.TemporaryDirectory() as base:
        root = build(base, layout, entries)
        out = os.path.join(base, "reports")
        doc = check_run(recommend(root, out, "--no-cache"), root, out)
        event("report written" if doc else "refused with one line")


ODD_CLASSES = ["<script>alert(1)<\\script>", "q\"'x", "   ", "-rf", "new\nline", "猫", "\u202eevil",
               "back\\slash", os.fsdecode(b"\xff\xfe"), "x" * 255]


def _odd_folder(base: str, n_junk: int = 0) -> str:
    root = os.path.join(base, "data")
    for i, cls in enumerate(ODD_CLASSES):
        os.makedirs(os.path.join(root, cls))
        for j, name in enumerate((os.fsdecode(b"\xff%d.png" % i), f"-{i}\n.jpg")):
            Path(root, cls, name).write_bytes(PNG if j == 0 else JPEG)
    for k in range(n_junk):
        Path(root, "-rf", f"junk{k:04d}.txt").write_bytes(b"x")
    return root


def test_cli_report_on_odd_names_and_many_non_images(tmp_path):
    root = _odd_folder(str(tmp_path), n_junk=500)
    out = str(tmp_path / "reports")
    doc = check_run(recommend(root, out, "--no-cache"), root, out)
    assert doc is not None
    ds = doc["dataset"]
    assert ds["class_counts"][r"\xff\xfe"] == 2 and ds["class_counts"][r"new\nline"] == 2
    assert len(ds["skipped"]) == 200  # capped; the JSON stays small
    assert all(p.startswith(ds["path"]) for p in ds["thumbnails"][r"\xff\xfe"])
    text = Path(doc["report"]).read_text(encoding="utf-8")
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;\\\\script&gt;" in text
    assert text.count('class="thumb"') == 2 * len(ODD_CLASSES)  # thumbnails load from escaped paths


def test_summary_counts_every_skipped_file(tmp_path):
    ds = scan(_odd_folder(str(tmp_path), n_junk=300))
    summary = summarize_dataset(ds, ds.samples[:2]).to_dict()
    assert len(summary["skipped"]) == 200
    assert summary["skipped_total"] == 300
    assert summary["skipped_by_reason"] == {"not an image (.txt)": 300}


def test_cli_with_feature_cache_reads_undecodable_names(tmp_path):
    root = _odd_folder(str(tmp_path))
    out = str(tmp_path / "reports")
    assert check_run(recommend(root, out), root, out) is not None


# --------------------------------------------------------------------------- summaries and pages


def test_summarize_dataset_is_valid_utf8_and_capped(tmp_path):
    root = _odd_folder(str(tmp_path), n_junk=300)
    ds = scan(root)
    extra = [Skipped(ds.samples[0].path, "truncated image")]
    summary = summarize_dataset(ds, ds.samples, extra_skipped=extra).to_dict()
    text = json.dumps(summary, ensure_ascii=False, allow_nan=False)
    assert text.encode("utf-8")
    assert len(summary["skipped"]) == 200
    # The one decode failure sorts last but is still shown: every reason gets a row.
    assert {"path": display_name(ds.samples[0].path), "reason": "truncated image"} in summary["skipped"]
    assert set(summary["class_counts"]) == {display_name(c) for c in ds.classes}
    for paths in summary["thumbnails"].values():
        assert all(os.path.isfile(parse_display_name(p)) for p in paths)


def _page(dataset: dict) -> str:
    result = {"kind": "recommend", "dataset": {"path": "/d", "n_images": 4, "n_classes": 2, **dataset},
              "recommendation": {"strategy": "freeze"}}
    return render_recommend_html(result)


def test_report_shows_total_and_counts_per_reason_of_a_capped_list():
    listed = [{"path": f"/d/a/{i:06d}.txt", "reason": "not an image (.txt)"} for i in range(199)]
    listed.append({"path": "/d/b/x.jpg", "reason": "truncated image"})
    text = _page({"skipped": listed, "skipped_total": 100_000,
                  "skipped_by_reason": {"not an image (.txt)": 99_999, "truncated image": 1}})
    assert "Skipped files <span class=\"muted small\">(100,000)</span>" in text
    assert "99,999" in text and "and 99,950 more" in text
    assert text.count("<td class=\"mono\">/d/") == 50
    assert "/d/b/x.jpg" in text  # the rare reason keeps its row


def test_report_of_an_old_json_counts_its_full_list():
    listed = [{"path": f"/d/{i}.txt", "reason": "not an image (.txt)"} for i in range(60)]
    text = _page({"skipped": listed + [{"path": None, "reason": "broken symlink"}]})
    assert "(61)" in text and "and 11 more" in text and "broken symlink" in text
    assert 'id="skipped"' not in _page({"skipped": []})
