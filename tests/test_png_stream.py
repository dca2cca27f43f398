"""PNG written band by band: exact round trip, bounded memory, never a partial file."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2img.data.png_stream import png_rows


def _image(h: int, w: int, c: int, dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    smooth = np.linspace(0, peak, w)[None, :, None] * np.ones((h, 1, c))
    noise = rng.integers(0, peak // 8, (h, w, c))
    return np.clip(smooth + noise, 0, peak).astype(dtype)


def _write(path: Path, img: np.ndarray, band: int) -> None:
    h, w, c = img.shape
    with png_rows(path, h, w, c, img.dtype) as sink:
        for y in range(0, h, band):
            sink.write(y, img[y : y + band])


@pytest.mark.parametrize(("channels", "mode8", "mode16"),
                         [(1, "L", "I;16"), (3, "RGB", None), (4, "RGBA", None)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_round_trip_through_pillow(tmp_path: Path, channels: int, mode8: str,
                                   mode16: str | None, dtype: type) -> None:
    img = _image(37, 53, channels, dtype)
    path = tmp_path / "x.png"
    _write(path, img, band=10)
    with Image.open(path) as im:
        im.load()
        if dtype is np.uint8:
            assert im.mode == mode8
            got = np.asarray(im)
        elif mode16:  # Pillow reads 16-bit gray; 16-bit RGB(A) it reduces, so compare via cv2
            got = np.asarray(im).astype(np.uint16)
        else:
            import cv2

            got = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            got = got[:, :, [2, 1, 0, 3][:channels]]
    assert np.array_equal(got.reshape(img.shape), img)


def test_gray_alpha_is_a_valid_png(tmp_path: Path) -> None:
    img = _image(9, 12, 2, np.uint8)
    _write(tmp_path / "la.png", img, band=4)
    with Image.open(tmp_path / "la.png") as im:
        assert im.mode == "LA"
        assert np.array_equal(np.asarray(im), img)


def test_memory_stays_near_one_band(tmp_path: Path) -> None:
    """A 3000x2000 RGB image (18 MB) written in 64-row bands never allocates near its size."""
    h, w = 3000, 2000
    band = _image(64, w, 3, np.uint8)
    tracemalloc.start()
    try:
        with png_rows(tmp_path / "big.png", h, w, 3) as sink:
            for y in range(0, h, 64):
                sink.write(y, band[: min(64, h - y)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < h * w * 3 / 4, f"peak {peak / 1e6:.1f} MB for a {h * w * 3 / 1e6:.0f} MB image"
    with Image.open(tmp_path / "big.png") as im:
        assert im.size == (w, h)
        assert np.array_equal(np.asarray(im)[64:128], band)


def test_errors_leave_no_file(tmp_path: Path) -> None:
    img = _image(20, 10, 3, np.uint8)
    target = tmp_path / "out.png"
    with pytest.raises(ValueError, match="in order"), png_rows(target, 20, 10, 3) as sink:
        sink.write(10, img[10:])
    with pytest.raises(ValueError, match="incomplete: 10 of 20"), \
            png_rows(target, 20, 10, 3) as sink:
        sink.write(0, img[:10])
    with pytest.raises(ValueError, match="do not fit"), png_rows(target, 20, 10, 3) as sink:
        sink.write(0, img[:, :5])
    assert list(tmp_path.iterdir()) == [], "no output and no temp file after a failure"
    target.write_bytes(b"old")
    with pytest.raises(ValueError), png_rows(target, 20, 10, 3) as sink:
        sink.write(0, img[:3])
    assert target.read_bytes() == b"old", "a failed write never touches an existing file"
