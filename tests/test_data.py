"""Tests for advisor.data: real-world folders must list, load and split without crashing."""

from __future__ import annotations

import builtins
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advisor.data import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_DEPTH,
    Dataset,
    DatasetError,
    ImageLoadError,
    LoadFailure,
    Sample,
    Skipped,
    display_name,
    find_images,
    load_image,
    parse_display_name,
    read_header,
    scan,
    stratified_sample,
    stratified_split,
    summarize_skipped,
)
from advisor.loading import ImageFolder, collate_skipping

# --------------------------------------------------------------------------- helpers


def img(path: Path, mode: str = "RGB", size: tuple[int, int] = (8, 8), color=None, **save) -> Path:
    """Write a tiny image (parents created) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if color is None:
        color = {"1": 1, "L": 128, "P": 3, "LA": (128, 255), "RGBA": (10, 20, 30, 255),
                 "CMYK": (0, 255, 255, 0)}.get(mode, (10, 20, 30))
    Image.new(mode, size, color).save(path, **save)
    return path


def make_flat(root: Path, counts: dict[str, int], ext: str = ".png") -> Path:
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img(root / name / f"{i:03d}{ext}")
    return root


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid-looking PNG whose IHDR claims width x height (costs a few bytes on disk)."""
    img(path, "1", (1, 1))
    data = bytearray(path.read_bytes())
    # Signature (8) + chunk length (4) + b"IHDR" (4): width and height follow.
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def reasons(ds: Dataset) -> dict[str, str]:
    """Skipped entries keyed by path relative to the root, forward slashes."""
    return {os.path.relpath(s.path, ds.root).replace(os.sep, "/"): s.reason for s in ds.skipped}


def rel_paths(ds: Dataset) -> list[str]:
    return [os.path.relpath(p, ds.root).replace(os.sep, "/") for p in ds.paths]


# --------------------------------------------------------------------------- fatal errors


def test_missing_folder_names_path_and_fix(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError) as info:
        scan(missing)
    msg = str(info.value)
    assert str(missing) in msg and "does not exist" in msg and "\n" not in msg
    assert "one sub-folder per class" in msg


def test_file_instead_of_folder(tmp_path):
    archive = tmp_path / "data.zip"
    archive.write_bytes(b"PK\x03\x04")
    with pytest.raises(DatasetError, match="is a file, not a folder") as info:
        scan(str(archive))
    assert str(archive) in str(info.value)


def test_unreadable_root(tmp_path, monkeypatch):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    real = os.scandir

    def deny(path="."):
        if os.fspath(path) == str(root):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", deny)
    with pytest.raises(DatasetError, match="cannot be read") as info:
        scan(root)
    assert str(root) in str(info.value) and "Permission denied" in str(info.value)


def test_empty_folder_has_no_class_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class folders") as info:
        scan(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)


def test_images_directly_in_root_are_not_classes(tmp_path):
    root = tmp_path / "loose"
    for i in range(3):
        img(root / f"{i}.png")
    with pytest.raises(DatasetError) as info:
        scan(root)
    msg = str(info.value)
    assert str(root) in msg and "found 3 file(s) directly in it" in msg
    assert os.path.join(str(root), "cat", "001.jpg") in msg


def test_one_class_only_needs_two(tmp_path):
    root = make_flat(tmp_path / "one", {"cat": 3})
    (root / "dog").mkdir()  # a second folder, but empty
    with pytest.raises(DatasetError, match=r"classifier needs >= 2 classes") as info:
        scan(root)
    assert str(root) in str(info.value) and "'cat'" in str(info.value)


def test_no_usable_images_at_all(tmp_path):
    root = tmp_path / "d"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no usable images") as info:
        scan(root)
    assert str(root) in str(info.value) and "2 file(s) skipped" in str(info.value)


def test_fatal_messages_are_one_line_even_with_newline_in_name(tmp_path):
    root = tmp_path / "bad\nname"
    with pytest.raises(DatasetError) as info:
        scan(root)
    assert "\n" not in str(info.value) and "bad\\nname" in str(info.value)


# --------------------------------------------------------------------------- listing


def test_flat_layout_classes_sorted_labels_and_counts(tmp_path):
    root = make_flat(tmp_path / "d", {"zebra": 2, "ant": 3, "Moth": 1})
    ds = scan(root)
    assert ds.layout == "flat"
    assert ds.classes == ("Moth", "ant", "zebra")  # plain string order
    assert ds.class_counts() == {"Moth": 1, "ant": 3, "zebra": 2}
    assert ds.splits == ("all",)
    assert ds.labels.tolist() == [0, 1, 1, 1, 2, 2]
    assert ds.labels.dtype == np.int64
    assert rel_paths(ds)[:2] == ["Moth/000.png", "ant/000.png"]
    assert ds.root == str(root.resolve()) and ds.skipped == () and ds.empty_classes == ()
    with pytest.raises(ValueError, match="not in this dataset"):
        ds.class_counts("train")


def test_empty_class_folder_is_dropped_but_reported(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 2, "c": 2})
    (root / "b").mkdir()
    (root / "b" / "readme.txt").write_text("todo")
    ds = scan(root)
    assert ds.classes == ("a", "c")
    assert ds.empty_classes == ("b",)
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert reasons(ds) == {"b/readme.txt": "not an image (.txt)"}


def test_non_image_files_listed_with_reason(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    (root / "a" / "labels.csv").write_text("x,y")
    (root / "a" / "notes.txt").write_text("hi")
    (root / "b" / "Makefile").write_text("all:")
    img(root / "b" / "UPPER.JPG")  # upper-case extensions count
    ds = scan(root)
    assert ds.class_counts() == {"a": 1, "b": 2}
    assert reasons(ds) == {
        "a/labels.csv": "not an image (.csv)",
        "a/notes.txt": "not an image (.txt)",
        "b/Makefile": "not an image (no extension)",
    }


def test_zero_byte_image_skipped(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    (root / "a" / "empty.jpg").write_bytes(b"")
    ds = scan(root)
    assert reasons(ds) == {"a/empty.jpg": "zero-byte file"}
    assert len(ds.samples) == 2


def test_files_in_root_and_nested_folders(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    img(root / "stray.png")
    img(root / "a" / "deep" / "deeper" / "x.png")
    ds = scan(root)
    assert reasons(ds) == {"stray.png": "not inside a class folder"}
    assert rel_paths(ds) == ["a/000.png", "a/deep/deeper/x.png", "b/000.png"]


def test_hidden_and_system_entries_skipped(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    img(root / "a" / ".hidden.png")
    (root / "a" / ".DS_Store").write_bytes(b"\0\0")
    img(root / "a" / ".cache" / "inside.png")
    (root / "b" / "Thumbs.db").write_bytes(b"\xd0\xcf")
    (root / "b" / "desktop.ini").write_text("[x]")
    img(root / "__MACOSX" / "a" / "._000.png")
    img(root / ".git" / "x.png")
    img(root / "..foo" / "x.png")  # starts with a dot: hidden, like any dot-folder
    ds = scan(root)
    assert ds.classes == ("a", "b") and len(ds.samples) == 2
    assert reasons(ds) == {
        "..foo": "hidden folder",
        ".git": "hidden folder",
        "__MACOSX": "system folder",
        "a/.DS_Store": "hidden file",
        "a/.cache": "hidden folder",  # listed once, contents not walked
        "a/.hidden.png": "hidden file",
        "b/Thumbs.db": "system file",
        "b/desktop.ini": "system file",
    }


def test_symlink_loops_terminate_and_are_listed(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 2, "b": 1})
    os.symlink(root / "a", root / "a" / "loop")  # to its own class folder
    os.symlink(root, root / "b" / "to_root")  # to the data folder itself
    os.symlink("self", root / "b" / "self")  # a link to itself (ELOOP)
    ds = scan(root)
    assert len(ds.samples) == 3
    assert reasons(ds) == {
        "a/loop": "symlink loop",
        "b/to_root": "symlink loop",
        "b/self": "symlink loop",
    }


def test_directory_symlinks_are_followed_once(tmp_path):
    outside = tmp_path / "elsewhere"
    img(outside / "x.png")
    img(outside / "y.png")
    root = make_flat(tmp_path / "d", {"a": 1})
    os.symlink(outside, root / "b")  # a linked class folder
    os.symlink(outside, root / "a" / "again")  # the same folder linked a second time
    ds = scan(root)
    assert ds.class_counts() == {"a": 1, "b": 2}
    assert reasons(ds) == {"a/again": "folder already listed (linked twice)"}


def test_broken_symlink_listed(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    os.symlink(tmp_path / "gone.png", root / "a" / "dead.png")
    os.symlink(tmp_path / "gone_dir", root / "dead_class")
    ds = scan(root)
    assert reasons(ds) == {"a/dead.png": "broken symlink", "dead_class": "broken symlink"}


def test_unreadable_file_skipped(tmp_path, monkeypatch):
    # Tests run as root, where chmod 000 blocks nothing: simulate the denial.
    root = make_flat(tmp_path / "d", {"a": 2, "b": 1})
    locked = str(root / "a" / "001.png")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: p != locked and real(p, mode, **kw))
    ds = scan(root)
    assert reasons(ds) == {"a/001.png": "unreadable: Permission denied"}
    assert ds.class_counts() == {"a": 1, "b": 1}


def test_unreadable_subfolder_skipped(tmp_path, monkeypatch):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    img(root / "a" / "locked" / "x.png")
    real = os.scandir

    def deny(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", deny)
    ds = scan(root)
    assert reasons(ds) == {"a/locked": "unreadable: Permission denied"}
    assert len(ds.samples) == 2


# "/" cannot appear in a folder name, so "<script>alert(1)</script>" itself is
# impossible on disk; these carry the same markup hazards.
@pytest.mark.parametrize(
    "names",
    [
        ("café", "猫"),
        ("<script>alert(1)<\\script>", "<img src=x onerror=alert(1)>", "a&b \"q\" 'x'"),
        ("Café", "cafe\u0301"),  # NFC vs NFD spellings stay two distinct classes
        ("   ", "-rf", "new\nline", "tab\there", "back\\slash", os.fsdecode(b"caf\xe9")),
    ],
)
def test_odd_class_names_preserved_exactly(tmp_path, names):
    root = make_flat(tmp_path / "d", {n: 1 for n in names})
    ds = scan(root)
    assert ds.classes == tuple(sorted(names))
    back = Dataset.from_dict(json.loads(json.dumps(ds.to_dict())))
    assert back.classes == ds.classes and back == ds
    shown = [display_name(n) for n in ds.classes]
    assert len(set(shown)) == len(names)  # distinct classes never display alike
    assert all(s.encode("utf-8") for s in shown)


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Val"])
def test_split_layout_detected_and_normalised(tmp_path, val_name):
    root = tmp_path / "d"
    make_flat(root / "train", {"a": 3, "b": 2})
    make_flat(root / val_name, {"a": 1, "c": 1})
    make_flat(root / "test", {"b": 1})
    img(root / "extra" / "x" / "y.png")
    img(root / "README.png")
    img(root / "train" / "loose.png")
    ds = scan(root)
    assert ds.layout == "split"
    assert ds.classes == ("a", "b", "c")  # union over splits
    assert ds.splits == ("train", "val", "test")
    assert ds.class_counts("train") == {"a": 3, "b": 2, "c": 0}
    assert ds.class_counts("val") == {"a": 1, "b": 0, "c": 1}
    assert ds.class_counts("test") == {"a": 0, "b": 1, "c": 0}
    assert reasons(ds) == {
        "README.png": "not inside a split folder",
        "extra": "not a split folder (expected train/val/test)",
        "train/loose.png": "not inside a class folder",
    }


def test_train_and_test_only_is_split_layout(tmp_path):
    root = tmp_path / "d"
    make_flat(root / "train", {"a": 2, "b": 2})
    make_flat(root / "test", {"a": 1, "b": 1})
    ds = scan(root)
    assert ds.layout == "split" and ds.splits == ("train", "test")


def test_split_layout_with_two_val_folders_is_ambiguous(tmp_path):
    root = tmp_path / "d"
    make_flat(root / "train", {"a": 1, "b": 1})
    make_flat(root / "val", {"a": 1, "b": 1})
    make_flat(root / "valid", {"a": 1, "b": 1})
    with pytest.raises(DatasetError, match="two folders for the val split") as info:
        scan(root)
    assert str(root) in str(info.value)


def test_split_layout_needs_train_images(tmp_path):
    root = tmp_path / "d"
    (root / "train" / "a").mkdir(parents=True)
    make_flat(root / "val", {"a": 1, "b": 1})
    with pytest.raises(DatasetError, match="train folder holds no usable images") as info:
        scan(root)
    assert str(root) in str(info.value)


def test_only_train_without_val_is_flat(tmp_path):
    root = make_flat(tmp_path / "d", {"train": 1, "other": 1})
    assert scan(root).layout == "flat"


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("cat", "cat"),
        ("猫 café <b>&\"'", "猫 café <b>&\"'"),
        ("   ", "   "),
        (os.fsdecode(b"\xff\xfe.jpg"), r"\xff\xfe.jpg"),  # bytes invalid in UTF-8
        ("new\nline\ttab\rcr\x07bell\x7f", r"new\nline\ttab\rcr\x07bell\x7f"),
        ("back\\slash", r"back\\slash"),
        (r"\xff", r"\\xff"),  # the four characters, not the byte
        ("\x85", r"\u0085"),  # a C1 control: \x80..\xff are kept for raw bytes
        ("\u202eevil", r"\u202eevil"),  # a bidi override would reverse what follows
        ("\ud800", r"\ud800"),  # a lone surrogate that is no escaped byte
        ("\U000e0001", r"\U000e0001"),
    ],
)
def test_display_name_escapes_and_parses_back(raw, shown):
    assert display_name(raw) == shown
    assert parse_display_name(shown) == raw
    assert shown.encode("utf-8")  # safe for the JSON and HTML writers


def test_parse_display_name_keeps_stray_backslashes():
    assert parse_display_name(r"C:\data\cat.png") == r"C:\data\cat.png"
    assert parse_display_name(r"a\x4") == r"a\x4"


def test_names_invalid_in_the_file_system_encoding_are_read(tmp_path):
    root = os.path.join(os.fsencode(tmp_path), b"d")
    for cls in (b"caf\xe9", b"plain"):
        for name in (b"\xff\xfe.png", b"ok.png"):
            img(Path(os.fsdecode(os.path.join(root, cls, name))))
    ds = scan(root)  # a bytes root works too
    assert ds.classes == (os.fsdecode(b"caf\xe9"), "plain")
    assert ds.class_counts() == {os.fsdecode(b"caf\xe9"): 2, "plain": 2} and ds.skipped == ()
    assert load_image(ds.samples[0].path).size == (8, 8)
    assert [display_name(c) for c in ds.classes] == [r"caf\xe9", "plain"]
    assert Dataset.from_dict(json.loads(json.dumps(ds.to_dict()))) == ds


@pytest.mark.parametrize(
    "name",
    ["-rf.png", "--help.png", "new\nline.png", "tab\t.png", " .png", "a" * 251 + ".png",
     "<img src=x onerror=alert(1)>.png", "\u202egnp.exe.png", "猫.png"],
)
def test_odd_file_names_are_read(tmp_path, name):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    img(root / "a" / name)
    ds = scan(root)
    assert str(root / "a" / name) in ds.paths and ds.skipped == ()


def test_paths_longer_than_the_system_allows_are_skipped(tmp_path, monkeypatch):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    monkeypatch.chdir(root / "a")
    for _ in range(18):  # 18 x 256 bytes: past Linux's 4096-byte PATH_MAX
        os.mkdir("x" * 255)
        os.chdir("x" * 255)
    img(Path("deep.png"))
    ds = scan(root)
    assert ds.class_counts() == {"a": 1, "b": 1}
    assert [s.reason for s in ds.skipped] == ["unreadable: File name too long"]


def test_reasons_keep_raw_text_until_displayed(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    odd = Path(os.fsdecode(os.path.join(os.fsencode(root / "a"), b"notes.\xff")))
    odd.write_text("x")
    ds = scan(root)
    ext = os.fsdecode(b".\xff")
    assert reasons(ds) == {f"a/{odd.name}": f"not an image ({ext})"}
    assert display_name(ds.skipped[0].reason) == r"not an image (.\xff)"  # escaped once, on output


def test_messages_show_undecodable_bytes_escaped(tmp_path):
    with pytest.raises(DatasetError) as info:
        scan(os.path.join(os.fsencode(tmp_path), b"gone\xff"))
    assert "gone\\xff" in str(info.value) and str(info.value).encode("utf-8")
    err = ImageLoadError(os.fsdecode(b"/d/\xff.png"), "truncated image")
    assert str(err) == "/d/\\xff.png: truncated image"
    assert err.path == os.fsdecode(b"/d/\xff.png")  # the raw path still opens the file


# --------------------------------------------------------------------------- links and bounds


def test_links_to_files_outside_the_root_are_followed(tmp_path):
    shared = img(tmp_path / "shared" / "x.png", color=(1, 2, 3))
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    os.symlink(shared, root / "a" / "linked.png")
    ds = scan(root)
    assert ds.class_counts() == {"a": 2, "b": 1} and ds.skipped == ()
    assert load_image(root / "a" / "linked.png").getpixel((0, 0)) == (1, 2, 3)


def test_links_to_folders_that_hold_the_root_are_not_followed(tmp_path):
    root = make_flat(tmp_path / "outer" / "d", {"a": 1, "b": 1})
    img(tmp_path / "outer" / "sibling" / "x.png")
    os.symlink("/", root / "a" / "slash")
    os.symlink(tmp_path / "outer", root / "b" / "up")
    os.symlink(tmp_path, root / "up_class")
    (tmp_path / "via").mkdir()
    os.symlink(root, tmp_path / "via" / "d")
    os.symlink(tmp_path / "via", root / "b" / "via")  # holds the root as given below
    ds = scan(tmp_path / "via" / "d")
    why = "symlink to a folder that holds the data folder (not followed)"
    assert reasons(ds) == {"a/slash": why, "b/up": why, "b/via": why, "up_class": why}
    assert ds.class_counts() == {"a": 1, "b": 1}


def test_walk_depth_is_bounded(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    deep = root / "a"
    for i in range(5):
        deep = deep / f"l{i}"
        img(deep / "x.png")
    ds = scan(root, max_depth=3)  # a = level 1, a/l0 = 2, a/l0/l1 = 3
    assert reasons(ds) == {"a/l0/l1/l2": "too deep: more than 3 folder levels below the data folder"}
    assert ds.class_counts() == {"a": 3, "b": 1}
    assert len(scan(root).samples) == 7 and MAX_DEPTH >= 16  # the default is for real nesting


def test_walk_stops_after_max_entries(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 3, "b": 3, "c": 3, "d": 3})
    # 4 class folders + 3 + 3 entries, then one entry of c: 11 in all.
    ds = scan(root, max_entries=11)
    assert ds.class_counts() == {"a": 3, "b": 3, "c": 1} and ds.empty_classes == ("d",)
    assert reasons(ds) == {
        "c": "listed in part: the walk stops after 11 entries",
        "d": "not walked: the walk stops after 11 entries",
    }


def test_no_image_among_many_files_stops_early(tmp_path, monkeypatch):
    root = tmp_path / "home"
    (root / "a").mkdir(parents=True)
    for i in range(30):
        (root / "a" / f"n{i:02d}.csv").write_text("x")
        (root / "a" / f"t{i:02d}.txt").write_text("x")
    make_flat(root, {"b": 2})  # would be walked next
    listed: list[str] = []
    real = os.scandir

    def spy(path="."):
        listed.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    with pytest.raises(DatasetError) as info:
        scan(root, no_image_limit=50)
    msg = str(info.value)
    assert str(root) in msg and "no usable image among the first 50 files" in msg
    assert "30 .csv, 20 .txt" in msg and "t19.txt" in msg and "\n" not in msg
    assert str(root / "b") not in listed  # it stopped instead of walking on
    with pytest.raises(DatasetError, match="first 50 files"):
        find_images(root, no_image_limit=50)


def test_many_non_images_after_an_image_do_not_stop_the_walk(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    for i in range(60):
        (root / "b" / f"z{i:02d}.txt").write_text("x")
    ds = scan(root, no_image_limit=50)
    assert len(ds.samples) == 2 and len(ds.skipped) == 60


def test_summarize_skipped_caps_counts_and_shows_every_reason():
    junk = [Skipped(f"/d/a/{i:06d}.txt", "not an image (.txt)") for i in range(100_000)]
    rare = Skipped("/d/b/x.jpg", "truncated image")
    out = summarize_skipped(junk + [rare, Skipped(junk[0].path, "other reason")], limit=200)
    assert out["total"] == 100_001  # a path listed twice counts once, first reason kept
    assert out["by_reason"] == {"not an image (.txt)": 100_000, "truncated image": 1}
    assert len(out["shown"]) == 200
    assert out["shown"][0] == {"path": "/d/a/000000.txt", "reason": "not an image (.txt)"}
    assert out["shown"][-1] == {"path": "/d/b/x.jpg", "reason": "truncated image"}
    assert len(json.dumps(out)) < 20_000
    many = summarize_skipped([Skipped(f"/{i}", f"reason {i:02d}") for i in range(60)], limit=5)
    assert len(many["by_reason"]) == 51 and many["by_reason"]["(other reasons)"] == 10
    assert len(many["shown"]) == 5
    assert summarize_skipped([]) == {"total": 0, "by_reason": {}, "shown": []}


# --------------------------------------------------------------------------- Dataset object


def test_fingerprint_stable_and_changes_with_files(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 2, "b": 2})
    first = scan(root)
    fp = first.fingerprint()
    assert len(fp) == 64 and fp == first.fingerprint() == scan(root).fingerprint()
    # Adding a skipped file changes nothing the model would see.
    (root / "a" / "notes.txt").write_text("x")
    assert scan(root).fingerprint() == fp
    # Rewriting an image (new size and mtime) changes it, also for the old object.
    target = root / "a" / "000.png"
    img(target, size=(9, 9))
    os.utime(target, ns=(1, 1))
    edited = scan(root).fingerprint()
    assert edited != fp and first.fingerprint() == edited
    # Moving the whole folder keeps it: paths are hashed relative to the root.
    root.rename(tmp_path / "moved")
    assert scan(tmp_path / "moved").fingerprint() == edited
    # A vanished file changes it instead of raising.
    assert first.fingerprint() != edited


def test_fingerprint_changes_with_labels(tmp_path):
    ds = scan(make_flat(tmp_path / "d", {"a": 1, "b": 1}))
    relabelled = Dataset(ds.root, ds.layout, ("b", "a"),
                         tuple(Sample(s.path, 1 - s.label, s.split) for s in ds.samples))
    assert relabelled.fingerprint() != ds.fingerprint()


def test_to_dict_json_round_trip(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 2, "b": 1})
    (root / "c").mkdir()
    (root / "a" / "x.txt").write_text("x")
    ds = scan(root)
    text = json.dumps(ds.to_dict())
    back = Dataset.from_dict(json.loads(text))
    assert back == ds
    assert json.dumps(back.to_dict()) == text
    assert isinstance(back.samples, tuple) and isinstance(back.samples[0], Sample)
    as_lists = Dataset(ds.root, ds.layout, list(ds.classes), list(ds.samples),
                       list(ds.skipped), list(ds.empty_classes))
    assert as_lists == ds
    with pytest.raises(ValueError, match="layout"):
        Dataset(ds.root, "nested", ds.classes, ds.samples)


def test_with_skipped_removes_samples_and_keeps_labels(tmp_path):
    ds = scan(make_flat(tmp_path / "d", {"a": 2, "b": 1}))
    bad = LoadFailure(ds.samples[2].path, "truncated image", 2)
    out = ds.with_skipped([bad, Skipped(ds.samples[0].path, "corrupt image")])
    assert out.classes == ds.classes
    assert out.class_counts() == {"a": 1, "b": 0}
    assert [type(s) for s in out.skipped] == [Skipped, Skipped]  # plain, JSON-able
    assert out.skipped[0] == Skipped(ds.samples[2].path, "truncated image")
    assert out.with_skipped([bad]).skipped == out.skipped  # no duplicates
    assert Dataset.from_dict(json.loads(json.dumps(out.to_dict()))) == out
    assert ds.class_counts() == {"a": 2, "b": 1}  # original untouched


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", ["t.jpg", "t.png"])
def test_truncated_image_is_listed_but_fails_to_load(tmp_path, name):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    make = _noisy_png if name.endswith("png") else _noisy_jpeg
    bad = truncate(make(root / "a" / name))
    ds = scan(root)
    assert str(bad) in ds.paths  # listing does not decode
    assert read_header(bad)[:2] == (64, 64)
    with pytest.raises(ImageLoadError) as info:
        load_image(bad)
    assert "truncated" in info.value.reason and info.value.path == str(bad)


def _noisy_jpeg(path: Path, size=(64, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _noisy_png(path: Path, size=(64, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_imagefolder_and_collate_drop_and_report_failures(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 2, "b": 2})
    bad = truncate(_noisy_png(root / "b" / "bad.png"))
    ds = scan(root)
    bad_index = ds.paths.index(str(bad))

    def to_tensor(im):
        return torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)

    folder = ImageFolder(ds.samples, to_tensor)
    assert len(folder) == 5
    assert isinstance(folder[bad_index], LoadFailure)
    loader = torch.utils.data.DataLoader(folder, batch_size=5, collate_fn=collate_skipping)
    images, labels, indices, failures = next(iter(loader))
    assert images.shape == (4, 3, 8, 8)
    assert labels.tolist() == [ds.samples[i].label for i in indices.tolist()]
    assert bad_index not in indices.tolist() and len(indices) == 4
    assert [(f.index, f.path) for f in failures] == [(bad_index, str(bad))]
    assert "truncated" in failures[0].reason and isinstance(failures[0], Skipped)
    cleaned = ds.with_skipped(failures)
    assert len(cleaned.samples) == 4 and str(bad) not in cleaned.paths


def test_failures_survive_worker_processes(tmp_path):
    root = make_flat(tmp_path / "d", {"a": 1, "b": 1})
    (root / "b" / "fake.jpg").write_bytes(b"not a jpeg at all")
    ds = scan(root)
    loader = torch.utils.data.DataLoader(
        ImageFolder(ds.samples), batch_size=3, num_workers=1, collate_fn=collate_skipping
    )
    images, labels, indices, failures = next(iter(loader))
    assert len(images) == 2 and all(isinstance(i, Image.Image) for i in images)  # no transform
    assert [os.path.basename(f.path) for f in failures] == ["fake.jpg"]
    assert failures[0].reason.startswith("not a readable image")


def test_collate_with_every_item_failed():
    images, labels, indices, failures = collate_skipping(
        [LoadFailure("/x/a.png", "truncated image", 0), LoadFailure("/x/b.png", "zero", 1)]
    )
    assert images.numel() == 0 and labels.tolist() == [] and indices.dtype == torch.int64
    assert [f.index for f in failures] == [0, 1]


def test_the_torch_glue_still_imports_from_advisor_data():
    import advisor.data
    import advisor.loading

    assert advisor.data.ImageFolder is advisor.loading.ImageFolder
    assert advisor.data.collate_skipping is advisor.loading.collate_skipping
    assert {"ImageFolder", "collate_skipping", "scan"} <= set(dir(advisor.data))
    with pytest.raises(AttributeError, match="has no attribute 'ImageFolders'"):
        advisor.data.ImageFolders  # noqa: B018


def _pixel(im: Image.Image) -> tuple[int, int, int]:
    return im.getpixel((0, 0))


@pytest.mark.parametrize(
    ("mode", "color", "fmt", "expected"),
    [
        ("L", 128, "png", (128, 128, 128)),
        ("1", 1, "png", (255, 255, 255)),
        ("1", 0, "bmp", (0, 0, 0)),
        ("LA", (100, 0), "png", (255, 255, 255)),  # fully transparent -> white
        ("LA", (100, 255), "png", (100, 100, 100)),
        ("RGBA", (10, 20, 30, 0), "png", (255, 255, 255)),
        ("RGBA", (10, 20, 30, 255), "webp", (10, 20, 30)),
        ("CMYK", (0, 255, 255, 0), "jpg", (255, 0, 0)),
        ("YCbCr", (76, 85, 255), "jpg", (254, 0, 0)),
        ("RGB", (1, 2, 3), "ppm", (1, 2, 3)),
        ("L", 7, "pgm", (7, 7, 7)),
        ("RGB", (200, 100, 50), "tiff", (200, 100, 50)),
    ],
)
def test_modes_convert_to_rgb(tmp_path, mode, color, fmt, expected):
    path = img(tmp_path / f"x.{fmt}", mode, (4, 4), color)
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (4, 4)
    assert np.abs(np.subtract(_pixel(im), expected)).max() <= 3


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "opaque.png")
    pal.save(tmp_path / "clear.png", transparency=0)
    pal.save(tmp_path / "clear.gif", transparency=0)
    opaque = load_image(tmp_path / "opaque.png")
    assert [opaque.getpixel((x, 0)) for x in range(2)] == [(255, 0, 0), (0, 0, 255)]
    for name in ("clear.png", "clear.gif"):
        clear = load_image(tmp_path / name)
        assert clear.mode == "RGB"
        assert [clear.getpixel((x, 0)) for x in range(2)] == [(255, 255, 255), (0, 0, 255)]


@pytest.mark.parametrize(
    ("dtype", "fmt"), [(np.uint16, "png"), (">u2", "tiff"), (np.uint16, "pgm")]
)
def test_16bit_images_scaled_not_clipped(tmp_path, dtype, fmt):
    ramp = np.linspace(0, 65535, 256).reshape(16, 16).astype(dtype)
    path = tmp_path / f"deep.{fmt}"
    Image.fromarray(ramp).save(path)
    assert read_header(path)[2] in ("I;16", "I;16B", "I")
    arr = np.asarray(load_image(path))
    assert arr.dtype == np.uint8 and arr.shape == (16, 16, 3)
    assert arr.min() == 0 and arr.max() == 255
    assert 120 <= np.median(arr) <= 135  # a ramp, not a wall of 255
    assert (arr[..., 0] == arr[..., 2]).all()


def test_32bit_int_and_float_images_min_max_scaled(tmp_path):
    ints = (np.arange(64, dtype=np.int32).reshape(8, 8) - 10) * 100_000  # beyond 16 bits
    floats = np.linspace(-1.0, 3.0, 64, dtype=np.float32).reshape(8, 8)
    floats[0, 1] = np.nan
    for name, arr in (("i.tiff", ints), ("f.tiff", floats)):
        Image.fromarray(arr).save(tmp_path / name)
        out = np.asarray(load_image(tmp_path / name))[..., 0]
        assert out.min() == 0 and out.max() == 255, name
        assert out[0, 0] == 0 and out[7, 7] == 255
    flat = np.full((4, 4), 7.5, dtype=np.float32)
    Image.fromarray(flat).save(tmp_path / "flat.tiff")
    assert np.asarray(load_image(tmp_path / "flat.tiff")).max() == 0  # constant: no divide by 0


def test_one_pixel_image(tmp_path):
    path = img(tmp_path / "dot.png", "RGB", (1, 1), (9, 8, 7))
    im = load_image(path, draft_size=(224, 224))
    assert im.size == (1, 1) and _pixel(im) == (9, 8, 7)
    assert read_header(path) == (1, 1, "RGB", "PNG")


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    im = load_image(tmp_path / "anim.gif")
    assert im.mode == "RGB" and _pixel(im) == (255, 0, 0)


def test_exif_rotation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.new("RGB", (8, 4), (50, 50, 50)).save(tmp_path / "r.jpg", exif=exif)
    assert read_header(tmp_path / "r.jpg")[:2] == (8, 4)
    assert load_image(tmp_path / "r.jpg").size == (4, 8)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    # 9000 x 9000 = 81 MP: above our default limit, below PIL's own.
    bomb = png_claiming(tmp_path / "bomb.png", 9000, 9000)
    assert bomb.stat().st_size < 100
    assert read_header(bomb) == (9000, 9000, "1", "PNG")
    with pytest.raises(ImageLoadError) as info:
        load_image(bomb)
    expected = f"decompression bomb: 9000x9000 px > limit of {DEFAULT_MAX_PIXELS} px"
    assert info.value.reason == expected


def test_decompression_bomb_refused_by_pil(tmp_path):
    bomb = png_claiming(tmp_path / "huge.png", 30000, 30000)
    for call in (read_header, load_image):
        with pytest.raises(ImageLoadError) as info:
            call(bomb)
        assert info.value.reason.startswith("decompression bomb")


def test_max_pixels_is_configurable(tmp_path):
    path = img(tmp_path / "x.png", size=(20, 10))
    assert load_image(path, max_pixels=200).size == (20, 10)
    with pytest.raises(ImageLoadError, match="20x10 px > limit of 199 px"):
        load_image(path, max_pixels=199)
    folder = ImageFolder([Sample(str(path), 0, "all")], max_pixels=199)
    assert "decompression bomb" in folder[0].reason


def test_draft_decodes_large_jpeg_smaller_but_not_below_target(tmp_path):
    path = _noisy_jpeg(tmp_path / "big.jpg", size=(1200, 800))
    full = load_image(path)
    small = load_image(path, draft_size=(256, 256))
    assert full.size == (1200, 800)
    # 800 // 256 = 3, so the largest JPEG reduction that keeps >= 256 px is 1/2.
    assert small.size == (600, 400)
    assert small.mode == "RGB"
    # Not a JPEG: the draft request is ignored, full size comes back.
    png = _noisy_png(tmp_path / "big.png", size=(600, 400))
    assert load_image(png, draft_size=(128, 128)).size == (600, 400)


def test_unreadable_file_at_load_time(tmp_path, monkeypatch):
    path = img(tmp_path / "x.png")
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.reason == "unreadable: Permission denied"


def test_not_an_image_and_missing_file(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("hello")
    with pytest.raises(ImageLoadError, match="not a readable image"):
        read_header(fake)
    with pytest.raises(ImageLoadError, match="unreadable: No such file"):
        load_image(tmp_path / "missing.png")


def test_image_load_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(ImageLoadError("/x.png", "truncated image")))
    assert (err.path, err.reason) == ("/x.png", "truncated image")


def test_extension_set():
    assert IMAGE_EXTENSIONS >= {".jpg", ".jpeg", ".png", ".webp", ".tif", ".pgm"}
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)


# --------------------------------------------------------------------------- splitting


def _fake_dataset(counts: dict[int, int], split: str = "all") -> Dataset:
    samples = tuple(
        Sample(f"/d/{label}/{i:03d}.jpg", label, split)
        for label, n in counts.items()
        for i in range(n)
    )
    return Dataset("/d", "flat", tuple(f"c{k}" for k in counts), samples)


def test_stratified_split_flat_is_seeded_and_stratified():
    ds = _fake_dataset({0: 50, 1: 30, 2: 20, 3: 1})
    train, val = stratified_split(ds, val_fraction=0.2, seed=3)
    assert len(val) == 20 and len(train) == 81
    assert sorted(np.bincount([s.label for s in val], minlength=4).tolist()) == [0, 4, 6, 10]
    assert [s for s in train if s.label == 3] == [ds.samples[-1]]  # singleton stays in train
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(ds.samples)
    assert (train, val) == stratified_split(ds, val_fraction=0.2, seed=3)
    assert val != stratified_split(ds, val_fraction=0.2, seed=4)[1]
    order = {s: i for i, s in enumerate(ds.samples)}
    assert [order[s] for s in val] == sorted(order[s] for s in val)  # dataset order kept


def test_stratified_split_tiny_classes_each_get_a_val_image():
    ds = _fake_dataset({0: 2, 1: 2, 2: 2})
    train, val = stratified_split(ds, val_fraction=0.1)
    assert sorted(s.label for s in val) == [0, 1, 2] and len(train) == 3


def test_stratified_split_all_singletons():
    train, val = stratified_split(_fake_dataset({0: 1, 1: 1}))
    assert len(train) == 2 and val == []


def test_stratified_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(_fake_dataset({0: 2, 1: 2}), val_fraction=1.0)


def test_stratified_split_uses_folder_split(tmp_path):
    root = tmp_path / "d"
    make_flat(root / "train", {"a": 3, "b": 3})
    make_flat(root / "valid", {"a": 1, "b": 1})
    make_flat(root / "test", {"a": 2, "b": 2})
    train, val = stratified_split(scan(root), val_fraction=0.5)
    assert {s.split for s in train} == {"train"} and len(train) == 6
    assert {s.split for s in val} == {"val"} and len(val) == 2


def test_stratified_split_falls_back_to_test_then_to_train(tmp_path):
    root = tmp_path / "d"
    make_flat(root / "train", {"a": 4, "b": 4})
    make_flat(root / "test", {"a": 1, "b": 1})
    train, val = stratified_split(scan(root))
    assert len(train) == 8 and {s.split for s in val} == {"test"}
    # A val folder whose class folders hold nothing: a seeded split of train instead.
    (root / "test").rename(root / "spare")
    (root / "val" / "a").mkdir(parents=True)
    train, val = stratified_split(scan(root), val_fraction=0.25)
    assert len(train) == 6 and len(val) == 2 and {s.split for s in val} == {"train"}


def test_stratified_sample_caps_and_balance():
    pool = list(_fake_dataset({0: 40, 1: 10, 2: 3}).samples)
    capped = stratified_sample(pool, per_class=5, total=None, seed=0)
    assert np.bincount([s.label for s in capped]).tolist() == [5, 5, 3]
    balanced = stratified_sample(pool, per_class=None, total=12, seed=0)
    assert np.bincount([s.label for s in balanced]).tolist() == [5, 4, 3]  # round-robin
    both = stratified_sample(pool, per_class=4, total=100, seed=0)
    assert np.bincount([s.label for s in both]).tolist() == [4, 4, 3]
    assert stratified_sample(pool, per_class=None, total=None) == pool
    assert stratified_sample(pool, per_class=0, total=None) == []


def test_stratified_sample_deterministic_nested_and_ordered():
    pool = list(_fake_dataset({0: 30, 1: 30}).samples)
    a = stratified_sample(pool, per_class=None, total=10, seed=7)
    assert a == stratified_sample(pool, per_class=None, total=10, seed=7)
    assert a != stratified_sample(pool, per_class=None, total=10, seed=8)
    bigger = stratified_sample(pool, per_class=None, total=20, seed=7)
    assert set(a) <= set(bigger)  # growing the budget only adds images
    index = {s: i for i, s in enumerate(pool)}
    assert [index[s] for s in a] == sorted(index[s] for s in a)
    # A class's draw does not depend on which other classes are present.
    only0 = [s for s in pool if s.label == 0]
    assert [s for s in stratified_sample(pool, per_class=5, total=None, seed=7) if s.label == 0] \
        == stratified_sample(only0, per_class=5, total=None, seed=7)
    with pytest.raises(ValueError, match="total"):
        stratified_sample(pool, per_class=None, total=-1)


# --------------------------------------------------------------------------- shared fixture


def test_tiny_image_folder_fixture_scans(tiny_image_folder):
    ds = scan(tiny_image_folder)
    assert ds.class_counts() == {"cat": 4, "dog": 4} and ds.skipped == ()
    assert load_image(ds.paths[0]).size == (16, 16)
