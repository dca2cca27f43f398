"""Generators of the CycleGAN/pix2pix reference, junyanz/pytorch-CycleGAN-and-pix2pix.

**ResnetGenerator** is one ``nn.Sequential`` named ``model``: reflection pad, 7x7 conv to
``ngf``, norm, ReLU (indices 0-3); two stride-2 3x3 convs each with norm and ReLU (4-9);
``n_blocks`` ResnetBlocks (10 ...), each a ``conv_block`` Sequential of pad, 3x3 conv, norm,
ReLU, [Dropout], pad, 3x3 conv, norm, so dropout moves the second conv from index 5 to 6;
two stride-2 ConvTranspose2d with norm and ReLU; pad, 7x7 conv (always with a bias), Tanh.
The toolkit's ``ResnetGenerator`` has the same layers at the same indices, its blocks
naming their Sequential ``block``.

**UnetGenerator** nests UnetSkipConnectionBlocks, each holding a Sequential ``model``:
the outermost is [down conv, submodule, ReLU, ConvTranspose2d (with a bias), Tanh], so its
submodule sits at ``model.model.1``; a middle block is [LeakyReLU, conv, norm, submodule,
ReLU, ConvTranspose2d, norm(, Dropout)], its submodule at ``.model.3``; the innermost is
[LeakyReLU, conv, ReLU, ConvTranspose2d, norm]. The toolkit's ``UnetGenerator`` holds the
same layers as flat ``downs`` / ``ups`` lists, level by level.

Norms: ``batch`` is affine BatchNorm with running statistics and bias-free convs;
``instance`` is InstanceNorm without parameters or statistics, the convs keeping biases;
``none`` leaves neither, and converts to the toolkit's ``none`` with zero biases.
"""

from __future__ import annotations

import re

import torch

from img2img.nn import build_generator

from .family import Imported, StateDict
from .load import ForeignCheckpointError

RESNET_FAMILY = "reference ResNet generator (pytorch-CycleGAN-and-pix2pix)"
UNET_FAMILY = "reference U-Net generator (pytorch-CycleGAN-and-pix2pix)"
# ``notes["layout"]``: the key layout read (img2img.foreign.verify follows it)
RESNET_LAYOUT = "pytorch-CycleGAN-and-pix2pix ResnetGenerator keys"
UNET_LAYOUT = "pytorch-CycleGAN-and-pix2pix UnetGenerator keys"
_STATS_NOTE = ("BatchNorm runs on the stored running statistics, as the reference's "
               "test.py does with --eval (without it, each image is normalised with its own "
               "statistics and dropout stays on)")


def _is_conv(t: torch.Tensor | None, k: int) -> bool:
    return t is not None and t.dim() == 4 and tuple(t.shape[-2:]) == (k, k)


def _norm_kind(state: StateDict, conv: str, norm: str, family: str) -> str:
    """The norm of a reference network from one conv and the norm layer after it."""
    leaves = {k[len(norm) + 1:] for k in state if k.startswith(norm + ".")}
    bias = f"{conv}.bias" in state
    if {"weight", "bias", "running_mean", "running_var"} <= leaves and not bias:
        return "batch"
    if not leaves:
        return "instance" if bias else "none"
    raise ForeignCheckpointError(
        f"{family} with a norm layer the reference's norms do not produce ({norm} holds "
        f"{', '.join(sorted(leaves))}; conv {'with' if bias else 'without'} bias)")


def _finish(state: StateDict, arch: str, kwargs: dict, family: str) -> StateDict:
    """Check ``state`` (toolkit names) against the toolkit network and complete it.

    Zero biases go where norm ``none`` has none in the reference, and a zero
    ``num_batches_tracked`` where a pre-0.4 checkpoint lacks it (eval output does not
    depend on either). Any other difference raises naming the key.
    """
    with torch.device("meta"):
        expected = build_generator(arch, **kwargs).state_dict()
    out = dict(state)
    for k, ref in expected.items():
        if k in out:
            continue
        if k.endswith(".bias") and kwargs.get("norm") == "none":
            out[k] = torch.zeros(ref.shape, dtype=ref.dtype)
        elif k.endswith(".num_batches_tracked"):
            out[k] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in out]
    unexpected = [k for k in out if k not in expected]
    wrong = [k for k in expected if k in out and out[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        what = []
        if missing:
            what.append(f"missing {', '.join(missing[:4])}")
        if unexpected:
            what.append(f"unexpected {', '.join(unexpected[:4])}")
        if wrong:
            k = wrong[0]
            what.append(f"{k} is {tuple(out[k].shape)}, expected {tuple(expected[k].shape)}")
        raise ForeignCheckpointError(
            f"looks like a {family} but does not match one built as {arch} {kwargs}: "
            + "; ".join(what))
    return {k: out[k] for k in expected}


_BLOCK = re.compile(r"model\.(\d+)\.conv_block\.(\d+)\.(.+)$")


def recognise_resnet(state: StateDict) -> Imported | None:
    """The reference ResnetGenerator (any block count, norm, dropout), or None."""
    stem, down = state.get("model.1.weight"), state.get("model.4.weight")
    if not (_is_conv(stem, 7) and _is_conv(down, 3)):
        return None
    ngf, in_channels = stem.shape[:2]
    if tuple(down.shape[:2]) != (2 * ngf, ngf):
        return None
    blocks: dict[int, set[int]] = {}
    for k in state:
        m = _BLOCK.match(k)
        if m and m.group(3) == "weight" and state[k].dim() == 4:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    n_blocks = len(blocks)
    if sorted(blocks) != list(range(10, 10 + n_blocks)):
        raise ForeignCheckpointError(
            f"looks like a {RESNET_FAMILY} but its residual blocks sit at model."
            f"{sorted(blocks)}, not one after another from model.10")
    convs = {frozenset(v) for v in blocks.values()}
    if n_blocks and convs not in ({frozenset({1, 5})}, {frozenset({1, 6})}):
        raise ForeignCheckpointError(
            f"looks like a {RESNET_FAMILY} but its residual blocks hold convs at "
            f"{sorted(sorted(c) for c in convs)} instead of conv_block.1 and .5 (or .6 with "
            "dropout)")
    dropout = frozenset({1, 6}) in convs
    norm = _norm_kind(state, "model.1", "model.2", RESNET_FAMILY)
    last = state.get(f"model.{17 + n_blocks}.weight")
    if not _is_conv(last, 7):
        raise ForeignCheckpointError(
            f"looks like a {RESNET_FAMILY} with {n_blocks} blocks but has no 7x7 output conv "
            f"at model.{17 + n_blocks}")
    out_channels = last.shape[0]
    named = {9: "resnet_9blocks", 6: "resnet_6blocks"}
    arch = named.get(n_blocks, "resnet")
    kwargs = {"in_channels": int(in_channels), "out_channels": int(out_channels),
              "ngf": int(ngf), "norm": norm, "dropout": dropout}
    if arch == "resnet":
        kwargs["n_blocks"] = n_blocks
    converted = {k.replace(".conv_block.", ".block.", 1): v for k, v in state.items()}
    converted = _finish(converted, arch, kwargs, RESNET_FAMILY)
    notes = {"layout": RESNET_LAYOUT, **({"stats": _STATS_NOTE} if norm == "batch" else {})}
    return Imported(
        family=f"{RESNET_FAMILY}: {n_blocks} blocks, ngf {ngf}, {norm} norm"
               + (", dropout" if dropout else ""),
        arch=arch, kwargs=kwargs, state_dict=converted, task="cyclegan", notes=notes)


def _unet_levels(state: StateDict) -> list[str] | None:
    """Prefixes of the Sequentials of the nested blocks, outermost first, or None."""
    prefixes = ["model.model."]
    p = "model.model.1.model."
    while f"{p}1.weight" in state:
        prefixes.append(p)
        if f"{p}3.model.1.weight" not in state:
            return prefixes  # innermost: [LeakyReLU, conv, ReLU, ConvTranspose2d, norm]
        p += "3.model."
    return None


def recognise_unet(state: StateDict) -> Imported | None:
    """The reference UnetGenerator (any depth, norm), or None."""
    first, last = state.get("model.model.0.weight"), state.get("model.model.3.weight")
    if not (_is_conv(first, 4) and _is_conv(last, 4)):
        return None
    levels = _unet_levels(state)
    if levels is None or len(levels) < 2:
        return None
    num_downs = len(levels)
    if num_downs < 5:
        raise ForeignCheckpointError(
            f"looks like a {UNET_FAMILY} but has {num_downs} levels; the reference builds "
            "at least 5 and so does the toolkit's U-Net")
    ngf, in_channels = first.shape[:2]
    out_channels = last.shape[1]
    norm = _norm_kind(state, f"{levels[1]}1", f"{levels[1]}2", UNET_FAMILY)
    innermost = num_downs - 1
    # reference Sequential prefix -> toolkit module prefix, level by level
    table = {"model.model.0.": "downs.0.", "model.model.3.": "ups.0.1."}
    for i, p in enumerate(levels[1:], start=1):
        if i == innermost:
            table.update({f"{p}1.": f"downs.{i}.1.", f"{p}3.": f"ups.{i}.1.",
                          f"{p}4.": f"ups.{i}.2."})
        else:
            table.update({f"{p}1.": f"downs.{i}.1.", f"{p}2.": f"downs.{i}.2.",
                          f"{p}5.": f"ups.{i}.1.", f"{p}6.": f"ups.{i}.2."})
    converted: StateDict = {}
    for k, v in state.items():
        layer, _, leaf = k.rpartition(".")
        converted[table.get(layer + ".", layer + ".") + leaf] = v
    arch = {8: "unet_256", 7: "unet_128"}.get(num_downs, "unet")
    kwargs = {"in_channels": int(in_channels), "out_channels": int(out_channels),
              "ngf": int(ngf), "norm": norm, "dropout": True}
    if arch == "unet":
        kwargs["num_downs"] = num_downs
    converted = _finish(converted, arch, kwargs, UNET_FAMILY)
    notes = {"layout": UNET_LAYOUT,
             "dropout": "not stored in the weights (no parameters); inference runs without "
                        "it either way"}
    if norm == "batch":
        notes["stats"] = _STATS_NOTE
    return Imported(
        family=f"{UNET_FAMILY}: {num_downs} levels, ngf {ngf}, {norm} norm",
        arch=arch, kwargs=kwargs, state_dict=converted, task="pix2pix", notes=notes)
