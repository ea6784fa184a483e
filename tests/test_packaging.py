"""The release a user installs: one version, a licence and changelog, a wheel that works anywhere.

The slow tests build the sdist and the wheel with ``python -m build`` (the wheel from the sdist,
as pip does from an sdist), install the wheel into a throwaway venv and run ``advisor`` from a
folder outside the checkout. By default that venv reuses this interpreter's dependencies through
a ``.pth`` file, so torch is not copied again (seconds); with ``ADVISOR_TEST_INSTALL_DEPS=1``
(CI sets it) pip installs the wheel with its dependencies into an empty venv, as a user's
``pip install transfer-advisor`` does (a minute or two, most of it copying torch).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from click.testing import CliRunner

import advisor
from advisor.cli import main

REPO = Path(__file__).resolve().parents[1]
DIST_NAME = "transfer-advisor"
#: Files of the import package, as the wheel must hold them: code, templates, CSS, py.typed.
PACKAGE_FILES = sorted(
    p.relative_to(REPO).as_posix()
    for p in (REPO / "advisor").rglob("*")
    if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
)
INSTALL_DEPS = os.environ.get("ADVISOR_TEST_INSTALL_DEPS", "").strip().lower() in {"1", "true", "yes"}


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# --------------------------------------------------------------------------- fast


def test_version_has_one_source():
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "advisor.__version__"}
    assert project["project"]["name"] == DIST_NAME
    assert project["project"]["scripts"] == {"advisor": "advisor.cli:main"}


def test_import_and_help_do_not_load_torch():
    code = ("import sys, advisor, advisor.cli; from click.testing import CliRunner; "
            "CliRunner().invoke(advisor.cli.main, ['--help']); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_version_command_names_versions_and_device():
    from importlib import metadata

    import torch

    from advisor.runtime import resolve_device

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"advisor {advisor.__version__} (python ")
    assert f"torch {torch.__version__}" in lines[1]
    assert f"torchvision {metadata.version('torchvision')}" in lines[1]
    assert lines[2].split()[:2] == ["device:", resolve_device("auto").type]


def test_version_command_names_the_cuda_device(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    result = CliRunner().invoke(main, ["--version"])
    assert result.output.splitlines()[2] == "device: cuda (NVIDIA H200, 2 visible)"


def test_licence_and_changelog_ship_with_the_version():
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "advisor developers" in licence
    assert _pyproject()["project"]["license"] == "MIT"
    # Every release has its entry: bumping __version__ without one fails here.
    assert f"## [{advisor.__version__}]" in (REPO / "CHANGELOG.md").read_text()


# --------------------------------------------------------------------------- built release


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel, built from this checkout in an isolated build environment."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                          capture_output=True, text=True, cwd=out)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.mark.slow
def test_wheel_holds_the_package_data_and_metadata(dist):
    with zipfile.ZipFile(dist["wheel"]) as zf:
        names = set(zf.namelist())
        info = f"transfer_advisor-{advisor.__version__}.dist-info"
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert set(PACKAGE_FILES) <= names, sorted(set(PACKAGE_FILES) - names)
    assert {"advisor/py.typed", "advisor/templates/style.css", "advisor/bench/__init__.py"} <= names
    # Nothing but the package and its metadata: no tests, benchmarks or reports.
    assert {n.split("/")[0] for n in names} == {"advisor", info}
    assert f"{info}/licenses/LICENSE" in names
    assert meta["Name"] == DIST_NAME and meta["Version"] == advisor.__version__
    assert meta["Requires-Python"] == _pyproject()["project"]["requires-python"]
    assert meta["License-Expression"] == "MIT"
    assert "advisor = advisor.cli:main" in entry_points

    with tarfile.open(dist["sdist"]) as tf:
        root = f"transfer_advisor-{advisor.__version__}"
        members = {m.name.removeprefix(root + "/") for m in tf.getmembers()}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", *PACKAGE_FILES} <= members


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory):
    """A throwaway venv holding the installed wheel; removed afterwards (with its deps it weighs GBs)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    if INSTALL_DEPS:
        # --no-compile: byte-compiling all of torch would double the install time.
        subprocess.run([*pip, "install", "--quiet", "--no-compile", str(dist["wheel"])], check=True)
    else:
        subprocess.run([*pip, "install", "--quiet", "--no-deps", "--no-index", str(dist["wheel"])], check=True)
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        # Plain path lines, written after the install so that pip never sees this environment:
        # its packages come after the venv's own, and its .pth files (an editable install of the
        # checkout) are not run.
        deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
        Path(site, "_advisor_test_deps.pth").write_text("\n".join(deps) + "\n")
    yield venv
    shutil.rmtree(venv, ignore_errors=True)


@pytest.mark.slow
def test_installed_command_runs_outside_the_checkout(installed, tiny_image_folder, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["ADVISOR_OFFLINE"] = "1"

    def run(*args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, cwd=work, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    where = run(str(installed / "bin" / "python"), "-c", "import advisor; print(advisor.__file__)")
    assert Path(where.strip()).is_relative_to(installed)  # the wheel's files, not the checkout's

    advisor_cmd = str(installed / "bin" / "advisor")
    assert run(advisor_cmd, "--version").startswith(f"advisor {advisor.__version__} ")

    out = run(advisor_cmd, "recommend", str(tiny_image_folder), "--weights", "random", "--image-size", "32",
              "--per-class", "4", "--backbones", "resnet18", "--no-cache", "--json", "--out", "reports")
    result = json.loads(out)
    assert result["recommendation"]["strategy"] in {"freeze", "finetune", "not_worth_using"}
    html = (work / result["report"]).read_text()
    # The templates and the CSS came from the installed package data.
    css = (REPO / "advisor" / "templates" / "style.css").read_text().splitlines()[1].strip()
    assert css in html
    # The demo builds its data from what the installed packages ship (scikit-learn's digits) and
    # uses the bundled ImageNet weights: the quickest setting, still the whole pipeline.
    out = run(advisor_cmd, "demo", "--per-class", "10", "--epochs", "1", "--image-size", "32", "--profile-size", "64",
              "--out", "demo-reports", "-q")
    assert "index of reports" in out and (work / "demo-reports" / "index.html").is_file()
    (bench_json,) = (work / "demo-reports").glob("bench-*-*.json")
    runs = json.loads(bench_json.read_text())["runs"]
    assert sorted(r["strategy"] for r in runs) == ["finetune", "freeze", "scratch"]
    assert all(r["status"] == "ok" for r in runs)
