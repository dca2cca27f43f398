"""GeoTIFF upscaling through ``img2img translate``: georeferencing, bands, nodata and value
range kept; windowed TIFF writing for large plain images. Needs the ``geo`` extra."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from imgfactory import photo_like
from PIL import Image

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402

from img2img.checkpoint import meta_for, save_generator  # noqa: E402
from img2img.cli import translate_main  # noqa: E402
from img2img.data.convert import denormalize  # noqa: E402
from img2img.data.io import ImageReadError, read_image, write_image  # noqa: E402
from img2img.inference import geotiff  # noqa: E402
from img2img.inference.bands import translate_array_tiled  # noqa: E402
from img2img.inference.translator import Translator  # noqa: E402
from img2img.nn import build_generator  # noqa: E402

SR_KWARGS = {"scale": 4, "channels": 16, "n_blocks": 2}
H, W = 36, 44
DESCRIPTIONS = ("red", "green", "blue", "near-infrared")
TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 4200000.0)


# One torch thread: these tests run many tiny forwards, where threads only add overhead.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sr() -> Translator:
    torch.manual_seed(0)
    net = build_generator("srresnet", **SR_KWARGS).eval()
    return Translator(net, meta_for(net, "srresnet", SR_KWARGS, "srgan"), torch.device("cpu"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, sr: Translator) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sr.safetensors"
    save_generator(path, sr.model, sr.meta)
    return path


def _bands(seed: int = 0) -> np.ndarray:
    """4 x H x W uint16 samples of 12-bit imagery, with an all-zero (nodata) corner and
    one pixel at 4095 and one above it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    data = np.stack([(1500 + 900 * np.sin(xx / (5 + b)) + 600 * np.cos(yy / (4 + b))
                      + rng.normal(0, 80, (H, W))) for b in range(4)])
    data = np.clip(data, 1, 4095).astype(np.uint16)
    data[:, :6, :8] = 0
    data[:3, 20, 30] = 4095
    data[:3, 21, 30] = 5000
    return data


def _write_geotiff(path: Path, data: np.ndarray, **extra: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": W, "height": H, "count": data.shape[0],
               "dtype": "uint16", "crs": "EPSG:32614", "transform": TRANSFORM, "nodata": 0,
               "compress": "lzw", **extra}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for i, d in enumerate(DESCRIPTIONS[: data.shape[0]], start=1):
            ds.set_band_description(i, d)
        ds.update_tags(SENSOR="test")
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    data = _bands()
    return _write_geotiff(tmp_path_factory.mktemp("geo") / "in" / "scene.tif", data), data


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = translate_main([str(a) for a in args] + ["--device", "cpu", "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def _translate(capsys: pytest.CaptureFixture[str], checkpoint: Path, src: Path, dst: Path,
               *flags: object) -> np.ndarray:
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output", dst,
                          *flags)
    assert code == 0, err
    assert out.strip().endswith("1 translated, 0 skipped (output exists), 0 failed")
    assert not [f for f in os.listdir(dst) if f.startswith(".")], "no temp files left"
    with rasterio.open(dst / "scene.tif") as ds:
        return ds.read()


def _diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def test_upscaled_geotiff_keeps_georeferencing(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, sr: Translator,
    scene: tuple[Path, np.ndarray], tmp_path: Path,
) -> None:
    src, data = scene
    out = _translate(capsys, checkpoint, src.parent, tmp_path / "out")
    with rasterio.open(src) as a, rasterio.open(tmp_path / "out" / src.name) as b:
        assert b.crs == a.crs and b.crs.to_epsg() == 32614
        assert np.allclose(tuple(b.bounds), tuple(a.bounds), rtol=0, atol=1e-6)
        assert b.res == pytest.approx((a.res[0] / 4, a.res[1] / 4))
        assert (b.width, b.height) == (4 * W, 4 * H)
        assert b.count == 4 and b.dtypes == ("uint16",) * 4
        assert b.descriptions == DESCRIPTIONS
        assert b.nodata == 0
        assert b.tags()["SENSOR"] == "test"
        assert b.compression is not None and b.compression.value == "LZW"
    assert out.shape == (4, 4 * H, 4 * W)
    # nodata stays nodata in every band (mask scaled with nearest); nowhere else
    assert np.all(out[:, : 6 * 4, : 8 * 4] == 0)
    valid = np.ones((4 * H, 4 * W), bool)
    valid[: 6 * 4, : 8 * 4] = False
    # model bands: what the translator gives for the RGB bands (default data range 65535)
    rgb = np.ascontiguousarray(np.moveaxis(data[:3], 0, -1))
    ref = np.moveaxis(sr(rgb), -1, 0)
    assert _diff(out[:3][:, valid], ref[:, valid]) <= 1
    # the near-infrared band: bicubic, as cv2 resizes the whole band
    nir = cv2.resize(data[3], (4 * W, 4 * H), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(out[3][valid], nir[valid])


def test_tiled_geotiff_equals_untiled(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, checkpoint: Path,
    scene: tuple[Path, np.ndarray], tmp_path: Path,
) -> None:
    src, _ = scene
    calls: list[int] = []
    original = Translator.translate_tensor

    def counted(translator: Translator, x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return original(translator, x)

    monkeypatch.setattr(Translator, "translate_tensor", counted)
    whole = _translate(capsys, checkpoint, src, tmp_path / "whole")
    assert calls == [1]
    calls.clear()
    tiled = _translate(capsys, checkpoint, src, tmp_path / "tiled", "--tile", "12",
                       "--tile-overlap", "8")
    assert sum(calls) == 3 * 4
    # within 1/255 of the 16-bit range (the receptive field is wider than overlap / 2 here,
    # so it is close, not exact)
    assert _diff(tiled, whole) <= 257


def test_extra_bands_drop(capsys: pytest.CaptureFixture[str], checkpoint: Path,
                          scene: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, _ = scene
    out = _translate(capsys, checkpoint, src, tmp_path / "out", "--extra-bands", "drop")
    assert out.shape == (3, 4 * H, 4 * W)
    with rasterio.open(tmp_path / "out" / src.name) as ds:
        assert ds.descriptions == DESCRIPTIONS[:3] and ds.nodata == 0


def test_bands_keep_their_positions(capsys: pytest.CaptureFixture[str], checkpoint: Path,
                                    sr: Translator, scene: tuple[Path, np.ndarray],
                                    tmp_path: Path) -> None:
    src, data = scene
    out = _translate(capsys, checkpoint, src, tmp_path / "out", "--bands", "4,2,1")
    # the model sees (nir, green, red); its outputs go back to bands 4, 2 and 1; band 3 bicubic
    ref = sr(np.ascontiguousarray(np.moveaxis(data[[3, 1, 0]], 0, -1)))
    sl = (slice(40, None), slice(40, None))  # away from the nodata corner
    assert _diff(out[3][sl], ref[..., 0][sl]) <= 1
    assert _diff(out[1][sl], ref[..., 1][sl]) <= 1
    assert _diff(out[0][sl], ref[..., 2][sl]) <= 1
    blue = cv2.resize(data[2], (4 * W, 4 * H), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(out[2][sl], blue[sl])


def test_data_range(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                    checkpoint: Path, scene: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, _ = scene
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = Translator.translate_tensor

    def spy(translator: Translator, x: torch.Tensor) -> torch.Tensor:
        y = original(translator, x)
        seen.append((x.clone(), y.clone()))
        return y

    monkeypatch.setattr(Translator, "translate_tensor", spy)
    out = _translate(capsys, checkpoint, src, tmp_path / "out", "--data-range", "4095")
    assert len(seen) == 1  # small raster: one tile
    x, y = seen[0][0][0], seen[0][1][0]
    assert torch.all(x[:, 20, 30] == 1.0), "a sample of 4095 is white with --data-range 4095"
    assert torch.all(x[:, 21, 30] == 1.0), "samples above the range are clipped"
    assert torch.all(x[:, 0, 0] == -1.0)
    # outputs are converted back with the same range: -1 -> 0, 1 -> 4095
    expected = denormalize(y.numpy(), np.uint16, 4095)
    assert np.array_equal(out[:3, 40:, 40:], expected[:, 40:, 40:])
    assert out[:3].max() <= 4095


def test_band_errors_are_reported(capsys: pytest.CaptureFixture[str], checkpoint: Path,
                                  scene: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, _ = scene
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output",
                          tmp_path / "a", "--bands", "1,2,5")
    assert code == 1 and "band 5" in err and str(src) in err
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output",
                          tmp_path / "b", "--bands", "1,2")
    assert code == 2 and err.startswith("error:") and "--bands 1,2" in err
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output",
                          tmp_path / "c", "--ext", "png")
    assert code == 1 and "georeferenced" in err and ".tif" in err
    assert not list((tmp_path / "c").glob("*")) if (tmp_path / "c").exists() else True


def test_rerun_skips_and_nothing_is_left_half_written(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, scene: tuple[Path, np.ndarray],
    tmp_path: Path,
) -> None:
    src, _ = scene
    dst = tmp_path / "out"
    _translate(capsys, checkpoint, src, dst)
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output", dst)
    assert code == 0 and out.strip().endswith("0 translated, 1 skipped (output exists), 0 failed")
    assert sorted(os.listdir(dst)) == [src.name]


def test_large_output_is_block_tiled_and_keeps_compression(sr: Translator,
                                                           tmp_path: Path) -> None:
    h, w = 70, 80
    data = np.random.default_rng(2).integers(0, 256, (3, h, w), dtype=np.uint8)
    src = tmp_path / "rgb8.tif"
    with rasterio.open(src, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=Affine(0.001, 0.0, 10.0, 0.0, -0.001, 50.0),
                       compress="deflate", predictor=2, photometric="RGB") as ds:
        ds.write(data)
    stats = geotiff.translate_geotiff(sr, src, tmp_path / "out.tif",
                                      tiling=geotiff.TileOptions(tile=32, overlap=8))
    assert stats.tiles == 9
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert (ds.width, ds.height) == (4 * w, 4 * h)  # more than one 256 block
        assert ds.block_shapes[0] == (geotiff.BLOCK, geotiff.BLOCK)
        assert ds.compression.value == "DEFLATE"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
        assert ds.crs.to_epsg() == 4326
        out = ds.read()
    ref = np.moveaxis(sr.translate_tiled(np.ascontiguousarray(np.moveaxis(data, 0, -1)),
                                         32, 8), -1, 0)
    assert np.array_equal(out, ref)


def test_missing_rasterio_on_a_georeferenced_tiff(
    monkeypatch: pytest.MonkeyPatch, scene: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    src, _ = scene
    plain = tmp_path / "plain.tif"
    cv2.imwrite(str(plain), np.zeros((4, 4, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(geotiff.GeoTiffError, match=r"pip install 'img2img\[geo\]'"):
        geotiff.is_georeferenced(src)
    assert not geotiff.is_georeferenced(plain)


def test_large_plain_image_to_tiff_is_written_by_windows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, checkpoint: Path,
    sr: Translator, tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (50, 70, 4), dtype=np.uint8)
    src = tmp_path / "in" / "big.png"
    src.parent.mkdir()
    cv2.imwrite(str(src), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    sinks: list[str] = []
    original = geotiff.RasterioSink.write

    def spy(self: geotiff.RasterioSink, y0: int, rows: np.ndarray) -> None:
        sinks.append(type(self).__name__)
        original(self, y0, rows)

    monkeypatch.setattr(geotiff.RasterioSink, "write", spy)
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src.parent,
                          "--output", tmp_path / "out", "--ext", "tif", "--tile", "24",
                          "--tile-overlap", "8")
    assert code == 0, err
    assert len(sinks) > 1, "rows went to the TIFF band by band"
    got = read_image(tmp_path / "out" / "big.tif")
    assert got.shape == (200, 280, 4) and got.dtype == np.uint8
    assert np.array_equal(got, translate_array_tiled(sr, rgba, 24, 8))


@pytest.mark.parametrize("channels, dtype", [(1, np.uint8), (3, np.uint8), (4, np.uint8),
                                             (3, np.uint16)])
def test_plain_tiff_above_the_pixel_limit_is_translated_by_windows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, checkpoint: Path,
    sr: Translator, tmp_path: Path, pixel_limit: object, channels: int, dtype: type,
) -> None:
    src = tmp_path / "in" / "plain.tif"
    src.parent.mkdir()
    img = photo_like(40, 56, seed=5, channels=channels, dtype=dtype)
    write_image(src, img)
    assert not geotiff.is_georeferenced(src)
    whole = sr(read_image(src))  # what the whole-image path gives
    windows: list[tuple[int, ...]] = []
    original = geotiff.RasterioSource.read

    def spy(self: geotiff.RasterioSource, *args: object) -> np.ndarray:
        windows.append(args[:4])  # type: ignore[arg-type]
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(geotiff.RasterioSource, "read", spy)
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src.parent,
                          "--output", tmp_path / "out", "--max-image-pixels", "1000")
    assert code == 0, err
    assert windows, "the TIFF was read through rasterio windows"
    with pytest.raises(ImageReadError, match="more than the limit of 1000 pixels"):
        read_image(src)
    pixel_limit(10**6)  # type: ignore[operator]
    got = read_image(tmp_path / "out" / "plain.tif")
    assert got.shape == (160, 224, channels) and got.dtype == dtype
    assert _diff(got, whole.reshape(got.shape)) <= (257 if dtype == np.uint16 else 1)


def test_plain_tiff_above_the_pixel_limit_needs_a_tiff_output(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path, pixel_limit: object,
) -> None:
    src = tmp_path / "in"
    write_image(src / "plain.tif", photo_like(40, 56, seed=5))
    pal = src / "palette.tif"
    Image.fromarray(photo_like(40, 56, seed=6)).convert("P").save(pal)
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output",
                          tmp_path / "out", "--max-image-pixels", "1000", "--ext", "png")
    assert code == 1 and "0 translated" in out
    assert (f"failed: {src / 'plain.tif'}: 56x40 = 2240 pixels is more than the limit of 1000 "
            f"pixels for decoding a whole image; raise it with --max-image-pixels, or translate "
            f"it by windows into a .tif output (--ext tif)") in err
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output",
                          tmp_path / "out2", "--max-image-pixels", "1000")
    assert code == 1 and "1 translated" in out
    assert f"failed: {pal}: translation failed: a palette TIFF holds colour indices" in err


def test_geotiff_through_onnx_runtime_equals_pytorch(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, scene: tuple[Path, np.ndarray],
    tmp_path: Path,
) -> None:
    """The same GeoTIFF translated by the exported .onnx model (ONNX Runtime) keeps the
    georeferencing and the extra band and matches the PyTorch output within 1/255 of peak,
    tiled or not: readers and writers do not depend on the model backend."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from img2img.inference.onnx_export import export_onnx

    onnx_path = tmp_path / "sr.onnx"
    export_onnx(checkpoint, onnx_path)
    src, _ = scene
    torch_out = _translate(capsys, checkpoint, src.parent, tmp_path / "torch", "--tile", "16")
    for name, flags in (("whole", ()), ("tiled", ("--tile", "16"))):
        out = _translate(capsys, onnx_path, src.parent, tmp_path / name, *flags)
        with rasterio.open(src) as a, rasterio.open(tmp_path / name / src.name) as b:
            assert b.crs == a.crs and b.descriptions == DESCRIPTIONS and b.nodata == 0
            assert (b.width, b.height) == (4 * W, 4 * H)
        assert _diff(out, torch_out) <= 65535 // 255, name
