"""``--precision int8`` on x86 CPUs without VNNI: ONNX Runtime's int8 kernels there add pairs
of uint8 x int8 products in saturating 16-bit lanes, so the weights are quantized to 7 bits
(on a Zen 3 a trained resnet_9blocks went from 29 to 44 dB worst against fp32). The CPU's
flags are faked; the quantized graph's weights show which recipe ran. (The ResNet takes
ONNX Runtime's path here; ``test_int8_torch`` checks the same rule for PyTorch's.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like
from onnx_extra import HAVE_ONNX, needs_onnx

from img2img import runtime
from img2img.checkpoint import meta_for, save_generator
from img2img.data.io import write_image
from img2img.inference import onnx_backend, quantize, torch_int8
from img2img.nn import build_generator

if HAVE_ONNX:
    import onnx
    from onnx import numpy_helper
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _int8_weights(path: Path) -> np.ndarray:
    """Every int8 weight the quantized graph dequantizes, flattened."""
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    found = [inits[n.input[0]].ravel() for n in graph.node
             if n.op_type == "DequantizeLinear" and n.input[0] in inits
             and inits[n.input[0]].dtype == np.int8]
    return np.concatenate(found)


@needs_onnx
@pytest.mark.parametrize(("flags", "full_range"), [("avx2 fma", False),
                                                    ("avx2 avx512f avx512_vnni", True)])
def test_weights_use_7_bits_only_where_the_cpu_lacks_vnni(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: str, full_range: bool) -> None:
    monkeypatch.setenv(runtime.CPU_FLAGS_ENV, flags)
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch_int8, "available", lambda: False)
    torch.manual_seed(0)
    net = build_generator("resnet_6blocks", ngf=8).eval()
    ckpt = tmp_path / "g.safetensors"
    save_generator(ckpt, net, meta_for(net, "resnet_6blocks", {"ngf": 8}, "cyclegan"))
    images = []
    for i in range(2):
        images.append(tmp_path / f"img{i}.png")
        write_image(images[-1], photo_like(32, 32, seed=i))
    quantize.int8_translator(ckpt, tmp_path / "out", images)
    (cached,) = (tmp_path / "out" / quantize.CACHE_DIR).glob("*.onnx")
    weights = np.abs(_int8_weights(cached).astype(np.int32))
    if full_range:
        assert weights.max() == 127
    else:
        assert weights.max() <= 64  # ONNX Runtime's reduced int8 range is [-64, 64]
    meta = {p.key: p.value for p in onnx.load(str(cached)).metadata_props}
    assert ("7-bit weights" in meta[onnx_backend.INT8_KEY]) is not full_range
