"""Rewrites of an exported generator graph that ONNX Runtime's CPU kernels run faster,
computing the same values. Used by ``--precision int8`` (``inference.quantize``) only: a
file written by ``img2img export`` keeps the plain graph, for every runtime.

- :func:`phase_output_convs` (fp32 graph, before quantization): a convolution with few
  output channels (a generator's 7x7 or 9x9 output conv to RGB) runs on 2x2 phases, as
  ``nn.cpu.polyphase`` does in PyTorch: ``SpaceToDepth`` (4x the channels at half the size),
  a conv with (k // 2 + 1)-tap kernels and 4x the output channels, ``DepthToSpace``. ONNX
  Runtime's convolutions vectorise over output channels, so 3 of them waste most of each
  vector: resnet_9blocks' 64 -> 3 7x7 conv at 512x512 took 67.7 ms, on phases 34.7 ms
  (2 threads, Zen 5). Equal to the direct conv up to float rounding.
- :func:`subpixel_transposed_convs` (fp32 graph, before quantization): a stride-2
  transposed conv that doubles the size becomes one Conv to 4x the channels plus
  ``DepthToSpace`` (each output phase's taps; zeros where a phase has none). ONNX Runtime
  has no int8 ConvTranspose on the CPU, so the U-Net's decoder stayed float; as Convs it
  quantizes: unet_256 int8 at 512x512 0.212 -> 0.114 s (1 thread), 0.150 -> 0.087 s
  (2 threads), Zen 5, PSNR against fp32 unchanged (47.8 dB worst). (Not used for the ResNet
  decoder, which stays float: in float the zero taps cost what the kernel change saves.)
- :func:`uint8_pads` (QDQ graph, after quantization): a reflection (or edge) ``Pad`` between
  a ``DequantizeLinear`` and a ``QuantizeLinear`` with the same scale and zero point (the
  quantizer gives a reflection pad its input's, as it adds no values) pads the uint8 tensor
  itself: ``Q(pad(DQ(q))) == pad(q)`` exactly, and ONNX Runtime's Pad, which runs on one
  thread, moves a quarter of the bytes. resnet_9blocks int8 at 512x512: 0.495 -> 0.472 s
  (2 threads, Zen 5), identical output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from img2img.nn.cpu.polyphase import phase_taps, phase_weight

MAX_PHASE_OUT_CHANNELS = 4  # convs with at most this many outputs run on phases
MIN_PHASE_KERNEL = 5  # and kernels at least this wide (fewer taps gain little)


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _initializers(model: Any) -> dict[str, Any]:
    return {t.name: t for t in model.graph.initializer}


def _fits_phases(node: Any, weights: dict[str, Any]) -> bool:
    """Whether ``node`` is a Conv :func:`phase_output_convs` rewrites."""
    if node.op_type != "Conv" or node.input[1] not in weights:
        return False
    a = _attrs(node)
    shape = tuple(weights[node.input[1]].dims)
    if len(shape) != 4 or shape[2] != shape[3] or shape[2] % 2 == 0:
        return False
    pads = list(a.get("pads", [0, 0, 0, 0]))
    return (a.get("group", 1) == 1 and list(a.get("strides", [1, 1])) == [1, 1]
            and list(a.get("dilations", [1, 1])) == [1, 1]
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and len(set(pads)) == 1 and pads[0] % 2 == 0
            and shape[0] <= MAX_PHASE_OUT_CHANNELS and shape[2] >= MIN_PHASE_KERNEL)


def _rewrite(model: Any, make: Any) -> int:
    """Replace, in place, each node for which ``make(node, weights)`` returns
    ``(nodes, initializers)`` by those; drop initializers nothing reads any more; return how
    many nodes were replaced."""
    weights = _initializers(model)
    nodes: list[Any] = []
    added: list[Any] = []
    done = 0
    for node in model.graph.node:
        made = make(node, weights)
        if made is None:
            nodes.append(node)
            continue
        nodes += made[0]
        added += made[1]
        done += 1
    if not done:
        return 0
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    inits = model.graph.initializer
    for i in reversed(range(len(inits))):  # in place: the weights are most of the model
        if inits[i].name not in used:
            del inits[i]
    inits.extend(added)
    return done


def _bias(node: Any, weights: dict[str, Any], name: str) -> list[Any]:
    """The bias of ``node``, each value repeated for the four phases (CRD order)."""
    from onnx import numpy_helper

    if len(node.input) < 3 or not node.input[2]:
        return []
    bias = numpy_helper.to_array(weights[node.input[2]])
    return [numpy_helper.from_array(np.repeat(bias, 4).astype(bias.dtype), name)]


def _on_phases(node: Any, name: str, split: bool, weight: np.ndarray, bias: list[Any],
               pads: list[int]) -> tuple[list[Any], list[Any]]:
    """[SpaceToDepth ->] Conv(weight, bias, pads) -> DepthToSpace in place of ``node``."""
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(weight, f"{name}.weight"), *bias]
    source = node.input[0]
    nodes = []
    if split:
        nodes.append(helper.make_node("SpaceToDepth", [source], [f"{name}_in"], blocksize=2,
                                      name=f"{name}_split"))
        source = f"{name}_in"
    nodes += [
        helper.make_node("Conv", [source, *(t.name for t in inits)], [f"{name}_out"],
                         name=name, pads=pads, kernel_shape=list(weight.shape[2:])),
        helper.make_node("DepthToSpace", [f"{name}_out"], list(node.output), blocksize=2,
                         mode="CRD", name=f"{name}_merge"),
    ]
    return nodes, inits


def phase_output_convs(model: Any) -> int:
    """Rewrite, in place, every Conv of ``model`` with at most
    :data:`MAX_PHASE_OUT_CHANNELS` outputs and an odd k x k kernel (k >= 5, stride 1, even
    "same"-or-none padding) to run on 2x2 phases; return how many were rewritten.

    Exact only where the conv's input (with its padding) has even height and width: the
    caller decides that (the ResNet generators' inputs are multiples of 4; an upsampler's
    output is even)."""
    from onnx import numpy_helper

    def make(node: Any, weights: dict[str, Any]) -> tuple[list[Any], list[Any]] | None:
        if not _fits_phases(node, weights):
            return None
        w = torch.from_numpy(numpy_helper.to_array(weights[node.input[1]]).copy())
        k_out, c_in, k = w.shape[0], w.shape[1], w.shape[2]
        pw = phase_weight(w, phase_taps(k))  # inputs in pixel_unshuffle's order c*4 + q
        # SpaceToDepth orders input channels q*C + c: permute the weights' input axis
        pw = pw.view(4 * k_out, c_in, 4, *pw.shape[2:]).transpose(1, 2)
        pw = pw.reshape(4 * k_out, 4 * c_in, *pw.shape[3:]).contiguous()
        name = f"{node.name or node.output[0]}_phases"
        pad = int(_attrs(node).get("pads", [0])[0]) // 2  # in phase pixels
        return _on_phases(node, name, True, pw.numpy(), _bias(node, weights, f"{name}.bias"),
                          [pad] * 4)

    return _rewrite(model, make)


def _subpixel_taps(k: int, p: int) -> tuple[int, list[list[int]]]:
    """For a stride-2 transposed conv (kernel ``k``, padding ``p``): the first input offset
    ``d0`` its output phases read, and for each phase (0, 1) the kernel tap at each offset
    from ``d0`` (-1: none). Output ``2m + a`` sums ``x[m + d] * w[a + p - 2d]``."""
    lo = min(-((k - 1 - a - p) // 2) for a in (0, 1))  # ceil((a + p - k + 1) / 2)
    hi = max((a + p) // 2 for a in (0, 1))
    taps = [[a + p - 2 * d if 0 <= a + p - 2 * d < k else -1 for d in range(lo, hi + 1)]
            for a in (0, 1)]
    return lo, taps


def subpixel_transposed_convs(model: Any) -> int:
    """Rewrite, in place, every stride-2 ConvTranspose of ``model`` whose output is exactly
    twice its input (``k + output_padding == 2 * pad + 2``, e.g. pix2pix's 4x4 with padding
    1) as one Conv to 4x the channels (a window covering every phase's taps, zeros where a
    phase has none) and ``DepthToSpace``; return how many were rewritten. ONNX Runtime has
    no int8 ConvTranspose on the CPU: as a Conv it quantizes."""
    from onnx import numpy_helper

    def make(node: Any, weights: dict[str, Any]) -> tuple[list[Any], list[Any]] | None:
        if node.op_type != "ConvTranspose" or node.input[1] not in weights:
            return None
        a = _attrs(node)
        w = numpy_helper.to_array(weights[node.input[1]])  # (C, K, k, k)
        pads = list(a.get("pads", [0, 0, 0, 0]))
        out_pad = list(a.get("output_padding", [0, 0]))
        if (w.ndim != 4 or w.shape[2] != w.shape[3] or a.get("group", 1) != 1
                or list(a.get("strides", [1, 1])) != [2, 2] or len(set(pads)) != 1
                or len(set(out_pad)) != 1 or list(a.get("dilations", [1, 1])) != [1, 1]
                or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
                or "output_shape" in a or w.shape[2] + out_pad[0] != 2 * pads[0] + 2):
            return None
        c_in, k_out, k = w.shape[0], w.shape[1], w.shape[2]
        lo, taps = _subpixel_taps(k, pads[0])
        size = len(taps[0])
        conv = np.zeros((k_out, 2, 2, c_in, size, size), w.dtype)
        for py in (0, 1):
            for px in (0, 1):
                for i, ty in enumerate(taps[py]):
                    for j, tx in enumerate(taps[px]):
                        if ty >= 0 and tx >= 0:
                            conv[:, py, px, :, i, j] = w[:, :, ty, tx].T
        name = f"{node.name or node.output[0]}_subpixel"
        return _on_phases(node, name, False, conv.reshape(4 * k_out, c_in, size, size),
                          _bias(node, weights, f"{name}.bias"),
                          [-lo, -lo, size - 1 + lo, size - 1 + lo])

    return _rewrite(model, make)


def uint8_pads(model: Any) -> int:
    """Rewrite, in place, each ``DequantizeLinear -> Pad(reflect|edge) -> QuantizeLinear``
    of ``model`` whose two ends share scale and zero point into a Pad of the quantized
    tensor; return how many were rewritten (see the module docstring)."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = list(model.graph.node)  # one set of node objects: dropped ones are found by id
    producer = {out: node for node in nodes for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def same(a: str, b: str) -> bool:
        return (a in values and b in values and values[a].dtype == values[b].dtype
                and np.array_equal(values[a], values[b]))

    drop: set[int] = set()
    done = 0
    for pad in (n for n in nodes if n.op_type == "Pad"):
        mode = _attrs(pad).get("mode", b"constant")
        dq = producer.get(pad.input[0])
        after = consumers.get(pad.output[0], [])
        if (mode not in (b"reflect", b"edge") or dq is None
                or dq.op_type != "DequantizeLinear" or len(after) != 1
                or after[0].op_type != "QuantizeLinear" or len(dq.input) < 3
                or len(after[0].input) < 3
                or not (same(dq.input[1], after[0].input[1])
                        and same(dq.input[2], after[0].input[2]))
                or any(o.name == pad.output[0] for o in model.graph.output)):
            continue
        q = after[0]
        pad.input[0], pad.output[0] = dq.input[0], q.output[0]
        drop.add(id(q))
        if len(consumers.get(dq.output[0], [])) == 1:  # the DQ fed only this pad
            drop.add(id(dq))
        done += 1
    kept = [n for n in nodes if id(n) not in drop]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return done
