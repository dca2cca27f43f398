"""ONNX export and ONNX Runtime inference, as a user of ``img2img export`` and of
``translate --checkpoint G.onnx`` sees them.

Tiny random-weight generators of every native family are exported, checked against PyTorch
at several sizes (odd ones padded by the translator), and run through the folder pipeline.
Needs the ``onnx`` extra: skipped without it, but required under CI (the Makefile installs it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import make_messy_tree, photo_like

from img2img.checkpoint import meta_for, save_generator
from img2img.cli import export_main, translate_main
from img2img.data.io import read_image
from img2img.inference import onnx_backend, onnx_export
from img2img.inference.translator import Translator
from img2img.nn import build_generator

try:
    import onnx
    import onnxruntime  # noqa: F401
    import onnxscript  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("needs pip install 'img2img[onnx]'", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = {
    "resnet_6blocks": ({"ngf": 8}, "cyclegan"),
    "unet_128": ({"ngf": 8}, "pix2pix"),
    "srresnet_x2": ({"scale": 2, "channels": 8, "n_blocks": 2}, "sr"),
    "srresnet_x4": ({"scale": 4, "channels": 8, "n_blocks": 1, "residual": True}, "sr"),
    "rrdbnet": ({"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 2}, "sr"),
    "msrresnet": ({"num_feat": 8, "num_block": 2, "scale": 4}, "sr"),
}


def _randomise_batch_norm(net: torch.nn.Module) -> torch.nn.Module:
    """Running statistics away from (0, 1), so that eval-mode batch norm does something."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _checkpoint(folder: Path, family: str) -> Path:
    kwargs, task = FAMILIES[family]
    arch = family.split("_x")[0]
    torch.manual_seed(0)
    net = _randomise_batch_norm(build_generator(arch, **kwargs))
    path = folder / f"{family}.safetensors"
    save_generator(path, net, meta_for(net, arch, kwargs, task))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, object]]:
    """family -> (.safetensors, .onnx, export report), each exported once."""
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for family in FAMILIES:
        ckpt = _checkpoint(folder, family)
        report = onnx_export.export_onnx(ckpt, folder / f"{family}.onnx")
        out[family] = (ckpt, folder / f"{family}.onnx", report)
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_export_matches_pytorch_at_several_sizes(exported: dict, family: str) -> None:
    ckpt, path, report = exported[family]
    assert path.is_file() and report.path == path
    assert len(report.rows) == 3 and all(r.max_abs <= 1e-4 for r in report.rows), report.rows
    assert len({r.shape[2:] for r in report.rows}) == 3 and {r.shape[0] for r in report.rows} \
        == {1, 2}
    # Batch, height and width are symbolic in the graph, not fixed to the traced size.
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]
    # Through the translator (its padding and value-range mapping), odd sizes included.
    torch_t = Translator.from_checkpoint(ckpt, device="cpu")
    onnx_t = Translator.from_checkpoint(path, device="cpu")
    side = 128 if family.startswith("unet") else 24
    gen = torch.Generator().manual_seed(1)
    for h, w in [(side, side), (side + 7, side - 5), (3, 5)]:
        x = torch.rand(1, 3, h, w, generator=gen) * 2 - 1
        want, got = torch_t.translate_tensor(x), onnx_t.translate_tensor(x)
        assert got.shape == want.shape == (1, 3, h * torch_t.meta.scale, w * torch_t.meta.scale)
        assert (got - want).abs().max().item() < 1e-4, (family, h, w)


def test_metadata_round_trip(exported: dict) -> None:
    for family, (ckpt, path, _) in exported.items():
        from_torch = Translator.from_checkpoint(ckpt, device="cpu")
        from_onnx = Translator.from_checkpoint(path, device="cpu")
        assert from_onnx.meta == from_torch.meta, family
        assert from_onnx.min_size == from_torch.min_size, family
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert from_torch.meta.to_metadata().items() <= props.items()
        assert props["onnx_fp16"] == "0" and props["onnx_opset"] == "18"


def test_cpu_tricks_are_not_in_the_graph(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Winograd (lowered to MatMul/Einsum) and the 2x2-phase convs (SpaceToDepth) would be
    taken by these accelerated 8-channel nets on the CPU were it not for the export's direct
    mode: every convolution module must be exactly one ONNX Conv, and the net keeps its fast
    layers after the export."""
    from img2img.nn.cpu import accelerate, winograd

    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    for family in ("resnet_6blocks", "srresnet_x4"):
        out = tmp_path / f"{family}.onnx"
        net = accelerate(build_generator(family.split("_x")[0], **FAMILIES[family][0]).eval())
        fast = [type(m) for m in net.modules()]
        assert {"Conv3x3", "PhaseConv2d"} & {t.__name__ for t in fast}, family
        onnx_export.write_onnx(net, out, {"arch": family}, onnx_export.DEFAULT_OPSET, False,
                               (1, 3, 24, 24))
        assert [type(m) for m in net.modules()] == fast, family
        ops = [n.op_type for n in onnx.load(str(out)).graph.node]
        convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
        shuffles = sum(isinstance(m, torch.nn.PixelShuffle) for m in net.modules())
        assert ops.count("Conv") == convs, family
        assert ops.count("DepthToSpace") == shuffles, family
        assert not {"SpaceToDepth", "MatMul", "Einsum", "Gemm"} & set(ops), family


def test_fp16_export_runs_close_to_fp32(exported: dict, tmp_path: Path) -> None:
    ckpt, fp32_path, _ = exported["resnet_6blocks"]
    out = tmp_path / "G16.onnx"
    report = onnx_export.export_onnx(ckpt, out, fp16=True)
    assert report.fp16 and all(r.max_abs <= onnx_export.FP16_TOLERANCE for r in report.rows)
    assert out.stat().st_size < 0.6 * fp32_path.stat().st_size
    img = photo_like(37, 29, seed=3)
    a = Translator.from_checkpoint(ckpt, device="cpu")(img).astype(int)
    b = Translator.from_checkpoint(out, device="cpu")(img).astype(int)
    assert np.abs(a - b).max() <= 2


# --------------------------------------------------------------------------- translate CLI


def _translate(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = translate_main([str(a) for a in args] + ["--device", "cpu", "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def _one_image(folder: Path) -> None:
    from PIL import Image

    folder.mkdir()
    Image.fromarray(photo_like(20, 24, seed=4)).save(folder / "a.png")


def _files(root: Path) -> set[str]:
    return {(Path(d) / f).relative_to(root).as_posix() for d, _, names in os.walk(root)
            for f in names}


@pytest.mark.parametrize("family", ["resnet_6blocks", "srresnet_x2"])
def test_translate_messy_folder_with_onnx(capsys: pytest.CaptureFixture[str], exported: dict,
                                          tmp_path: Path, family: str) -> None:
    ckpt, path, _ = exported[family]
    src = tmp_path / "in"
    tree = make_messy_tree(src)
    code_t, out_t, err_t = _translate(capsys, "--checkpoint", ckpt, "--input", src,
                                      "--output", tmp_path / "torch")
    code_o, out_o, err_o = _translate(capsys, "--checkpoint", path, "--input", src,
                                      "--output", tmp_path / "onnx")
    assert code_o == code_t == 1  # the tree has unreadable files
    assert out_o.splitlines()[-1] == out_t.splitlines()[-1]
    assert sorted(err_o.splitlines()) == sorted(err_t.splitlines())
    files = _files(tmp_path / "onnx")
    assert files == _files(tmp_path / "torch") and files
    kinds, far = set(), {}
    for rel in files:
        a, b = read_image(tmp_path / "torch" / rel), read_image(tmp_path / "onnx" / rel)
        assert a.shape == b.shape and a.dtype == b.dtype, rel
        if Path(rel).suffix.lower() in (".png", ".tif", ".tiff", ".bmp", ".webp"):
            one_level = 257 if a.dtype == np.uint16 else 1  # 1/255 of the range
            diff = np.abs(a.astype(int) - b.astype(int)).max()
            # A 1x1 image is padded to a constant field, where instance norm divides rounding
            # noise by ~sqrt(eps): PyTorch itself moves by ~1 when the input moves by 1e-6.
            constant = a.shape[:2] == (1, 1) and FAMILIES[family][1] == "cyclegan"
            if diff > one_level and not constant:
                far[rel] = int(diff)
            if a.ndim == 3 and a.shape[2] in (2, 4):
                assert np.array_equal(a[..., -1], b[..., -1]), rel
        kinds.add((a.dtype.name, a.shape[2] if a.ndim == 3 else 1))
    assert not far, far
    assert {("uint8", 3), ("uint8", 4), ("uint16", 3), ("uint8", 1)} <= kinds
    assert any(s.ok for s in tree.values())


def test_tiled_onnx_equals_tiled_pytorch(exported: dict) -> None:
    ckpt, path, _ = exported["srresnet_x2"]
    img = photo_like(70, 90, seed=5)
    a = Translator.from_checkpoint(ckpt, device="cpu").translate_tiled(img, tile=32,
                                                                      overlap=8)
    b = Translator.from_checkpoint(path, device="cpu").translate_tiled(img, tile=32, overlap=8)
    assert a.shape == b.shape == (140, 180, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_translate_cli_tiled_with_onnx(capsys: pytest.CaptureFixture[str], exported: dict,
                                       tmp_path: Path) -> None:
    from PIL import Image

    ckpt, path, _ = exported["resnet_6blocks"]
    (tmp_path / "in").mkdir()
    Image.fromarray(photo_like(61, 75, seed=2)).save(tmp_path / "in" / "big.png")
    for name, model in (("t", ckpt), ("o", path)):
        code, _, err = _translate(capsys, "--checkpoint", model, "--input", tmp_path / "in",
                                  "--output", tmp_path / name, "--tile", "32")
        assert code == 0, err
    a, b = (read_image(tmp_path / n / "big.png").astype(int) for n in ("t", "o"))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1


def test_torch_only_options_are_refused(capsys: pytest.CaptureFixture[str], exported: dict,
                                        tmp_path: Path) -> None:
    _, path, _ = exported["unet_128"]
    _one_image(tmp_path / "in")
    for flag in (["--per-image-norm"], ["--dropout-at-test"], ["--precision", "bf16"]):
        code, _, err = _translate(capsys, "--checkpoint", path, "--input", tmp_path / "in",
                                  "--output", tmp_path / "out", *flag)
        assert code == 2 and flag[0] in err and ".onnx" in err, err
        assert len(err.strip().splitlines()) == 1


def test_cuda_provider_when_asked_and_present(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx_backend.providers_for(torch.device("cuda"))[0] == "CUDAExecutionProvider"
    assert onnx_backend.providers_for(torch.device("cpu")) == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert onnx_backend.providers_for(torch.device("cuda")) == ["CPUExecutionProvider"]


# --------------------------------------------------------------------------- failures


def test_export_command_prints_parity_and_writes_the_file(
        capsys: pytest.CaptureFixture[str], exported: dict, tmp_path: Path) -> None:
    ckpt = exported["msrresnet"][0]
    out = tmp_path / "sub" / "G.onnx"
    assert export_main([str(ckpt), "--onnx", str(out), "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert out.is_file() and "opset 18" in stdout
    assert stdout.count("max abs diff") == 3 and stdout.count("mean abs diff") == 3
    assert _files(out.parent) == {"G.onnx"}  # no temp files left


def test_export_parity_failure_keeps_nothing(capsys: pytest.CaptureFixture[str],
                                             exported: dict, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = onnx_export.write_onnx

    def corrupted(model, path, *args, **kwargs):  # noqa: ANN001, ANN202
        real(model, path, *args, **kwargs)
        proto = onnx.load(str(path))
        weight = max(proto.graph.initializer, key=lambda t: len(t.raw_data) or len(t.float_data))
        arr = onnx.numpy_helper.to_array(weight).copy()
        arr.flat[0] += 0.5
        weight.CopyFrom(onnx.numpy_helper.from_array(arr, weight.name))
        onnx.save(proto, str(path))

    monkeypatch.setattr(onnx_export, "write_onnx", corrupted)
    ckpt = exported["resnet_6blocks"][0]
    out = tmp_path / "G.onnx"
    assert export_main([str(ckpt), "--onnx", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "differs from PyTorch" in err and "nothing written" in err
    assert len(err.strip().splitlines()) == 1
    assert _files(tmp_path) == set()


def _spy_exporters(monkeypatch: pytest.MonkeyPatch, torchscript_fails: bool = False
                   ) -> list[bool]:
    """The ``dynamo`` flag of every ``torch.onnx.export`` call, in order; with
    ``torchscript_fails`` the TorchScript exporter raises (as a torch without it would)."""
    calls: list[bool] = []
    real = torch.onnx.export

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(bool(kwargs.get("dynamo", True)))
        if torchscript_fails and not calls[-1]:
            raise RuntimeError("no TorchScript exporter")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", spy)
    return calls


@pytest.mark.parametrize("family", ["resnet_6blocks", "unet_128", "srresnet_x4"])
def test_int8_export_is_torchscripts_and_checked(exported: dict, family: str,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph int8 quantizes comes from the TorchScript exporter (seconds faster), passes
    the same parity check and carries the same metadata."""
    calls = _spy_exporters(monkeypatch)
    ckpt, onnx_path, report = exported[family]
    quick = onnx_export.export_onnx(ckpt, tmp_path / "q.onnx", quick=True)
    assert calls == [False]
    assert [r.run_shape for r in quick.rows] == [r.run_shape for r in report.rows]
    assert all(r.max_abs <= quick.tolerance for r in quick.rows)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "q.onnx")).metadata_props}
    assert props == {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}


def test_quick_export_falls_back_to_dynamo(exported: dict, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the TorchScript exporter is gone, or its graph fails the check, dynamo exports."""
    ckpt = exported["resnet_6blocks"][0]
    calls = _spy_exporters(monkeypatch, torchscript_fails=True)
    onnx_export.export_onnx(ckpt, tmp_path / "a.onnx", quick=True)
    assert calls == [False, True] and (tmp_path / "a.onnx").is_file()
    monkeypatch.undo()
    real = onnx_export.check_onnx_parity
    checked: list[int] = []

    def first_fails(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        checked.append(1)
        if len(checked) == 1:
            raise onnx_export.OnnxParityError("differs")
        return real(*args, **kwargs)

    calls = _spy_exporters(monkeypatch)
    monkeypatch.setattr(onnx_export, "check_onnx_parity", first_fails)
    report = onnx_export.export_onnx(ckpt, tmp_path / "b.onnx", quick=True)
    assert calls == [False, True] and len(checked) == 2 and report.rows


def test_export_usage_errors(capsys: pytest.CaptureFixture[str], exported: dict,
                             tmp_path: Path) -> None:
    ckpt, path, _ = exported["resnet_6blocks"]
    cases = [([str(ckpt), "--onnx", str(tmp_path / "G.bin")], "must end in .onnx"),
             ([str(path), "--onnx", str(tmp_path / "G.onnx")], "already an ONNX model"),
             ([str(tmp_path / "none.safetensors"), "--onnx", str(tmp_path / "G.onnx")],
              "not found"),
             ([str(ckpt), "--onnx", str(tmp_path / "G.onnx"), "--opset", "11"], "opset 18")]
    for argv, needle in cases:
        assert export_main(argv) == 2
        assert needle in capsys.readouterr().err
    assert _files(tmp_path) == set()


def test_not_an_onnx_model_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "G.onnx"
    bad.write_bytes(b"this is not protobuf")
    _one_image(tmp_path / "in")
    code, _, err = _translate(capsys, "--checkpoint", bad, "--input", tmp_path / "in",
                              "--output", tmp_path / "out")
    assert code == 2 and f"{bad}: not a loadable ONNX model" in err


def test_without_onnxruntime_the_error_names_the_extra(
        capsys: pytest.CaptureFixture[str], exported: dict, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, path, _ = exported["resnet_6blocks"]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    _one_image(tmp_path / "in")
    code, _, err = _translate(capsys, "--checkpoint", path, "--input", tmp_path / "in",
                              "--output", tmp_path / "out")
    assert code == 2 and "pip install 'img2img[onnx]'" in err
    assert len(err.strip().splitlines()) == 1
    assert export_main([str(ckpt), "--onnx", str(tmp_path / "G.onnx")]) == 2
    assert "pip install 'img2img[onnx]'" in capsys.readouterr().err
