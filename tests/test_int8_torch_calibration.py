"""int8 calibration ranges measured in PyTorch (img2img.inference.torch_calibration): the
same ranges and int8 model as ONNX Runtime's calibrator gives, and ONNX Runtime's
calibrator wherever the graph's tensors are not all layers of the model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like
from onnx_extra import HAVE_ONNX, needs_onnx

from img2img.checkpoint import meta_for, save_generator
from img2img.data.io import write_image
from img2img.inference import onnx_backend, quantize, torch_calibration
from img2img.inference.loader import load_model
from img2img.nn import build_generator
from img2img.nn.cpu import accelerate

if HAVE_ONNX:
    import onnx

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), needs_onnx]

NETS = {"resnet_6blocks": ({"ngf": 8}, "cyclegan"),
        "unet": ({"ngf": 8, "num_downs": 5}, "pix2pix")}


def _trained_like_norms(net: torch.nn.Module) -> None:
    """Batch norms with statistics and affine parameters far from their initial ones, so
    a range taken before a norm the exporter folded into its conv would show."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) * 4 + 0.25)
            if m.affine:
                m.weight.data.copy_(torch.rand(c, generator=g) * 3 + 0.5)
                m.bias.data.copy_(torch.randn(c, generator=g))


@pytest.fixture(scope="module", params=list(NETS))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A random-weight generator, its quick ONNX export, the part of that graph that is
    calibrated (rewritten as for quantization) and 3 calibration inputs (photo-like, 48x48)."""
    from img2img.inference import onnx_rewrite
    from img2img.inference.onnx_export import export_onnx

    arch = request.param
    kwargs, task = NETS[arch]
    root = tmp_path_factory.mktemp("torch-calibration")
    torch.manual_seed(0)
    net = build_generator(arch, **kwargs).eval()
    _trained_like_norms(net)
    ckpt = root / "g.safetensors"
    meta = meta_for(net, arch, kwargs, task)
    save_generator(ckpt, net, meta)
    fp32 = root / "g.onnx"
    export_onnx(ckpt, fp32, quick=True)
    images = []
    for i in range(3):
        images.append(root / f"img{i}.png")
        write_image(images[-1], photo_like(48, 48, seed=i))
    graph = onnx.load(str(fp32))
    family = quantize.family_of(arch)
    if family.phase_output_conv:
        onnx_rewrite.phase_output_convs(graph)
    if family.subpixel_upsampling:
        onnx_rewrite.subpixel_transposed_convs(graph)
    head = quantize.calibration_graph(graph, quantize.float_nodes(graph, family)) or graph
    model, _ = load_model(ckpt, "cpu")
    return {"arch": arch, "ckpt": ckpt, "fp32": fp32, "head": head, "graph": graph,
            "family": family,
            "model": accelerate(model), "calib": quantize.calibration_inputs(meta, 4, images, 3)}


def _onnx_runtime_ranges(head, inputs: list[np.ndarray], work: Path) -> dict:
    onnx.save(head, str(work / "head.onnx"))
    path = quantize._calibrate(work / "head.onnx", quantize._Reader("input", inputs), work)
    data = json.loads(path.read_text())["data"]
    return {k: (v["lowest"]["data"][0], v["highest"]["data"][0]) for k, v in data.items()}


def test_pytorch_measures_the_ranges_onnx_runtime_does(exported: dict, tmp_path: Path) -> None:
    """Every tensor ONNX Runtime's calibrator measures (convs, norms, pads, ReLUs, residual
    sums, constants, the input; the U-Net's skip concatenations and its rewritten
    upsampling's conv outputs, from the ranges they are made of; convs with the batch norm
    the exporter folded into them) gets a range, equal to its within float rounding, and
    the ResNet decoder after the calibrated part is not run."""
    inputs = exported["calib"].inputs
    decoder_calls = []
    last = list(exported["model"].modules())[-1]
    handle = last.register_forward_hook(lambda *_: decoder_calls.append(1))
    try:
        ours = torch_calibration.torch_ranges(exported["model"], exported["head"], "input",
                                              inputs, whole=exported["graph"])
    finally:
        handle.remove()
    theirs = _onnx_runtime_ranges(exported["head"], inputs, tmp_path)
    assert ours is not None and set(ours) == set(theirs)
    kinds = {n.op_type for n in exported["head"].graph.node
             if any(o in ours for o in n.output)}
    if exported["arch"] == "unet":  # skips joined at the top level, upsampling rewritten
        assert {"Conv", "BatchNormalization", "Concat", "DepthToSpace"} <= kinds
    else:
        assert {"Conv", "InstanceNormalization", "Pad", "Relu", "Add", "Constant"} <= kinds
        assert not decoder_calls
    for name, (lo, hi) in theirs.items():
        tol = 1e-5 * max(hi - lo, 1e-3)
        assert abs(ours[name][0] - lo) <= tol and abs(ours[name][1] - hi) <= tol, name


def test_int8_models_from_either_calibration_agree(exported: dict, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The int8 model calibrated in PyTorch is as close to fp32 as the one calibrated by
    ONNX Runtime, and far closer to it than either is to fp32: ranges a last bit apart can
    move a tensor's zero point by one step (random weights: 28-31 dB against fp32, 44 dB
    or identical between the two)."""
    calib, family = exported["calib"], exported["family"]
    with caplog.at_level(logging.INFO, logger="img2img"):
        quantize.quantize_onnx(exported["fp32"], tmp_path / "torch.onnx", calib, family, {},
                               source=exported["model"])
    assert "ranges measured in PyTorch" in caplog.text
    quantize.quantize_onnx(exported["fp32"], tmp_path / "ort.onnx", calib, family, {})
    sessions = [onnx_backend.open_session(str(f)) for f in
                (exported["fp32"], tmp_path / "torch.onnx", tmp_path / "ort.onnx")]
    for x in calib.inputs:
        fp32, ours, theirs = (s.run(None, {"input": x})[0] for s in sessions)
        assert abs(_psnr(ours, fp32) - _psnr(theirs, fp32)) <= 0.5
        assert _psnr(ours, theirs) >= _psnr(theirs, fp32) + 10


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of outputs in [-1, 1]."""
    return float(10 * np.log10(4 / max(float(np.mean((a - b) ** 2)), 1e-20)))


def test_a_graph_not_named_by_module_is_calibrated_by_onnx_runtime(
        exported: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Node names that are not module scopes (another exporter's, say) leave the ranges to
    ONNX Runtime, and the int8 model is still written."""
    graph = onnx.load(str(exported["fp32"]))
    for i, node in enumerate(graph.graph.node):
        node.name = f"node_{i}"
    renamed = tmp_path / "renamed.onnx"
    onnx.save(graph, str(renamed))
    head = quantize.calibration_graph(graph, quantize.float_nodes(graph, exported["family"]))
    assert torch_calibration.torch_ranges(exported["model"], head or graph, "input",
                                          exported["calib"].inputs, whole=graph) is None
    with caplog.at_level(logging.INFO, logger="img2img"):
        quantize.quantize_onnx(renamed, tmp_path / "int8.onnx", exported["calib"],
                               exported["family"], {}, source=exported["model"])
    assert "ranges measured by ONNX Runtime" in caplog.text
    assert (tmp_path / "int8.onnx").is_file()


class _Twice(torch.nn.Module):
    """One conv applied twice: its two outputs cannot both be its module's output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.conv(x)))


class _OwnSum(torch.nn.Module):
    """A sum in the network's own forward (as SRResNet's long skip): no module's output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.out = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x + self.conv(x))


@pytest.mark.parametrize("net", [_Twice, _OwnSum])
def test_a_tensor_no_layer_outputs_once_is_left_to_onnx_runtime(
        tmp_path: Path, net: type[torch.nn.Module]) -> None:
    model = net().eval()
    path = tmp_path / "net.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False,
                          input_names=["input"], output_names=["output"])
    graph = onnx.load(str(path))
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    assert torch_calibration.torch_ranges(model, graph, "input", [x]) is None


def test_scopes_name_modules() -> None:
    assert torch_calibration._qualified("/model/model.10/block/block.1") == "model.10.block.1"
    assert torch_calibration._qualified("/head") == "head"


def test_inputs_of_one_shape_run_as_batches_of_bounded_size() -> None:
    inputs = [np.full((1, 3, 16, 16), i, np.float32) for i in range(5)]
    inputs.insert(2, np.zeros((1, 3, 8, 24), np.float32))
    batches = torch_calibration.batches(inputs, 2 * 16 * 16)
    assert [b.shape for b in batches] == [(2, 3, 16, 16), (2, 3, 16, 16), (1, 3, 16, 16),
                                          (1, 3, 8, 24)]
    assert sorted(float(v) for b in batches[:3] for v in b[:, 0, 0, 0]) == [0, 1, 2, 3, 4]
