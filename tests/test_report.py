"""Reports: self-contained HTML, escaped user data, JSON twins, atomic writes, the index."""

from __future__ import annotations

import copy
import json
import math
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from advisor import report

EVIL = "<script>alert(1)</script>"


def _images(tmp_path: Path) -> dict[str, list[str]]:
    root = tmp_path / "pets"
    paths = {}
    for i, (cls, colour) in enumerate([("cat", "orange"), ("dog", "brown"), (EVIL, "purple")]):
        (root / f"c{i}").mkdir(parents=True, exist_ok=True)
        p = root / f"c{i}" / "a.png"
        Image.new("RGB", (40, 30), colour).save(p)
        paths[cls] = [str(p)]
    paths["cat"].append(str(root / "c0" / "missing.png"))  # must be skipped, not crash
    return paths


def recommend_result(tmp_path: Path) -> dict:
    counts = {"cat": 120, "dog": 95, EVIL: 40, "cost $^{$": 12}
    backbone = {
        "name": "resnet50", "weights": "imagenet", "n_sample": 256, "similarity": 0.71,
        "signals": {"bn_divergence": 0.42, "max_softmax": 0.63, "entropy": 2.1, "energy": -9.4},
        "signal_scores": {"bn_divergence": 0.66, "max_softmax": 0.72, "entropy": 0.58, "energy": 0.8},
        "stage_divergence": {"stage1": 0.1, "stage2": 0.18, "stage3": 0.31, "stage4": 0.55},
        "transferability": {"linear_probe": 0.91, "knn_probe": 0.86, "pixel_linear_probe": 0.41,
                            "pixel_knn_probe": 0.37, "chance": 0.25, "logme": 1.23, "leep": -0.81,
                            "nce": -0.9, "hscore": 3.4},
        "learning_curve": [{"fraction": f, "n": int(200 * f), "images_per_class": 100 * f, "accuracy": a}
                           for f, a in [(0.25, 0.7), (0.5, 0.82), (1.0, 0.91)]],
        "seconds": 12.5, "images_per_second": 20.48,
    }
    vgg = copy.deepcopy(backbone) | {"name": "vgg16", "similarity": 0.55, "stage_divergence": {},
                                     "signals": {"bn_divergence": None, "max_softmax": 0.5}}
    vgg["transferability"]["linear_probe"] = 0.84
    vgg["learning_curve"] = [p | {"accuracy": p["accuracy"] - 0.08} for p in vgg["learning_curve"]]
    return {
        "kind": "recommend",
        "created": "2026-11-27T23:59:00",
        "dataset": {
            "path": str(tmp_path / "pets"), "layout": "flat", "n_images": 267, "n_classes": 4,
            "class_counts": counts, "splits": {},
            "per_class": {"min": 12, "median": 67.5, "max": 120}, "imbalance_ratio": 10.0,
            "skipped": [{"path": f"bad{i}.jpg", "reason": "truncated"} for i in range(53)],
            "empty_classes": [],
            "image_stats": {"n_sampled": 100, "width": {"min": 40, "median": 320, "max": 1024},
                            "height": {"min": 30, "median": 240, "max": 768},
                            "modes": {"RGB": 97, "L": 3}, "formats": {"PNG": 60, "JPEG": 40}},
            "thumbnails": _images(tmp_path),
        },
        "backbones": [backbone, vgg],
        "recommendation": {
            "strategy": "freeze", "case": "enough data, similar to ImageNet", "backbone": "resnet50",
            "confidence": 0.82, "reasons": ["67 images per class is above the threshold of 50", EVIL],
            "axes": {"size": {"value": 67.5, "threshold": 50, "enough": True, "label": "images per class"},
                     "similarity": {"value": 0.71, "threshold": 0.5, "similar": True, "label": "similarity"}},
            "ranking": [{"backbone": "resnet50", "score": 0.8, "linear_probe": 0.91},
                        {"backbone": "vgg16", "score": 0.6, "linear_probe": 0.84}],
            "settings": {"strategy": "freeze", "head_lr": 1e-3, "backbone_lr": None, "epochs": 10,
                         "image_size": 224, "batch_size": 32},
        },
        "reproduction": {"versions": {"advisor": "0.1.0", "torch": "2.14.1", "python": "3.12.1"},
                         "device": "cpu", "seed": 0, "options": {"sample": 256, "backbones": ["resnet50"]},
                         "seconds": 75.2, "command": "advisor recommend pets --seed 0"},
    }


def bench_result(tmp_path: Path) -> dict:
    runs = []
    for backbone in ("resnet50", "vgg16"):
        for strategy, base, seconds in (("freeze", 0.85, 20.0), ("finetune", 0.9, 200.0), ("scratch", 0.5, 150.0)):
            for seed in (0, 1):
                acc = base - 0.03 * (backbone == "vgg16") + 0.01 * seed
                runs.append({
                    "backbone": backbone, "strategy": strategy, "seed": seed, "status": "ok", "error": None,
                    "accuracy": acc, "macro_f1": acc - 0.02, "train_seconds": seconds,
                    "images_per_second": 300.0, "peak_memory_mb": 1800.0, "epochs_to_90": 3,
                    "epochs_run": 3, "best_epoch": 2, "converged": strategy != "scratch",
                    "curve": [{"epoch": e, "train_loss": 1.0 / e, "selection_accuracy": acc * e / 3,
                               "accuracy": None} for e in (1, 2, 3)],
                    "recipe": {"lr_head": 1e-3, "lr_backbone": None if strategy == "freeze" else 1e-4,
                               "epochs": 3, "augment": "flip", "optimizer": "adamw"},
                })
    runs.append({"backbone": "vgg16", "strategy": "partial", "seed": 0, "status": "failed",
                 "error": f"CUDA out of memory {EVIL}", "accuracy": None, "curve": [], "recipe": {}})
    summary = []
    for b in ("resnet50", "vgg16"):
        for s in ("freeze", "finetune", "scratch"):
            accs = [r["accuracy"] for r in runs if (r["backbone"], r["strategy"]) == (b, s)]
            mean = sum(accs) / len(accs)
            summary.append({"backbone": b, "strategy": s, "n_seeds": len(accs), "mean_accuracy": mean,
                            "std_accuracy": 0.007, "mean_f1": mean - 0.02,
                            "mean_seconds": next(r["train_seconds"] for r in runs if r["backbone"] == b
                                                 and r["strategy"] == s) * (1.6 if b == "vgg16" else 1)})
    return {
        "kind": "bench", "created": "2026-11-28T01:30:00",
        "dataset": {"path": str(tmp_path / "pets"), "n_images": 267, "n_classes": 3,
                    "class_counts": {"cat": 120, "dog": 95, EVIL: 40}},
        "protocol": {"split": {"fit": "train (the rest)", "select": "carved from train: stratified 20 %, seeded",
                               "report": "held out: stratified 20 %, seeded"},
                     "selected_on": "carved from train: stratified 20 %, seeded",
                     "reported_on": "held out: stratified 20 %, seeded", "n_fit": 170, "n_select": 43,
                     "n_report": 54, "epochs": "auto", "budget": "auto: early stopping", "precision": "bf16",
                     "image_size": 224, "batch_size": 32, "seeds": [0, 1], "margin": 0.02, "tune": False},
        "runs": runs, "summary": summary,
        "winner": {"backbone": "resnet50", "strategy": "finetune", "verdict": "finetune",
                   "rule": "fine-tuning beats freezing by more than the 2-point margin", "accuracy": 0.905},
        "recommendation": recommend_result(tmp_path)["recommendation"],
        "agreement": False,
        "rank_correlation": {"metric": [{"metric": "logme", "weighted_tau": 0.8},
                                        {"metric": "linear_probe", "weighted_tau": 1.0}]},
        "reproduction": {"versions": {"advisor": "0.1.0"}, "device": "cuda", "seed": 0,
                         "options": {}, "seconds": 1234.0, "command": "advisor bench pets"},
    }


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _parse(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Collector()
    parser.feed(html)
    parser.close()
    return parser.tags


def _assert_self_contained(html: str, *, has_evil_class: bool = True) -> list[tuple[str, dict[str, str]]]:
    tags = _parse(html)
    for tag, attrs in tags:
        for name, value in attrs.items():
            v = value.strip().lower()
            assert not v.startswith(("http://", "https://", "//")), (tag, name, value[:80])
        if tag == "img":
            assert attrs["src"].startswith("data:image/"), attrs["src"][:40]
    assert not any(tag in ("script", "link", "iframe") for tag, _ in tags)
    assert "@import" not in html and "url(" not in html
    assert EVIL not in html
    assert ("&lt;script&gt;alert(1)&lt;/script&gt;" in html) == has_evil_class
    return tags


def test_reports_are_self_contained_escaped_and_twinned(tmp_path):
    rec, bench = recommend_result(tmp_path), bench_result(tmp_path)
    out = tmp_path / "reports"
    html_r, json_r = report.write_recommend_report(rec, out)
    html_b, json_b = report.write_bench_report(bench, out)

    assert html_r.name == "recommend-pets-20261127-235900.html"
    assert json_r.name == "recommend-pets-20261127-235900.json"
    assert html_b.name == "bench-pets-20261128-013000.html"
    assert json.loads(json_r.read_text()) == rec | {"report": str(html_r)}
    if os.name == "posix":  # readable by a web server, not temp-file private
        assert html_r.stat().st_mode & 0o777 == 0o644
    assert json.loads(json_b.read_text()) == bench | {"report": str(html_b)}

    tags = _assert_self_contained(html_r.read_text())
    thumbs = [a for t, a in tags if t == "img" and "thumb" in a.get("class", "")]
    assert len(thumbs) == 3  # three readable PNGs; the missing path is skipped
    assert all(a["src"].startswith("data:image/jpeg;base64,") for a in thumbs)
    figures = [a for t, a in tags if t == "img" and a["src"].startswith("data:image/png;base64,")]
    assert len(figures) == 4  # decision grid, class counts, stage divergence, learning curve
    text = html_r.read_text()
    assert "vgg16 has no BatchNorm layers" in text
    assert "and 3 more" in text  # 53 skipped files, 50 listed
    assert "82%" in text and "91.0%" in text and "+50.0 pts" in text

    tags = _assert_self_contained(html_b.read_text())
    assert sum(1 for t, a in tags if t == "img") == 3  # accuracy, curves, cost
    text = html_b.read_text()
    assert "✗ The advice disagrees" in text and "CUDA out of memory" in text


def _curve_runs(points: dict[str, list[tuple[float, float]]]) -> list[dict]:
    return [{"backbone": "resnet50", "strategy": s, "images_per_class": n, "accuracy": a, "seed": 0}
            for s, pts in points.items() for n, a in pts]


def test_learning_curves_show_their_measured_points_when_no_law_can_be_trusted(tmp_path):
    """Every curve unfitted (two sizes each), or every fit withheld (a step at the exponent's
    bound; three sizes for three parameters): the figure still draws what was measured, and the
    table says why nothing is predicted instead of showing predictions."""
    from advisor.curves import curves_from_runs

    unfitted = curves_from_runs(_curve_runs({"freeze": [(24, 0.86), (48.5, 0.89)],
                                             "finetune": [(24, 0.80), (48.5, 0.88)]}), margin=0.02, n_val=150)
    withheld = curves_from_runs(_curve_runs({"freeze": [(12, 0.70), (24, 0.876), (48.5, 0.895), (97.5, 0.876)],
                                             "finetune": [(24, 0.80), (48.5, 0.85), (97.5, 0.889)]}),
                                margin=0.02, n_val=150)
    assert {c["status"] for c in unfitted["curves"]} == {"unfitted"}
    assert {c["status"] for c in withheld["curves"]} == {"withheld"}
    for block, why in ((unfitted, "2 sizes measured: a law needs 3 or more"),
                       (withheld, "exponent at its bound b = 4, a step rather than a trend")):
        html = report.render_bench_html(bench_result(tmp_path) | {"data_size": block})
        tags = _assert_self_contained(html)
        assert sum(1 for t, a in tags if t == "img") == 4  # accuracy, curves, cost and the learning curves
        assert 'id="data-size"' in html and why in html
        assert "Dashed: extrapolation" not in html  # nothing extrapolated, so no legend for it
        assert len(report._learning_curves_pngs(block)) == 1
    # A document written before curves had a status: its fit alone says it was fitted.
    fitted = curves_from_runs(_curve_runs({"freeze": [(n, 0.9 - 0.5 * n**-0.5) for n in (10, 20, 40, 80)]}),
                              margin=0.02, n_val=2000)
    old = {"curves": [{k: v for k, v in c.items() if k not in ("status", "reason")} for c in fitted["curves"]]}
    assert [r["fitted"] for r in report._data_size_rows(old)] == [True]
    assert "Dashed: extrapolation" in report.render_bench_html(bench_result(tmp_path) | {"data_size": fitted})


def test_index_lists_reports_newest_first_with_relative_links(tmp_path):
    out = tmp_path / "reports"
    html_r, _ = report.write_recommend_report(recommend_result(tmp_path), out)
    html_b, _ = report.write_bench_report(bench_result(tmp_path), out)
    (out / "notes.json").write_text('{"not": "a report"}')
    (out / "broken.json").write_text("{")

    index = report.write_index(out)
    links = [a["href"] for t, a in _parse(index.read_text()) if t == "a"]
    assert links == [html_b.name, html_r.name]  # bench was created later
    assert all((out / link).is_file() for link in links)
    _assert_self_contained(index.read_text(), has_evil_class=False)


def test_failed_render_keeps_the_previous_report(tmp_path, monkeypatch):
    rec = recommend_result(tmp_path)
    out = tmp_path / "reports"
    html_path, json_path = report.write_recommend_report(rec, out, name="same")
    before = html_path.read_bytes(), json_path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("renderer broke midway")

    monkeypatch.setitem(report._environment().filters, "pct", broken)
    changed = rec | {"created": "2027-01-01T00:00:00"}
    with pytest.raises(RuntimeError, match="midway"):
        report.write_recommend_report(changed, out, name="same")

    assert (html_path.read_bytes(), json_path.read_bytes()) == before
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "same.html", "same.json"]


def test_minimal_results_render(tmp_path):
    rec = {"kind": "recommend", "dataset": {"path": "/data/x"}, "recommendation": {"strategy": "not_worth_using"}}
    html = report.render_recommend_html(rec)
    assert "Not worth using" in html and "/data/x" in html
    assert report.render_bench_html({"kind": "bench"})
    assert report.render_recommend_html({})
    html_path, json_path = report.write_recommend_report(rec, tmp_path)
    assert html_path.name.startswith("recommend-x-") and json.loads(json_path.read_text())["report"]


def test_many_classes_are_cut_to_forty_bars():
    names = [f"class_with_a_rather_long_shared_prefix_{i:03d}" for i in range(65)]
    train = {c: 10 + i for i, c in enumerate(names)}
    rec = {"kind": "recommend", "recommendation": {"strategy": "finetune"},
           "dataset": {"path": "d", "class_counts": {c: n + 2 for c, n in train.items()},
                       "splits": {"train": train, "val": {c: 2 for c in names}}}}
    html = report.render_recommend_html(rec)
    assert "and 25 more classes not shown" in html
    assert sum(1 for t, a in _parse(html) if t == "img") == 1


def test_nan_and_infinity_become_null_in_the_json_twin(tmp_path):
    rec = {"kind": "recommend", "dataset": {"path": "d"},
           "recommendation": {"strategy": "finetune", "confidence": math.nan,
                              "axes": {"size": {"value": math.inf, "threshold": 50}}}}
    _, json_path = report.write_recommend_report(rec, tmp_path)
    twin = json.loads(json_path.read_text())
    assert twin["recommendation"]["confidence"] is None
    assert twin["recommendation"]["axes"]["size"]["value"] is None
    assert "NaN" not in json_path.read_text()


def test_file_names_are_sanitised(tmp_path):
    rec = {"kind": "recommend", "created": "2026-01-02T03:04:05",
           "dataset": {"path": "/data/my pets (v2)!/"}, "recommendation": {"strategy": "freeze"}}
    html_path, _ = report.write_recommend_report(rec, tmp_path)
    assert html_path.name == "recommend-my_pets_v2_-20260102-030405.html"
    html_path, _ = report.write_recommend_report(rec, tmp_path, name="../../evil name")
    assert html_path.parent == tmp_path and html_path.name == "evil_name.html"


@pytest.mark.parametrize(
    ("fn", "value", "expected"),
    [
        (report.fmt_pct, 0.9234, "92.3%"),
        (report.fmt_pct, None, "—"),
        (report.fmt_pct, math.nan, "—"),
        (report.fmt_num, 0.012345, "0.0123"),
        (report.fmt_num, 1e-5, "1e-5"),
        (report.fmt_num, 12345.6, "12,346"),
        (report.fmt_num, 3, "3"),
        (report.fmt_seconds, 12.34, "12.3 s"),
        (report.fmt_seconds, 252, "4 min 12 s"),
        (report.fmt_seconds, 3720, "1 h 02 min"),
    ],
)
def test_number_formatting(fn, value, expected):
    assert fn(value) == expected


def test_pareto_front_keeps_only_undominated_points():
    points = [(20.0, 0.85), (200.0, 0.9), (150.0, 0.5), (30.0, 0.8), (300.0, 0.9)]
    assert report._pareto_front(points) == [(20.0, 0.85), (200.0, 0.9)]
