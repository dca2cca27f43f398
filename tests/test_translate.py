"""What a user of translation notices: the ``Translator`` API and ``img2img translate``.

A tiny random-weight ResNet generator (ngf=8) stands in for a trained model: the tests check
shapes, dtypes, channel layout, alpha, file handling, reruns and error reporting, not quality.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hugeimg import huge_png, huge_tiff
from imgfactory import (
    Sample,
    make_messy_tree,
    photo_like,
    write_animated,
    write_exif_jpeg,
    write_gray16_png,
    write_jpeg,
    write_png,
    write_rgba_png,
    write_still_gif,
    write_text_file,
    write_tiff_pages,
)
from PIL import Image
from safetensors.torch import save_file

from img2img.checkpoint import meta_for, save_generator
from img2img.cli import translate_main
from img2img.data.convert import from_tensor, to_tensor
from img2img.data.io import atomic_path, read_image
from img2img.inference.folder import plan, translate_jobs
from img2img.inference.tile_layout import TileOptions
from img2img.inference.translator import Translator
from img2img.nn import build_generator

ARCH, KWARGS = "resnet_6blocks", {"ngf": 8}


# --------------------------------------------------------------------------- fixtures


# One torch thread: these tests run many tiny forwards, where threads only add overhead.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def generator() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator(ARCH, **KWARGS).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, generator: torch.nn.Module) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "G_A2B.safetensors"
    save_generator(path, generator, meta_for(generator, ARCH, KWARGS, "cyclegan", "A2B"))
    return path


@pytest.fixture(scope="module")
def translator(checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(checkpoint, device="cpu")


def _img(h: int, w: int, channels: int = 3, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    return photo_like(h, w, seed=seed, channels=channels, dtype=dtype)


# --------------------------------------------------------------------------- Translator API


def test_odd_size_rgb_keeps_shape_and_dtype(translator: Translator) -> None:
    img = _img(37, 53)
    before = img.copy()
    out = translator(img)
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous
    assert np.array_equal(img, before), "the input array must not be modified"
    assert not np.array_equal(out, img), "the network should change the image"
    assert np.array_equal(translator(img), out), "translation must be deterministic"


def test_checkpoint_reproduces_the_saved_network(
    translator: Translator, generator: torch.nn.Module, checkpoint: Path
) -> None:
    img = _img(32, 48, seed=3)  # a multiple of 4 and large enough: no padding involved
    with torch.no_grad():
        ref = from_tensor(generator(to_tensor(img)[None])[0])
    assert np.array_equal(translator(img), ref)
    again = Translator.from_checkpoint(checkpoint, device="cpu")
    assert np.array_equal(again(img), ref)


def test_rgba_keeps_alpha_bit_exactly(translator: Translator) -> None:
    rgba = _img(37, 53, channels=4, seed=1)
    out = translator(rgba)
    assert out.shape == rgba.shape and out.dtype == np.uint8
    assert np.array_equal(out[..., 3], rgba[..., 3])
    assert np.array_equal(out[..., :3], translator(np.ascontiguousarray(rgba[..., :3])))


def test_gray_alpha_keeps_alpha(translator: Translator) -> None:
    la = _img(21, 11, channels=2, seed=2)
    out = translator(la)
    assert out.shape == la.shape and out.dtype == np.uint8
    assert np.array_equal(out[..., 1], la[..., 1])


def test_16_bit_stays_16_bit(translator: Translator) -> None:
    img = _img(37, 53, dtype=np.uint16, seed=4)
    out = translator(img)
    assert out.shape == img.shape and out.dtype == np.uint16
    # Real 16-bit precision, not 8-bit values scaled up (which would all be multiples of 257).
    assert np.any(out % 257 != 0)
    rgba16 = _img(9, 14, channels=4, dtype=np.uint16, seed=5)
    out16 = translator(rgba16)
    assert out16.dtype == np.uint16 and np.array_equal(out16[..., 3], rgba16[..., 3])


def test_grayscale_layouts_are_kept(translator: Translator) -> None:
    gray = _img(37, 53, channels=1, seed=6)
    out3d = translator(gray)
    assert out3d.shape == (37, 53, 1) and out3d.dtype == np.uint8
    out2d = translator(gray[..., 0])
    assert out2d.shape == (37, 53) and out2d.dtype == np.uint8
    assert np.array_equal(out2d, out3d[..., 0])
    g16 = translator(_img(12, 7, channels=1, dtype=np.uint16, seed=7)[..., 0])
    assert g16.shape == (12, 7) and g16.dtype == np.uint16


def test_pil_images_give_pil_images(translator: Translator) -> None:
    arr = _img(37, 53, seed=8)
    pil = Image.fromarray(arr)
    out = translator(pil)
    assert isinstance(out, Image.Image)
    assert out.size == pil.size and out.mode == "RGB"
    assert np.array_equal(np.asarray(out), translator(arr))
    for mode in ("RGBA", "L", "LA"):
        src = pil.convert(mode)
        res = translator(src)
        assert isinstance(res, Image.Image) and res.size == src.size and res.mode == mode
    rgba = pil.convert("RGBA")
    assert np.array_equal(np.asarray(translator(rgba))[..., 3], np.asarray(rgba)[..., 3])
    pil16 = Image.fromarray(_img(10, 6, channels=1, dtype=np.uint16, seed=15)[..., 0])
    res16 = translator(pil16)
    assert isinstance(res16, Image.Image) and res16.size == pil16.size
    assert res16.mode == pil16.mode and np.asarray(res16).dtype == np.uint16


def test_tensors_give_tensors(translator: Translator) -> None:
    arr = _img(37, 53, seed=9)
    chw = to_tensor(arr)
    assert chw.min() >= -1 and chw.max() <= 1
    out = translator(chw)
    assert isinstance(out, torch.Tensor)
    assert out.shape == chw.shape and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    assert np.array_equal(from_tensor(out), translator(arr))
    nchw = translator(chw[None])
    assert nchw.shape == (1, 3, 37, 53)
    assert torch.allclose(nchw[0], out, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 9), (4, 4), (17, 3), (3, 17), (9, 4)])
def test_tiny_and_odd_sizes(translator: Translator, size: tuple[int, int]) -> None:
    img = _img(*size, seed=10)
    out = translator(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    t = translator(to_tensor(img))
    assert t.shape == (3, *size)


def test_unet_is_padded_only_as_needed(tmp_path: Path) -> None:
    """A U-Net runs at exactly its size multiple (1x1 innermost): no extra padding there,
    and tiny or odd images still work."""
    torch.manual_seed(1)
    net = build_generator("unet", ngf=8, num_downs=5).eval()
    path = tmp_path / "unet.safetensors"
    save_generator(path, net, meta_for(net, "unet", {"ngf": 8, "num_downs": 5}, "pix2pix"))
    unet = Translator.from_checkpoint(path, device="cpu")
    img = _img(32, 64, seed=16)
    with torch.no_grad():
        ref = from_tensor(net(to_tensor(img)[None])[0])
    assert np.array_equal(unet(img), ref)
    for size in [(1, 1), (5, 9), (33, 7)]:
        assert unet(_img(*size, seed=17)).shape == (*size, 3)


def test_batch_matches_one_by_one(translator: Translator) -> None:
    imgs = [_img(37, 53, seed=s) for s in range(4)]
    batch = translator.translate_arrays(imgs)
    for img, out in zip(imgs, batch, strict=True):
        single = translator(img)
        assert out.shape == single.shape and out.dtype == single.dtype
        # Instance norm is per sample; batched convolutions may differ in the last float bit,
        # which can flip a rounding by one level.
        assert np.abs(out.astype(int) - single.astype(int)).max() <= 1
    x = torch.stack([to_tensor(i) for i in imgs])
    together = translator.translate_tensor(x)
    apart = torch.cat([translator.translate_tensor(x[i : i + 1]) for i in range(len(imgs))])
    assert torch.allclose(together, apart, atol=1e-5, rtol=0)


def test_mixed_list_keeps_order_and_layouts(translator: Translator) -> None:
    imgs = [
        _img(37, 53, seed=11),
        _img(5, 9, channels=4, seed=12),
        _img(37, 53, channels=1, dtype=np.uint16, seed=13)[..., 0],
        _img(37, 53, seed=14),
    ]
    outs = translator.translate_arrays(imgs)
    assert [(o.shape, o.dtype) for o in outs] == [(i.shape, i.dtype) for i in imgs]
    for img, out in zip(imgs, outs, strict=True):
        assert np.abs(out.astype(int) - translator(img).astype(int)).max() <= 1


def test_unsupported_inputs_raise(translator: Translator) -> None:
    with pytest.raises(ValueError, match="uint8 or uint16"):
        translator(np.zeros((8, 8, 3), np.float64))
    with pytest.raises(ValueError, match="channels"):
        translator(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(TypeError):
        translator([[1, 2], [3, 4]])


# --------------------------------------------------------------------------- CLI helpers


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()  # drop anything printed before
    code = translate_main([str(a) for a in args] + ["--device", "cpu", "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def _summary(stdout: str) -> tuple[int, int, int]:
    """(translated, skipped, failed) from the final stdout line."""
    last = stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"(\d+) translated, (\d+) skipped.*, (\d+) failed", last)
    assert m, f"no summary line at the end of stdout: {stdout!r}"
    return int(m[1]), int(m[2]), int(m[3])


def _files(root: Path) -> set[str]:
    """Every file below ``root`` (hidden ones too), as relative POSIX paths."""
    return {
        (Path(d) / f).relative_to(root).as_posix() for d, _, names in os.walk(root) for f in names
    }


def _hashes(root: Path) -> dict[str, str]:
    return {r: hashlib.sha256((root / r).read_bytes()).hexdigest() for r in _files(root)}


def _good(tree: dict[str, Sample]) -> dict[str, Sample]:
    return {r: s for r, s in tree.items() if s.ok and s.listed}


def _bad(tree: dict[str, Sample]) -> dict[str, Sample]:
    return {r: s for r, s in tree.items() if not s.ok and s.listed}


def _age(root: Path) -> None:
    """Backdate every file so that a rewrite is visible in its mtime."""
    for r in _files(root):
        os.utime(root / r, (1_000_000_000, 1_000_000_000))


def _rewritten(root: Path) -> set[str]:
    return {r for r in _files(root) if (root / r).stat().st_mtime != 1_000_000_000}


@pytest.fixture
def messy(tmp_path: Path) -> tuple[Path, dict[str, Sample]]:
    root = tmp_path / "in"
    return root, make_messy_tree(root)


# --------------------------------------------------------------------------- folder CLI


def test_messy_folder(
    capsys: pytest.CaptureFixture[str],
    checkpoint: Path,
    translator: Translator,
    tmp_path: Path,
    messy: tuple[Path, dict[str, Sample]],
) -> None:
    src, tree = messy
    dst = tmp_path / "out"
    before = _hashes(src)
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output", dst)

    assert code == 1, "unreadable inputs must make the exit code 1"
    good, bad = _good(tree), _bad(tree)
    assert good and bad
    # Exactly one output per good input, same relative path and name; nothing else (no temp
    # files, no hidden files, no outputs for bad or non-image files).
    assert _files(dst) == set(good)
    assert not [r for r in _files(dst) if Path(r).name.startswith(".") or r.endswith(".tmp")]
    for rel, sample in good.items():
        expected = read_image(sample.path)  # EXIF-rotated inputs: output has the upright size
        result = read_image(dst / rel)
        assert result.shape == expected.shape, rel
        assert result.dtype == expected.dtype, rel
        if expected.shape[2] == 4:  # all alpha inputs here are lossless: alpha is kept exactly
            assert np.array_equal(result[..., 3], expected[..., 3]), rel
        if Path(rel).suffix.lower() in (".png", ".tif", ".tiff", ".bmp"):  # lossless outputs
            # The files hold what the API gives (batching may flip a rounding by one level).
            api = translator(expected)
            assert np.abs(result.astype(int) - api.astype(int)).max() <= 1, rel
    assert not np.array_equal(read_image(dst / "gray.png"), read_image(src / "gray.png"))
    assert read_image(dst / "exif/exif6.jpg").shape[:2] == (50, 30)

    # Every bad file is named once in stderr with its reason; good files are not.
    lines = err.splitlines()
    for sample in bad.values():
        hits = [line for line in lines if f"{sample.path}:" in line]
        assert len(hits) == 1, (sample.path, err)
        assert sample.reason in hits[0], (sample.reason, hits[0])
    for sample in good.values():
        assert not [line for line in lines if f"{sample.path}:" in line], err
    assert "notes.txt" not in err and "secret.png" not in err

    assert _summary(out) == (len(good), 0, len(bad))
    assert _hashes(src) == before, "inputs must not be modified, nor files added to the input"


def test_rerun_skips_overwrite_redoes_and_deleted_output_is_redone(
    capsys: pytest.CaptureFixture[str],
    checkpoint: Path,
    tmp_path: Path,
    messy: tuple[Path, dict[str, Sample]],
) -> None:
    src, tree = messy
    dst = tmp_path / "out"
    good, bad = _good(tree), _bad(tree)
    args = ["--checkpoint", checkpoint, "--input", src, "--output", dst]
    assert _run(capsys, *args)[0] == 1
    outputs = _hashes(dst)
    _age(dst)

    code, out, err = _run(capsys, *args)
    assert code == 1  # the bad files are still bad
    assert _summary(out) == (0, len(good), len(bad))
    assert _rewritten(dst) == set() and _hashes(dst) == outputs

    victim = "deep/nested/dir/rgb16.png"
    (dst / victim).unlink()
    code, out, _ = _run(capsys, *args)
    assert _summary(out) == (1, len(good) - 1, len(bad))
    assert _rewritten(dst) == {victim} and _hashes(dst) == outputs

    _age(dst)
    code, out, _ = _run(capsys, *args, "--overwrite")
    assert code == 1
    assert _summary(out) == (len(good), 0, len(bad))
    assert _rewritten(dst) == set(good)
    assert _hashes(dst) == outputs, "the same model gives the same files"


def test_all_good_folder_exits_0(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    write_jpeg(src, "photo.jpg", size=(19, 23))
    write_rgba_png(src / "sub", "rgba.png", size=(6, 10))
    write_gray16_png(src / "sub/deeper", "g16.png", size=(8, 5))
    write_png(src, "dot.png", size=(1, 1))
    code, out, err = _run(
        capsys, "--checkpoint", checkpoint, "--input", src, "--output", tmp_path / "out"
    )
    assert code == 0, err
    assert _summary(out) == (4, 0, 0)
    assert "failed" not in err
    assert _files(tmp_path / "out") == {
        "photo.jpg",
        "sub/rgba.png",
        "sub/deeper/g16.png",
        "dot.png",
    }
    g16 = read_image(tmp_path / "out/sub/deeper/g16.png")
    assert g16.shape == (8, 5, 1) and g16.dtype == np.uint16


def test_progress_bar_does_not_disturb_the_summary(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    write_png(tmp_path / "in", "a.png", size=(9, 9))
    code = translate_main(
        [
            "--checkpoint",
            str(checkpoint),
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0 and _summary(out) == (1, 0, 0)


# --------------------------------------------------------------------------- input forms


@pytest.mark.parametrize("ext", ["png", ".png", "PNG"])
def test_ext_png_on_jpeg_inputs(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path, ext: str
) -> None:
    src = tmp_path / "in"
    write_jpeg(src, "a.jpg", size=(13, 21))
    write_jpeg(src / "sub", "b.jpeg", size=(7, 5), seed=1)
    write_jpeg(src, "C.JPG", size=(4, 4), seed=2)
    dst = tmp_path / "out"
    code, out, err = _run(
        capsys, "--checkpoint", checkpoint, "--input", src, "--output", dst, "--ext", ext
    )
    assert code == 0, err
    assert _files(dst) == {"a.png", "sub/b.png", "C.png"}
    for rel, size in {"a.png": (13, 21), "sub/b.png": (7, 5), "C.png": (4, 4)}.items():
        assert (dst / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = read_image(dst / rel)
        assert img.shape == (*size, 3) and img.dtype == np.uint8


def test_ext_that_maps_two_inputs_to_one_output_is_refused(
    capsys: pytest.CaptureFixture[str],
    checkpoint: Path,
    tmp_path: Path,
    messy: tuple[Path, dict[str, Sample]],
) -> None:
    src, _ = messy  # holds deep/cmyk.jpeg and deep/cmyk.tif, misc/photo.webp and misc/photo.bmp
    dst = tmp_path / "out"
    code, out, err = _run(
        capsys, "--checkpoint", checkpoint, "--input", src, "--output", dst, "--ext", "png"
    )
    assert code == 2 and err.startswith("error:")
    pairs = [("cmyk.jpeg", "cmyk.tif"), ("photo.webp", "photo.bmp"), ("text.jpg", "text.png")]
    assert any(a in err and b in err for a, b in pairs), err
    assert not dst.exists()


def test_recursive_glob_keeps_paths_under_its_base(
    capsys: pytest.CaptureFixture[str],
    checkpoint: Path,
    tmp_path: Path,
    messy: tuple[Path, dict[str, Sample]],
) -> None:
    src, tree = messy
    dst = tmp_path / "out"
    code, out, err = _run(
        capsys, "--checkpoint", checkpoint, "--input", f"{src}/**/*.png", "--output", dst
    )
    pngs = {r: s for r, s in tree.items() if s.listed and r.endswith(".png")}
    good = {r for r, s in pngs.items() if s.ok}
    bad = [s for s in pngs.values() if not s.ok]
    assert code == 1
    assert _files(dst) == good
    assert _summary(out) == (len(good), 0, len(bad))
    assert all(f"{s.path}:" in err for s in bad)

    dst2 = tmp_path / "out2"
    code, out, err = _run(
        capsys, "--checkpoint", checkpoint, "--input", f"{src}/deep/**/*.png", "--output", dst2
    )
    assert code == 0, err
    assert _files(dst2) == {"nested/dir/rgb16.png", "nested/dir/gray16.png"}
    assert read_image(dst2 / "nested/dir/rgb16.png").dtype == np.uint16


def test_single_file_input(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    sample = write_exif_jpeg(tmp_path / "in" / "sub", "rot.jpg")  # stored 30x50, upright 50x30
    write_jpeg(tmp_path / "in" / "sub", "other.jpg")
    dst = tmp_path / "out"
    code, out, err = _run(
        capsys, "--checkpoint", checkpoint, "--input", sample.path, "--output", dst
    )
    assert code == 0, err
    assert _files(dst) == {"rot.jpg"}
    assert read_image(dst / "rot.jpg").shape == (50, 30, 3)
    assert _summary(out) == (1, 0, 0)


# --------------------------------------------------------------------------- pixel limit


def test_huge_png_in_a_folder_fails_alone(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    write_png(src, "a.png")
    write_jpeg(src / "sub", "b.jpg")
    bomb = huge_png(src / "bomb.png")  # 0.4 MB file, 400 MB of pixels
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src,
                          "--output", tmp_path / "out")
    assert code == 1
    assert _summary(out) == (2, 0, 1)
    assert _files(tmp_path / "out") == {"a.png", "sub/b.jpg"}
    assert (f"failed: {bomb}: 20000x20000 = 400.0 MP is more than the limit of 268.4 MP for "
            f"decoding a whole image; raise it with --max-image-pixels") in err


def test_max_image_pixels_flag(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path,
    pixel_limit: object,
) -> None:
    src = tmp_path / "in"
    write_png(src, "small.png", size=(10, 12))
    write_png(src, "large.png", size=(20, 21))
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src,
                          "--output", tmp_path / "out", "--max-image-pixels", "200")
    assert code == 1 and _summary(out) == (1, 0, 1)
    assert "large.png: 21x20 = 420 pixels is more than the limit of 200 pixels" in err
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src,
                          "--output", tmp_path / "out", "--max-image-pixels", "420")
    assert code == 0 and _summary(out) == (1, 1, 0), err
    with pytest.raises(SystemExit) as info:
        _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output", tmp_path / "out",
             "--max-image-pixels", "0")
    assert info.value.code == 2 and "--max-image-pixels" in capsys.readouterr().err


def test_huge_tiff_without_rasterio_names_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, checkpoint: Path,
    tmp_path: Path,
) -> None:
    (tmp_path / "in").mkdir()
    bomb = huge_tiff(tmp_path / "in" / "bomb.tif")
    monkeypatch.setitem(sys.modules, "rasterio", None)
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", tmp_path / "in",
                          "--output", tmp_path / "out")
    assert code == 1 and _summary(out) == (0, 0, 1)
    assert (f"failed: {bomb}: 20001x20000 = 400.0 MP is more than the limit of 268.4 MP for "
            f"decoding a whole image; raise it with --max-image-pixels, or translate it by "
            f"windows after pip install 'img2img[geo]'") in err


def test_max_image_pixels_on_train_too(tmp_path: Path, pixel_limit: object) -> None:
    from img2img.cli import train_main, train_parser, translate_parser
    from img2img.data.io import DEFAULT_MAX_IMAGE_PIXELS, max_image_pixels

    assert DEFAULT_MAX_IMAGE_PIXELS == 2**28
    for p in (train_parser(), translate_parser()):
        assert "default 2**28 = 268435456" in " ".join(p.format_help().split())
    assert train_main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                       "--quiet", "--max-image-pixels", "5000"]) == 2
    assert max_image_pixels() == 5000


# --------------------------------------------------------------------------- usage errors


def _assert_usage_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (out, err)
    assert err.startswith("error:"), err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize("sub", ["sub", "", "deep/new"])
def test_output_inside_input_is_refused(
    capsys: pytest.CaptureFixture[str],
    checkpoint: Path,
    messy: tuple[Path, dict[str, Sample]],
    sub: str,
) -> None:
    src, _ = messy
    before = _hashes(src)
    code, out, err = _run(
        capsys, "--checkpoint", checkpoint, "--input", src, "--output", src / sub if sub else src
    )
    _assert_usage_error(code, out, err, "input folder")
    assert _hashes(src) == before


def test_output_inside_a_recursive_glob_base_is_refused(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    # The next run's '**' would list the outputs as inputs, so the rerun could not finish.
    src = tmp_path / "in"
    write_png(src, "a.png", size=(9, 9))
    write_png(src / "sub", "b.png", size=(9, 9))
    before = _hashes(src)
    code, out, err = _run(
        capsys, "--checkpoint", checkpoint, "--input", f"{src}/**/*.png", "--output", src / "res"
    )
    _assert_usage_error(code, out, err, "input folder")
    assert _hashes(src) == before


def test_output_below_a_flat_glob_base_is_fine_and_reruns(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    write_png(src, "a.png", size=(9, 9))
    args = ["--checkpoint", checkpoint, "--input", f"{src}/*.png", "--output", src / "res"]
    code, out, err = _run(capsys, *args)
    assert code == 0 and _summary(out) == (1, 0, 0), err
    assert _files(src) == {"a.png", "res/a.png"}
    code, out, err = _run(capsys, *args)
    assert code == 0 and _summary(out) == (0, 1, 0), err


def test_output_that_is_a_file_is_refused(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    write_png(tmp_path / "in", "a.png")
    (tmp_path / "out").write_text("keep me")
    code, out, err = _run(
        capsys, "--checkpoint", checkpoint, "--input", tmp_path / "in", "--output", tmp_path / "out"
    )
    _assert_usage_error(code, out, err, "not a folder")
    assert (tmp_path / "out").read_text() == "keep me"


def test_missing_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_png(tmp_path / "in", "a.png")
    missing = tmp_path / "nope.safetensors"
    code, out, err = _run(
        capsys, "--checkpoint", missing, "--input", tmp_path / "in", "--output", tmp_path / "out"
    )
    _assert_usage_error(code, out, err, str(missing), "not found")
    assert not (tmp_path / "out").exists()


def test_foreign_safetensors_is_not_a_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_png(tmp_path / "in", "a.png")
    foreign = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(foreign), metadata={"format": "pt"})
    code, out, err = _run(
        capsys, "--checkpoint", foreign, "--input", tmp_path / "in", "--output", tmp_path / "out"
    )
    _assert_usage_error(code, out, err, str(foreign), "not an img2img generator checkpoint")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"this is just text\n", b"", b"\x00" * 7])
def test_non_safetensors_file_is_not_a_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    write_png(tmp_path / "in", "a.png")
    bogus = tmp_path / "model.safetensors"
    bogus.write_bytes(content)
    code, out, err = _run(
        capsys, "--checkpoint", bogus, "--input", tmp_path / "in", "--output", tmp_path / "out"
    )
    _assert_usage_error(code, out, err, str(bogus))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec", ["missing_dir", "empty_dir", "in/*.xyz", "in/**/nothing*.png"])
def test_input_that_matches_nothing(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path, spec: str
) -> None:
    write_png(tmp_path / "in", "a.png")
    (tmp_path / "empty_dir").mkdir()
    code, out, err = _run(
        capsys, "--checkpoint", checkpoint, "--input", tmp_path / spec, "--output", tmp_path / "out"
    )
    _assert_usage_error(code, out, err, spec)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- links and leftovers


OUTSIDE = "destination resolves outside the output folder"


def _failures(err: str) -> dict[str, str]:
    """{path: reason} of the ``failed: PATH: REASON`` lines on stderr."""
    out = {}
    for line in err.splitlines():
        if line.startswith("failed: "):
            path, _, reason = line[len("failed: "):].partition(": ")
            out[path] = reason
    return out


def test_links_in_the_output_never_lead_writes_out(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    src, dst, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    for rel in ("a.png", "b.png", "sub/c.png", "deep/d.png", "fine/e.png"):
        write_png(src / Path(rel).parent, Path(rel).name, size=(9, 9))
    (elsewhere / "dir").mkdir(parents=True)
    (elsewhere / "victim.png").write_bytes(b"keep me")
    dst.mkdir()
    (dst / "sub").symlink_to(elsewhere / "dir")  # a subfolder leading out of the output
    (dst / "deep").symlink_to(src / "deep")  # ... and one leading into the input tree
    (dst / "b.png").symlink_to(elsewhere / "victim.png")  # an output file that is a link out
    before = _hashes(src)

    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output", dst)

    assert code == 1, err
    assert _summary(out) == (2, 0, 3)
    failures = _failures(err)
    for rel in ("b.png", "sub/c.png", "deep/d.png"):
        assert OUTSIDE in failures[str(src / rel)], err
    assert _files(elsewhere) == {"victim.png"} and (elsewhere / "victim.png").read_bytes() == \
        b"keep me"
    assert _hashes(src) == before, "nothing may appear in (or change below) the input tree"
    assert read_image(dst / "a.png").shape == (9, 9, 3)
    assert read_image(dst / "fine/e.png").shape == (9, 9, 3)


@pytest.mark.parametrize("tile", [None, 8])
def test_a_link_made_after_planning_is_caught_before_writing(
    translator: Translator, tmp_path: Path, tile: int | None
) -> None:
    src, dst, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    write_png(src, "a.png", size=(20, 20))
    write_png(src / "sub" / "new", "b.png", size=(20, 20))
    elsewhere.mkdir()
    planned = plan(str(src), dst)
    assert len(planned.jobs) == 2 and not planned.failed
    dst.mkdir()
    (dst / "sub").symlink_to(elsewhere)  # swapped in while the run was queued
    report = translate_jobs(translator, planned.jobs, tiling=TileOptions(tile=tile))
    assert report.done == [dst / "a.png"]
    assert [(p, r.split(":")[0]) for p, r in report.failed] == [(src / "sub/new/b.png", OUTSIDE)]
    assert list(elsewhere.iterdir()) == [], "not even the parent folders may be created there"


def test_rerun_removes_leftover_temp_files_of_ours_only(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    src, dst, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    write_png(src, "a.png", size=(9, 9))
    write_png(src / "sub", "b.png", size=(9, 9))
    ours = [dst / ".a.png.0123abcd.tmp", dst / "sub/.b.png.deadbeef.tmp",
            dst / "sub/.big.tif.00ff00ff.tmp"]
    theirs = [dst / ".notes.tmp", dst / ".a.png.0123ABCD.tmp", dst / ".a.png.0123abcd.tmp.bak",
              dst / "a.png.0123abcd.tmp", dst / ".cache/.x.png.12345678.tmp",
              elsewhere / ".c.png.87654321.tmp"]
    for f in ours + theirs:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"\0" * 1000)
    (dst / "linked").symlink_to(elsewhere)  # not followed: not our output tree
    args = ["--checkpoint", checkpoint, "--input", src, "--output", dst]

    with atomic_path(dst / "busy.png") as busy:  # a temp file a running writer holds
        code, out, err = _run(capsys, *args)
        assert busy.exists(), "a temp file in use must not be removed"
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        "2 translated, 0 skipped (output exists), 0 failed, removed 3 leftover temp files")
    assert not [f for f in ours if f.exists()]
    assert all(f.exists() for f in theirs)

    code, out, err = _run(capsys, *args)  # nothing left to remove: no mention
    assert code == 0 and out.strip().splitlines()[-1] == (
        "0 translated, 2 skipped (output exists), 0 failed")


def test_inputs_left_out_are_reported_with_the_reason(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    write_png(src, "good.png", size=(9, 9))
    still = write_still_gif(src, "still.gif")
    anim = write_animated(src, "anim.gif")
    apng = write_animated(src / "sub", "anim.png")
    pages = write_tiff_pages(src, "pages.tif", (0, 0, 0))
    write_tiff_pages(src, "overview.tif", (0, 1))  # one page and its reduced copy: fine
    (src / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (src / "sub" / "gone.png").symlink_to(tmp_path / "missing.png")
    write_text_file(src, "notes.txt")  # not image-like: not an input of a folder run
    dst = tmp_path / "out"

    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output", dst)
    assert code == 1, err
    failures = _failures(err)
    assert "animated GIF: not supported" in failures[str(anim.path)]
    assert "animated PNG: not supported" in failures[str(apng.path)]
    assert "multi-page TIFF (3 pages)" in failures[str(pages.path)]
    assert "--ext" in failures[str(still.path)]
    assert "unsupported image format .heic" in failures[str(src / "photo.heic")]
    assert "broken symbolic link" in failures[str(src / "sub/gone.png")]
    assert len(failures) == 6 and "notes.txt" not in err
    assert _summary(out) == (2, 0, 6)
    assert _files(dst) == {"good.png", "overview.tif"}
    assert read_image(dst / "overview.tif").shape == (12, 10, 3)

    # With --ext a still GIF is translated; the rest stay refused.
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", src, "--output",
                          tmp_path / "png", "--ext", "png")
    assert code == 1 and _summary(out) == (3, 0, 5), err
    assert read_image(tmp_path / "png/still.png").shape == (12, 10, 3)
    assert str(still.path) not in err

    # A glob reports every match it does not translate, whatever the suffix.
    code, out, err = _run(capsys, "--checkpoint", checkpoint, "--input", f"{src}/*",
                          "--output", tmp_path / "glob", "--ext", "png")
    failures = _failures(err)
    assert code == 1 and "not an image file name (.txt" in failures[str(src / "notes.txt")]
    assert str(src / "sub/gone.png") not in failures, "a flat glob does not reach sub/"


@pytest.mark.parametrize("ext", ["gif", ".GIF", "xyz"])
def test_ext_that_cannot_be_written_is_a_usage_error_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ext: str
) -> None:
    write_png(tmp_path / "in", "a.png")
    missing = tmp_path / "nope.safetensors"  # loading it would be the first model work
    code, out, err = _run(capsys, "--checkpoint", missing, "--input", tmp_path / "in",
                          "--output", tmp_path / "out", "--ext", ext)
    _assert_usage_error(code, out, err, f"--ext {ext}", "cannot write")
    assert len(err.strip().splitlines()) == 1 and "nope" not in err
    assert not (tmp_path / "out").exists()
