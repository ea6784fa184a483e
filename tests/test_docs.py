"""The README and docs/ say what the code does: the CLI reference is today's ``--help``, every
command the README shows parses, every relative link leads somewhere, and the README fits on a
screen (it is also the package index's page)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from advisor.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_LIMIT = 8 * 1024


def _make_cli():
    spec = importlib.util.spec_from_file_location("make_cli", ROOT / "docs" / "make_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_lines(text: str) -> list[str]:
    """The lines of the fenced code blocks of a Markdown text, comments stripped."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]


def _subcommand(words: list[str]) -> tuple[click.Command, int]:
    """The command that ``advisor WORDS...`` runs (``weights import``), and how many words name it."""
    command: click.Command = main
    used = 0
    while isinstance(command, click.Group) and used < len(words) and words[used] in command.commands:
        command = command.commands[words[used]]
        used += 1
    return command, used


def test_the_cli_reference_is_todays_help():
    make_cli = _make_cli()
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == make_cli.render(), (
        f"docs/cli.md is out of date: run {make_cli.COMMAND}")


def test_the_cli_reference_is_what_a_terminal_shows():
    # The reference renders the help in-process; a real `advisor bench --help` must print the same.
    out = subprocess.run(
        [sys.executable, "-c", "from advisor.cli import main; main(prog_name='advisor')", "bench", "--help"],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "COLUMNS": "200",
             "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)},
    ).stdout
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert f"## `advisor bench`\n\n```text\n{out.rstrip()}\n```" in reference


def test_every_command_has_a_section_in_the_reference():
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## `(advisor[^`]*)`$", reference, flags=re.M))
    assert {"advisor", "advisor recommend", "advisor bench", "advisor demo", "advisor backbones",
            "advisor weights import", "advisor cache info"} <= sections


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_advisor_command_shown_exists_with_its_options(path):
    # `advisor ...` as users type it, `.venv/bin/advisor ...` as `make demo` echoes it.
    shown = [line for line in _code_lines(path.read_text(encoding="utf-8"))
             if re.match(r"(\.venv/bin/)?advisor ", line)]
    if path == README:
        assert len(shown) >= 5, "the README shows how to use the command line"
    for line in shown:
        words = shlex.split(line)[1:]
        command, used = _subcommand(words)
        assert used or words[0].startswith("-"), f"{path.name}: `{line}`: advisor has no command {words[0]!r}"
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        options |= {"-h", "--help"}
        for word in words[used:]:
            if word.startswith("--") or re.fullmatch(r"-[a-z]", word):
                assert word.split("=")[0] in options, f"{path.name}: `{line}`: {word} is not an option of {command.name}"


def test_the_readme_keeps_the_two_commands_ci_and_users_run():
    readme = README.read_text(encoding="utf-8")
    lines = _code_lines(readme)
    assert "make demo" in lines and "make test" in lines
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    # .ci/run calls the README's test command.
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_readme_fits_on_a_screen():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail into docs/ (limit {README_LIMIT})"


@pytest.mark.parametrize("path", [README, ROOT / "CONTRIBUTING.md", *DOCS], ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file(path):
    text = path.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not re.match(r"[a-z]+:|#", link)]
    missing = [link for link in relative if not (path.parent / link.split("#")[0]).exists()]
    assert not missing, f"{path.name} links to missing files: {missing}"
