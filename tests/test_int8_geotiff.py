"""``translate --precision int8`` on georeferenced TIFFs: calibrated on the values the run
translates (its ``--bands`` and ``--data-range``), read by windows, never decoded whole.

Needs the ``geo`` extra (rasterio); the int8 runs need the ``onnx`` extra too (skipped
without it, required under CI).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402
from onnx_extra import HAVE_ONNX, needs_onnx  # noqa: E402

from img2img.checkpoint import meta_for, save_generator  # noqa: E402
from img2img.commands.translate import translate_main  # noqa: E402
from img2img.data.io import write_image  # noqa: E402
from img2img.inference import geotiff, quantize  # noqa: E402
from img2img.inference.geotiff import GeoOptions  # noqa: E402
from img2img.inference.translator import Translator, network_input  # noqa: E402
from img2img.nn import build_generator  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 4200000.0)
KWARGS = {"ngf": 8}


def _geotiff(path: Path, data: np.ndarray) -> Path:
    """``data`` (bands x H x W, uint8/uint16/float32) as a georeferenced TIFF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count, h, w = data.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": count,
               "dtype": data.dtype.name, "crs": "EPSG:32614", "transform": TRANSFORM,
               "compress": "deflate"}
    if max(h, w) > 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def _twelve_bit(h: int, w: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """bands x H x W uint16 samples of 12-bit imagery: 0 .. 4095, both reached."""
    p = photo_like(h, w, seed=seed, channels=bands, dtype=np.uint16).astype(np.float64)
    p = (p - p.min()) / (p.max() - p.min()) * 4095
    return np.round(p).astype(np.uint16).transpose(2, 0, 1).copy()


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = build_generator("resnet_6blocks", **KWARGS).eval()
    path = tmp_path_factory.mktemp("ckpt") / "resnet.safetensors"
    save_generator(path, net, meta_for(net, "resnet_6blocks", KWARGS, "cyclegan"))
    return path


@pytest.fixture(scope="module")
def fp32(resnet: Path) -> Translator:
    return Translator.from_checkpoint(resnet, "cpu", "fp32")


def _translate(*args: object) -> int:
    return translate_main([str(a) for a in args] + ["--quiet"])


def _cached(out: Path) -> list[Path]:
    return sorted((out / quantize.CACHE_DIR).glob("*.int8-*"))  # .json in PyTorch, or .onnx


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(peak**2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def twelve_bit(tmp_path_factory: pytest.TempPathFactory, resnet: Path) -> dict[str, Path]:
    """A 12-bit 3-band GeoTIFF translated with ``--data-range 4095`` in fp32 and in int8."""
    if not HAVE_ONNX:
        pytest.skip("needs pip install 'img2img[onnx]'")
    root = tmp_path_factory.mktemp("twelve")
    src = _geotiff(root / "in" / "scene.tif", _twelve_bit(64, 64))
    for precision in ("fp32", "int8"):
        assert _translate("--checkpoint", resnet, "--input", src.parent, "--output",
                          root / precision, "--precision", precision,
                          "--data-range", "4095") == 0
    return {"src": src, "fp32": root / "fp32", "int8": root / "int8"}


# Random ngf=8 ResNets (seeds 0-4) on this 12-bit scene: int8 against fp32 (peak 4095)
# 28.0-33.2 dB (seed 0, the one here: 28.0) calibrated with the data range, 14.6-15.9 dB
# calibrated on the samples / 65535 (the whole-image decode) and run with it.
PSNR_BOUND_DB = 25.0


@needs_onnx
def test_twelve_bit_geotiff_with_data_range_calibrates_on_what_it_translates(
        twelve_bit: dict[str, Path], fp32: Translator, resnet: Path, tmp_path: Path) -> None:
    src = twelve_bit["src"]
    with rasterio.open(src) as a, rasterio.open(twelve_bit["int8"] / src.name) as b:
        assert b.crs == a.crs and b.transform == a.transform and b.dtypes == a.dtypes
        got = b.read()
    with rasterio.open(twelve_bit["fp32"] / src.name) as c:
        want = c.read()
    assert got.max() <= 4095 and want.max() <= 4095
    assert _psnr(got, want, 4095) >= PSNR_BOUND_DB
    # what calibration saw: samples / 4095 (as the run), not samples / 65535 (the decode)
    with_range = quantize.calibration_inputs(fp32.meta, fp32.min_size, [src],
                                             geo=GeoOptions(data_range=4095))
    plain = quantize.calibration_inputs(fp32.meta, fp32.min_size, [src])
    assert max(float(x.max()) for x in with_range.inputs) == pytest.approx(1.0, abs=1e-6)
    assert max(float(x.max()) for x in plain.inputs) == pytest.approx(-0.875, abs=1e-3)
    # and calibrated on those, the same run is far from fp32
    wrong = quantize.int8_translator(resnet, tmp_path, [src])
    geotiff.translate_geotiff(wrong, src, tmp_path / "wrong.tif", GeoOptions(data_range=4095))
    with rasterio.open(tmp_path / "wrong.tif") as ds:
        assert _psnr(ds.read(), want, 4095) < PSNR_BOUND_DB - 5


@needs_onnx
def test_the_data_range_is_part_of_the_cached_models_key(
        twelve_bit: dict[str, Path], resnet: Path) -> None:
    out, src = twelve_bit["int8"], twelve_bit["src"]
    (first,) = _cached(out)
    with rasterio.open(out / src.name) as ds:
        ranged = ds.read()
    assert _translate("--checkpoint", resnet, "--input", src.parent, "--output", out,
                      "--precision", "int8", "--overwrite") == 0
    assert len(_cached(out)) == 2 and first in _cached(out)  # calibrated again, not reused
    with rasterio.open(out / src.name) as ds:  # samples / 65535: nearly black in and out
        assert not np.array_equal(ds.read(), ranged)


def test_bands_are_calibrated_as_the_run_reads_them(
        fp32: Translator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--bands 3,2,1`` on a 4-band raster: calibration gets exactly the network input the
    run gives the model (bands 3, 2, 1 in that order, normalised by the data range)."""
    data = _twelve_bit(40, 48, bands=4, seed=3)
    src = _geotiff(tmp_path / "four.tif", data)
    geo = GeoOptions(bands=(3, 2, 1), data_range=4095)
    seen: list[torch.Tensor] = []
    run_tensor = Translator.translate_tensor

    def spy(self: Translator, x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return run_tensor(self, x)

    monkeypatch.setattr(Translator, "translate_tensor", spy)
    geotiff.translate_geotiff(fp32, src, tmp_path / "out.tif", geo)
    (x,) = seen
    want, _, _ = network_input(x, fp32.meta, fp32.min_size)
    calib = quantize.calibration_inputs(fp32.meta, fp32.min_size, [src], geo=geo)
    (got,) = calib.inputs
    np.testing.assert_array_equal(got, want.numpy())
    np.testing.assert_allclose(got[0, :, :40, :48], data[[2, 1, 0]] / 4095 * 2 - 1,
                               atol=1e-6)
    first = quantize.calibration_inputs(fp32.meta, fp32.min_size, [src],
                                        geo=GeoOptions(data_range=4095))
    assert calib.digest() != first.digest()  # other bands, another cached model


def test_a_large_raster_is_calibrated_by_crops_never_decoded_whole(
        fp32: Translator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = w = 3000
    yy, xx = np.mgrid[0:h, 0:w]
    data = np.stack([(xx * 7 + yy * 3 + 40 * b) % 251 for b in range(3)]).astype(np.uint8)
    src = _geotiff(tmp_path / "naip.tif", data)

    def no_decode(path: object, *_: object, **__: object) -> None:
        raise AssertionError(f"{path} decoded whole")

    reads: list[tuple[int, int, int, int]] = []
    read = geotiff.RasterioSource.read

    def spy(self: geotiff.RasterioSource, y0: int, y1: int, x0: int, x1: int,
            bands: object) -> np.ndarray:
        reads.append((y0, y1, x0, x1))
        return read(self, y0, y1, x0, x1, bands)

    monkeypatch.setattr(quantize, "read_image", no_decode)
    monkeypatch.setattr(geotiff.RasterioSource, "read", spy)
    calib = quantize.calibration_inputs(fp32.meta, fp32.min_size, [src], 3)
    side = quantize.CALIBRATION_CROP
    assert calib.images == [src] and len(calib.inputs) == 3 and not calib.skipped
    assert len(reads) == 3 and all((y1 - y0, x1 - x0) == (side, side)
                                   for y0, y1, x0, x1 in reads)
    assert len(set(reads)) == 3  # spread over the raster (the run tiles it: 9 Mpx)
    for x, (y0, y1, x0, x1) in zip(calib.inputs, reads, strict=True):
        np.testing.assert_allclose(x[0], data[:, y0:y1, x0:x1] / 127.5 - 1, atol=1e-6)


def test_rasters_the_run_cannot_take_are_skipped_with_the_reason(
        fp32: Translator, tmp_path: Path) -> None:
    floats = _geotiff(tmp_path / "a_float.tif", np.zeros((3, 16, 16), np.float32))
    two = _geotiff(tmp_path / "b_two.tif", _twelve_bit(16, 16, bands=2))
    good = _geotiff(tmp_path / "c_good.tif", _twelve_bit(16, 16))
    calib = quantize.calibration_inputs(fp32.meta, fp32.min_size, [floats, two, good])
    assert calib.images == [good] and len(calib.inputs) == 1
    reasons = dict(calib.skipped)
    assert "unsupported sample type float32" in reasons[floats]
    assert "the model takes 3 band(s), the file has 2" in reasons[two]
    calib = quantize.calibration_inputs(fp32.meta, fp32.min_size, [good],
                                        geo=GeoOptions(data_range=300.0, bands=(1, 2, 4)))
    assert not calib.inputs and "band 4 requested" in calib.skipped[0][1]


@needs_onnx
def test_bands_the_model_cannot_take_are_refused_before_calibration(
        resnet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _geotiff(tmp_path / "in" / "scene.tif", _twelve_bit(16, 16))
    code = _translate("--checkpoint", resnet, "--input", src.parent, "--output",
                      tmp_path / "out", "--precision", "int8", "--bands", "1,2")
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "error: --bands 1,2: the model takes 3 band(s)"
    assert not _cached(tmp_path / "out")


def test_plain_images_calibrate_without_rasterio(
        fp32: Translator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    png = tmp_path / "photo.png"
    write_image(png, photo_like(32, 32, seed=1))
    geo = _geotiff(tmp_path / "scene.tif", _twelve_bit(16, 16))
    monkeypatch.setitem(sys.modules, "rasterio", None)  # import raises ImportError
    calib = quantize.calibration_inputs(fp32.meta, fp32.min_size, [geo, png])
    assert calib.images == [png] and len(calib.inputs) == 1
    ((path, reason),) = calib.skipped
    assert path == geo and "pip install 'img2img[geo]'" in reason
