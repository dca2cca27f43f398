"""Tiled inference: same pixels as untiled inference, bounded memory, automatic for large
images, and the flags of ``img2img translate`` that drive it.

Tiny random-weight networks stand in for trained ones: a 2-block SRResNet x4 (batch norm
with non-trivial running statistics, eval mode) and a ResNet generator without norm.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like, write_png

from img2img.checkpoint import meta_for, save_generator
from img2img.cli import DEFAULT_OVERLAP, EXTRA_BANDS, translate_main, translate_parser
from img2img.data.convert import denormalize, normalize
from img2img.data.io import read_image
from img2img.inference import bands, geotiff, tile_layout
from img2img.inference.bands import ArraySource, ModelReader, translate_array_tiled
from img2img.inference.tile_layout import TileOptions, axis_spans
from img2img.inference.tiling import translate_large
from img2img.inference.translator import Translator
from img2img.nn import build_generator

SR_KWARGS = {"scale": 4, "channels": 16, "n_blocks": 2}
RESNET_KWARGS = {"ngf": 8, "n_blocks": 1, "norm": "none"}


# One torch thread: these tests run many tiny forwards, where threads only add overhead.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randomise_batch_norm(net: torch.nn.Module) -> torch.nn.Module:
    """Running statistics away from (0, 1), so that eval-mode batch norm does something."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _translator(arch: str, kwargs: dict, seed: int = 0) -> Translator:
    torch.manual_seed(seed)
    net = _randomise_batch_norm(build_generator(arch, **kwargs))
    return Translator(net, meta_for(net, arch, kwargs, "test"), torch.device("cpu"))


@pytest.fixture(scope="module")
def sr() -> Translator:
    return _translator("srresnet", SR_KWARGS)


@pytest.fixture(scope="module")
def resnet() -> Translator:
    return _translator("resnet", RESNET_KWARGS)


@pytest.fixture(scope="module")
def sr_checkpoint(tmp_path_factory: pytest.TempPathFactory, sr: Translator) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sr.safetensors"
    save_generator(path, sr.model, meta_for(sr.model, "srresnet", SR_KWARGS, "srgan"))
    return path


def _textured(h: int, w: int, channels: int = 3, dtype: type = np.uint8,
              seed: int = 0) -> np.ndarray:
    """A smooth image plus noise: seams between tiles would show in the fine texture."""
    peak = np.iinfo(dtype).max
    base = photo_like(h, w, seed=seed, channels=channels, dtype=dtype).astype(np.float64)
    noise = np.random.default_rng(seed).normal(0, 0.08 * peak, base.shape)
    return np.clip(base + noise, 0, peak).round().astype(dtype)


class _Forwards:
    """Counts the images the network is run on (each tile is one)."""

    def __init__(self, translator: Translator) -> None:
        self.images = 0
        self.calls = 0
        self._hook = translator.model.register_forward_pre_hook(self._count)

    def _count(self, module: torch.nn.Module, args: tuple) -> None:
        self.calls += 1
        self.images += args[0].shape[0]

    def close(self) -> None:
        self._hook.remove()


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


# --------------------------------------------------------------------------- same pixels


@pytest.mark.parametrize("tile,overlap", [(32, 12), (24, 24), (40, 8), (17, 10)])
def test_sr_tiled_equals_untiled(sr: Translator, tile: int, overlap: int) -> None:
    img = _textured(70, 90, seed=1)
    ref = sr(img)
    forwards = _Forwards(sr)
    try:
        out = sr.translate_tiled(img, tile=tile, overlap=overlap, batch_size=3)
    finally:
        forwards.close()
    assert out.shape == (280, 360, 3) and out.dtype == np.uint8
    assert forwards.images >= 4, "the image should have been split into tiles"
    assert forwards.calls < forwards.images, "tiles should run in batches"
    assert _max_diff(out, ref) <= 1  # 1/255: float summation order only


@pytest.mark.parametrize("size,tile,overlap", [((110, 140), 32, 16), ((67, 93), 20, 12),
                                               ((37, 53), 16, 8)])
def test_resnet_tiled_equals_untiled(resnet: Translator, size: tuple[int, int], tile: int,
                                     overlap: int) -> None:
    img = _textured(*size, seed=2)
    out = resnet.translate_tiled(img, tile=tile, overlap=overlap)
    assert _max_diff(out, resnet(img)) <= 1


def test_tile_larger_than_the_image_runs_it_whole(sr: Translator) -> None:
    img = _textured(21, 34, seed=3)
    forwards = _Forwards(sr)
    try:
        out = sr.translate_tiled(img, tile=512, overlap=32)
    finally:
        forwards.close()
    assert forwards.images == 1
    assert _max_diff(out, sr(img)) <= 1


def test_layouts_alpha_and_gray_are_kept(sr: Translator) -> None:
    rgba = _textured(30, 44, channels=4, seed=4)
    out = sr.translate_tiled(rgba, tile=16, overlap=8)
    ref = sr(rgba)
    assert _max_diff(out[..., :3], ref[..., :3]) <= 1
    assert np.array_equal(out[..., 3], ref[..., 3]), "alpha: windowed bicubic == whole resize"
    gray = _textured(30, 44, channels=1, seed=5)[..., 0]
    out = sr.translate_tiled(gray, tile=16, overlap=8)
    assert out.shape == (120, 176) and _max_diff(out, sr(gray)) <= 1


def test_16_bit_round_trip(sr: Translator) -> None:
    img = _textured(40, 52, dtype=np.uint16, seed=6)
    out = sr.translate_tiled(img, tile=16, overlap=12)
    assert out.dtype == np.uint16 and out.shape == (160, 208, 3)
    assert np.any(out % 257 != 0), "16-bit precision, not 8-bit values scaled up"
    assert _max_diff(out, sr(img)) <= 257  # within 1/255 of the range


def test_instance_norm_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    inorm = _translator("resnet", {"ngf": 8, "n_blocks": 1, "norm": "instance"})
    img = _textured(64, 64, seed=7)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        inorm.translate_tiled(img, tile=16, overlap=8)
        inorm.translate_tiled(img, tile=16, overlap=8)
    warnings = [r for r in caplog.records if "instance normalisation" in r.getMessage()]
    assert len(warnings) == 1


# --------------------------------------------------------------------------- the blending window


@pytest.mark.parametrize("length,tile,overlap,scale,multiple",
                         [(70, 32, 12, 4, 1), (141, 24, 16, 1, 4), (100, 10, 0, 2, 1),
                          (500, 64, 33, 1, 8), (33, 32, 32, 1, 1)])
def test_window_weights_sum_to_one_and_edges_are_full(length: int, tile: int, overlap: int,
                                                      scale: int, multiple: int) -> None:
    spans = axis_spans(length, tile, overlap, scale, multiple)
    total = np.zeros(length * scale)
    for sp in spans:
        assert sp.start % multiple == 0, "window origins keep the network's stride grid"
        assert 0 <= sp.start and sp.stop <= length
        assert np.all((sp.weights >= 0) & (sp.weights <= 1))
        total[sp.lo : sp.hi] += sp.weights
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert spans[0].weights[0] == 1 and spans[-1].weights[-1] == 1
    if len(spans) > 1 and overlap:
        # smooth: a raised-cosine ramp, not a hard cut, across each seam
        ramp = spans[0].weights
        assert np.any((ramp > 0.05) & (ramp < 0.95))


# --------------------------------------------------------------------------- bounded memory


class _Bands:
    """A BandWriter that records what it receives."""

    def __init__(self) -> None:
        self.bands: list[tuple[int, int]] = []

    def write(self, y0: int, band: np.ndarray) -> None:
        self.bands.append((y0, band.shape[1]))


def test_accumulator_holds_only_a_band_of_rows(sr: Translator) -> None:
    h, w, tile, overlap = 150, 60, 16, 8
    img = _textured(h, w, seed=8)
    reader = ModelReader(ArraySource(img), [0, 1, 2], 3)
    windows: list[tuple[int, int]] = []
    read = reader.read

    def spy(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        windows.append((y1 - y0, x1 - x0))
        return read(y0, y1, x0, x1)

    reader.read = spy  # type: ignore[method-assign]
    writer = _Bands()
    stats = translate_large(sr, reader, writer, tile, overlap, batch_size=4)
    s = sr.meta.scale
    assert stats.peak_rows <= (tile + 2 * overlap) * s, stats
    assert stats.acc_width == w * s
    assert max(r for r, _ in windows) <= tile + 2 * overlap
    # finished rows leave in order, without gaps, band by band
    assert len(writer.bands) == math.ceil(h / tile) > 1
    ys = [y for y, _ in writer.bands]
    assert ys[0] == 0
    assert all(y0 + n == y1 for (y0, n), y1 in zip(writer.bands[:-1], ys[1:], strict=True))
    assert sum(n for _, n in writer.bands) == h * s
    assert max(n for _, n in writer.bands) <= (tile + overlap) * s


# --------------------------------------------------------------------------- value range


def test_data_range_normalisation() -> None:
    x = np.array([[[0, 4095, 2048, 65535]]], np.uint16)
    n = normalize(x, 4095)
    assert n[0, 0, 0] == -1.0 and n[0, 0, 1] == 1.0 and n[0, 0, 3] == 1.0  # clipped above R
    assert abs(n[0, 0, 2] - (2048 / 4095 * 2 - 1)) < 1e-6
    assert normalize(np.array([255], np.uint8))[0] == 1.0
    back = denormalize(np.array([-1.0, 1.0, 0.0, 7.0, np.nan], np.float32), np.uint16, 4095)
    assert back.tolist() == [0, 4095, 2048, 4095, 0]
    assert denormalize(np.array([1.0], np.float32), np.uint16).tolist() == [65535]


# --------------------------------------------------------------------------- options and CLI


def test_tile_options() -> None:
    assert TileOptions().tile_for(2048, 2048, 1) is None
    assert TileOptions().tile_for(2049, 2048, 1) == 512
    assert TileOptions().tile_for(512, 512, 4) is None
    assert TileOptions().tile_for(600, 512, 4) == 128, "x4: smaller cores, bounded memory"
    assert TileOptions().tile_for(1200, 1024, 2) == 256
    assert TileOptions(tile=100).tile_for(10, 10, 1) == 100
    assert TileOptions(max_pixels=1000).tile_for(70, 90, 4) == 32
    with pytest.raises(ValueError):
        TileOptions(overlap=-1)


def test_cli_defaults_match_the_library() -> None:
    ns = translate_parser().parse_args(["--checkpoint", "c", "--input", "i", "--output", "o"])
    assert ns.tile is None and ns.tile_overlap == DEFAULT_OVERLAP == tile_layout.DEFAULT_OVERLAP
    assert EXTRA_BANDS == geotiff.EXTRA_BANDS and ns.extra_bands == "bicubic"
    assert ns.bands is None and ns.data_range is None and ns.max_pixels is None
    ns = translate_parser().parse_args(["--checkpoint", "c", "--input", "i", "--output", "o",
                                        "--bands", "4,3,2", "--data-range", "4095"])
    assert ns.bands == (4, 3, 2) and ns.data_range == 4095.0
    for bad in (["--bands", "0,1"], ["--bands", "1,1"], ["--tile", "0"], ["--data-range", "-1"]):
        with pytest.raises(SystemExit):
            translate_parser().parse_args(["--checkpoint", "c", "--input", "i", "--output",
                                           "o", *bad])


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = translate_main([str(a) for a in args] + ["--device", "cpu", "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


class _TensorCalls:
    """Counts Translator.translate_tensor calls and their batch sizes (all instances)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[int] = []
        original = Translator.translate_tensor

        def counted(translator: Translator, x: torch.Tensor) -> torch.Tensor:
            self.batches.append(x.shape[0])
            return original(translator, x)

        monkeypatch.setattr(Translator, "translate_tensor", counted)


def test_auto_tiling_above_max_pixels(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch, sr: Translator,
                                      sr_checkpoint: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    big = write_png(src, "big.png", size=(70, 90), seed=9)
    write_png(src, "small1.png", size=(20, 24), seed=10)
    write_png(src, "small2.png", size=(20, 24), seed=11)
    calls = _TensorCalls(monkeypatch)
    args = ["--checkpoint", sr_checkpoint, "--input", src, "--batch-size", "4"]
    code, out, err = _run(capsys, *args, "--output", tmp_path / "whole")
    assert code == 0, err
    assert sorted(calls.batches) == [1, 2], "below --max-pixels: no tiling, equal sizes batched"

    calls.batches.clear()
    code, out, err = _run(capsys, *args, "--output", tmp_path / "tiled", "--max-pixels", "1000",
                          "--tile-overlap", "12")
    assert code == 0, err
    assert out.strip().endswith("3 translated, 0 skipped (output exists), 0 failed")
    # 70x90 > 1000 pixels: tiled on its own (cores of at most 32, 3x3 tiles in batches of
    # up to 3, one tile row at a time); the 20x24 images are below the limit, batched
    assert sorted(calls.batches) == [2] + [3] * 3
    tiled, whole = read_image(tmp_path / "tiled/big.png"), read_image(tmp_path / "whole/big.png")
    assert tiled.shape == (280, 360, 3)
    assert _max_diff(tiled, whole) <= 1
    assert _max_diff(whole, sr(big.expected)) <= 1


def test_cli_tile_flag(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                       sr_checkpoint: Path, tmp_path: Path) -> None:
    write_png(tmp_path / "in", "a.png", size=(40, 50), seed=12)
    calls = _TensorCalls(monkeypatch)
    code, out, err = _run(capsys, "--checkpoint", sr_checkpoint, "--input", tmp_path / "in",
                          "--output", tmp_path / "out", "--tile", "16", "--tile-overlap", "8",
                          "--batch-size", "2")
    assert code == 0, err
    assert sum(calls.batches) == 3 * 4 and max(calls.batches) == 2
    assert read_image(tmp_path / "out/a.png").shape == (160, 200, 3)


def test_missing_rasterio_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(geotiff.GeoTiffError, match=r"pip install 'img2img\[geo\]'"):
        geotiff.require_rasterio()
    assert not geotiff.rasterio_available()


def test_array_sink_matches_return_value(sr: Translator) -> None:
    img = _textured(30, 30, seed=13)
    sink = bands.ArraySink(120, 120, 3, np.uint8)
    assert translate_array_tiled(sr, img, 16, 8, sink=sink) is None
    assert np.array_equal(sink.array, translate_array_tiled(sr, img, 16, 8))
