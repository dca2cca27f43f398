"""Start-up header check: sizes as the decoder gives them, its reasons for bad files, and
no pixel decoding for good ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from imgfactory import make_messy_tree, photo_like
from PIL import Image

from img2img.data import training_check as headers
from img2img.data.io import ImageReadError, read_image
from img2img.data.training_check import InputGeometry, describe_problems, image_size, scan_sizes


def test_sizes_and_reasons_match_the_decoder(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tree = make_messy_tree(tmp_path)
    decoded: list[str] = []

    def spy(path: Path) -> np.ndarray:
        decoded.append(Path(path).name)
        return read_image(path)

    monkeypatch.setattr(headers, "read_image", spy)
    for rel, sample in tree.items():
        try:
            want: object = read_image(sample.path).shape[:2]
        except ImageReadError as exc:
            want = exc.reason
        try:
            got: object = image_size(sample.path)
        except ImageReadError as exc:
            got = exc.reason
        if sample.kind == "corrupt_png":  # scrambled pixel data: only a decode can tell
            assert got == (37, 53), rel
            continue
        assert got == want, rel
    good = {s.path.name for s in tree.values() if s.ok}
    assert not good & set(decoded), "good files are read from their headers only"
    assert {"exif6.jpg", "exif8.png", "rgb16.TIFF", "photo.webp"} <= good  # orientation, deep


def test_truncated_files_with_intact_headers_are_caught(tmp_path: Path) -> None:
    """Cut to 3/4 (an interrupted copy): the header still says 80x64, the check does not."""
    for name in ("photo.png", "photo.jpg", "photo.tif", "photo.webp"):
        Image.fromarray(photo_like(64, 80, seed=1)).save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) * 3 // 4])
    sizes, bad = scan_sizes(sorted(tmp_path.glob("photo.*")))
    assert not sizes, sizes
    assert {p.name for p, _ in bad} == {"photo.png", "photo.jpg", "photo.tif", "photo.webp"}


def test_problem_list_is_capped() -> None:
    problems = [(Path(f"d/{i}.png"), "not an image file") for i in range(25)]
    text = describe_problems(problems, 100)
    lines = text.splitlines()
    assert lines[0] == "25 of 100 training images cannot be used (fix or remove them and " \
                       "start again):"
    assert len(lines) == 22 and lines[-1] == "  ... and 5 more"
    assert describe_problems(problems[:1], 100) == "d/0.png: not an image file"


def test_input_geometry_rounds_up_to_the_multiple() -> None:
    resnet, unet = InputGeometry(4, 8), InputGeometry(256, 1)
    assert resnet.problem((8, 11)) is None and resnet.problem((7, 100)) is not None
    assert unet.smallest == 256 and unet.cropped((300, 520)) == (256, 512)
    assert "minimum input 256x256" in unet.problem((255, 600))
