"""Every cache can be damaged, outputs can be unwritable, data can be too small: a clear answer,
nothing finished lost, never a traceback or a wrong number."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from advisor import backbones as backbones_mod
from advisor.backbones import backbone_info, get_backbone
from advisor.bench.results import RunResult, append_result, read_results
from advisor.cli import main
from advisor.data import scan
from advisor.profile import extract_features
from advisor.utils import OutputError

QUICK = ["--weights", "random", "--backbones", "resnet18", "--image-size", "32", "-q"]


def _invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


# --------------------------------------------------------------------------- feature cache


@pytest.mark.parametrize("damage", ["truncated", "other content", "another version", "another key"])
def test_a_damaged_feature_cache_entry_is_reported_and_recomputed(tiny_image_folder, tmp_path, caplog, damage):
    ds = scan(tiny_image_folder)
    bb = get_backbone("resnet18", weights=None)
    cache = tmp_path / "features"
    kwargs = dict(image_size=32, num_workers=0, cache_dir=cache, fingerprint=ds.fingerprint(), image_cache_dir="")
    good = extract_features(bb, ds.samples, **kwargs)
    (entry,) = cache.glob("*.npz")
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    elif damage == "other content":
        entry.write_text("not a cache entry")
    else:
        with np.load(entry) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arrays["meta"]).decode())
        meta["version" if damage == "another version" else "key"] = 0 if damage == "another version" else "x"
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with open(entry, "wb") as fh:
            np.savez(fh, **arrays)
    caplog.clear()
    again = extract_features(bb, ds.samples, **kwargs)
    assert again.cached is False  # recomputed, never trusted
    assert np.array_equal(again.embeddings, good.embeddings)
    (line,) = [line for line in caplog.messages if "feature cache" in line]
    assert str(entry) in line and "computing the features again" in line
    assert extract_features(bb, ds.samples, **kwargs).cached is True  # rewritten whole


def test_an_unwritable_feature_cache_costs_speed_not_the_run(tiny_image_folder, tmp_path, caplog):
    ds = scan(tiny_image_folder)
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    feats = extract_features(get_backbone("resnet18", weights=None), ds.samples, image_size=32, num_workers=0,
                             cache_dir=blocker / "features", fingerprint=ds.fingerprint(), image_cache_dir="")
    assert len(feats.labels) == 8
    assert "cannot write the feature cache" in caplog.text


# --------------------------------------------------------------------------- architecture facts


@pytest.mark.parametrize("content", ["{not json", '["a", "list"]', '{"version": 99, "facts": {}}',
                                     '{"version": 1, "facts": {"resnet18": ["torchvision", -1, 512, 224, true]}}'])
def test_a_damaged_backbone_facts_cache_is_reported_and_rebuilt(tmp_path, monkeypatch, caplog, content):
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path))
    backbones_mod._info_cache.cache_clear()
    path = backbones_mod._info_cache_file()
    path.parent.mkdir(parents=True)
    path.write_text(content)
    try:
        info = backbone_info("resnet18")
    finally:
        backbones_mod._info_cache.cache_clear()
    assert (info.embedding_dim, info.image_size, info.has_batchnorm) == (512, 224, True)
    assert info.num_params > 11_000_000
    line = next(line for line in caplog.messages if "backbone facts cache" in line)
    assert str(path) in line
    assert json.loads(path.read_text())["facts"]["resnet18"][2] == 512  # rebuilt whole


# --------------------------------------------------------------------------- results file


def _run(strategy: str, acc: float) -> RunResult:
    return RunResult(backbone="resnet18", strategy=strategy, seed=0, status="ok", accuracy=acc, key=strategy)


def test_a_corrupt_line_in_the_middle_keeps_every_good_line_and_is_reported(tmp_path, caplog):
    path = tmp_path / "runs.jsonl"
    append_result(path, _run("freeze", 0.8))
    with open(path, "ab") as fh:
        fh.write(b'{"this": "is not a run"}\n\xff\xfe garbage\n')
    append_result(path, _run("finetune", 0.9))
    path.write_bytes(path.read_bytes() + b'{"backbone": "resn')  # and a torn last line
    runs = read_results(path, report=True)
    assert [(r.strategy, r.accuracy) for r in runs] == [("freeze", 0.8), ("finetune", 0.9)]
    err = caplog.messages
    assert [line.split(", line ")[1].split(":")[0] for line in err] == ["2", "3", "5"]
    assert "not a run record" in err[0] and "cut short" in err[2] and str(path) in err[0]
    caplog.clear()
    assert read_results(path) == runs and caplog.messages == []  # quiet unless asked


def test_bench_names_a_corrupt_results_line_once_and_retrains_only_that_run(tiny_image_folder, tmp_path):
    out = tmp_path / "out"
    args = ["bench", str(tiny_image_folder), *QUICK, "--epochs", "1", "--strategies", "freeze,scratch",
            "--seeds", "2", "--batch-size", "4", "--json", "--out", str(out)]
    first = json.loads(_invoke(*args).stdout)
    results = out / "bench-tiny.runs.jsonl"
    lines = results.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4
    lines[1] = b'{"broken": tru\n'  # damaged in the middle
    results.write_bytes(b"".join(lines))
    again = _invoke(*args)
    named = [line for line in again.stderr.splitlines() if "line 2" in line]
    assert len(named) == 1 and "not a run record" in named[0] and str(results) in named[0]
    assert named[0].startswith("advisor: results file")  # the CLI shows the library's log, once
    doc = json.loads(again.stdout)
    assert sorted(r["trained"] for r in doc["runs"]) == [False, False, False, True]  # only the lost run
    assert sorted(r["accuracy"] for r in doc["runs"]) == sorted(r["accuracy"] for r in first["runs"])


def test_a_full_disk_keeps_finished_runs_and_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "runs.jsonl"
    append_result(path, _run("freeze", 0.8))
    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OutputError, match="No space left on device.*runs finished so far are in it"):
        append_result(path, _run("finetune", 0.9))
    monkeypatch.setattr(os, "write", real_write)
    assert [r.strategy for r in read_results(path)] == ["freeze"]


def test_a_results_file_that_is_a_folder_is_one_clear_line(tiny_image_folder, tmp_path):
    out = tmp_path / "out"
    (out / "bench-tiny.runs.jsonl").mkdir(parents=True)
    result = _invoke("bench", str(tiny_image_folder), *QUICK, "--epochs", "1", "--strategies", "freeze",
                     "--out", str(out))
    assert result.exit_code == 1 and "is a folder" in result.output and "bench-tiny.runs.jsonl" in result.output


# --------------------------------------------------------------------------- output folders


@pytest.mark.parametrize("command", ["recommend", "bench"])
def test_an_unusable_output_folder_stops_before_any_work(tiny_image_folder, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out, needle in ((blocker, "is a file, not a folder"), (Path("/proc/advisor-reports"), "cannot write")):
        result = _invoke(command, str(tiny_image_folder), *QUICK, "--epochs", "1", "--out", str(out)) \
            if command == "bench" else _invoke(command, str(tiny_image_folder), *QUICK, "--out", str(out))
        assert result.exit_code == 1
        (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert needle in line and str(out) in line and "--out" in line


# --------------------------------------------------------------------------- too little data


def _tiny(root: Path, per_class: int) -> Path:
    from PIL import Image

    for cls, colour in (("a", (200, 0, 0)), ("b", (0, 0, 200))):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((20, 20, 3), colour, np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_too_few_images_get_an_explicit_answer_not_a_guess(tmp_path):
    data = _tiny(tmp_path / "two", per_class=2)
    result = _invoke("recommend", str(data), *QUICK, "--no-cache", "--json", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0
    doc = json.loads(result.output)
    rec = doc["recommendation"]
    assert rec["strategy"] == "insufficient_data" and rec["confidence"] == 0
    assert "class 'a' has 2 images, needs 3" in rec["reasons"][0] and "needs at least 5" in rec["reasons"][0]
    assert Path(doc["report"]).is_file()
    bench = _invoke("bench", str(data), *QUICK, "--no-cache", "--epochs", "1", "--out", str(tmp_path / "r"))
    assert bench.exit_code == 1 and "Too few images" in bench.output
    assert not list((tmp_path / "r").glob("*.runs.jsonl")) or not (tmp_path / "r" / "bench-two.runs.jsonl").read_text()
    enough = _invoke("recommend", str(_tiny(tmp_path / "three", per_class=3)), *QUICK, "--no-cache", "--json",
                     "--out", str(tmp_path / "r"))
    assert json.loads(enough.output)["recommendation"]["strategy"] != "insufficient_data"


def test_two_reports_in_the_same_second_never_overwrite_each_other(tmp_path):
    from advisor.report import write_recommend_report

    result = {"kind": "recommend", "created": "2026-11-28T12:00:00", "dataset": {"path": "/data/pets"},
              "recommendation": {"strategy": "freeze"}, "backbones": []}
    first = write_recommend_report(result, tmp_path)
    second = write_recommend_report(result, tmp_path)
    assert first[0].name == "recommend-pets-20261128-120000.html"
    assert second[0].name == "recommend-pets-20261128-120000-2.html"
    assert json.loads(first[1].read_text())["report"] == str(first[0])
    assert json.loads(second[1].read_text())["report"] == str(second[0])
    named = write_recommend_report(result, tmp_path, name="mine")
    again = write_recommend_report(result, tmp_path, name="mine")  # an explicit name is the user's choice
    assert named == again
