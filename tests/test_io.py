"""Tests for img2img.data.io (decoding, encoding, atomic writes) and img2img.data.convert."""

from __future__ import annotations

import io
import os
import pickle
import stat
import subprocess
import sys
import tracemalloc
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hugeimg import huge_jpeg, huge_png, huge_tiff, tiff_bytes
from imgfactory import (
    RED,
    Sample,
    make_messy_tree,
    photo_like,
    write_exif_jpeg,
    write_exif_png,
    write_png,
    write_truncated_jpeg,
)
from PIL import Image

from img2img.data import io as imgio
from img2img.data.convert import from_tensor, max_value, to_tensor
from img2img.data.image_header import bytes_reader, header_size
from img2img.data.io import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_EXTENSIONS,
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    atomic_path,
    atomic_write_bytes,
    decode_image,
    encode_image,
    read_image,
    read_image_info,
    write_image,
)
from img2img.errors import UsageError


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    return make_messy_tree(tmp_path_factory.mktemp("messy"))


def _good(tree: dict[str, Sample]) -> list[Sample]:
    return [s for s in tree.values() if s.ok]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- reading


def test_extensions_cover_common_formats() -> None:
    assert {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"} <= IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)


def test_good_files_decode_to_expected_pixels(tree: dict[str, Sample]) -> None:
    for s in _good(tree):
        img = read_image(s.path)
        assert img.shape == s.shape, s.kind
        assert img.dtype == s.dtype, s.kind
        assert img.flags.c_contiguous and img.flags.writeable, s.kind
        if s.expected is None:
            continue
        diff = np.abs(img.astype(np.int64) - s.expected.astype(np.int64))
        if s.lossy:
            assert diff.mean() < 3.0, (s.kind, diff.mean())
        else:
            assert diff.max() == 0, s.kind


def test_kind_specific_layouts(tree: dict[str, Sample]) -> None:
    assert read_image(tree["gray.png"].path).shape[2] == 1
    gray16 = read_image(tree["deep/nested/dir/gray16.png"].path)
    assert gray16.dtype == np.uint16 and gray16.shape[2] == 1 and gray16.max() > 255
    assert read_image(tree["deep/nested/gray16.tif"].path).dtype == np.uint16
    la = read_image(tree["la.png"].path)  # gray+alpha -> RGBA, gray replicated
    assert (
        la.shape[2] == 4 and (la[..., 0] == la[..., 1]).all() and (la[..., 1] == la[..., 2]).all()
    )
    pal = read_image(tree["pal/palette.png"].path)
    assert pal.shape[2] == 3 and tuple(pal[0, 0]) == RED
    trns = read_image(tree["pal/palette_trns.png"].path)
    assert trns.shape[2] == 4 and trns[0, 0, 3] == 0 and trns[0, 1, 3] == 255


def test_cmyk_jpeg_colours_are_right(tmp_path: Path) -> None:
    patches = np.zeros((32, 64, 3), np.uint8)
    patches[:, :32] = (200, 30, 40)
    patches[:, 32:] = (20, 180, 60)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(patches).convert("CMYK").save(path, "JPEG", quality=95)
    img = read_image(path)
    assert img.shape == (32, 64, 3)
    assert np.abs(img[8:24, 8:24].astype(int) - (200, 30, 40)).max() <= 4
    assert np.abs(img[8:24, 40:56].astype(int) - (20, 180, 60)).max() <= 4


def test_exif_rotated_jpeg_has_swapped_size_and_marker_top_right(tmp_path: Path) -> None:
    s = write_exif_jpeg(tmp_path, size=(30, 50), orientation=6)
    img = read_image(s.path)
    assert img.shape == (50, 30, 3)
    assert np.abs(img[1:7, -7:-1].astype(int) - RED).max() < 40  # marker moved to top-right
    assert np.abs(img[1:7, 1:7].astype(int) - RED).max() > 100


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_exif_orientations_match_pillow(tmp_path: Path, orientation: int) -> None:
    s = write_exif_png(tmp_path, size=(6, 10), orientation=orientation)
    assert np.array_equal(read_image(s.path), s.expected)
    assert read_image_info(s.path)[:2] == s.expected.shape[:2]


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_tiff_orientation_applied_once(tmp_path: Path, mode: str) -> None:
    arr = photo_like(6, 10, channels=len(mode))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.tif"
    Image.fromarray(arr).save(path, "TIFF", exif=exif.tobytes())
    expected = np.asarray(Image.fromarray(arr).transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(read_image(path), expected)


def test_bad_files_raise_with_name_and_reason(tree: dict[str, Sample]) -> None:
    bad = [s for s in tree.values() if not s.ok]
    assert len(bad) >= 8
    for s in bad:
        with pytest.raises(ImageReadError) as info:
            read_image(s.path)
        err = info.value
        assert s.path.name in str(err), s.kind
        assert s.reason in err.reason, (s.kind, err.reason)
        assert str(err) == f"{s.path}: {err.reason}"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="x.jpg: file not found"):
        read_image(tmp_path / "x.jpg")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.95, 1.0])
def test_truncated_jpeg_detected_at_any_cut(tmp_path: Path, keep: float) -> None:
    s = write_truncated_jpeg(tmp_path, keep=keep)
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(s.path)


def test_truncated_jpeg_with_exif_thumbnail() -> None:
    # A thumbnail inside APP1 brings its own SOS/EOI markers; they must not make a truncated
    # main image look complete.
    main = encode_image(photo_like(64, 64), ".jpg")
    thumb = encode_image(photo_like(8, 8, seed=1), ".jpg")
    payload = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00" + thumb
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    data = main[:2] + app1 + main[2:]
    assert decode_image(data).shape == (64, 64, 3)
    for cut in (len(app1) + 400, len(data) - 200, len(data) - 2):
        with pytest.raises(ImageReadError, match="truncated JPEG"):
            decode_image(data[:cut], "cut.jpg")


def test_trailing_data_after_jpeg_is_accepted(tmp_path: Path) -> None:
    buf = encode_image(photo_like(16, 16), ".jpg")
    assert decode_image(buf + b"\x00" * 64 + b"appended junk").shape == (16, 16, 3)


def test_bad_files_do_not_spam_stderr(
    tree: dict[str, Sample], capfd: pytest.CaptureFixture
) -> None:
    # corrupt.png is excluded: libpng prints its own message, which OpenCV cannot silence.
    level = cv2.utils.logging.getLogLevel()
    for s in tree.values():
        if not s.ok and s.kind != "corrupt_png":
            with pytest.raises(ImageReadError):
                read_image(s.path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert cv2.utils.logging.getLogLevel() == level  # silenced only while decoding


def test_error_pickles_and_single_arg_form() -> None:
    err = ImageReadError("a/b.png", "truncated PNG data")
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.reason, str(back)) == ("a/b.png", "truncated PNG data", str(err))
    assert str(ImageReadError("whole message")) == "whole message"  # DataLoader re-raise form


def test_image_info_matches_read(tree: dict[str, Sample]) -> None:
    for s in _good(tree):
        img = read_image(s.path)
        assert read_image_info(s.path) == (*img.shape, img.dtype), s.kind


def test_decode_from_bytes_and_non_ascii_path(tmp_path: Path) -> None:
    s = write_png(tmp_path / "ünï", "фото.png", size=(4, 5))
    assert np.array_equal(decode_image(s.path.read_bytes()), s.expected)
    assert np.array_equal(read_image(s.path), s.expected)


# --------------------------------------------------------------------------- pixel limit


def _pil_bytes(fmt: str, mode: str = "RGB", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo_like(37, 53)).convert(mode).save(buf, fmt, **kwargs)
    return buf.getvalue()


def _cv2_bytes(ext: str, channels: int = 3, *params: int) -> bytes:
    return encode_image(photo_like(37, 53, channels=channels), ext, quality=80) if not params \
        else cv2.imencode(ext, photo_like(37, 53, channels=channels), list(params))[1].tobytes()


def _top_down_bmp() -> bytes:
    data = bytearray(_cv2_bytes(".bmp"))
    data[22:26] = (-37).to_bytes(4, "little", signed=True)  # negative height: rows top-down
    return bytes(data)


_RAW = photo_like(37, 53, channels=1).tobytes()
HEADERS: dict[str, Callable[[], bytes]] = {
    "png": lambda: _cv2_bytes(".png"),
    "png16": lambda: encode_image(photo_like(37, 53, dtype=np.uint16), ".png"),
    "jpeg": lambda: _cv2_bytes(".jpg"),
    "jpeg-progressive-exif": lambda: _pil_bytes("JPEG", progressive=True,
                                                exif=Image.Exif().tobytes()),
    "tiff": lambda: _cv2_bytes(".tif"),
    "tiff-deflate-pillow": lambda: _pil_bytes("TIFF", compression="tiff_deflate"),
    "tiff-big-endian": lambda: tiff_bytes(53, 37, _RAW, big_endian=True),
    "bigtiff": lambda: tiff_bytes(53, 37, _RAW, bigtiff=True),
    "bigtiff-big-endian-deflate": lambda: tiff_bytes(53, 37, zlib.compress(_RAW), 8, True, True),
    "webp-lossy": lambda: _cv2_bytes(".webp"),
    "webp-lossless": lambda: _cv2_bytes(".webp", 3, cv2.IMWRITE_WEBP_QUALITY, 101),
    "webp-alpha-vp8x": lambda: _pil_bytes("WEBP", "RGBA"),
    "bmp": lambda: _cv2_bytes(".bmp"),
    "bmp-top-down": _top_down_bmp,
    "gif": lambda: _pil_bytes("GIF"),
}


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow on a big-endian BigTIFF
@pytest.mark.parametrize("kind", list(HEADERS))
def test_header_size_of_every_format(kind: str) -> None:
    data = HEADERS[kind]()
    assert header_size(imgio._sniff(data), bytes_reader(data)) == (53, 37)
    assert decode_image(data).shape[:2] == (37, 53)  # a real, decodable file


def test_header_size_of_malformed_headers_is_none() -> None:
    png = _cv2_bytes(".png")
    for fmt, data in (("PNG", png[:20]), ("JPEG", b"\xff\xd8\xff\xe0\x00"), ("TIFF", b"II*\x00"),
                      ("TIFF", b"II*\x00\xff\xff\xff\x00"), ("WebP", b"RIFF"), (None, png)):
        assert header_size(fmt, bytes_reader(data)) is None


def _refused(path: Path, decode: Callable[[], object]) -> tuple[ImageReadError, int]:
    """The error ``decode`` raises and the peak of Python-tracked memory meanwhile (numpy
    and OpenCV's output arrays are tracked)."""
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError) as info:
            decode()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, peak


@pytest.mark.parametrize("make, size", [(huge_png, "20000x20000 = 400.0 MP"),
                                        (huge_jpeg, "20000x20000 = 400.0 MP"),
                                        (huge_tiff, "20001x20000 = 400.0 MP")])
def test_huge_image_is_refused_from_its_header(
    tmp_path: Path, make: Callable[[Path], Path], size: str
) -> None:
    path = make(tmp_path / f"bomb.{make.__name__[5:]}")
    assert path.stat().st_size < 2_000_000
    for decode in (lambda: read_image(path), lambda: decode_image(path.read_bytes(), path)):
        err, peak = _refused(path, decode)
        assert str(err).startswith(f"{path}: {size} is more than the limit of 268.4 MP for "
                                   f"decoding a whole image; raise it with --max-image-pixels")
        assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB traced while refusing {path.name}"


def test_unknown_container_is_sized_by_pillow(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pgm"  # PGM: no parser of ours; OpenCV and Pillow both decode it
    path.write_bytes(b"P5\n20000 20000\n255\n" + bytes(64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        err, peak = _refused(path, lambda: read_image(path))
    assert "20000x20000 = 400.0 MP is more than the limit" in str(err) and peak < 32 * 2**20
    assert "--max-image-pixels" in str(err)


def test_limit_is_set_for_the_process_pillow_and_workers(
    tmp_path: Path, pixel_limit: Callable[[int], None]
) -> None:
    assert imgio.max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 2**28
    s = write_png(tmp_path, size=(20, 20))
    pixel_limit(399)
    with pytest.raises(ImageTooLargeError) as info:
        read_image(s.path)
    assert info.value.reason == ("20x20 = 400 pixels is more than the limit of 399 pixels for "
                                 "decoding a whole image; raise it with --max-image-pixels")
    assert (info.value.width, info.value.height, info.value.format) == (20, 20, "PNG")
    back = pickle.loads(pickle.dumps(info.value))  # DataLoader workers send it back pickled
    assert (str(back), back.width, back.format) == (str(info.value), 20, "PNG")
    pixel_limit(400)
    assert np.array_equal(read_image(s.path), s.expected)
    assert Image.MAX_IMAGE_PIXELS == 400
    assert os.environ[imgio.MAX_IMAGE_PIXELS_ENV] == "400"
    for bad in (0, -5, 2.5, True):
        with pytest.raises(UsageError, match="--max-image-pixels"):
            pixel_limit(bad)  # type: ignore[arg-type]


def test_pillow_decodes_without_its_own_bomb_check(
    tmp_path: Path, pixel_limit: Callable[[int], None]
) -> None:
    # An 8-bit RGBA TIFF is decoded by Pillow; its limit must be ours, not its own default.
    rgba = photo_like(40, 40, channels=4)
    path = tmp_path / "rgba.tif"
    Image.fromarray(rgba).save(path)
    pixel_limit(1600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        assert np.array_equal(read_image(path), rgba)
    pixel_limit(1599)
    with pytest.raises(ImageReadError, match="40x40 = 1600 pixels is more than the limit"):
        read_image(path)


def test_images_beyond_opencvs_limit_are_decoded_by_pillow(tmp_path: Path) -> None:
    # OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS once, at import: start a process with it low.
    rgb, rgb16 = write_png(tmp_path, size=(20, 20)), tmp_path / "rgb16.png"
    write_image(rgb16, photo_like(20, 20, dtype=np.uint16))
    script = (
        "import sys, cv2, numpy as np\n"
        "from img2img.data.io import read_image, set_max_image_pixels, ImageReadError\n"
        "set_max_image_pixels(10**6)\n"
        "try:\n    cv2.imread(sys.argv[1])\n    sys.exit('OpenCV should refuse it')\n"
        "except cv2.error:\n    pass\n"
        "np.save(sys.stdout.buffer, read_image(sys.argv[1]))\n"
        "try:\n    read_image(sys.argv[2])\nexcept ImageReadError as e:\n"
        "    print(e.reason, file=sys.stderr)\n")
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": "100",
           "PYTHONPATH": str(Path(imgio.__file__).parents[2])}
    env.pop("OPENCV_LOG_LEVEL", None)
    res = subprocess.run([sys.executable, "-c", script, str(rgb.path), str(rgb16)], env=env,
                         capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    assert np.array_equal(np.load(io.BytesIO(res.stdout)), rgb.expected)
    assert b"16-bit colour PNG data beyond OpenCV's limits (100 pixels" in res.stderr
    assert b"OPENCV_IO_MAX_IMAGE_PIXELS" in res.stderr


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_lossless_round_trip(tmp_path: Path, ext: str, dtype: type, channels: int) -> None:
    arr = photo_like(13, 17, seed=channels, channels=channels, dtype=dtype)
    path = tmp_path / f"img{ext}"
    write_image(path, arr)
    back = read_image(path)
    assert back.dtype == dtype and np.array_equal(back, arr)


def test_two_dimensional_input_reads_back_as_one_channel(tmp_path: Path) -> None:
    arr = photo_like(5, 7, channels=1)[..., 0]
    write_image(tmp_path / "g.png", arr)
    assert np.array_equal(read_image(tmp_path / "g.png"), arr[..., None])


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_lossy_round_trip(tmp_path: Path, ext: str) -> None:
    arr = photo_like(37, 53)
    write_image(tmp_path / f"x{ext}", arr, quality=95)
    back = read_image(tmp_path / f"x{ext}")
    assert back.shape == arr.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - arr).mean() < 2.0


def test_webp_alpha_and_bmp_round_trip(tmp_path: Path) -> None:
    rgba = photo_like(9, 11, channels=4)
    write_image(tmp_path / "a.webp", rgba, quality=100)
    assert read_image(tmp_path / "a.webp").shape == (9, 11, 4)
    rgb = photo_like(9, 11)
    write_image(tmp_path / "a.bmp", rgb)
    assert np.array_equal(read_image(tmp_path / "a.bmp"), rgb)


def test_sixteen_bit_into_eight_bit_format_rounds(tmp_path: Path) -> None:
    arr = np.array([[0, 128, 129, 257, 32767, 32768, 65407, 65535]], np.uint16)
    arr = np.repeat(arr[..., None], 3, axis=2)
    write_image(tmp_path / "x.bmp", arr)  # BMP: 8-bit only, lossless
    back = read_image(tmp_path / "x.bmp")
    expected = np.round(arr.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert back.dtype == np.uint8 and np.array_equal(back, expected)


def test_alpha_into_jpeg_raises_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.jpg"
    with pytest.raises(ImageWriteError, match="out.jpg: JPEG cannot store alpha; use .png"):
        write_image(target, photo_like(4, 4, channels=4))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "array, name, match",
    [
        (np.zeros((4, 4, 3), np.float32), "x.png", "unsupported dtype float32"),
        (np.zeros((4, 4, 2), np.uint8), "x.png", "got shape"),
        (np.zeros((0, 4, 3), np.uint8), "x.png", "got shape"),
        (np.zeros((4, 4, 3), np.uint8), "x.gif", "unsupported output format"),
        (np.zeros((4, 4, 3), np.uint8), "noext", "no file suffix"),
    ],
)
def test_invalid_writes_raise(tmp_path: Path, array: np.ndarray, name: str, match: str) -> None:
    with pytest.raises(ImageWriteError, match=match) as info:
        write_image(tmp_path / name, array)
    assert name in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_encode_does_not_clobber_existing_target(tmp_path: Path) -> None:
    target = tmp_path / "keep.jpg"
    target.write_bytes(b"original")
    with pytest.raises(ImageWriteError):
        write_image(target, photo_like(4, 4, channels=4))
    assert target.read_bytes() == b"original"
    assert _leftovers(tmp_path) == []


def test_failed_replace_removes_temp_and_keeps_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "keep.png"
    target.write_bytes(b"original")

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imgio.os, "replace", boom)
    with pytest.raises(ImageWriteError, match="keep.png: No space left on device"):
        write_image(target, photo_like(4, 4))
    assert target.read_bytes() == b"original"
    assert _leftovers(tmp_path) == []


def test_successful_write_leaves_no_temp_and_normal_permissions(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", photo_like(4, 4))
    write_image(tmp_path / "a.png", photo_like(4, 4, seed=3))  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o666 & ~umask


def test_write_creates_missing_nested_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c" / "x.png"
    write_image(target, photo_like(3, 3))
    assert read_image(target).shape == (3, 3, 3)


def test_atomic_path_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "ckpt.pt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".ckpt.pt")
        assert tmp.name.endswith(".tmp")
        torch.save({"x": 1}, tmp)
    assert torch.load(target)["x"] == 1

    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("crash while saving")
    assert torch.load(target)["x"] == 1
    assert _leftovers(target.parent) == []


def test_atomic_write_bytes(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "d" / "f.json", b"{}", fsync=True)
    assert (tmp_path / "d" / "f.json").read_bytes() == b"{}"
    assert _leftovers(tmp_path / "d") == []


# --------------------------------------------------------------------------- convert


def test_max_value() -> None:
    assert max_value(np.uint8) == 255 and max_value(np.dtype("uint16")) == 65535
    with pytest.raises(ValueError):
        max_value(np.float32)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tensor_round_trip_is_exact(dtype: type) -> None:
    n = max_value(dtype) + 1
    img = np.arange(n, dtype=dtype).reshape(1, n, 1).repeat(3, axis=2)
    t = to_tensor(img)
    assert t.shape == (3, 1, n) and t.dtype == torch.float32 and t.is_contiguous()
    assert t.min().item() == -1.0 and t.max().item() == 1.0
    back = from_tensor(t, dtype)
    assert back.dtype == dtype and back.flags.c_contiguous and np.array_equal(back, img)


def test_batched_and_gray_conversion() -> None:
    batch = photo_like(4, 5, channels=3)[None].repeat(2, axis=0)
    t = to_tensor(batch)
    assert t.shape == (2, 3, 4, 5)
    assert np.array_equal(from_tensor(t), batch)
    assert to_tensor(photo_like(4, 5, channels=1)[..., 0]).shape == (1, 4, 5)


def test_from_tensor_clamps_and_rounds() -> None:
    t = torch.tensor([[[-5.0, 5.0, float("nan"), 0.0, 2 / 255 - 1 + 0.4 * 2 / 255]]])
    assert from_tensor(t)[0, :, 0].tolist() == [0, 255, 0, 128, 1]
