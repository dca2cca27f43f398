"""Bundled generators (package data in ``img2img/models``), found by name.

``img2img translate --checkpoint sr_x4_naip`` runs the bundled x4 model from any folder; an
existing file of that name wins; an unknown bare name is a one-line usage error (exit 2)
that lists the bundled names.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like

from img2img.checkpoint import meta_for, save_generator
from img2img.cli import translate_main
from img2img.data.io import read_image, write_image
from img2img.inference.bundled import (
    bundled_lines,
    bundled_names,
    bundled_path,
    is_bare_name,
    resolve_checkpoint,
)
from img2img.nn import build_generator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAME = "sr_x4_naip"


def _translate(capsys: pytest.CaptureFixture[str], checkpoint: object, src: Path, out: Path
               ) -> tuple[int, str, str]:
    code = translate_main(["--checkpoint", str(checkpoint), "--input", str(src), "--output",
                           str(out), "--device", "cpu", "--quiet"])
    got_out, got_err = capsys.readouterr()
    return code, got_out, got_err


@pytest.fixture()
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder outside the checkout, holding one 16x16 RGB PNG in ``in/``."""
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "in" / "tiny.png", photo_like(16, 16, seed=3))
    return tmp_path


def test_the_name_is_the_package_file() -> None:
    assert NAME in bundled_names()
    path = resolve_checkpoint(NAME)
    assert path == Path(str(resources.files("img2img.models") / f"{NAME}.safetensors"))
    assert path.is_file() and path.stat().st_size > 500_000  # the weights, not a link text
    assert bundled_path(NAME) == path


def test_translate_by_name_upscales_16_to_64(elsewhere: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _translate(capsys, NAME, elsewhere / "in", elsewhere / "out")
    assert code == 0, err
    by_name = read_image(elsewhere / "out" / "tiny.png")
    assert by_name.shape == (64, 64, 3) and by_name.dtype == np.uint8
    assert by_name.std() > 5  # an image, not a blank
    # the path form gives the same pixels
    code, _, err = _translate(capsys, bundled_path(NAME), elsewhere / "in", elsewhere / "out2")
    assert code == 0, err
    assert np.array_equal(read_image(elsewhere / "out2" / "tiny.png"), by_name)


def test_an_existing_file_of_that_name_wins(elsewhere: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    kwargs = {"ngf": 8}
    net = build_generator("resnet_6blocks", **kwargs).eval()
    save_generator(elsewhere / NAME, net, meta_for(net, "resnet_6blocks", kwargs, "cyclegan"))
    assert resolve_checkpoint(NAME) == Path(NAME)
    code, _, err = _translate(capsys, NAME, elsewhere / "in", elsewhere / "out")
    assert code == 0, err
    assert read_image(elsewhere / "out" / "tiny.png").shape == (16, 16, 3)  # x1: the local file


def test_a_folder_of_that_name_does_not_hide_the_bundled_model(elsewhere: Path) -> None:
    (elsewhere / NAME).mkdir()  # e.g. an earlier --output sr_x4_naip
    assert resolve_checkpoint(NAME) == bundled_path(NAME)


@pytest.mark.parametrize("spec", ["sr_x4_nap", "horse2zebra"])
def test_an_unknown_name_is_one_line_exit_2(spec: str, elsewhere: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _translate(capsys, spec, elsewhere / "in", elsewhere / "out")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert spec in lines[0] and "img2img models" in lines[0]
    if spec == "horse2zebra":  # a published model: how to get it
        assert "img2img models fetch horse2zebra" in lines[0]
    else:
        assert f"bundled: {NAME}" in lines[0]
    assert not (elsewhere / "out").exists()


def test_a_missing_path_is_still_a_missing_file(elsewhere: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    for spec in (f"{NAME}.safetensors", f"models/{NAME}"):  # a suffix or a folder: a path
        assert not is_bare_name(spec)
        code, _, err = _translate(capsys, spec, elsewhere / "in", elsewhere / "out")
        assert code == 2 and "checkpoint file not found" in err and spec in err


def test_names_cannot_leave_the_package_folder() -> None:
    for spec in ("../README", "..", ".", "", "models/x"):
        assert not is_bare_name(spec)
    with pytest.raises(ValueError, match="nor a bundled model"):
        bundled_path("..")


def test_listing_shows_the_bundled_model() -> None:
    lines = bundled_lines()
    assert "img2img translate --checkpoint NAME" in lines[0]
    (row,) = [line for line in lines[1:] if line.split()[0] == NAME]
    assert row.split()[1:4] == ["srresnet", "srgan", "x4"]
