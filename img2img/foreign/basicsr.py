"""Recognisers of published super-resolution checkpoints: ESRGAN's RRDBNet and BasicSR's MSRResNet.

Each takes a plain state dict (container and ``module.`` removed) and returns an
:class:`Imported` for :mod:`img2img.nn.rrdbnet` / :mod:`img2img.nn.msrresnet`, or ``None``
when the tensors are of another family. Key layouts understood:

- RRDBNet, BasicSR / Real-ESRGAN: ``conv_first``, ``body.N.rdb1.conv1``, ``conv_body``,
  ``conv_up1``.., ``conv_hr``, ``conv_last`` (the toolkit's own names);
- RRDBNet, ESRGAN's later code and BSRGAN (KAIR): ``RRDB_trunk.N.RDB1.conv1``,
  ``trunk_conv``, ``upconv1``.., ``HRconv``;
- RRDBNet, the original ESRGAN code (one flattened ``model`` Sequential): ``model.0`` first
  conv, ``model.1.sub.N.RDB1.conv1.0`` dense convs, ``model.1.sub.<num_block>`` trunk conv,
  then (Upsample, conv, LeakyReLU) per 2x stage so the upsampling convs sit at ``model.3``,
  ``model.6``, ``model.9``; the HR conv two after the last of them and ``conv_last`` two
  after that (x4: ``model.8``, ``model.10``; x1: ``model.2``, ``model.4``);
- MSRResNet, BasicSR: ``conv_first``, ``body.N.conv1``, ``upconv1/2``, ``conv_hr``,
  ``conv_last``; and its predecessor in mmsr: ``recon_trunk.N.conv1``, ``HRconv``.

Every number is read from shapes: features from ``conv_first``, blocks from the highest
block index, growth channels from ``rdb1.conv1``, stages from the upsampling convs, and a
first conv with 4x or 16x the output channels means a pixel-unshuffled input (Real-ESRGAN
x2 / x1). A one-stage original-layout file is read as x2 (its x3 variant has the same
tensors). The converted dict is then checked key by key against the rebuilt network:
names it does not know mean another family (``None``); a missing tensor or a wrong shape
raises ``ValueError``.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from img2img.nn import build_generator

from .family import Imported, StateDict

_TRUNK_RENAMES = [
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\."), r"body.\1.rdb\2.conv\3."),
    (re.compile(r"^trunk_conv\."), "conv_body."),
    (re.compile(r"^upconv(\d)\."), r"conv_up\1."),
    (re.compile(r"^HRconv\."), "conv_hr."),
]
_MMSR_RENAMES = [
    (re.compile(r"^recon_trunk\.(\d+)\."), r"body.\1."),
    (re.compile(r"^HRconv\."), "conv_hr."),
]
_OLD_RDB = re.compile(r"^model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)$")
_OLD_TRUNK = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_OLD_TOP = re.compile(r"^model\.(\d+)\.(weight|bias)$")


def _rename(state: StateDict, rules: list[tuple[re.Pattern[str], str]]) -> StateDict:
    out: StateDict = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key, hits = pattern.subn(repl, key)
            if hits:
                break
        out[key] = value
    return out


def _rename_original(state: StateDict) -> StateDict:
    """Original ESRGAN ``model.*`` keys -> BasicSR names (unknown keys kept as they are)."""
    top = sorted({int(m[1]) for k in state if (m := _OLD_TOP.match(k)) and m[1] != "0"})
    names: dict[int, str] = {0: "conv_first"}
    if top:
        n_up = max(0, (top[-1] - 4) // 3)
        last = 3 * n_up + 4
        expected = [3 * i for i in range(1, n_up + 1)] + [last - 2, last]
        if top != expected:
            raise ValueError(
                "ESRGAN RRDBNet (original ESRGAN keys): convs at "
                + ", ".join(f"model.{i}" for i in top)
                + f"; expected {', '.join(f'model.{i}' for i in expected)} (nearest-upsampling"
                " variant; the pixel-shuffle variant is not supported)"
            )
        names.update({3 * i: f"conv_up{i}" for i in range(1, n_up + 1)})
        names.update({last - 2: "conv_hr", last: "conv_last"})
    # The trunk conv follows the last RRDB in model.1.sub.
    trunk = str(1 + max((int(m[1]) for k in state if (m := _OLD_RDB.match(k))), default=-1))
    out: StateDict = {}
    for key, value in state.items():
        if m := _OLD_RDB.match(key):
            key = f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"
        elif (m := _OLD_TRUNK.match(key)) and m[1] == trunk:
            key = f"conv_body.{m[2]}"
        elif (m := _OLD_TOP.match(key)) and int(m[1]) in names:
            key = f"{names[int(m[1])]}.{m[2]}"
        out[key] = value
    return out


def _shape(state: StateDict, key: str, family: str, ndim: int = 4) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"{family}: tensor {key!r} is missing")
    shape = tuple(getattr(state[key], "shape", ()))
    if len(shape) != ndim:
        raise ValueError(f"{family}: tensor {key!r} has shape {list(shape)}, expected {ndim}-D")
    return shape


def _checked(family: str, arch: str, kwargs: dict[str, Any], state: StateDict,
             notes: dict[str, Any]) -> Imported | None:
    """``Imported`` when ``state`` has exactly the keys and shapes of ``arch(**kwargs)``."""
    try:
        with torch.device("meta"):
            net = build_generator(arch, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{family}: tensors imply an unsupported network ({exc})") from exc
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    if set(state) - set(expected):
        return None  # names this family does not have: some other architecture
    missing = sorted(set(expected) - set(state))
    if missing:
        shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise ValueError(f"{family}: {len(missing)} tensor(s) missing: {shown}")
    for key, shape in expected.items():
        got = tuple(getattr(state[key], "shape", ()))
        if got != shape:
            raise ValueError(f"{family}: tensor {key!r} has shape {list(got)}, "
                             f"expected {list(shape)} for {arch} {kwargs}")
    return Imported(family=family, arch=arch, kwargs=kwargs, state_dict=dict(state),
                    task="sr", scale=int(kwargs["scale"]), value_range=(0.0, 1.0),
                    channel_order="RGB", notes=notes)


def _block_count(state: StateDict, prefix: str) -> int:
    found = {int(m[1]) for k in state if (m := re.match(prefix + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def recognise_rrdbnet(state: StateDict) -> Imported | None:
    """ESRGAN / Real-ESRGAN / BSRGAN RRDBNet weights -> the ``rrdbnet`` generator, else None."""
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        layout, native = "BasicSR keys", dict(state)
    elif "conv_first.weight" in state and "RRDB_trunk.0.RDB1.conv1.weight" in state:
        layout, native = "ESRGAN/BSRGAN trunk keys", _rename(state, _TRUNK_RENAMES)
    elif "model.0.weight" in state and "model.1.sub.0.RDB1.conv1.0.weight" in state:
        layout, native = "original ESRGAN keys", _rename_original(state)
    else:
        return None
    family = f"ESRGAN RRDBNet ({layout})"
    num_feat, cin = _shape(native, "conv_first.weight", family)[:2]
    cout = _shape(native, "conv_last.weight", family)[0]
    num_grow_ch = _shape(native, "body.0.rdb1.conv1.weight", family)[0]
    n_up = sum(f"conv_up{i}.weight" in native for i in range(1, 9))
    unshuffle = 4 if cin == 16 * cout else 2 if cin == 4 * cout else 1
    if 2**n_up < unshuffle:
        raise ValueError(f"{family}: {n_up} upsampling stage(s) cannot undo a "
                         f"{unshuffle}x pixel-unshuffle")
    kwargs = dict(in_channels=cin // unshuffle**2, out_channels=cout, num_feat=num_feat,
                  num_block=_block_count(native, r"body\."), num_grow_ch=num_grow_ch,
                  scale=2**n_up // unshuffle, unshuffle=unshuffle)
    return _checked(family, "rrdbnet", kwargs, native,
                    {"layout": layout, "pixel_unshuffle": unshuffle})


def recognise_msrresnet(state: StateDict) -> Imported | None:
    """BasicSR / mmsr MSRResNet weights -> the ``msrresnet`` generator, else None."""
    if not {"conv_first.weight", "upconv1.weight"} <= set(state):
        return None
    if "body.0.conv1.weight" in state:
        layout, native = "BasicSR keys", dict(state)
    elif "recon_trunk.0.conv1.weight" in state:
        layout, native = "mmsr keys", _rename(state, _MMSR_RENAMES)
    else:
        return None
    family = f"BasicSR MSRResNet ({layout})"
    num_feat, cin = _shape(native, "conv_first.weight", family)[:2]
    up1 = _shape(native, "upconv1.weight", family)[0]
    scale = 4 if "upconv2.weight" in native else {4 * num_feat: 2, 9 * num_feat: 3}.get(up1)
    if scale is None:
        raise ValueError(f"{family}: upconv1 has {up1} output channels for {num_feat} "
                         "features; expected 4x (x2) or 9x (x3)")
    kwargs = dict(in_channels=cin, out_channels=_shape(native, "conv_last.weight", family)[0],
                  num_feat=num_feat, num_block=_block_count(native, r"body\."), scale=scale)
    return _checked(family, "msrresnet", kwargs, native, {"layout": layout})
