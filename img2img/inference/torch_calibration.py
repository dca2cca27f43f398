"""int8 calibration ranges measured in PyTorch, for graphs exported from a PyTorch generator.

ONNX Runtime's calibrator runs the graph with a ReduceMin and a ReduceMax added on every
tensor, which breaks its fused, blocked-layout convolutions apart; PyTorch runs the same
network with the toolkit's CPU kernels and takes each layer's range as it goes. Measured
on 2 Zen 5 cores (AMD EPYC family 26 model 2), the trained resnet_9blocks stand-in, the
8 calibration crops of 256x256 up to the float decoder: ONNX Runtime 4.4-4.6 s, PyTorch
2.8 s.

The graph must name its nodes by module scope, as PyTorch's TorchScript exporter does
(``/model/model.10/block/block.1/Conv``): every tensor the quantizer needs a range for is
then the graph's input, a constant, or the output of one module, called once per forward
pass. Where that does not hold for every tensor (dynamo's names, graphs rewritten before
calibration, ``.onnx`` sources, a module run twice), :func:`torch_ranges` returns None and
ONNX Runtime calibrates as before. The ranges differ from ONNX Runtime's by float rounding
(the two compute the same network in a different order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

FLOAT = 1  # onnx.TensorProto.FLOAT


class _Done(Exception):
    """Raised by the last hook of a forward pass: the layers after it are not needed."""


class _Mismatch(Exception):
    """A hooked module's output is not a float tensor."""


# Inputs of one shape run as one batch of up to this many pixels: 8 crops of 256x256 at
# once took 1.67-1.89 s against 1.84-2.14 s one by one (resnet_9blocks' calibrated part,
# 2 Zen 5 cores); the networks calibrated here treat the images of a batch independently
# (instance norm, or batch norm with running statistics), and a range is over all of them.
BATCH_PIXELS = 8 * 256 * 256


def _batches(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``inputs`` (N, C, H, W) joined along N by shape, each batch at most
    :data:`BATCH_PIXELS` pixels (one input at least)."""
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for x in inputs:
        by_shape.setdefault(x.shape[1:], []).append(x)
    batches = []
    for same in by_shape.values():
        pixels = same[0].shape[0] * same[0].shape[-1] * same[0].shape[-2]
        step = max(1, BATCH_PIXELS // max(pixels, 1))
        batches += [np.concatenate(same[i:i + step]) for i in range(0, len(same), step)]
    return batches


def tensors_to_calibrate(graph: Any) -> list[str]:
    """The float tensors ONNX Runtime's calibrator takes ranges of: every input and output
    of every node that is not an initializer (graph order)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(graph)
    infos = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output,
                                 *inferred.graph.input)}
    initializers = {i.name for i in graph.graph.initializer}
    names: dict[str, None] = {}
    for node in graph.graph.node:
        for name in (*node.input, *node.output):
            info = infos.get(name)
            if info is not None and name not in initializers \
                    and info.type.tensor_type.elem_type == FLOAT:
                names[name] = None
    return list(names)


def _qualified(scope: str) -> str:
    """``/model/model.10/block/block.1`` -> ``model.10.block.1`` (a child's scope repeats
    its container's name: ``model.10`` is child ``10`` of ``model``)."""
    parts: list[str] = []
    for segment in scope.strip("/").split("/"):
        if parts and segment.startswith(parts[-1] + "."):
            segment = segment[len(parts[-1]) + 1:]
        parts.append(segment)
    return ".".join(parts)


def module_outputs(graph: Any, names: Sequence[str], modules: dict[str, torch.nn.Module]
                   ) -> tuple[dict[str, str], dict[str, tuple[float, float]]] | None:
    """Map each tensor of ``names`` that depends on the graph's input to the qualified name
    of the module whose output it is, and give the constant ones their ranges; None when a
    tensor is neither (its node is not the last input-dependent one of its module scope, or
    no such module exists, or two tensors map to one module)."""
    from onnx import numpy_helper

    nodes = list(graph.graph.node)
    varying = {i.name for i in graph.graph.input}
    for node in nodes:
        if any(i in varying for i in node.input):
            varying.update(node.output)
    producer = {o: node for node in nodes for o in node.output}
    last_in_scope: dict[str, str] = {}  # scope -> its last input-dependent output
    for node in nodes:
        for out in node.output:
            if out in varying:
                scope = node.name.rpartition("/")[0]
                while scope:
                    last_in_scope[scope] = out
                    scope = scope.rpartition("/")[0]
    mapping: dict[str, str] = {}
    constants: dict[str, tuple[float, float]] = {}
    inputs = {i.name for i in graph.graph.input}
    for name in names:
        node = producer.get(name)
        if name in inputs:
            continue
        if node is None:
            return None
        if name not in varying:
            value_attr = [a for a in node.attribute if a.name == "value"]
            if node.op_type != "Constant" or not value_attr:
                return None
            value = numpy_helper.to_array(value_attr[0].t)
            constants[name] = (float(value.min()), float(value.max()))
            continue
        scope = node.name.rpartition("/")[0]
        module = _qualified(scope)
        if not scope or module not in modules or last_in_scope.get(scope) != name:
            return None
        mapping[name] = module
    if len(set(mapping.values())) != len(mapping):
        return None
    return mapping, constants


def torch_ranges(model: torch.nn.Module, graph: Any, input_name: str,
                 inputs: Sequence[np.ndarray]) -> dict[str, tuple[np.float32, np.float32]] | None:
    """The min/max of every tensor ONNX Runtime's calibrator would measure in ``graph`` (the
    part of the exported ``model`` being calibrated) over ``inputs``, measured by running
    ``model`` in PyTorch; None where the graph's tensors cannot all be found in the model
    (see the module docstring)."""
    names = tensors_to_calibrate(graph)
    found = module_outputs(graph, names, dict(model.named_modules()))
    if found is None or not inputs:
        return None
    mapping, constants = found
    ranges: dict[str, list[float]] = {}
    calls: dict[str, int] = {}
    passes = [0]  # forward passes started

    def complete() -> bool:
        return len(calls) == len(mapping) and all(c == passes[0] for c in calls.values())

    def hook(tensor: str) -> Any:
        def record(_module: torch.nn.Module, _args: Any, out: Any) -> None:
            if not isinstance(out, torch.Tensor) or not out.is_floating_point():
                raise _Mismatch
            lo, hi = (v.item() for v in torch.aminmax(out.float()))
            seen = ranges.setdefault(tensor, [lo, hi])
            seen[0], seen[1] = min(seen[0], lo), max(seen[1], hi)
            calls[tensor] = calls.get(tensor, 0) + 1
            if complete():
                raise _Done
        return record

    modules = dict(model.named_modules())
    handles = [modules[m].register_forward_hook(hook(t)) for t, m in mapping.items()]
    try:
        with torch.no_grad():
            for x in _batches(inputs):
                passes[0] += 1
                try:
                    model(torch.from_numpy(x))
                except _Done:
                    pass
                if not complete():
                    return None  # a module not called, or called twice
    except _Mismatch:
        return None
    finally:
        for h in handles:
            h.remove()
    out: dict[str, tuple[np.float32, np.float32]] = {
        t: (np.float32(lo), np.float32(hi)) for t, (lo, hi) in ranges.items()}
    out.update({t: (np.float32(lo), np.float32(hi)) for t, (lo, hi) in constants.items()})
    if input_name in names:
        out[input_name] = (np.float32(min(float(x.min()) for x in inputs)),
                           np.float32(max(float(x.max()) for x in inputs)))
    return out if set(out) == set(names) else None

