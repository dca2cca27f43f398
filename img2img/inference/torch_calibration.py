"""int8 calibration ranges measured in PyTorch, for graphs exported from a PyTorch generator.

ONNX Runtime's calibrator runs the graph with a ReduceMin and a ReduceMax added on every
tensor, which breaks its fused, blocked-layout convolutions apart; PyTorch runs the same
network with the toolkit's CPU kernels and takes each layer's range as it goes. Measured
on 2 Zen 5 cores (AMD EPYC family 26 model 2), the trained resnet_9blocks stand-in, the
8 calibration crops of 256x256 up to the float decoder: ONNX Runtime 4.4-4.6 s, PyTorch
2.8 s one by one, ~1.8 s batched; a first run's export + calibration + quantization 6.2 ->
3.2 s (resnet_9blocks, 16 photos) and 15.6-19.5 -> 9.2-10.8 s (unet_256, random weights).

The graph must name its nodes by module scope, as PyTorch's TorchScript exporter does
(``/model/model.10/block/block.1/Conv``): every tensor the quantizer needs a range for is
then the graph's input, a constant, the output of one module called once per forward pass,
or made of such tensors by an op that only moves values (the U-Net's skip ``Concat`` at the
top level; the Conv before the ``DepthToSpace`` its transposed convs are rewritten into).
A batch norm the exporter folded into the conv before it (eval mode) is measured at the
norm's output, which is what the folded Conv node computes. Where that does not hold for
every tensor (dynamo's names, ``.onnx`` sources, a module run twice or not at all, a sum
in a network's own forward such as SRResNet's long skip, another layer without a node),
:func:`torch_ranges` returns None and ONNX Runtime calibrates. The ranges differ from ONNX
Runtime's by float rounding (the two compute the same network in a different order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from img2img.runtime import keep_freed_memory

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


def batches(inputs: Sequence[np.ndarray], pixels: int = BATCH_PIXELS) -> list[np.ndarray]:
    """``inputs`` (N, C, H, W) joined along N by shape, each batch at most ``pixels``
    pixels (one input at least)."""
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for x in inputs:
        by_shape.setdefault(x.shape[1:], []).append(x)
    out = []
    for same in by_shape.values():
        batch: list[np.ndarray] = []
        for x in same:
            if batch and sum(b.shape[0] for b in batch + [x]) * x.shape[-1] * x.shape[-2] \
                    > pixels:
                out.append(np.concatenate(batch))
                batch = []
            batch.append(x)
        out.append(np.concatenate(batch))
    return out


def tensors_to_calibrate(graph: Any) -> list[str]:
    """The float32 tensors ONNX Runtime's calibrator takes ranges of: every input and output
    of every node that is not an initializer (graph order; it takes float16 ones too, but
    an fp16 graph is not quantized)."""
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


def _scopes(node: Any) -> list[str]:
    """The module scopes a node's name lies in, innermost first (``/a/a.1/Conv`` ->
    ``/a/a.1``, ``/a``)."""
    scopes = []
    scope = node.name.rpartition("/")[0]
    while scope:
        scopes.append(scope)
        scope = scope.rpartition("/")[0]
    return scopes


# Ops whose output holds exactly the values of their (first) input, rearranged: a range
# carries over either way. Concat's output holds the values of all its inputs.
PERMUTING = frozenset({"DepthToSpace", "SpaceToDepth", "Transpose", "Reshape", "Flatten",
                       "Squeeze", "Unsqueeze", "Identity"})


@dataclass
class Plan:
    """Where each tensor's range comes from: ``hooked`` (tensor -> the module whose output
    it is), ``constants`` (tensor -> its range), ``derived`` (tensor -> the tensors whose
    ranges give it, in the order they can be resolved: a Concat's inputs, or the one tensor
    a permuting op maps to or from it)."""

    hooked: dict[str, str] = field(default_factory=dict)
    constants: dict[str, tuple[float, float]] = field(default_factory=dict)
    derived: dict[str, list[str]] = field(default_factory=dict)


# Leaf modules that leave no node in an exported eval-mode graph and change nothing there.
NO_OPS = (torch.nn.Identity, torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d,
          torch.nn.Dropout3d)
CONVS = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)


def _folded_norms(nodes: list[Any], modules: dict[str, torch.nn.Module]
                  ) -> dict[str, str] | None:
    """``{conv: batch norm}`` for each batch norm the exporter folded into the conv before
    it (an eval-mode export leaves no node in the norm's scope: the Conv node computes
    both, so its tensor is the norm's output); None when a leaf module other than a no-op
    has no node and is not such a norm (something else was folded or skipped)."""
    scoped = {_qualified(scope) for node in nodes for scope in _scopes(node)}
    folded = {}
    for name, module in modules.items():
        if not name or name in scoped or next(module.children(), None) is not None \
                or isinstance(module, NO_OPS):
            continue
        parent, _, child = name.rpartition(".")
        siblings = [n for n, _ in modules[parent].named_children()]
        i = siblings.index(child)
        before = ".".join(filter(None, (parent, siblings[i - 1]))) if i > 0 else ""
        if not isinstance(module, torch.nn.modules.batchnorm._BatchNorm) \
                or not isinstance(modules.get(before), CONVS) or before not in scoped:
            return None
        folded[before] = name
    return folded


def plan_ranges(graph: Any, names: Sequence[str], modules: dict[str, torch.nn.Module],
                input_name: str, whole: Any = None) -> Plan | None:
    """How to get each tensor of ``names`` (see :class:`Plan`), or None when one cannot be
    had: an input-dependent tensor that is neither the last one of its module scope (the
    module's output), nor derivable from others, or two tensors of one module. ``whole``:
    the whole exported graph when ``graph`` is a part of it (module scopes are read there)."""
    from onnx import numpy_helper

    nodes = list((whole if whole is not None else graph).graph.node)
    folded = _folded_norms(nodes, modules)
    if folded is None:
        return None
    varying = {input_name}
    for node in nodes:
        if any(i in varying for i in node.input):
            varying.update(node.output)
    producer = {o: node for node in nodes for o in node.output}
    last_in_scope: dict[str, str] = {}  # scope -> its last input-dependent output
    for node in nodes:
        for out in node.output:
            if out in varying:
                last_in_scope.update((scope, out) for scope in _scopes(node))
    initializers = {i.name: i for i in graph.graph.initializer}

    def constant(name: str) -> np.ndarray | None:
        """The value of a tensor that does not depend on the input: an initializer, a
        Constant node's, or an Identity of one (how the exporter shares weights)."""
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        node = producer.get(name)
        if node is not None and node.op_type == "Identity" and node.input:
            return constant(node.input[0])
        value = [a for a in node.attribute if a.name == "value"] if node is not None else []
        if node is None or node.op_type != "Constant" or not value:
            return None
        return numpy_helper.to_array(value[0].t)

    plan = Plan()
    pending = []
    for name in names:
        if name == input_name:
            continue
        node = producer.get(name)
        if name not in varying:
            found = constant(name)
            if found is None or found.size == 0:
                return None
            plan.constants[name] = (float(found.min()), float(found.max()))
            continue
        scope = node.name.rpartition("/")[0] if node is not None else ""
        module = _qualified(scope)
        if scope and module in modules and last_in_scope.get(scope) == name:
            plan.hooked[name] = folded.get(module, module)
        else:
            pending.append(name)
    if len(set(plan.hooked.values())) != len(plan.hooked):
        return None
    known = set(plan.hooked) | set(plan.constants) | {input_name}
    permuted_from = {n.input[0]: n.output[0] for n in nodes
                     if n.op_type in PERMUTING and n.input and n.output}
    while pending:
        left = []
        for name in pending:
            node = producer.get(name)
            sources = None
            if node is not None and node.op_type == "Concat" and node.input \
                    and all(i in known for i in node.input):
                sources = list(node.input)
            elif node is not None and node.op_type in PERMUTING and node.input \
                    and node.input[0] in known:
                sources = [node.input[0]]
            elif permuted_from.get(name) in known:
                sources = [permuted_from[name]]
            if sources is None:
                left.append(name)
            else:
                plan.derived[name] = sources
                known.add(name)
        if len(left) == len(pending):
            return None
        pending = left
    return plan


def torch_ranges(model: torch.nn.Module, graph: Any, input_name: str,
                 inputs: Sequence[np.ndarray], whole: Any = None
                 ) -> dict[str, tuple[np.float32, np.float32]] | None:
    """The min/max of every tensor ONNX Runtime's calibrator would measure in ``graph`` (the
    exported ``model``, or the part of it ``whole`` that is calibrated) over ``inputs``,
    measured by running ``model`` in PyTorch (with its fast CPU layers, which give each
    layer's output up to float rounding); None where the graph's tensors cannot all be
    found in the model (see the module docstring)."""
    names = tensors_to_calibrate(graph)
    plan = plan_ranges(graph, names, dict(model.named_modules()), input_name, whole)
    if plan is None or not inputs:
        return None
    ranges = _measure(model, plan.hooked, inputs)
    if ranges is None:
        return None
    found: dict[str, tuple[float, float]] = dict(ranges)
    found.update(plan.constants)
    found[input_name] = (min(float(x.min()) for x in inputs),
                         max(float(x.max()) for x in inputs))
    for name, sources in plan.derived.items():
        found[name] = (min(found[s][0] for s in sources), max(found[s][1] for s in sources))
    if not set(names) <= set(found):
        return None
    return {t: (np.float32(found[t][0]), np.float32(found[t][1])) for t in names}


def _measure(model: torch.nn.Module, hooked: dict[str, str], inputs: Sequence[np.ndarray]
             ) -> dict[str, tuple[float, float]] | None:
    """Run ``model`` on ``inputs`` and take the min/max of each hooked module's output
    (tensor -> module); None when a module is not called exactly once per pass, its output
    is not a float tensor, or the forward fails. A pass stops once every module has run."""
    # A batch of 8 crops makes ~75 MB temporaries: with glibc's default of handing blocks
    # above 32 MB back to the kernel, fresh pages are faulted in for each (the calibrated
    # part of resnet_9blocks on 8 crops: 6.1-6.4 s instead of 1.7-1.9 s, Zen 5). translate
    # and the benchmark have set this already.
    keep_freed_memory()
    ranges: dict[str, list[float]] = {}
    calls: dict[str, int] = {}
    passes = [0]  # forward passes started

    def complete() -> bool:
        return len(calls) == len(hooked) and all(c == passes[0] for c in calls.values())

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
    handles = [modules[m].register_forward_hook(hook(t)) for t, m in hooked.items()]
    try:
        with torch.no_grad():
            for x in batches(inputs):
                passes[0] += 1
                try:
                    model(torch.from_numpy(x))
                except _Done:
                    pass
                if not complete():
                    return None  # a module not called, or called twice
    except (_Mismatch, RuntimeError, ValueError):
        return None
    finally:
        for h in handles:
            h.remove()
    return {t: (lo, hi) for t, (lo, hi) in ranges.items()}
