"""Where a training step's time goes, by kind of layer (forward and backward together).

``torch.profiler`` times operators; this puts each operator's self time on the layer that
ran it. Forward operators run inside a ``record_function`` range that a forward hook opens
per layer; a backward operator belongs to the autograd node whose sequence number its
forward operator had. Layers are grouped by kind (:func:`layer_kind`), the same way for
the toolkit's networks and for the plain-PyTorch reference ones, so the two steps'
tables compare line by line. The rest of a step (losses, optimiser, gradient
accumulation) gets groups of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

_PREFIX = "layer: "
OPTIMIZER = "optimizer (Adam step, zero_grad)"
GRAD_ACCUMULATE = "gradient accumulation"
OTHER = "losses and the rest"


# Layers named by their type alone (the first matching entry wins).
_D_KINDS = ((nn.Conv2d, "D convs"), (nn.InstanceNorm2d, "D instance norm"),
            (nn.LeakyReLU, "D LeakyReLU"))
_G_KINDS = ((nn.ConvTranspose2d, "G transposed-conv upsampling"),
            (nn.InstanceNorm2d, "G instance norm"), (nn.ReLU, "G ReLU"),
            (nn.ReflectionPad2d, "G reflection pad"), (nn.Tanh, "G Tanh"))


def layer_kind(module: nn.Module, discriminator: bool) -> str | None:
    """The group a layer's time goes to, or None for a container (its own operators, such as
    a residual block's addition, go to ``residual add``)."""
    kind = next((k for t, k in (_D_KINDS if discriminator else _G_KINDS)
                 if isinstance(module, t)), None)
    if kind is not None or discriminator:
        return kind
    if isinstance(module, nn.Conv2d):
        if module.stride != (1, 1):
            return "G stride-2 downsampling convs"
        if module.kernel_size == (3, 3):
            return "G residual 3x3 convs"
        return f"G {module.kernel_size[0]}x{module.kernel_size[1]} in/out convs"
    return "G residual add" if "Block" in type(module).__name__ else None


@contextmanager
def _labelled(nets: dict[nn.Module, bool]) -> Iterator[None]:
    """Forward hooks opening a ``record_function`` range per layer (value: discriminator)."""
    from torch.autograd.profiler import record_function

    handles = []
    stack: list[Any] = []

    def opener(kind: str) -> Callable[..., None]:
        def pre(module: nn.Module, args: Any) -> None:
            rf = record_function(_PREFIX + kind)
            rf.__enter__()
            stack.append(rf)
        return pre

    def close(module: nn.Module, args: Any, out: Any) -> None:
        stack.pop().__exit__(None, None, None)

    for net, is_d in nets.items():
        for m in net.modules():
            kind = layer_kind(m, is_d)
            if kind is not None:
                handles += [m.register_forward_pre_hook(opener(kind)),
                            m.register_forward_hook(close)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _forward_layer(event: Any) -> str | None:
    while event is not None:
        if event.name.startswith(_PREFIX):
            return event.name[len(_PREFIX):]
        event = event.cpu_parent
    return None


def _within(event: Any, prefix: str) -> bool:
    while event is not None:
        if event.name.startswith(prefix):
            return True
        event = event.cpu_parent
    return False


def profile_by_layer(step: Callable[[], Any], generators: list[nn.Module],
                     discriminators: list[nn.Module]) -> dict[str, Any]:
    """Profile one call of ``step``; returns ``{"total_s", "groups": [{"group", "self_s",
    "share"}, ...]}`` (largest first; shares of the summed self time of all operators)."""
    from torch.profiler import ProfilerActivity, profile

    nets = {**{g: False for g in generators}, **{d: True for d in discriminators}}
    with _labelled(nets), profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = list(prof.events())
    by_seq: dict[int, str] = {}
    for e in events:  # forward operators that recorded an autograd node
        layer = _forward_layer(e)
        if layer is not None and getattr(e, "sequence_nr", -1) >= 0 and not e.is_async:
            by_seq.setdefault(e.sequence_nr, layer)
    times: dict[str, float] = {}
    for e in events:
        group = _forward_layer(e)
        if group is None:
            group = _backward_group(e, by_seq)
        times[group] = times.get(group, 0.0) + e.self_cpu_time_total / 1e6
    total = sum(times.values()) or 1.0
    groups = [{"group": k, "self_s": v, "share": v / total}
              for k, v in sorted(times.items(), key=lambda kv: -kv[1])]
    return {"total_s": total, "groups": groups}


def _backward_group(event: Any, by_seq: dict[int, str]) -> str:
    node = event
    while node is not None:  # the innermost autograd node around this operator
        if node.name.startswith("autograd::engine::evaluate_function: "):
            if "AccumulateGrad" in node.name:
                return GRAD_ACCUMULATE
            layer = by_seq.get(getattr(node, "sequence_nr", -1))
            if layer is not None:
                return f"{layer}"
            return OTHER
        node = node.cpu_parent
    if _within(event, "Optimizer."):
        return OPTIMIZER
    return OTHER


def format_groups(result: dict[str, Any], title: str) -> str:
    """The groups as printed lines under ``title``."""
    lines = [f"{title} (profiled {result['total_s']:.2f} s of operator time):"]
    lines += [f"  {g['group']:<34} {g['self_s']:8.3f} s {100 * g['share']:5.1f}%"
              for g in result["groups"]]
    return "\n".join(lines)
