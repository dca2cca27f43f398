"""Published models of the long tail (SwinIR, SPAN, SAFMN, Compact, ESRGAN+...) through spandrel.

The weight files are made the way upstream saves them: spandrel's own architecture classes
(the published networks) at tiny sizes, their state dicts written with ``torch.save`` (bare
or in BasicSR's ``params_ema``) or as a ``.safetensors``. Outputs are compared with those
networks' own forwards, and with spandrel's own call where it pads to the size requirements.
CI installs the ``zoo`` extra (the Makefile's environment), so spandrel is imported directly.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import spandrel
import torch
from imgfactory import photo_like
from safetensors import safe_open
from safetensors.torch import load_file, save, save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.DnCNN import DnCNN
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.LaMa import LaMa
from spandrel.architectures.SAFMN import SAFMN
from spandrel.architectures.SPAN import SPAN
from spandrel.architectures.SwinIR import SwinIR

from img2img import cli
from img2img.checkpoint import CheckpointError, read_meta
from img2img.data.io import read_image, write_image
from img2img.errors import UsageError
from img2img.foreign import ForeignCheckpointError, import_file, recognise
from img2img.foreign.zoo import SpandrelGenerator
from img2img.inference.loader import load_model
from img2img.inference.translator import Translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")
EXTRA = "pip install 'img2img[zoo]'"


@dataclass
class Published:
    path: Path
    ref: torch.nn.Module  # the network as upstream builds it, same weights
    arch: str  # spandrel's architecture id
    scale: int
    multiple: int = 1
    minimum: int = 1


def _build(name: str) -> tuple[torch.nn.Module, str, int, int, int]:
    torch.manual_seed(0)
    if name == "span":
        net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)
        return net, "SPAN", 2, 1, 1
    if name == "swinir":
        net = SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4,
                     upscale=2, upsampler="pixelshuffledirect")
        return net, "SwinIR", 2, 1, 16
    if name == "safmn":
        return SAFMN(dim=8, n_blocks=1, ffn_scale=2.0, upscaling_factor=2), "SAFMN", 2, 8, 1
    if name == "compact":  # Real-ESRGAN's realesr-general / animevideo networks
        return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4), \
            "Compact", 4, 1, 1
    if name == "esrgan_plus":  # ESRGAN+, the RRDB with 1x1 residual convs
        return ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2, plus=True), \
            "ESRGAN", 2, 1, 2
    raise AssertionError(name)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Published]:
    root = tmp_path_factory.mktemp("zoo")
    found = {}
    for name in ("span", "swinir", "safmn", "compact", "esrgan_plus"):
        net, arch, scale, multiple, minimum = _build(name)
        net.eval()
        sd = net.state_dict()
        if name == "span":  # BasicSR-trained: the EMA weights in params_ema
            path = root / "4x_SPAN.pth"
            torch.save({"params_ema": sd, "iter": 5000}, path)
        elif name == "safmn":
            path = root / "SAFMN_x2.safetensors"
            save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        else:
            path = root / f"{name}.pth"
            torch.save(sd, path)
        found[name] = Published(path, net, arch, scale, multiple, minimum)
    return found


def _to_unit(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32) / np.iinfo(img.dtype).max).permute(2, 0, 1)[None]


def _from_unit(y: torch.Tensor, dtype: type) -> np.ndarray:
    arr = y[0].clamp(0, 1).permute(1, 2, 0).numpy() * np.iinfo(dtype).max
    return np.rint(arr).astype(dtype)


def _spandrel_call(ref: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """spandrel's own call on ``x``: padding to the size requirements, output clamped."""
    return spandrel.ModelLoader().load_from_state_dict(dict(ref.state_dict()))(x)


def _lama_state() -> dict[str, torch.Tensor]:
    """LaMa's tensors (51M parameters), without the time its random initialisation takes."""
    with torch.device("meta"):
        shapes = LaMa(in_nc=4, out_nc=3).state_dict()
    return {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}


def _run(capsys: pytest.CaptureFixture[str], main, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["span", "swinir", "safmn", "compact", "esrgan_plus"])
def test_published_files_load_and_compute_like_the_network(published, name: str) -> None:
    case = published[name]
    model, meta = load_model(case.path)
    assert isinstance(model, SpandrelGenerator)
    assert (meta.arch, meta.kwargs) == ("spandrel", {"architecture": case.arch})
    assert (meta.scale, meta.in_channels, meta.out_channels) == (case.scale, 3, 3)
    assert tuple(meta.value_range) == (0.0, 1.0) and meta.channel_order == "RGB"
    assert meta.size_multiple == case.multiple and model.min_size == case.minimum
    assert meta.extra["source"] == case.path.name and case.arch in meta.extra["family"]
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        got, want = model(x), case.ref(x).clamp(0, 1)
    assert got.shape == (2, 3, 16 * case.scale, 24 * case.scale)
    assert (got - want).abs().max().item() < 1e-5


def test_the_architectures_own_call_runs_per_image(tmp_path: Path) -> None:
    """FDnCNN (KAIR's gray denoiser) takes a noise-level map beside the image, which
    spandrel's call adds; the toolkit sees a 1-channel model and batches still work."""
    torch.manual_seed(0)
    ref = DnCNN(in_nc=2, out_nc=1, nc=8, nb=4, act_mode="BR", mode="FDnCNN").eval()
    path = tmp_path / "fdncnn_gray.pth"
    torch.save(ref.state_dict(), path)
    model, meta = load_model(path)
    assert (meta.kwargs["architecture"], meta.in_channels, meta.out_channels) == ("DnCNN", 1, 1)
    x = torch.rand(2, 1, 12, 10, generator=torch.Generator().manual_seed(2))
    level = torch.full((2, 1, 12, 10), 15 / 255)
    with torch.inference_mode():
        got, want = model(x), ref(torch.cat([x, level], 1)).clamp(0, 1)
    assert (got - want).abs().max().item() < 1e-5
    gray = photo_like(12, 10, seed=3, channels=1)[..., 0]
    out = Translator(model, meta, torch.device("cpu"))(gray)
    with torch.inference_mode():
        expect = _from_unit(ref(torch.cat([_to_unit(gray[..., None]), level[:1]], 1)), np.uint8)
    assert out.shape == (12, 10) and np.abs(out.astype(int) - expect[..., 0]).max() <= 1


def test_native_families_come_first_and_spandrel_takes_what_they_cannot_run() -> None:
    torch.manual_seed(0)
    plain = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict()
    assert recognise(plain).arch == "rrdbnet"  # spandrel knows it too: the native one wins
    plus = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2, plus=True)
    assert recognise(plus.state_dict()).family.startswith("ESRGAN (spandrel")
    # a variant neither runs keeps the native recogniser's explanation
    shuffle = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2,
                     upsampler="pixel_shuffle").state_dict()
    with pytest.raises(ForeignCheckpointError, match="pixel-shuffle variant is not supported"):
        recognise(shuffle)
    with pytest.raises(ForeignCheckpointError,
                       match=rf"reference U-Net.*architectures of spandrel {spandrel.__version__}"):
        recognise({"fc.weight": torch.zeros(2, 4)})


def test_translate_a_folder_keeps_size_times_scale_alpha_and_depth(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, published) -> None:
    for name in ("span", "safmn"):  # SAFMN needs multiples of 8: odd sizes are padded
        case = published[name]
        rgb = photo_like(13, 21, seed=1)
        rgba = photo_like(15, 17, seed=2, channels=4)
        deep = photo_like(11, 19, seed=3, dtype=np.uint16)
        src, dst = tmp_path / name / "in", tmp_path / name / "out"
        for file, img in (("a.png", rgb), ("b.png", rgba), ("c.png", deep)):
            write_image(src / file, img)
        code, _, err = _run(capsys, cli.translate_main, "--checkpoint", case.path, "--input",
                            src, "--output", dst, "--quiet")
        assert code == 0, err
        s = case.scale
        a, b, c = (read_image(dst / f) for f in ("a.png", "b.png", "c.png"))
        assert a.shape == (13 * s, 21 * s, 3)
        want = _from_unit(_spandrel_call(case.ref, _to_unit(rgb)), np.uint8)
        assert np.abs(a.astype(int) - want.astype(int)).max() <= 1
        assert b.shape == (15 * s, 17 * s, 4)
        alpha = cv2.resize(rgba[..., 3], (17 * s, 15 * s), interpolation=cv2.INTER_CUBIC)
        assert np.abs(b[..., 3].astype(int) - alpha.astype(int)).max() <= 1
        assert c.dtype == np.uint16 and c.shape == (11 * s, 19 * s, 3)
        want = _from_unit(_spandrel_call(case.ref, _to_unit(deep)), np.uint16)
        assert np.abs(c.astype(int) - want.astype(int)).max() <= 2


def test_size_requirements_are_met_for_any_input_size(published) -> None:
    safmn = Translator.from_checkpoint(published["safmn"].path, device="cpu")
    img = photo_like(13, 21, seed=4)
    out = safmn(img)
    assert out.shape == (26, 42, 3)
    want = _from_unit(_spandrel_call(published["safmn"].ref, _to_unit(img)), np.uint8)
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1
    swinir = Translator.from_checkpoint(published["swinir"].path, device="cpu")
    assert swinir.min_size == 16
    assert swinir(photo_like(5, 7, seed=5)).shape == (10, 14, 3)  # padded up to 16, cropped
    tiny = swinir(photo_like(1, 1, seed=6))
    assert tiny.shape == (2, 2, 3) and tiny.dtype == np.uint8


def test_import_writes_a_checkpoint_spandrel_rebuilds_with_the_same_pixels(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, published) -> None:
    case = published["swinir"]
    out_file = tmp_path / "swinir_x2.safetensors"
    code, out, err = _run(capsys, cli.import_main, case.path, "--out", out_file, "--quiet")
    assert code == 0, err and str(out_file) in out
    meta = read_meta(out_file)
    assert (meta.arch, meta.kwargs, meta.scale) == ("spandrel", {"architecture": "SwinIR"}, 2)
    assert tuple(meta.value_range) == (0.0, 1.0) and meta.extra["purpose"] == "SR"
    assert meta.extra["source_sha256"] == hashlib.sha256(case.path.read_bytes()).hexdigest()
    # the tensors keep spandrel's names: spandrel itself reads the file as the same model
    again = spandrel.ModelLoader().load_from_state_dict(load_file(str(out_file)))
    assert again.architecture.id == "SwinIR" and again.scale == 2
    write_image(tmp_path / "in" / "x.png", photo_like(18, 22, seed=7))
    outs = []
    for ckpt, dst in ((case.path, "o1"), (out_file, "o2")):
        code, _, err = _run(capsys, cli.translate_main, "--checkpoint", ckpt, "--input",
                            tmp_path / "in", "--output", tmp_path / dst, "--quiet")
        assert code == 0, err
        outs.append(read_image(tmp_path / dst / "x.png"))
    assert outs[0].shape == (36, 44, 3) and np.array_equal(outs[0], outs[1])


def test_a_checkpoint_whose_tensors_are_another_architecture_is_refused(
        tmp_path: Path, published) -> None:
    out_file = tmp_path / "span.safetensors"
    assert cli.import_main([str(published["span"].path), "--out", str(out_file), "--quiet"]) == 0
    with safe_open(str(out_file), framework="pt") as f:
        md = dict(f.metadata())
    md["kwargs"] = '{"architecture": "HAT"}'
    forged = tmp_path / "forged.safetensors"
    forged.write_bytes(save(load_file(str(out_file)), metadata=md))
    with pytest.raises(CheckpointError, match=r"forged\.safetensors: written for spandrel's HAT "
                                              r"architecture, .* reads its tensors as SPAN"):
        load_model(forged)


def test_models_the_toolkit_cannot_run_are_refused(published) -> None:
    with pytest.raises(ForeignCheckpointError, match=r"LaMa \(Inpainting\).*image and a mask"):
        recognise(_lama_state())
    rgba = Compact(num_in_ch=4, num_out_ch=4, num_feat=8, num_conv=2, upscale=2).state_dict()
    with pytest.raises(ForeignCheckpointError, match="4 input and 4 output channels"):
        recognise(rgba)
    with pytest.raises(UsageError, match="fp16: SwinIR is known to give wrong results"):
        Translator.from_checkpoint(published["swinir"].path, device="cpu", precision="fp16")


def test_without_spandrel_the_error_names_the_extra(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path, monkeypatch,
                                                    published) -> None:
    imported = tmp_path / "compact.safetensors"
    assert cli.import_main([str(published["compact"].path), "--out", str(imported),
                            "--quiet"]) == 0
    monkeypatch.setitem(sys.modules, "spandrel", None)  # `import spandrel` now fails
    with pytest.raises(ForeignCheckpointError) as err:
        import_file(published["span"].path)
    assert str(err.value).startswith(str(published["span"].path)) and EXTRA in str(err.value)
    write_image(tmp_path / "in" / "a.png", photo_like(8, 8))
    code, _, err_text = _run(capsys, cli.translate_main, "--checkpoint", imported, "--input",
                             tmp_path / "in", "--output", tmp_path / "out")
    assert code == 2 and str(imported) in err_text and EXTRA in err_text
    assert "Traceback" not in err_text and not (tmp_path / "out").exists()
    torch.manual_seed(0)  # the native families need no extra
    plain = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict()
    assert recognise(plain).arch == "rrdbnet"
