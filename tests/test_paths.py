"""Tests for img2img.data.paths: containment through links and our leftover temp files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from img2img.data.io import atomic_path
from img2img.data.paths import (
    check_clear_of_inputs,
    is_temp_name,
    outside_reason,
    remove_stale_temps,
    temp_name,
)
from img2img.errors import UsageError


def test_outside_reason_follows_links_in_parents_and_in_the_file(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "real").mkdir(parents=True)
    elsewhere.mkdir()
    (out / "away").symlink_to(elsewhere)
    (out / "here").symlink_to(out / "real")
    (out / "file.png").symlink_to(elsewhere / "x.png")
    assert outside_reason(out / "real/new/a.png", out) is None
    assert outside_reason(out / "here/a.png", out) is None
    reason = outside_reason(out / "away/new/a.png", out)
    assert reason == (f"destination resolves outside the output folder: {out / 'away/new/a.png'}"
                      f" -> {elsewhere.resolve() / 'new/a.png'}")
    assert outside_reason(out / "file.png", out) is not None


def test_check_clear_of_inputs_names_the_problem(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "a.png").parent.mkdir()
    (src / "a.png").write_bytes(b"x")
    with pytest.raises(UsageError, match="refusing to write into an input folder: --out"):
        check_clear_of_inputs(src / "sub", [(src, "--input in")], flag="--out")
    link = tmp_path / "link"
    link.symlink_to(src)
    with pytest.raises(UsageError, match="input folder"):
        check_clear_of_inputs(link / "res", [(src, "--input in")])
    with pytest.raises(UsageError, match=f"refusing to overwrite input file {src / 'a.png'}"):
        check_clear_of_inputs(link, files=[src / "a.png"], destinations=[link / "a.png"])
    check_clear_of_inputs(tmp_path / "out", [(src, "--input in")], [src / "a.png"],
                          [tmp_path / "out" / "a.png"])


def test_temp_names_are_recognised_exactly() -> None:
    name = temp_name("a.b.png")
    assert name.startswith(".a.b.png.") and name.endswith(".tmp") and is_temp_name(name)
    for other in (".notes.tmp", ".a.png.0123ABCD.tmp", ".a.png.0123abc.tmp", "a.png.0123abcd.tmp",
                  ".a.png.0123abcd.tmp.bak", "..0123abcd.tmp"):
        assert not is_temp_name(other), other


def test_remove_stale_temps_keeps_links_targets_and_live_writers(tmp_path: Path) -> None:
    out, source = tmp_path / "out", tmp_path / "source.jpg"
    out.mkdir()
    source.write_bytes(b"source")
    (out / ".x.jpg.0123abcd.tmp").symlink_to(source)  # left by a killed link-mode build
    (out / ".y.png.0123abcd.tmp").mkdir()  # a folder with a temp-like name: not ours
    (out / ".z.png.89abcdef.tmp").write_bytes(b"partial")
    with atomic_path(out / "live.png") as live:
        assert remove_stale_temps(out) == 2
        assert live.exists()
    assert source.read_bytes() == b"source"
    assert sorted(os.listdir(out)) == [".y.png.0123abcd.tmp", "live.png"]
