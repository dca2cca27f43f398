"""MATLAB-compatible bicubic resizing, checked against a direct numpy implementation."""

from __future__ import annotations

import numpy as np
import pytest

from img2img.data.resize import bicubic_resize, downscale, modcrop


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = a * (((x - 5) * x + 8) * x - 4)
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _weights(n_in: int, n_out: int) -> np.ndarray:
    """n_out x n_in resampling matrix the way MATLAB's imresize builds it.

    Sample i sits at input coordinate (i + 0.5) * n_in / n_out - 0.5; when shrinking the kernel
    is stretched by the scale factor (antialiasing); taps outside the image are mirrored
    (half-sample symmetric); each row is normalized to sum 1.
    """
    s = n_out / n_in
    k = min(s, 1.0)
    mat = np.zeros((n_out, n_in))
    for i in range(n_out):
        u = (i + 0.5) / s - 0.5
        first = int(np.floor(u - 2 / k))
        for j in range(first, first + int(np.ceil(4 / k)) + 2):
            src = j
            while not 0 <= src < n_in:
                src = -src - 1 if src < 0 else 2 * n_in - 1 - src
            mat[i, src] += k * _cubic(k * (u - j))
    return mat / mat.sum(axis=1, keepdims=True)


def _reference(img: np.ndarray, width: int, height: int) -> np.ndarray:
    wy, wx = _weights(img.shape[0], height), _weights(img.shape[1], width)
    return np.einsum("ij,jkc,lk->ilc", wy, img[:, :, None] if img.ndim == 2 else img, wx)


SIZES = [  # (H, W) -> (h, w): shrink, enlarge, mixed, non-integer ratios, to one pixel
    ((24, 20), (6, 5)),
    ((17, 23), (7, 9)),
    ((6, 5), (24, 20)),
    ((9, 13), (20, 7)),
    ((5, 3), (1, 1)),
    ((3, 2), (17, 9)),
]


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_matches_reference_float(src: tuple[int, int], dst: tuple[int, int]) -> None:
    img = np.random.default_rng(0).random((*src, 2)) * 255
    out = bicubic_resize(img, dst[1], dst[0])
    assert out.dtype == np.float64 and out.shape == (*dst, 2)
    np.testing.assert_allclose(out, _reference(img, dst[1], dst[0]), atol=1e-3)


def test_matches_reference_uint8_rounded() -> None:
    img = np.random.default_rng(1).integers(0, 256, (32, 28, 3), dtype=np.uint8)
    out = bicubic_resize(img, 7, 8)
    ref = np.clip(np.rint(_reference(img.astype(np.float64), 7, 8)), 0, 255)
    assert out.dtype == np.uint8 and out.shape == (8, 7, 3)
    assert np.abs(out.astype(int) - ref).max() <= 1  # float32 rounding may flip an exact .5
    assert np.mean(out == ref) > 0.99


def test_uint16_keeps_precision_and_clips() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 65536, (20, 16), dtype=np.uint16)
    out = bicubic_resize(img, 5, 4)
    assert out.dtype == np.uint16 and out.shape == (4, 5)
    ref = np.clip(np.rint(_reference(img.astype(np.float64), 5, 4)[:, :, 0]), 0, 65535)
    assert np.abs(out.astype(int) - ref).max() <= 1

    edge = np.zeros((4, 8), np.uint16)
    edge[:, 4:] = 65535
    up = bicubic_resize(edge, 32, 4)  # the cubic kernel overshoots at a step edge...
    assert up.max() == 65535 and up.min() == 0  # ...clipped for integers
    up_float = bicubic_resize(edge.astype(np.float32), 32, 4)
    assert up_float.dtype == np.float32 and up_float.max() > 65535  # ...kept for floats


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_constant_image_stays_constant(dtype: type) -> None:
    img = np.full((21, 18, 3), 200, dtype)
    for w, h in [(5, 7), (40, 33), (18, 9)]:
        out = bicubic_resize(img, w, h)
        assert out.dtype == dtype and out.shape == (h, w, 3)
        np.testing.assert_allclose(out, 200, rtol=1e-6)


def test_same_size_is_an_exact_copy() -> None:
    img = np.random.default_rng(3).random((6, 7))
    out = bicubic_resize(img, 7, 6)
    assert out is not img and np.array_equal(out, img)


def test_modcrop_and_downscale_sizes() -> None:
    img = np.arange(10 * 13 * 3, dtype=np.uint8).reshape(10, 13, 3)
    cropped = modcrop(img, 4)
    assert cropped.shape == (8, 12, 3)
    assert np.array_equal(cropped, img[:8, :12])  # top-left kept
    lr = downscale(img, 4)
    assert lr.shape == (2, 3, 3) and lr.dtype == np.uint8
    assert np.array_equal(lr, bicubic_resize(cropped, 3, 2))
    assert downscale(np.zeros((9, 9), np.uint16), 3).shape == (3, 3)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="smaller than the scale"):
        modcrop(np.zeros((3, 8), np.uint8), 4)
    with pytest.raises(ValueError, match="unsupported dtype"):
        bicubic_resize(np.zeros((4, 4), np.int32), 2, 2)
    with pytest.raises(ValueError, match="positive"):
        bicubic_resize(np.zeros((4, 4), np.uint8), 0, 2)
    with pytest.raises(ValueError, match="shape"):
        bicubic_resize(np.zeros((4,), np.uint8), 2, 2)
