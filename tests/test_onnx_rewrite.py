"""The int8 path's graph rewrites compute what the graph they replace computes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_extra import HAVE_ONNX  # under CI, a missing onnx extra is an error

if not HAVE_ONNX:
    pytest.skip("needs pip install 'img2img[onnx]'", allow_module_level=True)
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from img2img.inference.onnx_rewrite import (  # noqa: E402
    phase_output_convs,
    subpixel_transposed_convs,
    uint8_pads,
)


def _model(nodes: list, inits: dict[str, np.ndarray], channels: int,
           in_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", in_type, [None, channels, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, n) for n, a in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _conv(out_ch: int, in_ch: int, k: int, pad: int, seed: int = 0, **attrs: object
          ) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((out_ch, in_ch, k, k)).astype(np.float32) / k
    b = rng.standard_normal(out_ch).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="out_conv", pads=[pad] * 4,
                            **attrs)
    return _model([node], {"w": w, "b": b}, in_ch)


@pytest.mark.parametrize(("k", "pad", "size"), [(7, 0, (38, 46)), (9, 4, (32, 20))])
def test_an_output_conv_on_phases_equals_the_conv(k: int, pad: int, size: tuple) -> None:
    """ResNet's 7x7 (reflection-padded input, no conv padding) and SRResNet's 9x9 "same"
    output convs, on even-sized inputs of a batch of two."""
    model = _conv(3, 8, k, pad)
    x = np.random.default_rng(1).standard_normal((2, 8, *size)).astype(np.float32)
    want = _run(model, x)
    assert phase_output_convs(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["SpaceToDepth", "Conv", "DepthToSpace"]
    assert {t.name for t in model.graph.initializer} == {"out_conv_phases.weight",
                                                         "out_conv_phases.bias"}
    got = _run(model, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())


@pytest.mark.parametrize("conv", [
    dict(out_ch=16, in_ch=8, k=7, pad=0),  # enough output channels to fill the vectors
    dict(out_ch=3, in_ch=8, k=3, pad=0),  # too few taps to gain
    dict(out_ch=3, in_ch=8, k=7, pad=3),  # odd padding: phases would not line up
    dict(out_ch=3, in_ch=8, k=7, pad=0, strides=[2, 2]),
])
def test_other_convs_are_left_alone(conv: dict) -> None:
    model = _conv(**conv)
    assert phase_output_convs(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Conv"]


def _qdq_pad(in_scale: float, out_scale: float, mode: str = "reflect") -> onnx.ModelProto:
    inits = {"s_in": np.array(in_scale, np.float32), "z_in": np.array(128, np.uint8),
             "s_out": np.array(out_scale, np.float32), "z_out": np.array(128, np.uint8),
             "pads": np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s_in", "z_in"], ["dq"]),
        helper.make_node("Pad", ["dq", "pads"], ["padded"], mode=mode),
        helper.make_node("QuantizeLinear", ["padded", "s_out", "z_out"], ["q2"]),
        helper.make_node("DequantizeLinear", ["q2", "s_out", "z_out"], ["y"]),
    ]
    return _model(nodes, inits, 4)


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_a_pad_between_equal_quantizations_pads_the_uint8_tensor(mode: str) -> None:
    model = _qdq_pad(0.02, 0.02, mode)
    x = np.random.default_rng(2).uniform(-3, 3, (1, 4, 9, 7)).astype(np.float32)
    want = _run(model, x)
    assert uint8_pads(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["QuantizeLinear", "Pad", "DequantizeLinear"]
    np.testing.assert_array_equal(_run(model, x), want)  # bit for bit


@pytest.mark.parametrize(("scales", "mode"), [((0.02, 0.03), "reflect"),
                                              ((0.02, 0.02), "constant")])
def test_a_pad_that_changes_values_keeps_its_quantization(scales: tuple, mode: str) -> None:
    model = _qdq_pad(*scales, mode)
    assert uint8_pads(model) == 0
    assert len(model.graph.node) == 5


@pytest.mark.parametrize(("k", "pad", "out_pad"), [(4, 1, 0), (3, 1, 1)])
def test_a_transposed_conv_as_a_conv_and_depth_to_space_equals_it(k: int, pad: int,
                                                                  out_pad: int) -> None:
    """pix2pix's 4x4 (padding 1) and the ResNet's 3x3 (padding 1, output padding 1)
    upsampling layers, batch of two, odd and even sizes."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 5, k, k)).astype(np.float32)  # (in, out, k, k)
    b = rng.standard_normal(5).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", strides=[2, 2],
                            pads=[pad] * 4, output_padding=[out_pad] * 2)
    model = _model([node], {"w": w, "b": b}, 6)
    x = rng.standard_normal((2, 6, 7, 10)).astype(np.float32)
    want = _run(model, x)
    assert want.shape == (2, 5, 14, 20)
    assert subpixel_transposed_convs(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "DepthToSpace"]
    np.testing.assert_allclose(_run(model, x), want, atol=1e-5 * np.abs(want).max())


def test_a_transposed_conv_that_does_not_double_is_left_alone() -> None:
    w = np.ones((4, 4, 4, 4), np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[2] * 4)
    model = _model([node], {"w": w}, 4)
    assert subpixel_transposed_convs(model) == 0
