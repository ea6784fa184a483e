"""Tests for advisor.utils: one file-name sanitiser and one byte formatter, whoever prints them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from advisor.caches import KINDS
from advisor.cli import main
from advisor.utils import human_bytes, safe_name


@pytest.mark.parametrize("nbytes, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 2**20, "3.0 MiB"),
                                          (5 * 2**40, "5120.0 GiB")])
def test_sizes_are_binary_units(nbytes, text):
    assert human_bytes(nbytes) == text


def test_cache_info_and_clear_print_one_size_alike(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path))
    folder = tmp_path / KINDS["features"][0]
    folder.mkdir()
    (folder / "x.npz").write_bytes(b"\0" * 1536)
    info = CliRunner().invoke(main, ["cache", "info"])
    cleared = CliRunner().invoke(main, ["cache", "clear", "features"])
    assert info.exit_code == 0 and cleared.exit_code == 0, info.output + cleared.output
    assert "total: 1.5 KiB;" in info.output
    assert cleared.output.startswith("freed 1.5 KiB in 1 files")
    assert not (folder / "x.npz").exists()


@pytest.mark.parametrize("text, name", [("Données été", "Donn_es_t"), ("日本/写真", "data"),
                                        ("my pets (v2)!", "my_pets_v2"), ("../..", "data"),
                                        ("caf\udce9.d", "caf_.d")])
def test_names_keep_ascii_letters_digits_dots_and_dashes_only(text, name):
    assert safe_name(text, default="data") == name
    assert name.isascii()
