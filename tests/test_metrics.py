"""PSNR/SSIM metrics, the SR evaluation protocol and tools/evaluate.py."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from imgfactory import photo_like

from img2img.data.io import write_image
from img2img.metrics import evaluate_pair, psnr, rgb_to_y, ssim

ROOT = Path(__file__).resolve().parents[1]


def _evaluate_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_tool_evaluate", ROOT / "tools" / "evaluate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Wang et al.'s SSIM written out: 11x11 Gaussian (sigma 1.5), 'valid' windows only."""
    r = np.arange(11) - 5
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x, y = x.astype(np.float64), y.astype(np.float64)
    h, w = x.shape[0] - 10, x.shape[1] - 10
    values = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            mx, my = (g * px).sum(), (g * py).sum()
            vx, vy = (g * px * px).sum() - mx * mx, (g * py * py).sum() - my * my
            cxy = (g * px * py).sum() - mx * my
            values[i, j] = ((2 * mx * my + c1) * (2 * cxy + c2)
                            / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return float(values.mean())


# --------------------------------------------------------------------------- PSNR


def test_psnr_hand_computed() -> None:
    ref = np.full((8, 8, 3), 100, np.uint8)
    assert psnr(ref + 5, ref, 255) == pytest.approx(10 * math.log10(255**2 / 25))
    half = ref.copy()
    half[:4] += 10  # MSE = 100 / 2
    assert psnr(half, ref, 255) == pytest.approx(10 * math.log10(255**2 / 50))
    # no uint8 wrap-around: 0 - 10 is -10, not 246
    assert psnr(np.zeros((2, 2), np.uint8), np.full((2, 2), 10, np.uint8), 255) == pytest.approx(
        10 * math.log10(255**2 / 100))
    ref16 = np.full((4, 4), 30000, np.uint16)
    assert psnr(ref16 + 257, ref16, 65535) == pytest.approx(10 * math.log10(65535**2 / 257**2))
    assert psnr(ref, ref, 255) == math.inf


# --------------------------------------------------------------------------- SSIM


def test_ssim_identical_is_one_and_drops_with_noise() -> None:
    img = photo_like(32, 40, seed=3)
    assert ssim(img, img, 255) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (2, 8, 30):
        noisy = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
        scores.append(ssim(noisy, img, 255))
    assert 1 > scores[0] > scores[1] > scores[2]


def test_ssim_matches_reference() -> None:
    rng = np.random.default_rng(1)
    ref = photo_like(19, 23, seed=4, channels=1)[:, :, 0]
    pred = np.clip(ref + rng.normal(0, 12, ref.shape), 0, 255).round()
    assert ssim(pred, ref, 255) == pytest.approx(_ssim_reference(pred, ref, 255), abs=1e-4)
    # RGB: the mean over channels
    rgb_ref = photo_like(14, 15, seed=5)
    rgb_pred = np.clip(rgb_ref + rng.normal(0, 20, rgb_ref.shape), 0, 255)
    expected = np.mean([_ssim_reference(rgb_pred[..., c], rgb_ref[..., c], 255) for c in range(3)])
    assert ssim(rgb_pred, rgb_ref, 255) == pytest.approx(expected, abs=1e-4)


def test_ssim_needs_a_window() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((10, 30)), np.zeros((10, 30)), 1.0)


# --------------------------------------------------------------------------- Y and protocol


def test_rgb_to_y_white_black() -> None:
    img = np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8)
    np.testing.assert_allclose(rgb_to_y(img, 255), [[235, 16]], atol=1e-9)
    img16 = np.array([[[65535] * 3, [0] * 3]], np.uint16)
    np.testing.assert_allclose(rgb_to_y(img16, 65535), [[235 * 257, 16 * 257]], atol=1e-6)
    assert rgb_to_y(img, 255).dtype == np.float64


def test_y_channel_rounding_gray_and_alpha() -> None:
    ref = photo_like(16, 16, seed=6)
    pred = ref.copy()
    pred[..., 2] = np.clip(pred[..., 2].astype(int) + 1, 0, 255)  # +1 blue: Y moves < 0.1
    assert evaluate_pair(pred, ref, y_channel=True)["psnr"] > 40
    plain = evaluate_pair(pred, ref, y_channel=True, round_y=False)
    assert plain["psnr"] > evaluate_pair(pred, ref)["psnr"]

    gray = photo_like(16, 16, seed=7, channels=1)
    assert evaluate_pair(gray, gray, y_channel=True)["psnr"] == math.inf
    rgba, rgba2 = np.dstack([ref, np.full((16, 16), 255, np.uint8)]), ref.copy()
    rgba2 = np.dstack([rgba2, np.zeros((16, 16), np.uint8)])  # only alpha differs
    assert evaluate_pair(rgba, rgba2, y_channel=True)["psnr"] == math.inf
    assert evaluate_pair(rgba, rgba2)["psnr"] < 10


def test_crop_border() -> None:
    ref = photo_like(24, 30, seed=8)
    pred = ref.copy()
    pred[:3] = 0
    pred[:, -3:] = 255
    assert evaluate_pair(pred, ref)["psnr"] < 20
    scores = evaluate_pair(pred, ref, crop_border=3)
    assert scores == {"psnr": math.inf, "ssim": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="leaves nothing"):
        evaluate_pair(pred, ref, crop_border=12)


def test_errors_name_sizes_and_types() -> None:
    a, b = np.zeros((16, 20, 3), np.uint8), np.zeros((17, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="prediction 20x16x3, reference 20x17x3"):
        evaluate_pair(a, b)
    with pytest.raises(ValueError, match="uint8.*uint16"):
        evaluate_pair(a, a.astype(np.uint16))
    with pytest.raises(ValueError, match="data_range"):
        evaluate_pair(a.astype(np.float32), a.astype(np.float32))
    f = photo_like(16, 16, seed=9).astype(np.float32) / 255
    assert evaluate_pair(f, f * 0.9, data_range=1.0)["psnr"] == pytest.approx(
        psnr(f, f * 0.9, 1.0))


# --------------------------------------------------------------------------- CLI


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    (pred / "sub").mkdir(parents=True)
    (ref / "sub").mkdir(parents=True)
    a = photo_like(20, 24, seed=10)
    b = photo_like(20, 24, seed=11, channels=1)
    write_image(ref / "a.png", a)
    write_image(pred / "a.bmp", np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8))
    write_image(ref / "sub" / "b.tif", b)
    write_image(pred / "sub" / "b.png", b)
    return pred, ref


def test_cli_clean_pair(folders: tuple[Path, Path], tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    pred, ref = folders
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert _evaluate_tool().main(["--pred", str(pred), "--ref", str(ref)]) == 0
    out = capsys.readouterr().out
    assert "a " in out and "sub/b" in out and "inf" in out and "mean (2 images)" in out
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no files

    out_json = tmp_path / "m.json"
    assert _evaluate_tool().main(["--pred", str(pred), "--ref", str(ref), "--json", str(out_json),
                                  "--crop-border", "2", "--quiet"]) == 0
    quiet = capsys.readouterr().out.splitlines()
    assert len(quiet) == 2 and quiet[0].startswith("mean (2 images)")
    data = json.loads(out_json.read_text())
    assert [r["name"] for r in data["images"]] == ["a", "sub/b"]
    a = evaluate_pair(np.clip(photo_like(20, 24, seed=10).astype(int) + 5, 0, 255).astype(np.uint8),
                      photo_like(20, 24, seed=10), crop_border=2)
    assert data["images"][0]["psnr"] == pytest.approx(a["psnr"])
    assert data["images"][1]["psnr"] == "inf" and data["mean"]["psnr"] == "inf"
    assert data["mean"]["count"] == 2 and data["errors"] == [] and data["crop_border"] == 2


def test_cli_problems_exit_1(folders: tuple[Path, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    pred, ref = folders
    write_image(pred / "lonely.png", photo_like(16, 16, seed=12))
    write_image(ref / "orphan.png", photo_like(16, 16, seed=13))
    (pred / "broken.png").write_bytes(b"not an image")
    write_image(ref / "broken.png", photo_like(16, 16, seed=14))
    write_image(pred / "small.png", photo_like(16, 16, seed=15))
    write_image(ref / "small.png", photo_like(16, 18, seed=15))
    out_json = tmp_path / "m.json"
    code = _evaluate_tool().main(["--pred", str(pred), "--ref", str(ref), "--json", str(out_json)])
    assert code == 1
    err = capsys.readouterr().err
    for name in ("lonely", "orphan", "broken.png", "small.png"):
        assert name in err
    data = json.loads(out_json.read_text())
    assert [r["name"] for r in data["images"]] == ["a", "sub/b"]  # the rest still evaluated
    assert len(data["errors"]) == 4


def test_cli_usage_errors(folders: tuple[Path, Path], tmp_path: Path,
                          capsys: pytest.CaptureFixture) -> None:
    pred, ref = folders
    tool = _evaluate_tool()
    assert tool.main(["--pred", str(pred)]) == 2
    assert tool.main(["--pred", str(tmp_path / "nope"), "--ref", str(ref)]) == 2
    assert tool.main(["--pred", str(pred), "--ref", str(ref), "--crop-border", "-1"]) == 2
    assert "nope" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert tool.main(["--pred", str(empty), "--ref", str(empty)]) == 1  # nothing to evaluate
