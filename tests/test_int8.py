"""``translate --precision int8``: ONNX Runtime static quantization, as a user sees it.

The ResNet generators run int8 in PyTorch where oneDNN's int8 convolution runs
(``test_int8_torch``); here they take ONNX Runtime's path, as on other CPUs. Tiny
random-weight generators (ngf 8, 32x32 photo-like images) of the families int8 runs are
quantized on the run's first images or on ``--calibrate DIR`` and compared with fp32.
Needs the ``onnx`` extra (skipped without it, required under CI), except the test of the
error without it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like
from onnx_extra import HAVE_ONNX, needs_onnx

from img2img import runtime
from img2img.checkpoint import meta_for, read_meta, save_generator
from img2img.commands.translate import translate_main
from img2img.data.io import read_image, write_image
from img2img.errors import UsageError
from img2img.inference import onnx_backend, quantize, torch_int8
from img2img.inference.translator import Translator
from img2img.nn import build_generator

if HAVE_ONNX:
    import onnx
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", autouse=True)
def onnx_runtime_path() -> Iterator[None]:
    """Every family through ONNX Runtime, as where oneDNN's int8 convolution does not run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch_int8, "available", lambda: False)
        yield

FAMILIES = {
    "resnet_6blocks": ({"ngf": 8}, "cyclegan"),
    "unet": ({"ngf": 8, "num_downs": 5}, "pix2pix"),
    "srresnet": ({"scale": 4, "channels": 8, "n_blocks": 1, "residual": True}, "sr"),
}


def _checkpoint(folder: Path, arch: str, kwargs: dict | None = None, task: str = "") -> Path:
    kw, t = FAMILIES.get(arch, ({}, task))
    kwargs = kw if kwargs is None else kwargs
    torch.manual_seed(0)
    net = build_generator(arch, **kwargs).eval()
    path = folder / f"{arch}.safetensors"
    save_generator(path, net, meta_for(net, arch, kwargs, task or t))
    return path


def _images(folder: Path, n: int, seed: int = 0, size: int = 32) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"img{i}.png")
        write_image(paths[-1], photo_like(size, size, seed=seed + i))
    return paths


def _translate(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = translate_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    peak = 65535.0 if a.dtype == np.uint16 else 255.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(peak**2 / max(mse, 1e-12))


def _cached(out: Path) -> list[Path]:
    return sorted((out / quantize.CACHE_DIR).glob("*.onnx"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """family -> checkpoint, input folder (4 photo-like PNGs) and output folder of one
    ``--precision int8`` run, calibrated on those 4 images (the run's first 8)."""
    root = tmp_path_factory.mktemp("int8")
    made = {}
    for family in FAMILIES:
        ckpt = _checkpoint(root, family)
        src, out = root / f"in_{family}", root / f"out_{family}"
        _images(src, 4)
        code = translate_main(["--checkpoint", str(ckpt), "--input", str(src), "--output",
                               str(out), "--precision", "int8", "--quiet"])
        assert code == 0
        made[family] = {"ckpt": ckpt, "input": src, "output": out}
    return made


# Worst PSNR of int8 against fp32 (uint8) over the calibrated images. Random weights are a
# harsh case (no smoothness to average the rounding away; in the ResNet, instance norm on
# 8x8 maps rescales the noise), so the bounds are set a few dB under what these nets give
# (ResNet 29-32 dB, U-Net 59-60, SRResNet x4 56) and well above a broken result: a
# flat grey output scores 16.5 dB against the ResNet's and 25-28 dB against the U-Net's,
# another random net of the same family 13 and 25-32 dB.
PSNR_BOUND = {"resnet_6blocks": 24.0, "unet": 50.0, "srresnet": 50.0}


@needs_onnx
@pytest.mark.parametrize("family", list(FAMILIES))
def test_int8_output_is_close_to_fp32(runs: dict, family: str) -> None:
    run = runs[family]
    fp32 = Translator.from_checkpoint(run["ckpt"], "cpu", "fp32")
    worst = min(_psnr(read_image(run["output"] / f.name), fp32(read_image(f)))
                for f in sorted(run["input"].iterdir()))
    assert worst >= PSNR_BOUND[family]


@needs_onnx
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_graph_runs_int8_convolutions_and_keeps_the_output_in_float(
        runs: dict, family: str) -> None:
    (path,) = _cached(runs[family]["output"])
    graph = onnx.load(str(path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]

    def quantized(node: object) -> bool:  # input and weight come from DequantizeLinear
        return all(getattr(producer.get(i), "op_type", "") == "DequantizeLinear"
                   for i in node.input[:2])

    assert sum(quantized(n) for n in convs) >= len(convs) // 2
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    # the output conv computes in float on float weights, and nothing quantizes its result
    last = producer[graph.output[0].name]
    while last.op_type not in ("Conv", "ConvTranspose"):
        last = producer[last.input[0]]
    weight = last.input[1]
    assert weight in {i.name for i in graph.initializer}
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == last.output[0]
                   for n in graph.node)
    norms = [n for n in graph.node if n.op_type in ("InstanceNormalization",
                                                     "BatchNormalization")]
    assert all(not n.op_type.startswith("Q") for n in norms)  # computed in float


@needs_onnx
def test_resnet_decoder_stays_float(runs: dict) -> None:
    """Quantizing the upsampling convolutions' outputs (which instance norm then scales
    up) is what lost quality on a trained ResNet: they stay in float, with the norm after."""
    (path,) = _cached(runs["resnet_6blocks"]["output"])
    graph = onnx.load(str(path)).graph
    floats = {i.name for i in graph.initializer}
    ups = [n for n in graph.node if n.op_type == "ConvTranspose"]
    assert len(ups) == 2
    for up in ups:
        assert up.input[1] in floats  # float weights, not a DequantizeLinear's output
        assert not any(n.op_type == "QuantizeLinear" and n.input[0] == up.output[0]
                       for n in graph.node)


@needs_onnx
def test_resnet_runs_its_output_conv_on_phases_and_pads_uint8(runs: dict) -> None:
    """The faster graph (inference.onnx_rewrite) is what the cached model holds."""
    (path,) = _cached(runs["resnet_6blocks"]["output"])
    graph = onnx.load(str(path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    assert [n.op_type for n in graph.node].count("SpaceToDepth") == 1
    last = producer[producer[graph.output[0].name].input[0]]  # Tanh <- DepthToSpace
    assert last.op_type == "DepthToSpace"
    pads = [n for n in graph.node if n.op_type == "Pad"]
    on_uint8 = [p for p in pads if producer[p.input[0]].op_type == "QuantizeLinear"]
    assert len(on_uint8) >= len(pads) // 2  # the residual blocks' reflection pads


@needs_onnx
def test_unet_upsampling_runs_as_int8_convolutions(runs: dict) -> None:
    """ONNX Runtime has no int8 ConvTranspose: the U-Net's become Conv + DepthToSpace, and
    all but the output one are quantized."""
    (path,) = _cached(runs["unet"]["output"])
    graph = onnx.load(str(path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    assert not any(n.op_type == "ConvTranspose" for n in graph.node)

    def source(name: str) -> object:  # the node behind any QuantizeLinear/DequantizeLinear
        node = producer[name]
        while node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node = producer[node.input[0]]
        return node

    ups = [source(n.input[0]) for n in graph.node if n.op_type == "DepthToSpace"]
    assert len(ups) >= 2 and all(u.op_type == "Conv" for u in ups)
    quantized = [u for u in ups
                 if getattr(producer.get(u.input[1]), "op_type", "") == "DequantizeLinear"]
    assert len(quantized) == len(ups) - 1


@needs_onnx
def test_calibration_uses_the_first_images_of_the_run_or_the_calibrate_dir(
        capsys: pytest.CaptureFixture[str], runs: dict, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    run = runs["srresnet"]
    meta = Translator.from_checkpoint(run["ckpt"], "cpu", "fp32").meta
    images = sorted(run["input"].iterdir())
    calib = quantize.calibration_inputs(meta, 1, images, 3)
    assert calib.images == images[:3]
    for got, path in zip(calib.inputs, images[:3], strict=True):  # as the network sees it
        want = read_image(path).astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1
        np.testing.assert_allclose(got, want, atol=1e-6)
    (first,) = _cached(run["output"])
    note = dict((p.key, p.value) for p in onnx.load(str(first)).metadata_props)
    assert f"4 input(s) from 4 image(s) of --input {run['input']}" in note[quantize.INT8_KEY]

    other = _images(tmp_path / "calib", 2, seed=50)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="img2img"):
        code, _, err = _translate(capsys, "--checkpoint", run["ckpt"], "--input",
                                  run["input"], "--output", out, "--precision", "int8",
                                  "--calibrate", other[0].parent, "--quiet")
    assert code == 0, err
    (second,) = _cached(out)
    note = dict((p.key, p.value) for p in onnx.load(str(second)).metadata_props)
    assert f"2 input(s) from 2 image(s) of --calibrate {other[0].parent}" in \
        note[quantize.INT8_KEY]
    assert second.name != first.name  # another calibration, another cached model
    assert "int8: exported in " in caplog.text and "calibrated on 2 input(s)" in caplog.text
    assert " s; cached as " in caplog.text

    code, _, err = _translate(capsys, "--checkpoint", run["ckpt"], "--input", run["input"],
                              "--output", tmp_path / "out2", "--precision", "int8",
                              "--calibrate-count", "2", "--quiet")
    assert code == 0, err
    (third,) = _cached(tmp_path / "out2")
    note = dict((p.key, p.value) for p in onnx.load(str(third)).metadata_props)
    assert f"2 input(s) from 2 image(s) of --input {run['input']}" in note[quantize.INT8_KEY]


@needs_onnx
def test_a_tiled_image_calibrates_on_tiles_spread_over_it(runs: dict, tmp_path: Path) -> None:
    run = runs["srresnet"]
    meta = Translator.from_checkpoint(run["ckpt"], "cpu", "fp32").meta
    path = tmp_path / "big.png"
    write_image(path, photo_like(64, 96, seed=3))
    calib = quantize.calibration_inputs(meta, 1, [path], 4, quantize.TileOptions(tile=16,
                                                                                 overlap=4))
    assert len(calib.inputs) == 4
    assert {a.shape for a in calib.inputs} == {(1, 3, 24, 24)}  # 16 + 2 * 4 of context
    assert len({a.tobytes() for a in calib.inputs}) == 4  # four different places


@needs_onnx
def test_a_large_image_calibrates_on_a_crop_of_it(runs: dict, tmp_path: Path) -> None:
    """An image the run translates whole (600x400 here) gives a CALIBRATION_CROP square of
    itself, the same one on every run (the cache key depends on it)."""
    run = runs["srresnet"]
    meta = Translator.from_checkpoint(run["ckpt"], "cpu", "fp32").meta
    path = tmp_path / "wide.png"
    image = photo_like(400, 600, seed=5)
    write_image(path, image)
    side = quantize.CALIBRATION_CROP
    first = quantize.calibration_inputs(meta, 1, [path], 1)
    (x,) = first.inputs
    assert x.shape == (1, 3, side, side)
    net = image.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1  # find where it was cut
    hits = [(i, j) for i in range(400 - side + 1) for j in range(0, 600 - side + 1)
            if abs(net[0, i, j] - x[0, 0, 0, 0]) < 1e-6
            and np.allclose(net[:, i : i + side, j : j + side], x[0], atol=1e-6)]
    assert hits, "the crop is a window of the image as the network sees it"
    assert quantize.calibration_inputs(meta, 1, [path], 1).digest() == first.digest()


@needs_onnx
def test_a_rerun_reuses_the_cached_model(capsys: pytest.CaptureFixture[str], runs: dict,
                                         monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    run = runs["unet"]
    (cached,) = _cached(run["output"])
    stamp = cached.stat().st_mtime_ns
    before = {f.name: read_image(f) for f in run["output"].glob("*.png")}

    def no_calibration(*_: object, **__: object) -> None:
        raise AssertionError("calibrated again")

    monkeypatch.setattr(quantize, "quantize_onnx", no_calibration)
    monkeypatch.setattr(quantize, "_quantize_checkpoint", no_calibration)
    # this CPU's flags plus AMX's bf16 (not an int8 flag: the cached model's key stays)
    monkeypatch.setenv(runtime.CPU_FLAGS_ENV, " ".join(runtime.cpu_flags() | {"amx_bf16"}))
    with caplog.at_level(logging.INFO, logger="img2img"):
        code, _, err = _translate(capsys, "--checkpoint", run["ckpt"], "--input",
                                  run["input"], "--output", run["output"], "--precision",
                                  "int8", "--overwrite", "--quiet")
    assert code == 0, err
    assert "int8: reusing" in caplog.text
    assert "bf16, which --precision auto picks on this CPU, measured as fast" in caplog.text
    assert _cached(run["output"]) == [cached] and cached.stat().st_mtime_ns == stamp
    for name, img in before.items():
        np.testing.assert_array_equal(read_image(run["output"] / name), img)


@needs_onnx
def test_calibration_runs_the_graph_only_up_to_its_float_tail() -> None:
    """With the float tail (here Relu b, reading a's output and a constant) cut off, the
    calibrated part ends at the input-dependent tensor the tail starts from; a float node
    that a quantized one reads, or nothing kept, means the whole graph is calibrated."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["a"], name="A"),
             helper.make_node("Constant", [], ["c"], name="C",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("Add", ["a", "c"], ["b"], name="B"),
             helper.make_node("Relu", ["b"], ["y"], name="D")]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph(nodes, "g", [io[0]], [io[1]]))
    head = quantize.calibration_graph(model, ["B", "D"])
    assert [n.name for n in head.graph.node] == ["A", "C"]
    assert [o.name for o in head.graph.output] == ["a"]
    assert quantize.calibration_graph(model, ["B"]) is None  # D (quantized) reads B's output
    assert quantize.calibration_graph(model, []) is None
    assert [n.name for n in model.graph.node] == ["A", "C", "B", "D"]  # left as it was


@needs_onnx
def test_resnet_calibrated_without_its_decoder_quantizes_the_same(runs: dict,
                                                                  tmp_path: Path) -> None:
    """The ResNet's float decoder is not run in calibration, and the int8 model is what
    calibrating the whole graph gives."""
    from img2img.inference.onnx_export import export_onnx

    run = runs["resnet_6blocks"]
    meta = read_meta(run["ckpt"])
    fp32 = tmp_path / "g.onnx"
    export_onnx(run["ckpt"], fp32, quick=True)
    calib = quantize.calibration_inputs(meta, 8, sorted(run["input"].glob("*.png")), 4)
    family = quantize.family_of("resnet_6blocks")
    graph = onnx.load(str(fp32))
    head = quantize.calibration_graph(graph, quantize.float_nodes(graph, family))
    assert head is not None and not any(n.op_type == "ConvTranspose" for n in head.graph.node)
    quantize.quantize_onnx(fp32, tmp_path / "cut.onnx", calib, family, {})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quantize, "calibration_graph", lambda *_: None)
        quantize.quantize_onnx(fp32, tmp_path / "whole.onnx", calib, family, {})
    x = calib.inputs[0]
    outs = [onnx_backend.open_session(str(tmp_path / f)).run(None, {"input": x})[0]
            for f in ("cut.onnx", "whole.onnx")]
    # equal here; a CPU whose kernels round the two graphs' tensors apart in the last bit
    # may move a range by as much, so allow a stray quantization step
    assert np.abs(outs[0] - outs[1]).max() <= 0.1
    assert np.abs(outs[0] - outs[1]).mean() <= 1e-3


def test_int8_points_to_bf16_only_on_cpus_with_amx() -> None:
    """Sapphire Rapids and later (AMX) run bf16 at least as fast; Zen 4's avx512_bf16 and
    Ice Lake's VNNI do not (int8 measured faster there)."""
    assert quantize.amx_note(frozenset({"avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}))
    assert quantize.amx_note(frozenset({"avx512_vnni", "avx512_bf16"})) is None
    assert quantize.amx_note(frozenset({"avx512_vnni"})) is None


@needs_onnx
def test_tiled_sr_with_alpha_and_16_bit(capsys: pytest.CaptureFixture[str], runs: dict,
                                        tmp_path: Path, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    run = runs["srresnet"]
    src = tmp_path / "in"
    src.mkdir()
    img = photo_like(40, 56, seed=7, channels=4, dtype=np.uint16)
    write_image(src / "rgba16.png", img)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        code, _, err = _translate(capsys, "--checkpoint", run["ckpt"], "--input", src,
                                  "--output", tmp_path / "out", "--precision", "int8",
                                  "--tile", "16", "--tile-overlap", "8", "--quiet")
    assert code == 0, err
    # runs, but says that it measured slower than fp32 for this family, and why
    family = quantize.family_of("srresnet")
    assert family is not None and family.speedup < 1
    assert f"srresnet measured {family.speedup:.2f}x the speed of fp32 in int8" in caplog.text
    got = read_image(tmp_path / "out" / "rgba16.png")
    assert got.shape == (160, 224, 4) and got.dtype == np.uint16
    fp32 = Translator.from_checkpoint(run["ckpt"], "cpu", "fp32")
    want = fp32.translate_tiled(img, 16, 8, 1)
    np.testing.assert_array_equal(got[..., 3], want[..., 3])  # alpha carried through
    assert _psnr(got[..., :3], want[..., :3]) >= PSNR_BOUND["srresnet"]


@needs_onnx
def test_an_unmeasured_family_is_refused(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    kwargs = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 2}
    ckpt = _checkpoint(tmp_path, "rrdbnet", kwargs, "sr")
    _images(tmp_path / "in", 1)
    code, _, err = _translate(capsys, "--checkpoint", ckpt, "--input", tmp_path / "in",
                              "--output", tmp_path / "out", "--precision", "int8")
    assert code == 2
    assert err.strip() == f"error: {quantize.refusal('rrdbnet')}"
    assert "rrdbnet has not been measured against fp32 in int8" in err
    assert not (tmp_path / "out").exists()


def test_int8_is_a_cpu_path() -> None:
    with pytest.raises(UsageError, match="--precision int8 runs on the CPU"):
        quantize.check_request(torch.device("cuda"))
    with pytest.raises(UsageError, match="--compile: does not apply to --precision int8"):
        quantize.check_request(torch.device("cpu"), compile=True)


def test_calibrate_needs_int8(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, "srresnet")
    _images(tmp_path / "in", 1)
    code, _, err = _translate(capsys, "--checkpoint", ckpt, "--input", tmp_path / "in",
                              "--output", tmp_path / "out", "--calibrate", tmp_path / "in",
                              "--precision", "fp32")
    assert code == 2 and "--calibrate: applies to --precision int8 only" in err
    code, _, err = _translate(capsys, "--checkpoint", ckpt, "--input", tmp_path / "in",
                              "--output", tmp_path / "out", "--calibrate", tmp_path / "none",
                              "--precision", "int8")
    assert code == 2 and f"--calibrate {tmp_path / 'none'}" in err


def test_without_onnxruntime_the_error_names_the_extra(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = _checkpoint(tmp_path, "srresnet")
    _images(tmp_path / "in", 1)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    code, _, err = _translate(capsys, "--checkpoint", ckpt, "--input", tmp_path / "in",
                              "--output", tmp_path / "out", "--precision", "int8")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: --precision int8 needs the optional extra 'onnx'")
    assert "pip install 'img2img[onnx]'" in err


@needs_onnx
def test_an_int8_run_does_not_import_onnxscript(runs: dict, tmp_path: Path) -> None:
    """Only dynamo's export needs onnxscript, and importing it takes 0.6-0.8 s of every
    int8 run (first or cached): a fresh process quantizes without it."""
    run = runs["unet"]
    code = ("import sys; from img2img.inference import quantize; "
            f"quantize.int8_translator({str(run['ckpt'])!r}, {str(tmp_path)!r}, "
            f"[p for p in __import__('pathlib').Path({str(run['input'])!r}).glob('*.png')]); "
            "print('onnxscript' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert _cached(tmp_path)


@needs_onnx
def test_without_onnxscript_the_error_names_the_extra(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxscript is only looked for, not imported (0.6-0.8 s), but its absence still
    gets the one-line message."""
    ckpt = _checkpoint(tmp_path, "unet")
    _images(tmp_path / "in", 1)
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    code, _, err = _translate(capsys, "--checkpoint", ckpt, "--input", tmp_path / "in",
                              "--output", tmp_path / "out", "--precision", "int8")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "needs the optional extra 'onnx' (onnxscript is not installed)" in err


@needs_onnx
def test_a_cache_folder_linked_elsewhere_is_refused(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, "srresnet")
    _images(tmp_path / "in", 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / quantize.CACHE_DIR).symlink_to(elsewhere, target_is_directory=True)
    code, _, err = _translate(capsys, "--checkpoint", ckpt, "--input", tmp_path / "in",
                              "--output", tmp_path / "out", "--precision", "int8")
    assert code == 2 and "destination resolves outside the output folder" in err
    assert list(elsewhere.iterdir()) == []


@needs_onnx
def test_an_exported_fp32_onnx_is_quantized_and_an_fp16_one_refused(
        capsys: pytest.CaptureFixture[str], runs: dict, tmp_path: Path) -> None:
    from img2img.inference.onnx_export import export_onnx

    run = runs["srresnet"]
    export_onnx(run["ckpt"], tmp_path / "G.onnx")
    code, _, err = _translate(capsys, "--checkpoint", tmp_path / "G.onnx", "--input",
                              run["input"], "--output", tmp_path / "out", "--precision", "int8",
                              "--quiet")
    assert code == 0, err
    (cached,) = _cached(tmp_path / "out")
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(cached)).graph.node)
    fp32 = Translator.from_checkpoint(run["ckpt"], "cpu", "fp32")
    for f in sorted(run["input"].iterdir()):
        assert _psnr(read_image(tmp_path / "out" / f.name), fp32(read_image(f))) >= \
            PSNR_BOUND["srresnet"]
    export_onnx(run["ckpt"], tmp_path / "G16.onnx", fp16=True)
    code, _, err = _translate(capsys, "--checkpoint", tmp_path / "G16.onnx", "--input",
                              run["input"], "--output", tmp_path / "out16", "--precision",
                              "int8")
    assert code == 2 and "an fp16 or int8 .onnx cannot be quantized" in err


def test_the_parser_default_count_is_the_library_default() -> None:
    from img2img.commands.translate import translate_parser
    from img2img.inference.run import FolderOptions

    assert translate_parser().get_default("calibrate_count") == \
        quantize.DEFAULT_CALIBRATE_COUNT == FolderOptions("c", "i", "o").calibrate_count
